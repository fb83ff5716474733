"""Gradient flow while training: a HUD chart of each layer's weight-gradient norm (log scale) and share of
dead units, and the accumulator that counts dead units on the frames' own device.

A layer is flagged when its gradient *vanishes or explodes relative to the others* (its norm is more than
``ratio`` below or above the median of the layers' norms) or is not finite: its bar takes the flag colour and
its name goes into the caption. A unit is dead when its shown value was exactly zero in every one of the last
``steps`` activation frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..gpu.cloud import BYTES_PER_NEURON
from .hud import hud_font, premultiplied

__all__ = [
    "BAR",
    "DEAD",
    "DEAD_STEPS",
    "FLAG",
    "FLAG_RATIO",
    "DeadUnits",
    "GradFlowLayout",
    "flag_layers",
    "gradflow_image",
    "gradflow_layout",
]

BAR = (110, 190, 255)  # a layer's gradient norm
FLAG = (255, 70, 70)  # vanishing, exploding or non-finite
DEAD = (205, 150, 255)  # share of dead units
_NONE = (90, 95, 110)  # no gradient (no weight, or no grad yet); also the frames
_TEXT = (235, 238, 245)
FLAG_RATIO = 1e3
DEAD_STEPS = 16

Norm = float | None  # None: the layer has no weight gradient


def flag_layers(norms: Sequence[Norm], ratio: float = FLAG_RATIO) -> dict[int, str]:
    """Layers whose gradient norm is ``vanishing`` (below median / ``ratio``, zero included), ``exploding``
    (above median * ``ratio``) or ``non-finite``, by index; layers without a gradient are never flagged."""
    finite = [v for v in norms if v is not None and math.isfinite(v)]
    med = float(np.median(finite)) if finite else math.nan
    out: dict[int, str] = {}
    for i, v in enumerate(norms):
        if v is None:
            continue
        if not math.isfinite(v):
            out[i] = "non-finite"
        elif v <= 0 or (med > 0 and v < med / ratio):
            out[i] = "vanishing"
        elif med > 0 and v > med * ratio:
            out[i] = "exploding"
    return out


@dataclass(frozen=True)
class GradFlowLayout:
    """Where :func:`gradflow_image` draws: the norm plot and the dead-unit row as (x0, y0, x1, y1) boxes
    (inclusive pixels, top-left origin), each layer's bar columns, and the plot's log10 axis."""

    width: int
    height: int
    plot: tuple[int, int, int, int]
    dead: tuple[int, int, int, int]
    bars: tuple[tuple[int, int], ...]  # (first, last) column of each layer's bar
    lo: float  # log10 of the norm at the plot's bottom
    hi: float  # and at its top
    title_y: int
    caption_y: int

    def bar_height(self, norm: Norm) -> int:
        """Pixels of the bar for ``norm``: linear in log10 between :attr:`lo` and :attr:`hi`, full height
        when not finite, at least 2 (so a vanishing layer still shows its colour), 0 with no gradient."""
        if norm is None:
            return 0
        inner = self.plot[3] - self.plot[1] - 1
        if not math.isfinite(norm):
            return inner
        if norm <= 0:
            return 2
        f = (math.log10(norm) - self.lo) / (self.hi - self.lo)
        return max(2, min(inner, round(f * inner)))


def _axis(norms: Sequence[Norm]) -> tuple[float, float]:
    logs = [math.log10(v) for v in norms if v is not None and math.isfinite(v) and v > 0]
    if not logs:
        return -1.0, 1.0
    return float(math.floor(min(logs)) - 1), float(math.floor(max(logs)) + 1)


def gradflow_layout(norms: Sequence[Norm], frame_height: int) -> GradFlowLayout:
    """The chart's geometry for ``norms`` (one per layer) in a frame ``frame_height`` pixels tall."""
    font, size = hud_font(frame_height)
    pad = size // 2
    line_h = round(size * 1.3)
    n = max(1, len(norms))
    label_w = int(font.getlength("1e-10")) + pad
    plot_w = max(size * 20, min(n * 4, size * 40))
    plot_h, dead_h = size * 4, max(4, size * 3 // 4)
    x0 = pad + label_w
    x1 = x0 + plot_w + 1
    title_y = pad
    py0 = title_y + line_h
    py1 = py0 + plot_h + 1
    dy0 = py1 + max(2, pad // 2)
    dy1 = dy0 + dead_h + 1
    caption_y = dy1 + pad // 2
    height = caption_y + 2 * line_h + pad
    pitch = plot_w / n
    gap = 1 if pitch >= 3 else 0
    bars = tuple(
        (x0 + 1 + round(i * pitch), max(x0 + 1 + round(i * pitch), x0 + round((i + 1) * pitch) - gap))
        for i in range(len(norms))
    )
    lo, hi = _axis(norms)
    return GradFlowLayout(
        x1 + pad, height, (x0, py0, x1, py1), (x0, dy0, x1, dy1), bars, lo, hi, title_y, caption_y
    )


def _fit(prefix: str, items: Sequence[str], width: int, font: Any) -> str:
    """``prefix`` and as many of ``items`` as fit in ``width`` pixels, then how many more there are."""
    for k in range(len(items), 0, -1):
        more = f" +{len(items) - k} more" if k < len(items) else ""
        text = prefix + ", ".join(items[:k]) + more
        if font.getlength(text) <= width:
            return text
    return f"{prefix}{len(items)} layers"


def gradflow_image(
    names: Sequence[str],
    norms: Sequence[Norm],
    frame_height: int,
    *,
    dead: Sequence[float | None] | None = None,
    dead_steps: int = 0,
    ratio: float = FLAG_RATIO,
) -> np.ndarray:
    """The gradient-flow panel: an RGBA image (premultiplied alpha, top row first).

    A bar per layer, in forward order, of its weight-gradient norm on a log10 axis (layers without one get a
    grey tick), flagged layers (see :func:`flag_layers`) in :data:`FLAG` and named in the caption; below, a
    thin row with each layer's share of dead units over the last ``dead_steps`` frames (0 to 1).
    """
    lay = gradflow_layout(norms, frame_height)
    font, size = hud_font(frame_height)
    pad = size // 2
    line_h = round(size * 1.3)
    img = Image.new("RGBA", (lay.width, lay.height), (8, 10, 16, 170))
    draw = ImageDraw.Draw(img)
    flags = flag_layers(norms, ratio)
    x0, y0, x1, y1 = lay.plot
    draw.text((pad, lay.title_y), "weight-gradient norm per layer (log10)", font=font, fill=(*_TEXT, 255))
    inner = y1 - y0 - 1
    span = lay.hi - lay.lo
    step = max(1, math.ceil(span / 6))
    for d in range(math.ceil(lay.lo), math.floor(lay.hi) + 1, step):  # a faint line a decade (or a few)
        y = y1 - round((d - lay.lo) / span * inner)
        draw.line((x0 + 1, y, x1 - 1, y), fill=(40, 44, 56, 255))
    for label, y in ((f"1e{int(lay.hi)}", y0), (f"1e{int(lay.lo)}", y1 - size)):
        draw.text((pad, y), label, font=font, fill=(*_NONE, 255))
    draw.rectangle(lay.plot, outline=(*_NONE, 255))
    for i, (v, (a, b)) in enumerate(zip(norms, lay.bars, strict=True)):
        h = lay.bar_height(v)
        if v is None:
            draw.rectangle((a, y1 - 2, b, y1 - 1), fill=(*_NONE, 255))
        elif h > 0:
            draw.rectangle((a, y1 - h, b, y1 - 1), fill=(*(FLAG if i in flags else BAR), 255))
    _, dy0, _, dy1 = lay.dead
    draw.rectangle(lay.dead, outline=(*_NONE, 255))
    draw.text((pad, dy0 + (dy1 - dy0 - size) // 2 - 1), "dead", font=font, fill=(*DEAD, 255))
    dead = list(dead) if dead is not None else []
    for f, (a, b) in zip(dead, lay.bars, strict=False):
        if f is not None and math.isfinite(f) and f > 0:
            h = max(1, round(min(1.0, f) * (dy1 - dy0 - 1)))
            draw.rectangle((a, dy1 - h, b, dy1 - 1), fill=(*DEAD, 255))
    text_w = lay.width - 2 * pad
    named = [f"{names[i]} ({why})" for i, why in sorted(flags.items()) if i < len(names)]
    if named:
        line = _fit("flagged: ", named, text_w, font)
        draw.text((pad, lay.caption_y), line, font=font, fill=(*FLAG, 255))
    else:
        finite = [v for v in norms if v is not None and math.isfinite(v)]
        median = f"median {float(np.median(finite)):.3g}  ·  " if finite else ""
        line = median + "no layer vanishes or explodes"
        draw.text((pad, lay.caption_y), line, font=font, fill=(*_NONE, 255))
    known = [(f, i) for i, f in enumerate(dead) if f is not None and math.isfinite(f)]
    if known:
        f, i = max(known)
        where = f" ({names[i]})" if f > 0 and i < len(names) else ""
        frames = f"{dead_steps} frame" + ("s" if dead_steps != 1 else "")
        line = f"dead units, last {frames}: max {100 * f:.0f}%{where}"
    else:
        line = "dead units: waiting for activation frames"
    draw.text((pad, lay.caption_y + line_h), line, font=font, fill=(*DEAD, 255))
    return premultiplied(img)


class DeadUnits:
    """Per layer, the share of units whose value was exactly zero in each of the last ``steps`` frames.

    Frames are packed like the GL values buffer (``offsets`` in bytes, ``counts`` neurons per layer); the
    counting runs on their device, a byte a neuron, and :meth:`fractions` gives one small tensor there.
    """

    def __init__(
        self,
        offsets: Sequence[int],
        counts: Sequence[int],
        device: torch.device | str,
        *,
        steps: int = DEAD_STEPS,
    ) -> None:
        if not 1 <= steps <= 255:
            raise ValueError(f"steps must be in 1..255, not {steps}")
        self.steps = int(steps)
        self.device = torch.device(device)
        starts = [off // BYTES_PER_NEURON for off in offsets]
        ends = [s + n for s, n in zip(starts, counts, strict=True)]
        self.floats = max(ends, default=0)
        self.starts = torch.tensor(starts, dtype=torch.long, device=self.device)
        self.ends = torch.tensor(ends, dtype=torch.long, device=self.device)
        self.counts = torch.tensor(list(counts), dtype=torch.float32, device=self.device).clamp_min(1)
        self.streak = torch.zeros(self.floats, dtype=torch.uint8, device=self.device)  # zero frames in a row
        self.frames = 0

    def add(self, flat: torch.Tensor) -> None:
        """Count one frame (its values, laid out like the values buffer, on :attr:`device`)."""
        zero = flat[: self.floats] == 0
        self.streak.clamp_(max=self.steps - 1).add_(1).mul_(zero)
        self.frames += 1

    @property
    def window(self) -> int:
        """How many frames the current shares cover (``steps`` once that many have been added)."""
        return min(self.frames, self.steps)

    def fractions(self) -> torch.Tensor:
        """(L,) float32 on :attr:`device`: each layer's dead share over the last :attr:`window` frames (NaN
        before the first)."""
        if self.frames == 0:
            return torch.full((len(self.starts),), math.nan, dtype=torch.float32, device=self.device)
        dead = (self.streak >= self.window).to(torch.int32)
        cs = torch.cat([dead.new_zeros(1), dead.cumsum(0, dtype=torch.int32)])
        return (cs[self.ends] - cs[self.starts]).to(torch.float32) / self.counts

    def reset(self) -> None:
        """Forget every frame."""
        self.streak.zero_()
        self.frames = 0
