"""Layout: where every neuron sits in 3D, as a small per-layer table.

Each layer is a slab facing the flight axis: its (C, H, W) grid is drawn as C feature maps of H x W
neurons tiled in rows of ``tiles_x``, centred on the axis. Layers follow in forward order along -z. Slab
sizes grow slowly with the grid (``side ** SIZE_EXPONENT``) so a 112x112x64 stem and a 7x7x2048 stage are both
readable. Positions are never stored per neuron: :func:`neuron_positions` and ``shaders/common/layer.glsl``
derive them from the table with the same integer arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from .capture import Trace

__all__ = [
    "HISTOGRAM_ASPECT",
    "MAX_HISTOGRAM_PANELS",
    "MAX_WEIGHT_TEXELS",
    "Layout",
    "Panel",
    "Slab",
    "WeightAtlas",
    "build_layout",
    "conv_weights",
    "input_frame",
    "layout_for",
    "neuron_positions",
]

SIZE_EXPONENT = 0.5  # slab side grows as (neurons across) ** SIZE_EXPONENT
BASE_SIDE = 2.0  # world units for a slab 1 neuron across
DEPTH_GAP = 0.3  # gap between slabs, as a fraction of the larger neighbour's side
MIN_GAP = 3.0
POINT_FILL = 0.8  # a neuron's disc diameter as a fraction of its spacing
PANEL_SCALE = 0.4  # a weight panel's longer side, as a fraction of its slab's side
HISTOGRAM_SCALE = 0.35  # a histogram panel's height, as a fraction of its slab's side
HISTOGRAM_ASPECT = 2.0  # width / height of one histogram plot; a layer with weights stacks two
MAX_HISTOGRAM_PANELS = 256  # traces with more layers get no histogram panels
MAX_WEIGHT_TEXELS = 64 << 20  # weight atlases above this many texels in all are not uploaded


@dataclass(frozen=True)
class Panel:
    """A textured rectangle beside a slab (a layer's weights, or the input image)."""

    origin: tuple[float, float, float]  # world position of the top-left corner
    size: tuple[float, float]  # world width, height


@dataclass(frozen=True)
class Slab:
    """The layout of one layer: how its neurons are tiled and where the slab sits."""

    index: int
    name: str
    grid: tuple[int, int, int]  # (C, H, W)
    tiles_x: int
    gap: tuple[int, int]  # cells left empty between tiles, across and down
    spacing: float  # world distance between neighbouring neurons
    origin: tuple[float, float, float]  # world position of neuron (0, 0, 0): the slab's top-left corner
    offset: int  # index of the layer's first neuron among all neurons (forward order)

    @property
    def count(self) -> int:
        return math.prod(self.grid)

    @property
    def tiles_y(self) -> int:
        return -(-self.grid[0] // self.tiles_x)

    @property
    def cells(self) -> tuple[int, int]:
        """Extent in neuron cells (across, down), gaps included."""
        _c, h, w = self.grid
        gx, gy = self.gap
        return (self.tiles_x * (w + gx) - gx, self.tiles_y * (h + gy) - gy)

    @property
    def size(self) -> tuple[float, float]:
        cx, cy = self.cells
        return (max(cx - 1, 0) * self.spacing, max(cy - 1, 0) * self.spacing)

    @property
    def z(self) -> float:
        return self.origin[2]

    @property
    def point_size(self) -> float:
        """World diameter of one neuron's disc."""
        return self.spacing * POINT_FILL

    @property
    def centre(self) -> np.ndarray:
        w, h = self.size
        x, y, z = self.origin
        return np.array([x + w / 2, y - h / 2, z], np.float64)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box holding every neuron centre."""
        w, h = self.size
        x, y, z = self.origin
        return np.array([x, y - h, z]), np.array([x + w, y, z])


@dataclass
class Layout:
    """All slabs, in forward order, plus the panels drawn beside them."""

    slabs: list[Slab]
    weight_panels: dict[int, Panel] = field(default_factory=dict)  # slab index -> panel
    input_panel: Panel | None = None
    histogram_panels: dict[int, Panel] = field(default_factory=dict)  # slab index -> panel
    edges: list[tuple[int, int]] = field(default_factory=list)  # data flow: (producer, consumer) slab indices

    @property
    def count(self) -> int:
        return sum(s.count for s in self.slabs)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.min([s.bounds()[0] for s in self.slabs], axis=0)
        hi = np.max([s.bounds()[1] for s in self.slabs], axis=0)
        panels = [*self.weight_panels.values(), *self.histogram_panels.values()]
        for p in [*panels, *([self.input_panel] if self.input_panel else [])]:
            x, y, z = p.origin
            lo = np.minimum(lo, [x, y - p.size[1], z])
            hi = np.maximum(hi, [x + p.size[0], y, z])
        return lo, hi

    @property
    def extent(self) -> float:
        lo, hi = self.bounds()
        return float(np.linalg.norm(hi - lo))

    def slab_index_at(self, z: float) -> int:
        """Index of the slab nearest to the plane at depth ``z``."""
        return int(np.argmin([abs(s.z - z) for s in self.slabs]))


def _tiles_x(c: int, h: int, w: int, gx: int, gy: int) -> int:
    """Tiles per row that make the slab closest to square."""
    if c <= 1:
        return 1
    tx = max(1, round(math.sqrt(c * (h + gy) / (w + gx))))
    return min(c, tx)


def _gaps(h: int, w: int) -> tuple[int, int]:
    gx = 0 if w == 1 else max(1, w // 8)
    gy = 0 if h == 1 else max(1, h // 8)
    if h == 1 and w == 1:
        return (0, 0)
    return (gx, gy)


def build_layout(
    grids: Sequence[tuple[str, tuple[int, int, int]]],
    *,
    weight_shapes: dict[int, tuple[int, int]] | None = None,
    input_aspect: float | None = None,
    histograms: dict[int, float] | None = None,
) -> Layout:
    """Place layers ``[(name, (C, H, W)), ...]`` (forward order) as slabs along -z.

    Args:
        grids: each layer's name and canonical grid.
        weight_shapes: slab index -> (width, height) in texels of its weight atlas; a panel goes beside it.
        input_aspect: width / height of the input image; a panel for it goes in front of the first slab.
        histograms: slab index -> width / height of its histogram panel, top-aligned right of the slab (the
            side the overview sees), above the weight panel or, where the slab is too short, beside it.
    """
    if not grids:
        raise ValueError("a layout needs at least one layer")
    slabs: list[Slab] = []
    z = 0.0
    offset = 0
    prev_side = None
    for i, (name, grid) in enumerate(grids):
        c, h, w = (int(v) for v in grid)
        if min(c, h, w) <= 0:
            raise ValueError(f"layer {name!r} has an empty grid {grid}")
        gx, gy = _gaps(h, w)
        tx = _tiles_x(c, h, w, gx, gy)
        ty = -(-c // tx)
        across = max(tx * (w + gx) - gx, ty * (h + gy) - gy)
        side = BASE_SIDE * across**SIZE_EXPONENT
        spacing = side / across
        if prev_side is not None:
            z -= max(MIN_GAP, DEPTH_GAP * max(side, prev_side))
        cells_x, cells_y = tx * (w + gx) - gx, ty * (h + gy) - gy
        width, height = (cells_x - 1) * spacing, (cells_y - 1) * spacing
        origin = (-width / 2, height / 2, z)
        slabs.append(Slab(i, name, (c, h, w), tx, (gx, gy), spacing, origin, offset))
        offset += c * h * w
        prev_side = side
    layout = Layout(slabs)
    for i, (tw, th) in (weight_shapes or {}).items():
        s = slabs[i]
        sw, sh = s.size
        side = max(sw, sh, s.spacing)
        # At most PANEL_SCALE of the slab's side, keeping the atlas's aspect; bottom-aligned to the right.
        scale = PANEL_SCALE * side / max(tw, th, 1)
        width, height = tw * scale, th * scale
        x0 = s.origin[0] + sw + 0.08 * side + s.spacing
        layout.weight_panels[i] = Panel((x0, s.origin[1] - sh + height, s.z), (width, height))
    for i, aspect in (histograms or {}).items():
        s = slabs[i]
        sw, sh = s.size
        side = max(sw, sh, s.spacing)
        height = HISTOGRAM_SCALE * side
        x0 = s.origin[0] + sw + 0.08 * side + s.spacing
        atlas = layout.weight_panels.get(i)
        if atlas is not None and s.origin[1] - height - 0.04 * side < atlas.origin[1]:
            x0 = atlas.origin[0] + atlas.size[0] + 0.08 * side  # no room above the atlas: beside it
        layout.histogram_panels[i] = Panel((x0, s.origin[1], s.z), (height * aspect, height))
    if input_aspect:
        s0 = slabs[0]
        side = max(s0.size)
        height = side / max(input_aspect, 1.0)
        width = height * input_aspect
        zi = s0.z + max(MIN_GAP, DEPTH_GAP * side)
        layout.input_panel = Panel((-width / 2, height / 2, zi), (width, height))
    return layout


def neuron_positions(slab: Slab, index: np.ndarray | None = None) -> np.ndarray:
    """World positions (N, 3) float32 of a slab's neurons, by the arithmetic of ``layer.glsl``."""
    _c, h, w = slab.grid
    i = np.arange(slab.count, dtype=np.int64) if index is None else np.asarray(index, np.int64)
    hw = h * w
    ch = i // hw
    r = i - ch * hw
    row = r // w
    col = r - row * w
    tx = ch % slab.tiles_x
    ty = ch // slab.tiles_x
    gx, gy = slab.gap
    cx = tx * (w + gx) + col
    cy = ty * (h + gy) + row
    out = np.empty((len(i), 3), np.float32)
    out[:, 0] = slab.origin[0] + cx * slab.spacing
    out[:, 1] = slab.origin[1] - cy * slab.spacing
    out[:, 2] = slab.origin[2]
    return out


@dataclass(frozen=True)
class WeightAtlas:
    """How a conv weight (O, I, kh, kw) is laid out as a 2-D image: kernel (o, i) in cell (row, column).

    Kernels are separated by a one-texel gap (none for 1x1 kernels). When O is much larger than I the O rows
    fold into ``folds`` side-by-side groups so the panel stays near square.
    """

    shape: tuple[int, int, int, int]
    folds: int

    @classmethod
    def for_shape(cls, shape: Sequence[int]) -> WeightAtlas:
        s = tuple(int(v) for v in shape)
        if len(s) < 3:
            raise ValueError(f"a conv weight has at least 3 dimensions, not {s}")
        o, i = s[0], s[1]
        kh = s[2] if len(s) >= 4 else 1
        kw = math.prod(s[3:]) if len(s) >= 4 else s[2]
        shp = (o, i, kh, kw)
        gap = 0 if kh * kw == 1 else 1
        ratio = (o * (kh + gap)) / (i * (kw + gap))
        folds = max(1, min(o, round(math.sqrt(ratio)))) if ratio > 2 else 1
        return cls(shp, folds)

    @property
    def gap(self) -> int:
        return 0 if self.shape[2] * self.shape[3] == 1 else 1

    @property
    def rows_per_fold(self) -> int:
        return -(-self.shape[0] // self.folds)

    @property
    def cell(self) -> tuple[int, int]:
        """(width, height) of one kernel's cell in texels, gap included."""
        return (self.shape[3] + self.gap, self.shape[2] + self.gap)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the atlas in texels."""
        _o, i, _kh, _kw = self.shape
        cw, ch = self.cell
        return (self.folds * i * cw - self.gap, self.rows_per_fold * ch - self.gap)

    def pack(self, weight: np.ndarray) -> np.ndarray:
        """The atlas image (height, width) float32; gap texels are 0 (the panel shader does not draw them)."""
        o, i, kh, kw = self.shape
        w = np.asarray(weight, np.float32).reshape(o, i, kh, kw)
        cw, ch = self.cell
        rows = self.rows_per_fold
        pad_o = rows * self.folds - o
        w = np.concatenate([w, np.zeros((pad_o, i, kh, kw), np.float32)]) if pad_o else w
        # (fold, row, i, kh, kw) -> (row, kh+gap, fold, i, kw+gap)
        w = w.reshape(self.folds, rows, i, kh, kw)
        cells = np.zeros((self.folds, rows, i, ch, cw), np.float32)
        cells[..., :kh, :kw] = w
        img = cells.transpose(1, 3, 0, 2, 4).reshape(rows * ch, self.folds * i * cw)
        width, height = self.size
        return np.ascontiguousarray(img[:height, :width])

    def unpack(self, image: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`pack`: the (O, I, kh, kw) weight from an atlas image (tests)."""
        o, i, kh, kw = self.shape
        cw, ch = self.cell
        rows = self.rows_per_fold
        full = np.zeros((rows * ch, self.folds * i * cw), np.float32)
        full[: image.shape[0], : image.shape[1]] = image
        cells = full.reshape(rows, ch, self.folds, i, cw).transpose(2, 0, 3, 1, 4)
        return cells[..., :kh, :kw].reshape(self.folds * rows, i, kh, kw)[:o]


def input_frame(x: torch.Tensor) -> torch.Tensor | None:
    """The (3, H, W) image the model saw (first sample; a clip's middle frame), or None if not an image."""
    t = x.detach()
    if t.dim() >= 4:
        t = t[0]
    if t.dim() == 4:  # video clip (C, T, H, W)
        t = t[:, t.shape[1] // 2]
    if t.dim() != 3 or t.shape[0] != 3:
        return None
    return t


def conv_weights(trace: Trace) -> dict[int, torch.Tensor]:
    """Layer index -> conv weight, for the conv layers whose weight panels fit in MAX_WEIGHT_TEXELS."""
    out, total = {}, 0
    for i, r in enumerate(trace.layers):
        if r.kind == "conv" and r.weight is not None and r.weight.dim() >= 3:
            w, h = WeightAtlas.for_shape(r.weight.shape).size
            if total + w * h > MAX_WEIGHT_TEXELS:
                continue
            total += w * h
            out[i] = r.weight
    return out


def layout_for(trace: Trace, *, weights: bool = True, histograms: bool = True) -> Layout:
    """The layout of a trace: one slab per layer, weight panels beside conv layers, a histogram panel (values,
    and weights when shown) beside every layer, the input in front."""
    from .inputs import picture_aspect

    aspect = picture_aspect(trace.input)
    shapes = (
        {i: WeightAtlas.for_shape(w.shape).size for i, w in conv_weights(trace).items()} if weights else {}
    )
    hist = {}
    if histograms and len(trace.layers) <= MAX_HISTOGRAM_PANELS:
        hist = {
            i: HISTOGRAM_ASPECT / (2 if weights and r.weight is not None else 1)
            for i, r in enumerate(trace.layers)
        }
    layout = build_layout(
        [(r.name, r.grid) for r in trace.layers],
        weight_shapes=shapes,
        input_aspect=aspect,
        histograms=hist,
    )
    layout.edges = list(trace.edges)
    return layout
