"""The ``torch`` renderer: torch rasterizes where the values are, GL presents; the compute path's keys, and
picks from the same pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import layered_scene

from glnet.camera import layer_camera, named_camera
from glnet.layout import neuron_positions
from glnet.render.reference import EMPTY_KEY, keys32

pytestmark = pytest.mark.gl

W, H = 320, 180


class _Pair:
    """The same cloud drawn by the compute and the torch renderer."""

    def __init__(self, ctx, layout, values, max_neurons=None):
        from glnet.gpu.cloud import NeuronCloud
        from glnet.gpu.framebuffer import Framebuffer
        from glnet.render.scene import SceneRenderer

        self.cloud = NeuronCloud(ctx, layout, max_neurons=max_neurons)
        self.cloud.set_values(values)
        self.compute = SceneRenderer(ctx, self.cloud, "compute")
        self.torch = SceneRenderer(ctx, self.cloud, "torch")
        self.torch.use_values(values)
        self.fb = Framebuffer(ctx, W, H)

    def draw(self, scene, cam):
        self.stats = scene.render(cam, self.fb, finish=True)
        return self.fb.read_rgba()

    def close(self):
        self.fb.delete()
        self.compute.close()
        self.torch.close()
        self.cloud.close()


@pytest.mark.parametrize("view", ["overview", "side", "layer:1"])
def test_torch_keys_equal_the_gl_compute_keys(gl, view):
    layout, values = layered_scene()
    cam = layer_camera(layout, 1, W / H) if view.startswith("layer") else named_camera(view, layout, W / H)
    p = _Pair(gl, layout, values)
    try:
        gl_img = p.draw(p.compute, cam)
        gl_keys = p.compute.neurons.read_keys().astype(np.int64)
        t_img = p.draw(p.torch, cam)
        t_keys = keys32(p.torch.neurons.keys64).numpy()
        assert (t_keys != EMPTY_KEY).mean() > 0.01
        assert (gl_keys == t_keys).mean() >= 0.999  # the depth bits may differ in float rounding's last place
        assert (np.abs(gl_img.astype(int) - t_img.astype(int)).max(-1) == 0).mean() >= 0.999
        assert p.torch.renderer == "torch"
    finally:
        p.close()


def test_torch_draws_channel_means_as_the_compute_path_does(gl):
    layout, values = layered_scene(1)
    p = _Pair(gl, layout, values, max_neurons=6000)  # over budget: the largest layers as channel means
    try:
        cam = named_camera("overview", layout, W / H)
        a, b = p.draw(p.compute, cam), p.draw(p.torch, cam)
        assert p.stats.aggregated  # the test means something: some layer was drawn as channel means
        assert (np.abs(a.astype(int) - b.astype(int)).max(-1) == 0).mean() >= 0.999
    finally:
        p.close()


def test_torch_pick_names_the_neuron_drawn_there(gl):
    layout, values = layered_scene(2)
    p = _Pair(gl, layout, values)
    try:
        cam = layer_camera(layout, 2, W / H)
        img = p.draw(p.torch, cam)
        pos = neuron_positions(layout.slabs[2])
        pr = cam.project(pos, W, H)
        seen = 0
        for i in np.flatnonzero(pr.visible)[::37]:
            x, y = int(pr.x[i]), H - 1 - int(pr.y[i])
            got = p.torch.pick(cam, W, H, x, y)
            assert got is not None and (got.layer, got.index) == (2, int(i)), (i, got)
            assert got == p.compute.pick(cam, W, H, x, y)  # the GL pick pass agrees
            seen += 1
        assert seen >= 3
        assert p.torch.pick(cam, W, H, 0, 0) is None or img[0, 0, :3].any()
        # a pick from another camera rasterizes that view first
        other = named_camera("overview", layout, W / H)
        q = next(
            (x, y)
            for x in range(0, W, 7)
            for y in range(0, H, 7)
            if p.compute.pick(other, W, H, x, y) is not None
        )
        assert p.torch.pick(other, W, H, *q) == p.compute.pick(other, W, H, *q)
    finally:
        p.close()


@pytest.mark.parametrize("budget", [None, 6000])
def test_without_tensors_torch_draws_what_the_gl_buffer_holds(gl, budget):
    layout, values = layered_scene(3)
    p = _Pair(gl, layout, values, max_neurons=budget)
    try:
        cam = named_camera("overview", layout, W / H)
        new = [v * -2.0 for v in values]
        p.cloud.set_values(new)  # as a live frame arrives: straight into the GL buffer
        p.torch.use_values(None)
        a, b = p.draw(p.compute, cam), p.draw(p.torch, cam)
        assert (np.abs(a.astype(int) - b.astype(int)).max(-1) == 0).mean() >= 0.999
    finally:
        p.close()


def test_snapshot_with_the_torch_renderer_equals_compute(gl, tiny_net):
    from glnet.app import render_snapshot
    from glnet.capture import capture

    tr = capture(tiny_net, torch.randn(1, 3, 16, 16))
    a = render_snapshot(tr, size=(W, H), renderer="compute", hud=False, timed_frames=1, ctx=gl)
    b = render_snapshot(tr, size=(W, H), renderer="torch", hud=False, timed_frames=1, ctx=gl)
    assert b.renderer == "torch"
    assert (np.abs(a.image.astype(int) - b.image.astype(int)).max(-1) == 0).mean() >= 0.999
