"""Off-axis tiles: their frusta cover the full frustum exactly, tile renders stitch into one big render, and
``glnet snapshot --tiles`` streams a PNG equal to one big snapshot."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from glnet.camera import Camera
from glnet.errors import InputError
from glnet.tiles import PngStream, parse_grid, suggest_grid, tile_rects


def _camera() -> Camera:
    cam = Camera(np.array([0.3, -0.2, 5.0]), fov=50.0, near=0.1, far=100.0)
    return cam.look_at((0.5, 0.1, 0.0))


def _ndc_to_pixels(clip: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Clip coordinates (N, 4) to window pixels (x, y from the top) of a frame of ``size``."""
    ndc = clip[:, :2] / clip[:, 3:]
    return np.c_[(ndc[:, 0] + 1) / 2 * size[0], (1 - ndc[:, 1]) / 2 * size[1]]


def test_tiles_cover_the_frame_without_gaps_or_overlaps():
    for size, grid in [((320, 180), (2, 2)), ((1001, 777), (3, 5)), ((7, 3), (7, 3))]:
        rows = tile_rects(size, grid)
        cover = np.zeros(size[::-1], np.int32)
        for row in rows:
            for x, y, w, h in row:
                cover[y : y + h, x : x + w] += 1
        assert (cover == 1).all()
    with pytest.raises(InputError):
        tile_rects((4, 4), (5, 1))


def test_tile_frusta_partition_the_full_frustum():
    """A world point lands at the same full-frame pixel through every tile that holds it, each tile's NDC
    corners are the full frame's pixel corners of its rectangle, and the depth rows are untouched."""
    cam, size = _camera(), (320, 180)
    full_proj = cam.projection_matrix(size[0] / size[1])
    rng = np.random.default_rng(0)
    pts = np.c_[rng.uniform(-3, 3, (4000, 2)), rng.uniform(-4, 2, 4000), np.ones(4000)]
    full_clip = pts @ (full_proj @ cam.view_matrix()).T
    full_px = _ndc_to_pixels(full_clip, size)
    inside_full = (np.abs(full_clip[:, :2]) <= full_clip[:, 3:]).all(1) & (full_clip[:, 3] > 0)
    hits = np.zeros(len(pts), np.int32)
    for row in tile_rects(size, (3, 2)):
        for x0, y0, w, h in row:
            t = cam.tiled(size, (x0, y0, w, h))
            proj = t.projection_matrix(w / h)
            assert np.allclose(proj[2:], full_proj[2:])  # depth and w: LOD and depth tests unchanged
            assert t.focal_px(h) == cam.focal_px(size[1])  # point sizes: the full frame's
            clip = pts @ (proj @ t.view_matrix()).T
            inside = (np.abs(clip[:, :2]) <= clip[:, 3:]).all(1) & (clip[:, 3] > 0)
            local = _ndc_to_pixels(clip, (w, h))
            assert np.allclose(local[inside] + (x0, y0), full_px[inside], atol=1e-6)
            inner = inside & (np.abs(clip[:, :2]) < 0.999 * clip[:, 3:]).all(1)
            hits += inner
            # the tile's frustum corners are its rectangle's corners in the full frame
            inv = np.linalg.inv(proj)
            corners = np.array([[-1, -1, 0, 1], [1, -1, 0, 1], [-1, 1, 0, 1], [1, 1, 0, 1]], float) @ inv.T
            back = corners @ full_proj.T
            px = _ndc_to_pixels(back, size)
            want = [(x0, y0 + h), (x0 + w, y0 + h), (x0, y0), (x0 + w, y0)]
            assert np.allclose(px, want, atol=1e-6)
    # every point well inside the full frame is inside exactly one tile (bar those on a seam)
    assert hits.max() <= 1
    assert hits[inside_full].mean() > 0.97
    untiled = cam.copy()
    assert untiled.tile is None and cam.tiled(size, (0, 0, *size)).projection_matrix(1.0) == pytest.approx(
        full_proj
    )


def test_png_stream_round_trips_and_removes_a_partial_file(tmp_path):
    img = np.random.default_rng(1).integers(0, 255, (37, 53, 3), np.uint8)
    out = tmp_path / "s.png"
    with PngStream(out, 53, 37) as png:
        png.write(img[:20])
        png.write(np.dstack([img[20:], np.full((17, 53, 1), 255, np.uint8)]))
    assert (np.asarray(Image.open(out)) == img).all()
    bad = tmp_path / "bad.png"
    with pytest.raises(RuntimeError), PngStream(bad, 53, 37) as png:
        png.write(img[:20])
        raise RuntimeError("interrupted")
    assert not bad.exists()


def test_grid_parsing_and_suggestion():
    assert parse_grid("4x4") == (4, 4) and parse_grid(" 3X2 ") == (3, 2)
    for bad in ("0x2", "4", "axb", "65x1"):
        with pytest.raises(InputError, match="tiles"):
            parse_grid(bad)
    c, r = suggest_grid((30720, 17280), 16384)
    assert (c, r) == (2, 2)


@pytest.mark.gl
@pytest.mark.parametrize("renderer", ["compute", "instanced", "torch"])
def test_tile_renders_stitch_into_one_big_render(gl, renderer):
    """Close to a layer the discs are several pixels wide: without the guard band the seams lose the discs
    whose centres fall in the neighbour tile; with it the stitched image is the big render."""
    from glnet.app import Visualization
    from glnet.camera import camera_from_spec
    from glnet.gpu.framebuffer import Framebuffer
    from glnet.pipeline import trace_model
    from glnet.tiles import TileRenderer

    prep = trace_model("resnet18", input_size=64, seed=0)
    size = (320, 180)
    vis = Visualization(gl, prep.trace, renderer=renderer)
    fb = Framebuffer(gl, *size)
    try:
        for spec in ("layer:layer4.1.conv2", None):
            cam = camera_from_spec(spec, vis.layout, size[0] / size[1])
            vis.render(cam, fb, hud=False, finish=True)
            big = fb.read_rgba()
            same = {}
            for guard in (0, 26):
                tiles = TileRenderer(vis, size, guard=guard)
                out = np.zeros_like(big)
                for row in tile_rects(size, (2, 2)):
                    for x, y, w, h in row:
                        out[y : y + h, x : x + w] = tiles.render(cam, (x, y, w, h))
                tiles.close()
                same[guard] = (out == big).all(-1).mean()
            assert (big != big[0, -1]).any(-1).mean() > 0.05, "the view should show neurons"
            assert same[26] >= 0.9995, same
            if spec is not None and renderer != "instanced":  # GL may draw a clipped point's visible part
                assert same[0] < same[26] - 0.002, same  # the guard band is what closes the seams
    finally:
        fb.delete()
        vis.close()


@pytest.mark.gl
def test_snapshot_tiles_equals_one_big_snapshot(tmp_path, gl_ctx):
    from glnet.cli import main

    base = ["snapshot", "resnet18", "--input-size", "64", "--size", "320x180", "--no-hud"]
    big, tiled, stats = tmp_path / "big.png", tmp_path / "tiled.png", tmp_path / "t.json"
    assert main([*base, "--out", str(big)]) == 0
    assert main([*base, "--out", str(tiled), "--tiles", "2x2", "--stats-json", str(stats)]) == 0
    a, b = np.asarray(Image.open(big)), np.asarray(Image.open(tiled))
    assert a.shape == b.shape == (180, 320, 3)
    assert (a == b).all(-1).mean() >= 0.999
    assert (a != a[0, -1]).any(-1).mean() > 0.05
    import json

    s = json.loads(stats.read_text())
    assert s["tiles"] == "2x2" and s["width"] == 320 and len(s["frame_ms_samples"]) == 4


def test_snapshot_past_the_limit_asks_for_tiles(tmp_path, capsys, gl_ctx):
    from glnet.cli import main

    limit = gl_ctx.max_texture_size
    rc = main(["snapshot", "resnet18", "--out", str(tmp_path / "x.png"), "--size", f"{limit + 1}x64"])
    err = capsys.readouterr().err
    assert rc == 2 and "--tiles 2x1" in err and len(err.strip().splitlines()) == 1
    rc = main(["snapshot", "resnet18", "--out", str(tmp_path / "x.jpg"), "--tiles", "2x2"])
    assert rc == 2 and "PNG" in capsys.readouterr().err
