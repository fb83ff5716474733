"""Asynchronous read-back of rendered frames through a ring of pixel-buffer objects.

``glReadPixels`` into a bound ``GL_PIXEL_PACK_BUFFER`` returns at once on a GPU: the copy runs after the
frame's draws, while the CPU goes on to the next frame. :class:`FrameReader` keeps a small ring of such
buffers and maps the oldest only when the ring is full, so frame n is copied to host memory while frame
n+1 (or n+2) renders. Frames come out in order, top row first, the same pixels as
:meth:`glnet.gpu.framebuffer.Framebuffer.read_rgba`.
"""

from __future__ import annotations

import ctypes
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from .objects import GLObject, gpu_allocation

if TYPE_CHECKING:
    from .context import GLContext
    from .framebuffer import Framebuffer

__all__ = ["FrameReader"]


class _PackBuffer(GLObject):
    kind = "buffer"
    _label_namespace = 0x82E0  # GL_BUFFER

    def __init__(self, ctx: GLContext, nbytes: int, label: str) -> None:
        from OpenGL import GL

        glo = GL.glGenBuffers(1)
        try:
            GL.glBindBuffer(GL.GL_PIXEL_PACK_BUFFER, glo)
            with gpu_allocation(f"a read-back buffer ({label})", nbytes):
                GL.glBufferData(GL.GL_PIXEL_PACK_BUFFER, nbytes, None, GL.GL_STREAM_READ)
        except BaseException:
            GL.glDeleteBuffers(1, [glo])
            raise
        finally:
            GL.glBindBuffer(GL.GL_PIXEL_PACK_BUFFER, 0)
        super().__init__(ctx, glo, label)


class FrameReader:
    """Reads ``width`` x ``height`` RGBA frames back through ``ring`` pixel-buffer objects; owns them
    (:meth:`close`, or use as a context manager). ``read(fb)`` starts a read and returns the oldest
    frame once ``ring`` are in flight; :meth:`drain` returns the rest."""

    def __init__(self, ctx: GLContext, width: int, height: int, *, ring: int = 3) -> None:
        if ring < 1:
            raise ValueError(f"a read-back ring needs at least one buffer, not {ring}")
        self.ctx = ctx
        self.width, self.height = int(width), int(height)
        self.nbytes = self.width * self.height * 4
        ctx.make_current()
        self._buffers: list[_PackBuffer] = []
        try:
            for i in range(ring):
                self._buffers.append(_PackBuffer(ctx, self.nbytes, f"readback.{i}"))
        except BaseException:
            self.close()
            raise
        self._next = 0
        self._pending: deque[_PackBuffer] = deque()

    @property
    def pending(self) -> int:
        """Reads started and not yet returned."""
        return len(self._pending)

    def read(self, fb: Framebuffer) -> np.ndarray | None:
        """Start reading ``fb``'s colour; the oldest frame in flight when the ring is full, else None."""
        from OpenGL import GL

        if (fb.width, fb.height) != (self.width, self.height):
            raise ValueError(f"framebuffer is {fb.width}x{fb.height}, the reader {self.width}x{self.height}")
        out = self._take() if len(self._pending) == len(self._buffers) else None
        buf = self._buffers[self._next]
        self._next = (self._next + 1) % len(self._buffers)
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, fb.glo)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        GL.glBindBuffer(GL.GL_PIXEL_PACK_BUFFER, buf.glo)
        try:
            GL.glReadPixels(
                0, 0, self.width, self.height, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, ctypes.c_void_p(0)
            )
        finally:
            GL.glBindBuffer(GL.GL_PIXEL_PACK_BUFFER, 0)
            GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, 0)
        self._pending.append(buf)
        return out

    def drain(self) -> list[np.ndarray]:
        """Every frame still in flight, oldest first."""
        frames = []
        while self._pending:
            frames.append(self._take())
        return frames

    def _take(self) -> np.ndarray:
        """Map the oldest pending buffer (waits for its copy), copy it out flipped to top row first."""
        from OpenGL import GL

        buf = self._pending.popleft()
        GL.glBindBuffer(GL.GL_PIXEL_PACK_BUFFER, buf.glo)
        try:
            ptr = GL.glMapBufferRange(GL.GL_PIXEL_PACK_BUFFER, 0, self.nbytes, GL.GL_MAP_READ_BIT)
            if not ptr:
                raise RuntimeError("glMapBufferRange returned no memory for the read-back buffer")
            try:
                raw = (ctypes.c_ubyte * self.nbytes).from_address(int(ptr))
                image = np.frombuffer(raw, np.uint8).reshape(self.height, self.width, 4)
                out = image[::-1].copy()
            finally:
                GL.glUnmapBuffer(GL.GL_PIXEL_PACK_BUFFER)
        finally:
            GL.glBindBuffer(GL.GL_PIXEL_PACK_BUFFER, 0)
        return out

    def close(self) -> None:
        """Delete the buffers (frames still in flight are dropped); safe to call twice."""
        self._pending = deque()
        for buf in self._buffers:
            buf.delete()
        self._buffers = []

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
