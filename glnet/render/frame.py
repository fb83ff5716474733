"""What every renderer needs for one frame: the camera's matrices and the list of layers to draw.

:func:`plan_draws` culls slabs outside the view and, with level of detail on, draws slabs whose neurons are
packed tighter than ``LOD_SPACING_PX`` on screen as one disc per channel (the channel's mean) instead.
:func:`draw_parts` cuts each draw to the driver's limits: rows into segments (one compute invocation each,
enough of them to fill a GPU), and runs of segments into parts, each bound as one storage range within
``GL_MAX_SHADER_STORAGE_BLOCK_SIZE``, at an offset aligned to ``GL_SHADER_STORAGE_BUFFER_OFFSET_ALIGNMENT``.
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
    from ..gpu.context import GLInfo

__all__ = [
    "FILL_INVOCATIONS",
    "LOD_SPACING_PX",
    "MAX_RADIUS_PX",
    "SEGMENT_MAX",
    "DrawItem",
    "DrawPart",
    "FrameParams",
    "draw_parts",
    "plan_draws",
    "visible_layers",
]

MAX_RADIUS_PX = 24.0  # the largest neuron disc, in pixels: bounds the cost of neurons right at the eye
LOD_SPACING_PX = 0.25  # with level of detail on, slabs whose neurons sit closer than this are aggregated
SEGMENT_MAX = 256  # neurons one compute invocation marches over: longer rows are split into segments
SEGMENT_MIN = 16  # thin layers' rows are split down to this many neurons to reach the fill below
FILL_INVOCATIONS = 1 << 16  # invocations a layer spreads over on a GPU (132 SMs x 512 threads)
FILL_INVOCATIONS_SOFTWARE = 1 << 10  # on a CPU rasterizer (a few cores x 8 lanes): long runs merge better
MAX_PART_NEURONS = (1 << 31) - 1  # one draw's count is a GLsizei


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


@dataclass(frozen=True)
class DrawPart:
    """A run of whole row segments of a :class:`DrawItem`, bound as one storage range within the limits.

    Neuron indices stay those of the layer: the shaders add ``u_first``/``u_first_segment`` and read the
    part's first neuron at element ``base`` of the bound range (the slack its aligned offset leaves).
    """

    first_segment: int  # the part's first segment in the layer
    segments: int  # compute invocations
    first: int  # first neuron, its index in the layer
    count: int  # neurons (the instanced draw's count)
    bind_offset: int  # bytes into the item's buffer, a multiple of the offset alignment
    bind_nbytes: int  # at most the block size limit
    base: int  # element of neuron ``first`` in the bound range
    segment: tuple[int, int]  # (neurons per segment, segments per row)

    def uniforms(self) -> dict[str, object]:
        return {
            "u_first": self.first,
            "u_base": self.base,
            "u_first_segment": self.first_segment,
            "u_segments": self.segments,
            "u_segment": self.segment,
        }


def segment_length(width: int, rows: int, fill: int, cap: int) -> int:
    """Neurons per row segment: rows up to ``SEGMENT_MAX`` whole, thin layers cut to reach ``fill``
    invocations (segments no shorter than ``SEGMENT_MIN``), never more than ``cap``."""
    seg = min(width, SEGMENT_MAX)
    if rows * -(-width // seg) < fill:
        per_row = -(-fill // rows)
        seg = max(min(seg, -(-width // per_row)), min(width, SEGMENT_MIN))
    return max(1, min(seg, cap))


def draw_parts(item: DrawItem, info: GLInfo) -> list[DrawPart]:
    """``item`` cut to the driver's limits: row segments, grouped into storage ranges no larger than
    ``info.max_ssbo_block_size`` at offsets aligned to ``info.ssbo_offset_alignment`` (one part when the
    layer fits)."""
    if not 0 < item.count < 1 << 32:
        raise ValueError(f"layer {item.layer} has {item.count} neurons: a layer holds 1 to 2^32 - 1")
    width = item.count // item.rows
    align = max(4, info.ssbo_offset_alignment)
    limit = info.max_ssbo_block_size or 1 << 62
    cap = min((limit - (align - 4)) // 4, MAX_PART_NEURONS)  # neurons that fit at the worst slack
    if cap < 1:
        raise ValueError(f"a storage block of {limit} bytes cannot hold one value at alignment {align}")
    fill = FILL_INVOCATIONS_SOFTWARE if info.software else FILL_INVOCATIONS
    seg = segment_length(width, item.rows, fill, cap)
    per_row = -(-width // seg)
    total = item.rows * per_row

    def start(j: int) -> int:  # segment j's first neuron (the layer's end for j == total)
        return item.count if j >= total else (j // per_row) * width + (j % per_row) * seg

    parts, j = [], 0
    while j < total:
        n0 = start(j)
        at = item.byte_offset + 4 * n0
        bind = at - at % align
        end = n0 + min((limit - (at - bind)) // 4, MAX_PART_NEURONS)  # neurons this binding can reach
        row, rem = divmod(end, width)
        j1 = total if end >= item.count else min(total, row * per_row + rem // seg)
        n1 = start(j1)
        parts.append(
            DrawPart(
                j, j1 - j, n0, n1 - n0, bind, at - bind + 4 * (n1 - n0), (at - bind) // 4, (seg, per_row)
            )
        )
        j = j1
    return parts


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
