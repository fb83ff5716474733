"""The compute rasterizer against its torch reference, and against the point-sprite path, on fixed scenes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import layered_scene

from glnet.camera import named_camera
from glnet.colormap import robust_range
from glnet.layout import build_layout
from glnet.render.frame import FrameParams, plan_draws
from glnet.render.reference import EMPTY_KEY, rasterize_reference, resolve_reference

pytestmark = pytest.mark.gl

W, H = 320, 180


def _gl_keys(ctx, layout, values, camera, depth=True, more=False):
    from glnet.gpu.cloud import NeuronCloud
    from glnet.gpu.framebuffer import Framebuffer
    from glnet.render.raster import ComputeNeurons

    cloud = NeuronCloud(ctx, layout)
    raster = ComputeNeurons(ctx)
    fb = Framebuffer(ctx, W, H)
    try:
        cloud.set_values(values)
        cloud.flush()
        frame = FrameParams(camera, W, H)
        fb.bind()
        from OpenGL import GL

        from glnet.colormap import BACKGROUND

        GL.glClearColor(*BACKGROUND, 1.0)
        GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT)
        raster.draw(cloud, frame, plan_draws(cloud, frame), depth=depth)
        keys = raster.read_keys().reshape(H, W).astype(np.int64)
        if more:
            return keys, fb.read_rgba(), fb.read_depth(), raster.rect
        return keys, fb.read_rgba(), [layer.range for layer in cloud.layers]
    finally:
        fb.delete()
        raster.close()
        cloud.close()


@pytest.mark.parametrize("view", ["overview", "front", "side", "layer:1"])
def test_gl_compute_matches_the_torch_reference(gl, view):
    layout, values = layered_scene()
    cam = named_camera(view, layout, W / H) if not view.startswith("layer") else None
    if cam is None:
        from glnet.camera import layer_camera

        cam = layer_camera(layout, 1, W / H)
    keys, image, ranges = _gl_keys(gl, layout, values, cam)
    ref = rasterize_reference(layout.slabs, values, ranges, FrameParams(cam, W, H)).numpy()
    covered = (ref != EMPTY_KEY).mean()
    assert covered > 0.01, "the view should show something"
    same = (keys == ref).mean()
    assert same >= 0.999, f"{view}: only {same:.5f} of keys agree"
    # colour only (the depth bits may differ in the last place where float rounding differs)
    assert ((keys & 1023) == (ref & 1023)).mean() >= 0.999
    ref_img = resolve_reference(torch.from_numpy(ref))
    assert (np.abs(ref_img.astype(int) - image.astype(int)).max(-1) == 0).mean() >= 0.999


@pytest.mark.parametrize("view", ["overview", "side", "layer:1"])
def test_present_covers_every_key_and_depth_is_optional(gl, view):
    """The present pass runs only over the pixels the layers can reach (a rect holding every written key,
    smaller than the frame from afar) and draws the same colours with or without writing depth."""
    from glnet.camera import layer_camera

    layout, values = layered_scene()
    cam = layer_camera(layout, 1, W / H) if view.startswith("layer") else named_camera(view, layout, W / H)
    keys, image, depth, (x, y, w, h) = _gl_keys(gl, layout, values, cam, depth=True, more=True)
    rows, cols = np.nonzero(keys != EMPTY_KEY)  # bottom row first, as GL's scissor counts
    assert len(rows) and cols.min() >= x and cols.max() < x + w and rows.min() >= y and rows.max() < y + h
    if view == "overview":
        assert w * h < 0.8 * W * H, "from afar the present pass should skip empty parts of the frame"
    flat_keys, flat_image, flat_depth, _ = _gl_keys(gl, layout, values, cam, depth=False, more=True)
    np.testing.assert_array_equal(flat_keys, keys)
    np.testing.assert_array_equal(flat_image, image)
    drawn = (keys != EMPTY_KEY)[::-1]  # top row first, as the read images are
    assert (depth[drawn] < 1.0).all() and (depth[~drawn] == 1.0).all()
    assert (flat_depth == 1.0).all()


def test_depth_and_nan_in_the_reference(gl):
    """A near layer hides a far one, in the reference as on the GPU; NaN is drawn as NaN."""
    layout = build_layout([("near", (1, 4, 4)), ("far", (1, 4, 4))])
    values = [torch.zeros(1, 4, 4), torch.full((1, 4, 4), float("nan"))]
    cam = named_camera("front", layout, W / H)
    ranges = [robust_range(v) for v in values]
    ref = rasterize_reference(layout.slabs, values, ranges, FrameParams(cam, W, H)).numpy()
    codes = ref[ref != EMPTY_KEY] & 1023
    assert (codes != 960).sum() > (codes == 960).sum()  # mostly the near layer
    keys, _, _ = _gl_keys(gl, layout, values, cam)
    assert (keys == ref).mean() >= 0.999


def test_level_of_detail_draws_channel_means(gl):
    """With LOD on, a far dense layer is drawn as one disc per channel holding that channel's mean."""
    from glnet.camera import Camera
    from glnet.gpu.cloud import NeuronCloud

    layout = build_layout([("dense", (4, 64, 64))])
    values = [torch.stack([torch.full((64, 64), float(c)) for c in range(4)])]
    cloud = NeuronCloud(gl, layout)
    try:
        cloud.set_values(values)
        cloud.flush()
        cam = Camera(fov=30.0, far=1e6)
        cam.position = layout.slabs[0].centre + np.array([0.0, 0.0, 2000.0])
        cam.look_at(layout.slabs[0].centre)
        frame = FrameParams(cam, W, H)
        full = plan_draws(cloud, frame, lod=False)
        lod = plan_draws(cloud, frame, lod=True)
        assert [it.aggregate for it in full] == [False] and full[0].count == 4 * 64 * 64
        assert [it.aggregate for it in lod] == [True] and lod[0].count == 4
        means = cloud.aggregates.read(*cloud.aggregate_range(0), dtype=np.float32)
        np.testing.assert_allclose(means, [0, 1, 2, 3])
        near = Camera(fov=30.0)
        near.position = layout.slabs[0].centre + np.array([0.0, 0.0, 30.0])
        near.look_at(layout.slabs[0].centre)
        assert not plan_draws(cloud, FrameParams(near, W, H), lod=True)[0].aggregate  # close up: every neuron
    finally:
        cloud.close()


def test_budget_keeps_largest_layers_as_means(gl):
    from glnet.gpu.cloud import NeuronCloud

    layout = build_layout([("big", (8, 32, 32)), ("small", (4, 4, 4))])
    cloud = NeuronCloud(gl, layout, max_neurons=1000)
    try:
        assert cloud.forced == {0} and cloud.neurons_on_gpu == 64
        assert cloud.values.nbytes < 8 * 32 * 32 * 4
        values = [torch.randn(8, 32, 32), torch.randn(4, 4, 4)]
        cloud.set_values(values)
        cloud.flush()
        np.testing.assert_array_equal(cloud.read_values(1), values[1].numpy().ravel())
        with pytest.raises(ValueError, match="budget"):
            cloud.read_values(0)
    finally:
        cloud.close()


def test_renderer_choice_is_honoured(gl):
    from glnet.gpu.cloud import NeuronCloud
    from glnet.render.neurons import InstancedNeurons
    from glnet.render.raster import ComputeNeurons
    from glnet.render.scene import SceneRenderer, choose_renderer

    cloud = NeuronCloud(gl, build_layout([("a", (1, 2, 2))]))
    try:
        for name, cls in (("instanced", InstancedNeurons), ("compute", ComputeNeurons)):
            scene = SceneRenderer(gl, cloud, name)
            assert scene.renderer == name and isinstance(scene.neurons, cls)
            scene.close()
        scene = SceneRenderer(gl, cloud, "auto")
        assert scene.renderer == "compute"  # llvmpipe: software GL takes the compute path
        scene.close()
    finally:
        cloud.close()
    from dataclasses import replace

    desktop = replace(gl.info, renderer="NVIDIA GeForce RTX 4090/PCIe/SSE2")
    assert choose_renderer("auto", desktop, 1000) == "instanced"
    assert choose_renderer("auto", desktop, 10_000_000) == "compute"
    assert (
        choose_renderer("auto", replace(gl.info, renderer="NVIDIA H100 80GB HBM3/PCIe/SSE2"), 1000)
        == "compute"
    )
    for name in ("NVIDIA H200/PCIe/SSE2", "NVIDIA A100-SXM4-80GB/PCIe/SSE2", "Tesla V100-PCIE-32GB"):
        assert choose_renderer("auto", replace(gl.info, renderer=name), 1000) == "compute", name
