"""Per-layer distributions: summary statistics and histograms of activations and weights, in pure torch.

Everything is computed on the tensor's own device; a layer's numbers come back to the host in one small
read (a whole trace's in one), so a CUDA model pays one synchronisation per call, not one per number.
Statistics and histogram bins cover the finite values; NaN and +-Inf are counted apart, and exact zeros are
counted too (a ReLU's dead units).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

__all__ = [
    "Histogram",
    "LayerStats",
    "histogram",
    "histograms",
    "layer_stats",
    "trace_histograms",
    "trace_stats",
    "weight_histograms",
]


class _Trace(Protocol):
    layers: Sequence[Any]  # glnet.capture.LayerRecord (not imported: this module is a utility)


def _round(x: float) -> float | None:
    """A float for JSON: 7 significant digits (a float32's worth); NaN and +-Inf become None."""
    if not math.isfinite(x):
        return None
    return float(f"{x:.7g}")


@dataclass(frozen=True)
class LayerStats:
    """Summary of a tensor: mean, std (unbiased), min and max of its finite values; zeros, NaN/Inf apart."""

    mean: float
    std: float
    min: float
    max: float
    zero_frac: float  # exact zeros among all values: the share of dead units after a ReLU
    nonfinite: int  # NaN, +Inf and -Inf values
    count: int  # all values

    def as_dict(self) -> dict[str, float | int | None]:
        """The JSON form (``--stats-json``): rounded floats, None where undefined (no finite values)."""
        return {
            "mean": _round(self.mean),
            "std": _round(self.std),
            "min": _round(self.min),
            "max": _round(self.max),
            "zero_frac": _round(self.zero_frac),
            "nonfinite": self.nonfinite,
        }


def _flat(t: torch.Tensor) -> torch.Tensor:
    v = t.detach().reshape(-1)
    return v if v.dtype == torch.float32 else v.float()


def _stats_vector(t: torch.Tensor) -> torch.Tensor:
    """count, finite count, zeros, sum, squared deviations, min, max: one float64 tensor on ``t``'s device."""
    v = _flat(t)
    finite = torch.isfinite(v)
    n = torch.count_nonzero(finite)
    total = torch.where(finite, v, 0.0).sum()
    mean = total / n.clamp(min=1)
    filled = torch.where(finite, v, mean)  # the mean in place of NaN/Inf changes neither spread nor extremes
    ssd = (filled - mean).square_().sum()
    lo, hi = torch.aminmax(filled) if v.numel() else (mean, mean)
    parts = [v.new_tensor(v.numel()), n, v.numel() - torch.count_nonzero(v), total, ssd, lo, hi]
    return torch.stack([p.to(torch.float64) for p in parts])


def _stats_from(row: Sequence[float]) -> LayerStats:
    count, n, zeros, total, ssd, lo, hi = row
    nan = float("nan")
    return LayerStats(
        mean=total / n if n else nan,
        std=math.sqrt(ssd / (n - 1)) if n > 1 else nan,  # torch.std's default correction
        min=lo if n else nan,
        max=hi if n else nan,
        zero_frac=zeros / count if count else nan,
        nonfinite=int(count - n),
        count=int(count),
    )


def layer_stats(t: torch.Tensor) -> LayerStats:
    """Summary statistics of ``t`` (any shape and float dtype), computed on its device; one host read."""
    return _stats_from(_stats_vector(t).tolist())


def _gather(parts: Sequence[torch.Tensor]) -> list[list[float]]:
    """Per-tensor result vectors read back in one transfer (per device)."""
    if not parts:
        return []
    dev = parts[0].device
    return [row.tolist() for row in torch.stack([p.to(dev) for p in parts]).cpu()]


def trace_stats(trace: _Trace) -> list[LayerStats]:
    """:func:`layer_stats` of every layer's activations (``LayerRecord.value``), read back together."""
    return [_stats_from(r) for r in _gather([_stats_vector(r.value) for r in trace.layers])]


@dataclass(frozen=True)
class Histogram:
    """Counts of finite values in ``bins`` equal bins from ``lo`` to ``hi``; values beyond go in the end bins.

    ``counts.sum() + nonfinite`` is the tensor's size (with ``stride`` > 1, its sample's). Bin edges follow
    float32 arithmetic, as on the device: a value ``v`` is in bin ``floor((v - lo) * (bins / (hi - lo)))``,
    clamped (all in bin 0 when lo == hi).
    """

    lo: float
    hi: float
    counts: np.ndarray  # int64, one per bin
    nonfinite: int
    zeros: int  # exact zeros (they are in the counts too)
    stride: int = 1  # counted every ``stride``-th value (1: all of them)

    @property
    def bins(self) -> int:
        return len(self.counts)

    @property
    def finite(self) -> int:
        return int(self.counts.sum())

    @property
    def count(self) -> int:
        return self.finite + self.nonfinite

    @property
    def edges(self) -> np.ndarray:
        """The ``bins + 1`` bin edges, lo to hi."""
        return np.linspace(self.lo, self.hi, self.bins + 1)

    def _scale(self) -> np.float32:
        span = np.float32(self.hi) - np.float32(self.lo)
        return np.float32(self.bins) / span if span > 0 else np.float32(0)

    def bin_of(self, value: float) -> int:
        """The bin a finite ``value`` is counted in (values outside lo..hi: the end bins)."""
        with np.errstate(over="ignore", invalid="ignore"):
            t = (np.float32(value) - np.float32(self.lo)) * self._scale()
        return int(np.clip(np.floor(t), 0, self.bins - 1))

    def fraction_below(self, value: float) -> float:
        """The share of finite values below ``value`` (its percentile / 100), linear within its bin."""
        if not self.finite or value <= self.lo:
            return 0.0
        if value >= self.hi:
            return 1.0
        b = self.bin_of(value)
        width = (self.hi - self.lo) / self.bins
        inside = min(max((value - (self.lo + b * width)) / width, 0.0), 1.0)
        return float((self.counts[:b].sum() + inside * self.counts[b]) / self.finite)


def _prime_at_least(n: int) -> int:
    """The smallest prime >= max(n, 11): a sampling stride that no conv or feature-map size is a multiple
    of (those factor into 2, 3, 5 and 7), so a strided sample does not keep returning to one place."""
    n = max(n, 11)
    while any(n % d == 0 for d in range(2, math.isqrt(n) + 1)):
        n += 1
    return n


def _histogram_vector(
    t: torch.Tensor, bins: int, lo: float | None, hi: float | None, limit: int | None = None
) -> torch.Tensor:
    """[lo, hi, nonfinite, zeros, stride, count per bin...] as one float64 tensor on ``t``'s device."""
    if bins < 1:
        raise ValueError(f"a histogram needs at least one bin, not {bins}")
    v = _flat(t)
    stride = _prime_at_least(-(-v.numel() // limit)) if limit and v.numel() > limit else 1
    v = v[::stride].contiguous() if stride > 1 else v
    finite = torch.isfinite(v)
    if v.numel() == 0:
        lo_t, hi_t = v.new_tensor(0.0 if lo is None else lo), v.new_tensor(0.0 if hi is None else hi)
        filled = v
    else:
        lo_t = torch.where(finite, v, math.inf).amin() if lo is None else v.new_tensor(lo)
        lo_t = torch.where(torch.isfinite(lo_t), lo_t, 0.0)  # no finite value at all
        filled = torch.where(finite, v, lo_t)
        hi_t = filled.amax() if hi is None else v.new_tensor(hi)
    span = hi_t - lo_t
    scale = torch.where(span > 0, torch.full_like(span, bins) / span, 0.0)  # a true division, as in bin_of
    pos = (filled - lo_t).mul_(scale).floor_().clamp_(0, bins - 1)
    pos = torch.where(finite, pos, bins)  # one extra bin counts the non-finite values
    if v.is_cuda:  # bincount reads its size back from the device; scatter does not
        idx = pos.long()
        counts = torch.zeros(bins + 1, dtype=torch.int64, device=v.device)
        counts.scatter_add_(0, idx, torch.ones_like(idx))
    else:
        counts = torch.bincount(pos.to(torch.int32), minlength=bins + 1)
    zeros = v.numel() - torch.count_nonzero(v)
    head = [lo_t, hi_t, counts[bins], zeros, v.new_tensor(stride)]
    return torch.cat([torch.stack([h.double() for h in head]), counts[:bins].double()])


def _histogram_from(row: Sequence[float]) -> Histogram:
    lo, hi, nonfinite, zeros, stride, *counts = row
    return Histogram(
        float(lo), float(hi), np.asarray(counts, np.int64), int(nonfinite), int(zeros), int(stride)
    )


def histogram(t: torch.Tensor, bins: int = 64, lo: float | None = None, hi: float | None = None) -> Histogram:
    """The histogram of ``t``'s finite values over lo..hi (default: their min and max); one host read."""
    return _histogram_from(_histogram_vector(t, bins, lo, hi).tolist())


def histograms(tensors: Sequence[torch.Tensor], bins: int = 64, limit: int | None = None) -> list[Histogram]:
    """:func:`histogram` of each tensor over its own min..max, read back together.

    With ``limit``, a tensor of more values is histogrammed from an evenly strided sample of at most that
    many (``Histogram.stride`` says the stride): for displays, whose bars and shares it barely moves.
    """
    parts = [_histogram_vector(t, bins, None, None, limit) for t in tensors]
    return [_histogram_from(r) for r in _gather(parts)]


def trace_histograms(trace: _Trace, bins: int = 64) -> list[Histogram]:
    """The histogram of every layer's activations (``LayerRecord.value``)."""
    return histograms([r.value for r in trace.layers], bins)


def weight_histograms(trace: _Trace, bins: int = 64) -> dict[int, Histogram]:
    """Layer index -> the histogram of its weight, for the layers that have one (``LayerRecord.weight``)."""
    idx = [i for i, r in enumerate(trace.layers) if r.weight is not None]
    return dict(zip(idx, histograms([trace.layers[i].weight for i in idx], bins), strict=True))
