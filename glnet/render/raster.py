"""The compute rasterizer: neurons splatted by a compute shader with 32-bit atomicMin keys, then presented.

Pass 1 (``raster.comp``), per visible layer and per part of it within the binding limit
(:func:`~glnet.render.frame.draw_parts`), one invocation per row segment: project each neuron and
atomicMin ``depth | colour code`` into a key buffer of one uint per pixel. Pass 2 (``present.frag``): turn
keys into colour (and depth, when panels follow) in the bound framebuffer, so panels and the HUD can be drawn
over it with an ordinary depth test; it runs only over the rectangle the drawn layers can reach
(:meth:`FrameParams.screen_rect`), so a cloud seen from afar pays for its own pixels, not the frame's.
On llvmpipe this is 13-23x faster than point sprites at 1-11 M neurons; on datacenter GPUs compute reaches
every SM, where the vertex/fragment path reaches a few.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..gpu.buffer import Buffer
from ..gpu.objects import VertexArray
from ..gpu.program import Program
from .frame import DrawItem, FrameParams, draw_parts

if TYPE_CHECKING:
    from ..gpu.cloud import NeuronCloud
    from ..gpu.context import GLContext

__all__ = ["EMPTY_KEY", "ComputeNeurons"]

EMPTY_KEY = 0xFFFFFFFF


class ComputeNeurons:
    """Draws a :class:`NeuronCloud` through the compute rasterizer."""

    name = "compute"

    def __init__(self, ctx: GLContext) -> None:
        self.ctx = ctx
        self.raster = Program(ctx, compute="raster.comp", label="raster")
        self.present = Program(ctx, vertex="fullscreen.vert", fragment="present.frag", label="present")
        self.present_flat = Program(
            ctx,
            vertex="fullscreen.vert",
            fragment="present.frag",
            defines={"GLNET_NO_DEPTH": 1},
            label="present",
        )
        self.keys: Buffer | None = None
        self.rect = (0, 0, 0, 0)  # the pixels the last rasterize() can have written (x, y, w, h)
        self._vao = VertexArray(ctx, label="present")

    def key_buffer(self, width: int, height: int) -> Buffer:
        """The key buffer for a width x height frame (one uint per pixel), made or remade to fit."""
        need = width * height * 4
        if self.keys is None or self.keys.nbytes != need:
            if self.keys is not None:
                self.keys.delete()
            self.keys = Buffer(self.ctx, need, label="raster keys")
        return self.keys

    def rasterize(self, cloud: NeuronCloud, frame: FrameParams, items: list[DrawItem]) -> int:
        """Pass 1: fill the key buffer; returns the number of discs processed."""
        from OpenGL import GL

        keys = self.key_buffer(frame.width, frame.height)
        GL.glMemoryBarrier(GL.GL_BUFFER_UPDATE_BARRIER_BIT)  # last frame's shader writes, then the clear
        keys.clear_uint(EMPTY_KEY)
        keys.bind_base(GL.GL_SHADER_STORAGE_BUFFER, 1)
        self.rect = frame.screen_rect(cloud.layout.slabs[item.layer] for item in items)
        p = self.raster.use()
        p.set(**frame.uniforms(), u_lut=0)
        drawn = 0
        for item in items:
            p.set(**item.uniforms)
            for part in draw_parts(item, self.ctx.info):
                p.set(**part.uniforms())
                item.buffer.bind_range(GL.GL_SHADER_STORAGE_BUFFER, 0, part.bind_offset, part.bind_nbytes)
                p.dispatch(part.segments)  # one invocation per row segment
            drawn += item.count
        GL.glMemoryBarrier(GL.GL_SHADER_STORAGE_BARRIER_BIT)
        return drawn

    def resolve(self, cloud: NeuronCloud, frame: FrameParams, depth: bool = True) -> None:
        """Pass 2: keys to colour (and depth, for panels drawn after) in the bound framebuffer."""
        from OpenGL import GL

        assert self.keys is not None
        x, y, w, h = self.rect
        if w == 0 or h == 0:
            return
        if depth:
            GL.glEnable(GL.GL_DEPTH_TEST)
            GL.glDepthFunc(GL.GL_ALWAYS)
        else:
            GL.glDisable(GL.GL_DEPTH_TEST)
        GL.glDisable(GL.GL_BLEND)
        self.keys.bind_base(GL.GL_SHADER_STORAGE_BUFFER, 1)
        (self.present if depth else self.present_flat).use().set(
            u_viewport=(frame.width, frame.height), u_depth=frame.uniforms()["u_depth"], u_lut=0
        )
        cloud.lut.bind(0)
        self._vao.bind()
        GL.glEnable(GL.GL_SCISSOR_TEST)  # only where a key can be: the rest keeps the clear colour
        GL.glScissor(x, y, w, h)
        GL.glDrawArrays(GL.GL_TRIANGLES, 0, 3)
        GL.glDisable(GL.GL_SCISSOR_TEST)
        VertexArray.unbind()
        GL.glEnable(GL.GL_DEPTH_TEST)
        GL.glDepthFunc(GL.GL_LESS)

    def draw(self, cloud: NeuronCloud, frame: FrameParams, items: list[DrawItem], depth: bool = True) -> int:
        drawn = self.rasterize(cloud, frame, items)
        self.resolve(cloud, frame, depth)
        return drawn

    def read_keys(self) -> object:
        """The key buffer (height, width) uint32, bottom row first (tests)."""
        import numpy as np
        from OpenGL import GL

        assert self.keys is not None
        GL.glMemoryBarrier(GL.GL_BUFFER_UPDATE_BARRIER_BIT)  # shader writes visible to the readback
        return self.keys.read(dtype=np.uint32)

    def close(self) -> None:
        self._vao.delete()
        for obj in (self.raster, self.present, self.present_flat, self.keys):
            if obj is not None:
                obj.delete()
