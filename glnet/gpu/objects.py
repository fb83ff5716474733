"""The base of every GL wrapper: one owner context, a label for debuggers, an idempotent ``delete()``."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from .context import GLContext

__all__ = ["GLObject", "VertexArray", "check_gl_error", "delete_names", "gpu_allocation"]


def _delete_sync(address: int) -> None:
    from OpenGL import GL

    GL.glDeleteSync(ctypes.cast(ctypes.c_void_p(address), GL.GLsync))


def delete_names(names: list[tuple[str, int]]) -> None:
    """Delete GL names by kind; the owning context must be current."""
    from OpenGL import GL

    deleters = {
        "buffer": lambda n: GL.glDeleteBuffers(1, [n]),
        "texture": lambda n: GL.glDeleteTextures(1, [n]),
        "framebuffer": lambda n: GL.glDeleteFramebuffers(1, [n]),
        "renderbuffer": lambda n: GL.glDeleteRenderbuffers(1, [n]),
        "vertex_array": lambda n: GL.glDeleteVertexArrays(1, [n]),
        "program": GL.glDeleteProgram,
        "query": lambda n: GL.glDeleteQueries(1, [n]),
        "sync": _delete_sync,
    }
    for kind, name in names:
        deleters[kind](name)


def check_gl_error(where: str) -> None:
    """Raise RuntimeError if GL recorded an error (used by tests and after resource creation)."""
    from OpenGL import GL

    err = GL.glGetError()
    if err != GL.GL_NO_ERROR:
        raise RuntimeError(f"GL error 0x{err:04x} after {where}")


def _out_of_memory(what: str, nbytes: int) -> Exception:
    from ..errors import OutOfMemoryError

    return OutOfMemoryError(
        f"the GPU is out of memory for {what} of {nbytes:,} bytes ({nbytes / 2**20:.1f} MiB); "
        "try a smaller --size or --max-neurons"
    )


@contextmanager
def gpu_allocation(what: str, nbytes: int) -> Iterator[None]:
    """Turn GL_OUT_OF_MEMORY (raised by PyOpenGL or left for glGetError) into glnet's OutOfMemoryError."""
    from OpenGL import GL
    from OpenGL.error import GLError

    try:
        yield
    except GLError as e:
        if e.err == GL.GL_OUT_OF_MEMORY:
            raise _out_of_memory(what, nbytes) from None
        raise
    err = GL.glGetError()
    if err == GL.GL_OUT_OF_MEMORY:
        raise _out_of_memory(what, nbytes)
    if err != GL.GL_NO_ERROR:
        raise RuntimeError(f"GL error 0x{err:04x} allocating {what} of {nbytes} bytes")


class GLObject:
    """A GL name owned by a :class:`GLContext`."""

    kind: ClassVar[str] = ""
    _label_namespace: ClassVar[int] = 0

    def __init__(self, ctx: GLContext, glo: int, label: str = "", *, owned: bool = True) -> None:
        self.ctx = ctx
        self.glo = int(glo)
        self.label = label
        self.owned = owned
        self.deleted = False
        ctx.register(self)
        if label and self._label_namespace:
            from OpenGL import GL

            try:
                GL.glObjectLabel(self._label_namespace, self.glo, len(label), label.encode())
            except Exception:  # KHR_debug is optional; the label is only for debuggers
                pass

    def delete(self) -> None:
        """Release the GL name now (queued when called off the owner thread); safe to call twice."""
        if self.deleted:
            return
        self.deleted = True
        if self.owned and not self.ctx.closed:
            if self.ctx.on_owner_thread():
                delete_names([(self.kind, self.glo)])
            else:
                self.ctx.defer_delete(self.kind, self.glo)

    def __del__(self) -> None:
        if not getattr(self, "deleted", True) and self.owned and not self.ctx.closed:
            self.deleted = True
            self.ctx.defer_delete(self.kind, self.glo)

    def __repr__(self) -> str:
        glo, label = getattr(self, "glo", None), getattr(self, "label", "")
        return (
            f"<{type(self).__name__} {glo} {label!r}{' deleted' if getattr(self, 'deleted', False) else ''}>"
        )


class VertexArray(GLObject):
    """An empty vertex array object: core profiles need one bound to draw, even when shaders fetch nothing."""

    kind = "vertex_array"
    _label_namespace = 0x8074  # GL_VERTEX_ARRAY

    def __init__(self, ctx: GLContext, label: str = "") -> None:
        from OpenGL import GL

        ctx.make_current()
        glo = GL.glGenVertexArrays(1)
        GL.glBindVertexArray(glo)  # a generated name becomes an object (and labelable) once bound
        GL.glBindVertexArray(0)
        super().__init__(ctx, glo, label)

    def bind(self) -> None:
        """Bind for the next draws; ``unbind()`` after them keeps state tidy for other code."""
        from OpenGL import GL

        GL.glBindVertexArray(self.glo)

    @staticmethod
    def unbind() -> None:
        from OpenGL import GL

        GL.glBindVertexArray(0)
