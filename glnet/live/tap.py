"""The probe tap: persistent hooks that copy one sample's row of every drawn layer, once per armed forward.

The probe *rides along* as one extra, last row of a training batch (appended by a pre-hook on the root module,
stripped from the output again, so ``model(x)`` still returns ``len(x)`` rows): no extra forward. Trainer side
only: no GL, no viewer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..capture import LayerRecord, first_tensor, model_device, to_canonical
from ..errors import CaptureError
from ..gpu.cloud import BYTES_PER_NEURON, layer_offsets
from .handover import NO_GRAD, TOP_K

__all__ = ["ProbeTap", "split_call"]


def split_call(name: str) -> tuple[str, int]:
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
        items = {k: _strip_rows(v, batch, swap) for k, v in obj.items()}
        try:
            return type(obj)(**items)  # a ModelOutput takes its fields as keywords
        except TypeError:
            return type(obj)(items.items())
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
        self.device = torch.device(device) if device is not None else model_device(model)
        self.flat = torch.zeros(self.nbytes // BYTES_PER_NEURON, dtype=torch.float32, device=self.device)
        self.views = self.views_of(self.flat)
        self.grad_flat: torch.Tensor | None = None
        self.grad_views: list[torch.Tensor] = []
        self.ride_along = ride_along
        self.ride_label: torch.Tensor | None = None  # the probe's label, for a ``labels`` keyword argument
        self.labelled = False  # this forward's ``labels`` carry the probe's label
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
        self.probe_output: torch.Tensor | None = None  # the probe's row of the model output, last capture
        self._targets: dict[str, dict[int, list[int]]] = {}
        for i, r in enumerate(self.layers):
            module, call = split_call(r.shown or r.name)
            self._targets.setdefault(module, {}).setdefault(call, []).append(i)
        self._counts: dict[str, int] = {}
        self._handles: list[Any] = []
        self._params: list[torch.Tensor | None] | None = None  # each layer's module weight (see weights())
        self._norm_index: tuple[tuple[int, ...], torch.Tensor] | None = None

    def views_of(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """One (C, H, W) view per layer into a flat tensor laid out like :attr:`flat`."""
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
            self.grad_views = self.views_of(self.grad_flat)
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
            self._handles.append(self.model.register_forward_pre_hook(self._on_root_pre, with_kwargs=True))
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
    def _input(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, str | None]:
        """The batch the probe joins: the first positional argument, else (a ``model(**inputs)`` call, as
        the Hugging Face Trainer makes) the first keyword tensor with the probe's per-sample shape."""
        if args:
            return args[0], None
        shape = tuple(self.ride_along.shape[1:]) if self.ride_along is not None else None
        for k, v in kwargs.items():
            if isinstance(v, torch.Tensor) and v.dim() >= 1 and tuple(v.shape[1:]) == shape:
                return v, k
        return None, None

    def _extend(self, kwargs: dict[str, Any], skip: str | None, n: int) -> dict[str, Any]:
        """The other batch-sized keyword tensors one row longer: ``labels`` gets the probe's label
        (:attr:`ride_label`), the rest (masks and the like) repeat their last row."""
        out = dict(kwargs)
        for k, v in kwargs.items():
            if k == skip or not isinstance(v, torch.Tensor) or v.dim() < 1 or v.shape[0] != n:
                continue
            extra = v[-1:]
            if k == "labels" and self.ride_label is not None and v.dim() == 1:
                extra = self.ride_label.to(v.device, v.dtype).reshape(1)
                self.labelled = True  # the probe's loss is in the model's own loss: no injection
            out[k] = torch.cat([v, extra])
        return out

    def _on_root_pre(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        self._counts.clear()
        self.active = False
        if not self.armed or not self.when(module):
            return None
        t0 = time.perf_counter()
        try:
            new_args = None
            self.labelled = False
            x, key = self._input(args, kwargs)
            if self.ride_along is not None:
                if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != tuple(self.ride_along.shape[1:]):
                    self.skipped += 1
                    return None
                p = self._probe_cache
                if p is None or p.device != x.device or p.dtype != x.dtype:
                    p = self._probe_cache = self.ride_along.to(x.device, x.dtype)
                joined = torch.cat([x, p])
                kwargs = self._extend(kwargs, key, x.shape[0])
                if key is None:
                    new_args = ((joined, *args[1:]), kwargs)
                else:
                    new_args = (args, {**kwargs, key: joined})
                self.batch = x.shape[0] + 1
            else:
                t = first_tensor(args)
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
            first = first_tensor(output)
            if first is not None and first.dim() >= 1 and first.shape[0] == batch:
                self.probe_output = first[-1].detach()  # a view: the logits' top-5 go to the viewer
            if (
                self.inject is not None
                and not self.labelled
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
            out = first_tensor(output)
            if out is not None and out.dim() >= 1 and out.shape[0] == self.batch:
                row = out[self.probe_index]
                for i in wanted:
                    r = self.layers[i]
                    if row.numel() != r.neurons:
                        continue
                    self.views[i].copy_(to_canonical(row, r.grid, r.channels_last))
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
                self.grad_views[i].copy_(to_canonical(g[self.probe_index], r.grid, r.channels_last))
                self.grad_filled[i] = True
            self.seconds += time.perf_counter() - t0

        return on_grad

    def weights(self) -> list[torch.Tensor | None]:
        """Each layer's module weight (``module.weight``, the parameter itself), None where it has none."""
        if self._params is None:
            modules = dict(self.model.named_modules())
            params: list[torch.Tensor | None] = []
            for r in self.layers:
                module = self._module(modules, split_call(r.name)[0])
                w = getattr(module, "weight", None) if module is not None else None
                params.append(w if isinstance(w, torch.Tensor) and w.requires_grad else None)
            self._params = params
        return self._params

    def top_k(self, k: int = TOP_K) -> torch.Tensor:
        """The probe's top ``k`` classes as one tensor ``[index x k, probability x k]`` on the model's device
        (no host sync); -1 throughout when the output is not a class vector."""
        out = torch.full((2 * k,), -1.0, dtype=torch.float32, device=self.device)
        logits = self.probe_output
        if logits is None or logits.dim() != 1 or logits.numel() < 2 or not logits.is_floating_point():
            return out
        p, i = torch.softmax(logits.float(), 0).topk(min(k, logits.numel()))
        out[: len(i)] = i.to(torch.float32)
        out[k : k + len(p)] = p
        return out

    def grad_norms(self) -> torch.Tensor:
        """(L,) float32 on :attr:`device`: the L2 norm of each layer's ``module.weight.grad`` (bias
        excluded), :data:`~glnet.live.handover.NO_GRAD` where it has none; no host sync (one fused norm)."""
        have = [(i, w.grad) for i, w in enumerate(self.weights()) if w is not None and w.grad is not None]
        have = [(i, g) for i, g in have if g.layout == torch.strided]
        out = torch.full((len(self.layers),), NO_GRAD, dtype=torch.float32, device=self.device)
        if have:
            idx = tuple(i for i, _ in have)
            if self._norm_index is None or self._norm_index[0] != idx:
                self._norm_index = (idx, torch.tensor(idx, dtype=torch.long, device=self.device))
            norms = torch._foreach_norm([g.detach() for _, g in have])
            out[self._norm_index[1]] = torch.stack([n.to(self.device, torch.float32) for n in norms])
        return out

    def first_nonfinite(self, grads: bool = False) -> str | None:
        """The first layer whose captured probe row holds NaN/Inf (a host sync a layer: failures only)."""
        views = self.grad_views if grads else self.views
        if not views:
            return None
        for r, v, ok in zip(self.layers, views, self.grad_filled if grads else self.filled, strict=True):
            if ok and not bool(torch.isfinite(v).all()):
                return r.name
        return None
