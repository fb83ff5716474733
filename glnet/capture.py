"""Capture: run a model once with forward hooks and record every layer's output, shape and weights.

A *layer* is, by default, every Conv, Linear and pooling module call; its neurons are every element of its
output for one sample, and the value shown is the output of the activation that directly follows it (through
normalisation/dropout modules) where there is one. ``granularity="leaf"`` records every leaf module call.

Hooks live only inside :func:`capture`: they are removed, and the model's train/eval state restored, even
when the forward raises. Outputs are cloned inside the hook, so in-place ops that run later (``ReLU(inplace)``
or ``out += identity``) cannot change what was recorded; data stays on the model's device.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from .errors import CaptureError, InputError, OutOfMemoryError
from .graph import DataFlow, layer_edges

__all__ = [
    "Granularity",
    "LayerRecord",
    "Trace",
    "capture",
    "first_tensor",
    "layer_geometry",
    "layer_kind",
    "model_device",
    "to_canonical",
]

Granularity = Literal["layer", "leaf"]

_CONV = (nn.modules.conv._ConvNd,)
_LINEAR = (nn.Linear, nn.Bilinear)
_POOL = (
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._LPPoolNd,
)
_NORM = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.modules.dropout._DropoutNd,
    nn.Identity,
)
_ACT_NAMES = {
    "ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish",
    "Hardswish", "Hardsigmoid", "Hardtanh", "Sigmoid", "Tanh", "Softplus", "Softsign", "Tanhshrink",
    "LogSigmoid", "Threshold", "GLU", "Softmax", "LogSoftmax",
}  # fmt: skip
_CONV_NAMES = {"Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"}
_LINEAR_NAMES = {"Linear", "Bilinear", "LazyLinear", "NonDynamicallyQuantizableLinear"}
_NORM_NAMES = {
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "GroupNorm", "LayerNorm", "LayerNorm2d", "InstanceNorm1d",
    "InstanceNorm2d", "InstanceNorm3d", "LocalResponseNorm", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d",
    "AlphaDropout", "Identity",
}  # fmt: skip


def layer_kind(module_or_type: nn.Module | str) -> str:
    """Classify a module (or its class name, for TorchScript) as conv, linear, pool, norm, act or other."""
    if isinstance(module_or_type, str):
        name = module_or_type
        if name in _CONV_NAMES:
            return "conv"
        if name in _LINEAR_NAMES:
            return "linear"
        if "Pool" in name:
            return "pool"
        if name in _NORM_NAMES:
            return "norm"
        return "act" if name in _ACT_NAMES else "other"
    m = module_or_type
    if isinstance(m, _CONV):
        return "conv"
    if isinstance(m, _LINEAR):
        return "linear"
    if isinstance(m, _POOL):
        return "pool"
    if isinstance(m, _NORM):
        return "norm"
    if type(m).__name__ in _ACT_NAMES or type(m).__module__ == "torch.nn.modules.activation":
        return "act"
    return layer_kind(type(m).__name__)


@dataclass
class LayerRecord:
    """One recorded layer: its output for one sample, in canonical (C, H, W) order for the layout."""

    name: str
    module_type: str
    kind: str
    shape: tuple[int, ...]  # per-sample output shape, as the module produced it
    grid: tuple[int, int, int]  # (C, H, W) the layout tiles: channels x rows x columns
    value: torch.Tensor  # float32, contiguous, shape == grid, on the model's device
    weight: torch.Tensor | None = None  # the module's weight (a detached reference, not a copy)
    shown: str | None = None  # name of the activation whose output is shown, when one follows
    shown_type: str | None = None  # that activation's class name, e.g. "ReLU"
    channels_last: bool = False
    raw: torch.Tensor | None = None  # the layer module's own output (before its norm/activation), as value
    geometry: dict[str, Any] | None = None  # kernel/stride/padding/dilation (conv, pool) or {"global": True}

    @property
    def neurons(self) -> int:
        return math.prod(self.grid)


@dataclass
class Trace:
    """Everything one capture recorded, in forward order."""

    layers: list[LayerRecord]
    output: Any
    input: torch.Tensor  # the sample, (1, ...) on the model's device
    granularity: Granularity = "layer"
    model_name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    edges: list[tuple[int, int]] = field(default_factory=list)  # (producer, consumer) indices into layers

    @property
    def neurons(self) -> int:
        return sum(r.neurons for r in self.layers)

    @property
    def device(self) -> torch.device:
        return self.input.device

    def layer(self, name: str) -> LayerRecord:
        for r in self.layers:
            if r.name == name:
                return r
        raise KeyError(name)


@dataclass
class _Call:
    name: str
    module: nn.Module | None
    type_name: str
    kind: str
    output: Any  # cloned per-sample tensor (or None when not kept)
    shape: tuple[int, ...]
    input_from: int | None
    channels_last: bool
    sources: frozenset[int] = frozenset()  # earlier calls any of its inputs was computed from


def first_tensor(obj: Any) -> torch.Tensor | None:
    """The first tensor in a (nested) model output: a tensor, tuple, list or dict."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        for o in obj:
            t = first_tensor(o)
            if t is not None:
                return t
    if isinstance(obj, dict):
        for o in obj.values():
            t = first_tensor(o)
            if t is not None:
                return t
    return None


def _per_sample(t: torch.Tensor, batch: int, sample: int) -> torch.Tensor:
    if t.dim() >= 1 and t.shape[0] == batch:
        return t[sample]
    return t


def canonical_grid(
    shape: Sequence[int], kind: str, type_name: str, channels_last: bool
) -> tuple[int, int, int]:
    """Map a per-sample shape onto (C, H, W): channels tiled in a grid, each an H x W sheet."""
    s = tuple(int(d) for d in shape)
    if len(s) == 0:
        return (1, 1, 1)
    if len(s) == 1:
        return (s[0], 1, 1)
    if channels_last:
        if len(s) == 2:
            return (s[1], s[0], 1)  # tokens x channels (ViT): each channel a column of tokens
        return (s[-1] * math.prod(s[:-3]), s[-3], s[-2])  # (..., H, W, C) -> (C x ..., H, W)
    if len(s) == 2:
        if kind == "conv" or type_name.endswith("1d"):
            return (s[0], 1, s[1])  # Conv1d: channels x length, each channel a row
        return (s[1], s[0], 1)  # tokens x channels
    return (math.prod(s[:-2]), s[-2], s[-1])


def to_canonical(t: torch.Tensor, grid: tuple[int, int, int], channels_last: bool) -> torch.Tensor:
    """One sample's output in the layout's (C, H, W) order, float32 and contiguous."""
    t = t.detach()
    if t.dim() >= 2 and channels_last:
        t = t.movedim(-1, 0)
    elif t.dim() == 2 and grid[2] == 1 and grid[1] == t.shape[0]:
        t = t.t()  # tokens x channels -> channels x tokens
    return t.reshape(grid).to(torch.float32).contiguous()


def _channels_last_out(
    module: nn.Module | None, type_name: str, kind: str, out_dim: int, inherited: bool
) -> bool:
    if out_dim < 2:
        return False
    if kind in ("conv", "pool") or type_name.startswith("BatchNorm"):
        return False
    if type_name == "Permute" and module is not None:
        dims = list(getattr(module, "dims", []))
        return len(dims) >= 3 and dims[-1] == 1
    if type_name in ("Linear", "LayerNorm", "NonDynamicallyQuantizableLinear") and out_dim >= 3:
        return True  # these act on the last dimension: it holds the channels
    if type_name in ("Linear", "NonDynamicallyQuantizableLinear", "LayerNorm") and out_dim == 2:
        return True  # tokens x channels
    return inherited


class _Recorder:
    """Hook state for one capture; one per call, so concurrent captures of different models cannot mix."""

    def __init__(self, batch: int, sample: int, keep: Callable[[str], bool]) -> None:
        self.batch = batch
        self.sample = sample
        self.keep = keep
        self.calls: list[_Call] = []
        self.alive: list[
            torch.Tensor
        ] = []  # keeps outputs alive so their memory (and data_ptr) is not reused
        self.producer: dict[int, int] = {}
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stack: list[int] = []  # calls recorded when each open module call began
        self.flow = DataFlow()  # the data-flow graph, followed while the forward runs
        self.inputs: list[frozenset[int]] = []  # where each open module call's inputs came from
        self.ops_at: list[int] = []  # torch functions run when each open module call began

    def enter(self, module: nn.Module, inputs: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.stack.append(len(self.calls))
        self.inputs.append(self.flow.sources(inputs, kwargs))
        self.ops_at.append(self.flow.ops)

    def hook(self, name: str, module: nn.Module) -> Callable[..., None]:
        type_name = type(module).__name__
        kind = layer_kind(module)

        def on_forward(mod: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            began = self.stack.pop() if self.stack else len(self.calls)
            sources = self.inputs.pop() if self.inputs else frozenset()
            ran = self.flow.ops - (self.ops_at.pop() if self.ops_at else -1)  # before this hook's own ops
            out = first_tensor(output)
            # A module is recorded when nothing inside its call was: leaves, and containers such as
            # MultiheadAttention whose children hold parameters but are never called.
            if out is None or len(self.calls) != began:
                return
            with self.lock:
                n = self.counts.get(name, 0)
                self.counts[name] = n + 1
                call_name = name if n == 0 else f"{name}:{n}"
                inp = first_tensor(inputs)
                src = self.producer.get(inp.data_ptr()) if inp is not None and inp.numel() else None
                inherited = self.calls[src].channels_last if src is not None else False
                per = _per_sample(out, self.batch, self.sample)
                cl = _channels_last_out(mod, type_name, kind, per.dim(), inherited)
                kept = per.detach().clone() if self.keep(kind) else None
                self.calls.append(
                    _Call(call_name, mod, type_name, kind, kept, tuple(per.shape), src, cl, sources)
                )
                # a pass-through (nn.Identity: no torch function ran, its input came back) keeps its input's
                # sources, so a skip through it links the layers on either side
                if ran or not any(out is t for t in inputs):
                    self.flow.tag(output, len(self.calls) - 1)
                self.alive.append(out)
                if out.numel():
                    self.producer[out.data_ptr()] = len(self.calls) - 1

        return on_forward


_LAYER_KINDS = ("conv", "linear", "pool")


def _select(calls: list[_Call], granularity: Granularity) -> list[tuple[int, int]]:
    """Pick (layer call, call whose output is shown) pairs."""
    if granularity == "leaf":
        return [(i, i) for i, c in enumerate(calls) if c.output is not None]
    consumers: dict[int, list[int]] = {}
    for k, c in enumerate(calls):
        if c.input_from is not None:
            consumers.setdefault(c.input_from, []).append(k)
    picked = []
    for i, c in enumerate(calls):
        if c.kind not in _LAYER_KINDS:
            continue
        shown, cur = i, i
        while consumers.get(cur):
            k = consumers[cur][0]
            nxt = calls[k]
            if nxt.shape != c.shape:
                break
            if nxt.kind == "act":
                shown = k
                break
            if nxt.kind != "norm":
                break
            cur = k
        picked.append((i, shown))
    return picked


def _pair(v: Any) -> tuple[int, int]:
    t = tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v), int(v))
    return (t[-2], t[-1]) if len(t) >= 2 else (t[0], t[0])


def layer_geometry(module: nn.Module | None) -> dict[str, Any] | None:
    """How a 2-D conv or pool maps output cells to input cells (for receptive fields); ``{"global": True}``
    where every output sees its whole input (Linear, adaptive pools); None where unknown."""
    if module is None:
        return None
    if isinstance(module, _LINEAR):
        return {"global": True}
    if isinstance(module, (nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)):
        return {"adaptive": _pair(module.output_size if module.output_size is not None else 1)}
    k = getattr(module, "kernel_size", None)
    if k is None or isinstance(module, nn.modules.conv._ConvTransposeNd):
        return None
    padding = getattr(module, "padding", 0)
    if isinstance(padding, str):  # "same" / "valid"
        kk = _pair(k)
        d = _pair(getattr(module, "dilation", 1))
        padding = (0, 0) if padding == "valid" else tuple(d[j] * (kk[j] - 1) // 2 for j in range(2))
    stride = getattr(module, "stride", None)
    return {
        "kernel": _pair(k),
        "stride": _pair(stride if stride is not None else k),
        "padding": _pair(padding),
        "dilation": _pair(getattr(module, "dilation", 1)),
    }


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a model with neither."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def capture(
    model: nn.Module,
    x: torch.Tensor,
    *,
    granularity: Granularity = "layer",
    sample: int = 0,
    weights: bool = True,
    eval_mode: bool = True,
    model_name: str = "",
) -> Trace:
    """Run ``model(x)`` once and record its layers for sample ``sample`` of the batch.

    Args:
        model: any ``nn.Module`` (TorchScript modules go through :mod:`glnet._script`).
        x: the input batch; moved to the model's device.
        granularity: ``"layer"`` (Conv/Linear/pooling, shown after their activation) or ``"leaf"``.
        sample: which sample of the batch the trace shows.
        weights: keep a reference to each layer module's weight.
        eval_mode: run in eval mode (BatchNorm running stats); the previous mode is restored afterwards.
    """
    if granularity not in ("layer", "leaf"):
        raise InputError(f"granularity must be 'layer' or 'leaf', not {granularity!r}")
    if not isinstance(x, torch.Tensor):
        raise InputError(f"the model input must be a tensor, not {type(x).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        from ._script import script_leaf_calls

        return _capture_script(
            model, x, granularity, sample, weights, eval_mode, model_name, script_leaf_calls
        )
    device = model_device(model)
    x = x.to(device)
    batch = x.shape[0] if x.dim() else 1
    if not -batch <= sample < batch:
        raise InputError(f"sample {sample} is outside the batch of {batch}")
    sample = sample % batch

    def keep(kind: str) -> bool:
        return granularity == "leaf" or kind in _LAYER_KINDS or kind == "act"

    rec = _Recorder(batch, sample, keep)
    handles = []
    was_training = model.training
    try:
        for name, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(rec.enter, with_kwargs=True))
            handles.append(module.register_forward_hook(rec.hook(name or type(module).__name__, module)))
        if eval_mode:
            model.eval()
        try:
            with torch.no_grad(), rec.flow:
                output = model(x)
        except torch.OutOfMemoryError as e:
            raise OutOfMemoryError(
                f"out of memory running the model on {device}: try a smaller input size"
            ) from e
        except (RuntimeError, ValueError, AssertionError, IndexError, NotImplementedError) as e:
            # a shape the model does not take: torch raises RuntimeError, timm asserts, HF ValueError
            if "out of memory" in str(e).lower():
                raise OutOfMemoryError(
                    f"out of memory running the model on {device}: try a smaller input size"
                ) from e
            raise CaptureError(
                f"the model's forward pass failed on input {tuple(x.shape)}: {_one_line(e)}"
            ) from e
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return _build_trace(rec.calls, granularity, weights, output, x[sample : sample + 1], model_name)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _build_trace(
    calls: list[_Call],
    granularity: Granularity,
    weights: bool,
    output: Any,
    sample_x: torch.Tensor,
    model_name: str,
) -> Trace:
    layers = []
    drawn = []  # (layer call, shown call) of each layer kept
    for i, shown in _select(calls, granularity):
        c, s = calls[i], calls[shown]
        value = s.output
        if not isinstance(value, torch.Tensor):
            continue
        drawn.append((i, shown))
        grid = canonical_grid(s.shape, c.kind, c.type_name, s.channels_last)
        weight = getattr(c.module, "weight", None) if (weights and c.module is not None) else None
        layers.append(
            LayerRecord(
                name=c.name,
                module_type=c.type_name,
                kind=c.kind,
                shape=s.shape,
                grid=grid,
                value=to_canonical(value, grid, s.channels_last),
                weight=weight.detach() if isinstance(weight, torch.Tensor) else None,
                shown=s.name if shown != i else None,
                shown_type=s.type_name if shown != i else None,
                channels_last=s.channels_last,
                raw=to_canonical(c.output, grid, s.channels_last)
                if shown != i and isinstance(c.output, torch.Tensor)
                else None,
                geometry=layer_geometry(c.module),
            )
        )
    if not layers:
        raise CaptureError("the model has no Conv, Linear or pooling layers to show (try --granularity leaf)")
    edges = layer_edges([c.sources for c in calls], [c.input_from for c in calls], drawn)
    return Trace(layers, output, sample_x, granularity, model_name, edges=edges)


def _capture_script(
    model: torch.jit.ScriptModule,
    x: torch.Tensor,
    granularity: Granularity,
    sample: int,
    weights: bool,
    eval_mode: bool,
    model_name: str,
    leaf_calls: Callable[..., Any],
) -> Trace:
    device = model_device(model)
    x = x.to(device)
    batch = x.shape[0] if x.dim() else 1
    sample = sample % batch
    modules = dict(model.named_modules())
    was_training = model.training
    try:
        if eval_mode:
            model.eval()
        with torch.no_grad():
            output, script_calls = leaf_calls(model, x)
    except RuntimeError as e:
        raise CaptureError(
            f"the TorchScript model's forward pass failed on input {tuple(x.shape)}: {_one_line(e)}"
        ) from e
    finally:
        model.train(was_training)
    calls: list[_Call] = []
    index: dict[int, int] = {}  # script call index -> index in calls (non-tensor calls are skipped)
    for j, sc in enumerate(script_calls):
        out = first_tensor(sc.output)
        if out is None:
            continue
        index[j] = len(calls)
        base = sc.name.split(":")[0]
        module = modules.get(base)
        kind = layer_kind(sc.type_name)
        per = _per_sample(out, batch, sample)
        src = index.get(sc.input_from) if sc.input_from is not None else None
        inherited = calls[src].channels_last if src is not None else False
        cl = _channels_last_out(module, sc.type_name, kind, per.dim(), inherited)
        srcs = frozenset(() if src is None else (src,))  # TorchScript: first-input chains only
        calls.append(_Call(sc.name, module, sc.type_name, kind, per, tuple(per.shape), src, cl, srcs))
    return _build_trace(calls, granularity, weights, output, x[sample : sample + 1], model_name)
