"""GPU-to-host synchronisation: a fence says when the GL commands issued before it have finished."""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

from .objects import GLObject

if TYPE_CHECKING:
    from .context import GLContext

__all__ = ["Fence"]


class Fence(GLObject):
    """A GL sync object placed after the commands issued so far; flushed, so that it can signal unwaited."""

    kind = "sync"

    def __init__(self, ctx: GLContext, label: str = "") -> None:
        from OpenGL import GL

        ctx.make_current()
        sync = GL.glFenceSync(GL.GL_SYNC_GPU_COMMANDS_COMPLETE, 0)
        GL.glFlush()  # a fence never flushed may never signal to a caller that only polls
        self._sync = sync
        super().__init__(ctx, ctypes.cast(sync, ctypes.c_void_p).value or 0, label)

    def _client_wait(self, flags: int, timeout_ns: int) -> bool:
        from OpenGL import GL

        if self.deleted:
            raise ValueError(f"{self!r} was deleted")
        status = GL.glClientWaitSync(self._sync, flags, timeout_ns)
        if status == GL.GL_WAIT_FAILED:
            raise RuntimeError(f"glClientWaitSync failed on {self!r}")
        return status in (GL.GL_ALREADY_SIGNALED, GL.GL_CONDITION_SATISFIED)

    def signaled(self) -> bool:
        """True once the GPU has finished everything before the fence; never waits."""
        return self._client_wait(0, 0)

    def wait(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` seconds for the fence; True if it signaled, False on time-out."""
        from OpenGL import GL

        return self._client_wait(GL.GL_SYNC_FLUSH_COMMANDS_BIT, max(0, int(timeout_s * 1e9)))

    def delete(self) -> None:
        """Release the sync object; safe to call twice."""
        super().delete()
        self._sync = None
