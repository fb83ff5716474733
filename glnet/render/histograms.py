"""Histogram panels: beside each slab, the distribution of the layer's values (and of its weights).

Each panel is an RGBA image drawn on the CPU (bars coloured by the layer's own colour map, so a bar has the
colour of the neurons it counts) and shown as a textured rectangle by ``panel.vert``/``panel.frag``. New
values only queue work: histograms are recomputed on the values' device, all layers in one small read, when
a frame is drawn and at most once every ``every`` updates (or when :meth:`HistogramPanels.refresh` asks).
Bar heights are logarithmic in the count: a ReLU's zero bin would flatten everything else on a linear scale.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from ..colormap import BACKGROUND, ValueRange, colour_codes, lut
from ..distributions import Histogram, histograms
from ..gpu.objects import VertexArray
from ..gpu.program import Program
from ..gpu.texture import Texture2D

if TYPE_CHECKING:
    import torch
    from PIL import ImageFont

    from ..gpu.context import GLContext
    from ..layout import Layout
    from .frame import FrameParams

__all__ = ["BINS", "HistogramPanels", "histogram_image"]

BINS = 64
IMAGE_WIDTH = 192  # texels across a panel; its height follows the panel's aspect
SAMPLE_BUDGET = 1 << 21  # values histogrammed per refresh, all panels together; larger tensors are sampled
_FILL = tuple(round(255 * min(1.0, c * 1.6 + 0.03)) for c in BACKGROUND)
_FRAME = (70, 76, 92)
_TEXT = (205, 210, 222)
_ZERO = (150, 155, 170)
_FONT: ImageFont.ImageFont | ImageFont.FreeTypeFont | None = None


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    global _FONT
    if _FONT is None:
        from PIL import ImageFont

        try:
            _FONT = ImageFont.load_default(size=11)
        except (ImportError, OSError, TypeError):  # Pillow without FreeType: the bitmap font
            _FONT = ImageFont.load_default()
    return _FONT


@cache
def _table() -> np.ndarray:
    return lut()[:, :3]


def _num(x: float) -> str:
    return f"{x:.3g}"


def _share(part: int, whole: int) -> str:
    x = part / max(whole, 1)
    return "<1%" if 0 < x < 0.01 else f"{x:.0%}"


def _plot(draw: object, box: tuple[int, int, int, int], title: str, h: Histogram, rng: ValueRange) -> None:
    """One histogram into ``box`` (x0, y0, x1, y1) of a Pillow ``ImageDraw``: title, bars, range labels."""
    x0, y0, x1, y1 = box
    font = _font()
    draw.rectangle(box, fill=_FILL, outline=_FRAME)
    extra = [f"zeros {_share(h.zeros, h.count)}" if h.zeros else ""]
    extra.append(f"NaN/Inf {_share(h.nonfinite, h.count)}" if h.nonfinite else "")
    draw.text((x0 + 4, y0 + 2), "  ".join([title, *filter(None, extra)]), fill=_TEXT, font=font)
    draw.text((x0 + 4, y1 - 13), _num(h.lo), fill=_TEXT, font=font)
    draw.text((x1 - 4, y1 - 13), _num(h.hi), fill=_TEXT, font=font, anchor="ra")
    bx0, bx1, top, base = x0 + 4, x1 - 4, y0 + 16, y1 - 15
    if h.finite == 0 or base <= top:
        return
    edges = np.linspace(bx0, bx1, h.bins + 1).round().astype(int)
    centres = h.lo + (np.arange(h.bins) + 0.5) * (h.hi - h.lo) / h.bins
    colours = _table()[colour_codes(centres, rng)]
    heights = np.log1p(h.counts) / math.log1p(int(h.counts.max()))
    for b in np.flatnonzero(h.counts):
        ya = base - max(1, round(heights[b] * (base - top)))
        xb = max(edges[b], edges[b + 1] - 1)
        draw.rectangle((edges[b], ya, xb, base), fill=tuple(int(c) for c in colours[b]))
    if h.lo < 0 < h.hi:
        xz = round(bx0 + (0 - h.lo) / (h.hi - h.lo) * (bx1 - bx0))
        draw.line((xz, top - 2, xz, base + 2), fill=_ZERO)


def _weight_range(h: Histogram) -> ValueRange:
    m = max(abs(h.lo), abs(h.hi)) or 1.0
    return ValueRange(-m, m, True)


def histogram_image(
    values: Histogram,
    rng: ValueRange,
    weights: Histogram | None = None,
    size: tuple[int, int] = (IMAGE_WIDTH, IMAGE_WIDTH // 2),
) -> np.ndarray:
    """A panel's image (height, width, 4) uint8, top row first: the values' histogram, the weights' below."""
    from PIL import Image, ImageDraw

    width, height = size
    img = Image.new("RGB", (width, height), tuple(round(255 * c) for c in BACKGROUND))
    draw = ImageDraw.Draw(img)
    plots = [("values", values, rng)] + ([("weights", weights, _weight_range(weights))] if weights else [])
    step = height / len(plots)
    for k, (title, h, r) in enumerate(plots):
        _plot(draw, (0, round(k * step), width - 1, round((k + 1) * step) - 1), title, h, r)
    return np.asarray(img.convert("RGBA"))


class HistogramPanels:
    """The histogram panels of a layout: owns their textures, keeps them following the values, draws them."""

    def __init__(self, ctx: GLContext, layout: Layout, *, bins: int = BINS, every: int = 4) -> None:
        self.ctx = ctx
        self.layout = layout
        self.bins = bins
        self.every = max(1, every)  # recompute on at most one update in ``every``
        self.textures: dict[int, Texture2D] = {}
        self.refreshes = 0  # how many times the histograms were recomputed
        self.latest: dict[int, tuple[Histogram, Histogram | None]] = {}  # layer -> (values, weights)
        self._lock = threading.Lock()
        self._values: list[torch.Tensor] | None = None
        self._ranges: list[ValueRange] | None = None
        self._weights: dict[int, torch.Tensor] = {}
        self._skipped = 0
        self._due = False
        self.program = Program(ctx, vertex="panel.vert", fragment="panel.frag", label="histograms")
        self._vao = VertexArray(ctx, label="histograms")

    @property
    def active(self) -> bool:
        """Whether there is anything to draw."""
        return bool(self.layout.histogram_panels) and (bool(self.textures) or self._due)

    def set_values(self, values: Sequence[torch.Tensor], ranges: Sequence[ValueRange] | None = None) -> None:
        """New values of every layer (and their colour ranges); GL-free and thread-safe."""
        with self._lock:
            self._values, self._ranges = list(values), (list(ranges) if ranges is not None else None)
            self._skipped += 1
            if self.refreshes == 0 or self._skipped >= self.every:
                self._due, self._skipped = True, 0

    def set_weights(self, weights: Mapping[int, torch.Tensor]) -> None:
        """Layer index -> weight tensor (references: a training model's weights are read when recomputed)."""
        with self._lock:
            self._weights = dict(weights)
            self._due = True

    def refresh(self) -> None:
        """Recompute from the latest values on the next draw, whatever ``every`` says."""
        with self._lock:
            self._due = self._values is not None

    def _recompute(self) -> None:
        with self._lock:
            values, ranges, weights, self._due = self._values, self._ranges, self._weights, False
        if values is None:
            return
        panels = self.layout.histogram_panels
        index = [i for i in panels if i < len(values)]
        windex = [i for i in index if i in weights]
        tensors = [*(values[i] for i in index), *(weights[i] for i in windex)]
        found = histograms(tensors, self.bins, limit=max(1 << 14, SAMPLE_BUDGET // max(len(tensors), 1)))
        hv = dict(zip(index, found[: len(index)], strict=True))
        hw = dict(zip(windex, found[len(index) :], strict=True))
        for i in index:
            h = hv[i]
            hi = h.hi if h.hi > h.lo else h.lo + (abs(h.lo) or 1.0)
            rng = ranges[i] if ranges is not None else ValueRange(h.lo, hi, False)
            pw, ph = panels[i].size
            size = (IMAGE_WIDTH, max(8, round(IMAGE_WIDTH * ph / pw)))
            image = histogram_image(h, rng, hw.get(i), size)
            tex = self.textures.get(i)
            if tex is None or (tex.width, tex.height) != size:
                if tex is not None:
                    tex.delete()
                tex = self.textures[i] = Texture2D(
                    self.ctx, size[0], size[1], "rgba8", linear=True, label=f"histogram {i}"
                )
            tex.write(image)
            self.latest[i] = (h, hw.get(i))
        self.refreshes += 1

    def draw(self, frame: FrameParams) -> int:
        """Recompute if due, then draw every panel depth-tested (render thread); returns panels drawn."""
        from OpenGL import GL

        if self._due:
            self._recompute()
        if not self.textures:
            return 0
        GL.glEnable(GL.GL_DEPTH_TEST)
        GL.glDepthFunc(GL.GL_LESS)
        GL.glDisable(GL.GL_BLEND)
        p = self.program.use()
        p.set(u_view_proj=frame.view_proj, u_texture=1, u_rgb=1)
        self._vao.bind()
        for i, tex in self.textures.items():
            panel = self.layout.histogram_panels[i]
            tex.bind(1)
            p.set(u_corner=panel.origin, u_extent=panel.size)
            GL.glDrawArrays(GL.GL_TRIANGLE_STRIP, 0, 4)
        VertexArray.unbind()
        return len(self.textures)

    def close(self) -> None:
        """Release the textures and the program (context current); idempotent."""
        for tex in self.textures.values():
            tex.delete()
        self.textures.clear()
        self._vao.delete()
        self.program.delete()
