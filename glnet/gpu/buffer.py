"""GL buffer objects (SSBOs and friends) with deferred, range-tracked uploads.

Any thread may call :meth:`Buffer.update_range`; the data is queued and only the render thread, with the
context current, sends it in :meth:`Buffer.flush` (just before drawing). Several updates between two
frames of the same range keep only the latest: the newest state wins.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

from .objects import GLObject

if TYPE_CHECKING:
    from .context import GLContext

__all__ = ["Buffer"]


def _as_bytes_array(data: object) -> np.ndarray:
    try:
        import torch

        if isinstance(data, torch.Tensor):
            data = data.detach().cpu().contiguous().numpy()
    except ImportError:
        pass
    arr = np.ascontiguousarray(data)
    return arr.reshape(-1).view(np.uint8)


class Buffer(GLObject):
    """A GL buffer of ``nbytes``; ``external()`` wraps one made elsewhere (not deleted by us)."""

    kind = "buffer"
    _label_namespace = 0x82E0  # GL_BUFFER

    def __init__(
        self, ctx: GLContext, nbytes: int, *, data: object = None, label: str = "", dynamic: bool = True
    ) -> None:
        from OpenGL import GL

        if nbytes <= 0:
            raise ValueError(f"buffer size must be positive, not {nbytes}")
        ctx.make_current()
        glo = GL.glGenBuffers(1)
        GL.glBindBuffer(GL.GL_COPY_WRITE_BUFFER, glo)
        usage = GL.GL_DYNAMIC_DRAW if dynamic else GL.GL_STATIC_DRAW
        init = _as_bytes_array(data) if data is not None else None
        if init is not None and init.nbytes != nbytes:
            raise ValueError(f"data has {init.nbytes} bytes, the buffer {nbytes}")
        GL.glBufferData(GL.GL_COPY_WRITE_BUFFER, nbytes, init, usage)
        err = GL.glGetError()
        GL.glBindBuffer(GL.GL_COPY_WRITE_BUFFER, 0)
        super().__init__(ctx, glo, label)
        if err == GL.GL_OUT_OF_MEMORY:
            self.delete()
            from ..errors import OutOfMemoryError

            raise OutOfMemoryError(
                f"the GPU has no room for a {nbytes / 2**20:.0f} MiB buffer ({label or 'unnamed'})"
            )
        self.nbytes = int(nbytes)
        self._pending: dict[tuple[int, int], np.ndarray] = {}
        self._lock = threading.Lock()
        self.uploaded_bytes = 0

    @classmethod
    def external(cls, ctx: GLContext, glo: int, nbytes: int, label: str = "") -> Buffer:
        """Wrap a buffer another library created; glnet never deletes it."""
        obj = cls.__new__(cls)
        GLObject.__init__(obj, ctx, glo, label, owned=False)
        obj.nbytes = int(nbytes)
        obj._pending = {}
        obj._lock = threading.Lock()
        obj.uploaded_bytes = 0
        return obj

    def _check_range(self, offset: int, size: int) -> None:
        if offset < 0 or size < 0 or offset + size > self.nbytes:
            raise ValueError(
                f"range [{offset}, {offset + size}) is outside the {self.nbytes}-byte buffer {self.label!r}"
            )

    def update_range(self, data: object, offset: int = 0) -> None:
        """Queue ``data`` (array, tensor or bytes) for ``[offset, offset + nbytes)``; thread-safe, no GL."""
        arr = _as_bytes_array(data)
        self._check_range(offset, arr.nbytes)
        with self._lock:
            self._pending[(offset, arr.nbytes)] = arr

    @property
    def dirty(self) -> bool:
        return bool(self._pending)

    def flush(self) -> int:
        """Send queued ranges to the GPU (context current, render thread); returns bytes sent."""
        from OpenGL import GL

        with self._lock:
            pending, self._pending = self._pending, {}
        sent = 0
        for (offset, size), arr in sorted(pending.items()):
            GL.glNamedBufferSubData(self.glo, offset, size, arr)
            sent += size
        self.uploaded_bytes += sent
        return sent

    def write(self, data: object, offset: int = 0) -> None:
        """Upload now (context current)."""
        from OpenGL import GL

        arr = _as_bytes_array(data)
        self._check_range(offset, arr.nbytes)
        GL.glNamedBufferSubData(self.glo, offset, arr.nbytes, arr)
        self.uploaded_bytes += arr.nbytes

    def read(self, offset: int = 0, nbytes: int | None = None, dtype: type = np.uint8) -> np.ndarray:
        """Copy ``[offset, offset + nbytes)`` back to the host (tests, readback)."""
        from OpenGL import GL

        nbytes = self.nbytes - offset if nbytes is None else nbytes
        self._check_range(offset, nbytes)
        out = np.empty(nbytes, np.uint8)
        GL.glGetNamedBufferSubData(self.glo, offset, nbytes, out)
        return out.view(dtype)

    def clear_uint(self, value: int) -> None:
        """Fill the whole buffer with one 32-bit unsigned value."""
        from OpenGL import GL

        GL.glClearNamedBufferData(
            self.glo, GL.GL_R32UI, GL.GL_RED_INTEGER, GL.GL_UNSIGNED_INT, np.array([value], np.uint32)
        )

    def bind_base(self, target: int, index: int) -> None:
        from OpenGL import GL

        GL.glBindBufferBase(target, index, self.glo)

    def bind_range(self, target: int, index: int, offset: int, size: int) -> None:
        from OpenGL import GL

        self._check_range(offset, size)
        GL.glBindBufferRange(target, index, self.glo, offset, size)
