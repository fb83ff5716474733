"""The OpenGL context: VisPy makes it (EGL pbuffer headless, GLFW window on a display); PyOpenGL talks to it.

PyOpenGL binds to one platform (EGL or GLX) at import, so :func:`configure_platform` must run before the first
``import OpenGL``; every glnet entry point calls it. A :class:`GLContext` owns the GL objects made in it:
each registers itself, ``close()`` deletes what is left, and objects dropped by Python on another thread are
queued and deleted on the next :meth:`GLContext.collect` in the owning thread, never from ``__del__``.

A context belongs to one thread: the one that made it. Using it from another raises :class:`GLThreadError`
instead of silently taking it over; :meth:`GLContext.release` hands it over explicitly, and the next thread to
call :meth:`GLContext.make_current` becomes its owner.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..errors import GLThreadError, GLUnavailableError

if TYPE_CHECKING:
    from vispy.app import Canvas

__all__ = ["GLContext", "GLInfo", "configure_platform", "context_or_new", "free_gpu_memory", "has_display"]

Platform = Literal["egl", "glx"]
_INSTALL_HINT = (
    "install the OpenGL/EGL libraries (Debian/Ubuntu: apt-get install libegl1 libgl1 libgl1-mesa-dri "
    "libegl-mesa0) or an NVIDIA driver"
)
_platform: Platform | None = None


def has_display() -> bool:
    """True when a window can be opened (an X11 or Wayland display is set)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _nvidia_driver() -> bool:
    """An NVIDIA kernel driver or its EGL vendor file is present (its EGL needs no EGL_PLATFORM)."""
    vendor_dirs = (
        "/usr/share/glvnd/egl_vendor.d",
        "/usr/local/nvidia/share/glvnd/egl_vendor.d",
        "/etc/glvnd/egl_vendor.d",
    )
    if os.path.exists("/proc/driver/nvidia/version"):
        return True
    return any(os.path.exists(os.path.join(d, "10_nvidia.json")) for d in vendor_dirs)


def configure_platform(headless: bool | None = None) -> Platform:
    """Choose EGL (headless) or GLX (window) for PyOpenGL and VisPy, before OpenGL is imported.

    ``headless=None`` picks EGL when there is no display. Calling again with the same answer is free; a
    different answer after OpenGL was imported raises, because PyOpenGL cannot switch platforms.
    """
    global _platform
    if headless is None:
        headless = not has_display()
    wanted: Platform = "egl" if headless else "glx"
    current = _platform or ("egl" if os.environ.get("PYOPENGL_PLATFORM") == "egl" else None)
    if "OpenGL" in sys.modules and current is not None and current != wanted:
        raise GLUnavailableError(
            f"OpenGL is already set up for {current.upper()} here; cannot switch to {wanted.upper()}"
        )
    if wanted == "egl":
        os.environ["PYOPENGL_PLATFORM"] = "egl"
        # Mesa needs a platform without a display server; NVIDIA's EGL picks its device platform itself.
        if not _nvidia_driver():
            os.environ.setdefault("EGL_PLATFORM", "surfaceless")
    elif os.environ.get("PYOPENGL_PLATFORM") == "egl" and "OpenGL" not in sys.modules:
        del os.environ["PYOPENGL_PLATFORM"]
    _platform = wanted
    return wanted


@dataclass(frozen=True)
class GLInfo:
    """What the driver reported, for capability checks, benchmarks and ``--stats-json``."""

    version: str
    renderer: str
    vendor: str
    glsl: str
    major: int
    minor: int
    max_texture_size: int
    max_ssbo_block_size: int  # bytes one storage binding may span: larger layers are bound in parts
    ssbo_offset_alignment: int
    max_point_size: float
    max_compute_work_group_count: tuple[int, int, int] = (65535, 65535, 65535)  # per dispatch, x y z

    @property
    def compute(self) -> bool:
        """Compute shaders and SSBOs (GL 4.3)."""
        return (self.major, self.minor) >= (4, 3)

    @property
    def software(self) -> bool:
        """A CPU rasterizer (Mesa llvmpipe/softpipe/swrast)."""
        r = self.renderer.lower()
        return any(k in r for k in ("llvmpipe", "softpipe", "swrast", "software"))


def _integer64(name: int) -> int:
    """A limit that may exceed 32 bits (PyOpenGL returns garbage for glGetInteger64v without an array)."""
    import numpy as np
    from OpenGL import GL

    out = np.zeros(1, np.int64)
    GL.glGetInteger64v(name, out)
    return int(out[0])


def _query_info() -> GLInfo:
    from OpenGL import GL

    def s(name: int) -> str:
        v = GL.glGetString(name)
        return v.decode(errors="replace") if v else ""

    version = s(GL.GL_VERSION)
    try:
        major = int(GL.glGetIntegerv(GL.GL_MAJOR_VERSION))
        minor = int(GL.glGetIntegerv(GL.GL_MINOR_VERSION))
    except Exception:
        major, minor = (int(p) for p in version.split()[0].split(".")[:2])
    compute = (major, minor) >= (4, 3)
    return GLInfo(
        version=version,
        renderer=s(GL.GL_RENDERER),
        vendor=s(GL.GL_VENDOR),
        glsl=s(GL.GL_SHADING_LANGUAGE_VERSION),
        major=major,
        minor=minor,
        max_texture_size=int(GL.glGetIntegerv(GL.GL_MAX_TEXTURE_SIZE)),
        max_ssbo_block_size=_integer64(GL.GL_MAX_SHADER_STORAGE_BLOCK_SIZE) if compute else 0,
        ssbo_offset_alignment=int(GL.glGetIntegerv(GL.GL_SHADER_STORAGE_BUFFER_OFFSET_ALIGNMENT))
        if compute
        else 0,
        max_point_size=float(GL.glGetFloatv(GL.GL_POINT_SIZE_RANGE)[1]),
        max_compute_work_group_count=tuple(  # type: ignore[arg-type]
            int(GL.glGetIntegeri_v(GL.GL_MAX_COMPUTE_WORK_GROUP_COUNT, i)[0]) for i in range(3)
        )
        if compute
        else (0, 0, 0),
    )


class GLContext:
    """A current-able OpenGL 4.5 context, owned by one thread, and the owner of every GL object made in it."""

    REQUIRED = (4, 5)

    def __init__(self, canvas: Canvas, *, owns_canvas: bool = True) -> None:
        self.canvas = canvas
        self._owns_canvas = owns_canvas
        self._owner: threading.Thread | None = threading.current_thread()
        self._objects: weakref.WeakSet[Any] = weakref.WeakSet()
        self._garbage: list[tuple[str, int]] = []
        self._garbage_lock = threading.Lock()
        self.closed = False
        self.egl_device: int | None = None  # the EGL device of an offscreen context (None: platform default)
        self.egl_device_why = ""
        self.make_current()
        self.info = _query_info()
        if (self.info.major, self.info.minor) < self.REQUIRED:
            found = f"{self.info.major}.{self.info.minor}: {self.info.renderer or self.info.version}"
            self.close()
            raise GLUnavailableError(
                f"glnet needs OpenGL {self.REQUIRED[0]}.{self.REQUIRED[1]} (direct state access); "
                f"this driver offers {found}"
            )
        self.max_texture_size = self.info.max_texture_size  # tests lower this to exercise tiling

    @classmethod
    def offscreen(cls, *, gl_device: int | None = None, cuda_device: Any = None) -> GLContext:
        """A headless context through EGL (Mesa here; the NVIDIA driver on a GPU machine).

        On NVIDIA it goes on the GPU of ``cuda_device`` (the tensors' device; default CUDA device 0), or on
        EGL device ``gl_device`` (``glnet info`` lists them); see :mod:`glnet.gpu.egl`.
        """
        configure_platform(headless=True)
        try:
            from vispy import app

            application = app.use_app("egl")
        except Exception as e:  # vispy reports a missing libEGL/driver in many shapes
            raise GLUnavailableError(f"no usable OpenGL through EGL ({_short(e)}): {_INSTALL_HINT}") from e
        from .egl import select_display

        choice = select_display(gl_device=gl_device, cuda_device=cuda_device)
        try:
            canvas = app.Canvas(size=(16, 16), show=False, app=application, title="glnet")
        except Exception as e:
            raise GLUnavailableError(f"no usable OpenGL through EGL ({_short(e)}): {_INSTALL_HINT}") from e
        try:
            ctx = cls(canvas)
            ctx.egl_device, ctx.egl_device_why = choice.index, choice.why
            return ctx
        except GLUnavailableError:
            raise
        except Exception as e:
            canvas.close()
            raise GLUnavailableError(
                f"could not make the EGL context current ({_short(e)}): {_INSTALL_HINT}"
            ) from e

    # -- threads ------------------------------------------------------------------------------------------
    @property
    def owner(self) -> threading.Thread | None:
        """The thread this context belongs to; None after :meth:`release` until another thread takes it."""
        return self._owner

    def on_owner_thread(self) -> bool:
        """True on the thread that owns this context (GL calls for it are valid here)."""
        return self._owner is threading.current_thread()

    def _check_owner(self, what: str) -> None:
        me = threading.current_thread()
        if self._owner is me:
            return
        holder = f"thread {self._owner.name!r}" if self._owner is not None else "no thread (it was released)"
        raise GLThreadError(
            f"cannot {what} on thread {me.name!r}: this GL context belongs to {holder}; "
            "hand it over with ctx.release() on its thread, then ctx.make_current() on the new one"
        )

    def release(self) -> None:
        """Give the context up (nothing current on this thread) so that another thread can take it over."""
        if self.closed:
            return
        self._check_owner("release the GL context")
        from OpenGL import GL

        GL.glFlush()
        _release_current(self.canvas)
        self._owner = None

    # -- lifetime -----------------------------------------------------------------------------------------
    def make_current(self) -> None:
        """Make the context current here: on its owner thread, or on any thread after :meth:`release`."""
        if self.closed:
            raise RuntimeError("the GL context is closed")
        if self._owner is None:
            _adopt_on_this_thread(self.canvas)
            self._owner = threading.current_thread()
        self._check_owner("make the GL context current")
        self.canvas.set_current()

    def register(self, obj: Any) -> None:
        """Track a GL object made in this context (on its owning thread) so that ``close()`` deletes it."""
        self._check_owner(f"create a GL {type(obj).__name__}")
        self._objects.add(obj)

    @property
    def live_objects(self) -> int:
        return sum(1 for o in list(self._objects) if not getattr(o, "deleted", True))

    def defer_delete(self, kind: str, glo: int) -> None:
        """Queue a GL name for deletion on the owning thread (safe from ``__del__`` and other threads)."""
        with self._garbage_lock:
            self._garbage.append((kind, glo))

    def collect(self) -> int:
        """Delete queued GL names; call with the context current on its own thread."""
        with self._garbage_lock:
            garbage, self._garbage = self._garbage, []
        if not garbage or self.closed:
            return 0
        if not self.on_owner_thread():
            with self._garbage_lock:
                self._garbage[:0] = garbage
            self._check_owner("delete GL objects")
        from .objects import delete_names

        delete_names(garbage)
        return len(garbage)

    def close(self) -> None:
        """Delete every object still alive, then release the canvas; idempotent."""
        if self.closed:
            return
        self.make_current()
        try:
            for obj in list(self._objects):
                obj.delete()
            self.collect()
        finally:
            self.closed = True
            if self._owns_canvas:
                self.canvas.close()

    def __enter__(self) -> GLContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def context_or_new(ctx: GLContext | None) -> Iterator[GLContext]:
    """Yield ``ctx`` current, or a new offscreen context that is closed (with all it holds) on exit."""
    if ctx is not None:
        ctx.make_current()
        yield ctx
        return
    with GLContext.offscreen() as own:
        yield own


def _adopt_on_this_thread(canvas: Canvas) -> None:
    """Prepare a thread to take a released context: EGL keeps the bound client API per thread."""
    if canvas.app.backend_name.lower() == "egl":
        from vispy.ext import egl

        egl.eglBindAPI(egl.EGL_OPENGL_API)


def _release_current(canvas: Canvas) -> None:
    """Leave no context current on this thread, through the toolkit that made ``canvas``."""
    backend = canvas.app.backend_name.lower()
    if backend == "egl":
        from vispy.app.backends import _egl
        from vispy.ext import egl

        egl.eglBindAPI(egl.EGL_OPENGL_API)  # EGL_NO_CONTEXT releases the context of the bound API
        egl.eglMakeCurrent(_egl._EGL_DISPLAY, egl.EGL_NO_SURFACE, egl.EGL_NO_SURFACE, egl.EGL_NO_CONTEXT)
    elif backend == "glfw":
        import glfw

        glfw.make_context_current(None)
    else:
        raise GLThreadError(f"glnet cannot hand over a {backend} GL context to another thread")


def free_gpu_memory(ctx: GLContext) -> int | None:
    """Free GPU memory in bytes when the driver says (NVIDIA, AMD); host memory for software GL; else None."""
    from OpenGL import GL

    ctx.make_current()
    if ctx.info.software:
        from ..models import available_memory

        return available_memory("cpu")
    exts = {
        GL.glGetStringi(GL.GL_EXTENSIONS, i).decode() for i in range(GL.glGetIntegerv(GL.GL_NUM_EXTENSIONS))
    }
    try:
        if "GL_NVX_gpu_memory_info" in exts:
            return int(GL.glGetIntegerv(0x9049)) * 1024  # GPU_MEMORY_INFO_CURRENT_AVAILABLE_VIDMEM_NVX, KiB
        if "GL_ATI_meminfo" in exts:
            return int(GL.glGetIntegerv(0x87FC)[0]) * 1024  # TEXTURE_FREE_MEMORY_ATI, KiB
    except Exception:
        return None
    return None


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[-1] if text else type(e).__name__)[:200]
