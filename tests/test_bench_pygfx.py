"""The pygfx ``Points`` peer of ``glnet bench``: its picture, its JSON, and a clear error when it cannot run.

Skipped only when wgpu finds no Vulkan adapter (``install.sh`` installs Mesa's lavapipe, so there is one after
it); a missing pygfx is a failure here, as ``glnet[test]`` brings the ``peers`` extra.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

import glnet.bench.harness as harness
from glnet.bench import MARKERS, PYGFX, BenchResult, BenchSchemaError, run_bench, synthetic_workload, validate
from glnet.bench.peers.pygfx_points import (
    PygfxAdapter,
    PygfxPoints,
    PygfxUnavailableError,
    probe,
    skip_reason,
)
from glnet.bench.peers.vispy_markers import markers_data
from glnet.camera import named_camera
from glnet.cli import main
from glnet.colormap import BACKGROUND

MIN_DIAMETER_PX = 1.415  # pygfx's smallest non-antialiased point (its WGSL: sqrt(2) physical pixels)
EDGE_PX = 0.3  # pixel centres this close to a disc's rim may fall either side: not checked
COLOUR_TOL = 3  # 8-bit steps: glnet's colours go through pygfx's sRGB round trip


@pytest.fixture(scope="module")
def adapter() -> PygfxAdapter:
    """The adapter the peer draws with; skips only when there is no Vulkan adapter."""
    if importlib.util.find_spec("pygfx") is None or importlib.util.find_spec("wgpu") is None:
        pytest.fail("pygfx and wgpu are missing: pip install -e '.[test]' (it brings glnet[peers])")
    try:
        return probe()
    except PygfxUnavailableError as e:
        pytest.skip(f"no Vulkan adapter: {e}")


def _reference(work, camera, size):
    """Which point each pixel shows (-1: background) by painter's order, and the pixels too close to call."""
    width, height = size
    pos, rgba, diameter = markers_data(work, camera, size)
    proj = camera.project(pos, width, height)
    radius = np.maximum(diameter, MIN_DIAMETER_PX) / 2
    owner = np.full((height, width), -1)
    depth = np.full((height, width), np.inf)
    unsure = np.zeros((height, width), bool)
    ys, xs = np.mgrid[0:height, 0:width] + 0.5  # pixel centres, y up from the bottom row
    for i in np.argsort(-proj.w):  # far to near: the nearest disc ends on top, as the depth test does
        if not proj.visible[i]:
            continue
        r = radius[i] + EDGE_PX
        x0, x1 = max(0, int(proj.x[i] - r)), min(width, int(proj.x[i] + r) + 2)
        y0, y1 = max(0, int(proj.y[i] - r)), min(height, int(proj.y[i] + r) + 2)
        if x0 >= x1 or y0 >= y1:
            continue
        box = (slice(y0, y1), slice(x0, x1))
        d = np.hypot(xs[box] - proj.x[i], ys[box] - proj.y[i])
        inside = d <= radius[i] - EDGE_PX
        unsure[box] |= np.abs(d - radius[i]) < EDGE_PX
        tie = inside & (np.abs(depth[box] - proj.w[i]) < 1e-3 * proj.w[i])  # equal depth: either may win
        unsure[box] |= tie
        owner[box][inside] = i
        depth[box][inside] = proj.w[i]
    return owner[::-1], unsure[::-1], rgba, proj  # top row first, as the image


@pytest.mark.parametrize(("points", "size"), [(2000, (320, 180)), (10000, (640, 360))])
def test_pygfx_draws_the_points_where_the_camera_projects_them(adapter, points, size):
    """Each point's projected pixel shows its colour (or a nearer point's), and the rest is background."""
    width, height = size
    work = synthetic_workload(points)
    camera = named_camera("overview", work.layout, width / height)
    with PygfxPoints(work, camera, size) as peer:
        peer.frame()
        img = peer.read_rgba()
        assert peer.gpu_bytes == points * 28 and peer.upload_ms > 0
    assert img.shape == (height, width, 4) and img.dtype == np.uint8
    img = img[..., :3].astype(int)
    owner, unsure, rgba, proj = _reference(work, camera, size)
    colour = np.round(rgba[:, :3] * 255).astype(int)
    bg = np.round(np.asarray(BACKGROUND) * 255).astype(int)

    # the pixels at Camera.project positions: lit in the colour of the point on top there
    vis = np.flatnonzero(proj.visible)
    col = np.floor(proj.x[vis]).astype(int)
    row = height - 1 - np.floor(proj.y[vis]).astype(int)
    sure = ~unsure[row, col] & (owner[row, col] >= 0)
    assert sure.mean() > 0.5, "most projected centres should be unambiguous"
    want = colour[owner[row, col][sure]]
    got = img[row[sure], col[sure]]
    assert (np.abs(got - want).max(axis=1) <= COLOUR_TOL).mean() > 0.98
    assert (owner[row, col][sure] == vis[sure]).mean() > 0.5, "mostly the point itself is on top"

    # everywhere else: the background, exactly (up to the sRGB round trip)
    empty = (owner < 0) & ~unsure
    assert empty.mean() > 0.5
    assert np.abs(img[empty] - bg).max() <= 2
    # and every unambiguous lit pixel in its owner's colour
    lit = (owner >= 0) & ~unsure
    assert (np.abs(img[lit] - colour[owner[lit]]).max(axis=1) <= COLOUR_TOL).mean() > 0.98


@pytest.mark.gl
def test_bench_run_with_pygfx_validates(gl, adapter, tmp_path):
    result = run_bench(
        [2000],
        size=(160, 90),
        frames=2,
        warmup=1,
        renderers=["compute", MARKERS, PYGFX],
        ctx=gl,
        images=tmp_path,
    )
    doc = result.to_dict()
    validate(doc)
    m = doc["machine"]
    assert (m["wgpu_adapter"], m["wgpu_backend"]) == (adapter.name, adapter.backend) and m["wgpu_driver"]
    assert m["versions"]["pygfx"] and m["versions"]["wgpu"]
    cases = {c["renderer"]: c for c in doc["cases"]}
    assert set(cases) == {"compute", MARKERS, PYGFX} and not doc["skipped"]
    c = cases[PYGFX]
    assert (c["points"], c["width"], c["height"], c["frames"], c["warmup"]) == (2000, 160, 90, 2, 1)
    assert c["bytes_per_point"] == 28.0 and c["upload_bytes"] == 2000 * 28
    assert c["ratio_vs_markers"] == pytest.approx(
        cases[MARKERS]["frame_ms_p50"] / c["frame_ms_p50"], rel=1e-2
    )
    assert c["image"] and (tmp_path / f"synthetic-2000-{PYGFX}.png").is_file()
    assert BenchResult.from_dict(json.loads(result.to_json())).to_dict() == doc
    assert f"{PYGFX} on {adapter.name}" in result.table()
    assert [case.renderer for case, _ in result.ratios()] == ["compute"], "peers are not glnet's speed-ups"
    doc["machine"]["wgpu_adapter"] = 3
    with pytest.raises(BenchSchemaError, match=r"^\$\.machine\.wgpu_adapter:"):
        validate(doc)


@pytest.mark.gl
def test_missing_pygfx_is_a_one_line_error(gl_ctx, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pygfx", None)  # import pygfx now raises ImportError
    args = [
        "bench",
        "--points",
        "1000",
        "--size",
        "32x18",
        "--frames",
        "1",
        "--renderers",
        f"compute,{PYGFX}",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"glnet: error: {PYGFX} needs pygfx and wgpu (pip install 'glnet[peers]')")
    assert not any("Traceback" in line for line in err)
    with pytest.raises(PygfxUnavailableError) as e:
        run_bench([1000], size=(32, 18), frames=1, renderers=[PYGFX], ctx=gl_ctx)
    assert "\n" not in str(e.value)
    gl_ctx.make_current()


@pytest.mark.gl
def test_auto_skips_a_missing_pygfx_with_a_note(gl, monkeypatch):
    monkeypatch.setitem(sys.modules, "pygfx", None)
    monkeypatch.setattr(harness, "RENDERERS", ("compute", PYGFX))  # auto: every renderer (two, here)
    said: list[str] = []
    result = run_bench(
        [1000], size=(32, 18), frames=1, warmup=0, renderers="auto", ctx=gl, progress=said.append
    )
    doc = result.to_dict()
    assert [c["renderer"] for c in doc["cases"]] == ["compute"]
    assert doc["settings"]["renderers"] == ["compute"]
    assert [(s["renderer"], s["workload"]) for s in doc["skipped"]] == [(PYGFX, "synthetic-1000")]
    assert "pip install 'glnet[peers]'" in doc["skipped"][0]["reason"]
    assert any(line.startswith(f"note: skipping {PYGFX}: ") for line in said)
    assert "wgpu_adapter" not in doc["machine"]


def test_skip_reason_names_the_adapter_limit():
    small = PygfxAdapter("tiny", "Vulkan", "CPU", "test", max_binding_bytes=1000, versions={})
    work = synthetic_workload(1000)
    assert "storage-buffer limit" in (skip_reason(work, small) or "")
    big = PygfxAdapter("big", "Vulkan", "CPU", "test", max_binding_bytes=2**31, versions={})
    assert skip_reason(work, big) is None
