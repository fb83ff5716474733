"""2-D textures, and tiled textures for data wider or taller than the driver's texture limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .objects import GLObject, gpu_allocation

if TYPE_CHECKING:
    from .context import GLContext

__all__ = ["Texture2D", "TextureTile", "TiledTexture"]

# format name -> (internal format, pixel format, pixel type, numpy dtype, channels)
_FORMATS = {
    "r32f": (0x822E, 0x1903, 0x1406, np.float32, 1),  # GL_R32F, GL_RED, GL_FLOAT
    "rgba8": (0x8058, 0x1908, 0x1401, np.uint8, 4),  # GL_RGBA8, GL_RGBA, GL_UNSIGNED_BYTE
    "rgba32f": (0x8814, 0x1908, 0x1406, np.float32, 4),  # GL_RGBA32F
}


class Texture2D(GLObject):
    """An immutable-size 2-D texture; rows of ``data`` go bottom-up in texture space (row 0 = v 0)."""

    kind = "texture"
    _label_namespace = 0x1702  # GL_TEXTURE

    def __init__(
        self,
        ctx: GLContext,
        width: int,
        height: int,
        fmt: str = "r32f",
        *,
        data: np.ndarray | None = None,
        linear: bool = False,
        label: str = "",
    ) -> None:
        from OpenGL import GL

        if fmt not in _FORMATS:
            raise ValueError(f"unknown texture format {fmt!r}; one of {sorted(_FORMATS)}")
        limit = ctx.info.max_texture_size
        if not (0 < width <= limit and 0 < height <= limit):
            raise ValueError(
                f"texture {width}x{height} exceeds the driver's limit {limit} (use TiledTexture)"
            )
        internal, _, _, dtype, channels = _FORMATS[fmt]
        nbytes = width * height * channels * np.dtype(dtype).itemsize
        ctx.make_current()
        glo = GL.glGenTextures(1)
        try:
            GL.glBindTexture(GL.GL_TEXTURE_2D, glo)
            with gpu_allocation(f"a {width}x{height} {fmt} texture ({label or 'unnamed'})", nbytes):
                GL.glTexStorage2D(GL.GL_TEXTURE_2D, 1, internal, width, height)
            filt = GL.GL_LINEAR if linear else GL.GL_NEAREST
            GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MIN_FILTER, filt)
            GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MAG_FILTER, filt)
            GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_WRAP_S, GL.GL_CLAMP_TO_EDGE)
            GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_WRAP_T, GL.GL_CLAMP_TO_EDGE)
        except BaseException:
            GL.glDeleteTextures(1, [glo])
            raise
        finally:
            GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
        super().__init__(ctx, glo, label)
        self.width, self.height, self.fmt = int(width), int(height), fmt
        if data is not None:
            self.write(data)

    @property
    def nbytes(self) -> int:
        _, _, _, dtype, ch = _FORMATS[self.fmt]
        return self.width * self.height * ch * np.dtype(dtype).itemsize

    def write(self, data: np.ndarray, x: int = 0, y: int = 0) -> None:
        """Upload ``data`` (h, w[, channels]) at texel (x, y); the context must be current."""
        from OpenGL import GL

        _, pix, typ, dtype, ch = _FORMATS[self.fmt]
        arr = np.ascontiguousarray(data, dtype=dtype)
        h, w = arr.shape[:2]
        if (arr.ndim == 3 and arr.shape[2] != ch) or (arr.ndim == 2 and ch != 1):
            raise ValueError(f"{self.fmt} texture needs {ch} channel(s), got shape {arr.shape}")
        if x < 0 or y < 0 or x + w > self.width or y + h > self.height:
            raise ValueError(f"{w}x{h} at ({x}, {y}) does not fit the {self.width}x{self.height} texture")
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 1)
        GL.glTextureSubImage2D(self.glo, 0, x, y, w, h, pix, typ, arr)

    def read(self) -> np.ndarray:
        """The texture's content as (height, width[, channels]) (tests)."""
        from OpenGL import GL

        _, pix, typ, dtype, ch = _FORMATS[self.fmt]
        out = np.empty((self.height, self.width, ch), dtype)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        GL.glGetTextureImage(self.glo, 0, pix, typ, out.nbytes, out)
        return out[..., 0] if ch == 1 else out

    def bind(self, unit: int) -> None:
        from OpenGL import GL

        GL.glBindTextureUnit(unit, self.glo)


@dataclass
class TextureTile:
    """One texture of a tiled image and where it sits, in texels of the whole image."""

    texture: Texture2D
    x: int
    y: int

    @property
    def width(self) -> int:
        return self.texture.width

    @property
    def height(self) -> int:
        return self.texture.height


class TiledTexture:
    """An image of any size, split into textures no larger than ``ctx.max_texture_size`` (the driver's limit,
    which tests lower to exercise tiling on small data)."""

    def __init__(self, ctx: GLContext, data: np.ndarray, fmt: str = "r32f", *, label: str = "") -> None:
        self.width, self.height = int(data.shape[1]), int(data.shape[0])
        step = ctx.max_texture_size
        self.tiles: list[TextureTile] = []
        for y in range(0, self.height, step):
            for x in range(0, self.width, step):
                part = data[y : y + step, x : x + step]
                tex = Texture2D(ctx, part.shape[1], part.shape[0], fmt, data=part, label=f"{label}[{y},{x}]")
                self.tiles.append(TextureTile(tex, x, y))

    def read(self) -> np.ndarray:
        """Reassemble the whole image from its tiles (tests)."""
        first = self.tiles[0].texture.read()
        out = np.empty((self.height, self.width, *first.shape[2:]), first.dtype)
        for t in self.tiles:
            out[t.y : t.y + t.height, t.x : t.x + t.width] = t.texture.read()
        return out

    @property
    def nbytes(self) -> int:
        return sum(t.texture.nbytes for t in self.tiles)

    def delete(self) -> None:
        for t in self.tiles:
            t.texture.delete()
