"""Live training, in this process: the probe tap, display ranges, the hand-over's bookkeeping, and the viewer
side's upload paths into GL (host uploads on Mesa, CUDA-GL interop with fakes and, on a GPU, for real).

The viewer process itself (spawned, killed, closed) is tested in test_viewer_process.py. Tiny models, 16x16.
"""

from __future__ import annotations

import contextlib
import ctypes
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glnet.app import Visualization
from glnet.capture import capture
from glnet.colormap import robust_range
from glnet.errors import MappingError
from glnet.gpu import interop
from glnet.gpu.cloud import channel_means, layer_offsets
from glnet.layout import layout_for
from glnet.live import PATH_INTEROP, PATH_MAPPED, PATH_SUBDATA, FrameMeta, Handover, Live, ProbeTap, Slots
from glnet.live.ranges import RangeTable
from glnet.live.upload import InteropUpload, choose_upload
from glnet.live.view import LiveView


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

    with Live(model, probe, target=target, mode="gradients", headless=True, size=(64, 48)) as viz:
        out = model(x)
        F.cross_entropy(out, y).backward()
        tap = viz.tap
        fc = next(i for i, r in enumerate(tap.layers) if r.name == "fc")
        assert tap.grad_filled[fc]
        torch.testing.assert_close(tap.grad_views[fc].reshape(-1), reference["fc"], rtol=1e-5, atol=1e-7)
        # parameter gradients match too: the probe is trained on like one more sample
        torch.testing.assert_close(model.fc.weight.grad, ref_model.fc.weight.grad, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------
# Ranges and the hand-over's bookkeeping (no GL)
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


def test_handover_never_waits_and_counts_what_it_drops():
    h = Handover(Slots(3, 8, torch.device("cpu")), "latest")
    got = [h.acquire() for _ in range(3)]
    assert sorted(got) == [0, 1, 2] and h.acquire() is None and h.dropped == 1  # none free: dropped
    h.commit(got[0])
    assert h.published == 1 and h.last == got[0] and h.in_flight == 3
    h.release(got[1])
    h.release(got[1])  # a second release of the same slot changes nothing
    assert h.in_flight == 2 and h.acquire() == got[1] and h.acquire() is None
    with pytest.raises(ValueError):
        Handover(Slots(1, 8, torch.device("cpu")), "oldest")


def test_cpu_slots_live_in_shared_memory():
    s = Slots(3, 100, torch.device("cpu"))
    assert s.data.is_shared() and s.data.shape == (3, 100) and s.events is None and s.nbytes == 400
    src = torch.arange(100, dtype=torch.float32)
    s.write(1, src)
    assert torch.equal(s.data[1], src) and not s.data[0].any()


# ----------------------------------------------------------------------------------------------------------
# The viewer's upload paths on GL: what the GL buffer holds is what the hooks captured
# ----------------------------------------------------------------------------------------------------------


def _tap_and_slots(model: nn.Module, probe: torch.Tensor, n: int = 3) -> tuple[ProbeTap, Slots, Any]:
    trace = capture(model, probe)
    tap = ProbeTap(model, trace.layers, ride_along=probe).install()
    return tap, Slots(n, tap.flat.numel(), torch.device("cpu")), trace


@pytest.mark.gl
@pytest.mark.parametrize("prefer", ["auto", "host"])
def test_upload_gl_buffer_equals_captured_tensors(gl, tiny_net, prefer):
    model = tiny_net.train()
    x, y, probe = _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tap, slots, trace = _tap_and_slots(model, probe)
    vis = Visualization(gl, trace)
    view = LiveView(vis, slots, tap.offsets, [r.neurons for r in trace.layers], update_path=prefer)
    try:
        assert view.upload.name == (PATH_MAPPED if prefer == "auto" else PATH_SUBDATA) and view.why == ""
        for step in range(1, 4):
            ref = capture(model, torch.cat([x, probe]), sample=-1, eval_mode=False)
            tap.armed = True
            _train_step(model, opt, x, y)
            i = step % slots.n
            slots.write(i, tap.flat)
            meta = FrameMeta(step, losses=[0.5])
            view.absorb(meta)
            view.present(i, meta)
            assert view.upload.reclaim() == [i]  # the slot is free again once its bytes are in GL
            cloud = vis.cloud
            for k, r in enumerate(ref.layers):
                np.testing.assert_allclose(
                    cloud.read_values(k), r.value.numpy().ravel(), rtol=1e-5, atol=1e-6
                )
                off, n = cloud.aggregate_range(k)
                means = cloud.aggregates.read(off, n, np.float32)
                np.testing.assert_allclose(means, channel_means(r.value).numpy(), rtol=1e-5, atol=1e-6)
                assert cloud.layers[k].range.diverging == robust_range(r.value).diverging
        assert view.frames == 3 and view.loss == [0.5] * 3
        assert view.upload.bytes_device_to_host == 0
    finally:
        view.close()
        vis.close()
        tap.remove()


@pytest.mark.gl
def test_a_failed_persistent_mapping_falls_back_to_sub_data(gl, tiny_net, monkeypatch):
    """The fallback is reachable: a mapping that fails gives the sub-data path and says why."""
    from glnet.gpu import buffer

    def refuse(*_a: Any, **_k: Any) -> None:
        raise MappingError("persistent mapping of a 7168-byte buffer failed (GL error 0x0505)")

    monkeypatch.setattr(buffer, "MappedBuffer", refuse)
    _, _, probe = _batch()
    tap, slots, trace = _tap_and_slots(tiny_net, probe)
    vis = Visualization(gl, trace)
    try:
        up, why = choose_upload(vis.cloud, slots, tap.offsets, [r.neurons for r in trace.layers])
        assert up.name == PATH_SUBDATA and "persistent mapping" in why and "0x0505" in why
        up.close()
    finally:
        vis.close()
        tap.remove()


@pytest.mark.gl
def test_panel_weights_reach_the_weight_textures(gl, tiny_net):
    """The trainer writes the shared panel buffer; the viewer's panels show the weights, or in weights mode
    their change since the start."""
    from glnet.live.handover import PanelWeights

    _, _, probe = _batch()
    tap, slots, trace = _tap_and_slots(tiny_net, probe)
    vis = Visualization(gl, trace)
    view = LiveView(vis, slots, tap.offsets, [r.neurons for r in trace.layers])
    try:
        k = next(i for i, r in enumerate(trace.layers) if r.name == "conv2")
        assert k in vis.cloud.weights
        panels = PanelWeights({k: tiny_net.conv2.weight}, torch.device("cpu"))
        assert panels.data.is_shared()
        w0 = tiny_net.conv2.weight.detach().clone()
        with torch.no_grad():
            tiny_net.conv2.weight.mul_(2.0)
        panels.write({k: tiny_net.conv2.weight})
        for mode, want in (("activations", 2 * w0), ("weights", w0)):  # 2 w0 - w0
            view.set_weights(mode, panels.read())
            tiled, atlas, _ = vis.cloud.weights[k]
            np.testing.assert_allclose(atlas.unpack(tiled.read()), want.numpy(), rtol=1e-6, atol=1e-7)
    finally:
        view.close()
        vis.close()
        tap.remove()


@pytest.mark.gl
def test_nonfinite_note_reaches_the_hud(gl, tiny_net):
    _, _, probe = _batch()
    tap, slots, trace = _tap_and_slots(tiny_net, probe)
    vis = Visualization(gl, trace)
    view = LiveView(vis, slots, tap.offsets, [r.neurons for r in trace.layers], title="tiny", total_steps=9)
    try:
        meta = FrameMeta(4, loss=float("inf"), note="loss inf at step 4: first non-finite values in 'conv2'")
        view.absorb(meta)
        view.present(0, meta)
        from glnet.camera import camera_from_spec

        lines = view.hud_lines(camera_from_spec(None, vis.layout))
        assert lines[0].startswith("tiny  ·  step 4/9  ·  loss inf")
        assert lines[-1] == "NaN/Inf: " + meta.note
    finally:
        view.close()
        vis.close()
        tap.remove()


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


def test_cuda_interop_upload_copies_device_to_device_only(tiny_net, monkeypatch):
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
    counts = [r.neurons for r in trace.layers]
    trainer_event = FakeEvent()
    slots = SimpleNamespace(
        data=tap.flat.clone()[None].as_subclass(FakeCudaTensor),
        events=[trainer_event],
        device=torch.device("cpu"),
        n=1,
        floats=tap.flat.numel(),
        nbytes=tap.nbytes,
    )
    up = InteropUpload(cloud, slots, tap.offsets, counts, cuda=tc)
    assert up.name == PATH_INTEROP and [c[0] for c in rt.calls] == ["register", "register"]
    up.present(0)
    assert up.reclaim() == [0]  # the viewer's copy event has completed: the slot goes back
    up.close()

    assert len(applied) == 1
    np.testing.assert_array_equal(rt.gl[11].view(np.float32), tap.flat.numpy()[: nbytes // 4])
    for i, v in enumerate(tap.views):
        c = v.shape[0]
        got = rt.gl[12].view(np.float32)[agg_offsets[i] // 4 : agg_offsets[i] // 4 + c]
        np.testing.assert_allclose(got, channel_means(v).numpy(), rtol=1e-6)
    kinds = {c[1] for c in rt.calls if c[0] == "memcpy"}
    assert kinds == {FakeRuntime.cudaMemcpyKind.cudaMemcpyDeviceToDevice}
    # each buffer: map, copy, unmap on the viewer's own stream, which waited for the trainer's copy event
    ops = [c[0] for c in rt.calls if c[0] != "register"]
    assert ops == ["map", "memcpy", "unmap", "map", "memcpy", "unmap", "unregister", "unregister"]
    assert {c[-1] for c in rt.calls if c[0] in ("map", "memcpy", "unmap")} == {0x77}
    assert up._stream.waited == [trainer_event]
    assert interop.STATS.bytes_device_to_device == sum(n for _, _, n in up.copies) + agg_bytes
    assert len(up.copies) == 1  # one copy of the whole frame
    # nothing but the 3 range numbers a layer came back to the host
    assert up.bytes_device_to_host == 0
    assert FakeCudaTensor.host_reads and all(n == 3 * len(counts) for _, n in FakeCudaTensor.host_reads)
    assert up.range_bytes_to_host == 3 * 4 * len(counts)


# ----------------------------------------------------------------------------------------------------------
# The real thing on a GPU
# ----------------------------------------------------------------------------------------------------------


def _interop_ok() -> tuple[bool, str]:
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    return interop.interop_status()


@pytest.mark.cuda
@pytest.mark.gl
def test_cuda_live_session_moves_nothing_through_the_host(tiny_net, tmp_path):
    """On a GPU: CUDA IPC slots and interprocess events to the viewer process, interop into GL there."""
    ok, why = _interop_ok()
    if not ok:
        pytest.skip(f"CUDA-GL interop unavailable: {why}")
    model = tiny_net.cuda().train()
    x, y, probe = (t.cuda() for t in _batch())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Live(model, probe, headless=True, size=(96, 64), record=tmp_path / "f") as viz:
        assert viz.stats.update_path == PATH_INTEROP
        for _ in range(3):
            viz.step(loss=_train_step(model, opt, x, y))
    assert viz.stats.frames == 3 and viz.stats.bytes_device_to_host == 0


@pytest.mark.gl
def test_interop_asked_for_without_cuda_is_a_named_error_and_leaves_no_hooks(tiny_net):
    from glnet.errors import CudaInteropUnavailable

    model = tiny_net.train()
    _, _, probe = _batch()
    viz = Live(model, probe, headless=True, size=(64, 48), update_path="interop")
    with pytest.raises(CudaInteropUnavailable, match="CUDA device"):
        viz.start()
    viz.close()
    assert viz.stats.viewer_pid is None  # refused before any viewer was started
    assert not model._forward_pre_hooks and all(not m._forward_hooks for m in model.modules())
