"""Offscreen render targets: an RGBA8 colour texture plus a 32-bit float depth buffer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .objects import GLObject, gpu_allocation
from .texture import Texture2D

if TYPE_CHECKING:
    from .context import GLContext

__all__ = ["Framebuffer"]


class _Renderbuffer(GLObject):
    kind = "renderbuffer"
    _label_namespace = 0x8D41  # GL_RENDERBUFFER


class Framebuffer(GLObject):
    """A ``width`` x ``height`` target; ``read_rgba()`` returns the image top row first."""

    kind = "framebuffer"
    _label_namespace = 0x8D40  # GL_FRAMEBUFFER

    def __init__(self, ctx: GLContext, width: int, height: int, *, label: str = "frame") -> None:
        from OpenGL import GL

        limit = ctx.max_texture_size
        if not (0 < width <= limit and 0 < height <= limit):
            from ..errors import InputError

            raise InputError(f"a {width}x{height} frame exceeds this GPU's limit of {limit} pixels a side")
        ctx.make_current()
        self.colour = Texture2D(ctx, width, height, "rgba8", label=f"{label}.colour")
        rb = GL.glGenRenderbuffers(1)
        try:
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, rb)
            with gpu_allocation(f"a {width}x{height} depth buffer ({label})", width * height * 4):
                GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, GL.GL_DEPTH_COMPONENT32F, width, height)
        except BaseException:
            GL.glDeleteRenderbuffers(1, [rb])
            self.colour.delete()
            raise
        finally:
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, 0)
        self.depth = _Renderbuffer(ctx, rb, f"{label}.depth")
        glo = GL.glGenFramebuffers(1)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, glo)
        GL.glFramebufferTexture2D(
            GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_TEXTURE_2D, self.colour.glo, 0
        )
        GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, GL.GL_RENDERBUFFER, rb)
        status = GL.glCheckFramebufferStatus(GL.GL_FRAMEBUFFER)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        super().__init__(ctx, glo, label)
        if status != GL.GL_FRAMEBUFFER_COMPLETE:
            self.delete()
            raise RuntimeError(f"framebuffer {width}x{height} incomplete (status 0x{status:x})")
        self.width, self.height = int(width), int(height)

    def bind(self) -> None:
        from OpenGL import GL

        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.glo)
        GL.glViewport(0, 0, self.width, self.height)

    def read_rgba(self) -> np.ndarray:
        """The colour image as (height, width, 4) uint8, top row first."""
        from OpenGL import GL

        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self.glo)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        out = np.empty((self.height, self.width, 4), np.uint8)
        GL.glReadPixels(0, 0, self.width, self.height, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, out)
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, 0)
        return out[::-1].copy()

    def read_depth(self) -> np.ndarray:
        """Window-space depth as (height, width) float32, top row first (tests)."""
        from OpenGL import GL

        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self.glo)
        out = np.empty((self.height, self.width), np.float32)
        GL.glReadPixels(0, 0, self.width, self.height, GL.GL_DEPTH_COMPONENT, GL.GL_FLOAT, out)
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, 0)
        return out[::-1].copy()

    def delete(self) -> None:
        if not self.deleted:
            self.colour.delete()
            self.depth.delete()
        super().delete()
