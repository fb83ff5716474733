"""What every renderer needs for one frame: the camera's matrices and which layers are in view."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..camera import Camera
from ..layout import Layout

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

    def uniforms(self) -> dict[str, object]:
        return {
            "u_view_proj": self.view_proj,
            "u_viewport": (self.width, self.height),
            "u_focal_px": self.camera.focal_px(self.height),
            "u_max_radius": self.max_radius,
            "u_depth": (self.projection[2, 2], self.projection[2, 3]),
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
