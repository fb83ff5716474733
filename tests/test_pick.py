"""Picking on the GPU: the neuron under a pixel is the one the renderer drew there, nearest first."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glnet.camera import Camera, layer_camera
from glnet.colormap import colour_codes, lut
from glnet.layout import build_layout, neuron_positions

pytestmark = pytest.mark.gl

W, H = 200, 150
RENDERERS = ["instanced", "compute"]


class _Scene:
    def __init__(self, ctx, layout, values, renderer):
        from glnet.gpu.cloud import NeuronCloud
        from glnet.gpu.framebuffer import Framebuffer
        from glnet.render.scene import SceneRenderer

        self.cloud = NeuronCloud(ctx, layout)
        self.scene = SceneRenderer(ctx, self.cloud, renderer)
        self.fb = Framebuffer(ctx, W, H)
        self.cloud.set_values(values)

    def image(self, cam):
        self.scene.render(cam, self.fb, finish=True)
        return self.fb.read_rgba()

    def close(self):
        self.fb.delete()
        self.scene.close()
        self.cloud.close()


def _pixel(cam, point):
    pr = cam.project(point[None], W, H)
    return int(np.floor(pr.x[0])), H - 1 - int(np.floor(pr.y[0]))


@pytest.mark.parametrize("renderer", RENDERERS)
def test_pick_at_projected_pixel_returns_that_neuron(gl, renderer):
    layout = build_layout([("a", (3, 4, 5))])
    values = torch.linspace(-1.0, 2.0, 60).reshape(3, 4, 5)
    s = _Scene(gl, layout, [values], renderer)
    try:
        cam = layer_camera(layout, 0, W / H)
        img = s.image(cam)
        pos = neuron_positions(layout.slabs[0])
        for i in (0, 7, 23, 59):
            x, y = _pixel(cam, pos[i])
            p = s.scene.pick(cam, W, H, x, y)
            assert p is not None and (p.layer, p.index, p.aggregate) == (0, i, False), (i, p)
            # the picked neuron's colour is the colour drawn at that pixel
            code = colour_codes(values.flatten()[i : i + 1], s.cloud.layers[0].range)[0]
            assert np.array_equal(img[y, x, :3], lut()[code][:3])
        # empty space picks nothing; outside the frame too
        assert s.scene.pick(cam, W, H, 0, 0) is None
        assert s.scene.pick(cam, W, H, W + 3, 5) is None
    finally:
        s.close()


@pytest.mark.parametrize("renderer", RENDERERS)
def test_near_neuron_wins_over_far_one(gl, renderer):
    # two single-neuron layers on the camera's axis: the near one covers the far one
    layout = build_layout([("far", (1, 1, 1)), ("near", (1, 1, 1))])
    far, near = (neuron_positions(sl)[0] for sl in layout.slabs)
    eye = near + (near - far) * 0.5
    cam = Camera(position=eye).look_at(far)
    s = _Scene(gl, layout, [torch.tensor([[[1.0]]]), torch.tensor([[[2.0]]])], renderer)
    try:
        x, y = _pixel(cam, near)
        assert _pixel(cam, far) == (x, y)
        p = s.scene.pick(cam, W, H, x, y)
        assert p is not None and p.layer == 1, p
        # seen from the other side, the other one is in front
        back = far + (far - near) * 0.5
        cam2 = Camera(position=back).look_at(near)
        x2, y2 = _pixel(cam2, far)
        p2 = s.scene.pick(cam2, W, H, x2, y2)
        assert p2 is not None and p2.layer == 0, p2
    finally:
        s.close()


def test_pick_reads_back_a_few_bytes(gl):
    layout = build_layout([("a", (2, 8, 8)), ("b", (4, 4, 4))])
    s = _Scene(gl, layout, [torch.rand(2, 8, 8), torch.rand(4, 4, 4)], "compute")
    try:
        cam = layer_camera(layout, 1, W / H)
        pos = neuron_positions(layout.slabs[1])
        i = int(np.flatnonzero(cam.project(pos, W, H).visible)[-1])
        x, y = _pixel(cam, pos[i])
        p = s.scene.pick(cam, W, H, x, y)
        assert p is not None and (p.layer, p.index) == (1, i)
        assert s.scene.picker.result.nbytes <= 256
    finally:
        s.close()


@pytest.mark.parametrize("renderer", RENDERERS)
def test_pick_and_inspect_a_real_model(gl, tiny_net, renderer):
    from glnet.app import Visualization
    from glnet.capture import capture
    from glnet.gpu.framebuffer import Framebuffer
    from glnet.render.inspector import MARK

    tr = capture(tiny_net, torch.randn(1, 3, 16, 16), model_name="tiny")
    vis = Visualization(gl, tr, renderer=renderer, model=tiny_net)
    fb = Framebuffer(gl, W * 2, H * 2)
    try:
        li = 1  # conv2
        cam = layer_camera(vis.layout, li, W / H)
        pos = neuron_positions(vis.layout.slabs[li])
        pr = cam.project(pos, 2 * W, 2 * H)
        i = int(np.argmin(np.where(pr.visible, np.hypot(pr.x - W, pr.y - H), np.inf)))
        x, y = int(pr.x[i]), 2 * H - 1 - int(pr.y[i])
        p = vis.pick(cam, 2 * W, 2 * H, x, y)
        assert p is not None and (p.layer, p.index) == (li, i)
        before = (vis.render(cam, fb, hud=False, finish=True), fb.read_rgba())[1]
        ins = vis.inspect(p)
        assert ins.value == pytest.approx(float(tr.layers[li].value.reshape(-1)[i]))
        assert ins.saliency is not None and ins.saliency.shape == (16, 16)
        vis.render(cam, fb, hud=False, finish=True)
        after = fb.read_rgba()
        box = vis.scene.inspector.panel_box(2 * W, 2 * H)
        assert box is not None
        x0, y0, x1, y1 = box
        assert (
            np.abs(after[y0:y1, x0:x1, :3].astype(int) - before[y0:y1, x0:x1, :3]).max(-1) > 24
        ).mean() > 0.3
        near = after[max(0, y - 20) : y + 21, max(0, x - 20) : x + 21, :3].astype(int)
        assert (np.abs(near - np.array(MARK[:3])).max(-1) < 40).sum() > 4  # the ring around it
        assert vis.inspect(None) is None and vis.scene.inspector.panel_box(2 * W, 2 * H) is None
    finally:
        fb.delete()
        vis.close()


def test_pick_on_a_layer_drawn_as_channel_means(gl):
    from glnet.render.frame import FrameParams, plan_draws

    layout = build_layout([("a", (4, 6, 6))])
    s = _Scene(gl, layout, [torch.rand(4, 6, 6)], "compute")
    try:
        s.cloud.layers[0].forced_aggregate = True
        cam = layer_camera(layout, 0, W / H)
        assert plan_draws(s.cloud, FrameParams(cam, W, H))[0].aggregate
        picks = [s.scene.pick(cam, W, H, x, y) for x in range(0, W, 4) for y in range(0, H, 4)]
        hits = [p for p in picks if p is not None]
        assert hits and all(p.aggregate and 0 <= p.index < 4 for p in hits)  # a channel, not a neuron
    finally:
        s.close()
