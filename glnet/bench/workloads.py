"""Named bench workloads: synthetic convnet-shaped clouds of exactly N neurons, and a model's real cloud."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..errors import InputError

if TYPE_CHECKING:
    from ..colormap import ValueRange
    from ..layout import Layout

__all__ = [
    "MAX_POINTS",
    "SEED",
    "SYNTHETIC_CYCLE",
    "Workload",
    "model_workload",
    "parse_points",
    "synthetic_grids",
    "synthetic_workload",
]

MAX_POINTS = 2_000_000_000
SEED = 0

# Slabs of a ResNet-50-like network, repeated until N neurons: stage widths double as maps halve.
SYNTHETIC_CYCLE: tuple[tuple[int, int, int], ...] = (
    (64, 56, 56),
    (64, 56, 56),
    (256, 56, 56),
    (128, 28, 28),
    (128, 28, 28),
    (512, 28, 28),
    (256, 14, 14),
    (1024, 14, 14),
    (512, 7, 7),
    (2048, 7, 7),
)

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_points(text: str | Iterable[int | float | str]) -> list[int]:
    """``"1e6,5e6"`` (or ``"500k,2M"``, or a list) to point counts; InputError unless whole and in 1..2e9."""
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    if not items or any(isinstance(t, str) and not t for t in items):
        raise InputError(f"invalid --points {text!r}: expected counts like 1e6,5e6 (comma-separated)")
    out = []
    for t in items:
        value: float | None
        if isinstance(t, bool):
            value = None
        elif isinstance(t, (int, float)):
            value = float(t)
        else:
            m = re.fullmatch(r"([0-9eE+\-._]+)\s*([kKmMgG]?)", str(t))
            try:
                value = float(m[1]) * _SUFFIX[m[2].lower()] if m else None
            except ValueError:
                value = None
        if value is None or not math.isfinite(value):
            raise InputError(f"invalid point count {t!r}: expected a number such as 1e6 or 500k")
        if value <= 0 or value > MAX_POINTS:
            raise InputError(f"point count {t!r} is out of range: use 1 to {MAX_POINTS:.0e}")
        if value != int(value):
            raise InputError(f"point count {t!r} is not a whole number")
        out.append(int(value))
    return out


@dataclass
class Workload:
    """What every renderer draws in one case: a layout, one value tensor per layer and its colour range."""

    name: str
    kind: str  # "synthetic" | "model"
    layout: Layout
    values: list[torch.Tensor]
    ranges: list[ValueRange]

    @property
    def points(self) -> int:
        """The neurons in the cloud."""
        return self.layout.count


def synthetic_grids(points: int) -> list[tuple[str, tuple[int, int, int]]]:
    """Convnet-like slabs (:data:`SYNTHETIC_CYCLE`, repeated) holding exactly ``points`` neurons.

    The last slab keeps the whole channels that fit; what is left over becomes a final ``(r, 1, 1)`` vector
    layer, as a network ends in a classifier.
    """
    if points < 1:
        raise InputError(f"a synthetic cloud needs at least 1 point, not {points}")
    grids: list[tuple[str, tuple[int, int, int]]] = []
    left, k = points, 0
    while left:
        c, h, w = SYNTHETIC_CYCLE[k % len(SYNTHETIC_CYCLE)]
        name = f"block{k // len(SYNTHETIC_CYCLE)}.{k % len(SYNTHETIC_CYCLE)}"
        if c * h * w <= left:
            grids.append((name, (c, h, w)))
            left -= c * h * w
        else:
            if left >= h * w:
                grids.append((name, (left // (h * w), h, w)))
                left %= h * w
            if left:
                grids.append(("fc", (left, 1, 1)))
                left = 0
        k += 1
    return grids


def synthetic_workload(points: int, seed: int = SEED) -> Workload:
    """Exactly ``points`` neurons in :func:`synthetic_grids` slabs, values from a seeded standard normal."""
    from ..colormap import robust_range
    from ..layout import build_layout

    grids = synthetic_grids(points)
    gen = torch.Generator().manual_seed(seed)
    values = [torch.randn(g, generator=gen) for _, g in grids]
    return Workload(
        f"synthetic-{points}", "synthetic", build_layout(grids), values, [robust_range(v) for v in values]
    )


def model_workload(model: str, seed: int = SEED) -> Workload:
    """A model's real activation cloud: :func:`glnet.pipeline.trace_model`, :func:`glnet.layout.layout_for`.

    The layout is the one ``glnet view`` shows (weight panels and the input image reserve their places)."""
    from ..colormap import robust_range
    from ..layout import layout_for
    from ..pipeline import trace_model

    trace = trace_model(model, seed=seed).trace
    values = [r.value.detach().float().cpu() for r in trace.layers]
    layout = layout_for(trace, histograms=False)  # the points alone frame the camera, as before
    return Workload(trace.model_name or model, "model", layout, values, [robust_range(v) for v in values])
