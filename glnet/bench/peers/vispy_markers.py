"""The VisPy ``Markers`` peer: :class:`vispy.visuals.MarkersVisual` drawing glnet's discs, public API only.

The visual draws in glnet's own context, into a glnet framebuffer, through ``visual.draw()`` and its
:class:`~vispy.visuals.transforms.TransformSystem`: world to clip is the camera's view-projection as a
:class:`~vispy.visuals.transforms.MatrixTransform` (VisPy carries the homogeneous w to ``gl_Position``, so the
perspective divide is GL's, as in glnet). Each neuron is one disc whose pixel diameter is glnet's
(``2 * clamp(radius_k / w, 0.5, MAX_RADIUS_PX)``), with no edge and no antialiasing fringe (the closest VisPy
comes to glnet's discs, and the cheapest Markers setting), coloured through glnet's colour table.
"""

from __future__ import annotations

import gc
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ...camera import Camera
    from ...gpu.context import GLContext
    from ...gpu.framebuffer import Framebuffer
    from ..workloads import Workload

__all__ = ["VispyMarkers", "markers_data"]


def markers_data(work: Workload, camera: Camera, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Positions (N, 3), RGBA colours (N, 4) and pixel diameters (N,) of glnet's discs, for VisPy."""
    from ...colormap import colour_codes, lut
    from ...layout import neuron_positions
    from ...render.frame import MAX_RADIUS_PX

    width, height = size
    vp = camera.view_projection(width, height)
    focal = camera.focal_px(height)
    table = lut().astype(np.float32) / 255.0
    n = work.points
    pos = np.empty((n, 3), np.float32)
    rgba = np.empty((n, 4), np.float32)
    diameter = np.empty(n, np.float32)
    at = 0
    for slab, v, rng in zip(work.layout.slabs, work.values, work.ranges, strict=True):
        k = slab.count
        p = neuron_positions(slab)
        pos[at : at + k] = p
        rgba[at : at + k] = table[colour_codes(v, rng)]
        w = p.astype(np.float64) @ vp[3, :3] + vp[3, 3]  # view depth, as clip w
        with np.errstate(divide="ignore"):
            r = np.clip(0.5 * slab.point_size * focal / w, 0.5, MAX_RADIUS_PX)
        diameter[at : at + k] = np.where(w > 0, 2.0 * r, 1.0)
        at += k
    return pos, rgba, diameter


class VispyMarkers:
    """One workload in a ``MarkersVisual``, uploaded (and timed) on creation; ``frame()`` draws it once.

    ``upload_ms`` is the wall time of ``set_data`` until its upload has run on the GPU; ``gpu_bytes`` the
    visual's interleaved vertex buffer, its whole per-point cost. Use it as a context manager, or ``close()``.
    """

    def __init__(self, ctx: GLContext, work: Workload, camera: Camera, size: tuple[int, int]) -> None:
        from OpenGL import GL
        from vispy.visuals import MarkersVisual
        from vispy.visuals.transforms import MatrixTransform, NullTransform, STTransform

        from ...gpu.framebuffer import Framebuffer

        width, height = size
        pos, rgba, diameter = markers_data(work, camera, size)
        self._gloo = ctx.canvas.context  # VisPy queues GL commands (GLIR) here; flush_commands runs them
        self.visual: Any = None
        self.framebuffer: Framebuffer = Framebuffer(ctx, width, height, label="bench markers")
        try:
            self.visual = MarkersVisual(scaling="fixed", antialias=0.0)
            tr = self.visual.transforms
            # world -> clip is glnet's view-projection (MatrixTransform stores it transposed: row vectors);
            # clip -> framebuffer pixels -> clip again are affine in homogeneous coordinates, so w survives.
            tr.visual_transform = MatrixTransform(camera.view_projection(width, height).T)
            tr.scene_transform = NullTransform()
            tr.document_transform = STTransform(
                scale=(width / 2, height / 2, 1), translate=(width / 2, height / 2, 0)
            )
            tr.canvas_transform = NullTransform()
            tr.framebuffer_transform = STTransform(scale=(2 / width, 2 / height, 1), translate=(-1, -1, 0))
            self._gloo.flush_commands()
            GL.glFinish()
            t0 = time.perf_counter()
            self.visual.set_data(
                pos, size=diameter, edge_width=0, face_color=rgba, edge_color=rgba, symbol="disc"
            )
            self._gloo.flush_commands()
            GL.glFinish()
            self.upload_ms = (time.perf_counter() - t0) * 1e3
            self.gpu_bytes = int(self._vertex_buffer().nbytes)
        except BaseException:
            self.close()
            raise

    def _vertex_buffer(self) -> Any:
        # set_data binds each attribute to a view of one interleaved VertexBuffer; .base is that buffer
        return self.visual.shared_program["a_position"].base

    def frame(self) -> None:
        """Clear the framebuffer to glnet's background, draw every marker, and wait for the GPU."""
        from OpenGL import GL

        from ...colormap import BACKGROUND

        self._gloo.flush_commands()  # runs a pending CURRENT (binds framebuffer 0) before ours is bound
        self.framebuffer.bind()
        GL.glClearColor(*BACKGROUND, 1.0)
        GL.glClearDepth(1.0)
        GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT)
        self.visual.draw()
        self._gloo.flush_commands()
        GL.glFinish()

    def close(self) -> None:
        """Delete the visual's GL objects and the framebuffer; leave GL state as glnet expects. Idempotent."""
        from OpenGL import GL

        if self.visual is not None:
            try:
                self._vertex_buffer().delete()
            except KeyError:  # set_data never ran: no vertex buffer
                pass
            for program in self.visual.shared_program:
                program.delete()
            self._gloo.flush_commands()
            GL.glUseProgram(0)
            GL.glDisable(GL.GL_BLEND)
            self.visual = None
            gc.collect()
        self.framebuffer.delete()

    def __enter__(self) -> VispyMarkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
