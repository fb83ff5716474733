"""The heads-up display: text (and small curves) drawn with Pillow into a texture, laid over the frame.

The image is redrawn only when its content changes, so the per-frame cost is one textured rectangle. Text
scales with the frame height so it stays readable on a 4K wall.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..gpu.program import Program
from ..gpu.texture import Texture2D

if TYPE_CHECKING:
    from ..gpu.context import GLContext

__all__ = ["Hud", "hud_image"]

Curves = dict[str, Sequence[float]]
_CURVE_COLOURS = [(255, 190, 90, 255), (120, 210, 255, 255), (170, 255, 140, 255)]


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def hud_image(lines: Sequence[str], frame_height: int, curves: Curves | None = None) -> np.ndarray:
    """An RGBA image (premultiplied alpha, top row first) holding the lines and curves."""
    size = max(12, round(frame_height / 48))
    font = _font(size)
    pad = size // 2
    line_h = round(size * 1.3)
    width = max([int(font.getlength(t)) for t in lines] + [0]) + 2 * pad
    plot_h = 0
    if curves:
        plot_w = max(width - 2 * pad, size * 16)
        width = max(width, plot_w + 2 * pad)
        plot_h = size * 5
    height = pad * 2 + line_h * len(lines) + (plot_h + pad + line_h) * len(curves or {})
    img = Image.new("RGBA", (max(width, 1), max(height, 1)), (8, 10, 16, 170))
    draw = ImageDraw.Draw(img)
    y = pad
    for t in lines:
        draw.text((pad, y), t, font=font, fill=(235, 238, 245, 255))
        y += line_h
    for k, (name, values) in enumerate((curves or {}).items()):
        colour = _CURVE_COLOURS[k % len(_CURVE_COLOURS)]
        vals = np.asarray([v for v in values if np.isfinite(v)], np.float64)
        last = f"{vals[-1]:.4g}" if len(vals) else "-"
        draw.text((pad, y), f"{name}  {last}", font=font, fill=colour)
        y += line_h
        x0, x1, y0, y1 = pad, width - pad, y, y + plot_h
        draw.rectangle((x0, y0, x1, y1), outline=(90, 95, 110, 255))
        if len(vals) >= 2:
            lo, hi = float(vals.min()), float(vals.max())
            hi = hi if hi > lo else lo + 1.0
            xs = np.linspace(x0 + 1, x1 - 1, len(vals))
            ys = y1 - 1 - (vals - lo) / (hi - lo) * (plot_h - 2)
            draw.line(list(zip(xs.tolist(), ys.tolist())), fill=colour, width=max(1, size // 8))
        y += plot_h + pad
    arr = np.asarray(img, np.float32)
    arr[..., :3] *= arr[..., 3:4] / 255.0
    return arr.astype(np.uint8)


class Hud:
    """Owns the HUD texture; :meth:`update` re-renders it only when lines or curves change."""

    def __init__(self, ctx: GLContext) -> None:
        from OpenGL import GL

        self.ctx = ctx
        self.program = Program(ctx, vertex="overlay.vert", fragment="overlay.frag", label="hud")
        self._vao = GL.glGenVertexArrays(1)
        self._texture: Texture2D | None = None
        self._key: object = None

    def update(self, lines: Sequence[str], frame_height: int, curves: Curves | None = None) -> None:
        key = (tuple(lines), frame_height, tuple((k, tuple(v)) for k, v in (curves or {}).items()))
        if key == self._key:
            return
        self._key = key
        img = hud_image(lines, frame_height, curves)
        if self._texture is None or (self._texture.width, self._texture.height) != (
            img.shape[1],
            img.shape[0],
        ):
            if self._texture is not None:
                self._texture.delete()
            self._texture = Texture2D(self.ctx, img.shape[1], img.shape[0], "rgba8", label="hud")
        self._texture.write(img)

    def draw(self, width: int, height: int, margin: int = 12) -> None:
        from OpenGL import GL

        if self._texture is None:
            return
        GL.glDisable(GL.GL_DEPTH_TEST)
        GL.glEnable(GL.GL_BLEND)
        GL.glBlendFunc(GL.GL_ONE, GL.GL_ONE_MINUS_SRC_ALPHA)
        tw, th = self._texture.width, self._texture.height
        self.program.use().set(
            u_rect=(margin, margin, margin + tw, margin + th), u_viewport=(width, height), u_texture=0
        )
        self._texture.bind(0)
        GL.glBindVertexArray(self._vao)
        GL.glDrawArrays(GL.GL_TRIANGLE_STRIP, 0, 4)
        GL.glBindVertexArray(0)
        GL.glDisable(GL.GL_BLEND)
        GL.glEnable(GL.GL_DEPTH_TEST)

    def close(self) -> None:
        from OpenGL import GL

        if self._vao:
            GL.glDeleteVertexArrays(1, [self._vao])
            self._vao = 0
        if self._texture is not None:
            self._texture.delete()
        self.program.delete()
