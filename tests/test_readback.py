"""Asynchronous read-back through pixel-buffer objects: the same pixels as a synchronous read, in order."""

from __future__ import annotations

import numpy as np
import pytest

from glnet.gpu.framebuffer import Framebuffer
from glnet.gpu.readback import FrameReader

W, H = 40, 24

pytestmark = pytest.mark.gl


def paint(fb: Framebuffer, k: int) -> None:
    """Frame k: a background colour of its own, and a block whose place tells top from bottom."""
    from OpenGL import GL

    fb.bind()
    GL.glClearColor(k / 10, 0.5, 1 - k / 10, 1.0)
    GL.glClear(GL.GL_COLOR_BUFFER_BIT)
    GL.glEnable(GL.GL_SCISSOR_TEST)
    GL.glScissor(2 + k, 3, 5, 4 + k)  # GL's y is up: the block sits near the image's bottom
    GL.glClearColor(1.0, 1.0, 1.0, 1.0)
    GL.glClear(GL.GL_COLOR_BUFFER_BIT)
    GL.glDisable(GL.GL_SCISSOR_TEST)
    GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)


@pytest.mark.parametrize("ring", [1, 2, 3])
def test_ring_reads_equal_synchronous_reads_in_order(gl, ring):
    fb = Framebuffer(gl, W, H)
    try:
        with FrameReader(gl, W, H, ring=ring) as reader:
            want, got = [], []
            for k in range(7):
                paint(fb, k)
                want.append(fb.read_rgba())
                ready = reader.read(fb)
                assert (ready is None) == (k < ring)  # nothing comes back until the ring is full
                if ready is not None:
                    got.append(ready)
            assert reader.pending == ring
            got += reader.drain()
            assert reader.pending == 0
        assert len(got) == 7
        for a, b in zip(got, want, strict=True):
            assert a.shape == (H, W, 4) and a.dtype == np.uint8
            assert np.array_equal(a, b)
        assert len({a.tobytes() for a in got}) == 7  # every frame its own
        assert (got[0][H - 4, 2] == 255).all() and (got[0][0, 2] != 255).any()  # top row first
    finally:
        fb.delete()


def test_a_real_render_reads_back_the_same(gl):
    from conftest import layered_scene

    from glnet.camera import named_camera
    from glnet.gpu.cloud import NeuronCloud
    from glnet.render.scene import SceneRenderer

    layout, values = layered_scene(3)
    cloud = NeuronCloud(gl, layout)
    scene = SceneRenderer(gl, cloud, "instanced")
    fb = Framebuffer(gl, 96, 54)
    try:
        cloud.set_values(values)
        cam = named_camera("overview", layout, 96 / 54)
        with FrameReader(gl, 96, 54, ring=2) as reader:
            scene.render(cam, fb, finish=False)
            assert reader.read(fb) is None
            want = fb.read_rgba()
            (got,) = reader.drain()
        assert np.array_equal(got, want) and (want != want[0, 0]).any()
    finally:
        fb.delete()
        scene.close()
        cloud.close()


def test_a_reader_checks_the_size_and_closes_twice(gl):
    fb = Framebuffer(gl, W + 1, H)
    reader = FrameReader(gl, W, H)
    try:
        with pytest.raises(ValueError, match="framebuffer is"):
            reader.read(fb)
    finally:
        reader.close()
        reader.close()
        fb.delete()
    with pytest.raises(ValueError):
        FrameReader(gl, W, H, ring=0)
