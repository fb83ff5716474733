"""Gradient flow while training: the per-layer weight-gradient norms the trainer hands over, the chart that
flags vanishing and exploding layers, the dead-unit share, and the chart in what ``glnet train`` records.

Tiny models and frames; the one resnet18 run is 8 steps at 32x32.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glnet.gpu.cloud import layer_offsets
from glnet.live import FrameMeta, ProbeTap, Slots
from glnet.live.handover import NO_GRAD
from glnet.render.gradflow import BAR, DEAD, FLAG, DeadUnits, flag_layers, gradflow_image, gradflow_layout
from glnet.render.hud import MARGIN

NAN, INF = float("nan"), float("inf")


def _torch_norms(model: nn.Module, names: list[str]) -> list[float | None]:
    """What torch says: ``module.weight.grad.norm()`` of each layer's module, None where there is none."""
    out: list[float | None] = []
    for name in names:
        w = getattr(model.get_submodule(name.split(":")[0]), "weight", None)
        out.append(float(w.grad.norm()) if w is not None and w.grad is not None else None)
    return out


def _small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# The norms: computed on the model's device, handed over in the slot, equal to torch's
# ----------------------------------------------------------------------------------------------------------


def test_tap_grad_norms_equal_torch_after_the_same_backward(tiny_net):
    from glnet.capture import capture

    model = tiny_net.train()
    g = torch.Generator().manual_seed(3)
    x, y, probe = torch.randn(6, 3, 16, 16, generator=g), torch.randint(0, 5, (6,)), torch.randn(1, 3, 16, 16)
    trace = capture(model, probe)
    tap = ProbeTap(model, trace.layers, ride_along=probe).install()
    try:
        assert (tap.grad_norms() == NO_GRAD).all()  # no backward yet: no gradient anywhere
        tap.armed = True
        F.cross_entropy(model(x), y).backward()
        got = tap.grad_norms()
        want = _torch_norms(model, [r.name for r in trace.layers])
        assert got.dtype == torch.float32 and got.device == tap.device
        assert any(w is None for w in want) and any(w is not None for w in want)  # pools have no weight
        for v, w in zip(got.tolist(), want, strict=True):
            assert v == NO_GRAD if w is None else v == pytest.approx(w, rel=1e-6)
        slots = Slots(2, tap.flat.numel(), torch.device("cpu"), side=len(trace.layers))
        assert slots.side.is_shared()
        slots.write(1, tap.flat, got)
        assert torch.equal(slots.side[1], got) and (slots.side[0] == NO_GRAD).all()
    finally:
        tap.remove()


@pytest.mark.gl
def test_train_hands_over_the_norms_torch_computes_and_writes_them_to_stats(tmp_path):
    from glnet.train import TrainConfig, train

    model = _small_net()
    seen: list[int] = []
    published = [0]

    def check(step: int, viz) -> None:  # after viz.step: the grads of this step's backward are still there
        h = viz.handover
        if h.published == published[0]:  # no free slot: this step's frame was dropped
            return
        published[0] = h.published
        got = h.slots.side[h.last].tolist()[: len(viz.trace.layers)]  # the norms; the top-5 follow
        want = _torch_norms(model, [r.name for r in viz.trace.layers])
        for v, w in zip(got, want, strict=True):
            assert v == NO_GRAD if w is None else v == pytest.approx(w, rel=1e-6), (step, v, w)
        seen.append(step)

    stats = tmp_path / "s.json"
    cfg = TrainConfig(
        model=model, steps=3, batch=4, image_size=32, headless=True, size=(96, 64), on_step=check,
        stats_json=str(stats),
    )  # fmt: skip
    train(cfg)
    assert seen and seen[0] == 1
    s = json.loads(stats.read_text())
    names = [n for n, _ in model.named_children()]
    norms = s["grad_norms"]
    want = dict(zip(names, _torch_norms(model, names), strict=True))
    assert set(norms) <= set(want) and norms["0"] == pytest.approx(want["0"], rel=1e-5)
    assert all((v is None) == (want[k] is None) for k, v in norms.items())
    assert set(s["dead_frac"]) == set(norms) and all(0 <= v <= 1 for v in s["dead_frac"].values())


# ----------------------------------------------------------------------------------------------------------
# The chart: log10 bars, flagged layers in their own colour
# ----------------------------------------------------------------------------------------------------------


def _column(img: np.ndarray, lay, i: int, colour: tuple[int, int, int]) -> int:
    """Pixels of ``colour`` in the middle column of layer ``i``'s bar, inside the norm plot."""
    a, b = lay.bars[i]
    _, y0, _, y1 = lay.plot
    col = img[y0 + 1 : y1, (a + b) // 2, :3]
    return int((col == colour).all(axis=1).sum())


def test_bar_heights_follow_log10_of_the_norms():
    norms = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 3.0]
    lay = gradflow_layout(norms, 480)
    img = gradflow_image([f"l{i}" for i in range(6)], norms, 480)
    assert img.shape == (lay.height, lay.width, 4) and img.dtype == np.uint8
    heights = [_column(img, lay, i, BAR) for i in range(6)]
    assert heights == [lay.bar_height(v) for v in norms]
    decade = np.diff(heights[:5])
    assert decade.min() > 5 and decade.max() - decade.min() <= 1, heights  # one decade: the same step
    inner = lay.plot[3] - lay.plot[1] - 1
    for v, h in zip(norms, heights, strict=True):
        assert h == pytest.approx((math.log10(v) - lay.lo) / (lay.hi - lay.lo) * inner, abs=1)


def test_vanishing_exploding_and_nonfinite_layers_are_flagged():
    norms = [1.0, 1.3, 1e-9, 0.8, 4e6, NAN, None, 1.1, INF, 0.0, 0.9]
    flags = flag_layers(norms)
    assert flags == {2: "vanishing", 4: "exploding", 5: "non-finite", 8: "non-finite", 9: "vanishing"}
    names = [f"layer{i}" for i in range(len(norms))]
    lay = gradflow_layout(norms, 480)
    img = gradflow_image(names, norms, 480)
    for i, v in enumerate(norms):
        flag, bar = _column(img, lay, i, FLAG), _column(img, lay, i, BAR)
        if i in flags:
            assert flag >= 2 and bar == 0, (i, v)
        elif v is None:
            assert flag == 0 and bar == 0
        else:
            assert flag == 0 and bar > 0, (i, v)
    below = img[lay.caption_y :, :, :3]
    assert (below == FLAG).all(axis=-1).any()  # the caption naming them, in the flag colour
    quiet = gradflow_image(names[:3], [1.0, 2.0, 0.5], 480)
    lay3 = gradflow_layout([1.0, 2.0, 0.5], 480)
    assert not (quiet[:, :, :3] == FLAG).all(axis=-1).any()  # nothing flagged: no flag colour anywhere
    assert all(_column(quiet, lay3, i, BAR) > 0 for i in range(3))


def test_dead_row_shows_each_layers_share():
    norms, dead = [1.0, 1.0, 1.0], [1.0, 0.0, 0.5]
    lay = gradflow_layout(norms, 480)
    img = gradflow_image(["a", "b", "c"], norms, 480, dead=dead, dead_steps=16)
    _, y0, _, y1 = lay.dead
    heights = []
    for a, b in lay.bars:
        col = img[y0 + 1 : y1, (a + b) // 2, :3]
        heights.append(int((col == DEAD).all(axis=1).sum()))
    assert heights[0] == y1 - y0 - 1 and heights[1] == 0 and abs(heights[2] - heights[0] / 2) <= 1


# ----------------------------------------------------------------------------------------------------------
# Dead units: zero in every one of the last K frames
# ----------------------------------------------------------------------------------------------------------


def test_dead_units_read_one_for_an_all_zero_relu_and_zero_for_a_live_one():
    counts = [40, 12, 10]
    offsets, nbytes = layer_offsets(counts)  # padded like the values buffer
    k = 4
    acc = DeadUnits(offsets, counts, "cpu", steps=k)
    assert torch.isnan(acc.fractions()).all() and acc.window == 0
    flat = torch.full((nbytes // 4,), 7.0)  # the padding between layers is never counted
    views = [flat[o // 4 : o // 4 + n] for o, n in zip(offsets, counts, strict=True)]
    g = torch.Generator().manual_seed(0)
    for step in range(k + 3):
        views[0].copy_(F.relu(-torch.rand(counts[0], generator=g) - 0.1))  # a dead ReLU: all zero
        views[1].copy_(F.relu(torch.rand(counts[1], generator=g) + 0.1))  # a live one
        half = torch.zeros(counts[2])
        half[5:] = 1.0 if step == 1 else 0.0  # the second half comes alive once, then stays zero
        views[2].copy_(half)
        acc.add(flat)
        f = acc.fractions().tolist()
        assert f[0] == 1.0 and f[1] == 0.0, (step, f)
        assert f[2] == (0.5 if 1 <= step < 1 + k else 1.0), (step, f)  # dead again after K zero frames
    assert acc.window == k
    views[0][3] = 2.0  # one unit fires once: no longer dead
    acc.add(flat)
    assert acc.fractions()[0] == pytest.approx(1 - 1 / counts[0])


# ----------------------------------------------------------------------------------------------------------
# In the viewer: the norms and dead share reach the chart at the HUD's bottom right
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.gl
def test_live_view_draws_the_chart_from_the_slot(gl, tiny_net):
    from glnet.app import Visualization
    from glnet.camera import camera_from_spec
    from glnet.capture import capture
    from glnet.gpu.framebuffer import Framebuffer
    from glnet.live.view import LiveView

    model = tiny_net.train()
    probe = torch.randn(1, 3, 16, 16)
    trace = capture(model, probe)
    n = len(trace.layers)
    tap = ProbeTap(model, trace.layers, ride_along=probe).install()
    slots = Slots(3, tap.flat.numel(), torch.device("cpu"), side=n)
    vis = Visualization(gl, trace)
    view = LiveView(vis, slots, tap.offsets, [r.neurons for r in trace.layers])
    fb = Framebuffer(gl, 480, 320)
    try:
        tap.armed = True
        F.cross_entropy(model(torch.randn(4, 3, 16, 16)), torch.randint(0, 5, (4,))).backward()
        norms = tap.grad_norms()
        slots.write(0, torch.zeros_like(tap.flat), norms)  # every unit zero: all dead
        meta = FrameMeta(1, losses=[1.0])
        view.absorb(meta)
        view.present(0, meta)
        want = _torch_norms(model, [r.name for r in trace.layers])
        assert [v is None for v in view.grad_norms] == [w is None for w in want]
        assert all(v == pytest.approx(w, rel=1e-6) for v, w in zip(view.grad_norms, want, strict=True) if w)
        assert view.dead_frac == [1.0] * n
        view.draw(camera_from_spec(None, vis.layout, 480 / 320), fb)
        frame = fb.read_rgba()
        lay = gradflow_layout(view.grad_norms, 320)
        region = frame[320 - MARGIN - lay.height : 320 - MARGIN, 480 - MARGIN - lay.width : 480 - MARGIN, :3]
        assert (region == BAR).all(axis=-1).sum() > 20 and (region == DEAD).all(axis=-1).sum() > 20
    finally:
        fb.delete()
        view.close()
        vis.close()
        tap.remove()


# ----------------------------------------------------------------------------------------------------------
# End to end: glnet train records the chart, and it changes as training goes
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.gl
def test_glnet_train_records_a_gradient_chart_that_changes(tmp_path):
    from glnet.cli import main
    from glnet.record import read_video_frames

    frames_dir, stats = tmp_path / "frames", tmp_path / "s.json"
    w, h = 640, 360
    rc = main(
        [
            "train", "resnet18", "--data", "synthetic", "--steps", "8", "--batch", "4", "--input-size", "32",
            "--headless", "--size", f"{w}x{h}", "--record", str(frames_dir), "--stats-json", str(stats),
        ]
    )  # fmt: skip
    assert rc == 0
    s = json.loads(stats.read_text())
    norms = list(s["grad_norms"].values())
    assert len(norms) == 23 and all(v is None or (isinstance(v, float) and v > 0) for v in norms)
    frames = [np.asarray(f) for f in read_video_frames(Path(frames_dir))]
    assert len(frames) == 8
    lay = gradflow_layout(norms, h)
    y0, x0 = h - MARGIN - lay.height, w - MARGIN - lay.width

    def chart(f: np.ndarray) -> np.ndarray:
        return f[y0 : h - MARGIN, x0 : w - MARGIN, :3]

    first, last = chart(frames[0]), chart(frames[-1])
    assert flag_layers(norms) == {}  # a fresh resnet18: no layer's gradient is 1e3 off the median
    for c in (first, last):
        lit, flagged = (c == BAR).all(axis=-1).sum(), (c == FLAG).all(axis=-1).sum()
        assert lit > 200 and flagged == 0, (lit, flagged)  # the bars are there, none flagged
    assert (first != last).any(axis=-1).sum() > 50  # new norms and dead shares every step
