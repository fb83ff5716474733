"""Per-layer distributions: statistics equal torch's own, histograms that count every value once, the
histogram panels drawn where the camera puts them and following new values, the stats in the CLI's JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from glnet.capture import capture
from glnet.distributions import (
    histogram,
    histograms,
    layer_stats,
    trace_histograms,
    trace_stats,
    weight_histograms,
)

STAT_KEYS = {"mean", "std", "min", "max", "zero_frac", "nonfinite"}


def _with_nonfinite(shape: tuple[int, ...]) -> torch.Tensor:
    torch.manual_seed(1)
    t = torch.randn(shape) * 2.5 + 0.7
    flat = t.view(-1)
    flat[3], flat[10], flat[11], flat[50] = float("nan"), float("inf"), -float("inf"), float("nan")
    return t


def test_layer_stats_equal_torch_on_finite_values():
    t = _with_nonfinite((4, 30, 30))
    s = layer_stats(t)
    f = t[torch.isfinite(t)]
    assert s.mean == pytest.approx(float(f.mean()), rel=1e-5)
    assert s.std == pytest.approx(float(f.std()), rel=1e-5)
    assert (s.min, s.max) == (float(f.min()), float(f.max()))
    assert s.nonfinite == 4 and s.count == t.numel()


def test_zero_frac_counts_dead_relu_units():
    torch.manual_seed(2)
    out = torch.relu(torch.randn(8, 16, 16) - 0.3)
    s = layer_stats(out)
    assert s.zero_frac == pytest.approx(float((out == 0).float().mean()))
    assert 0.5 < s.zero_frac < 0.75 and s.min == 0.0 and s.nonfinite == 0


def test_nonfinite_counts_nan_and_both_infinities():
    t = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), 0.0, 3.0])
    s = layer_stats(t)
    assert s.nonfinite == 3 and s.zero_frac == pytest.approx(1 / 6)
    assert (s.mean, s.min, s.max) == (pytest.approx(4 / 3), 0.0, 3.0)
    d = layer_stats(torch.full((5,), float("nan"))).as_dict()
    assert set(d) == STAT_KEYS and d["mean"] is None and d["std"] is None and d["nonfinite"] == 5
    json.dumps(d, allow_nan=False)


def test_trace_stats_are_each_layers_own(tiny_net):
    trace = capture(tiny_net, torch.randn(2, 3, 16, 16))
    assert trace_stats(trace) == [layer_stats(r.value) for r in trace.layers]


def test_histogram_counts_every_value_once():
    t = _with_nonfinite((3, 20, 20))
    h = histogram(t, bins=17)
    assert h.bins == 17 and h.nonfinite == 4
    assert h.counts.sum() + h.nonfinite == t.numel() == h.count
    f = t[torch.isfinite(t)]
    assert (h.lo, h.hi) == (float(f.min()), float(f.max()))
    # every finite value sits in the bin bin_of says
    got = np.bincount([h.bin_of(v) for v in f.tolist()], minlength=17)
    np.testing.assert_array_equal(got, h.counts)
    # a fixed range: values outside fall in the end bins, still counted
    clipped = histogram(t, bins=4, lo=-1.0, hi=1.0)
    assert clipped.counts.sum() == f.numel()
    assert clipped.counts[0] == int((f < -0.5).sum()) and clipped.counts[3] == int((f >= 0.5).sum())


def test_bin_of_and_fraction_below_on_a_known_tensor():
    h = histogram(torch.arange(100.0), bins=10, lo=0.0, hi=100.0)
    np.testing.assert_array_equal(h.counts, [10] * 10)
    assert [h.bin_of(v) for v in (0, 9.99, 10, 25, 99, 100, 250, -5)] == [0, 0, 1, 2, 9, 9, 9, 0]
    assert h.fraction_below(25) == pytest.approx(0.25)
    assert h.fraction_below(70) == pytest.approx(0.70)
    assert (h.fraction_below(-1), h.fraction_below(100)) == (0.0, 1.0)
    zeros = histogram(torch.zeros(7), bins=5)  # lo == hi: everything in bin 0
    assert zeros.counts.tolist() == [7, 0, 0, 0, 0] and zeros.zeros == 7 and zeros.bin_of(0.0) == 0


def test_weight_histograms_count_every_weight(tiny_net):
    trace = capture(tiny_net, torch.randn(1, 3, 16, 16))
    hw = weight_histograms(trace, bins=32)
    assert sorted(hw) == [i for i, r in enumerate(trace.layers) if r.weight is not None] and hw
    for i, h in hw.items():
        assert h.counts.sum() + h.nonfinite == trace.layers[i].weight.numel()
        assert h.lo == float(trace.layers[i].weight.min())
    acts = trace_histograms(trace, bins=32)
    assert [h.count for h in acts] == [r.value.numel() for r in trace.layers]
    assert histograms([], bins=8) == []


def test_a_sampled_histogram_says_its_stride_and_counts_its_sample():
    t = torch.randn(64, 3, 3, 3)  # 1728 values; a stride of 9 or 27 would see one kernel position only
    (h,) = histograms([t], bins=16, limit=100)
    assert h.stride >= 18 and all(h.stride % d for d in range(2, h.stride))
    assert h.count == t.reshape(-1)[:: h.stride].numel() <= 100


# -- the panels in the scene ------------------------------------------------------------------------------
W, H = 240, 180


def _panel_camera(layout, index):
    from glnet.camera import Camera

    p = layout.histogram_panels[index]
    centre = np.array([p.origin[0] + p.size[0] / 2, p.origin[1] - p.size[1] / 2, p.origin[2]])
    # close enough that nothing in front (the input image, earlier slabs) is in view
    cam = Camera(position=centre + np.array([0.0, 0.0, 0.75 * p.size[1]]), fov=90.0).look_at(centre)
    return cam, p


def _uv_points(panel, uv):
    x, y, z = panel.origin
    return np.array([[x + u * panel.size[0], y - v * panel.size[1], z] for u, v in uv])


@pytest.mark.gl
def test_histogram_panel_drawn_where_projected_and_follows_new_values(gl, tiny_net):
    from glnet.app import Visualization
    from glnet.colormap import BACKGROUND
    from glnet.gpu.framebuffer import Framebuffer

    trace = capture(tiny_net, torch.randn(1, 3, 16, 16))
    live = gl.live_objects
    vis = Visualization(gl, trace, renderer="instanced")
    fb = Framebuffer(gl, W, H)
    try:
        hp = vis.scene.histograms
        assert set(vis.layout.histogram_panels) == set(range(len(trace.layers)))
        cam, panel = _panel_camera(vis.layout, 0)
        vis.render(cam, fb, hud=False, finish=True)
        before, tex_before = fb.read_rgba(), hp.textures[0].read()
        assert hp.refreshes == 1 and set(hp.textures) == set(vis.layout.histogram_panels)
        th, tw = tex_before.shape[:2]
        assert tw / th == pytest.approx(panel.size[0] / panel.size[1], rel=0.02)
        assert hp.latest[0][0].counts.tolist() == histogram(trace.layers[0].value).counts.tolist()
        # at points across the panel (its centre among them) the pixel is the texture there, filtered
        uv = [(u, v) for u in (0.2, 0.5, 0.8) for v in (0.15, 0.5, 0.85)]
        pr = cam.project(_uv_points(panel, uv), W, H)
        assert pr.visible.all()
        for (u, v), x, y in zip(uv, pr.x, pr.y, strict=True):
            px = before[H - 1 - int(y), int(x), :3].astype(int)
            tx, ty = int(u * tw), int(v * th)
            near = tex_before[max(ty - 2, 0) : ty + 3, max(tx - 2, 0) : tx + 3, :3].reshape(-1, 3).astype(int)
            assert (near.min(0) - 2 <= px).all() and (px <= near.max(0) + 2).all(), (u, v, px)
        # just outside the panel, above and to the right of it: background
        bg = np.round(np.array(BACKGROUND) * 255).astype(int)
        out = cam.project(_uv_points(panel, [(0.5, -0.08), (1.08, 0.5)]), W, H)
        for x, y in zip(out.x, out.y, strict=True):
            assert (before[H - 1 - int(y), int(x), :3] == bg).all()

        # new values: queued, recomputed within `every` updates, then drawn
        vis.update([torch.relu(r.value * -3.0 + 1.0) for r in trace.layers])
        vis.render(cam, fb, hud=False, finish=True)
        assert hp.refreshes == 1  # bounded: not every update recomputes
        hp.refresh()
        vis.render(cam, fb, hud=False, finish=True)
        after = fb.read_rgba()
        assert hp.refreshes == 2
        assert hp.latest[0][0].zeros == int((torch.relu(trace.layers[0].value * -3.0 + 1.0) == 0).sum())
        assert not np.array_equal(hp.textures[0].read(), tex_before)
        x0, x1 = int(pr.x.min()), int(pr.x.max())
        r0, r1 = H - 1 - int(pr.y.max()), H - 1 - int(pr.y.min())
        assert (after[r0:r1, x0:x1] != before[r0:r1, x0:x1]).any(axis=2).mean() > 0.05

        # the flag turns them off
        vis.scene.show_histograms = False
        vis.render(cam, fb, hud=False, finish=True)
        off = fb.read_rgba()
        centre = cam.project(_uv_points(panel, [(0.5, 0.25)]), W, H)
        r, c = H - 1 - int(centre.y[0]), int(centre.x[0])
        assert not np.array_equal(off[r, c], after[r, c])
    finally:
        fb.delete()
        vis.close()
    assert gl.live_objects == live  # the panels' textures and program are released with the scene


@pytest.mark.gl
def test_snapshot_stats_json_has_each_layers_distribution(tmp_path, gl_ctx):
    from glnet.cli import main
    from glnet.pipeline import trace_model

    out, stats = tmp_path / "r18.png", tmp_path / "r18.json"
    args = ["snapshot", "resnet18", "--out", str(out), "--size", "160x90", "--input-size", "64"]
    assert main([*args, "--stats-json", str(stats)]) == 0
    layers = json.loads(stats.read_text())["layers"]
    trace = trace_model("resnet18", input_size=64).trace
    assert len(layers) == len(trace.layers)
    for entry, r in zip(layers, trace.layers, strict=True):
        assert set(entry) >= {"name", "kind", "shape", "neurons"} | STAT_KEYS and entry["name"] == r.name
        v = r.value
        assert entry["mean"] == pytest.approx(float(v.mean()), rel=1e-5, abs=1e-6)
        assert entry["std"] == pytest.approx(float(v.std()), rel=1e-5)
        assert entry["min"] == pytest.approx(float(v.min()), rel=1e-6)
        assert entry["max"] == pytest.approx(float(v.max()), rel=1e-6)
        assert entry["zero_frac"] == pytest.approx(float((v == 0).float().mean()), abs=1e-6)
        assert entry["nonfinite"] == 0
    assert any(e["zero_frac"] > 0.2 for e in layers)  # ReLU layers: dead units are counted
    assert not math.isnan(layers[0]["std"])
