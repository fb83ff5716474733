"""Live training on a display wall: the viewer process is rank 0 of a gloo group and each other tile is a
process of its own. Every step gives one stitched frame, equal to what one viewer draws at the wall's size;
every rank draws the same frames; a rank that dies costs the wall, never the training.

Headless (Mesa through EGL), a 2x1 wall of 160x90 tiles over a tiny model, a few steps; no timings asserted.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TinyNet
from test_viewer_process import _gone

from glnet.errors import InputError
from glnet.live import Live
from glnet.live.wall import parse_wall
from glnet.record import read_video_frames
from glnet.wall import WallSpec

WALL = "2x1:160x90"


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(8, 3, 16, 16, generator=g),
        torch.randint(0, 5, (8,), generator=g),
        torch.randn(1, 3, 16, 16, generator=g),
    )


def _net(state: dict[str, torch.Tensor]) -> nn.Module:
    net = TinyNet()
    net.load_state_dict(state)
    return net.train()


def _steps(model: nn.Module, viz: Live, n: int) -> None:
    x, y, _ = _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(n):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        viz.step(loss=float(loss.detach()))


def test_wall_option_parsing():
    assert parse_wall("2x2:640x360") == WallSpec((2, 2), (640, 360))
    assert parse_wall("3x1:160x90:20,0") == WallSpec((3, 1), (160, 90), (20, 0))
    spec = WallSpec((2, 1), (8, 8))
    assert parse_wall(spec) is spec and parse_wall(None) is None
    for bad in ("2x2", "1x1:160x90", "2x2:160", "0x2:160x90", "2x2:160x90:a"):
        with pytest.raises(InputError) as info:
            parse_wall(bad)
        assert "\n" not in str(info.value)


def test_a_live_wall_in_a_window_is_one_line(tiny_net):
    _, _, probe = _data()
    viz = Live(tiny_net.train(), probe, headless=False, wall=WALL)
    with pytest.raises(InputError, match="headless"):
        viz.start()
    assert viz.stats.viewer_pid is None and not viz.stats.wall_pids


@pytest.mark.gl
@pytest.mark.usefixtures("gloo")
def test_a_live_wall_stitches_every_step_like_one_viewer(tiny_net, tmp_path):
    """Same model, data and camera: the wall's stitched frames and one viewer's frames at the wall's full
    size (no HUD on either) agree step by step."""
    _, _, probe = _data()
    state = {k: v.clone() for k, v in tiny_net.state_dict().items()}
    n = 3
    runs = {}
    for name, options in (("one", {"size": (320, 90)}), ("wall", {"wall": WALL})):
        model = _net(state)
        with Live(model, probe, headless=True, hud=False, record=tmp_path / name, **options) as viz:
            _steps(model, viz, n)
        runs[name] = viz.stats.summary(), list(read_video_frames(tmp_path / name))
    (one, single), (wall, stitched) = runs["one"], runs["wall"]
    assert one["viewer"] == wall["viewer"] == "finished" and wall["wall"] == "finished"
    assert wall["steps"] == wall["frames"] == len(stitched) == n  # a stitched frame for every step
    assert wall["wall_lost_at_step"] is None and len(wall["wall_pids"]) == 1
    assert [r["rank"] for r in wall["wall_ranks"]] == [0, 1]
    assert [r["frames"] for r in wall["wall_ranks"]] == [list(range(n))] * 2  # every rank drew every frame
    assert len(single) == n and single[-1].shape == stitched[-1].shape == (90, 320, 3)
    a, b = single[-1], stitched[-1]
    assert (a != a[0, 0]).any(-1).mean() > 0.05, "the picture should show neurons"
    same = (a == b).all(-1)
    drawn = (a != a[0, 0]).any(-1) | (b != a[0, 0]).any(-1)
    assert same.mean() >= 0.999 and same[drawn].mean() >= 0.99, (same.mean(), same[drawn].mean())
    assert np.abs(stitched[0].astype(int) - b.astype(int)).max() > 0  # training changed the picture
    assert one["wall"] == "" and one["wall_ranks"] is None


@pytest.mark.gl
@pytest.mark.usefixtures("gloo")
def test_killing_a_wall_rank_does_not_stop_training(tiny_net, tmp_path):
    """SIGKILL one rank mid-run: training finishes, the stats say the wall was lost and when, and rank 0
    draws every tile itself from then on, so the recording still has a frame per step."""
    _, _, probe = _data()
    model = tiny_net.train()
    with Live(
        model, probe, headless=True, hud=False, record=tmp_path / "f", wall=WALL, wall_timeout=30
    ) as viz:
        deadline = time.monotonic() + 120
        while viz.stats.frames < 2 and time.monotonic() < deadline:  # the wall has drawn: kill it mid-run
            _steps(model, viz, 1)
            time.sleep(0.05)
        before = viz.stats.steps
        assert viz.stats.frames >= 2 and viz.stats.wall == "running"
        (pid,) = viz.stats.wall_pids
        os.kill(pid, signal.SIGKILL)
        assert _gone(pid)
        _steps(model, viz, 3)
        assert not viz.should_stop
    s = viz.stats.summary()
    n = before + 3
    assert s["steps"] == n and s["viewer"] == "finished" and s["frames"] == n
    assert s["wall"].startswith("lost (") and s["wall_lost_at_step"] > 2, s["wall"]
    assert s["wall_ranks"] == [{"rank": 0, "pid": s["viewer_pid"], "frames": list(range(n))}]
    assert len(list(read_video_frames(tmp_path / "f"))) == n


@pytest.mark.gl
@pytest.mark.usefixtures("gloo")
def test_killing_the_viewer_ends_the_wall_and_training_goes_on(tiny_net):
    """Rank 0 is the viewer: when it dies the trainer ends the other ranks (they would wait for it), and
    training goes on as with one viewer."""
    _, _, probe = _data()
    model = tiny_net.train()
    with Live(model, probe, headless=True, hud=False, wall=WALL, wall_timeout=30) as viz:
        _steps(model, viz, 1)
        (rank1,) = viz.stats.wall_pids
        os.kill(viz.stats.viewer_pid, signal.SIGKILL)
        assert _gone(viz.stats.viewer_pid)
        _steps(model, viz, 2)
        assert not viz.viewer_alive and not viz.should_stop and _gone(rank1)
    s = viz.stats.summary()
    assert s["steps"] == 3 and s["viewer"] == "crashed (killed by SIGKILL)"
    assert s["wall"] == "lost (rank 0, the viewer, is gone)" and s["wall_lost_at_step"] == 2
