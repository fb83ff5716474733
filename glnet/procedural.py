"""Resolution-independent procedural texture: hashed value noise, fractal and ridged noise, soft shapes.

A noise field depends only on the seed and world coordinates, never on the resolution it is sampled
at, so a picture drawn with it keeps its composition at any size. Sampling is separable (rows x
columns), which makes each octave a few whole-array operations.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "convex",
    "fbm1",
    "fbm2",
    "lattice",
    "paint",
    "rgb",
    "ridged1",
    "ridged2",
    "smooth",
    "stream_key",
]

_M32 = 0xFFFFFFFF


def stream_key(seed: int, *salt: int) -> int:
    """A 32-bit stream key from the user's seed and salts (field id, octave): splitmix64 steps."""
    h = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    for s in salt:
        h = ((h ^ (s & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return (h ^ (h >> 32)) & _M32


def _fmix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def lattice(ix: np.ndarray, iy: np.ndarray, key: int) -> np.ndarray:
    """Uniform [0, 1) float32 per integer lattice point (ix, iy broadcast against each other)."""
    h = _fmix(ix.astype(np.uint32) * np.uint32(0x9E3779B1) ^ np.uint32(key))
    h = _fmix(h ^ (iy.astype(np.uint32) * np.uint32(0x85EBCA77)))
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def _cells(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Lattice cell of each coordinate: (index into a local grid, smoothstep weight, grid origin, length)."""
    fl = np.floor(g)
    t = (g - fl).astype(np.float32)
    i = fl.astype(np.int64)
    lo = int(i.min())
    return i - lo, t * t * (np.float32(3.0) - np.float32(2.0) * t), lo, int(i.max()) - lo + 2


def _noise1(gx: np.ndarray, key: int) -> np.ndarray:
    """1-D value noise in [0, 1) at lattice coordinates ``gx``."""
    cx, tx, lo, n = _cells(gx)
    grid = lattice(np.arange(lo, lo + n), np.zeros(1, np.int64), key)
    return grid[cx] + (grid[cx + 1] - grid[cx]) * tx


def _noise2(gx: np.ndarray, gy: np.ndarray, key: int) -> np.ndarray:
    """2-D value noise in [0, 1), shape (len(gy), len(gx)), on the grid of column coords × row coords."""
    cx, tx, x0, nx = _cells(gx)
    cy, ty, y0, ny = _cells(gy)
    grid = lattice(np.arange(x0, x0 + nx)[None, :], np.arange(y0, y0 + ny)[:, None], key)
    rows = grid[:, cx] + (grid[:, cx + 1] - grid[:, cx]) * tx  # (ny, W): interpolate along x first
    top = rows[cy]
    return top + (rows[cy + 1] - top) * ty[:, None]


def _octaves(key: int, freq: float, octaves: int, px: float, gain: float):
    """(octave key, frequency, weight, offset) per fBm octave plus the fixed normaliser.

    Octaves whose cells shrink below ~3 pixels fade out (none at all under 1.5 px): no aliasing, and a
    larger render only adds finer detail to the same picture.
    """
    out, norm, amp = [], 0.0, 1.0
    for o in range(octaves):
        f = freq * 2.0**o
        norm += amp
        fade = min(max(1.0 / (f * px) / 1.5 - 1.0, 0.0), 1.0)
        if fade > 0:
            k = stream_key(key, o)
            out.append((k, f, amp * fade, (k & 0xFFFF) / 65536 * 31.0))
        amp *= gain
    return out, norm


def fbm1(xs: np.ndarray, key: int, freq: float, octaves: int, px: float, gain: float = 0.5) -> np.ndarray:
    """1-D fractal noise around 0.5 (roughly 0.2..0.8)."""
    total = np.zeros(xs.shape, np.float32)
    parts, norm = _octaves(key, freq, octaves, px, gain)
    for k, f, w, off in parts:
        total += np.float32(w) * (_noise1(xs * f + off, k) - np.float32(0.5))
    return total / np.float32(norm) + np.float32(0.5)


def fbm2(
    xs: np.ndarray,
    ys: np.ndarray,
    key: int,
    freq: float,
    octaves: int,
    px: float,
    stretch: tuple[float, float] = (1.0, 1.0),
    gain: float = 0.5,
) -> np.ndarray:
    """2-D fractal noise around 0.5 on the grid ys × xs; ``stretch`` scales the x and y frequencies."""
    total = np.zeros((len(ys), len(xs)), np.float32)
    sx, sy = stretch
    parts, norm = _octaves(key, freq * max(sx, sy), octaves, px, gain)
    for k, f, w, off in parts:
        f = f / max(sx, sy)
        n = _noise2(xs * (f * sx) + off, ys * (f * sy) + off * 0.7, k)
        total += np.float32(w) * (n - np.float32(0.5))
    return total / np.float32(norm) + np.float32(0.5)


def _ridge(n: np.ndarray) -> np.ndarray:
    r = np.float32(1.0) - np.abs(n * np.float32(2.0) - np.float32(1.0))
    return r * r


def ridged1(xs: np.ndarray, key: int, freq: float, octaves: int, px: float) -> np.ndarray:
    """1-D ridged multifractal in [0, 1]: sharp peaks, with detail that is rougher on the heights."""
    total = np.zeros(xs.shape, np.float32)
    weight = np.ones(xs.shape, np.float32)
    parts, norm = _octaves(key, freq, octaves, px, 0.5)
    for k, f, w, off in parts:
        r = _ridge(_noise1(xs * f + off, k)) * weight
        total += np.float32(w) * r
        weight = np.clip(r * 1.6, 0.0, 1.0)
    return total / np.float32(norm * 0.75)


def ridged2(
    xs: np.ndarray,
    ys: np.ndarray,
    key: int,
    freq: float,
    octaves: int,
    px: float,
    stretch: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """2-D ridged fractal noise, roughly in [0, 1]: networks of crests, like eroded rock."""
    total = np.zeros((len(ys), len(xs)), np.float32)
    sx, sy = stretch
    parts, norm = _octaves(key, freq * max(sx, sy), octaves, px, 0.5)
    for k, f, w, off in parts:
        f = f / max(sx, sy)
        total += np.float32(w) * _ridge(_noise2(xs * (f * sx) + off, ys * (f * sy) + off * 0.7, k))
    return total / np.float32(norm)


# --------------------------------------------------------------------------------------------------
# Drawing: soft masks and in-place blending on float32 RGB images.


def smooth(e0: float, e1: float, v: np.ndarray) -> np.ndarray:
    """Smoothstep of ``v`` from ``e0`` to ``e1``: a soft 0..1 edge for masks and fades."""
    t = np.clip((v - np.float32(e0)) / np.float32(e1 - e0), 0.0, 1.0)
    return t * t * (np.float32(3.0) - np.float32(2.0) * t)


def rgb(*c: float) -> np.ndarray:
    """A float32 RGB triple, the colour type ``paint`` blends."""
    return np.asarray(c, np.float32)


def paint(dst: np.ndarray, color: np.ndarray, alpha: np.ndarray) -> None:
    """Blend ``color`` (an RGB triple or an image) over ``dst`` in place with per-pixel ``alpha``."""
    dst += (color - dst) * alpha[..., None]


def convex(x: np.ndarray, y: np.ndarray, pts: list[tuple[float, float]]) -> np.ndarray:
    """Signed distance (negative inside; exact near edges) to a convex polygon given in either winding."""
    area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1], strict=True))
    if area < 0:
        pts = pts[::-1]
    d = None
    for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1], strict=True):
        nx, ny = y1 - y0, x0 - x1
        inv = 1.0 / math.hypot(nx, ny)
        e = (x - x0) * np.float32(nx * inv) + (y - y0) * np.float32(ny * inv)
        d = e if d is None else np.maximum(d, e)
    return d
