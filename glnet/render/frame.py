"""What every renderer needs for one frame: the camera's matrices and the list of layers to draw.

:func:`plan_draws` culls slabs outside the view and, with level of detail on, draws slabs whose neurons are
packed tighter than ``LOD_SPACING_PX`` on screen as one disc per channel (the channel's mean) instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..camera import Camera
from ..layout import Layout, Slab

if TYPE_CHECKING:
    from ..gpu.buffer import Buffer
    from ..gpu.cloud import NeuronCloud

__all__ = ["LOD_SPACING_PX", "MAX_RADIUS_PX", "DrawItem", "FrameParams", "plan_draws", "visible_layers"]

MAX_RADIUS_PX = 24.0  # the largest neuron disc, in pixels: bounds the cost of neurons right at the eye
LOD_SPACING_PX = 0.25  # with level of detail on, slabs whose neurons sit closer than this are aggregated


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

    def plane_uniforms(
        self, origin: tuple[float, float, float], pitch: tuple[float, float], diameter: float
    ) -> dict[str, object]:
        """A grid's plane in clip space (``camera.glsl``): its first cell and one cell right and down."""
        x, y, z = origin
        vp = self.view_proj
        return {
            "u_clip_origin": vp @ np.array([x, y, z, 1.0]),
            "u_clip_dx": vp[:, 0] * pitch[0],
            "u_clip_dy": -vp[:, 1] * pitch[1],
            "u_radius_k": 0.5 * diameter * self.focal_px,
        }

    def slab_uniforms(self, slab: Slab) -> dict[str, object]:
        return self.plane_uniforms(slab.origin, (slab.spacing, slab.spacing), slab.point_size)

    def nearest_depth(self, slab: Slab) -> float:
        """The smallest view depth of the slab's corners (at least the near plane)."""
        return float(max(np.min(_corners(slab) @ self.view_proj[3]), self.camera.near))

    def screen_rect(self, slabs: Iterable[Slab]) -> tuple[int, int, int, int]:
        """Pixels ``(x, y, width, height)``, y up, that the slabs' discs can touch: their projected corners
        grown by the largest disc radius, or the whole frame when a slab reaches behind the camera."""
        lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
        for slab in slabs:
            clip = _corners(slab) @ self.view_proj.T
            w = clip[:, 3:]
            if np.any(w <= 0):  # a plane crossing the eye projects without bound
                return 0, 0, self.width, self.height
            window = (clip[:, :2] / w * 0.5 + 0.5) * (self.width, self.height)
            lo, hi = np.minimum(lo, window.min(0)), np.maximum(hi, window.max(0))
        if not np.all(lo <= hi):
            return 0, 0, 0, 0
        margin = self.max_radius + 1.0
        x0, y0 = (max(0, math.floor(v - margin)) for v in lo)
        x1 = min(self.width, math.ceil(hi[0] + margin))
        y1 = min(self.height, math.ceil(hi[1] + margin))
        return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


@dataclass
class DrawItem:
    """One draw (or dispatch) of a layer: which values, which grid, how many discs and rows."""

    layer: int
    aggregate: bool
    buffer: Buffer
    byte_offset: int
    nbytes: int
    count: int  # discs drawn
    rows: int  # grid rows (the compute rasterizer runs one invocation per row)
    uniforms: dict[str, object]


def plan_draws(cloud: NeuronCloud, frame: FrameParams, lod: bool = False) -> list[DrawItem]:
    """The layers in view, each at full detail or (``lod``, far and dense) as per-channel aggregates."""
    items = []
    for i in visible_layers(cloud.layout, frame.view_proj):
        layer = cloud.layers[i]
        s = layer.slab
        c, h, w = s.grid
        aggregate = (
            (layer.forced_aggregate or lod)
            and h * w > 1
            and (
                layer.forced_aggregate or s.spacing * frame.focal_px / frame.nearest_depth(s) < LOD_SPACING_PX
            )
        )
        if not aggregate:
            items.append(
                DrawItem(
                    i,
                    False,
                    cloud.values,
                    layer.byte_offset,
                    layer.nbytes,
                    s.count,
                    c * h,
                    {**layer.uniforms(), **frame.slab_uniforms(s)},
                )
            )
            continue
        gx, gy = s.gap
        pitch = ((w + gx) * s.spacing, (h + gy) * s.spacing)
        x, y, z = s.origin
        centre = (x + (w - 1) / 2 * s.spacing, y - (h - 1) / 2 * s.spacing, z)
        grid = {
            **layer.uniforms(),
            "u_grid": (c, 1, 1, s.tiles_x),
            "u_gap": (0, 0),
            "u_inv": (1.0, 1.0, 1.0 / s.tiles_x),
            "u_count": c,
        }
        off, nbytes = cloud.aggregate_range(i)
        items.append(
            DrawItem(
                i,
                True,
                cloud.aggregates,
                off,
                nbytes,
                c,
                c,
                {**grid, **frame.plane_uniforms(centre, pitch, 0.9 * min(pitch))},
            )
        )
    return items


def visible_layers(layout: Layout, view_proj: np.ndarray) -> list[int]:
    """Indices of slabs whose box is not entirely outside one clip plane (the rest cannot draw a pixel)."""
    out = []
    for i, s in enumerate(layout.slabs):
        clip = _corners(s) @ view_proj.T
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


def _corners(slab: Slab) -> np.ndarray:
    """The slab's four corners as homogeneous points (4, 4): slabs are planar, at the z of their box."""
    lo, hi = slab.bounds()
    return np.array([[x, y, lo[2], 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])])
