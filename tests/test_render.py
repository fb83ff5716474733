"""Rendering, looked at as pixels: neurons where the camera puts them, in the colormap's colours, depth-tested

Both renderers draw the same scenes; ``colour_codes``/``lut`` (the Python mirror of ``colormap.glsl``) and
``Camera.project`` (the mirror of ``camera.glsl``) say what each pixel must hold.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glnet.camera import Camera, layer_camera
from glnet.colormap import BACKGROUND, CODE_NAN, CODE_NEG_INF, CODE_POS_INF, ValueRange, colour_codes, lut
from glnet.layout import build_layout, neuron_positions

pytestmark = pytest.mark.gl

W, H = 200, 150
RENDERERS = ["instanced", "compute"]


def _render(ctx, layout, values, camera, renderer, ranges=None):
    from glnet.gpu.cloud import NeuronCloud
    from glnet.gpu.framebuffer import Framebuffer
    from glnet.render.scene import SceneRenderer

    cloud = NeuronCloud(ctx, layout)
    scene = SceneRenderer(ctx, cloud, renderer)
    fb = Framebuffer(ctx, W, H)
    try:
        cloud.set_values(values, ranges)
        stats = scene.render(camera, fb, finish=True)
        return fb.read_rgba(), stats, [layer.range for layer in cloud.layers]
    finally:
        fb.delete()
        scene.close()
        cloud.close()


def _pixels(camera, points):
    pr = camera.project(points, W, H)
    cols = np.floor(pr.x).astype(int)
    rows = H - 1 - np.floor(pr.y).astype(int)
    return rows, cols, pr


@pytest.mark.parametrize("renderer", RENDERERS)
def test_neurons_at_projected_pixels_in_colormap_colours(gl, renderer):
    layout = build_layout([("a", (2, 3, 4))])
    values = torch.linspace(-1.0, 2.0, 24).reshape(2, 3, 4)
    values[0, 1, 1] = float("nan")
    values[1, 0, 0] = float("inf")
    values[1, 2, 3] = -float("inf")
    cam = layer_camera(layout, 0, W / H)
    img, stats, ranges = _render(gl, layout, [values], cam, renderer)
    assert stats.renderer == renderer and stats.neurons_drawn == 24
    rows, cols, pr = _pixels(cam, neuron_positions(layout.slabs[0]))
    assert pr.visible.all()
    codes = colour_codes(values.flatten(), ranges[0])
    table = lut()
    got = img[rows, cols]
    np.testing.assert_array_equal(got, table[codes])
    assert codes[5] == CODE_NAN and tuple(got[5][:3]) == (255, 0, 255)
    assert codes[12] == CODE_POS_INF and codes[23] == CODE_NEG_INF
    assert ranges[0].diverging  # a signed layer gets the diverging map


@pytest.mark.parametrize("renderer", RENDERERS)
def test_background_where_no_neuron_and_discs_are_round(gl, renderer):
    layout = build_layout([("a", (1, 2, 2))])
    cam = layer_camera(layout, 0, W / H)
    img, _, _ = _render(gl, layout, [torch.ones(1, 2, 2)], cam, renderer)
    bg = np.round(np.array(BACKGROUND) * 255).astype(np.uint8)
    assert (img[0, 0, :3] == bg).all() and (img[H // 2, W // 2, :3] == bg).all()  # between neurons
    slab = layout.slabs[0]
    _, _, pr = _pixels(cam, neuron_positions(slab))
    radius = 0.5 * slab.point_size * cam.focal_px(H) / pr.w[0]
    assert radius > 4
    # every pixel near the first neuron: lit exactly when its centre is within the radius (or holds it)
    cx, cy = pr.x[0], pr.y[0]
    span = int(radius) + 2
    for py in range(int(cy) - span, int(cy) + span + 1):
        for px in range(int(cx) - span, int(cx) + span + 1):
            d2 = (px + 0.5 - cx) ** 2 + (py + 0.5 - cy) ** 2
            if abs(d2**0.5 - radius) < 0.05:
                continue  # too close to the rim to call in float32
            covered = d2 <= radius**2 or (px == int(cx) and py == int(cy))
            lit = not (img[H - 1 - py, px, :3] == bg).all()
            assert lit == covered, (px, py, d2**0.5, radius)


@pytest.mark.parametrize("renderer", RENDERERS)
@pytest.mark.parametrize("side", ["front", "back"])
def test_near_neuron_hides_far_neuron(gl, renderer, side):
    """Seen from the front the near layer is drawn first, from the back last: depth decides either way."""
    layout = build_layout([("a", (1, 3, 3)), ("b", (1, 3, 3))])
    a, _b = layout.slabs
    near, far = (0, 1) if side == "front" else (1, 0)
    values = [torch.zeros(1, 3, 3), torch.zeros(1, 3, 3)]
    values[far] = torch.full((1, 3, 3), float("nan"))  # the far layer is all magenta
    centre = layout.slabs[near].centre
    cam = Camera(fov=40.0)
    cam.position = centre + np.array([0.0, 0.0, (1 if side == "front" else -1) * (3 * max(a.size) + 1)])
    cam.look_at(centre)
    img, _, ranges = _render(gl, layout, values, cam, renderer)
    rows, cols, _ = _pixels(cam, neuron_positions(layout.slabs[near]))
    expected = lut()[colour_codes(values[near].flatten(), ranges[near])]
    np.testing.assert_array_equal(img[rows, cols], expected)
    assert (img[..., :3] == (255, 0, 255)).all(axis=-1).any(), "the far layer shows around the near one"


def test_renderers_agree_on_a_model_scene(gl, tiny_net):
    """The compute rasterizer and the point sprites draw the same picture (within a share of pixels)."""
    from glnet.app import Visualization
    from glnet.camera import named_camera
    from glnet.capture import capture
    from glnet.gpu.framebuffer import Framebuffer

    trace = capture(tiny_net, torch.randn(1, 3, 16, 16))
    images = {}
    for renderer in RENDERERS:
        vis = Visualization(gl, trace, renderer=renderer)
        fb = Framebuffer(gl, 320, 180)
        try:
            cam = named_camera("overview", vis.layout, 320 / 180)
            vis.render(cam, fb, hud=False, finish=True)
            images[renderer] = fb.read_rgba()
        finally:
            fb.delete()
            vis.close()
    a, b = (images[r][..., :3].astype(int) for r in ("instanced", "compute"))
    bg = np.round(np.array(BACKGROUND) * 255).astype(int)
    # Over the whole frame the background would dominate the share and hide disagreement: count only
    # pixels that either renderer lit.
    lit = (a != bg).any(axis=-1) | (b != bg).any(axis=-1)
    assert lit.sum() >= 2000, f"only {lit.sum()} lit pixels: too few for the share to mean anything"
    same = (np.abs(a - b).max(axis=-1) <= 1)[lit].mean()
    assert same >= 0.99, f"only {same:.4f} of lit pixels agree"


def test_explicit_ranges_are_used(gl):
    layout = build_layout([("a", (1, 1, 2))])
    cam = layer_camera(layout, 0, W / H)
    rng = ValueRange(0.0, 10.0, False)
    img, _, ranges = _render(gl, layout, [torch.tensor([[[0.0, 10.0]]])], cam, "compute", [rng])
    assert ranges[0] == rng
    rows, cols, _ = _pixels(cam, neuron_positions(layout.slabs[0]))
    table = lut()
    np.testing.assert_array_equal(img[rows, cols], table[[0, 479]])
