"""Panels in the scene: each conv layer's kernels as an atlas beside its slab, the input image in front."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..gpu.objects import VertexArray
from ..gpu.program import Program
from .frame import FrameParams

if TYPE_CHECKING:
    from ..gpu.cloud import NeuronCloud
    from ..gpu.context import GLContext

__all__ = ["Panels"]


class Panels:
    """Draws the cloud's weight atlases and input image as depth-tested textured rectangles."""

    def __init__(self, ctx: GLContext) -> None:
        self.program = Program(ctx, vertex="panel.vert", fragment="panel.frag", label="panels")
        self._vao = VertexArray(ctx, label="panels")

    def draw(self, cloud: NeuronCloud, frame: FrameParams) -> int:
        """Draw every panel of the cloud's layout; returns how many rectangles were drawn."""
        from OpenGL import GL

        layout = cloud.layout
        GL.glEnable(GL.GL_DEPTH_TEST)
        GL.glDepthFunc(GL.GL_LESS)
        GL.glDisable(GL.GL_BLEND)
        p = self.program.use()
        p.set(u_view_proj=frame.view_proj, u_lut=0, u_texture=1)
        cloud.lut.bind(0)
        self._vao.bind()
        drawn = 0
        if cloud.input_image is not None and layout.input_panel is not None:
            panel = layout.input_panel
            cloud.input_image.bind(1)
            p.set(u_rgb=1, u_corner=panel.origin, u_extent=panel.size)
            GL.glDrawArrays(GL.GL_TRIANGLE_STRIP, 0, 4)
            drawn += 1
        p.set(u_rgb=0)
        for index, (tiled, atlas, rng) in cloud.weights.items():
            panel = layout.weight_panels.get(index)
            if panel is None:
                continue
            sx = panel.size[0] / tiled.width
            sy = panel.size[1] / tiled.height
            p.set(
                u_range=(rng.lo, rng.scale),
                u_diverging=int(rng.diverging),
                u_cell=atlas.cell,
                u_kernel=(atlas.shape[3], atlas.shape[2]),
            )
            x0, y0, z0 = panel.origin
            for tile in tiled.tiles:
                tile.texture.bind(1)
                p.set(
                    u_corner=(x0 + tile.x * sx, y0 - tile.y * sy, z0),
                    u_extent=(tile.width * sx, tile.height * sy),
                    u_offset=(tile.x, tile.y),
                )
                GL.glDrawArrays(GL.GL_TRIANGLE_STRIP, 0, 4)
                drawn += 1
        VertexArray.unbind()
        return drawn

    def close(self) -> None:
        self._vao.delete()
        self.program.delete()
