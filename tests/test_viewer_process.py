"""The viewer is a process of its own: the trainer never waits for it, recording gets a frame for every step,
and when the viewer is killed or goes away the training goes on (or stops, as chosen) with nothing leaked.

Each test spawns a headless viewer (Mesa through EGL) for a tiny model; no timings are asserted.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glnet.errors import NonFiniteError
from glnet.live import Live

pytestmark = pytest.mark.gl


def _batch(n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 16, 16, generator=g)
    return x, torch.randint(0, 5, (n,), generator=g), torch.randn(1, 3, 16, 16, generator=g)


def _steps(model: nn.Module, viz: Live, n: int, lr: float = 0.01) -> None:
    x, y, _ = _batch(8)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(n):
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        viz.step(loss=float(loss.detach()))


def _gone(pid: int, within: float = 20.0) -> bool:
    """The process has ended: gone, or a zombie whose every thread has exited (its parent can reap it)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
            if zombie and len(os.listdir(f"/proc/{pid}/task")) <= 1:
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.05)
    return False


def _shm() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def test_the_viewer_runs_in_another_process_and_the_trainer_holds_no_gl(tiny_net):
    model = tiny_net.train()
    _, _, probe = _batch()
    with Live(model, probe, headless=True, size=(64, 48)) as viz:
        pid = viz.stats.viewer_pid
        assert pid and pid != os.getpid() and viz.viewer_alive
        assert viz.viewer_info["pid"] == pid and "llvmpipe" in viz.stats.gl_renderer.lower()
        _steps(model, viz, 3)
        assert viz.handover is not None and viz.handover.slots.data.is_shared()
    assert viz.stats.viewer == "finished" and viz.stats.viewer_exitcode == 0 and _gone(pid)


def test_a_slow_viewer_drops_frames_instead_of_slowing_the_trainer(tiny_net):
    """Drawing 4K frames on a software rasterizer takes far longer than a tiny step: the newest frame wins,
    the others are dropped and counted, and every step completes."""
    model = tiny_net.train()
    _, _, probe = _batch()
    n = 40
    with Live(model, probe, headless=True, size=(3840, 2160)) as viz:
        _steps(model, viz, n)
        drawn_while_training = viz.stats.frames
        assert viz.stats.steps == n
    assert drawn_while_training < n and viz.stats.dropped > 0
    assert viz.stats.frames + viz.stats.dropped == viz.stats.updates + viz.handover.dropped


def test_recording_gets_a_frame_for_every_step(tiny_net, tmp_path):
    from glnet.record import read_video_frames

    model = tiny_net.train()
    _, _, probe = _batch()
    n = 8
    video = tmp_path / "frames"  # a PNG folder: no ffmpeg needed
    with Live(model, probe, headless=True, size=(320, 200), record=video) as viz:
        _steps(model, viz, n, lr=0.5)
        behind = viz.stats.frames < n  # the trainer did not wait for the frames
    assert behind
    assert viz.stats.frames == n and viz.stats.dropped == 0
    frames = list(read_video_frames(video))
    assert len(frames) == n
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).max() > 16  # not one frame repeated


def test_weights_mode_hands_over_the_relative_filter_change(tiny_net):
    model = tiny_net.train()
    _, _, probe = _batch()
    w0 = model.conv2.weight.detach().clone()
    with Live(model, probe, headless=True, size=(64, 48), mode="weights") as viz:
        _steps(model, viz, 1, lr=0.5)
        h = viz.handover
        i = next(k for k, r in enumerate(viz.trace.layers) if r.name == "conv2")
        frame = h.slots.data[h.last]
        view = viz.tap.views_of(frame)[i]
        want = (model.conv2.weight.detach() - w0).flatten(1).norm(dim=1) / w0.flatten(1).norm(dim=1)
        torch.testing.assert_close(view[:, 0, 0], want, rtol=1e-5, atol=0)
        assert torch.all(view == view[:, :1, :1])  # one value per output channel


def test_killing_the_viewer_leaves_training_running(tiny_net):
    model = tiny_net.train()
    _, _, probe = _batch()
    with Live(model, probe, headless=True, size=(64, 48)) as viz:
        _steps(model, viz, 2)
        os.kill(viz.stats.viewer_pid, signal.SIGKILL)
        assert _gone(viz.stats.viewer_pid)
        _steps(model, viz, 5)
        assert not viz.viewer_alive and not viz.should_stop
    s = viz.stats.summary()
    assert s["steps"] == 7 and s["viewer"] == "crashed (killed by SIGKILL)" and s["viewer_lost_at_step"] == 3
    assert s["viewer_exitcode"] == -signal.SIGKILL


def test_on_close_stop_ends_training_after_the_step(tiny_net):
    model = tiny_net.train()
    _, _, probe = _batch()
    with Live(model, probe, headless=True, size=(64, 48), on_close="stop") as viz:
        _steps(model, viz, 1)
        os.kill(viz.stats.viewer_pid, signal.SIGKILL)
        assert _gone(viz.stats.viewer_pid)
        _steps(model, viz, 1)
        assert viz.should_stop and viz.stop_reason == "viewer crashed (killed by SIGKILL)"


def test_no_shared_memory_or_process_outlives_the_session(tiny_net, tmp_path):
    before = _shm()
    model = tiny_net.train()
    _, _, probe = _batch()
    with Live(model, probe, headless=True, size=(64, 48), record=tmp_path / "f") as viz:
        _steps(model, viz, 3)
        pid = viz.stats.viewer_pid
    assert _gone(pid)
    assert _shm() == before


def test_nan_loss_stops_naming_the_first_layer(tiny_net):
    model = tiny_net.train()
    x, y, probe = _batch()
    with pytest.raises(NonFiniteError) as info:
        with Live(model, probe, headless=True, size=(64, 48)) as viz:
            viz.step(loss=F.cross_entropy(model(x), y).item())
            with torch.no_grad():
                model.conv2.weight[0, 0, 0, 0] = float("nan")
            viz.step(loss=F.cross_entropy(model(x), y).item())
    assert info.value.layer == "conv2" and info.value.step == 2
    assert "conv2" in str(info.value) and "nan" in str(info.value).lower()
    assert viz.stats.nonfinite == [{"step": 2, "loss": "nan", "layer": "conv2"}]
    assert not model._forward_pre_hooks and not viz.viewer_alive  # hooks off and the viewer ended


def test_keep_going_records_the_nan_and_goes_on(tiny_net):
    model = tiny_net.train()
    x, _, probe = _batch()
    with Live(model, probe, headless=True, size=(64, 48), keep_going=True) as viz:
        model(x)
        viz.step(loss=float("inf"))
        model(x)
        viz.step(loss=1.0)
    assert viz.stats.steps == 2 and "inf at step 1" in viz.note and viz.stats.frames >= 1


def test_a_viewer_that_cannot_start_is_one_error_and_leaves_no_hooks(tiny_net, tmp_path):
    from glnet.errors import GlnetError

    model = tiny_net.train()
    _, _, probe = _batch()
    viz = Live(model, probe, headless=True, size=(64, 48), record=tmp_path / "x.avi")  # no such format
    with pytest.raises(GlnetError) as info:
        viz.start()
    assert "\n" not in str(info.value) and ".avi" in str(info.value)
    viz.close()
    assert not model._forward_pre_hooks
