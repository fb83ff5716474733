"""Tests of glnet.gpu.interop: CUDA-OpenGL buffer sharing.

Most tests run anywhere: a fake of the cuda-bindings runtime module records every call and answers
with success tuples (or the error we ask for), and fake CUDA tensors stand in for real ones. The
tests marked ``cuda`` do the real thing on an NVIDIA GPU with glnet's own objects (its offscreen context on
the EGL device it picks, its buffers, live training's update path), and skip elsewhere.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import subprocess
import sys
import types
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from glnet.errors import CudaInteropUnavailable, GlnetError
from glnet.gpu import interop
from glnet.gpu.interop import STATS, CudaGLBuffer, interop_status

# ----------------------------------------------------------------------------------------------
# Fakes
# ----------------------------------------------------------------------------------------------


class Err(enum.IntEnum):
    """The subset of ``cudaError_t`` the tests use, with the real values."""

    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorInsufficientDriver = 35
    cudaErrorOperatingSystem = 304
    cudaErrorUnknown = 999


class RegisterFlags(enum.IntEnum):
    cudaGraphicsRegisterFlagsNone = 0
    cudaGraphicsRegisterFlagsReadOnly = 1
    cudaGraphicsRegisterFlagsWriteDiscard = 2


class MemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


class FakeResource:
    """Stands in for ``cudaGraphicsResource_t`` (an object, not an int)."""

    def __init__(self, gl_name: int) -> None:
        self.gl_name = gl_name


MAPPED_BASE = 0x7F00_0000_0000


class FakeCudart:
    """Records every call as ``(function name, *args)``; ``fail[name] = Err.x`` makes it fail."""

    cudaError_t = Err
    cudaGraphicsRegisterFlags = RegisterFlags
    cudaMemcpyKind = MemcpyKind

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail: dict[str, Err] = {}
        self.raise_runtime: set[str] = set()
        self.mapped_size: int | None = None  # None: as big as the registered buffer
        self.buffer_sizes: dict[int, int] = {}
        self.mapped: set[int] = set()

    def _ret(self, name: str, *values: Any) -> tuple[Any, ...]:
        if name in self.raise_runtime:
            raise RuntimeError("Failed to dlopen libcuda.so.1")
        err = self.fail.get(name, Err.cudaSuccess)
        if err != Err.cudaSuccess:
            return (err, *([None] * len(values)))
        return (err, *values)

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    # runtime functions, same signatures and return tuples as cuda.bindings.runtime
    def cudaGetDeviceCount(self):
        self.calls.append(("cudaGetDeviceCount",))
        return self._ret("cudaGetDeviceCount", 1)

    def cudaGraphicsGLRegisterBuffer(self, buffer, flags):
        self.calls.append(("cudaGraphicsGLRegisterBuffer", buffer, flags))
        return self._ret("cudaGraphicsGLRegisterBuffer", FakeResource(buffer))

    def cudaGraphicsMapResources(self, count, resources, stream):
        self.calls.append(("cudaGraphicsMapResources", count, resources, stream))
        out = self._ret("cudaGraphicsMapResources")
        if out[0] == Err.cudaSuccess:
            assert id(resources) not in self.mapped, "mapped twice"
            self.mapped.add(id(resources))
        return out

    def cudaGraphicsUnmapResources(self, count, resources, stream):
        self.calls.append(("cudaGraphicsUnmapResources", count, resources, stream))
        out = self._ret("cudaGraphicsUnmapResources")
        self.mapped.discard(id(resources))
        return out

    def cudaGraphicsResourceGetMappedPointer(self, resource):
        self.calls.append(("cudaGraphicsResourceGetMappedPointer", resource))
        size = self.mapped_size if self.mapped_size is not None else 1 << 30
        return self._ret("cudaGraphicsResourceGetMappedPointer", MAPPED_BASE, size)

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        self.calls.append(("cudaMemcpyAsync", dst, src, count, kind, stream))
        return self._ret("cudaMemcpyAsync")

    def cudaGraphicsUnregisterResource(self, resource):
        self.calls.append(("cudaGraphicsUnregisterResource", resource))
        return self._ret("cudaGraphicsUnregisterResource")

    def cudaGetErrorName(self, err):
        return (Err.cudaSuccess, Err(err).name.encode())

    def cudaGetErrorString(self, err):
        return (Err.cudaSuccess, f"fake text for {Err(err).name}".encode())


class FakeStream:
    """The two attributes of ``torch.cuda.Stream`` the module reads."""

    def __init__(self, handle: int, device: int = 0) -> None:
        self.cuda_stream = handle
        self.device = SimpleNamespace(index=device, type="cuda")


class FakeTorchCuda:
    """The bits of ``torch.cuda`` the module uses."""

    def __init__(self, available: bool = True) -> None:
        self.available = available
        self.current = FakeStream(0)
        self.device_guards: list[int] = []

    def is_available(self) -> bool:
        return self.available

    def current_device(self) -> int:
        return 0

    def current_stream(self, device: int | None = None) -> FakeStream:
        return self.current

    def device(self, index: int):
        self.device_guards.append(index)
        return contextlib.nullcontext()


class FakeCudaTensor:
    """Duck-types a CUDA tensor: pointer, size, contiguity, device."""

    is_cuda = True

    def __init__(
        self,
        nbytes: int,
        *,
        ptr: int = 0x5000_0000,
        contiguous: bool = True,
        device: int = 0,
    ) -> None:
        self.nbytes = nbytes
        self.ptr = ptr
        self.contiguous = contiguous
        self.device = SimpleNamespace(index=device, type="cuda")
        self.recorded: list[Any] = []

    def data_ptr(self) -> int:
        return self.ptr

    def numel(self) -> int:
        return self.nbytes // 4

    def element_size(self) -> int:
        return 4

    def is_contiguous(self) -> bool:
        return self.contiguous

    def record_stream(self, stream: Any) -> None:
        self.recorded.append(stream)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Swap the module's seams for fakes; reset the process-wide counters."""
    rt = FakeCudart()
    tc = FakeTorchCuda()
    monkeypatch.setattr(interop, "_cudart", lambda: rt)
    monkeypatch.setattr(interop, "_torch_cuda", lambda: tc)
    monkeypatch.setattr(interop, "_gl_vendor", lambda: "Mesa / llvmpipe (LLVM 15)")
    STATS.reset()
    yield SimpleNamespace(rt=rt, tc=tc)
    STATS.reset()


def after_register(rt: FakeCudart) -> list[tuple[Any, ...]]:
    """The calls made after the (first) registration."""
    return [c for c in rt.calls if not c[0].startswith("cudaGraphicsGLRegister")]


# ----------------------------------------------------------------------------------------------
# CudaGLBuffer with fakes
# ----------------------------------------------------------------------------------------------


def test_registers_once_with_flags_none(fake):
    buf = CudaGLBuffer(7, 64, label="acts")
    buf.write(FakeCudaTensor(16))
    buf.write(FakeCudaTensor(16), 16)
    registers = [c for c in fake.rt.calls if c[0] == "cudaGraphicsGLRegisterBuffer"]
    assert registers == [("cudaGraphicsGLRegisterBuffer", 7, RegisterFlags.cudaGraphicsRegisterFlagsNone)]
    assert buf.device == 0 and not buf.closed
    buf.close()


def test_write_maps_copies_unmaps_in_order_on_the_given_stream(fake):
    buf = CudaGLBuffer(3, 256)
    res = fake.rt.calls[0]
    tensor = FakeCudaTensor(64, ptr=0x1234_0000)
    buf.write(tensor, byte_offset=32, stream=FakeStream(0xABC))
    calls = after_register(fake.rt)
    assert [c[0] for c in calls] == [
        "cudaGraphicsMapResources",
        "cudaGraphicsResourceGetMappedPointer",
        "cudaMemcpyAsync",
        "cudaGraphicsUnmapResources",
    ]
    resource = buf._resource
    assert isinstance(resource, FakeResource) and resource.gl_name == res[1]
    # the resource object itself, count 1, on the stream's raw handle
    assert calls[0] == ("cudaGraphicsMapResources", 1, resource, 0xABC)
    assert calls[2] == (
        "cudaMemcpyAsync",
        MAPPED_BASE + 32,
        0x1234_0000,
        64,
        MemcpyKind.cudaMemcpyDeviceToDevice,
        0xABC,
    )
    assert calls[3] == ("cudaGraphicsUnmapResources", 1, resource, 0xABC)
    assert fake.rt.mapped == set()
    buf.close()


def test_write_defaults_to_the_current_torch_stream(fake):
    fake.tc.current = FakeStream(0x55)
    tensor = FakeCudaTensor(8)
    with CudaGLBuffer(3, 8) as buf:
        buf.write(tensor)
    streams = {c[-1] for c in fake.rt.calls if c[0] in ("cudaGraphicsMapResources", "cudaMemcpyAsync")}
    assert streams == {0x55}
    assert tensor.recorded == []  # the current stream needs no record_stream
    assert 0 in fake.tc.device_guards  # CUDA calls run under the buffer's device


def test_side_stream_records_the_tensor_on_it(fake):
    side = FakeStream(0x99)
    tensor = FakeCudaTensor(8)
    with CudaGLBuffer(3, 8) as buf:
        buf.write(tensor, stream=side)
        buf.write(tensor, stream=fake.tc.current)
    assert tensor.recorded == [side]


def test_write_many_uses_one_map_and_counts_stats(fake):
    parts = [
        (FakeCudaTensor(16, ptr=0x1000), 0),
        (FakeCudaTensor(32, ptr=0x2000), 16),
        (FakeCudaTensor(8), 48),
    ]
    with CudaGLBuffer(3, 64) as buf:
        buf.write_many(parts, stream=FakeStream(5))
    assert fake.rt.names() == [
        "cudaGraphicsGLRegisterBuffer",
        "cudaGraphicsMapResources",
        "cudaGraphicsResourceGetMappedPointer",
        "cudaMemcpyAsync",
        "cudaMemcpyAsync",
        "cudaMemcpyAsync",
        "cudaGraphicsUnmapResources",
        "cudaGraphicsUnregisterResource",
    ]
    dsts = [c[1] - MAPPED_BASE for c in fake.rt.calls if c[0] == "cudaMemcpyAsync"]
    assert dsts == [0, 16, 48]
    assert (STATS.maps, STATS.copies, STATS.bytes_device_to_device) == (1, 3, 56)
    STATS.reset()
    assert (STATS.maps, STATS.copies, STATS.bytes_device_to_device) == (0, 0, 0)


def test_empty_writes_map_nothing(fake):
    with CudaGLBuffer(3, 64) as buf:
        buf.write_many([])
        buf.write(FakeCudaTensor(0))
    assert "cudaGraphicsMapResources" not in fake.rt.names()
    assert STATS.maps == 0


@pytest.mark.parametrize(
    ("nbytes", "offset"),
    [(68, 0), (4, 64), (32, 40), (4, -4)],
)
def test_out_of_bounds_raises_value_error_before_mapping(fake, nbytes, offset):
    with CudaGLBuffer(3, 64) as buf, pytest.raises(ValueError):
        buf.write(FakeCudaTensor(nbytes), offset)
    assert "cudaGraphicsMapResources" not in fake.rt.names()


def test_exact_fit_at_the_end_is_allowed(fake):
    with CudaGLBuffer(3, 64) as buf:
        buf.write(FakeCudaTensor(16), 48)
    assert STATS.bytes_device_to_device == 16


def test_one_bad_part_copies_nothing(fake):
    with CudaGLBuffer(3, 64) as buf, pytest.raises(ValueError, match="part 1"):
        buf.write_many([(FakeCudaTensor(16), 0), (FakeCudaTensor(16, contiguous=False), 16)])
    assert "cudaMemcpyAsync" not in fake.rt.names()


def test_rejects_cpu_noncontiguous_foreign_device_and_non_tensors(fake):
    with CudaGLBuffer(3, 64) as buf:
        with pytest.raises(ValueError, match="CUDA tensor"):
            buf.write(torch.zeros(4))
        with pytest.raises(ValueError, match="contiguous"):
            buf.write(FakeCudaTensor(16, contiguous=False))
        with pytest.raises(ValueError, match="cuda:1"):
            buf.write(FakeCudaTensor(16, device=1))
        with pytest.raises(ValueError, match=r"torch\.Tensor"):
            buf.write(b"bytes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="pair"):
            buf.write_many([FakeCudaTensor(16)])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="cuda:1"):
            buf.write(FakeCudaTensor(16), stream=FakeStream(1, device=1))
        with pytest.raises(ValueError, match="Stream"):
            buf.write(FakeCudaTensor(16), stream=object())  # type: ignore[arg-type]
    assert "cudaMemcpyAsync" not in fake.rt.names()


@pytest.mark.parametrize(("gl_buffer", "nbytes"), [(0, 16), (3, 0), (3, -1), (-1, 8), (3, 1.5), (True, 8)])
def test_bad_constructor_arguments(fake, gl_buffer, nbytes):
    with pytest.raises(ValueError):
        CudaGLBuffer(gl_buffer, nbytes)
    assert fake.rt.calls == []


def test_no_cuda_in_torch_is_unavailable_not_a_crash(fake):
    fake.tc.available = False
    with pytest.raises(CudaInteropUnavailable, match="no CUDA device"):
        CudaGLBuffer(3, 64)
    assert fake.rt.calls == []


def test_driver_errors_carry_no_gl_hint(fake):
    fake.rt.fail["cudaGraphicsGLRegisterBuffer"] = Err.cudaErrorInsufficientDriver
    with pytest.raises(CudaInteropUnavailable) as info:
        CudaGLBuffer(3, 64)
    assert "cudaErrorInsufficientDriver" in str(info.value)
    assert "GL context" not in str(info.value)


def test_register_error_names_the_cuda_error_and_the_gl_context(fake):
    fake.rt.fail["cudaGraphicsGLRegisterBuffer"] = Err.cudaErrorOperatingSystem
    with pytest.raises(CudaInteropUnavailable) as info:
        CudaGLBuffer(3, 64, label="weights")
    message = str(info.value)
    assert "cudaGraphicsGLRegisterBuffer" in message
    assert "cudaErrorOperatingSystem" in message
    assert "weights" in message
    assert "Mesa / llvmpipe" in message  # which GL context was current
    assert info.value.cuda_error == "cudaErrorOperatingSystem"
    assert isinstance(info.value, GlnetError)


def test_copy_error_raises_and_still_unmaps(fake):
    with CudaGLBuffer(3, 64) as buf:
        fake.rt.fail["cudaMemcpyAsync"] = Err.cudaErrorInvalidValue
        with pytest.raises(CudaInteropUnavailable, match="cudaMemcpyAsync failed: cudaErrorInvalidValue"):
            buf.write(FakeCudaTensor(16))
        assert fake.rt.names()[-1] == "cudaGraphicsUnmapResources"
        assert fake.rt.mapped == set()
        assert STATS.copies == 0
        del fake.rt.fail["cudaMemcpyAsync"]
        buf.write(FakeCudaTensor(16))  # usable again: it was not left mapped
    assert STATS.copies == 1


def test_map_error_raises_without_unmapping(fake):
    fake.rt.fail["cudaGraphicsMapResources"] = Err.cudaErrorUnknown
    with CudaGLBuffer(3, 64) as buf, pytest.raises(CudaInteropUnavailable, match="cudaErrorUnknown"):
        buf.write(FakeCudaTensor(16))
    assert "cudaGraphicsUnmapResources" not in fake.rt.names()
    assert STATS.maps == 0


def test_unmap_error_raises(fake):
    fake.rt.fail["cudaGraphicsUnmapResources"] = Err.cudaErrorUnknown
    with CudaGLBuffer(3, 64) as buf:
        with pytest.raises(CudaInteropUnavailable, match="cudaGraphicsUnmapResources"):
            buf.write(FakeCudaTensor(16))
        del fake.rt.fail["cudaGraphicsUnmapResources"]


def test_runtime_error_of_old_bindings_becomes_unavailable(fake):
    fake.rt.raise_runtime.add("cudaGraphicsGLRegisterBuffer")
    with pytest.raises(CudaInteropUnavailable, match="libcuda"):
        CudaGLBuffer(3, 64)


def test_mapped_yields_the_device_pointer_and_unmaps_on_error(fake):
    with CudaGLBuffer(3, 64) as buf:
        with buf.mapped(FakeStream(0x42)) as ptr:
            assert ptr == MAPPED_BASE
            assert fake.rt.mapped
            with pytest.raises(RuntimeError, match="already mapped"), buf.mapped():
                pass
            with pytest.raises(RuntimeError, match="while mapped"):
                buf.close()
        assert fake.rt.mapped == set()
        with pytest.raises(KeyError), buf.mapped():
            raise KeyError("boom")
        assert fake.rt.calls[-1][0] == "cudaGraphicsUnmapResources"
        assert fake.rt.mapped == set()


def test_gl_buffer_smaller_than_declared_is_refused(fake):
    fake.rt.mapped_size = 32
    with CudaGLBuffer(3, 64) as buf, pytest.raises(ValueError, match="32 bytes"):
        buf.write(FakeCudaTensor(16))
    assert fake.rt.mapped == set()
    assert "cudaMemcpyAsync" not in fake.rt.names()


def test_close_is_idempotent_and_blocks_further_use(fake):
    buf = CudaGLBuffer(3, 64)
    buf.close()
    buf.close()
    assert fake.rt.names().count("cudaGraphicsUnregisterResource") == 1
    assert buf.closed
    with pytest.raises(RuntimeError, match="closed"):
        buf.write(FakeCudaTensor(16))
    with pytest.raises(RuntimeError, match="closed"), buf.mapped():
        pass


def test_context_manager_closes_even_on_error(fake):
    with pytest.raises(KeyError), CudaGLBuffer(3, 64):
        raise KeyError("boom")
    assert fake.rt.names().count("cudaGraphicsUnregisterResource") == 1


def test_failed_unregister_raises_once_then_close_is_a_no_op(fake):
    buf = CudaGLBuffer(3, 64)
    fake.rt.fail["cudaGraphicsUnregisterResource"] = Err.cudaErrorUnknown
    with pytest.raises(CudaInteropUnavailable, match="cudaGraphicsUnregisterResource"):
        buf.close()
    buf.close()
    assert fake.rt.names().count("cudaGraphicsUnregisterResource") == 1


def test_del_warns_but_never_calls_cuda(fake):
    buf = CudaGLBuffer(3, 64)
    before = list(fake.rt.calls)
    with pytest.warns(ResourceWarning, match="never closed"):
        del buf
        gc.collect()
    assert fake.rt.calls == before


def test_closed_buffer_is_silent_on_del(fake, recwarn):
    buf = CudaGLBuffer(3, 64)
    buf.close()
    del buf
    gc.collect()
    assert not [w for w in recwarn if issubclass(w.category, ResourceWarning)]


# ----------------------------------------------------------------------------------------------
# interop_status and the loader
# ----------------------------------------------------------------------------------------------


def test_status_says_why_not_here():
    ok, reason = interop_status()
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the reason text is checked on CPU-only machines")
    assert ok is False
    assert "CUDA" in reason and "\n" not in reason


def test_status_without_bindings(monkeypatch):
    monkeypatch.setattr(interop, "_torch_cuda", lambda: FakeTorchCuda(available=True))

    def missing():
        raise CudaInteropUnavailable("no module named cuda")

    monkeypatch.setattr(interop, "_cudart", missing)
    assert interop_status() == (False, "cuda-bindings is not installed (pip install glnet[cuda])")


def test_status_driver_too_old_for_bindings(monkeypatch):
    rt = FakeCudart()
    rt.fail["cudaGetDeviceCount"] = Err.cudaErrorInsufficientDriver
    monkeypatch.setattr(interop, "_torch_cuda", lambda: FakeTorchCuda(available=True))
    monkeypatch.setattr(interop, "_cudart", lambda: rt)
    ok, reason = interop_status()
    assert not ok and "cudaErrorInsufficientDriver" in reason


def test_status_needs_an_nvidia_gl_driver(monkeypatch):
    rt = FakeCudart()
    monkeypatch.setattr(interop, "_torch_cuda", lambda: FakeTorchCuda(available=True))
    monkeypatch.setattr(interop, "_cudart", lambda: rt)
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    monkeypatch.delenv("LIBGL_ALWAYS_SOFTWARE", raising=False)
    monkeypatch.setattr(interop, "_nvidia_gl_library", lambda: None)
    ok, reason = interop_status()
    if sys.platform.startswith("linux"):
        assert not ok and "NVIDIA" in reason
    monkeypatch.setattr(interop, "_nvidia_gl_library", lambda: "libEGL_nvidia.so.0")
    assert interop_status() == (True, "cuda-gl interop")
    monkeypatch.setenv("PYOPENGL_PLATFORM", "osmesa")
    ok, reason = interop_status()
    assert not ok and "osmesa" in reason


def test_status_never_touches_gl(monkeypatch):
    def boom():
        raise AssertionError("interop_status touched GL")

    monkeypatch.setattr(interop, "_gl_vendor", boom)
    interop_status()


@pytest.fixture
def fresh_loader():
    interop._load_cudart.cache_clear()
    yield
    interop._load_cudart.cache_clear()


def test_loader_falls_back_to_the_old_cuda_cudart_layout(monkeypatch, fresh_loader):
    old = types.ModuleType("cuda.cudart")
    pkg = types.ModuleType("cuda")
    pkg.cudart = old  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cuda", pkg)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)  # None in sys.modules: ImportError
    monkeypatch.setitem(sys.modules, "cuda.cudart", old)
    assert interop._cudart() is old


def test_loader_without_any_bindings_raises_unavailable(monkeypatch, fresh_loader):
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    with pytest.raises(CudaInteropUnavailable, match=r"glnet\[cuda\]"):
        interop._cudart()
    with pytest.raises(CudaInteropUnavailable):
        CudaGLBuffer(3, 64)


def test_module_imports_no_cuda_torch_or_gl():
    code = (
        "import sys, glnet\n"
        "before = set(sys.modules)\n"
        "import glnet.gpu.interop\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "bad = new & {'cuda', 'torch', 'OpenGL', 'vispy'}\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_real_bindings_api_surface():
    """Every runtime name the module calls exists in the installed cuda-bindings (no GPU needed)."""
    try:
        rt = interop._cudart()
    except CudaInteropUnavailable:
        pytest.skip("cuda-bindings is not installed (pip install glnet[cuda])")
    for name in (
        "cudaGetDeviceCount",
        "cudaGraphicsGLRegisterBuffer",
        "cudaGraphicsMapResources",
        "cudaGraphicsResourceGetMappedPointer",
        "cudaMemcpyAsync",
        "cudaGraphicsUnmapResources",
        "cudaGraphicsUnregisterResource",
        "cudaGetErrorName",
        "cudaGetErrorString",
    ):
        assert callable(getattr(rt, name)), name
    assert int(rt.cudaError_t.cudaSuccess) == 0
    assert int(rt.cudaGraphicsRegisterFlags.cudaGraphicsRegisterFlagsNone) == 0
    assert int(rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice) == 3
    if not torch.cuda.is_available():
        # No driver: the real bindings answer with an error code (or, in old releases, raise),
        # which must come out as CudaInteropUnavailable naming the error.
        with pytest.raises(CudaInteropUnavailable, match="cudaGetDeviceCount failed"):
            interop._call(rt, "probe", "cudaGetDeviceCount")
        assert interop_status()[0] is False


# ----------------------------------------------------------------------------------------------
# The real thing: NVIDIA GPU, glnet's own EGL context and buffers, cuda-bindings
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cuda_ctx():
    """glnet's offscreen context on the GPU of torch's current CUDA device, or a skip saying why not."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device: torch.cuda.is_available() is False")
    ok, reason = interop_status()
    if not ok:
        pytest.skip(f"CUDA-GL interop unavailable: {reason}")
    from glnet.errors import GLUnavailableError
    from glnet.gpu.context import GLContext

    try:
        ctx = GLContext.offscreen(cuda_device=torch.cuda.current_device())
    except GLUnavailableError as exc:
        pytest.skip(f"no EGL OpenGL context: {exc}")
    yield ctx
    ctx.close()


@pytest.mark.cuda
def test_real_buffer_write_reads_back_through_gl(cuda_ctx):
    import numpy as np

    from glnet.gpu.buffer import Buffer

    n = 4096
    a = torch.arange(n, dtype=torch.float32, device="cuda") * 0.5
    b = -torch.arange(n, dtype=torch.float32, device="cuda")
    c = torch.full((n,), 7.25, dtype=torch.float32, device="cuda")
    cuda_ctx.make_current()
    sentinel = np.full(3 * n, 42.0, dtype=np.float32)
    buf = Buffer(cuda_ctx, sentinel.nbytes, data=sentinel, label="interop test")
    try:
        STATS.reset()
        with CudaGLBuffer(buf.glo, buf.nbytes, label="test") as shared:
            shared.write(a, byte_offset=n * 4)  # the middle third; the rest must survive
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            shared.write_many([(b[: n // 2], 0), (c[: n // 2], 2 * n * 4)], stream=side)
            torch.cuda.current_stream().wait_stream(side)
            assert (STATS.maps, STATS.copies) == (2, 3)
            assert STATS.bytes_device_to_device == n * 4 + 2 * (n // 2) * 4
            # no torch.cuda.synchronize(): unmap orders the copies before later GL commands
            out = buf.read(0, buf.nbytes, np.float32)
    finally:
        buf.delete()
    expected = sentinel.copy()
    expected[n : 2 * n] = a.cpu().numpy()
    expected[: n // 2] = b[: n // 2].cpu().numpy()
    expected[2 * n : 2 * n + n // 2] = c[: n // 2].cpu().numpy()
    np.testing.assert_array_equal(out, expected)


@pytest.mark.cuda
def test_real_live_upload_copies_a_cuda_slot_into_the_cloud(cuda_ctx, tiny_net):
    """The path a live viewer takes: a CUDA slot, choose_upload picks interop, present() copies into the
    cloud's values and channel-means buffers, and GL reads back exactly the slot's numbers."""
    import time

    import numpy as np

    from glnet.capture import capture
    from glnet.gpu.cloud import NeuronCloud, layer_offsets
    from glnet.layout import layout_for
    from glnet.live.handover import Slots
    from glnet.live.upload import PATH_INTEROP, choose_upload

    cuda_ctx.make_current()
    layout = layout_for(capture(tiny_net, torch.randn(1, 3, 16, 16)), weights=False)
    counts = [s.count for s in layout.slabs]
    offsets, nbytes = layer_offsets(counts)  # each layer's byte offset in a slot
    device = torch.device("cuda", torch.cuda.current_device())
    slots = Slots(1, nbytes // 4, device)
    flat = torch.randn(nbytes // 4, device=device)
    slots.write(0, flat)
    cloud = NeuronCloud(cuda_ctx, layout)
    up, why = choose_upload(cloud, slots, offsets, counts, prefer="interop")
    try:
        assert up.name == PATH_INTEROP, why
        up.present(0)
        deadline = time.monotonic() + 10
        while not up.reclaim() and time.monotonic() < deadline:
            time.sleep(0.01)
        host = flat.cpu().numpy()
        for k, s in enumerate(layout.slabs):
            mine = host[offsets[k] // 4 : offsets[k] // 4 + s.count]
            np.testing.assert_array_equal(cloud.read_values(k), mine)
            agg, size = cloud.aggregate_range(k)
            means = cloud.aggregates.read(agg, size, np.float32)
            np.testing.assert_allclose(means, mine.reshape(s.grid[0], -1).mean(axis=1), rtol=1e-5, atol=1e-6)
        assert up.bytes_device_to_host == 0
    finally:
        up.close()
        cloud.close()
