"""What every renderer needs for one frame: the camera's matrices and which layers are in view."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..camera import Camera
from ..layout import Layout, Slab

__all__ = ["MAX_RADIUS_PX", "FrameParams", "visible_layers"]

MAX_RADIUS_PX = 24.0  # the largest neuron disc, in pixels: bounds the cost of neurons right at the eye


@dataclass
class FrameParams:
    camera: Camera
    width: int
    height: int
    max_radius: float = MAX_RADIUS_PX

    def __post_init__(self) -> None:
        self.projection = self.camera.projection_matrix(self.width / self.height)
        self.view_proj = self.projection @ self.camera.view_matrix()

        self.focal_px = self.camera.focal_px(self.height)

    def uniforms(self) -> dict[str, object]:
        """Per-frame uniforms shared by every program."""
        return {
            "u_view_proj": self.view_proj,
            "u_viewport": (self.width, self.height),
            "u_max_radius": self.max_radius,
            "u_depth": (self.projection[2, 2], self.projection[2, 3]),
        }

    def slab_uniforms(self, slab: Slab) -> dict[str, object]:
        """The slab's plane in clip space (``camera.glsl``): origin and one cell right and down."""
        x, y, z = slab.origin
        vp = self.view_proj
        return {
            "u_clip_origin": vp @ np.array([x, y, z, 1.0]),
            "u_clip_dx": vp[:, 0] * slab.spacing,
            "u_clip_dy": -vp[:, 1] * slab.spacing,
            "u_radius_k": 0.5 * slab.point_size * self.focal_px,
        }


def visible_layers(layout: Layout, view_proj: np.ndarray) -> list[int]:
    """Indices of slabs whose box is not entirely outside one clip plane (the rest cannot draw a pixel)."""
    out = []
    for i, s in enumerate(layout.slabs):
        lo, hi = s.bounds()
        corners = np.array([[x, y, lo[2], 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])])
        clip = corners @ view_proj.T
        w = clip[:, 3]
        outside = (
            np.all(clip[:, 0] < -w)
            or np.all(clip[:, 0] > w)
            or np.all(clip[:, 1] < -w)
            or np.all(clip[:, 1] > w)
            or np.all(clip[:, 2] < -w)
            or np.all(clip[:, 2] > w)
        )
        if not outside:
            out.append(i)
    return out
