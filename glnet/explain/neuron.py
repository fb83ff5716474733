"""One neuron explained: where it is, what it holds, how it sits in its layer, and what drives it.

:func:`inspect_neuron` gathers what the inspector panel, ``glnet inspect`` and ``snapshot --pick`` show,
from a trace (and, for the saliency map, the model): coordinates, shown and raw value, the layer's range and
histogram, the channel's feature map, the kernel that made it, its receptive field and the predictions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..capture import LayerRecord, Trace
from ..colormap import robust_range
from ..distributions import Histogram, LayerStats, histogram, layer_stats
from ..errors import InputError
from .predictions import Prediction, class_labels, logits_of, top_k
from .receptive import Box, receptive_field
from .saliency import saliency

__all__ = [
    "Inspection",
    "coord_names",
    "coords_of",
    "find_layer",
    "index_of",
    "inspect_neuron",
    "parse_neuron",
]


def coord_names(rec: LayerRecord) -> tuple[str, ...]:
    """The names of a neuron's coordinates in this layer: (channel, y, x), (token, channel) or (index,)."""
    if len(rec.shape) <= 1:
        return ("index",)
    if rec.grid[2] == 1 and rec.grid[1] > 1 and len(rec.shape) == 2:
        return ("token", "channel")
    return ("channel", "y", "x")


def coords_of(rec: LayerRecord, index: int) -> tuple[int, ...]:
    """A flat index of the layer's (C, H, W) grid as the layer's coordinates (see :func:`coord_names`)."""
    _c, h, w = rec.grid
    ch, r = divmod(int(index), h * w)
    y, x = divmod(r, w)
    names = coord_names(rec)
    if names == ("index",):
        return (ch,)
    if names == ("token", "channel"):
        return (y, ch)
    return (ch, y, x)


def index_of(rec: LayerRecord, coords: Sequence[int]) -> int:
    """The inverse of :func:`coords_of`; a one-line error for coordinates outside the layer."""
    names = coord_names(rec)
    if len(coords) != len(names):
        raise InputError(
            f"layer {rec.name!r} ({'x'.join(map(str, rec.shape))}) takes {len(names)} coordinate(s) "
            f"({','.join(names)}), not {len(coords)}"
        )
    c, h, w = rec.grid
    if names == ("index",):
        ch, y, x = coords[0], 0, 0
    elif names == ("token", "channel"):
        ch, y, x = coords[1], coords[0], 0
    else:
        ch, y, x = coords
    for n, v, top in (("channel" if len(names) > 1 else "index", ch, c), ("y", y, h), ("x", x, w)):
        if not 0 <= v < top:
            raise InputError(f"{n} {v} is outside layer {rec.name!r} (0 to {top - 1})")
    return (ch * h + y) * w + x


def find_layer(trace: Trace, name_or_index: str | int) -> int:
    """A layer's index from its name or its index (as in ``--stats-json`` ``"layers"``)."""
    key = str(name_or_index)
    for i, r in enumerate(trace.layers):
        if r.name == key:
            return i
    if key.lstrip("-").isdigit():
        i = int(key)
        if -len(trace.layers) <= i < len(trace.layers):
            return i % len(trace.layers)
        raise InputError(f"layer index {i} is outside 0..{len(trace.layers) - 1}")
    near = [r.name for r in trace.layers if key.split(".")[0] in r.name][:4]
    hint = f" (e.g. {', '.join(near)})" if near else f" (0..{len(trace.layers) - 1} or a name)"
    raise InputError(f"the model has no drawn layer {key!r}{hint}")


def parse_neuron(trace: Trace, spec: str) -> tuple[int, int]:
    """``LAYER:C,Y,X`` (or ``LAYER:T,C``, ``LAYER:I``) as (layer index, flat index in its grid)."""
    layer, sep, coords = spec.rpartition(":")
    if not sep or not layer:
        raise InputError(f"--neuron must be LAYER:C,Y,X (e.g. layer3.0.conv2:5,7,7), not {spec!r}")
    try:
        values = [int(v) for v in coords.split(",")]
    except ValueError:
        raise InputError(f"--neuron coordinates must be integers, not {coords!r}") from None
    i = find_layer(trace, layer)
    return i, index_of(trace.layers[i], values)


@dataclass
class Inspection:
    """Everything the inspector shows about one neuron."""

    layer_index: int
    layer: str
    kind: str
    module_type: str
    shown_type: str | None
    coords: tuple[int, ...]
    coord_names: tuple[str, ...]
    index: int  # flat index in the layer's (C, H, W) grid
    value: float  # the value drawn (after the activation that follows the layer, where one does)
    raw_value: float  # the layer module's own output
    range: tuple[float, float]  # the colour map's range for the layer
    stats: LayerStats
    histogram: Histogram
    percentile: float  # share of the layer's values below this one
    feature_map: torch.Tensor  # the neuron's channel, (H, W)
    kernel: torch.Tensor | None  # the weights that made its channel
    receptive_field: Box | None  # input pixels (y0, y1, x0, x1) that can reach it
    predictions: list[Prediction] = field(default_factory=list)
    saliency: torch.Tensor | None = None  # |d neuron / d input|, (H, W) over input pixels, (L,) over samples
    grad: float | None = None  # its gradient while training

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: every number the inspector shows; feature map and kernel as nested lists."""

        def num(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else round(float(v), 6)

        out: dict[str, Any] = {
            "layer": self.layer,
            "layer_index": self.layer_index,
            "kind": self.kind,
            "module_type": self.module_type,
            "shown_type": self.shown_type,
            "coords": list(self.coords),
            "coord_names": list(self.coord_names),
            "value": num(self.value),
            "raw_value": num(self.raw_value),
            "grad": num(self.grad),
            "range": [num(self.range[0]), num(self.range[1])],
            "stats": self.stats.as_dict(),
            "histogram": {
                "lo": num(self.histogram.lo),
                "hi": num(self.histogram.hi),
                "counts": [int(c) for c in self.histogram.counts],
                "bin": self.histogram.bin_of(self.value),
            },
            "percentile": round(self.percentile, 6),
            "feature_map": _rounded(self.feature_map),
            "kernel": _rounded(self.kernel) if self.kernel is not None else None,
            "kernel_shape": list(self.kernel.shape) if self.kernel is not None else None,
            "receptive_field": (
                dict(zip(("y0", "y1", "x0", "x1"), self.receptive_field, strict=True))
                if self.receptive_field
                else None
            ),
            "predictions": [p.as_dict() for p in self.predictions],
        }
        if self.saliency is not None:
            s = self.saliency
            out["saliency"] = {"max": num(float(s.max())), "nonzero": int((s > 0).sum())}
        return out


def _rounded(t: torch.Tensor) -> list[Any]:
    return torch.round(t.detach().float().cpu(), decimals=6).nan_to_num(0.0).tolist()


def _kernel(rec: LayerRecord, channel: int) -> torch.Tensor | None:
    w = rec.weight
    if w is None or rec.kind not in ("conv", "linear") or w.dim() < 2 or channel >= w.shape[0]:
        return None
    return w[channel].detach().float().cpu()


def inspect_neuron(
    trace: Trace,
    layer: int,
    index: int,
    *,
    model: nn.Module | None = None,
    labels: str | Sequence[str] | None = None,
    with_saliency: bool = False,
    grad: float | None = None,
) -> Inspection:
    """Inspect neuron ``index`` of ``trace.layers[layer]``; the saliency map needs ``model``."""
    rec = trace.layers[layer]
    flat = rec.value.reshape(-1)
    value = float(flat[index])
    raw = float(rec.raw.reshape(-1)[index]) if rec.raw is not None else value
    rng = robust_range(rec.value)
    hist = histogram(rec.value)
    coords = coords_of(rec, index)
    _c, h, w = rec.grid
    ch, r = divmod(index, h * w)
    y, x = divmod(r, w)
    logits = logits_of(trace.output)
    names = class_labels(trace.model_name, len(logits), labels) if logits is not None else None
    sal = None
    if with_saliency and model is not None:
        g = saliency(model, trace.input, rec, index)
        # over pixels (H, W) or a signal's samples (L): the largest over channels (and a clip's frames)
        sal = g.amax(dim=0) if g.dim() in (2, 3) else (g.amax(dim=(0, 1)) if g.dim() == 4 else g)
    return Inspection(
        layer_index=layer,
        layer=rec.name,
        kind=rec.kind,
        module_type=rec.module_type,
        shown_type=rec.shown_type,
        coords=coords,
        coord_names=coord_names(rec),
        index=int(index),
        value=value,
        raw_value=raw,
        range=(float(rng.lo), float(rng.hi)),
        stats=layer_stats(rec.value),
        histogram=hist,
        percentile=hist.fraction_below(value),
        feature_map=rec.value[ch].detach().float().cpu(),
        kernel=_kernel(rec, ch),
        receptive_field=receptive_field(trace, layer, y, x),
        predictions=top_k(trace.output, names),
        saliency=sal,
        grad=grad,
    )
