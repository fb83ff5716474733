"""Picking: the neuron drawn at one pixel, found on the GPU with the renderers' own projection.

``pick.comp`` runs the same projection and coverage rule as both renderers over only the layers whose
screen rectangle holds the pixel (each in the parts the renderers bind it in), resolves the front-most
neuron the way the chosen renderer does (the
compute rasterizer's key, or the depth test's window z), and leaves three numbers for a 12-byte readback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..gpu.buffer import Buffer
from ..gpu.program import Program
from .frame import DrawItem, DrawPart, FrameParams, draw_parts

if TYPE_CHECKING:
    from ..gpu.cloud import NeuronCloud
    from ..gpu.context import GLContext

__all__ = ["Pick", "Picker"]

_NONE = 0xFFFFFFFF
_HEADER = 3  # smallest key, winning slot, winning index; then one key per candidate layer


@dataclass(frozen=True)
class Pick:
    """The neuron under a pixel: its layer and its index in the layer's (C, H, W) grid."""

    pixel: tuple[int, int]  # (x, y) from the top-left corner, as in the image
    layer: int
    index: int  # flat index in the layer's grid; the channel when ``aggregate``
    aggregate: bool  # the layer was drawn as one disc per channel (its mean)


class Picker:
    """Owns the pick program and its small result buffer."""

    def __init__(self, ctx: GLContext) -> None:
        self.ctx = ctx
        self.program = Program(ctx, compute="pick.comp", label="pick")
        self.result: Buffer | None = None

    def _buffer(self, slots: int) -> Buffer:
        need = (_HEADER + slots) * 4
        if self.result is None or self.result.nbytes < need:
            if self.result is not None:
                self.result.delete()
            self.result = Buffer(self.ctx, max(need, 256), label="pick result")
        return self.result

    def pick(
        self,
        cloud: NeuronCloud,
        frame: FrameParams,
        items: list[DrawItem],
        x: int,
        y: int,
        *,
        renderer: str,
    ) -> Pick | None:
        """The neuron drawn at pixel (x, y) (top-left origin) of ``frame`` by ``renderer``, or None."""
        from OpenGL import GL

        if not (0 <= x < frame.width and 0 <= y < frame.height):
            return None
        gy = frame.height - 1 - y
        slabs = cloud.layout.slabs
        candidates: list[tuple[DrawItem, DrawPart]] = []
        for item in items:
            rx, ry, rw, rh = frame.screen_rect([slabs[item.layer]])
            if rx <= x < rx + rw and ry <= gy < ry + rh:
                candidates += [(item, part) for part in draw_parts(item, self.ctx.info)]
        if not candidates:
            return None
        buf = self._buffer(len(candidates))
        GL.glMemoryBarrier(GL.GL_BUFFER_UPDATE_BARRIER_BIT)
        buf.clear_uint(_NONE)
        buf.bind_base(GL.GL_SHADER_STORAGE_BUFFER, 2)
        p = self.program.use()
        p.set(
            **frame.uniforms(),
            u_lut=0,
            u_pick=(x, gy),
            u_key_mode=0 if renderer == "compute" else 1,
            u_slots=len(candidates),
        )
        for stage in (0, 1, 2):
            p.set(u_stage=stage)
            if stage == 1:
                p.dispatch(len(candidates))
            else:
                for slot, (item, part) in enumerate(candidates):
                    p.set(**item.uniforms, **part.uniforms(), u_slot=slot)
                    item.buffer.bind_range(GL.GL_SHADER_STORAGE_BUFFER, 0, part.bind_offset, part.bind_nbytes)
                    p.dispatch(part.segments)
            GL.glMemoryBarrier(GL.GL_SHADER_STORAGE_BARRIER_BIT | GL.GL_BUFFER_UPDATE_BARRIER_BIT)
        key, slot, index = (int(v) for v in buf.read(0, 12, dtype=np.uint32))
        if key == _NONE or slot == _NONE or index == _NONE:
            return None
        item = candidates[slot][0]
        return Pick((x, y), item.layer, index, item.aggregate)

    def close(self) -> None:
        self.program.delete()
        if self.result is not None:
            self.result.delete()
            self.result = None
