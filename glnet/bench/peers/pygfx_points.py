"""The pygfx ``Points`` peer: :class:`pygfx.Points` (WebGPU through wgpu) drawing glnet's discs offscreen.

It is an optional extra (``pip install 'glnet[peers]'``) and needs a Vulkan, Metal or D3D12 adapter (Mesa's
lavapipe on a machine without a GPU). :func:`probe` finds the adapter once per process and raises
:class:`PygfxUnavailableError`, one line, when pygfx, wgpu or an adapter is missing.

It draws what the VisPy peer draws (:func:`~glnet.bench.peers.vispy_markers.markers_data`): glnet's world
positions, colour-table colours and on-screen disc diameters, without antialiasing, from glnet's camera. The
camera's view is the pygfx camera's world transform, and its projection is glnet's with clip z moved from
GL's ``[-w, w]`` to WebGPU's ``[0, w]``. pygfx draws a non-antialiased point at least sqrt(2) pixels wide (its
minimum coverage), so discs glnet draws 1 pixel wide come out slightly larger. A frame renders into an
offscreen :mod:`rendercanvas` canvas and reads the image back, which waits for the GPU.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import InputError
from ..schema import PYGFX
from .vispy_markers import markers_data

if TYPE_CHECKING:
    from ...camera import Camera
    from ..workloads import Workload

__all__ = [
    "INSTALL_HINT",
    "PYGFX_HOST_BYTES_PER_POINT",
    "PygfxAdapter",
    "PygfxPoints",
    "PygfxUnavailableError",
    "probe",
    "skip_reason",
]

INSTALL_HINT = "pip install 'glnet[peers]'"
# Host bytes per point while the peer's data is built: markers_data's arrays, the RGB copy, temporaries.
PYGFX_HOST_BYTES_PER_POINT = 100
UPLOAD_REPEATS = 3  # as for glnet's upload: the median of three
_BACKENDS = ("Vulkan", "Metal", "D3D12")  # wgpu's primary backends; its GL backend would share EGL with glnet
_TYPE_RANK = {"DiscreteGPU": 0, "IntegratedGPU": 1, "VirtualGPU": 2, "CPU": 3}
# GL clip space (z in [-w, w]) to WebGPU's (z in [0, w]); x, y and w are unchanged
_GL_TO_WGPU_CLIP = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0.5, 0.5], [0, 0, 0, 1]], np.float64)


class PygfxUnavailableError(InputError):
    """pygfx, wgpu or a Vulkan/Metal/D3D12 adapter is missing here: the pygfx peer cannot run."""


@dataclass(frozen=True)
class PygfxAdapter:
    """The wgpu adapter pygfx draws with, and its limits on one storage buffer."""

    name: str
    backend: str
    adapter_type: str
    driver: str
    max_binding_bytes: int
    versions: dict[str, str | None]

    def machine_info(self) -> dict[str, Any]:
        """The ``wgpu_*`` fields of the bench JSON's ``machine`` (as ``gl_renderer`` is for GL)."""
        return {
            "wgpu_adapter": self.name,
            "wgpu_backend": self.backend,
            "wgpu_adapter_type": self.adapter_type,
            "wgpu_driver": self.driver,
        }


def _modules() -> tuple[Any, Any]:
    try:
        import pygfx
        import wgpu
    except ImportError as e:
        raise PygfxUnavailableError(f"{PYGFX} needs pygfx and wgpu ({INSTALL_HINT}): {e}") from None
    return wgpu, pygfx


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence fd 2 while Vulkan starts headless: libwayland complains there when XDG_RUNTIME_DIR is unset."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


_adapter: PygfxAdapter | None = None
_probe_error: str | None = None


def _pick(wgpu: Any) -> Any:
    """The best adapter on a primary backend (GPU before CPU) with the feature pygfx requires."""
    try:
        from wgpu.backends.wgpu_native import extras  # loads the native library

        with contextlib.suppress(RuntimeError):  # the instance exists already: keep its backends
            extras.set_instance_extras(backends=["Primary"])
        with _quiet_native_stderr():
            found = wgpu.gpu.enumerate_adapters_sync()
    except Exception as e:  # the native library failed to load or start
        line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PygfxUnavailableError(f"{PYGFX}: wgpu could not list adapters: {line}") from None
    usable = [a for a in found if a.info["backend_type"] in _BACKENDS and "float32-filterable" in a.features]
    if not usable:
        seen = ", ".join(a.summary for a in found) or "none"
        raise PygfxUnavailableError(
            f"{PYGFX} needs a Vulkan adapter and wgpu found none (adapters: {seen}); on Debian/Ubuntu "
            "'apt-get install mesa-vulkan-drivers' provides Mesa's lavapipe"
        )
    return min(usable, key=lambda a: _TYPE_RANK.get(a.info["adapter_type"], 4))


def probe() -> PygfxAdapter:
    """The adapter pygfx draws with, chosen once per process; :class:`PygfxUnavailableError` if none."""
    global _adapter, _probe_error
    wgpu, gfx = _modules()
    if _probe_error is not None:
        raise PygfxUnavailableError(_probe_error)
    if _adapter is None:
        try:
            chosen = _pick(wgpu)
        except PygfxUnavailableError as e:
            _probe_error = str(e)
            raise
        limits = chosen.limits
        binding = int(limits["max-storage-buffer-binding-size"])
        with contextlib.suppress(RuntimeError):  # pygfx's device exists already: it keeps its own choice
            gfx.renderers.wgpu.select_adapter(chosen)
            gfx.renderers.wgpu.set_wgpu_limits(
                **{
                    "max-storage-buffer-binding-size": binding,
                    "max-buffer-size": int(limits["max-buffer-size"]),
                }
            )
        info = chosen.info
        _adapter = PygfxAdapter(
            name=str(info["device"] or info["vendor"] or chosen.summary),
            backend=str(info["backend_type"]),
            adapter_type=str(info["adapter_type"]),
            driver=str(info["description"]),
            max_binding_bytes=binding,
            versions={m: _version(m) for m in ("pygfx", "wgpu", "rendercanvas")},
        )
    return _adapter


def skip_reason(work: Workload, adapter: PygfxAdapter) -> str | None:
    """Why the peer cannot draw ``work`` here (host memory, the adapter's storage-buffer limit), or None."""
    from ...models import available_memory

    need = work.points * PYGFX_HOST_BYTES_PER_POINT
    if need > available_memory("cpu"):
        return f"needs ~{need / 2**30:.1f} GiB of host memory, more than is free"
    widest = work.points * 12  # positions and RGB colours: three float32 a point, one storage buffer each
    if widest > adapter.max_binding_bytes:
        return (
            f"its {widest / 2**20:,.0f} MiB position buffer is above this adapter's "
            f"{adapter.max_binding_bytes / 2**20:,.0f} MiB storage-buffer limit"
        )
    return None


def _camera_class(gfx: Any) -> type:
    class GlnetCamera(gfx.Camera):  # type: ignore[misc, name-defined]
        """A pygfx camera with a fixed projection matrix (the hook pygfx's NDCCamera overrides too)."""

        def __init__(self, projection: np.ndarray) -> None:
            super().__init__()
            self.fixed_projection = projection

        def _update_projection_matrix(self) -> np.ndarray:
            return self.fixed_projection

    return GlnetCamera


class PygfxPoints:
    """One workload as a :class:`pygfx.Points` in an offscreen canvas; ``frame()`` draws it and reads it back.

    ``upload_ms`` is the wall time of sending its three buffers (positions, RGB colours, diameters) through
    ``queue.write_buffer``, as pygfx's sync does, until the GPU has them;
    ``gpu_bytes`` those buffers. Use it as a context manager, or ``close()``.
    """

    def __init__(self, work: Workload, camera: Camera, size: tuple[int, int]) -> None:
        from ...colormap import BACKGROUND

        wgpu, gfx = _modules()
        self.adapter = probe()
        from rendercanvas.offscreen import RenderCanvas

        width, height = size
        pos, rgba, diameter = markers_data(work, camera, size)
        rgb = np.ascontiguousarray(rgba[:, :3])
        del rgba
        self.size = (width, height)
        self._image: np.ndarray | None = None
        self.canvas: Any = RenderCanvas(size=(width, height), pixel_ratio=1)
        self.scene: Any = None
        try:
            # one internal pixel per output pixel, no filter and no post-processing antialiasing
            self.renderer: Any = gfx.WgpuRenderer(
                self.canvas, pixel_scale=1, pixel_filter="nearest", ppaa="none", enable_events=False
            )
            projection = _GL_TO_WGPU_CLIP @ camera.projection_matrix(width / height)
            self.camera: Any = _camera_class(gfx)(projection)
            self.camera.local.matrix = np.linalg.inv(camera.view_matrix())
            self.upload_ms = self._time_upload(wgpu, self.renderer.device, (pos, rgb, diameter))
            geometry = gfx.Geometry(positions=pos, colors=rgb, sizes=diameter)
            material = gfx.PointsMaterial(
                color_mode="vertex", size_mode="vertex", size_space="screen", aa=False, alpha_mode="solid"
            )
            self.points: Any = gfx.Points(geometry, material)
            self.scene = gfx.Scene()
            self.scene.add(gfx.Background.from_color(BACKGROUND))
            self.scene.add(self.points)
            self.gpu_bytes = int(pos.nbytes + rgb.nbytes + diameter.nbytes)
            self.canvas.request_draw(self._draw)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _time_upload(wgpu: Any, device: Any, arrays: tuple[np.ndarray, ...]) -> float:
        """Median ms to write ``arrays`` into new storage buffers until the queue is done (then freed)."""
        usage = wgpu.BufferUsage.STORAGE | wgpu.BufferUsage.COPY_DST | wgpu.BufferUsage.COPY_SRC
        buffers = [device.create_buffer(size=max(4, a.nbytes), usage=usage) for a in arrays]
        try:
            device.queue.read_buffer(buffers[0], 0, 4)  # reading a buffer back waits for the queue
            times = []
            for _ in range(UPLOAD_REPEATS):
                t0 = time.perf_counter()
                for buf, a in zip(buffers, arrays, strict=True):
                    device.queue.write_buffer(buf, 0, a)
                device.queue.read_buffer(buffers[-1], 0, 4)
                times.append((time.perf_counter() - t0) * 1e3)
            return statistics.median(times)
        finally:
            for buf in buffers:
                buf.destroy()

    def _draw(self) -> None:
        self.renderer.render(self.scene, self.camera)

    def frame(self) -> None:
        """Clear to glnet's background, draw every point, and read the image back (waits for the GPU)."""
        self._image = np.asarray(self.canvas.draw())

    def read_rgba(self) -> np.ndarray:
        """The last frame as (height, width, 4) uint8, top row first (drawn now if none was)."""
        if self._image is None:
            self.frame()
        assert self._image is not None
        return self._image.copy()

    def close(self) -> None:
        """Close the canvas and drop the scene, so its GPU buffers are freed. Idempotent."""
        if self.canvas is not None:
            self.canvas.close()
        self.canvas = self.scene = self.renderer = self.points = None
        self._image = None
        gc.collect()

    def __enter__(self) -> PygfxPoints:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
