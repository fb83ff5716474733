"""Live training view: per-step probe capture, staging hand-over, update paths (GL upload, CUDA interop with
fakes and for real), a trainer that never waits for the renderer, and NaN naming.

Everything runs on tiny models with 16x16 inputs; the GL tests use Mesa's llvmpipe through EGL.
"""

from __future__ import annotations

import contextlib
import ctypes
import time
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glnet.app import layout_for
from glnet.capture import capture
from glnet.colormap import robust_range
from glnet.errors import NonFiniteError
from glnet.gpu import interop
from glnet.gpu.cloud import channel_means, layer_offsets
from glnet.live import (
    PATH_INTEROP,
    PATH_MAPPED,
    FrameMeta,
    Live,
    LiveStats,
    ProbeTap,
    RangeTable,
    SlotRing,
    _InteropPath,
)


def _batch(n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 16, 16, generator=g)
    return x, torch.randint(0, 5, (n,), generator=g), torch.randn(1, 3, 16, 16, generator=g)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    out = model(x)
    assert out.shape[0] == len(x)  # the probe rode along and was stripped again
    loss = F.cross_entropy(out, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


# ----------------------------------------------------------------------------------------------------------
# Capture
# ----------------------------------------------------------------------------------------------------------


def test_tap_copies_the_probe_row_like_capture_does(tiny_net):
    """The hooks' per-layer copies equal glnet.capture on the same batch (probe last), in-place ReLU and all;
    the probe rides along without changing what the model returns; hooks come off."""
    model = tiny_net.train()
    x, _, probe = _batch()
    trace = capture(model, probe)
    ref = capture(model, torch.cat([x, probe]), sample=-1, eval_mode=False)  # train mode: batch statistics
    tap = ProbeTap(model, trace.layers, ride_along=probe).install()
    try:
        tap.armed = True
        out = model(x)
        assert out.shape == (len(x), 5) and tap.captures == 1 and all(tap.filled)
        for r, v, want in zip(trace.layers, tap.views, ref.layers, strict=True):
            assert r.name == want.name
            torch.testing.assert_close(v, want.value, rtol=1e-5, atol=1e-6)
        flat_before = tap.flat.clone()
        model(x)  # not armed: nothing copied, the batch is not extended
        assert tap.captures == 1 and torch.equal(tap.flat, flat_before)
    finally:
        tap.remove()
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.gl
def test_probe_gradients_are_those_of_its_own_loss(tiny_net):
    """With a target, the probe's gradient rows are what a batch of B+1 (probe last, its loss weighted as one
    of B samples of a mean) gives it."""
    model = tiny_net.train()
    x, y, probe = _batch()
    target = 3
    reference = {}

    ref_model = type(model)()
    ref_model.load_state_dict(model.state_dict())
    ref_model.train()
    keep = {}
    ref_model.fc.register_forward_hook(lambda m, a, o: keep.__setitem__("fc", o))
    out = ref_model(torch.cat([x, probe]))
    for t in keep.values():
        t.retain_grad()
    loss = F.cross_entropy(out[:-1], y) + F.cross_entropy(out[-1:], torch.tensor([target])) / len(x)
    loss.backward()
    reference["fc"] = keep["fc"].grad[-1]

    with Live(model, probe, target=target, mode="gradients", headless=True, render="caller") as viz:
        out = model(x)
        F.cross_entropy(out, y).backward()
        tap = viz.tap
        fc = next(i for i, r in enumerate(tap.layers) if r.name == "fc")
        assert tap.grad_filled[fc]
        torch.testing.assert_close(tap.grad_views[fc].reshape(-1), reference["fc"], rtol=1e-5, atol=1e-7)
        # parameter gradients match too: the probe is trained on like one more sample
        torch.testing.assert_close(model.fc.weight.grad, ref_model.fc.weight.grad, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------
# Ranges and the slot ring (no GL)
# ----------------------------------------------------------------------------------------------------------


def test_range_table_agrees_with_robust_range():
    g = torch.Generator().manual_seed(0)
    layers = [
        torch.rand(4, 8, 8, generator=g) * 3,
        torch.randn(10, 1, 1, generator=g),
        torch.randn(2, 30, 30, generator=g),
    ]
    layers[1][3] = float("nan")
    layers[2][0, 0, :4] = float("inf")
    counts = [v.numel() for v in layers]
    offsets, nbytes = layer_offsets(counts)
    flat = torch.zeros(nbytes // 4)
    for v, off in zip(layers, offsets, strict=True):
        flat[off // 4 : off // 4 + v.numel()] = v.reshape(-1)
    table = RangeTable(counts, offsets, "cpu", samples=4096, smoothing=0.0)
    got = table.ranges(table.measure(flat).numpy())
    for v, r in zip(layers, got, strict=True):
        want = robust_range(v)
        assert r.diverging == want.diverging and r.nonfinite == want.nonfinite
        span = want.hi - want.lo
        assert abs(r.lo - want.lo) < 0.05 * span and abs(r.hi - want.hi) < 0.05 * span
    smooth = RangeTable(counts, offsets, "cpu", smoothing=0.5)
    first = smooth.ranges(smooth.measure(flat).numpy())
    second = smooth.ranges(smooth.measure(flat * 3).numpy())
    assert first[0].hi < second[0].hi < 3 * first[0].hi  # moves towards the new range, not all the way


def test_slot_ring_latest_wins_and_queue_keeps_order():
    ring = SlotRing(3, "latest")
    a = ring.acquire()
    ring.commit(a, FrameMeta(1))
    b = ring.acquire()
    ring.commit(b, FrameMeta(2))  # replaces the undrawn frame 1
    assert ring.pending() == 1 and ring.dropped == 1
    i = ring.take()
    assert ring.meta[i].step == 2
    ring.release(i)

    q = SlotRing(3, "queue")
    for k in range(1, 5):
        s = q.acquire()
        if s is not None:
            q.commit(s, FrameMeta(k))
    assert q.pending() == 3 and q.dropped == 1  # the budget holds three; the fourth is dropped and counted
    steps = []
    while (s := q.take()) is not None:
        steps.append(q.meta[s].step)
        q.release(s)
    assert steps == [1, 2, 3]
    assert q.take(lambda i: False) is None


# ----------------------------------------------------------------------------------------------------------
# The host upload path on GL: what the GL buffer holds is what the hooks captured
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.gl
@pytest.mark.parametrize("prefer", ["auto", "host"])
def test_upload_path_gl_buffer_equals_captured_tensors(gl_ctx, tiny_net, prefer):
    model = tiny_net.train()
    x, y, probe = _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Live(model, probe, headless=True, render="caller", size=(96, 64), update_path=prefer) as viz:
        assert viz.path.name == (PATH_MAPPED if prefer == "auto" else "host upload (buffer sub-data)")
        for step in range(1, 4):
            ref = capture(model, torch.cat([x, probe]), sample=-1, eval_mode=False)
            loss = _train_step(model, opt, x, y)
            viz.step(loss=loss)
            meta = viz.render_once()
            assert meta is not None and meta.step == step and meta.mode == "activations"
            cloud = viz.vis.cloud
            for i, r in enumerate(ref.layers):
                want = r.value.numpy().ravel()
                np.testing.assert_allclose(cloud.read_values(i), want, rtol=1e-5, atol=1e-6)
                off, n = cloud.aggregate_range(i)
                means = cloud.aggregates.read(off, n, np.float32)
                np.testing.assert_allclose(means, channel_means(r.value).numpy(), rtol=1e-5, atol=1e-6)
                want = robust_range(r.value)
                assert cloud.layers[i].range.diverging == want.diverging
        assert viz.stats.frames == 3 and viz.stats.bytes_device_to_host == 0
        assert viz.stats.bytes_per_update == viz.tap.nbytes
    assert not model._forward_hooks and not model._forward_pre_hooks


@pytest.mark.gl
def test_weights_mode_shows_relative_filter_change(gl_ctx, tiny_net):
    model = tiny_net.train()
    x, y, probe = _batch()
    w0 = model.conv2.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    with Live(model, probe, headless=True, render="caller", size=(96, 64), mode="weights") as viz:
        viz.step(loss=_train_step(model, opt, x, y))
        assert viz.render_once().mode == "weights"
        i = next(k for k, r in enumerate(viz.trace.layers) if r.name == "conv2")
        got = viz.vis.cloud.read_values(i).reshape(viz.trace.layers[i].grid)
        want = (model.conv2.weight.detach() - w0).flatten(1).norm(dim=1) / w0.flatten(1).norm(dim=1)
        np.testing.assert_allclose(got[:, 0, 0], want.numpy(), rtol=1e-5)
        assert np.all(got == got[:, :1, :1])  # one value per output channel
        viz.mode = "activations"
        viz.step(loss=_train_step(model, opt, x, y))
        assert viz.render_once().mode == "activations"


# ----------------------------------------------------------------------------------------------------------
# The trainer never waits for the renderer
# ----------------------------------------------------------------------------------------------------------


class _SlowLive(Live):
    delay = 0.4

    def render_once(self):  # a renderer far slower than training
        time.sleep(self.delay)
        return super().render_once()


def _run_steps(model: nn.Module, n: int, viz: Live | None) -> float:
    x, y, _ = _batch(8)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    t0 = time.perf_counter()
    for _ in range(n):
        loss = _train_step(model, opt, x, y)
        if viz is not None:
            viz.step(loss=loss)
    return time.perf_counter() - t0


@pytest.mark.gl
def test_slow_renderer_does_not_slow_the_trainer(tiny_net):
    model = tiny_net.train()
    _, _, probe = _batch()
    _run_steps(model, 3, None)  # warm up
    n = 30
    alone = _run_steps(model, n, None)
    with _SlowLive(model, probe, headless=True, size=(64, 48)) as viz:
        with_view = _run_steps(model, n, viz)
        steps_done = viz.stats.steps
    assert steps_done == n
    # 30 frames at 0.4 s would take 12 s if the trainer waited; it pays only for its copies
    assert with_view < 2.0 * alone + 1.0, (with_view, alone)
    assert viz.stats.frames < n and viz.stats.dropped > 0  # latest wins: undrawn steps were dropped


@pytest.mark.gl
def test_recording_queues_a_frame_for_every_step_without_blocking(tiny_net, tmp_path):
    from glnet.record import read_video_frames

    model = tiny_net.train()
    _, _, probe = _batch()
    n = 8
    video = tmp_path / "frames"  # a PNG folder: no ffmpeg needed
    with _SlowLive(model, probe, headless=True, size=(64, 48), record=video) as viz:
        viz.delay = 0.25
        t = _run_steps(model, n, viz)
        assert t < 0.25 * n  # the trainer finished before the renderer drew half of it
    assert viz.stats.frames == n and viz.stats.dropped == 0
    assert len(list(read_video_frames(video))) == n


# ----------------------------------------------------------------------------------------------------------
# Non-finite values
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.gl
def test_nan_loss_stops_naming_the_first_layer(tiny_net):
    model = tiny_net.train()
    x, y, probe = _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(NonFiniteError) as info:
        with Live(model, probe, headless=True, size=(64, 48)) as viz:
            viz.step(loss=_train_step(model, opt, x, y))
            with torch.no_grad():
                model.conv2.weight[0, 0, 0, 0] = float("nan")
            viz.step(loss=_train_step(model, opt, x, y))
    assert info.value.layer == "conv2" and info.value.step == 2
    assert "conv2" in str(info.value) and "nan" in str(info.value).lower()
    assert viz.stats.nonfinite == [{"step": 2, "loss": "nan", "layer": "conv2"}]
    assert not model._forward_pre_hooks  # the hooks came off on the way out


@pytest.mark.gl
def test_keep_going_shows_the_nan_and_goes_on(tiny_net):
    model = tiny_net.train()
    x, _, probe = _batch()
    with Live(model, probe, headless=True, size=(64, 48), keep_going=True, render="caller") as viz:
        model(x)
        viz.step(loss=float("inf"))
        meta = viz.render_once()
        assert "inf at step 1" in meta.note and viz.stats.steps == 1
        assert any("NaN/Inf" in line for line in viz._hud_lines(viz.camera, meta))


# ----------------------------------------------------------------------------------------------------------
# CUDA-GL interop path, with fakes: device-to-device only, nothing through the host
# ----------------------------------------------------------------------------------------------------------


class FakeCudaTensor(torch.Tensor):
    """A CPU tensor that says it is on CUDA, and records every read back to the host."""

    host_reads: ClassVar[list[tuple[str, int]]] = []

    @property
    def is_cuda(self) -> bool:  # type: ignore[override]
        return True

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in ("cpu", "numpy", "tolist", "item") or (name == "to" and "cpu" in map(str, args[1:])):
            cls.host_reads.append((name, args[0].numel()))
        return super().__torch_function__(func, types, args, kwargs or {})


class FakeRuntime:
    """The cuda-bindings calls CudaGLBuffer makes; the copies really happen, into numpy "GL buffers"."""

    class cudaGraphicsRegisterFlags:  # noqa: N801 - the real enum's names
        cudaGraphicsRegisterFlagsNone = 0  # noqa: N815

    class cudaMemcpyKind:  # noqa: N801
        cudaMemcpyHostToDevice = 1  # noqa: N815
        cudaMemcpyDeviceToHost = 2  # noqa: N815
        cudaMemcpyDeviceToDevice = 3  # noqa: N815

    def __init__(self, sizes: dict[int, int]) -> None:
        self.gl = {glo: np.zeros(n, np.uint8) for glo, n in sizes.items()}
        self.calls: list[tuple[Any, ...]] = []

    def cudaGraphicsGLRegisterBuffer(self, glo, flags):
        self.calls.append(("register", glo))
        return (0, SimpleNamespace(glo=glo))

    def cudaGraphicsMapResources(self, count, res, stream):
        self.calls.append(("map", res.glo, stream))
        return (0,)

    def cudaGraphicsResourceGetMappedPointer(self, res):
        arr = self.gl[res.glo]
        return (0, arr.ctypes.data, arr.nbytes)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        self.calls.append(("memcpy", kind, n, stream))
        ctypes.memmove(dst, src, n)
        return (0,)

    def cudaGraphicsUnmapResources(self, count, res, stream):
        self.calls.append(("unmap", res.glo, stream))
        return (0,)

    def cudaGraphicsUnregisterResource(self, res):
        self.calls.append(("unregister", res.glo))
        return (0,)


class FakeStream:
    def __init__(self, handle: int) -> None:
        self.cuda_stream = handle
        self.device = SimpleNamespace(index=0, type="cuda")
        self.waited: list[Any] = []

    def wait_event(self, ev: Any) -> None:
        self.waited.append(ev)


class FakeEvent:
    def record(self, stream: Any = None) -> None:
        self.stream = stream

    def query(self) -> bool:
        return True


class FakeTorchCuda:
    """torch.cuda as CudaGLBuffer and the interop path use it."""

    Event = FakeEvent

    def __init__(self) -> None:
        self.current = FakeStream(0x10)

    def is_available(self) -> bool:
        return True

    def current_device(self) -> int:
        return 0

    def current_stream(self, device: Any = None) -> FakeStream:
        return self.current

    def device(self, index: int):
        return contextlib.nullcontext()

    def Stream(self, device: Any = None) -> FakeStream:
        return FakeStream(0x77)

    @contextlib.contextmanager
    def stream(self, s: FakeStream):
        saved, self.current = self.current, s
        try:
            yield
        finally:
            self.current = saved


class _FakeDevicePath(_InteropPath):
    def _alloc(self, n: int) -> torch.Tensor:
        return torch.zeros(n).as_subclass(FakeCudaTensor)


def test_cuda_interop_path_copies_device_to_device_only(tiny_net, monkeypatch):
    model = tiny_net.train()
    x, _, probe = _batch()
    trace = capture(model, probe)
    layout = layout_for(trace, weights=False)
    offsets, nbytes = layer_offsets(layout)
    agg_offsets, agg_bytes = layer_offsets([s.grid[0] for s in layout.slabs])
    applied: list[Any] = []
    cloud = SimpleNamespace(
        values=SimpleNamespace(glo=11, nbytes=nbytes),
        aggregates=SimpleNamespace(glo=12, nbytes=agg_bytes),
        layers=[SimpleNamespace(nbytes=s.count * 4) for s in layout.slabs],
        forced=set(),
        offsets=offsets,
        agg_offsets=agg_offsets,
        layout=layout,
        apply_ranges=applied.append,
    )
    rt, tc = FakeRuntime({11: nbytes, 12: agg_bytes}), FakeTorchCuda()
    monkeypatch.setattr(interop, "_cudart", lambda: rt)
    monkeypatch.setattr(interop, "_torch_cuda", lambda: tc)
    interop.STATS.reset()
    FakeCudaTensor.host_reads = []

    tap = ProbeTap(model, trace.layers, ride_along=probe).install()
    try:
        tap.armed = True
        model(x)
    finally:
        tap.remove()
    stats = LiveStats()
    counts = [r.neurons for r in trace.layers]
    path = _FakeDevicePath(
        cloud, tap.offsets, counts, tap.nbytes, 3, "latest", stats, device=torch.device("cpu"), cuda=tc
    )
    assert path.name == PATH_INTEROP and [c[0] for c in rt.calls] == ["register", "register"]
    assert path.publish(tap.flat.as_subclass(FakeCudaTensor), FrameMeta(1))
    meta = path.present()
    path.close()

    assert meta.step == 1 and len(applied) == 1
    np.testing.assert_array_equal(rt.gl[11].view(np.float32), tap.flat.numpy()[: nbytes // 4])
    for i, v in enumerate(tap.views):
        c = v.shape[0]
        got = rt.gl[12].view(np.float32)[agg_offsets[i] // 4 : agg_offsets[i] // 4 + c]
        np.testing.assert_allclose(got, channel_means(v).numpy(), rtol=1e-6)
    kinds = {c[1] for c in rt.calls if c[0] == "memcpy"}
    assert kinds == {FakeRuntime.cudaMemcpyKind.cudaMemcpyDeviceToDevice}
    # each buffer: map, copy, unmap on the render thread's own stream (which waited for the trainer's copy)
    ops = [c[0] for c in rt.calls if c[0] != "register"]
    assert ops == ["map", "memcpy", "unmap", "map", "memcpy", "unmap", "unregister", "unregister"]
    assert {c[-1] for c in rt.calls if c[0] in ("map", "memcpy", "unmap")} == {0x77}
    assert path._stream.waited, "the render stream must wait for the trainer's copy event"
    assert interop.STATS.bytes_device_to_device == sum(n for _, _, n in path.copies) + agg_bytes
    assert len(path.copies) == 1  # one copy of the whole frame
    # nothing but the 3 range numbers a layer came back to the host
    assert stats.bytes_device_to_host == 0
    assert FakeCudaTensor.host_reads and all(n == 3 * len(counts) for _, n in FakeCudaTensor.host_reads)
    assert stats.range_bytes_to_host == 3 * 4 * len(counts)


# ----------------------------------------------------------------------------------------------------------
# The real thing on a GPU
# ----------------------------------------------------------------------------------------------------------


def _interop_ok() -> tuple[bool, str]:
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    return interop.interop_status()


@pytest.mark.cuda
@pytest.mark.gl
def test_cuda_interop_gl_buffer_equals_captured_tensors(tiny_net):
    ok, why = _interop_ok()
    if not ok:
        pytest.skip(f"CUDA-GL interop unavailable: {why}")
    model = tiny_net.cuda().train()
    x, y, probe = (t.cuda() for t in _batch())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Live(model, probe, headless=True, render="caller", size=(96, 64)) as viz:
        assert viz.path.name == PATH_INTEROP
        interop.STATS.reset()
        ref = capture(model, torch.cat([x, probe]), sample=-1, eval_mode=False)
        viz.step(loss=_train_step(model, opt, x, y))
        torch.cuda.synchronize()
        while viz.render_once() is None:
            time.sleep(0.01)
        for i, r in enumerate(ref.layers):
            want = r.value.cpu().numpy().ravel()
            np.testing.assert_allclose(viz.vis.cloud.read_values(i), want, rtol=1e-4, atol=1e-5)
        assert viz.stats.bytes_device_to_host == 0 and interop.STATS.copies >= 2


@pytest.mark.gl
def test_interop_asked_for_without_cuda_is_a_named_error_and_leaves_no_hooks(tiny_net):
    from glnet.errors import CudaInteropUnavailable

    model = tiny_net.train()
    _, _, probe = _batch()
    viz = Live(model, probe, headless=True, render="caller", size=(64, 48), update_path="interop")
    with pytest.raises(CudaInteropUnavailable, match="CUDA device"):
        viz.start()
    viz.close()
    assert not model._forward_pre_hooks and all(not m._forward_hooks for m in model.modules())
