"""Colour: per-layer robust ranges (computed on the tensor's device) and the colour-code table.

A neuron's value becomes a 10-bit *colour code*: one of ``LEVELS`` steps of the sequential map (non-negative
layers) or of the diverging map (signed layers), or a special code for NaN, +Inf and -Inf. Both renderers
compute the code with ``shaders/common/colormap.glsl`` and look its colour up in :func:`lut`, so they agree
exactly; the compute rasterizer packs the code under the depth in a single 32-bit key.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "CODE_EMPTY",
    "CODE_NAN",
    "CODE_NEG_INF",
    "CODE_POS_INF",
    "LEVELS",
    "ValueRange",
    "colour_codes",
    "lut",
    "robust_range",
]

LEVELS = 480
CODE_DIVERGING = LEVELS
CODE_NAN = 2 * LEVELS
CODE_POS_INF = CODE_NAN + 1
CODE_NEG_INF = CODE_NAN + 2
CODE_EMPTY = 1023
BACKGROUND = (0.035, 0.04, 0.06)

# Anchors (position, sRGB). Sequential: dim violet (still visible on the dark background) to pale yellow.
_SEQUENTIAL = [
    (0.00, (0.16, 0.10, 0.36)),
    (0.20, (0.36, 0.12, 0.55)),
    (0.42, (0.70, 0.20, 0.50)),
    (0.62, (0.93, 0.38, 0.30)),
    (0.82, (0.99, 0.66, 0.22)),
    (1.00, (0.99, 0.97, 0.70)),
]
# Diverging with a dim centre: negative cyan-blue, zero slate grey, positive orange.
_DIVERGING = [
    (0.00, (0.60, 0.90, 1.00)),
    (0.25, (0.16, 0.50, 0.95)),
    (0.50, (0.26, 0.27, 0.33)),
    (0.75, (0.92, 0.36, 0.14)),
    (1.00, (1.00, 0.88, 0.55)),
]
NAN_COLOUR = (1.0, 0.0, 1.0)
POS_INF_COLOUR = (0.0, 1.0, 0.0)
NEG_INF_COLOUR = (0.0, 0.55, 0.0)


def _ramp(anchors: list[tuple[float, tuple[float, float, float]]], n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)
    pos = np.array([a[0] for a in anchors])
    rgb = np.array([a[1] for a in anchors])
    return np.stack([np.interp(t, pos, rgb[:, k]) for k in range(3)], axis=1)


def lut() -> np.ndarray:
    """The (1024, 4) uint8 RGBA table indexed by colour code; unused codes are transparent."""
    table = np.zeros((1024, 4), np.float64)
    table[:LEVELS, :3] = _ramp(_SEQUENTIAL, LEVELS)
    table[CODE_DIVERGING : CODE_DIVERGING + LEVELS, :3] = _ramp(_DIVERGING, LEVELS)
    table[: 2 * LEVELS, 3] = 1.0
    for code, rgb in ((CODE_NAN, NAN_COLOUR), (CODE_POS_INF, POS_INF_COLOUR), (CODE_NEG_INF, NEG_INF_COLOUR)):
        table[code, :3] = rgb
        table[code, 3] = 1.0
    return np.round(table * 255).astype(np.uint8)


@dataclass(frozen=True)
class ValueRange:
    """A layer's display range: values map linearly from ``lo`` to ``hi``; ``diverging`` centres zero."""

    lo: float
    hi: float
    diverging: bool
    nonfinite: int = 0  # NaN and Inf count in the layer

    @property
    def scale(self) -> float:
        """1 / (hi - lo) in float32, exactly as the shaders receive it."""
        return float(np.float32(1.0) / np.float32(self.hi - self.lo))


SAMPLE_LIMIT = 1 << 20


def robust_range(values: torch.Tensor, low: float = 0.01, high: float = 0.99) -> ValueRange:
    """The layer's ``low``/``high`` percentiles over its finite values, computed on the tensor's device.

    Signed layers (a real negative tail) get a symmetric diverging range; others a sequential one. Layers
    above ``SAMPLE_LIMIT`` values use an evenly strided sample, which moves a percentile by far less than a
    colour step.
    """
    v = values.detach().reshape(-1)
    if not v.is_floating_point():
        v = v.float()
    finite = torch.isfinite(v)
    nonfinite = int(v.numel() - int(finite.sum()))
    if nonfinite:  # a copy of the finite values only when there is something to leave out
        v = v[finite]
    del finite
    if v.numel() == 0:
        return ValueRange(0.0, 1.0, False, nonfinite)
    if v.numel() > SAMPLE_LIMIT:
        v = v[:: -(-v.numel() // SAMPLE_LIMIT)]
    v = v.float()
    n = v.numel()
    k_lo = max(1, min(n, round(low * (n - 1)) + 1))
    k_hi = max(1, min(n, round(high * (n - 1)) + 1))
    p_lo = float(torch.kthvalue(v, k_lo).values)
    p_hi = float(torch.kthvalue(v, k_hi).values)
    if p_lo < 0 and -p_lo > 0.25 * max(p_hi, 0.0):
        m = max(-p_lo, abs(p_hi)) or 1.0
        return ValueRange(-m, m, True, nonfinite)
    if p_hi <= p_lo:
        p_hi = p_lo + (abs(p_lo) or 1.0)
    return ValueRange(p_lo, p_hi, False, nonfinite)


def colour_codes(values: np.ndarray | torch.Tensor, rng: ValueRange) -> np.ndarray:
    """Colour codes (uint16) for ``values`` by the arithmetic of ``colormap.glsl`` (float32 throughout)."""
    v = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    v = v.astype(np.float32, copy=False).reshape(-1)
    lo = np.float32(rng.lo)
    scale = np.float32(rng.scale)
    with np.errstate(invalid="ignore", over="ignore"):
        t = np.clip((v - lo) * scale, np.float32(0), np.float32(1))
        code = np.floor(t * np.float32(LEVELS - 1) + np.float32(0.5)).astype(np.int64)
    code = np.where(np.isfinite(t), code, 0)
    if rng.diverging:
        code = code + CODE_DIVERGING
    code = np.where(np.isnan(v), CODE_NAN, code)
    code = np.where(np.isposinf(v), CODE_POS_INF, code)
    code = np.where(np.isneginf(v), CODE_NEG_INF, code)
    return code.astype(np.uint16)
