"""CUDA-OpenGL buffer sharing: copy activations from CUDA tensors into GL objects without a host trip.

A GL buffer is registered with CUDA once; each update maps it on a torch CUDA
stream, copies device-to-device with ``cudaMemcpyAsync`` and unmaps it. Map and unmap are the
synchronisation points CUDA documents: GL work issued before the map finishes before the copy
starts, and the copy finishes before GL work issued after the unmap; the host never waits.

It uses NVIDIA's ``cuda-bindings`` package (``pip install glnet[cuda]``): ``cuda.bindings.runtime``
in current releases, ``cuda.cudart`` in older ``cuda-python`` ones. Every import of CUDA, torch and
OpenGL happens inside functions, so this module imports on machines without any of them.

Rules of use (the CUDA runtime's OpenGL interoperability chapter): the GL context that owns the object is
current on the calling thread for every call here, and these objects are used from that thread only; GL does
not touch the object while CUDA has it mapped (inside :meth:`CudaGLBuffer.mapped`); only an NVIDIA OpenGL
context on the GPU that holds the tensors can register objects (not Mesa), else
:class:`~glnet.errors.CudaInteropUnavailable` is raised and callers fall back to host uploads.
"""

from __future__ import annotations

import ctypes.util
import functools
import os
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from glnet.errors import CudaInteropUnavailable

if TYPE_CHECKING:
    import torch

__all__ = [
    "STATS",
    "CudaGLBuffer",
    "InteropStats",
    "interop_status",
]

_R = TypeVar("_R", bound="_Registered")

_INSTALL_HINT = "pip install glnet[cuda]"

#: Errors that say CUDA itself is unusable (``None``: the bindings raised, e.g. no libcuda), not the GL side.
_DRIVER_ERRORS = frozenset({None, "cudaErrorInsufficientDriver", "cudaErrorNoDevice"})


# -- Seams: the three things this module reaches outside itself for. Tests replace them.


@functools.cache
def _load_cudart() -> Any:
    """Import the CUDA runtime bindings once: the new ``cuda.bindings`` layout, else the old one."""
    try:
        from cuda.bindings import runtime  # cuda-bindings >= 12.6 / cuda-python >= 12.6

        return runtime
    except ImportError:
        pass
    except Exception as exc:  # installed but broken (a missing shared library, say)
        raise CudaInteropUnavailable(f"cuda-bindings is installed but does not import: {exc}") from exc
    try:
        with warnings.catch_warnings():
            # cuda-bindings 12.x still ships ``cuda.cudart`` but warns that it is deprecated.
            warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning))
            from cuda import cudart  # cuda-python < 12.6

        return cudart
    except Exception as exc:
        raise CudaInteropUnavailable(
            f"CUDA-OpenGL interop needs NVIDIA's cuda-bindings package ({_INSTALL_HINT}): {exc}"
        ) from exc


def _cudart() -> Any:
    """The CUDA runtime bindings module; raises :class:`CudaInteropUnavailable` if not installed."""
    return _load_cudart()


def _torch_cuda() -> Any:
    """``torch.cuda``, imported only when needed (tests hand in a fake)."""
    import torch

    return torch.cuda


def _gl_vendor() -> str | None:
    """Vendor and renderer of the current GL context, for error messages only; ``None`` if unknown."""
    try:
        from OpenGL import GL

        vendor = GL.glGetString(GL.GL_VENDOR)
        renderer = GL.glGetString(GL.GL_RENDERER)
    except Exception:  # no GL, no context: the hint is optional
        return None
    parts = [p.decode(errors="replace") if isinstance(p, bytes) else str(p) for p in (vendor, renderer) if p]
    return " / ".join(parts) or None


@functools.cache
def _nvidia_gl_library() -> str | None:
    """The NVIDIA OpenGL/EGL vendor library this process could load, found without loading GL."""
    for name in ("EGL_nvidia", "GLX_nvidia", "nvidia-glcore"):
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


# -- Counters


class InteropStats:
    """Process-wide counters of interop work, so tests and benchmarks can prove no host trip happens."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes_device_to_device: int = 0
        self.copies: int = 0
        self.maps: int = 0

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self.bytes_device_to_device = 0
            self.copies = 0
            self.maps = 0

    def _count_map(self) -> None:
        with self._lock:
            self.maps += 1

    def _count_copy(self, nbytes: int) -> None:
        with self._lock:
            self.copies += 1
            self.bytes_device_to_device += nbytes

    def __repr__(self) -> str:
        return (
            f"InteropStats(bytes_device_to_device={self.bytes_device_to_device}, "
            f"copies={self.copies}, maps={self.maps})"
        )


STATS = InteropStats()


# -- Error handling


def _error_name(rt: Any, err: Any) -> str:
    """``cudaErrorInvalidValue (invalid argument)``-style text for a runtime error code."""
    name = getattr(err, "name", None)
    if not isinstance(name, str):
        try:
            _, raw = rt.cudaGetErrorName(err)
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
        except Exception:
            name = f"cudaError {int(err)}"
    try:
        _, raw = rt.cudaGetErrorString(err)
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
    except Exception:
        text = ""
    return f"{name} ({text})" if text and text != name else name


def _unavailable(message: str, cuda_error: str | None) -> CudaInteropUnavailable:
    """A :class:`CudaInteropUnavailable` that also carries the bare CUDA error name (``.cuda_error``)."""
    exc = CudaInteropUnavailable(message)
    exc.cuda_error = cuda_error  # type: ignore[attr-defined]
    return exc


def _call(rt: Any, what: str, func: str, *args: Any) -> Any:
    """Call ``rt.<func>(*args)``, check the ``(err, values...)`` tuple it returns, return the values.

    Returns ``None`` for no value, the value alone for one, else the tuple of values. Old
    ``cuda-python`` raises ``RuntimeError`` when ``libcuda`` cannot be loaded; that is reported the
    same way as an error code.
    """
    try:
        result = getattr(rt, func)(*args)
    except RuntimeError as exc:
        raise _unavailable(f"{what}: {func} failed: {exc}", None) from exc
    if not isinstance(result, tuple):  # defensive: every runtime call returns a tuple
        result = (result,)
    err, values = result[0], result[1:]
    if int(err) != 0:  # cudaSuccess == 0 in every release
        name = _error_name(rt, err)
        raise _unavailable(f"{what}: {func} failed: {name}", name.split(" ", 1)[0])
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _gl_hint() -> str:
    """A sentence telling which GL context was current, appended to registration failures."""
    vendor = _gl_vendor()
    where = f"the current GL context is {vendor!r}" if vendor else "no GL context could be queried"
    return (
        f"; {where}: CUDA can only register objects of an NVIDIA OpenGL context that is current on "
        "this thread and on the same GPU as the tensors (glnet info lists EGL devices, --gl-device picks one)"
    )


# -- Status


def interop_status() -> tuple[bool, str]:
    """``(True, 'cuda-gl interop')`` when CUDA-GL sharing can work here, else ``(False, one-line reason)``.

    Checks torch's CUDA, the cuda-bindings import, that its runtime accepts the driver, and that an
    NVIDIA OpenGL driver is installed. It touches no GL and needs no context; the registration
    itself (:class:`CudaGLBuffer`) is the final word on the actual context's vendor.
    """
    try:
        tc = _torch_cuda()
    except ImportError as exc:
        return False, f"torch is not importable: {exc}"
    try:
        available = bool(tc.is_available())
    except Exception as exc:  # a broken driver can make the probe itself raise
        return False, f"torch cannot query CUDA: {exc}"
    if not available:
        version = getattr(getattr(sys.modules.get("torch"), "version", None), "cuda", None)
        build = "a CPU-only torch build" if version is None else f"torch built for CUDA {version}"
        return False, f"torch sees no CUDA device ({build})"
    try:
        rt = _cudart()
    except CudaInteropUnavailable:
        return False, f"cuda-bindings is not installed ({_INSTALL_HINT})"
    try:
        count = _call(rt, "cuda-bindings", "cudaGetDeviceCount")
    except CudaInteropUnavailable as exc:
        if getattr(exc, "cuda_error", None) == "cudaErrorInsufficientDriver":
            return False, (
                f"{exc}: this cuda-bindings is newer than the driver; install the release matching the "
                "driver's CUDA version (e.g. 'cuda-bindings<13' for a CUDA 12 driver)"
            )
        return False, str(exc)
    if not count:
        return False, "cuda-bindings sees no CUDA device"
    if os.environ.get("PYOPENGL_PLATFORM", "").lower() == "osmesa":
        return False, "PYOPENGL_PLATFORM=osmesa selects Mesa's software GL, which cannot share with CUDA"
    if os.environ.get("LIBGL_ALWAYS_SOFTWARE", "").lower() not in ("", "0", "false"):
        return False, "LIBGL_ALWAYS_SOFTWARE is set: software GL cannot share with CUDA"
    if sys.platform.startswith("linux") and _nvidia_gl_library() is None:
        return False, (
            "no NVIDIA OpenGL driver library (libEGL_nvidia / libGLX_nvidia) is installed; only "
            "NVIDIA's GL can share buffers with CUDA"
        )
    return True, "cuda-gl interop"


# -- Shared helpers


def _positive_int(value: Any, name: str) -> int:
    """``value`` as an int > 0, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_tensor(tensor: Any, device: int, what: str) -> int:
    """Check ``tensor`` is a contiguous CUDA tensor on ``device``; return its size in bytes."""
    if not callable(getattr(tensor, "data_ptr", None)):
        raise ValueError(f"{what}: expected a torch.Tensor, got {type(tensor).__name__}")
    if not getattr(tensor, "is_cuda", False):
        raise ValueError(f"{what}: the tensor must be a CUDA tensor, got one on {tensor.device}")
    if not tensor.is_contiguous():
        raise ValueError(f"{what}: the tensor must be contiguous (call .contiguous() first)")
    index = tensor.device.index
    if index is not None and index != device:
        raise ValueError(
            f"{what}: the tensor is on cuda:{index} but the GL object was registered on cuda:{device}"
        )
    return int(tensor.numel()) * int(tensor.element_size())


class _Registered:
    """A GL object registered with CUDA: the registration, the device, stream choice and closing."""

    _kind = "object"

    def __init__(self, gl_name: int, label: str) -> None:
        self._resource: Any = None  # set last in __init__: close() and __del__ rely on it
        self._mapped = False
        self.gl_name = gl_name
        self.label = label
        self._what = (
            f"{type(self).__name__} {label!r}"
            if label
            else f"{type(self).__name__}(gl {self._kind} {gl_name})"
        )
        self._rt = _cudart()
        self._tc = _torch_cuda()
        if not self._tc.is_available():
            raise CudaInteropUnavailable(f"{self._what}: torch sees no CUDA device")
        self.device: int = int(self._tc.current_device())

    # -- registration ---------------------------------------------------------------------------

    def _register(self, func: str, *args: Any) -> None:
        """Register the GL object with the CUDA runtime, on this object's device."""
        try:
            with self._tc.device(self.device):
                self._resource = _call(self._rt, self._what, func, *args)
        except CudaInteropUnavailable as exc:
            # Registration is where a wrong GL context shows up: say which one was current, unless
            # the driver itself is missing or too old, which the error already says.
            if getattr(exc, "cuda_error", None) in _DRIVER_ERRORS:
                raise
            raise _unavailable(f"{exc}{_gl_hint()}", getattr(exc, "cuda_error", None)) from exc

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run (or registration never succeeded)."""
        return self._resource is None

    def close(self) -> None:
        """Unregister from CUDA (the GL object itself stays the caller's). Safe to call twice.

        Needs the owning GL context current on this thread, like every other call.
        """
        if self._resource is None:
            return
        if self._mapped:
            raise RuntimeError(f"{self._what}: close() called while mapped")
        resource, self._resource = self._resource, None  # never unregister twice, even on error
        with self._tc.device(self.device):
            _call(self._rt, self._what, "cudaGraphicsUnregisterResource", resource)

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # No CUDA here: __del__ may run on another thread, without the GL context, or at exit.
        if getattr(self, "_resource", None) is not None:
            try:
                warnings.warn(
                    f"{self._what} was never closed; its CUDA registration leaks until the process exits",
                    ResourceWarning,
                    stacklevel=2,
                )
            except Exception:  # interpreter shutdown: nothing left to warn with
                pass

    # -- streams and mapping --------------------------------------------------------------------

    def _stream(self, stream: Any) -> tuple[Any, int]:
        """The torch stream to use and its raw ``cudaStream_t`` handle (the current one when ``None``)."""
        if stream is None:
            stream = self._tc.current_stream(self.device)
        dev = getattr(stream, "device", None)
        index = getattr(dev, "index", dev if isinstance(dev, int) else None)
        if index is not None and index != self.device:
            raise ValueError(
                f"{self._what}: the stream is on cuda:{index}, the GL object on cuda:{self.device}"
            )
        handle = getattr(stream, "cuda_stream", None)
        if not isinstance(handle, int):
            raise ValueError(f"{self._what}: stream must be a torch.cuda.Stream, got {type(stream).__name__}")
        return stream, handle

    def _keep_alive(self, tensor: Any, stream: Any, explicit: bool) -> None:
        """Tell torch's caching allocator the copy on a non-current stream still reads ``tensor``."""
        if not explicit:
            return
        current = self._tc.current_stream(self.device)
        if getattr(current, "cuda_stream", None) != stream.cuda_stream:
            tensor.record_stream(stream)

    @contextmanager
    def _map(self, handle: int) -> Iterator[None]:
        """Map the resource on stream ``handle`` for the duration of the block, then unmap it."""
        if self._resource is None:
            raise RuntimeError(f"{self._what} is closed")
        if self._mapped:
            raise RuntimeError(f"{self._what} is already mapped")
        rt, res = self._rt, self._resource
        # ``resources`` must be the cudaGraphicsResource_t object: the bindings read it as a
        # pointer to an array of ``count`` handles; a plain int would be taken as that pointer.
        with self._tc.device(self.device):
            _call(rt, self._what, "cudaGraphicsMapResources", 1, res, handle)
            self._mapped = True
            STATS._count_map()
            try:
                yield
            except BaseException:
                self._mapped = False
                try:
                    _call(rt, self._what, "cudaGraphicsUnmapResources", 1, res, handle)
                except CudaInteropUnavailable:
                    pass  # the error already propagating says more
                raise
            self._mapped = False
            _call(rt, self._what, "cudaGraphicsUnmapResources", 1, res, handle)


# -- Buffers


class CudaGLBuffer(_Registered):
    """A GL buffer object registered with CUDA once; each update maps it on a torch stream, copies
    device-to-device, unmaps."""

    _kind = "buffer"

    def __init__(self, gl_buffer: int, nbytes: int, *, label: str = "") -> None:
        """Register ``gl_buffer`` (``nbytes`` long, already allocated with glBufferData).

        The GL context must be current on this thread; the buffer is bound to torch's current CUDA
        device. Registered with ``cudaGraphicsRegisterFlagsNone``, not ``WriteDiscard``: writes may
        cover only part of the buffer and the rest must survive.
        """
        _positive_int(gl_buffer, "gl_buffer")
        self.nbytes = _positive_int(nbytes, "nbytes")
        super().__init__(gl_buffer, label)
        flags = self._rt.cudaGraphicsRegisterFlags.cudaGraphicsRegisterFlagsNone
        self._register("cudaGraphicsGLRegisterBuffer", gl_buffer, flags)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"cuda:{self.device}"
        return f"<CudaGLBuffer gl={self.gl_name} nbytes={self.nbytes} {self.label!r} {state}>"

    @contextmanager
    def mapped(self, stream: torch.cuda.Stream | None = None) -> Iterator[int]:
        """Map the buffer on ``stream`` (torch's current stream when ``None``); yield its device pointer.

        GL must not use the buffer inside the block. Raises ``ValueError`` if the GL buffer is
        smaller than the ``nbytes`` it was registered with.
        """
        _, handle = self._stream(stream)
        with self._map(handle):
            ptr, size = _call(self._rt, self._what, "cudaGraphicsResourceGetMappedPointer", self._resource)
            if int(size) < self.nbytes:
                raise ValueError(
                    f"{self._what}: the GL buffer holds {int(size)} bytes, fewer than the {self.nbytes} "
                    "it was registered with"
                )
            yield int(ptr)

    def write(
        self, tensor: torch.Tensor, byte_offset: int = 0, stream: torch.cuda.Stream | None = None
    ) -> None:
        """Copy the bytes of contiguous CUDA ``tensor`` into the buffer at ``byte_offset``, on ``stream``.

        Asynchronous like any CUDA work on the stream. ``stream`` defaults to torch's current stream;
        a caller that passes another one must order it after the tensor's producer.
        """
        self.write_many([(tensor, byte_offset)], stream=stream)

    def write_many(
        self,
        parts: Sequence[tuple[torch.Tensor, int]],
        stream: torch.cuda.Stream | None = None,
    ) -> None:
        """Copy several ``(tensor, byte_offset)`` pairs inside ONE map/unmap (one sync point, not N).

        Every part is checked before anything is mapped, so a bad part copies nothing.
        """
        copies: list[tuple[Any, int, int]] = []
        for i, part in enumerate(parts):
            try:
                tensor, offset = part
            except (TypeError, ValueError):
                raise ValueError(f"{self._what}: part {i} must be a (tensor, byte_offset) pair") from None
            nbytes = _check_tensor(tensor, self.device, f"{self._what} part {i}")
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise ValueError(f"{self._what}: byte_offset must be an int >= 0, got {offset!r}")
            if offset + nbytes > self.nbytes:
                raise ValueError(
                    f"{self._what}: writing {nbytes} bytes at offset {offset} overruns the "
                    f"{self.nbytes}-byte buffer"
                )
            if nbytes:
                copies.append((tensor, offset, nbytes))
        if not copies:
            return
        if self._resource is None:
            raise RuntimeError(f"{self._what} is closed")
        torch_stream, handle = self._stream(stream)
        rt = self._rt
        d2d = rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        with self.mapped(torch_stream) as base:
            for tensor, offset, nbytes in copies:
                _call(
                    rt,
                    self._what,
                    "cudaMemcpyAsync",
                    base + offset,
                    int(tensor.data_ptr()),
                    nbytes,
                    d2d,
                    handle,
                )
                STATS._count_copy(nbytes)
                self._keep_alive(tensor, torch_stream, stream is not None)
