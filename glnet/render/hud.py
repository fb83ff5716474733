"""The heads-up display: text and small curves drawn with Pillow into textures, laid over the frame.

The image is redrawn only when its content changes, so the per-frame cost is one textured rectangle. Text
scales with the frame height so it stays readable on a 4K wall.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..gpu.objects import VertexArray
from ..gpu.program import Program
from ..gpu.texture import Texture2D

if TYPE_CHECKING:
    from ..capture import Trace
    from ..colormap import ValueRange
    from ..distributions import LayerStats
    from ..gpu.context import GLContext
    from .scene import FrameStats

__all__ = [
    "MARGIN",
    "Hud",
    "curves_image",
    "draw_overlays",
    "hud_font",
    "hud_image",
    "hud_lines",
    "premultiplied",
    "text_box",
]

MARGIN = 12  # pixels between the frame's edge and a HUD panel

Curves = dict[str, Sequence[float]]
_CURVE_COLOURS = [(255, 190, 90, 255), (120, 210, 255, 255), (170, 255, 140, 255)]


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _premultiplied(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img, np.float32)
    arr[..., :3] *= arr[..., 3:4] / 255.0
    return arr.astype(np.uint8)


def _text_size(frame_height: int) -> int:
    return max(12, round(frame_height / 48))


def hud_font(frame_height: int) -> tuple[ImageFont.ImageFont | ImageFont.FreeTypeFont, int]:
    """The HUD's font for a frame this tall, and its size in pixels (every panel uses the same)."""
    size = _text_size(frame_height)
    return _font(size), size


def premultiplied(img: Image.Image) -> np.ndarray:
    """An RGBA Pillow image as the premultiplied-alpha array the overlay shader blends."""
    return _premultiplied(img)


def hud_image(lines: Sequence[str], frame_height: int) -> np.ndarray:
    """The text panel: an RGBA image (premultiplied alpha, top row first) holding the lines."""
    size = _text_size(frame_height)
    font = _font(size)
    pad = size // 2
    line_h = round(size * 1.3)
    width = max([int(font.getlength(t)) for t in lines] + [0]) + 2 * pad
    img = Image.new("RGBA", (max(width, 1), max(pad * 2 + line_h * len(lines), 1)), (8, 10, 16, 170))
    draw = ImageDraw.Draw(img)
    for k, t in enumerate(lines):
        draw.text((pad, pad + k * line_h), t, font=font, fill=(235, 238, 245, 255))
    return _premultiplied(img)


def text_box(lines: Sequence[str], frame_height: int) -> tuple[int, int, int, int]:
    """Where :meth:`Hud.draw` puts the text panel: (x0, y0, x1, y1) in pixels from the top-left corner."""
    h, w = hud_image(lines, frame_height).shape[:2]
    return (MARGIN, MARGIN, MARGIN + w, MARGIN + h)


def _fmt_shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape) or "scalar"


def hud_lines(
    trace: Trace,
    layer: int,
    value_range: ValueRange,
    *,
    renderer: str,
    frame_ms: float | None = None,
    stats: FrameStats | None = None,
    distribution: LayerStats | None = None,
) -> list[str]:
    """The HUD's text: the model, one layer (name, kinds, shape, value range), and the last frame's cost."""
    rec = trace.layers[layer]
    total = trace.neurons
    drawn = stats.neurons_drawn if stats else total
    detail = f" ({len(stats.aggregated)} layers as channel means)" if stats and stats.aggregated else ""
    lines = [
        f"{trace.model_name or 'model'}  ·  {total:,} neurons  ·  {renderer}",
        f"layer {layer + 1}/{len(trace.layers)}: {rec.name} ({rec.module_type}"
        + (f" -> {rec.shown_type}" if rec.shown_type else "")
        + ")",
        f"shape {_fmt_shape(rec.shape)}  ·  range {value_range.lo:.3g} … {value_range.hi:.3g}"
        + (f"  ·  {value_range.nonfinite:,} NaN/Inf" if value_range.nonfinite else ""),
    ]
    if distribution is not None:
        d = distribution
        lines.append(f"mean {d.mean:.3g}  ·  std {d.std:.3g}  ·  zeros {100 * d.zero_frac:.1f}%")
    if frame_ms is not None:
        lines.append(f"frame {frame_ms:.1f} ms  ·  drawn {drawn:,}{detail}")
    return lines


def curves_image(curves: Curves, frame_height: int) -> np.ndarray:
    """The curves panel (loss, accuracy, ...): one small plot per curve, its latest value in the title."""
    size = _text_size(frame_height)
    font = _font(size)
    pad = size // 2
    line_h = round(size * 1.3)
    plot_w, plot_h = size * 18, size * 4
    width = plot_w + 2 * pad
    height = pad + (line_h + plot_h + pad) * len(curves)
    img = Image.new("RGBA", (width, max(height, 1)), (8, 10, 16, 170))
    draw = ImageDraw.Draw(img)
    y = pad
    for k, (name, values) in enumerate(curves.items()):
        colour = _CURVE_COLOURS[k % len(_CURVE_COLOURS)]
        vals = np.asarray([v for v in values if np.isfinite(v)], np.float64)
        last = f"{vals[-1]:.4g}" if len(vals) else "-"
        draw.text((pad, y), f"{name}  {last}", font=font, fill=colour)
        y += line_h
        x0, x1, y0, y1 = pad, pad + plot_w, y, y + plot_h
        draw.rectangle((x0, y0, x1, y1), outline=(90, 95, 110, 255))
        if len(vals) >= 2:
            lo, hi = float(vals.min()), float(vals.max())
            hi = hi if hi > lo else lo + 1.0
            xs = np.linspace(x0 + 1, x1 - 1, len(vals))
            ys = y1 - 1 - (vals - lo) / (hi - lo) * (plot_h - 2)
            draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=colour, width=max(1, size // 8))
        y += plot_h + pad
    return _premultiplied(img)


def draw_overlays(
    program: Program,
    vao: VertexArray,
    rects: Sequence[tuple[Texture2D, tuple[float, float, float, float]]],
    width: int,
    height: int,
) -> None:
    """Blend premultiplied textures over the frame, each at its rect (x0, y0, x1, y1; pixels from the
    top-left), with ``overlay.vert``/``overlay.frag``; depth testing is off meanwhile."""
    from OpenGL import GL

    if not rects:
        return
    GL.glDisable(GL.GL_DEPTH_TEST)
    GL.glEnable(GL.GL_BLEND)
    GL.glBlendFunc(GL.GL_ONE, GL.GL_ONE_MINUS_SRC_ALPHA)
    p = program.use()
    vao.bind()
    for tex, rect in rects:
        p.set(u_rect=rect, u_viewport=(width, height), u_texture=0)
        tex.bind(0)
        GL.glDrawArrays(GL.GL_TRIANGLE_STRIP, 0, 4)
    VertexArray.unbind()
    GL.glDisable(GL.GL_BLEND)
    GL.glEnable(GL.GL_DEPTH_TEST)


class Hud:
    """Owns the HUD textures: text at the top left, curves at the bottom left, :meth:`set_panel` panels at the
    bottom right; each is re-rendered only when its content changes."""

    def __init__(self, ctx: GLContext) -> None:
        self.ctx = ctx
        self.program = Program(ctx, vertex="overlay.vert", fragment="overlay.frag", label="hud")
        self._vao = VertexArray(ctx, label="hud")
        self._textures: dict[str, Texture2D] = {}
        self._keys: dict[str, object] = {}
        self._right: set[str] = set()  # panels drawn at the bottom right

    def _set(self, name: str, key: object, make: Callable[[], np.ndarray]) -> None:
        if self._keys.get(name) == key:
            return
        self._keys[name] = key
        img = make()
        tex = self._textures.get(name)
        if tex is None or (tex.width, tex.height) != (img.shape[1], img.shape[0]):
            if tex is not None:
                tex.delete()
            tex = self._textures[name] = Texture2D(
                self.ctx, img.shape[1], img.shape[0], "rgba8", label=f"hud {name}"
            )
        tex.write(img)

    def set_panel(self, name: str, key: object, make: Callable[[], np.ndarray] | None) -> None:
        """Another panel at the bottom right (e.g. the gradient-flow chart): ``make`` gives its RGBA image,
        called only when ``key`` changes; ``make=None`` removes the panel."""
        if make is None:
            if name in self._textures:
                self._textures.pop(name).delete()
            self._keys.pop(name, None)
            self._right.discard(name)
            return
        self._right.add(name)
        self._set(name, key, make)

    def update(self, lines: Sequence[str], frame_height: int, curves: Curves | None = None) -> None:
        self._set("text", (tuple(lines), frame_height), lambda: hud_image(lines, frame_height))
        if curves:
            key = (frame_height, tuple((k, tuple(v)) for k, v in curves.items()))
            self._set("curves", key, lambda: curves_image(curves, frame_height))
        elif "curves" in self._textures:
            self._textures.pop("curves").delete()
            self._keys.pop("curves", None)

    def draw(self, width: int, height: int, margin: int = MARGIN) -> None:
        rects = []
        for name, tex in self._textures.items():
            tw, th = tex.width, tex.height
            y0 = margin if name == "text" else height - margin - th
            x0 = width - margin - tw if name in self._right else margin
            rects.append((tex, (x0, y0, x0 + tw, y0 + th)))
        draw_overlays(self.program, self._vao, rects, width, height)

    def close(self) -> None:
        self._vao.delete()
        for tex in self._textures.values():
            tex.delete()
        self._textures.clear()
        self.program.delete()
