"""EGL devices: which GPUs EGL can render on, and the one glnet's offscreen contexts use.

``EGL_EXT_device_enumeration`` lists the devices (NVIDIA GPUs, Mesa's software device, DRM devices) and
``EGL_EXT_platform_device`` opens a display on one of them. An NVIDIA device also names its CUDA device
(``EGL_NV_device_cuda``), which is how the context lands on the GPU holding the model's tensors: CUDA-GL
interop can only share buffers between a context and tensors on the same GPU.

The CUDA ordinal rule: ``EGL_CUDA_DEVICE_NV`` is read as an ordinal in this process's CUDA numbering, the one
``CUDA_VISIBLE_DEVICES`` has already remapped, as the extension specifies ("a valid CUDA device handle ...
compatible with CUDA API functions") and NVIDIA's cuda-python tests match it. A driver that reports an ordinal
this process cannot see (one past the devices ``CUDA_VISIBLE_DEVICES`` leaves) numbers physically instead; the
wanted ordinal is then mapped through the ``CUDA_VISIBLE_DEVICES`` list.

VisPy's EGL backend draws on one display per process, so glnet renders on one EGL device per process:
:func:`select_display` points that display at the chosen device before the first context is made. Without
NVIDIA devices (Mesa here) nothing changes: the platform default, ``EGL_PLATFORM=surfaceless``.
Only ctypes here: no PyOpenGL, so the module imports anywhere.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import GLUnavailableError, InputError

__all__ = [
    "DeviceChoice",
    "EGLDevice",
    "choose_device",
    "cuda_ordinal",
    "device_report",
    "parse_visible_devices",
    "query_devices",
    "select_display",
]

_EXTENSIONS = 0x3055
_VENDOR = 0x3053
_RENDERER_EXT = 0x335F
_DRM_DEVICE_FILE_EXT = 0x3233
_DRM_RENDER_NODE_FILE_EXT = 0x3377
_CUDA_DEVICE_NV = 0x323A
_PLATFORM_DEVICE_EXT = 0x313F


@dataclass(frozen=True)
class EGLDevice:
    """One EGL device as ``glnet info`` lists it."""

    index: int
    extensions: tuple[str, ...]
    cuda: int | None  # its CUDA ordinal (EGL_NV_device_cuda), None where it has none
    drm: str | None  # its DRM device file or render node, where the driver says
    name: str  # vendor and renderer where the driver says, else what its extensions tell
    handle: int = field(default=0, repr=False, compare=False)  # the EGLDeviceEXT, valid for the process

    def describe(self) -> str:
        """``name drm`` in one short phrase."""
        return f"{self.name} {self.drm}" if self.drm else self.name


@dataclass(frozen=True)
class DeviceChoice:
    """The EGL device a context goes on (None: the platform's default display) and how it was chosen."""

    index: int | None
    why: str


# -- the pure rule ----------------------------------------------------------------------------------------


def parse_visible_devices(value: str | None) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` as CUDA reads it: entries up to the first invalid one; None when unset."""
    if value is None:
        return None
    out: list[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if entry.isdigit() or entry.startswith(("GPU-", "MIG-")):
            out.append(entry)
        else:
            break  # CUDA ignores everything from the first invalid entry on (e.g. -1)
    return out


def cuda_ordinal(device: Any) -> int | None:
    """The CUDA ordinal of a torch device (``cuda:1``, ``torch.device``, an int); None for CPU or no device.

    Bare ``cuda`` is torch's current device. A string that is not a device at all is None here; the model
    loader reports it.
    """
    if device is None:
        return None
    if isinstance(device, bool):
        raise InputError(f"not a torch device: {device!r}")
    if isinstance(device, int):
        return device
    import torch

    try:
        d = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        return None
    if d.type != "cuda":
        return None
    if d.index is not None:
        return d.index
    return int(torch.cuda.current_device()) if torch.cuda.is_available() else 0


def _driver_ordinal(cuda: int, ordinals: Sequence[int | None], visible: str | None) -> tuple[int | None, str]:
    """The ordinal the EGL driver reports for this process's CUDA device ``cuda``, and a note if none."""
    entries = parse_visible_devices(visible)
    reported = [o for o in ordinals if o is not None]
    if entries is None or max(reported) < len(entries):
        return cuda, ""  # CUDA_VISIBLE_DEVICES unset, or the driver numbers as this process does
    if cuda >= len(entries):
        return None, f"CUDA_VISIBLE_DEVICES={visible} leaves no cuda:{cuda}"
    if not entries[cuda].isdigit():
        return None, f"CUDA_VISIBLE_DEVICES names cuda:{cuda} as {entries[cuda]}, which EGL does not number"
    return int(entries[cuda]), ""


def choose_device(
    ordinals: Sequence[int | None] | None,
    *,
    gl_device: int | None = None,
    cuda_device: int | None = None,
    visible: str | None = None,
) -> DeviceChoice:
    """The EGL device for a context: ``gl_device`` (an EGL device index) if given, else the one whose CUDA
    ordinal is ``cuda_device``, read by the module's rule with ``visible`` (``CUDA_VISIBLE_DEVICES``).

    ``ordinals``: each EGL device's CUDA ordinal (None where it has none), or None when EGL cannot enumerate
    devices. With no device reporting a CUDA ordinal (Mesa) or no match, the platform default (index None).
    A bad ``gl_device`` is an :class:`InputError`.
    """
    if gl_device is not None:
        if isinstance(gl_device, bool) or not isinstance(gl_device, int):
            raise InputError(f"--gl-device takes an EGL device index, not {gl_device!r}")
        if ordinals is None:
            raise InputError(
                "--gl-device needs EGL device enumeration (EGL_EXT_device_enumeration) and this EGL has none"
            )
        if not 0 <= gl_device < len(ordinals):
            n = len(ordinals)
            have = (
                f"{n} EGL devices (0..{n - 1})" if n > 1 else ("1 EGL device (0)" if n else "no EGL device")
            )
            raise InputError(
                f"--gl-device {gl_device} is out of range: this machine has {have}; glnet info lists them"
            )
        return DeviceChoice(gl_device, f"--gl-device {gl_device}")
    if not ordinals or all(o is None for o in ordinals):
        return DeviceChoice(None, "the platform default (no EGL device names a CUDA device)")
    if cuda_device is None:
        return DeviceChoice(None, "the platform default")
    target, note = _driver_ordinal(cuda_device, ordinals, visible)
    if target is not None and target in ordinals:
        return DeviceChoice(list(ordinals).index(target), f"the GPU of cuda:{cuda_device}")
    note = note or f"no EGL device is CUDA device {target}"
    return DeviceChoice(None, f"the platform default ({note})")


# -- libEGL -----------------------------------------------------------------------------------------------


class _Lib:
    """libEGL and the device-extension entry points (through eglGetProcAddress)."""

    def __init__(self) -> None:
        path = ctypes.util.find_library("EGL") or "libEGL.so.1"
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            raise GLUnavailableError(f"EGL device enumeration is unavailable: no libEGL ({e})") from e
        lib.eglQueryString.restype = ctypes.c_char_p
        lib.eglQueryString.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.eglGetProcAddress.restype = ctypes.c_void_p
        lib.eglGetProcAddress.argtypes = [ctypes.c_char_p]
        lib.eglInitialize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.eglTerminate.argtypes = [ctypes.c_void_p]
        self.lib = lib
        client = (lib.eglQueryString(None, _EXTENSIONS) or b"").decode(errors="replace").split()
        missing = [e for e in ("EGL_EXT_device_enumeration", "EGL_EXT_platform_device") if e not in client]
        if "EGL_EXT_device_base" in client:  # the older name for enumeration + query together
            missing = [e for e in missing if e != "EGL_EXT_device_enumeration"]
        if missing:
            raise GLUnavailableError(
                f"EGL device enumeration is unavailable: this EGL lacks {', '.join(missing)}"
            )
        c_bool, vp, cint = ctypes.c_uint, ctypes.c_void_p, ctypes.c_int
        self.query_devices = self._proc(
            "eglQueryDevicesEXT", c_bool, cint, ctypes.POINTER(vp), ctypes.POINTER(cint)
        )
        self.query_string = self._proc("eglQueryDeviceStringEXT", ctypes.c_char_p, vp, cint)
        self.query_attrib = self._proc(
            "eglQueryDeviceAttribEXT", c_bool, vp, cint, ctypes.POINTER(ctypes.c_ssize_t)
        )
        self.platform_display = self._proc("eglGetPlatformDisplayEXT", vp, ctypes.c_uint, vp, vp)

    def _proc(self, name: str, restype: Any, *argtypes: Any) -> Any:
        address = self.lib.eglGetProcAddress(name.encode())
        if not address:
            raise GLUnavailableError(f"EGL device enumeration is unavailable: libEGL has no {name}")
        return ctypes.CFUNCTYPE(restype, *argtypes)(address)

    def string(self, handle: int, name: int) -> str | None:
        raw = self.query_string(handle, name)
        return raw.decode(errors="replace") if raw else None


@functools.cache
def _lib() -> _Lib:
    return _Lib()


def _describe(lib: _Lib, handle: int, exts: tuple[str, ...]) -> tuple[int | None, str | None, str]:
    cuda = None
    if "EGL_NV_device_cuda" in exts:
        value = ctypes.c_ssize_t(-1)
        if lib.query_attrib(handle, _CUDA_DEVICE_NV, ctypes.byref(value)) and value.value >= 0:
            cuda = int(value.value)
    drm = None
    if "EGL_EXT_device_drm_render_node" in exts:
        drm = lib.string(handle, _DRM_RENDER_NODE_FILE_EXT)
    if drm is None and "EGL_EXT_device_drm" in exts:
        drm = lib.string(handle, _DRM_DEVICE_FILE_EXT)
    name = ""
    if "EGL_EXT_device_query_name" in exts:
        parts = [lib.string(handle, _VENDOR), lib.string(handle, _RENDERER_EXT)]
        name = " ".join(p for p in parts if p)
    if not name:
        if "EGL_NV_device_cuda" in exts:
            name = "NVIDIA"
        elif "EGL_MESA_device_software" in exts:
            name = "Mesa software rasterizer"
        else:
            name = "unknown driver"
    return cuda, drm, name


def query_devices() -> list[EGLDevice]:
    """Every EGL device, in EGL's order; :class:`GLUnavailableError` when EGL cannot enumerate them."""
    lib = _lib()
    count = ctypes.c_int(0)
    if not lib.query_devices(0, None, ctypes.byref(count)):
        raise GLUnavailableError("EGL device enumeration is unavailable: eglQueryDevicesEXT failed")
    handles = (ctypes.c_void_p * max(count.value, 1))()
    if not lib.query_devices(count.value, handles, ctypes.byref(count)):
        raise GLUnavailableError("EGL device enumeration is unavailable: eglQueryDevicesEXT failed")
    out = []
    for i in range(count.value):
        handle = int(handles[i] or 0)
        exts = tuple((lib.string(handle, _EXTENSIONS) or "").split())
        cuda, drm, name = _describe(lib, handle, exts)
        out.append(EGLDevice(i, exts, cuda, drm, name, handle))
    return out


def device_report(current: int | None = None) -> list[str]:
    """``glnet info``'s lines: each EGL device's index, driver, DRM path, CUDA ordinal (or -); or why none."""
    try:
        devices = query_devices()
    except GLUnavailableError as e:
        return [f"EGL        {e}"]
    lines = [
        f"EGL {d.index:<6} {d.describe()}; cuda {'-' if d.cuda is None else d.cuda}"
        + ("  (this context)" if d.index == current else "")
        for d in devices
    ]
    return lines or ["EGL        EGL lists no device"]


# -- the process's display ----------------------------------------------------------------------------------


class _Displays:
    """Owns the device displays glnet initialized (one per device, for the process's life) and which one
    VisPy's EGL backend draws on; :meth:`close` terminates them (at exit)."""

    def __init__(self) -> None:
        self.opened: dict[int, int] = {}  # EGL device index -> initialized EGLDisplay
        self.active: int | None = None  # the device VisPy's display is on; None: the platform default

    def use(self, device: EGLDevice) -> None:
        """Point VisPy's EGL display at ``device``: only while no EGL context of another device is open."""
        from vispy.app.backends import _egl

        if device.index == self.active:
            return
        if any(getattr(w, "_surface", None) is not None for w in _egl._VP_EGL_ALL_WINDOWS):
            where = f"EGL device {self.active}" if self.active is not None else "the default EGL display"
            raise GLUnavailableError(
                f"cannot put a context on EGL device {device.index}: one on {where} is still open in this "
                "process, and glnet renders on one EGL device per process"
            )
        display = self.opened.get(device.index)
        if display is None:
            lib = _lib()
            display = lib.platform_display(_PLATFORM_DEVICE_EXT, device.handle, None)
            if not display or not lib.lib.eglInitialize(display, None, None):
                raise GLUnavailableError(f"EGL device {device.index} ({device.describe()}) cannot be opened")
            self.opened[device.index] = display
        _egl._EGL_DISPLAY = display
        self.active = device.index

    def close(self) -> None:
        """Terminate every display opened here (at exit: contexts on them are gone with the process)."""
        opened, self.opened = self.opened, {}
        for display in opened.values():
            _lib().lib.eglTerminate(display)


_DISPLAYS = _Displays()
atexit.register(_DISPLAYS.close)


def select_display(*, gl_device: int | None = None, cuda_device: Any = None) -> DeviceChoice:
    """Choose the EGL device for the next offscreen context and point VisPy's EGL backend at it.

    ``gl_device``: an EGL device index (``--gl-device``); ``cuda_device``: the tensors' device (``cuda:1``,
    an ordinal), else CUDA device 0, the one torch uses first. Without an NVIDIA EGL device the display stays
    the platform default. An automatic choice that cannot be opened falls back to the display in use (the
    reason in ``why``); a ``gl_device`` that cannot be is an error. Call after ``vispy.app.use_app("egl")``.
    """
    cuda = cuda_ordinal(cuda_device)
    try:
        devices = query_devices()
    except GLUnavailableError as e:
        if gl_device is not None:
            raise InputError(f"--gl-device: {e}") from e
        return _current(str(e))
    ordinals = [d.cuda for d in devices]
    if cuda is None and any(o is not None for o in ordinals):
        cuda = 0  # NVIDIA: the GPU torch computes on first, not whichever EGL lists first
    choice = choose_device(
        ordinals, gl_device=gl_device, cuda_device=cuda, visible=os.environ.get("CUDA_VISIBLE_DEVICES")
    )
    if choice.index is None:
        return _current(choice.why)
    try:
        _DISPLAYS.use(devices[choice.index])
    except GLUnavailableError as e:
        if gl_device is not None:
            raise
        return _current(str(e))
    return choice


def _current(why: str) -> DeviceChoice:
    """The display in use (the platform default unless a device was chosen before), and why it stays."""
    default = why.startswith("the platform default")
    if _DISPLAYS.active is not None:
        note = "" if default else f" ({why})"
        return DeviceChoice(
            _DISPLAYS.active, f"EGL device {_DISPLAYS.active}, which this process renders on{note}"
        )
    return DeviceChoice(None, why if default else f"the platform default ({why})")
