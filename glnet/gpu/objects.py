"""The base of every GL wrapper: one owner context, a label for debuggers, an idempotent ``delete()``."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from .context import GLContext

__all__ = ["GLObject", "check_gl_error", "delete_names"]


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
    }
    for kind, name in names:
        deleters[kind](name)


def check_gl_error(where: str) -> None:
    """Raise RuntimeError if GL recorded an error (used by tests and after resource creation)."""
    from OpenGL import GL

    err = GL.glGetError()
    if err != GL.GL_NO_ERROR:
        raise RuntimeError(f"GL error 0x{err:04x} after {where}")


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
        """Release the GL name now; the context must be current. Safe to call twice."""
        if self.deleted:
            return
        self.deleted = True
        if self.owned and not self.ctx.closed:
            delete_names([(self.kind, self.glo)])

    def __del__(self) -> None:
        if not getattr(self, "deleted", True) and self.owned and not self.ctx.closed:
            self.deleted = True
            self.ctx.defer_delete(self.kind, self.glo)

    def __repr__(self) -> str:
        glo, label = getattr(self, "glo", None), getattr(self, "label", "")
        return (
            f"<{type(self).__name__} {glo} {label!r}{' deleted' if getattr(self, 'deleted', False) else ''}>"
        )
