"""Per-frame numbers the viewer computes on the frame's own device: display ranges and channel means.

Only the (L, 3) range table comes back to the host; channel means stay on the device and go to GL from there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..colormap import ValueRange
from ..gpu.cloud import BYTES_PER_NEURON

__all__ = ["ChannelMeans", "RangeTable", "copy_plan"]


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


class ChannelMeans:
    """The per-channel means of a packed frame, laid out like the cloud's aggregates buffer (level of detail
    draws far layers as these)."""

    def __init__(self, offsets: Sequence[int], counts: Sequence[int], cloud: Any) -> None:
        grids = [s.grid for s in cloud.layout.slabs]
        self.plan = [
            (off // BYTES_PER_NEURON, n, g[0], cloud.agg_offsets[i] // BYTES_PER_NEURON)
            for i, (off, n, g) in enumerate(zip(offsets, counts, grids, strict=True))
        ]
        self.floats = cloud.aggregates.nbytes // BYTES_PER_NEURON

    def __call__(self, flat: torch.Tensor) -> torch.Tensor:
        """The means, on ``flat``'s device."""
        means = flat.new_zeros(self.floats)
        for start, n, c, dst in self.plan:
            means[dst : dst + c] = flat[start : start + n].view(c, -1).mean(dim=1)
        return means


def copy_plan(src_offsets: Sequence[int], cloud: Any) -> list[tuple[int, int, int]]:
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
