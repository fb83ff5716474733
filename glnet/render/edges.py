"""The structure graph: the data flow between drawn layers, as lines and arcs between their slabs.

An edge between neighbouring layers is a straight line between the slabs' centres, in the gap between them;
an edge that passes over at least one drawn layer (a residual or dense connection) is a cubic Bezier arc from
the top edge of one slab to the top edge of the other, rising above every slab it spans (longer spans rise
higher, so nested arcs stay apart). Segments are expanded on the GPU into quads of constant pixel width
(``shaders/edges.vert``) and depth-tested against the neurons and panels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..gpu.buffer import Buffer
from ..gpu.objects import VertexArray
from ..gpu.program import Program

if TYPE_CHECKING:
    from ..gpu.context import GLContext
    from ..layout import Layout
    from .frame import FrameParams

__all__ = ["ARC_SEGMENTS", "EDGE_COLOUR", "Edges", "arc_points", "edge_segments"]

EDGE_COLOUR = (0.30, 0.92, 0.78)  # mint: no colour of the colour maps, nor NaN/Inf
ARC_SEGMENTS = 24  # straight pieces per arc
ARC_LIFT = 0.12  # an arc's rise above the slabs it spans, as a fraction of its length along the stack
ARC_CLEARANCE = 0.08  # and at least this fraction of the largest side among those slabs


def arc_points(layout: Layout, edge: tuple[int, int], segments: int = ARC_SEGMENTS) -> np.ndarray:
    """World points (segments + 1, 3) of the polyline drawn for ``edge`` = (producer, consumer) slab indices:
    two points for neighbours, a Bezier arc over the stack for an edge passing over a layer."""
    a, b = layout.slabs[edge[0]], layout.slabs[edge[1]]
    if abs(edge[1] - edge[0]) <= 1:
        return np.stack([a.centre, b.centre])
    lo, hi = sorted(edge)
    spanned = layout.slabs[lo : hi + 1]
    top = max(s.bounds()[1][1] for s in spanned)
    side = max(max(s.size) for s in spanned)
    height = top + ARC_LIFT * abs(a.z - b.z) + ARC_CLEARANCE * side
    p0 = np.array([a.centre[0], a.bounds()[1][1], a.z])
    p3 = np.array([b.centre[0], b.bounds()[1][1], b.z])
    p1 = np.array([p0[0], height, p0[2]])
    p2 = np.array([p3[0], height, p3[2]])
    t = np.linspace(0.0, 1.0, segments + 1)[:, None]
    u = 1.0 - t
    return u**3 * p0 + 3 * u**2 * t * p1 + 3 * u * t**2 * p2 + t**3 * p3


def edge_segments(layout: Layout, edges: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """Every edge's polyline as segments: (N, 2, 3) float32 world start and end points."""
    pieces = []
    for edge in layout.edges if edges is None else edges:
        pts = arc_points(layout, edge)
        pieces.append(np.stack([pts[:-1], pts[1:]], axis=1))
    return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros((0, 2, 3), np.float32)


class Edges:
    """Draws a layout's edges; owns its program, vertex array and segment buffer (rebuilt per layout)."""

    def __init__(self, ctx: GLContext, width_px: float = 2.0) -> None:
        self.ctx = ctx
        self.width_px = width_px
        self.program = Program(ctx, vertex="edges.vert", fragment="edges.frag", label="edges")
        self._vao = VertexArray(ctx, label="edges")
        self._buffer: Buffer | None = None
        self._layout: Layout | None = None
        self._edges: list[tuple[int, int]] = []
        self._segments = 0

    def _upload(self, layout: Layout) -> None:
        if self._buffer is not None:
            self._buffer.delete()
            self._buffer = None
        seg = edge_segments(layout)
        self._segments = len(seg)
        if self._segments:
            points = np.zeros((self._segments * 2, 4), np.float32)  # std430 vec4 per point
            points[:, :3] = seg.reshape(-1, 3)
            self._buffer = Buffer(self.ctx, points.nbytes, data=points, label="edge segments", dynamic=False)
        self._layout, self._edges = layout, list(layout.edges)

    def draw(self, layout: Layout, frame: FrameParams) -> int:
        """Draw ``layout.edges`` from ``frame``'s camera; returns the number of segments drawn."""
        from OpenGL import GL

        if layout is not self._layout or layout.edges != self._edges:
            self._upload(layout)
        if self._buffer is None:
            return 0
        GL.glEnable(GL.GL_DEPTH_TEST)
        GL.glDepthFunc(GL.GL_LESS)
        GL.glDisable(GL.GL_BLEND)
        p = self.program.use()
        p.set(
            u_view_proj=frame.view_proj,
            u_viewport=(frame.width, frame.height),
            u_width=max(self.width_px, frame.camera.full_size(frame.width, frame.height)[1] / 540),
            u_colour=EDGE_COLOUR,
        )
        self._buffer.bind_base(GL.GL_SHADER_STORAGE_BUFFER, 0)
        self._vao.bind()
        GL.glDrawArrays(GL.GL_TRIANGLES, 0, 6 * self._segments)
        VertexArray.unbind()
        return self._segments

    def close(self) -> None:
        if self._buffer is not None:
            self._buffer.delete()
            self._buffer = None
        self._vao.delete()
        self.program.delete()
