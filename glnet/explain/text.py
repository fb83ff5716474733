"""An inspection as lines of text: what the inspector panel prints and ``glnet inspect`` writes."""

from __future__ import annotations

from .neuron import Inspection

__all__ = ["inspection_lines", "prediction_lines"]


def _g(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def inspection_lines(ins: Inspection) -> list[str]:
    """Layer, coordinates, values, the layer's distribution and what drives the neuron, one fact a line."""
    coords = ", ".join(f"{n} {v}" for n, v in zip(ins.coord_names, ins.coords, strict=True))
    kind = ins.module_type + (f" -> {ins.shown_type}" if ins.shown_type else "")
    s = ins.stats
    lines = [
        f"layer {ins.layer_index}: {ins.layer} ({kind})",
        f"neuron {coords}",
        f"value {_g(ins.value)}" + (f"  ·  raw {_g(ins.raw_value)}" if ins.shown_type else ""),
    ]
    if ins.grad is not None:
        lines.append(f"gradient {_g(ins.grad)}")
    lines += [
        f"layer range {_g(ins.range[0])} … {_g(ins.range[1])}  ·  {100 * ins.percentile:.1f}% below",
        f"mean {_g(s.mean)}  std {_g(s.std)}  min {_g(s.min)}  max {_g(s.max)}",
        f"zeros {100 * s.zero_frac:.1f}%" + (f"  ·  {s.nonfinite:,} NaN/Inf" if s.nonfinite else ""),
    ]
    if ins.kernel is not None:
        lines.append("kernel " + "x".join(str(d) for d in ins.kernel.shape))
    if ins.receptive_field is not None:
        y0, y1, x0, x1 = ins.receptive_field
        lines.append(f"receptive field y {y0}..{y1}, x {x0}..{x1} ({y1 - y0 + 1}x{x1 - x0 + 1} px)")
    return lines


def prediction_lines(ins: Inspection) -> list[str]:
    return [f"{100 * p.prob:5.1f}%  {p.label} ({p.index})" for p in ins.predictions]
