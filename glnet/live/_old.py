"""Live training: the point cloud follows a model while it trains, one fixed *probe* sample at a time.

Every training step the cloud shows the probe's activations (or, on demand, their gradients or how far each
filter has moved since the start), so frame-to-frame change is learning, not a new image.

How a step reaches the screen, and what it costs the trainer:

* **Capture.** :class:`ProbeTap` keeps forward hooks on the modules behind each layer of the trace (built
  once, with :func:`glnet.capture.capture` on the probe). The probe *rides along* as one extra, last row of
  each training batch (appended by a pre-hook on the root module, stripped from the output again, so
  ``model(x)`` still returns ``len(x)`` rows): no extra forward. The hooks copy that row of every shown output
  into one preallocated flat tensor, laid out like the GL values buffer.
* **Hand-over.** :meth:`Live.step` copies that tensor into a free staging slot and returns: one memcpy on
  the CPU, one device-to-device copy on CUDA. It never waits for the renderer. Without ``record`` the newest
  step wins and older, undrawn ones are dropped; with ``record`` each step's copy waits in a bounded queue
  (``queue_mb``) so every step gets its frame, and steps past the budget are dropped and counted.
* **Update paths.** On CUDA with CUDA-OpenGL interop the render thread copies the slot into the GL buffer
  device to device (:class:`glnet.gpu.interop.CudaGLBuffer`: registered once, mapped on a torch stream):
  no activation byte goes through the host. Without interop (or on CPU) the slot is host memory: a
  persistent-mapped GL staging buffer the trainer writes with plain memcpy and the render thread copies with
  ``glCopyNamedBufferSubData`` (or pinned memory written by an async device-to-host copy). Display ranges
  (1st/99th percentiles per layer) are computed on the slot's device on the render thread; only those
  3 numbers a layer come back to the host. :attr:`LiveStats.bytes_device_to_host` counts activation bytes
  that went through the host on the way (0 on the interop and CPU paths).
* **Render.** GL stays on one thread: the caller's (``glnet train``: the trainer runs in a worker thread) or
  a render thread of its own (:func:`live`). Headless, frames go into an offscreen framebuffer (and a video);
  with a display, into a window you fly through while it trains: ``1``/``2``/``3`` (or ``G`` and Shift+W; a
  plain ``W`` flies forward) switch between activations, gradients and weight change.

Notes: BatchNorm in training mode sees the probe as one more sample of the batch. The probe's gradients are
those of its own loss (``target``, ``criterion``) injected into the backward pass with the weight of one
sample of a mean-reduced loss, so the probe is also trained on, like any other sample; without ``target`` its
gradients are only what BatchNorm's coupling sends it. Call :meth:`Live.step` after ``optimizer.step()``.

Example (your own training loop)::

    import torch
    import torch.nn.functional as F
    import torchvision

    import glnet
    from glnet.data import make_dataset, make_loader

    data = make_dataset("synthetic", 64)                 # coloured shapes in 10 classes, made on the fly
    probe, label = make_dataset("synthetic", 64, train=False)[0]   # the one sample the cloud shows
    model = torchvision.models.resnet18(num_classes=data.num_classes).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    with glnet.live(model, probe=probe, target=label, record="training.mp4") as viz:
        for step, (x, y) in enumerate(make_loader(data, batch_size=32)):
            out = model(x)                               # the probe rides along; out still has len(x) rows
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            viz.step(loss=loss.item(), acc=(out.argmax(1) == y).float().mean().item())
            if step == 200 or viz.should_stop:          # should_stop: the window was closed
                break
    print(viz.stats.summary())                           # steps, frames, losses, update path, overhead

``viz.mode = "gradients"`` (or ``"weights"``) switches what the cloud shows from code; a non-finite loss
raises :class:`glnet.errors.NonFiniteError` naming the first layer holding NaN/Inf (``keep_going=True``
shows it and goes on). From the command line: ``glnet train resnet18 --data synthetic --steps 60``.
"""

from __future__ import annotations

import collections
import ctypes
import json
import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from .capture import LayerRecord, Trace, _first_tensor, _model_device, _to_canonical, capture
from .colormap import ValueRange
from .errors import (
    CaptureError,
    CudaInteropUnavailable,
    InputError,
    ModelError,
    NonFiniteError,
    OutOfMemoryError,
)
from .gpu.cloud import BYTES_PER_NEURON, layer_offsets

if TYPE_CHECKING:
    from .app import Visualization
    from .camera import Camera
    from .gpu.cloud import NeuronCloud
    from .gpu.context import GLContext

__all__ = [
    "MODES",
    "PATH_INTEROP",
    "PATH_MAPPED",
    "FrameMeta",
    "Live",
    "LiveStats",
    "ProbeTap",
    "RangeTable",
    "SlotRing",
    "TrainConfig",
    "find_nonfinite",
    "fit_classifier",
    "live",
    "save_checkpoint",
    "train",
]

Mode = Literal["activations", "gradients", "weights"]
MODES: tuple[str, ...] = ("activations", "gradients", "weights")
PATH_INTEROP = "cuda-gl interop"
PATH_MAPPED = "host upload (persistent-mapped staging)"
PATH_PINNED = "host upload (pinned staging)"
PATH_SUBDATA = "host upload (buffer sub-data)"
OVERHEAD_DEFINITION = (
    "trainer-side wall time spent in glnet per step (probe ride-along, capture hooks, hand-over copy) "
    "as % of "
    "the step's wall time, steps after the first; on CUDA kernels are asynchronous, so this is launch time: "
    "benchmarks/train_overhead.py measures the end-to-end difference"
)


# ---------------------------------------------------------------------------------------------------------
# Capture: persistent hooks for the probe's row
# ---------------------------------------------------------------------------------------------------------


def _split_call(name: str) -> tuple[str, int]:
    """``"layer1.0.relu:1"`` -> ``("layer1.0.relu", 1)``: the module and which of its calls in one forward."""
    base, sep, index = name.rpartition(":")
    if sep and index.isdigit():
        return base, int(index)
    return name, 0


def _strip_rows(obj: Any, batch: int, swap: dict[int, torch.Tensor] | None = None) -> Any:
    """``obj`` with the last row of every batch-sized tensor removed (tensors, tuples, lists, dicts); tensors
    whose ``id`` is in ``swap`` are replaced by the tensor given there instead."""
    if isinstance(obj, torch.Tensor):
        if swap and id(obj) in swap:
            return swap[id(obj)]
        return obj[:-1] if obj.dim() >= 1 and obj.shape[0] == batch else obj
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple
        return type(obj)(*(_strip_rows(o, batch, swap) for o in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_strip_rows(o, batch, swap) for o in obj)
    if isinstance(obj, dict):
        return type(obj)((k, _strip_rows(v, batch, swap)) for k, v in obj.items())
    return obj


class _StripProbe(torch.autograd.Function):
    """``out[:-1]`` whose backward hands ``out`` the batch's gradient plus ``probe_grad`` in the probe's row,
    so hooks on ``out`` and everything before it see the probe's own loss gradient."""

    @staticmethod
    def forward(ctx: Any, out: torch.Tensor, probe_grad: torch.Tensor) -> torch.Tensor:
        ctx.probe_grad = probe_grad
        return out[:-1].clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.cat([grad, ctx.probe_grad.to(grad.dtype)[None]]), None


class ProbeTap:
    """Persistent hooks that copy the probe's row of every trace layer's shown output, once per armed forward.

    The module behind each layer's shown value (``LayerRecord.shown``, e.g. ``layer1.0.relu:1``: the second
    call of ``layer1.0.relu`` in one forward, counted from a pre-hook on the root module) gets a forward hook
    that copies ``output[probe_index]``, in the layer's canonical (C, H, W) order, into a preallocated flat
    tensor laid out like the GL values buffer (:attr:`flat`, one view per layer in :attr:`views`). These are
    copies, so in-place ops later in the forward cannot change them. With :attr:`grads` set, a tensor hook on
    the same outputs copies the probe row of their gradient into :attr:`grad_flat`.

    With ``ride_along`` (a batch of one), an armed forward appends it to the input batch as its last row and
    strips that row from the model's output again. Hooks come off in :meth:`remove` (idempotent).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[LayerRecord],
        *,
        probe_index: int = -1,
        ride_along: torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.model = model
        self.layers = list(layers)
        self.probe_index = -1 if ride_along is not None else probe_index
        self.offsets, self.nbytes = layer_offsets([r.neurons for r in self.layers])
        self.device = torch.device(device) if device is not None else _model_device(model)
        self.flat = torch.zeros(self.nbytes // BYTES_PER_NEURON, dtype=torch.float32, device=self.device)
        self.views = self._views(self.flat)
        self.grad_flat: torch.Tensor | None = None
        self.grad_views: list[torch.Tensor] = []
        self.ride_along = ride_along
        self.when: Callable[[nn.Module], bool] = lambda m: True  # which forwards an armed tap accepts
        self.inject: Callable[[torch.Tensor], torch.Tensor | None] | None = None  # probe-row gradient to add
        self.armed = False  # capture the next accepted root forward
        self.active = False  # inside a capturing forward
        self.batch: int | None = None
        self.filled = [False] * len(self.layers)
        self.grad_filled = [False] * len(self.layers)
        self.captures = 0  # capturing forwards so far
        self.seconds = 0.0  # trainer-side time spent in these hooks
        self.skipped = 0  # armed forwards whose input the probe could not join
        self._grads = False
        self._probe_cache: torch.Tensor | None = None
        self._targets: dict[str, dict[int, list[int]]] = {}
        for i, r in enumerate(self.layers):
            module, call = _split_call(r.shown or r.name)
            self._targets.setdefault(module, {}).setdefault(call, []).append(i)
        self._counts: dict[str, int] = {}
        self._handles: list[Any] = []

    def _views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for r, off in zip(self.layers, self.offsets, strict=True):
            start = off // BYTES_PER_NEURON
            out.append(flat[start : start + r.neurons].view(r.grid))
        return out

    @property
    def grads(self) -> bool:
        """Copy the probe row of each shown output's gradient too (set before the forward)."""
        return self._grads

    @grads.setter
    def grads(self, on: bool) -> None:
        if on and self.grad_flat is None:
            self.grad_flat = torch.zeros_like(self.flat)
            self.grad_views = self._views(self.grad_flat)
        self._grads = bool(on)

    def _module(self, modules: dict[str, nn.Module], name: str) -> nn.Module | None:
        if name in modules:
            return modules[name]
        return self.model if name == type(self.model).__name__ else None

    def install(self) -> ProbeTap:
        """Register the hooks (once); removes what it added if any registration fails."""
        if self._handles:
            return self
        modules = dict(self.model.named_modules())
        missing = [n for n in self._targets if self._module(modules, n) is None]
        if missing:
            raise CaptureError(f"cannot hook layer {missing[0]!r}: the model has no module of that name")
        try:
            self._handles.append(self.model.register_forward_pre_hook(self._on_root_pre))
            for name in self._targets:
                self._handles.append(self._module(modules, name).register_forward_hook(self._hook(name)))
            self._handles.append(self.model.register_forward_hook(self._on_root_post))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        """Remove every hook; safe to call twice."""
        handles, self._handles = self._handles, []
        for h in handles:
            h.remove()
        self.active = False

    # -- hooks ----------------------------------------------------------------------------------------
    def _on_root_pre(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        self._counts.clear()
        self.active = False
        if not self.armed or not self.when(module):
            return None
        t0 = time.perf_counter()
        try:
            new_args = None
            x = args[0] if args else None
            if self.ride_along is not None:
                if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != tuple(self.ride_along.shape[1:]):
                    self.skipped += 1
                    return None
                p = self._probe_cache
                if p is None or p.device != x.device or p.dtype != x.dtype:
                    p = self._probe_cache = self.ride_along.to(x.device, x.dtype)
                new_args = (torch.cat([x, p]), *args[1:])
                self.batch = x.shape[0] + 1
            else:
                t = _first_tensor(args)
                self.batch = int(t.shape[0]) if t is not None and t.dim() else None
            self.armed = False
            self.active = True
            self.filled = [False] * len(self.layers)
            self.grad_filled = [False] * len(self.layers)
            return new_args
        finally:
            self.seconds += time.perf_counter() - t0

    def _on_root_post(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        if not self.active:
            return None
        t0 = time.perf_counter()
        try:
            self.active = False
            self.captures += 1
            if self.ride_along is None:
                return None
            batch = self.batch
            first = _first_tensor(output)
            if (
                self.inject is not None
                and first is not None
                and first.requires_grad
                and first.shape[0] == batch
            ):
                g = self.inject(first[-1].detach())
                if g is not None:
                    return _strip_rows(output, batch, {id(first): _StripProbe.apply(first, g)})
            return _strip_rows(output, batch)
        finally:
            self.seconds += time.perf_counter() - t0

    def _hook(self, name: str) -> Callable[..., None]:
        calls = self._targets[name]

        def on_forward(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not self.active:
                return
            n = self._counts.get(name, 0)
            self._counts[name] = n + 1
            wanted = calls.get(n)
            if not wanted:
                return
            t0 = time.perf_counter()
            out = _first_tensor(output)
            if out is not None and out.dim() >= 1 and out.shape[0] == self.batch:
                row = out[self.probe_index]
                for i in wanted:
                    r = self.layers[i]
                    if row.numel() != r.neurons:
                        continue
                    self.views[i].copy_(_to_canonical(row, r.grid, r.channels_last))
                    self.filled[i] = True
                    if self._grads and out.requires_grad:
                        out.register_hook(self._grad_hook(i))
            self.seconds += time.perf_counter() - t0

        return on_forward

    def _grad_hook(self, i: int) -> Callable[[torch.Tensor], None]:
        r = self.layers[i]
        batch = self.batch

        def on_grad(g: torch.Tensor) -> None:
            t0 = time.perf_counter()
            if g.dim() >= 1 and g.shape[0] == batch and self.grad_views:
                self.grad_views[i].copy_(_to_canonical(g[self.probe_index], r.grid, r.channels_last))
                self.grad_filled[i] = True
            self.seconds += time.perf_counter() - t0

        return on_grad

    def first_nonfinite(self, grads: bool = False) -> str | None:
        """The first layer whose captured probe row holds NaN/Inf (a host sync a layer: failures only)."""
        views = self.grad_views if grads else self.views
        if not views:
            return None
        for r, v, ok in zip(self.layers, views, self.grad_filled if grads else self.filled, strict=True):
            if ok and not bool(torch.isfinite(v).all()):
                return r.name
        return None


# ---------------------------------------------------------------------------------------------------------
# Display ranges of a packed frame, on its device
# ---------------------------------------------------------------------------------------------------------


class RangeTable:
    """Per-layer display ranges of a packed frame in one batched pass on the frame's device.

    Each layer's 1st/99th percentiles come from an evenly strided sample of at most ``samples`` of its
    values (its exact NaN/Inf count from all of them); one (L, 3) tensor comes back to the host. Ranges are
    then smoothed from frame to frame (``smoothing`` of the old value kept) so colours do not flicker.
    """

    def __init__(
        self,
        counts: Sequence[int],
        offsets: Sequence[int],
        device: torch.device | str,
        *,
        samples: int = 4096,
        smoothing: float = 0.5,
    ) -> None:
        n_layers = len(counts)
        idx = np.full((n_layers, samples), -1, np.int64)
        starts, ends = [], []
        for i, (n, off) in enumerate(zip(counts, offsets, strict=True)):
            start = off // BYTES_PER_NEURON
            k = np.arange(0, n, max(1, -(-n // samples)))[:samples]
            idx[i, : len(k)] = start + k
            starts.append(start)
            ends.append(start + n)
        self.device = torch.device(device)
        self.idx = torch.from_numpy(idx.clip(min=0)).to(self.device)
        self.valid = torch.from_numpy(idx >= 0).to(self.device)
        self.starts = torch.tensor(starts, dtype=torch.long, device=self.device)
        self.ends = torch.tensor(ends, dtype=torch.long, device=self.device)
        self.q = torch.tensor([0.01, 0.99], dtype=torch.float32, device=self.device)
        self.smoothing = float(smoothing)
        self._prev: list[ValueRange | None] = [None] * n_layers

    def measure(self, flat: torch.Tensor) -> torch.Tensor:
        """(L, 3) float32 on ``flat``'s device: low and high percentile and NaN/Inf count of each layer."""
        v = flat[self.idx]
        v = torch.where(self.valid & torch.isfinite(v), v, torch.full_like(v, float("nan")))
        q = torch.nanquantile(v, self.q, dim=1)
        bad = torch.cumsum((~torch.isfinite(flat)).to(torch.int32), 0, dtype=torch.int32)
        before = torch.where(
            self.starts > 0,
            bad[(self.starts - 1).clamp(min=0)],
            torch.zeros_like(self.starts, dtype=torch.int32),
        )
        nonfinite = bad[self.ends - 1] - before
        return torch.stack([q[0], q[1], nonfinite.to(torch.float32)], 1)

    def reset(self) -> None:
        """Forget the smoothed ranges (the frames now show something else)."""
        self._prev = [None] * len(self._prev)

    def ranges(self, measured: np.ndarray) -> list[ValueRange]:
        """ValueRanges from :meth:`measure`'s numbers (on the host), by :func:`glnet.colormap.robust_range`'s
        rules, smoothed against the previous frame."""
        out = []
        keep = self.smoothing
        for i, (lo, hi, nonfinite) in enumerate(np.asarray(measured, np.float64)):
            nf = int(nonfinite)
            if not (math.isfinite(lo) and math.isfinite(hi)):
                r = ValueRange(0.0, 1.0, False, nf)
            elif lo < 0 and -lo > 0.25 * max(hi, 0.0):
                m = max(-lo, abs(hi)) or 1.0
                r = ValueRange(-m, m, True, nf)
            else:
                if hi <= lo:
                    hi = lo + (abs(lo) or 1.0)
                r = ValueRange(float(lo), float(hi), False, nf)
            prev = self._prev[i]
            if prev is not None and prev.diverging == r.diverging and keep > 0:
                r = ValueRange(
                    keep * prev.lo + (1 - keep) * r.lo, keep * prev.hi + (1 - keep) * r.hi, r.diverging, nf
                )
            self._prev[i] = r
            out.append(r)
        return out


# ---------------------------------------------------------------------------------------------------------
# Staging slots shared by the trainer (writes) and the render thread (reads)
# ---------------------------------------------------------------------------------------------------------

_FREE, _WRITING, _READY, _READING = range(4)


@dataclass
class FrameMeta:
    """What one staged frame shows: the step it comes from and the numbers the HUD prints with it."""

    step: int
    mode: str = "activations"
    loss: float | None = None
    acc: float | None = None
    note: str = ""
    t: float = 0.0  # perf_counter when it was handed over


class SlotRing:
    """The state of N staging slots: FREE -> WRITING (trainer) -> READY -> READING (render) -> FREE.

    ``policy="latest"``: a new frame replaces any undrawn one, and the trainer takes the oldest undrawn
    slot when none is free (both counted in :attr:`dropped`). ``policy="queue"``: frames wait in order until
    drawn; with no free slot the new frame is dropped (counted). The trainer never waits either way.
    """

    def __init__(self, slots: int, policy: str = "latest") -> None:
        if policy not in ("latest", "queue"):
            raise ValueError(f"policy must be 'latest' or 'queue', not {policy!r}")
        self.n = max(1, int(slots))
        self.policy = policy
        self.state = [_FREE] * self.n
        self.meta: list[FrameMeta | None] = [None] * self.n
        self._ready: collections.deque[int] = collections.deque()
        self._cond = threading.Condition()
        self.published = 0
        self.dropped = 0

    def acquire(self) -> int | None:
        """A slot for the trainer to write, or None (the frame is dropped); never blocks."""
        with self._cond:
            for i, s in enumerate(self.state):
                if s == _FREE:
                    self.state[i] = _WRITING
                    return i
            if self.policy == "latest" and self._ready:
                i = self._ready.popleft()
                self.dropped += 1
                self.state[i] = _WRITING
                return i
            self.dropped += 1
            return None

    def commit(self, i: int, meta: FrameMeta) -> None:
        """Hand slot ``i`` (written) to the renderer."""
        with self._cond:
            self.meta[i] = meta
            self.state[i] = _READY
            if self.policy == "latest":
                while self._ready:
                    j = self._ready.popleft()
                    self.state[j] = _FREE
                    self.dropped += 1
            self._ready.append(i)
            self.published += 1
            self._cond.notify_all()

    def abort(self, i: int) -> None:
        with self._cond:
            self.state[i] = _FREE

    def take(self, data_ready: Callable[[int], bool] | None = None) -> int | None:
        """The next frame to draw (oldest first) if its data is ready; the renderer's until released."""
        with self._cond:
            if not self._ready:
                return None
            i = self._ready[0]
            if data_ready is not None and not data_ready(i):
                return None
            self._ready.popleft()
            self.state[i] = _READING
            return i

    def release(self, i: int) -> None:
        with self._cond:
            self.state[i] = _FREE

    def pending(self) -> int:
        """Frames handed over and not yet taken."""
        with self._cond:
            return len(self._ready)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a frame to be handed over; True if one is waiting."""
        with self._cond:
            if not self._ready:
                self._cond.wait(timeout)
            return bool(self._ready)


# ---------------------------------------------------------------------------------------------------------
# Update paths: trainer-side copy into a slot, render-side copy into the GL values buffer
# ---------------------------------------------------------------------------------------------------------


def _copy_plan(src_offsets: Sequence[int], cloud: Any) -> list[tuple[int, int, int]]:
    """(source offset, destination offset, bytes) runs from the tap's layout into the cloud's values buffer.

    Layers whose gap to the previous one is the same in both layouts join one run (the padding is copied
    too): with no layer over the neuron budget that is a single copy of the whole frame.
    """
    runs: list[tuple[int, int, int]] = []
    for i, (src, layer) in enumerate(zip(src_offsets, cloud.layers, strict=True)):
        if i in cloud.forced or not layer.nbytes:
            continue
        dst, n = cloud.offsets[i], layer.nbytes
        if runs:
            s, d, m = runs[-1]
            if src - (s + m) == dst - (d + m) and src >= s + m:
                runs[-1] = (s, d, src + n - s)
                continue
        runs.append((src, dst, n))
    return runs


@dataclass
class LiveStats:
    """Counters of a live session: steps, frames, losses, timings and what the update path moved."""

    update_path: str = ""
    steps: int = 0
    frames: int = 0
    samples: int = 0
    loss: list[float] = field(default_factory=list)
    acc: list[float] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    glnet_ms: list[float] = field(default_factory=list)
    bytes_per_update: int = 0
    updates: int = 0  # frames handed over
    dropped: int = 0  # frames dropped (latest wins, or over the queue budget)
    bytes_device_to_host: int = 0  # activation bytes that went device -> host on the way to GL
    range_bytes_to_host: int = 0  # the per-layer range numbers read back from the device
    batch: int = 0  # training samples per step (the probe not counted)
    nonfinite: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The figures ``--stats-json`` writes (see :data:`OVERHEAD_DEFINITION` for ``overhead_pct``)."""
        warm = slice(1, None) if len(self.step_ms) > 1 else slice(None)
        steps_ms, glnet_ms = self.step_ms[warm], self.glnet_ms[warm]
        total = sum(steps_ms)
        return {
            "steps": self.steps,
            "frames": self.frames,
            "loss": [round(v, 6) if math.isfinite(v) else str(v) for v in self.loss],
            "acc": [round(v, 6) for v in self.acc],
            "update_path": self.update_path,
            "step_ms": round(statistics.median(steps_ms), 3) if steps_ms else None,
            "step_ms_mean": round(total / len(steps_ms), 3) if steps_ms else None,
            "glnet_ms": round(statistics.median(glnet_ms), 4) if glnet_ms else None,
            "overhead_pct": round(100.0 * sum(glnet_ms) / total, 3) if total > 0 else None,
            "overhead_definition": OVERHEAD_DEFINITION,
            "probe_share_pct": round(100.0 / self.batch, 3) if self.batch else None,
            "samples_per_s": round(1e3 * self.batch * len(steps_ms) / total, 2)
            if total > 0 and self.batch
            else None,
            "bytes_per_update": self.bytes_per_update,
            "updates": self.updates,
            "dropped": self.dropped,
            "bytes_device_to_host": self.bytes_device_to_host,
            "range_bytes_to_host": self.range_bytes_to_host,
            "nonfinite": self.nonfinite,
        }


class _UpdatePath:
    """A ring of staging slots plus how frames get from a slot into the cloud's GL buffers."""

    name = ""

    def __init__(
        self,
        cloud: NeuronCloud,
        tap_offsets: Sequence[int],
        counts: Sequence[int],
        nbytes: int,
        slots: int,
        policy: str,
        stats: LiveStats,
        device: torch.device,
    ) -> None:
        self.cloud = cloud
        self.nbytes = nbytes
        self.floats = nbytes // BYTES_PER_NEURON
        self.ring = SlotRing(slots, policy)
        self.stats = stats
        self.device = device
        self.copies = _copy_plan(tap_offsets, cloud)
        self.table = RangeTable(counts, tap_offsets, device)
        self.last_mode: str | None = None
        self._tensors: list[torch.Tensor] = []
        grids = [s.grid for s in cloud.layout.slabs]
        self._means_plan = [
            (off // BYTES_PER_NEURON, n, g[0], cloud.agg_offsets[i] // BYTES_PER_NEURON)
            for i, (off, n, g) in enumerate(zip(tap_offsets, counts, grids, strict=True))
        ]
        self._agg_floats = cloud.aggregates.nbytes // BYTES_PER_NEURON
        stats.update_path = self.name
        stats.bytes_per_update = nbytes

    # -- trainer side: no GL ------------------------------------------------------------------------------
    def publish(self, src: torch.Tensor, meta: FrameMeta) -> bool:
        """Copy ``src`` (the packed frame) into a free slot and hand it over; False if it was dropped."""
        i = self.ring.acquire()
        if i is None:
            self.stats.dropped = self.ring.dropped
            return False
        try:
            self._write(i, src)
        except BaseException:
            self.ring.abort(i)
            raise
        meta.t = time.perf_counter()
        self.ring.commit(i, meta)
        self.stats.updates = self.ring.published
        self.stats.dropped = self.ring.dropped
        return True

    def _write(self, i: int, src: torch.Tensor) -> None:
        self._tensors[i].copy_(src)

    def _data_ready(self, i: int) -> bool:
        return True

    # -- render side: GL current ---------------------------------------------------------------------------
    def ready(self) -> bool:
        """A frame is waiting and its data has arrived (render thread)."""
        self._reclaim()
        with self.ring._cond:
            if not self.ring._ready:
                return False
            return self._data_ready(self.ring._ready[0])

    def present(self) -> FrameMeta | None:
        """Move the next waiting frame into the cloud (values, channel means, ranges); its meta, or None."""
        self._reclaim()
        i = self.ring.take(self._data_ready)
        if i is None:
            return None
        meta = self.ring.meta[i]
        assert meta is not None
        if meta.mode != self.last_mode:
            self.table.reset()
            self.last_mode = meta.mode
        try:
            ranges = self._present(i)
        except BaseException:
            self.ring.release(i)
            raise
        self.cloud.apply_ranges(ranges)
        self.stats.dropped = self.ring.dropped
        return meta

    def _measure(self, flat: torch.Tensor) -> tuple[list[ValueRange], torch.Tensor]:
        """Ranges (on the host) and per-channel means (on ``flat``'s device) of one packed frame."""
        m = self.table.measure(flat)
        if m.is_cuda:
            self.stats.range_bytes_to_host += m.numel() * m.element_size()
        ranges = self.table.ranges(m.cpu().numpy())
        means = flat.new_zeros(self._agg_floats)  # on flat's device (and of its type)
        for start, n, c, dst in self._means_plan:
            means[dst : dst + c] = flat[start : start + n].view(c, -1).mean(dim=1)
        return ranges, means

    def _present(self, i: int) -> list[ValueRange]:
        raise NotImplementedError

    def _reclaim(self) -> None:
        """Free slots whose copy into GL has finished."""

    def pending(self) -> int:
        return self.ring.pending()

    def close(self) -> None:
        """Release GL/CUDA resources (render thread, context current); idempotent."""


class _HostCopyPath(_UpdatePath):
    """Slots in host memory, copied into GL with glNamedBufferSubData; pinned and filled by an async
    device-to-host copy when the model is on CUDA (interop unavailable)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        device = kwargs["device"]
        self.name = PATH_PINNED if device.type == "cuda" else PATH_SUBDATA
        super().__init__(*args, **kwargs)
        pin = device.type == "cuda"
        self._tensors = [
            torch.zeros(self.floats, dtype=torch.float32, pin_memory=pin) for _ in range(self.ring.n)
        ]
        self._events: list[Any] = [None] * self.ring.n

    def _write(self, i: int, src: torch.Tensor) -> None:
        if src.is_cuda:
            self._tensors[i].copy_(src, non_blocking=True)
            ev = torch.cuda.Event()
            ev.record(torch.cuda.current_stream(src.device))
            self._events[i] = ev
            self.stats.bytes_device_to_host += self.nbytes
        else:
            self._tensors[i].copy_(src)
            self._events[i] = None

    def _data_ready(self, i: int) -> bool:
        ev = self._events[i]
        return ev is None or bool(ev.query())

    def _present(self, i: int) -> list[ValueRange]:
        flat = self._tensors[i]
        ranges, means = self._measure(flat)
        data = flat.numpy().view(np.uint8)
        for s, d, n in self.copies:
            self.cloud.values.write(data[s : s + n], d)
        self.cloud.aggregates.write(means.numpy())
        self.ring.release(i)  # glNamedBufferSubData has copied the bytes
        return ranges


class _MappedPath(_UpdatePath):
    """Slots in one persistent, coherently mapped GL buffer (GL 4.4 buffer storage): the trainer writes them
    with a plain memcpy (no GL call); the render thread copies a slot into the values buffer on the GPU side
    (glCopyNamedBufferSubData) and frees it once a fence says the copy is done."""

    name = PATH_MAPPED
    _FLAGS = 0x0001 | 0x0002 | 0x0040 | 0x0080  # MAP_READ | MAP_WRITE | MAP_PERSISTENT | MAP_COHERENT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from OpenGL import GL

        super().__init__(*args, **kwargs)
        size = self.nbytes * self.ring.n
        self.glo = int(GL.glGenBuffers(1))
        GL.glBindBuffer(GL.GL_COPY_WRITE_BUFFER, self.glo)
        GL.glBindBuffer(GL.GL_COPY_WRITE_BUFFER, 0)
        GL.glNamedBufferStorage(self.glo, size, None, self._FLAGS | GL.GL_CLIENT_STORAGE_BIT)
        err = GL.glGetError()
        ptr = GL.glMapNamedBufferRange(self.glo, 0, size, self._FLAGS) if err == GL.GL_NO_ERROR else None
        addr = ptr if isinstance(ptr, int) else ctypes.cast(ptr, ctypes.c_void_p).value if ptr else None
        if not addr:
            GL.glGetError()
            GL.glDeleteBuffers(1, [self.glo])
            self.glo = 0
            raise RuntimeError(
                f"persistent mapping of a {size}-byte staging buffer failed (GL error 0x{err:04x})"
            )
        self._mapped = np.ctypeslib.as_array((ctypes.c_float * (size // BYTES_PER_NEURON)).from_address(addr))
        self._tensors = [
            torch.from_numpy(self._mapped[k * self.floats : (k + 1) * self.floats])
            for k in range(self.ring.n)
        ]
        self._fences: list[tuple[int, Any]] = []

    def _present(self, i: int) -> list[ValueRange]:
        from OpenGL import GL

        ranges, means = self._measure(self._tensors[i])
        base = i * self.nbytes
        for s, d, n in self.copies:
            GL.glCopyNamedBufferSubData(self.glo, self.cloud.values.glo, base + s, d, n)
        self.cloud.aggregates.write(means.numpy())
        fence = GL.glFenceSync(GL.GL_SYNC_GPU_COMMANDS_COMPLETE, 0)
        GL.glFlush()
        self._fences.append((i, fence))
        return ranges

    def _reclaim(self) -> None:
        if not self._fences:
            return
        from OpenGL import GL

        done = (GL.GL_ALREADY_SIGNALED, GL.GL_CONDITION_SATISFIED)
        keep = []
        for i, fence in self._fences:
            if GL.glClientWaitSync(fence, 0, 0) in done:
                GL.glDeleteSync(fence)
                self.ring.release(i)
            else:
                keep.append((i, fence))
        self._fences = keep

    def close(self) -> None:
        if not self.glo:
            return
        from OpenGL import GL

        for _, fence in self._fences:
            GL.glDeleteSync(fence)
        self._fences = []
        self._tensors = []
        self._mapped = None
        GL.glUnmapNamedBuffer(self.glo)
        GL.glDeleteBuffers(1, [self.glo])
        self.glo = 0


class _InteropPath(_UpdatePath):
    """Slots on the CUDA device; the render thread copies a slot into the GL values buffer device to device
    through CUDA-OpenGL interop, on a stream of its own that waits (on the GPU) for the trainer's copy.

    ``cuda`` is ``torch.cuda`` (tests hand in a fake): only ``Stream``, ``Event``, ``stream()`` and
    ``current_stream()`` are used.
    """

    name = PATH_INTEROP

    def __init__(self, *args: Any, cuda: Any = None, **kwargs: Any) -> None:
        from .gpu.interop import CudaGLBuffer

        super().__init__(*args, **kwargs)
        self._cuda = cuda if cuda is not None else torch.cuda
        cloud = self.cloud
        self._values_gl = CudaGLBuffer(cloud.values.glo, cloud.values.nbytes, label="live values")
        try:
            self._agg_gl = CudaGLBuffer(
                cloud.aggregates.glo, cloud.aggregates.nbytes, label="live channel means"
            )
        except BaseException:
            self._values_gl.close()
            raise
        self._stream = self._cuda.Stream(device=self.device)
        self._tensors = [self._alloc(self.floats) for _ in range(self.ring.n)]
        self._events: list[Any] = [None] * self.ring.n
        self._done: list[tuple[int, Any, torch.Tensor]] = []

    def _alloc(self, n: int) -> torch.Tensor:
        return torch.zeros(n, dtype=torch.float32, device=self.device)

    def _write(self, i: int, src: torch.Tensor) -> None:
        self._tensors[i].copy_(src, non_blocking=True)
        ev = self._cuda.Event()
        ev.record(self._cuda.current_stream(self.device))
        self._events[i] = ev

    def _data_ready(self, i: int) -> bool:
        ev = self._events[i]
        return ev is None or bool(ev.query())

    def _present(self, i: int) -> list[ValueRange]:
        flat = self._tensors[i]
        with self._cuda.stream(self._stream):
            if self._events[i] is not None:
                self._stream.wait_event(self._events[i])
            ranges, means = self._measure(flat)
            f = BYTES_PER_NEURON
            self._values_gl.write_many([(flat[s // f : (s + n) // f], d) for s, d, n in self.copies])
            self._agg_gl.write(means)
            done = self._cuda.Event()
            done.record(self._stream)
        self._done.append((i, done, means))  # keeps ``means`` alive until the copy has run
        return ranges

    def _reclaim(self) -> None:
        keep = []
        for i, done, means in self._done:
            if done.query():
                self.ring.release(i)
            else:
                keep.append((i, done, means))
        self._done = keep

    def close(self) -> None:
        for buf in (getattr(self, "_values_gl", None), getattr(self, "_agg_gl", None)):
            if buf is not None and not buf.closed:
                buf.close()


def _slots_for(policy: str, nbytes: int, queue_mb: float) -> int:
    if policy == "latest":
        return 3  # one being written, one waiting, one being copied
    return int(min(4096, max(3, (queue_mb * 2**20) // max(1, nbytes))))


def choose_update_path(
    cloud: NeuronCloud,
    tap: ProbeTap,
    *,
    policy: str,
    stats: LiveStats,
    queue_mb: float = 256.0,
    prefer: str = "auto",
) -> tuple[_UpdatePath, str]:
    """The fastest update path this context and device allow (render thread, context current), and why a
    faster one was not taken ('' when nothing was given up).

    ``prefer``: ``auto``, ``interop``, ``mapped`` or ``host`` (buffer sub-data from host memory).
    """
    if prefer not in ("auto", "interop", "mapped", "host"):
        raise InputError(f"update path must be auto, interop, mapped or host, not {prefer!r}")
    device = tap.device
    counts = [r.neurons for r in tap.layers]
    args = (cloud, tap.offsets, counts, tap.nbytes, _slots_for(policy, tap.nbytes, queue_mb), policy, stats)
    why = ""
    if device.type == "cuda":
        if prefer in ("auto", "interop"):
            from .gpu.interop import interop_status

            ok, why = interop_status()
            if ok:
                try:
                    with torch.cuda.device(device):  # register on the model's GPU, not the current one
                        return _InteropPath(*args, device=device), ""
                except CudaInteropUnavailable as e:
                    why = str(e)
            if prefer == "interop":
                raise CudaInteropUnavailable(f"cuda-gl interop was asked for but is unavailable: {why}")
            why = f"cuda-gl interop unavailable: {why}"
        return _HostCopyPath(*args, device=device), why
    if prefer == "interop":
        raise CudaInteropUnavailable("cuda-gl interop needs the model on a CUDA device")
    info = cloud.ctx.info
    if prefer in ("auto", "mapped"):
        if (info.major, info.minor) >= (4, 4):
            try:
                return _MappedPath(*args, device=device), ""
            except RuntimeError as e:
                why = str(e)
        else:
            why = f"OpenGL {info.major}.{info.minor} has no persistent buffer mapping (4.4)"
    return _HostCopyPath(*args, device=device), why


# ---------------------------------------------------------------------------------------------------------
# The live session
# ---------------------------------------------------------------------------------------------------------


def _say_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _as_probe(probe: torch.Tensor) -> torch.Tensor:
    """A batch of one: one sample (1-D or 3-D: a vector or an image) gets a batch dimension; a larger batch
    gives its first sample."""
    if not isinstance(probe, torch.Tensor):
        raise InputError(f"the probe must be a tensor, not {type(probe).__name__}")
    p = probe.detach()
    if p.dim() in (0, 1, 3):
        p = p.unsqueeze(0)
    return p[:1].clone()


def _thin(values: Sequence[float], n: int = 400) -> list[float]:
    """At most ``n`` evenly spaced points of a curve (the HUD plot is a few hundred pixels wide)."""
    if len(values) <= n:
        return list(values)
    idx = np.linspace(0, len(values) - 1, n).round().astype(int)
    return [values[i] for i in idx]


class Live:
    """A model drawn live while it trains: see the module docstring. Use :func:`live` to make one.

    ``render="thread"`` draws on a thread of its own (the Python API: your loop keeps the calling thread);
    ``render="caller"`` sets GL up on the calling thread, which then runs :meth:`run` while training happens
    in another thread (``glnet train``).
    """

    def __init__(
        self,
        model: nn.Module,
        probe: torch.Tensor,
        *,
        target: int | torch.Tensor | None = None,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        every: int = 1,
        mode: str = "activations",
        headless: bool | None = None,
        record: str | os.PathLike[str] | None = None,
        size: tuple[int, int] = (1280, 720),
        fps: float = 15.0,
        renderer: str = "auto",
        camera: str | Camera | None = None,
        keep_going: bool = False,
        policy: str | None = None,
        queue_mb: float = 256.0,
        update_path: str = "auto",
        granularity: str = "layer",
        title: str = "",
        total_steps: int | None = None,
        render: str = "thread",
        hold: bool = True,
        say: Callable[[str], None] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module) or isinstance(model, torch.jit.ScriptModule):
            raise InputError("glnet.live needs a torch nn.Module (TorchScript modules take no hooks)")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InputError(f"every must be a positive integer, not {every!r}")
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if render not in ("thread", "caller"):
            raise InputError(f"render must be 'thread' or 'caller', not {render!r}")
        self.model = model
        self.probe = _as_probe(probe)
        self.target = target
        self.criterion = criterion or nn.functional.cross_entropy
        self.every = every
        self._mode = mode
        self.headless = headless
        self.record = record
        self.size = (int(size[0]), int(size[1]))
        self.fps = fps
        self.renderer = renderer
        self.camera_spec = camera
        self.keep_going = keep_going
        self.policy = policy or ("queue" if record else "latest")
        self.queue_mb = queue_mb
        self.prefer_path = update_path
        self.granularity = granularity
        self.title = title or type(model).__name__
        self.total_steps = total_steps
        self.render_mode = render
        self.hold = hold
        self.say = say or _say_stderr
        self.stats = LiveStats()
        self._paused = False
        self.note = ""
        self.finished = False  # training is over (the HUD says so)
        self.trace: Trace | None = None
        self.tap: ProbeTap | None = None
        self.path: _UpdatePath | None = None
        self.vis: Visualization | None = None
        self.ctx: GLContext | None = None
        self.camera: Camera | None = None
        self.viewer: Any = None
        self.writer: Any = None
        self._fb: Any = None
        self._stop = threading.Event()
        self._path_lock = threading.Lock()
        self.stop_reason = ""
        self._closing = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._render_error: BaseException | None = None
        self._weights: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._wflat: torch.Tensor | None = None
        self._captures_seen = 0
        self._tap_seconds_seen = 0.0
        self._last_step_end: float | None = None
        self._first_forward: float | None = None
        self._frame_ms: float | None = None
        self._shown: FrameMeta | None = None
        self._panels_at = 0.0
        self._panels_mode = "activations"
        self._samples_window: collections.deque[tuple[float, int]] = collections.deque(maxlen=20)
        self._started = False
        self._closed = False
        self._warned_skip = False
        self._target_cache: torch.Tensor | None = None

    # -- set-up ---------------------------------------------------------------------------------------------
    def start(self) -> Live:
        """Capture the layer list on the probe, install the hooks, and bring up the renderer."""
        if self._started:
            return self
        self._started = True
        from .gpu.context import configure_platform, has_display

        if self.headless is None:
            self.headless = not has_display()
        configure_platform(headless=bool(self.headless))
        model = self.model
        device = _model_device(model)
        self.probe = self.probe.to(device)
        self.trace = capture(
            model,
            self.probe,
            granularity=self.granularity,
            eval_mode=True,
            model_name=self.title,  # type: ignore[arg-type]
        )
        tap = ProbeTap(model, self.trace.layers, ride_along=self.probe, device=device)
        tap.when = lambda m: m.training and torch.is_grad_enabled() and not self.paused
        if self.target is not None:
            tap.inject = self._probe_gradient
        tap.grads = self._mode == "gradients"
        tap.armed = True
        self.tap = tap
        for i, r in enumerate(self.trace.layers):
            w = r.weight
            if isinstance(w, torch.Tensor) and w.dim() >= 1 and w.shape[0] == r.grid[0]:
                self._weights[i] = (w, w.detach().clone())
        tap.install()
        self._panels_at = time.perf_counter()
        try:
            if self.render_mode == "thread":
                self._thread = threading.Thread(target=self._render_thread, name="glnet-render", daemon=True)
                self._thread.start()
                while not self._ready.wait(0.1):
                    if not self._thread.is_alive():
                        break
                if self._render_error is not None:
                    raise self._render_error
            else:
                self._setup_gl()
        except BaseException:
            tap.remove()
            raise
        self._first_forward = time.perf_counter()
        return self

    def __enter__(self) -> Live:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _probe_gradient(self, logits: torch.Tensor) -> torch.Tensor | None:
        """The gradient of the probe's own loss with respect to its output row, weighted as one sample of a
        mean-reduced batch loss (added to that row in the backward pass)."""
        target = self._target_cache
        if target is None or target.device != logits.device:
            t = self.target if isinstance(self.target, torch.Tensor) else torch.tensor(self.target)
            target = self._target_cache = t.to(logits.device).reshape(-1)[:1]
        batch = max(1, (self.tap.batch or 2) - 1) if self.tap else 1
        try:
            with torch.enable_grad():
                z = logits.detach().float().requires_grad_(True)
                loss = self.criterion(z[None], target)
                (g,) = torch.autograd.grad(loss, z)
        except (RuntimeError, ValueError, IndexError) as e:  # not a classifier's output: no probe gradient
            if self.tap is not None:
                self.tap.inject = None
            self.say(
                f"glnet: note: the probe's loss cannot be computed ({str(e).splitlines()[0][:120]}); "
                "its gradients show only what the batch sends it"
            )
            return None
        return (g / batch).to(logits.dtype)

    def _setup_gl(self) -> None:
        """Context, scene, update path and video on this (the render) thread."""
        from .camera import camera_from_spec

        assert self.trace is not None and self.tap is not None
        if self.headless:
            from .app import Visualization
            from .gpu.context import GLContext
            from .gpu.framebuffer import Framebuffer

            self.ctx = GLContext.offscreen()
            try:
                self.vis = Visualization(self.ctx, self.trace, renderer=self.renderer)
                self._fb = Framebuffer(self.ctx, *self.size)
            except BaseException:
                self.ctx.close()
                raise
            w, h = self.size
            self.camera = (
                self.camera_spec
                if not isinstance(self.camera_spec, (str, type(None)))
                else camera_from_spec(self.camera_spec, self.vis.layout, w / h)
            )
        else:
            self._setup_window()
        try:
            self.path, why = choose_update_path(
                self.vis.cloud,
                self.tap,
                policy=self.policy,
                stats=self.stats,
                queue_mb=self.queue_mb,
                prefer=self.prefer_path,
            )
            self.say(f"glnet: update path: {self.path.name}" + (f" ({why})" if why else ""))
            if self.record:
                from .record import VideoWriter

                self.writer = VideoWriter(self.record, fps=self.fps)
        except BaseException:
            self._teardown_gl()
            raise

    def _render_thread(self) -> None:
        try:
            self._setup_gl()
        except BaseException as e:  # handed to start() on the caller's thread
            self._render_error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            self.run(lambda: self._closing.is_set())
        except BaseException as e:
            self._render_error = e
            self._stop.set()
            self.stop_reason = self.stop_reason or "renderer failed"
        finally:
            self._teardown_gl()

    # -- the trainer's side -----------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """What the cloud shows: ``activations``, ``gradients`` or ``weights`` (change since the start)."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, not {value!r}")
        self._mode = value
        if self.tap is not None:
            self.tap.grads = value == "gradients"

    @property
    def should_stop(self) -> bool:
        """True once the window was closed (or :meth:`request_stop` called): end the loop after this step."""
        return self._stop.is_set()

    def request_stop(self, reason: str = "stopped") -> None:
        """Ask the training loop to end after its current step (thread-safe)."""
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()

    @property
    def paused(self) -> bool:
        """While paused nothing is captured and the probe does not join the batch (benchmarks compare)."""
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self._paused = bool(value)
        if self.tap is not None:
            self.tap.armed = not self._paused
        if not self._paused:  # the next step's time starts now, not at the last step before the pause
            self._last_step_end = None
            self._first_forward = time.perf_counter()

    def _due(self, step: int) -> bool:
        return not self.paused and step % self.every == 0

    def _source(self) -> tuple[torch.Tensor | None, str]:
        """The packed frame to hand over for the current mode, and the mode it really shows."""
        tap = self.tap
        assert tap is not None
        if self._mode == "gradients" and tap.grad_flat is not None and any(tap.grad_filled):
            return tap.grad_flat, "gradients"
        if self._mode == "weights" and self._weights:
            return self._weight_change(), "weights"
        return (tap.flat if any(tap.filled) else None), "activations"

    def _weight_change(self) -> torch.Tensor:
        """Each output channel's neurons set to the relative change of that channel's filter since the start
        (||w - w0|| / ||w0||); layers without weights (pooling) stay 0."""
        tap = self.tap
        assert tap is not None
        if self._wflat is None:
            self._wflat = torch.zeros_like(tap.flat)
        views = tap._views(self._wflat)
        with torch.no_grad():
            for i, (w, w0) in self._weights.items():
                c = w0.shape[0]
                moved = (w.detach() - w0).reshape(c, -1).norm(dim=1)
                d = moved / w0.reshape(c, -1).norm(dim=1).clamp_min(1e-12)
                views[i].copy_(d.view(c, *([1] * (views[i].dim() - 1))).expand_as(views[i]))
        return self._wflat

    def step(
        self,
        loss: float | None = None,
        *,
        acc: float | None = None,
        samples: int | None = None,
        nonfinite_layer: str | None = None,
    ) -> None:
        """End of one training step: hand this step's probe capture to the renderer and record the numbers.

        Call it after ``optimizer.step()``. It never waits for the renderer. A non-finite ``loss`` is shown
        (HUD, NaN-coloured neurons) and raises :class:`NonFiniteError` naming the first layer whose probe
        values hold NaN/Inf (``nonfinite_layer`` overrides that name), unless ``keep_going``.
        """
        if not self._started:
            raise RuntimeError("Live.step() before start() (use it inside 'with glnet.live(...) as viz')")
        t0 = time.perf_counter()
        tap = self.tap
        assert tap is not None
        stats = self.stats
        k = stats.steps + 1  # this step's number, from 1
        captured = tap.captures > self._captures_seen
        self._captures_seen = tap.captures
        if tap.skipped and not self._warned_skip:
            self._warned_skip = True
            self.say(
                f"glnet: note: the probe {tuple(self.probe.shape[1:])} does not fit the model's training "
                "input (first positional argument, same per-sample shape): nothing is captured"
            )
        if samples is None and captured and tap.batch:
            samples = tap.batch - 1
        if samples:
            stats.batch = stats.batch or int(samples)
            stats.samples += int(samples)
        note = ""
        bad = loss is not None and not math.isfinite(float(loss))
        if bad:
            layer = nonfinite_layer or (tap.first_nonfinite() if captured else None)
            where = (
                f"first non-finite values in layer {layer!r}" if layer else "no captured layer holds NaN/Inf"
            )
            note = f"loss {float(loss)} at step {k}: {where}"
            stats.nonfinite.append({"step": k, "loss": str(float(loss)), "layer": layer})
            self.note = note
        if loss is not None:
            stats.loss.append(float(loss))
        if acc is not None:
            stats.acc.append(float(acc))
        if captured and self.path is not None and not self.paused:
            src, shown = self._source()
            if src is not None:
                meta = FrameMeta(k, shown, None if loss is None else float(loss), acc, note)
                with self._path_lock:  # the render thread may be closing the path (window closed)
                    if self.path is not None:
                        self.path.publish(src, meta)
        stats.steps = k
        now = time.perf_counter()
        start = self._last_step_end if self._last_step_end is not None else (self._first_forward or t0)
        stats.step_ms.append((now - start) * 1e3)
        hook_s = tap.seconds - self._tap_seconds_seen
        self._tap_seconds_seen = tap.seconds
        stats.glnet_ms.append((now - t0 + hook_s) * 1e3)
        self._last_step_end = now
        if samples:
            self._samples_window.append((now, int(samples)))
        tap.grads = self._mode == "gradients"
        tap.armed = self._due(k)
        if bad and not self.keep_going:
            raise NonFiniteError(f"training stopped: {note}", layer=layer, step=k)

    def samples_per_s(self) -> float | None:
        """Training samples per second over the last steps."""
        w = self._samples_window
        if len(w) < 2:
            return None
        dt = w[-1][0] - w[0][0]
        return sum(n for _, n in list(w)[1:]) / dt if dt > 0 else None

    # -- the renderer's side -----------------------------------------------------------------------------
    def _hud_lines(self, camera: Camera, meta: FrameMeta | None) -> list[str]:
        assert self.vis is not None
        m = meta or self._shown
        total = f"/{self.total_steps}" if self.total_steps else ""
        step = f"step {m.step}{total}" if m else "before training"
        loss = f"loss {m.loss:.4g}" if m and m.loss is not None else ""
        acc = f"acc {m.acc:.2f}" if m and m.acc is not None else ""
        sps = self.samples_per_s()
        head = "  ·  ".join(p for p in (self.title, step, loss, acc) if p)
        state = "  ·  ".join(
            p
            for p in (
                f"{sps:.1f} samples/s" if sps else "",
                f"showing {m.mode if m else 'activations'} (1/2/3, G, Shift+W)",
                (f"stopped: {self.stop_reason}" if self.stop_reason else "finished")
                if self.finished
                else ("stopping" if self.should_stop else ""),
            )
            if p
        )
        layer = self.vis.hud_lines(camera, None)[1:3]
        path = self.path.name if self.path else ""
        tail = f"update path: {path}  ·  frames {self.stats.frames}  ·  dropped {self.stats.dropped}"
        if self._frame_ms is not None:
            tail += f"  ·  frame {self._frame_ms:.0f} ms"
        lines = [head, state, *layer, tail]
        note = (m.note if m else "") or ""
        if note:
            lines.append("NaN/Inf: " + note)
        return lines

    def _curves(self) -> dict[str, Sequence[float]]:
        n = self._shown.step if self._shown else 0
        curves: dict[str, Sequence[float]] = {"loss": _thin(self.stats.loss[:n])}
        if self.stats.acc:
            curves["accuracy"] = _thin(self.stats.acc[:n])
        return curves

    def _refresh_panels(self, mode: str) -> None:
        """Weight panels: the change since the start in weights mode (at most once a second), otherwise the
        current weights (every 10 s); read on the render thread while the trainer may be writing them."""
        assert self.vis is not None
        now = time.perf_counter()
        interval = 1.0 if mode == "weights" else 10.0
        if mode == self._panels_mode and now - self._panels_at < interval:
            return
        self._panels_at, self._panels_mode = now, mode
        cloud = self.vis.cloud
        for i in list(cloud.weights):
            pair = self._weights.get(i)
            if pair is None:
                continue
            w, w0 = pair
            with torch.no_grad():
                data = (w.detach() - w0) if mode == "weights" else w.detach()
                if data.device.type != "cpu":
                    self.stats.range_bytes_to_host += data.numel() * data.element_size()
                cloud.set_weight(i, data)

    def _draw(self, target: Any) -> FrameMeta | None:
        """Present the next waiting frame (if any) and draw one frame into ``target``."""
        assert self.vis is not None and self.path is not None and self.camera is not None
        self.vis.cloud.flush()  # uploads still queued (the first capture) must land before this frame's copy
        meta = self.path.present()
        if meta is not None:
            self.stats.frames += 1
            self._shown = meta
            self.vis.ranges = [layer.range for layer in self.vis.cloud.layers]
            if self._weights and self.vis.cloud.weights:
                self._refresh_panels(meta.mode)
        t0 = time.perf_counter()
        lines = self._hud_lines(self.camera, meta)
        self.vis.render(self.camera, target, hud=lines, curves=self._curves(), finish=True)
        ms = (time.perf_counter() - t0) * 1e3
        self._frame_ms = ms if self._frame_ms is None else 0.8 * self._frame_ms + 0.2 * ms
        return meta

    def render_once(self) -> FrameMeta | None:
        """Draw one headless frame now (render thread; tests and scripted use); writes it to the video."""
        meta = self._draw(self._fb)
        if meta is not None and self.writer is not None:
            self.writer.write(self._fb.read_rgba())
        return meta

    def run(self, until: Callable[[], bool]) -> None:
        """The render loop (render thread): draw each frame handed over until ``until()`` is true and, when
        recording, every queued frame is drawn. In a window, until the window is closed."""
        if not self.headless:
            self._run_window(until)
            return
        path = self.path
        assert path is not None
        while True:
            if path.ready():
                self.render_once()
                continue
            if until() and not path.pending():
                break
            path.ring.wait(0.02)

    # -- window ---------------------------------------------------------------------------------------------
    def _setup_window(self) -> None:
        from vispy import app

        from .app import Viewer

        assert self.trace is not None
        v = Viewer(
            self.trace, size=self.size, renderer=self.renderer, title=f"glnet - {self.title} (training)"
        )
        self.viewer, self.ctx, self.vis, self.camera = v, v.ctx, v.vis, v.camera
        ev = v.canvas.events
        ev.draw.disconnect(v._on_draw)
        ev.draw.connect(self._on_window_draw)
        ev.key_press.disconnect()
        ev.key_press.connect(self._on_window_key)
        ev.close.connect(self._on_window_close, position="first")
        self._timer = app.Timer(1 / 120, connect=self._on_window_tick, app=v.app, start=False)

    def _run_window(self, until: Callable[[], bool]) -> None:
        self._until = until
        self._timer.start()
        self.viewer.app.run()

    def _on_window_tick(self, _event: Any) -> None:
        v = self.viewer
        if v.closed:
            return
        if self.path is not None and self.path.ready():
            v.request_draw()
        done = self._until()
        if done and not self.finished:
            self.finished = True
            v.request_draw()
        if (
            done
            and self.render_mode == "thread"
            and not self.hold
            and not (self.path and self.path.pending())
        ):
            v.canvas.close()

    def _on_window_draw(self, _event: Any) -> None:
        v = self.viewer
        w, h = v.screen.width, v.screen.height
        if w == 0 or h == 0 or v.closed:
            return
        meta = self._draw(v.screen)
        v.frames += 1
        if meta is not None and self.writer is not None:
            from OpenGL import GL

            px = np.empty((h, w, 4), np.uint8)
            GL.glReadPixels(0, 0, w, h, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, px)
            self.writer.write(px[::-1])

    def _on_window_key(self, event: Any) -> None:
        key = event.key.name.lower() if event.key is not None else ""
        shift = any(getattr(m, "name", str(m)).lower() == "shift" for m in (event.modifiers or ()))
        mode = {"1": "activations", "2": "gradients", "3": "weights"}.get(key)
        if key == "g":
            mode = "activations" if self._mode == "gradients" else "gradients"
        elif key == "w" and shift:
            mode = "activations" if self._mode == "weights" else "weights"
        if mode is not None:
            self.mode = mode
            self.say(f"glnet: showing {mode}")
            return
        self.viewer._on_key(event, True)

    def _on_window_close(self, _event: Any) -> None:
        self.request_stop("window closed")
        self._timer.stop()
        self.viewer.canvas.set_current()
        self._close_path()

    # -- shutting down ------------------------------------------------------------------------------------
    def _close_path(self) -> None:
        """Release the update path's GL/CUDA side (render thread, context current); the trainer sees None."""
        with self._path_lock:
            path, self.path = self.path, None
        if path is not None:
            path.close()

    def _teardown_gl(self) -> None:
        """Release the video, the update path and GL (render thread)."""
        try:
            if self.writer is not None:
                self.writer.close()
        finally:
            if self.viewer is not None:
                if not self.viewer.closed:
                    self.viewer.canvas.close()
            elif self.ctx is not None and not self.ctx.closed:
                self.ctx.make_current()
                try:
                    self._close_path()
                    if self._fb is not None:
                        self._fb.delete()
                    if self.vis is not None:
                        self.vis.close()
                finally:
                    self.ctx.close()

    def close(self) -> None:
        """Draw what is queued (when recording), close the video and GL, and remove every hook; idempotent."""
        if self._closed or not self._started:
            return
        self._closed = True
        self.finished = True
        try:
            if self._thread is not None:
                self._closing.set()
                self._thread.join()
            elif self.ctx is not None:
                self._teardown_gl()
        finally:
            if self.tap is not None:
                self.tap.remove()
        if self._render_error is not None and not isinstance(self._render_error, KeyboardInterrupt):
            raise self._render_error


def live(model: nn.Module, probe: torch.Tensor, **options: Any) -> Live:
    """Draw ``model`` live while your loop trains it: ``with glnet.live(model, x) as v: ... v.step(loss)``.

    ``probe`` is the one sample the cloud shows (with or without its batch dimension). Options (see
    :class:`Live`): ``target`` (the probe's label, for its gradients), ``every`` (draw every K steps),
    ``mode``, ``headless`` (default: no display), ``record`` (a video with one frame per drawn step),
    ``size``, ``fps``, ``renderer``, ``camera``, ``keep_going``, ``queue_mb``, ``update_path``, ``hold``
    (keep the window open after the loop until it is closed).
    """
    return Live(model, probe, **options)


# ---------------------------------------------------------------------------------------------------------
# glnet train: the trainer behind the command line
# ---------------------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Options of ``glnet train`` (see ``glnet train --help``)."""

    model: str | nn.Module
    data: str = "synthetic"
    device: str | None = None  # cuda when available
    batch: int = 32
    lr: float | None = None  # 1e-3 for AdamW, 0.05 for SGD
    optimizer: str = "adamw"
    steps: int = 100
    every: int = 1
    headless: bool = False
    record: str | None = None
    save: str | None = None
    stats_json: str | None = None
    image_size: int | None = None  # 64 on CPU, 224 on CUDA
    keep_going: bool = False
    weights: str | None = None
    seed: int = 0
    size: tuple[int, int] = (1280, 720)
    renderer: str = "auto"
    mode: str = "activations"
    fps: float = 15.0
    camera: str | None = None
    workers: int | None = None
    queue_mb: float = 256.0
    update_path: str = "auto"
    model_name: str = ""
    on_step: Callable[[int, Live], None] | None = None  # called after each step (tests, scripts)


def fit_classifier(model: nn.Module, num_classes: int, example: torch.Tensor) -> str | None:
    """Make ``model`` predict ``num_classes`` classes: replace the last Linear (or 1x1 conv) layer that
    produces its output width with a fresh one. Returns the replaced module's name (None if it fits)."""
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = _first_tensor(model(example))
    finally:
        model.train(was_training)
    if out is None or out.dim() < 2:
        raise ModelError("the model's output is not a batch of class scores; glnet train needs a classifier")
    width = int(out.shape[1])
    if width == num_classes:
        return None
    found: tuple[str, nn.Module] | None = None
    for name, m in model.named_modules():
        if (isinstance(m, nn.Linear) and m.out_features == width) or (
            isinstance(m, nn.Conv2d) and m.out_channels == width and m.kernel_size == (1, 1)
        ):
            found = (name, m)
    if found is None:
        raise ModelError(
            f"the model predicts {width} classes and glnet cannot find its classifier layer to give it "
            f"{num_classes}; build it with num_classes={num_classes}"
        )
    name, old = found
    ref = old.weight
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    else:
        new = nn.Conv2d(old.in_channels, num_classes, 1, bias=old.bias is not None)  # type: ignore[attr-defined]
    new = new.to(device=ref.device, dtype=ref.dtype)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)
    return name


def find_nonfinite(model: nn.Module, x: torch.Tensor) -> str | None:
    """The first module, in call order, whose output for batch ``x`` holds NaN/Inf (None if none does).

    Runs one extra forward without gradients in the model's current mode; BatchNorm statistics are restored.
    Used only after a non-finite loss, so its host syncs do not matter.
    """
    if not bool(torch.isfinite(x).all()):
        return "the input batch"
    saved = {k: v.detach().clone() for k, v in model.named_buffers()}
    first: list[str] = []
    handles = []

    def hook(name: str) -> Callable[..., None]:
        def on_forward(_m: nn.Module, _a: Any, out: Any) -> None:
            t = _first_tensor(out)
            if not first and t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                first.append(name)

        return on_forward

    try:
        for name, m in model.named_modules():
            if name and not any(True for _ in m.children()):
                handles.append(m.register_forward_hook(hook(name)))
        with torch.no_grad():
            model(x)
    except Exception:
        pass  # the diagnosis is best effort; the loss itself already says training failed
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for k, v in model.named_buffers():
                if k in saved:
                    v.copy_(saved[k])
    if first:
        return first[0]
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            return f"{name} (a parameter)"
    return None


def save_checkpoint(
    path: str | os.PathLike[str], model: nn.Module, optimizer: torch.optim.Optimizer | None, **meta: Any
) -> Path:
    """Write model (and optimizer) state and ``meta`` atomically; loads with ``torch.load(weights_only=True)``
    and :func:`glnet.models.load_weights`."""
    p = Path(path)
    if p.parent != Path(""):
        p.parent.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **meta}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    tmp = p.with_name(p.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, p)
    return p


def _batches(loader_factory: Callable[[int], Any]) -> Iterator[Any]:
    epoch = 0
    while True:
        got = False
        for batch in loader_factory(epoch):
            got = True
            yield batch
        if not got:
            raise InputError("the training data yielded no batch (is the data set smaller than --batch?)")
        epoch += 1


@dataclass
class _TrainState:
    step: int = 0
    error: BaseException | None = None
    done: bool = False
    stopped: str = "completed"


def train(cfg: TrainConfig, *, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data`` with the cloud drawn live; returns the ``--stats-json`` figures.

    Training runs in a worker thread; GL (the window or the headless frames and video) stays on this one.
    Ctrl-C or closing the window ends training after the current step; the checkpoint (``cfg.save``) is
    written at the end, on interrupt and when training stops on a non-finite loss (the weights from before
    that step). Raises :class:`NonFiniteError` or :class:`OutOfMemoryError` after writing it.
    """
    from .data import make_dataset, make_loader
    from .gpu.context import configure_platform, has_display

    say = say or _say_stderr
    t_start = time.perf_counter()
    for name, value in (("--steps", cfg.steps), ("--batch", cfg.batch), ("--every", cfg.every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, not {value!r}")
    if cfg.optimizer not in ("adamw", "sgd"):
        raise InputError(f"--optimizer must be adamw or sgd, not {cfg.optimizer!r}")
    lr = cfg.lr if cfg.lr is not None else (1e-3 if cfg.optimizer == "adamw" else 0.05)
    if not (lr > 0 and math.isfinite(lr)):
        raise InputError(f"--lr must be a positive number, not {lr!r}")
    if cfg.mode not in MODES:
        raise InputError(f"--mode must be one of {', '.join(MODES)}")
    device_name = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but torch sees no CUDA device (try --device cpu)")
    try:
        device = torch.device(device_name)
    except RuntimeError as e:
        raise InputError(f"unknown device {device_name!r}") from e
    image_size = cfg.image_size or (224 if device.type == "cuda" else 64)
    if not 16 <= image_size <= 1024:
        raise InputError(f"--image-size must be between 16 and 1024 pixels, not {image_size}")
    headless = cfg.headless or not has_display()
    configure_platform(headless=headless)  # before anything imports OpenGL

    torch.manual_seed(cfg.seed)
    data = make_dataset(cfg.data, image_size, train=True, seed=cfg.seed)
    probe_set = make_dataset(cfg.data, image_size, train=False, seed=cfg.seed)
    probe, probe_label = probe_set[0]
    num_classes = int(data.num_classes)
    if isinstance(cfg.model, nn.Module):
        model, name = cfg.model.to(device), cfg.model_name or type(cfg.model).__name__
    else:
        from .models import load_model

        spec = load_model(cfg.model, input_size=image_size, device=device, seed=cfg.seed)
        if spec.family not in ("classification", "custom"):
            raise ModelError(f"glnet train trains image classifiers; {spec.name} is a {spec.family} model")
        model, name = spec.model, spec.name
    if isinstance(model, torch.jit.ScriptModule):
        raise ModelError("glnet train needs an nn.Module; TorchScript models take no hooks")
    replaced = fit_classifier(model, num_classes, probe[None].to(device))
    if replaced:
        say(f"glnet: {name}: new classifier {replaced!r} for the {num_classes} classes of {cfg.data}")
    if cfg.weights:
        from .models import load_weights

        load_weights(model, cfg.weights, name)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    workers = (
        cfg.workers
        if cfg.workers is not None
        else (min(4, os.cpu_count() or 1) if device.type == "cuda" else 0)
    )
    batches = _batches(
        lambda epoch: make_loader(data, cfg.batch, shuffle=True, seed=cfg.seed + epoch, num_workers=workers)
    )

    viz = Live(
        model,
        probe,
        target=int(probe_label),
        every=cfg.every,
        mode=cfg.mode,
        headless=headless,
        record=cfg.record,
        size=cfg.size,
        fps=cfg.fps,
        renderer=cfg.renderer,
        camera=cfg.camera,
        keep_going=cfg.keep_going,
        queue_mb=cfg.queue_mb,
        update_path=cfg.update_path,
        title=name,
        total_steps=cfg.steps,
        render="caller",
        say=say,
    )
    viz.start()
    say(
        f"glnet: training {name} on {device} ({cfg.data}, {num_classes} classes, {image_size}px, "
        f"batch {cfg.batch}, {cfg.optimizer} lr {lr:g}) for {cfg.steps} steps; "
        "the cloud shows sample 0 of the held-out split"
    )
    state = _TrainState()
    criterion = nn.CrossEntropyLoss()
    progress_every = max(1, min(10, cfg.steps // 6 or 1))

    def loop() -> None:
        try:
            for k in range(1, cfg.steps + 1):
                if viz.should_stop:
                    state.stopped = viz.stop_reason or "stopped"
                    break
                x, y = next(batches)
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                try:
                    out = model(x)
                    loss = criterion(out, y)
                    lv, av = torch.stack(
                        [loss.detach().float(), (out.argmax(1) == y).float().mean()]
                    ).tolist()
                    if not math.isfinite(lv):
                        layer = find_nonfinite(model, x)
                        opt.zero_grad(set_to_none=True)
                        viz.step(
                            loss=lv, acc=av, samples=len(y), nonfinite_layer=layer
                        )  # raises unless keep_going
                        state.step = k
                        continue  # keep going: this step's update is skipped, the weights stay finite
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                except torch.OutOfMemoryError as e:
                    raise OutOfMemoryError(
                        f"out of memory training {name} on {device} with batch {cfg.batch} "
                        f"at {image_size}px: "
                        f"try --batch {max(1, cfg.batch // 2)}"
                    ) from e
                viz.step(loss=lv, acc=av, samples=len(y))
                state.step = k
                if cfg.on_step is not None:
                    cfg.on_step(k, viz)
                if k % progress_every == 0 or k == cfg.steps:
                    sps = viz.samples_per_s()
                    say(
                        f"glnet: step {k}/{cfg.steps}  loss {lv:.3f}  acc {av:.2f}  "
                        f"{sps or 0:.1f} samples/s  frames {viz.stats.frames}"
                    )
        except BaseException as e:  # handed to the main thread
            state.error = e
            if isinstance(e, NonFiniteError):
                state.stopped = "non-finite loss"
            elif isinstance(e, OutOfMemoryError):
                state.stopped = "out of memory"
            else:
                state.stopped = "failed"
            viz.request_stop(state.stopped)
        finally:
            state.done = True
            viz.finished = True
            if not viz.headless and not viz.should_stop:
                say("glnet: training finished; fly on, close the window to exit")

    worker = threading.Thread(target=loop, name="glnet-train", daemon=True)
    interrupted = False
    worker.start()
    try:
        try:
            viz.run(lambda: state.done)
        except KeyboardInterrupt:
            interrupted = True
            viz.request_stop("interrupted")
            say("glnet: interrupted: finishing the current step, then writing the checkpoint")
            while worker.is_alive():
                try:
                    worker.join()
                except KeyboardInterrupt:
                    say("glnet: still finishing the current step ...")
            if viz.headless:
                viz.run(lambda: True)  # draw what was queued, so the video ends at the last step
        worker.join()
        if interrupted:
            state.stopped = "interrupted"
        elif viz.stop_reason and state.stopped == "completed" and state.step < cfg.steps:
            state.stopped = viz.stop_reason
    finally:
        try:
            viz.close()
        finally:
            checkpoint = None
            if cfg.save and state.step > 0:
                checkpoint = save_checkpoint(
                    cfg.save,
                    model,
                    opt,
                    step=state.step,
                    arch=name,
                    num_classes=num_classes,
                    classes=list(data.classes),
                    image_size=image_size,
                    stopped=state.stopped,
                )
                say(f"glnet: checkpoint at step {state.step} written to {checkpoint}")
    summary = viz.stats.summary()
    result = {
        **summary,
        "model": name,
        "device": str(device),
        "data": cfg.data,
        "batch": cfg.batch,
        "image_size": image_size,
        "optimizer": cfg.optimizer,
        "lr": lr,
        "every": cfg.every,
        "mode": cfg.mode,
        "stopped": state.stopped,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "video": str(cfg.record) if cfg.record else None,
        "wall_s": round(time.perf_counter() - t_start, 3),
    }
    if cfg.stats_json:
        p = Path(cfg.stats_json)
        if p.parent != Path(""):
            p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if state.error is not None:
        raise state.error
    if interrupted:
        raise KeyboardInterrupt
    return result
