"""GL buffer objects (SSBOs and friends) with deferred, range-tracked uploads.

Any thread may call :meth:`Buffer.update_range`; the data is queued and only the render thread, with the
context current, sends it in :meth:`Buffer.flush` (just before drawing). Several updates between two
frames of the same range keep only the latest: the newest state wins.

A :class:`MappedBuffer` is host-visible staging memory instead: mapped once for its whole life, so any thread
writes it with a plain memory copy and the render thread copies it into a :class:`Buffer` on the GPU side.
"""

from __future__ import annotations

import ctypes
import threading
from typing import TYPE_CHECKING

import numpy as np

from .objects import GLObject, gpu_allocation

if TYPE_CHECKING:
    from .context import GLContext

__all__ = ["Buffer", "MappedBuffer"]


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
        usage = GL.GL_DYNAMIC_DRAW if dynamic else GL.GL_STATIC_DRAW
        init = _as_bytes_array(data) if data is not None else None
        if init is not None and init.nbytes != nbytes:
            raise ValueError(f"data has {init.nbytes} bytes, the buffer {nbytes}")
        ctx.make_current()
        glo = GL.glGenBuffers(1)
        try:
            with gpu_allocation(f"a buffer ({label or 'unnamed'})", nbytes):
                GL.glBindBuffer(GL.GL_COPY_WRITE_BUFFER, glo)
                GL.glBufferData(GL.GL_COPY_WRITE_BUFFER, nbytes, init, usage)
        except BaseException:
            GL.glDeleteBuffers(1, [glo])
            raise
        finally:
            GL.glBindBuffer(GL.GL_COPY_WRITE_BUFFER, 0)
        super().__init__(ctx, glo, label)
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


class MappedBuffer(GLObject):
    """Immutable buffer storage mapped persistently and coherently; ``array`` is the whole mapping as uint8.

    Writes through ``array`` (or float views and ``torch.from_numpy`` of it) need no GL call; pair each
    :meth:`copy_to` with a :class:`~glnet.gpu.sync.Fence` before overwriting the bytes it read. The views
    are invalid after :meth:`delete`.
    """

    kind = "buffer"
    _label_namespace = 0x82E0  # GL_BUFFER
    # MAP_READ | MAP_WRITE | MAP_PERSISTENT | MAP_COHERENT
    ACCESS = 0x0001 | 0x0002 | 0x0040 | 0x0080
    STORAGE = ACCESS | 0x0200  # | CLIENT_STORAGE: keep it in host memory

    def __init__(self, ctx: GLContext, nbytes: int, *, label: str = "") -> None:
        from OpenGL import GL
        from OpenGL.error import GLError

        from ..errors import MappingError

        if nbytes <= 0:
            raise ValueError(f"buffer size must be positive, not {nbytes}")
        what = f"a mapped buffer ({label or 'unnamed'})"
        ctx.make_current()
        glo = GL.glGenBuffers(1)
        try:
            GL.glBindBuffer(GL.GL_COPY_WRITE_BUFFER, glo)  # DSA calls need the object, not only the name
            GL.glBindBuffer(GL.GL_COPY_WRITE_BUFFER, 0)
            try:
                with gpu_allocation(what, nbytes):
                    GL.glNamedBufferStorage(glo, nbytes, None, self.STORAGE)
                    address = _address(GL.glMapNamedBufferRange(glo, 0, nbytes, self.ACCESS))
            except GLError as e:
                raise MappingError(
                    f"cannot map {what} of {nbytes:,} bytes persistently (GL error 0x{e.err:04x})"
                ) from None
            except RuntimeError as e:  # an error glGetError reported without PyOpenGL's check
                raise MappingError(f"cannot map {what} of {nbytes:,} bytes persistently ({e})") from None
            if not address:
                raise MappingError(f"cannot map {what} of {nbytes:,} bytes persistently (no pointer)")
        except BaseException:
            while GL.glGetError() != GL.GL_NO_ERROR:
                pass
            GL.glDeleteBuffers(1, [glo])
            raise
        super().__init__(ctx, glo, label)
        self.nbytes = int(nbytes)
        self.array: np.ndarray = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(address))

    def copy_to(self, dst: Buffer, src_offset: int, dst_offset: int, nbytes: int) -> None:
        """Copy ``nbytes`` from this buffer into ``dst`` on the GPU side (context current)."""
        from OpenGL import GL

        if src_offset < 0 or nbytes < 0 or src_offset + nbytes > self.nbytes:
            raise ValueError(
                f"range [{src_offset}, {src_offset + nbytes}) is outside the {self.nbytes}-byte "
                f"mapped buffer {self.label!r}"
            )
        dst._check_range(dst_offset, nbytes)
        GL.glCopyNamedBufferSubData(self.glo, dst.glo, src_offset, dst_offset, nbytes)

    def delete(self) -> None:
        """Unmap, then release the GL name; safe to call twice."""
        if self.deleted:
            return
        self.array = np.empty(0, np.uint8)
        if self.owned and not self.ctx.closed and self.ctx.on_owner_thread():
            from OpenGL import GL

            GL.glUnmapNamedBuffer(self.glo)
        super().delete()


def _address(ptr: object) -> int | None:
    """The integer address PyOpenGL returns a mapping as (an int or a ctypes pointer, None when it failed)."""
    if ptr is None or isinstance(ptr, int):
        return ptr
    return ctypes.cast(ptr, ctypes.c_void_p).value
