"""What the model sees: the built-in test scene, image files, and the normalised tensor a convnet takes.

The test scene is drawn by the package itself (no download, no bundled asset) so that ``glnet`` shows
meaningful activations out of the box: convnets respond to edges, textures and colours, so the scene
is a photo-like landscape with all three rather than a gradient or random noise.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from glnet.errors import InputError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_SIDE",
    "load_image",
    "parse_size",
    "test_image",
    "to_tensor",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_SIDE = 16384
"""Largest width or height accepted anywhere (a 16384² RGB float image is already 3 GiB)."""

_SIZE_RE = re.compile(r"\s*([0-9]+)\s*[xX×]\s*([0-9]+)\s*")


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``'1280x720'`` into ``(1280, 720)``; InputError unless both sides are ints in 1..MAX_SIDE."""
    match = _SIZE_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InputError(
            f"invalid size {text!r}: expected WIDTHxHEIGHT with positive integers, e.g. 1280x720"
        )
    width, height = int(match[1]), int(match[2])
    if width < 1 or height < 1:
        raise InputError(f"invalid size {text!r}: width and height must be at least 1")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise InputError(f"invalid size {text!r}: width and height must be at most {MAX_SIDE}")
    return width, height


def _check_side(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_SIDE:
        raise InputError(f"{name} must be an integer in 1..{MAX_SIDE}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------------
# Image files


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file as an 8-bit RGB image, upright per its EXIF tag, transparency over white.

    Raises InputError with a one-line reason when the file is missing, unreadable or not an image.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()  # decode now, so truncated or corrupt files fail here and not later
            im = ImageOps.exif_transpose(im)
            return _to_rgb(im)
    except FileNotFoundError:
        raise InputError(f"image {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"image {str(path)!r} is a directory, not an image file") from None
    except PermissionError:
        raise InputError(f"image {str(path)!r} cannot be read: permission denied") from None
    except UnidentifiedImageError:
        raise InputError(f"{str(path)!r} is not an image file (or not a format Pillow can read)") from None
    except Image.DecompressionBombError as err:
        raise InputError(f"image {str(path)!r} is too large: {err}") from None
    except (OSError, SyntaxError, ValueError) as err:  # Pillow reports corrupt data with all three
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"image {str(path)!r} is damaged or unreadable: {reason}") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB, scaling high-bit-depth greys and compositing alpha over white."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 255.0 if arr.size == 0 or arr.max() <= 255 else (65535.0 if arr.max() <= 65535 else arr.max())
        if im.mode == "F" and arr.size and arr.max() <= 1.0:
            top = 1.0
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=2))
    if im.mode == "RGB":
        return im.copy()
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def to_tensor(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """Scale ``image`` to cover ``size=(width, height)``, centre-crop it, and normalise with ImageNet stats.

    Returns a contiguous float32 tensor of shape (1, 3, height, width), as torchvision's models expect.
    For a square size this is torchvision's Resize(shorter side) + CenterCrop.
    """
    width, height = (_check_side(v, n) for v, n in zip(size, ("width", "height"), strict=True))
    if image.mode != "RGB":
        image = _to_rgb(image)
    src_w, src_h = image.size
    if src_w < 1 or src_h < 1:
        raise InputError("image is empty (0 pixels)")
    scale = max(width / src_w, height / src_h)
    crop_w, crop_h = width / scale, height / scale
    left, top = (src_w - crop_w) / 2, (src_h - crop_h) / 2
    # One resample straight from the source crop box: no intermediate rounding of the resized size.
    box = (left, top, left + crop_w, top + crop_h)
    resized = image.resize((width, height), Image.Resampling.BILINEAR, box=box)
    arr = np.asarray(resized, dtype=np.float32) / np.float32(255.0)
    arr = (arr - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]


# --------------------------------------------------------------------------------------------------
# Noise: hashed lattice value noise, so a field depends only on the seed and world coordinates, never
# on the resolution it is sampled at. Sampling is separable (rows x columns), which makes each octave
# a few whole-array operations.

_M32 = 0xFFFFFFFF


def _key(seed: int, *salt: int) -> int:
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


def _lattice(ix: np.ndarray, iy: np.ndarray, key: int) -> np.ndarray:
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
    grid = _lattice(np.arange(lo, lo + n), np.zeros(1, np.int64), key)
    return grid[cx] + (grid[cx + 1] - grid[cx]) * tx


def _noise2(gx: np.ndarray, gy: np.ndarray, key: int) -> np.ndarray:
    """2-D value noise in [0, 1), shape (len(gy), len(gx)), on the grid of column coords × row coords."""
    cx, tx, x0, nx = _cells(gx)
    cy, ty, y0, ny = _cells(gy)
    grid = _lattice(np.arange(x0, x0 + nx)[None, :], np.arange(y0, y0 + ny)[:, None], key)
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
            k = _key(key, o)
            out.append((k, f, amp * fade, (k & 0xFFFF) / 65536 * 31.0))
        amp *= gain
    return out, norm


def _fbm1(xs: np.ndarray, key: int, freq: float, octaves: int, px: float, gain: float = 0.5) -> np.ndarray:
    """1-D fractal noise around 0.5 (roughly 0.2..0.8)."""
    total = np.zeros(xs.shape, np.float32)
    parts, norm = _octaves(key, freq, octaves, px, gain)
    for k, f, w, off in parts:
        total += np.float32(w) * (_noise1(xs * f + off, k) - np.float32(0.5))
    return total / np.float32(norm) + np.float32(0.5)


def _fbm2(
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


def _ridged1(xs: np.ndarray, key: int, freq: float, octaves: int, px: float) -> np.ndarray:
    """1-D ridged multifractal in [0, 1]: sharp peaks, with detail that is rougher on the heights."""
    total = np.zeros(xs.shape, np.float32)
    weight = np.ones(xs.shape, np.float32)
    parts, norm = _octaves(key, freq, octaves, px, 0.5)
    for k, f, w, off in parts:
        r = _ridge(_noise1(xs * f + off, k)) * weight
        total += np.float32(w) * r
        weight = np.clip(r * 1.6, 0.0, 1.0)
    return total / np.float32(norm * 0.75)


def _ridged2(
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
# Drawing helpers. World coordinates: the centred square [-0.5, 0.5]² of the image's shorter side is
# always visible, x grows right and y grows down; wider or taller images show more of the same world.


def _smooth(e0: float, e1: float, v: np.ndarray) -> np.ndarray:
    t = np.clip((v - np.float32(e0)) / np.float32(e1 - e0), 0.0, 1.0)
    return t * t * (np.float32(3.0) - np.float32(2.0) * t)


def _rgb(*c: float) -> np.ndarray:
    return np.asarray(c, np.float32)


def _paint(dst: np.ndarray, color: np.ndarray, alpha: np.ndarray) -> None:
    """Blend ``color`` (an RGB triple or an image) over ``dst`` in place with per-pixel ``alpha``."""
    dst += (color - dst) * alpha[..., None]


def _convex(x: np.ndarray, y: np.ndarray, pts: list[tuple[float, float]]) -> np.ndarray:
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


class _Scene:
    """One render of the landscape at a given size; ``render()`` paints the layers back to front."""

    HORIZON = 0.05

    def __init__(self, width: int, height: int, seed: int) -> None:
        self.w, self.h, self.seed = width, height, seed
        self.s = float(min(width, height))  # pixels per world unit
        self.px = 1.0 / self.s
        self.xs = ((np.arange(width) + 0.5 - width / 2) / self.s).astype(np.float32)
        self.ys = ((np.arange(height) + 0.5 - height / 2) / self.s).astype(np.float32)
        self.img = np.zeros((height, width, 3), np.float32)
        rng = np.random.default_rng(_key(seed, 999))
        self.sun = (-0.27 + rng.uniform(-0.05, 0.05), -0.30 + rng.uniform(-0.04, 0.04))
        self.massif = rng.uniform(-0.15, 0.15)

    def key(self, field: int) -> int:
        return _key(self.seed, field)

    def window(
        self, x0: float, x1: float, y0: float, y1: float
    ) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        """Pixel slices and world coords (x as a row, y as a column) covering a world-space box, or None."""
        c0 = max(math.floor(x0 * self.s + self.w / 2) - 1, 0)
        c1 = min(math.ceil(x1 * self.s + self.w / 2) + 1, self.w)
        r0 = max(math.floor(y0 * self.s + self.h / 2) - 1, 0)
        r1 = min(math.ceil(y1 * self.s + self.h / 2) + 1, self.h)
        if c0 >= c1 or r0 >= r1:
            return None
        rs, cs = slice(r0, r1), slice(c0, c1)
        return rs, cs, self.xs[None, cs], self.ys[rs, None]

    def rows(self, y0: float, y1: float) -> tuple[slice, np.ndarray] | None:
        """Full-width band of rows covering world y0..y1: (row slice, y as a column), or None."""
        win = self.window(float(self.xs[0]), float(self.xs[-1]), y0, y1)
        return None if win is None else (win[0], win[3])

    def cov(self, d: np.ndarray) -> np.ndarray:
        """Antialiased coverage of a shape from its signed distance in world units (negative inside)."""
        return np.clip(np.float32(0.5) - d * np.float32(self.s), 0.0, 1.0)

    def render(self) -> np.ndarray:
        self.sky()
        self.clouds()
        self.mountains()
        self.meadow()
        self.flowers()
        self.lake()
        self.path()
        self.barn()
        self.fence()
        self.tree()
        return self.finish()

    # ---- layers ------------------------------------------------------------------------------------

    def sky(self) -> None:
        yh = self.HORIZON
        y = self.ys[:, None]
        x = self.xs[None, :]
        t = np.clip((y + 0.55) / (yh + 0.55), 0.0, 1.0)
        zenith, horizon = _rgb(0.16, 0.36, 0.74), _rgb(0.74, 0.84, 0.93)
        tt = (t**1.7)[..., None]
        sky = zenith + (horizon - zenith) * tt
        sx, sy = self.sun
        dist = np.sqrt((x - sx) ** 2 + (y - sy) ** 2)
        glow = np.exp(-dist / np.float32(0.22)) * np.float32(0.45)
        sky = sky + _rgb(1.0, 0.78, 0.5) * glow[..., None] * np.float32(0.6)
        self.img[:] = sky
        self.sun_dist = dist

    def clouds(self) -> None:
        yh = self.HORIZON
        ys = self.ys[self.ys < yh + 0.02]
        if ys.size == 0:
            return
        rs = slice(0, ys.size)
        xs = self.xs
        dens = _fbm2(xs, ys, self.key(1), 2.2, 8, self.px, stretch=(1.0, 2.6), gain=0.55)
        sx, sy = self.sun
        # Density a little towards the sun: where it is thinner than here, this side faces the light.
        to_x = xs + np.float32(0.014) * np.tanh((sx - xs) / np.float32(0.15))
        to_y = ys + np.float32(0.010) * np.tanh((sy - ys) / np.float32(0.15))
        toward = _fbm2(to_x, to_y, self.key(1), 2.2, 8, self.px, stretch=(1.0, 2.6), gain=0.55)
        y = ys[:, None]
        # Fewer clouds near the horizon and fewer overhead: a band in the upper-middle sky.
        band = _smooth(-0.6, -0.35, y) * (1 - _smooth(-0.05, yh, y) * 0.7)
        cover = _smooth(0.50, 0.66, dens * (0.78 + 0.3 * band))
        lit = np.clip((dens - toward) * 9.0 + 0.55, 0.0, 1.0)
        dark, bright = _rgb(0.58, 0.63, 0.73), _rgb(1.0, 0.98, 0.95)
        color = dark + (bright - dark) * lit[..., None]
        # Soft cloud bodies: denser cores are more opaque and a little greyer underneath.
        core = _smooth(0.58, 0.80, dens)
        color = color * (1 - 0.12 * core[..., None])
        _paint(self.img[rs], color, cover * 0.93)
        # Sun disc after the clouds' base but dimmed where clouds cover it; glow on top.
        d = self.sun_dist[rs]
        disc = self.cov(d - 0.032) * (1 - cover * 0.85)
        _paint(self.img[rs], _rgb(1.0, 0.98, 0.9), disc)
        halo = np.exp(-d / np.float32(0.045)) * np.float32(0.55) * (1 - cover * 0.6)
        self.img[rs] += _rgb(1.0, 0.93, 0.8) * halo[..., None]

    def mountains(self) -> None:
        """Three ridges, far to near: snowy peaks, a darker rocky range, then low wooded hills.

        Farther layers are paler and bluer (atmospheric perspective) and mist gathers at their feet.
        """
        yh = self.HORIZON
        xs = self.xs
        haze = _rgb(0.70, 0.80, 0.90)
        layers = [
            # base height, ridge amplitude, frequency, colour, haze, snow altitude
            (0.05, 0.21, 1.7, _rgb(0.40, 0.46, 0.60), 0.42, 0.175),
            (0.035, 0.12, 3.1, _rgb(0.30, 0.34, 0.40), 0.22, 0.15),
        ]
        for i, (base, amp, freq, color, fog, snow) in enumerate(layers):
            # A broad massif under the ridges so that every seed gets real mountains somewhere central.
            centre = self.massif + 0.25 * i
            massif = np.exp(-(((xs - centre) / np.float32(0.3 + 0.1 * i)) ** 2))
            ridges = _ridged1(xs, self.key(10 + i), freq, 9, self.px)
            # Scale by the highest peak in the central square, sampled at a fixed resolution so that
            # the scale does not depend on the image size: each seed's ridge then reaches full height.
            probe_xs = np.linspace(-0.5, 0.5, 257, dtype=np.float32)
            probe = _ridged1(probe_xs, self.key(10 + i), freq, 9, 1 / 256)
            ridges = ridges / np.float32(max(float(probe.max()), 0.2))
            hgt = base + amp * (0.65 * ridges + 0.3 * massif * (0.5 + ridges))
            top = yh - hgt
            rows = self.rows(float(top.min()), yh)
            if rows is None:
                continue
            rs, y = rows
            ys = self.ys[rs]
            alpha = self.cov(top[None, :] - y) * self.cov(y - yh)
            depth = np.clip((y - top[None, :]) / np.float32(amp), 0.0, 1.0)  # 0 at the ridge line
            # Rock faces: the x-slope of a ridged field makes crests with a sunlit and a shaded side;
            # near the skyline the silhouette's own slope takes over.
            k, f, e = self.key(30 + i), 5.0 + 3.0 * i, 0.004
            rock = _ridged2(xs, ys, k, f, 7, self.px, stretch=(1.0, 1.4))
            rock_e = _ridged2(xs + e, ys, k, f, 7, self.px, stretch=(1.0, 1.4))
            face = np.tanh((rock_e - rock) / e * 0.06)
            sil = np.tanh(np.gradient(hgt, xs) * 1.2)[None, :] if xs.size > 1 else 0.0
            near_top = np.exp(-depth * 6.0)
            lit = np.clip(0.5 + 0.5 * (sil * near_top + face * (1 - near_top * 0.7)), 0.0, 1.0)
            col = color * (0.55 + 0.75 * lit)[..., None] * (0.85 + 0.3 * rock)[..., None]
            streaks = _fbm2(xs, ys, k ^ 0x55, 7.0, 6, self.px, stretch=(2.0, 0.7))
            alt = yh - y + (rock - 0.5) * 0.08 + (streaks - 0.5) * 0.3
            snowy = _smooth(snow - 0.004, snow + 0.004, alt) * _smooth(-0.3, 0.2, face + 0.4 * sil)
            snow_col = _rgb(0.70, 0.78, 0.92) + _rgb(0.30, 0.22, 0.08) * lit[..., None]
            col = col + (snow_col - col) * snowy[..., None]
            mist = fog + (1 - fog) * 0.6 * _smooth(0.35, 1.0, depth)
            col = col + (haze - col) * mist[..., None]
            _paint(self.img[rs], col, alpha)
        self.hills()

    def hills(self) -> None:
        """Wooded hills on the horizon: a rounded crown for every tree, shaded from the sun's side."""
        yh = self.HORIZON
        xs = self.xs
        crown_w = 0.011
        arc = np.zeros_like(xs)
        frac = np.zeros_like(xs)
        for row, (width, shift) in enumerate(((crown_w, 0.0), (crown_w * 0.73, 0.31))):
            u = xs / width + shift
            cell = np.floor(u)
            f = u - cell
            size = 0.35 + 0.65 * _lattice(cell.astype(np.int64), np.zeros(1, np.int64), self.key(22 + row))
            a = np.sqrt(np.clip(1.0 - (2.0 * f - 1.0) ** 2, 0.0, 1.0)) * size
            frac = np.where(a > arc, f, frac)
            arc = np.maximum(arc, a)
        visible = _smooth(1.5, 4.0, crown_w / self.px)  # crowns narrower than a few pixels blur away
        hgt = 0.016 + 0.045 * _fbm1(xs, self.key(20), 3.0, 3, self.px) + 0.009 * arc * visible
        top = yh - hgt
        rows = self.rows(float(top.min()), yh)
        if rows is None:
            return
        rs, y = rows
        ys = self.ys[rs]
        alpha = self.cov(top[None, :] - y) * self.cov(y - yh)
        depth = np.clip((y - top[None, :]) / np.float32(0.02), 0.0, 1.0)
        # 1 at a crown's outline, fading below it.
        crown = np.exp(np.minimum(top[None, :] - y, 0.0) / np.float32(0.005))
        side = (1.0 - 2.0 * frac)[None, :] * crown * visible  # +1 on a crown's sunny left flank
        clumps = _fbm2(xs, ys, self.key(35), 45.0, 5, self.px, stretch=(1.0, 1.6))
        lit = np.clip(0.45 + 0.35 * side + 0.7 * (clumps - 0.5) - 0.25 * depth, 0.0, 1.0)
        dark, bright = _rgb(0.05, 0.14, 0.07), _rgb(0.30, 0.46, 0.20)
        col = dark + (bright - dark) * lit[..., None]
        col = col + (_rgb(0.66, 0.76, 0.86) - col) * np.float32(0.18)
        _paint(self.img[rs], col, alpha)

    def meadow(self) -> None:
        """Grass from the horizon to the viewer: dry and lush patches, mottling, and blades up close."""
        yh = self.HORIZON
        rows = self.rows(yh, float(self.ys[-1]))
        if rows is None:
            return
        rs, y = rows
        xs, ys = self.xs, self.ys[rs]
        t = np.clip((y - yh) / np.float32(0.45), 0.0, 1.0)  # 0 at the horizon, 1 at the viewer
        far, near = _rgb(0.56, 0.64, 0.30), _rgb(0.22, 0.45, 0.11)
        base = far + (near - far) * (t**0.6)[..., None]
        patches = _fbm2(xs, ys, self.key(40), 3.0, 5, self.px, stretch=(1.0, 3.0))
        dry = _smooth(0.52, 0.68, patches)
        base = base + (_rgb(0.68, 0.63, 0.30) - base) * (dry * 0.6)[..., None]
        mottle = _fbm2(xs, ys, self.key(41), 18.0, 5, self.px, stretch=(1.0, 2.5))
        blades = _ridged2(xs, ys, self.key(42), 220.0, 2, self.px, stretch=(1.0, 0.1))
        tufts = _fbm2(xs, ys, self.key(43), 45.0, 3, self.px, stretch=(1.0, 0.35))
        near_w = _smooth(0.05, 0.8, t)
        shade = 0.75 + 0.55 * (mottle - 0.5) + near_w * (0.9 * (blades - 0.5) + 0.7 * (tufts - 0.5))
        col = base * shade[..., None]
        mist = np.exp(-(y - yh) / np.float32(0.02)) * np.float32(0.4)
        col = col + (_rgb(0.72, 0.80, 0.86) - col) * mist[..., None]
        _paint(self.img[rs], col, self.cov(yh - y))

    def flowers(self) -> None:
        """Dots of colour on the ground, laid out in perspective so they shrink towards the horizon."""
        yh = self.HORIZON
        win = self.window(float(self.xs[0]), float(self.xs[-1]), yh + 0.04, float(self.ys[-1]))
        if win is None:
            return
        rs, cs, x, y = win
        on_ground = y > yh + 0.03  # the window's margin can reach above the horizon on tiny images
        depth = np.float32(0.05) / np.maximum(y - np.float32(yh), 0.03)  # 1 at y = yh + 0.05
        cell = np.float32(0.006)
        gx = x * depth / cell
        gz = np.broadcast_to(depth / cell, gx.shape)
        ix, iz = np.floor(gx), np.floor(gz)
        key = self.key(50)
        h1 = _lattice(ix.astype(np.int64), iz.astype(np.int64), key)
        h2 = _lattice(ix.astype(np.int64), iz.astype(np.int64), key ^ 0x5BD1E995)
        h3 = _lattice(ix.astype(np.int64), iz.astype(np.int64), key ^ 0x27D4EB2F)
        cluster = _fbm2(self.xs[cs], self.ys[rs], self.key(51), 6.0, 3, self.px, stretch=(1.0, 3.0))
        share = 0.05 + 0.5 * _smooth(0.45, 0.7, cluster)
        present = (h1 < share) & on_ground
        fx, fz = 0.3 + 0.4 * h2, 0.3 + 0.4 * h3
        dx = (gx - ix - fx) * cell / depth  # ground offsets back to screen units
        dz = (gz - iz - fz) * cell * np.float32(0.05) / depth**2
        radius = np.float32(0.0008) / depth
        dist = np.sqrt(dx * dx + (dz * 1.8) ** 2)
        alpha = self.cov(dist - radius) * present * _smooth(0.6, 1.5, radius / np.float32(self.px))
        palette = np.stack(
            [_rgb(1.0, 0.86, 0.12), _rgb(0.98, 0.97, 0.94), _rgb(0.62, 0.32, 0.85), _rgb(0.90, 0.18, 0.12)]
        )
        which = np.minimum((h1 / share * 4).astype(np.int64), 3)
        col = palette[which] * (0.85 + 0.3 * h3)[..., None]
        _paint(self.img[rs, cs], col, alpha * 0.95)

    def lake(self) -> None:
        """A lake whose far shore is the horizon, mirroring the hills, mountains and sky above it."""
        yh = self.HORIZON
        cx, rx, ry = -0.17, 0.34, 0.12
        win = self.window(cx - rx * 1.1, cx + rx * 1.1, yh, yh + ry * 1.1)
        if win is None:
            return
        rs, cs, x, y = win
        xs, ys = self.xs[cs], self.ys[rs]
        wobble = (_fbm1(xs, self.key(60), 8.0, 5, self.px) - 0.5)[None, :] * 0.25
        e = np.sqrt(((x - cx) / rx) ** 2 + ((y - yh) / ry) ** 2) + wobble * (y - yh) / ry
        d = (e - 1.0) * ry  # roughly world units near the shore
        inside = self.cov(d) * self.cov(yh - y)
        # Mirror rows about the horizon, with ripples shifting the reflection sideways.
        ripple = _fbm2(xs, ys, self.key(61), 30.0, 5, self.px, stretch=(0.25, 3.0))
        mirror_y = 2 * yh - y
        shift = (ripple - 0.5) * 0.03 * (y - yh + 0.01) / 0.1
        rows = np.clip(np.rint(mirror_y * self.s + self.h / 2 - 0.5), 0, self.h - 1).astype(np.int64)
        cols = np.clip(np.rint((x + shift) * self.s + self.w / 2 - 0.5), 0, self.w - 1).astype(np.int64)
        reflection = self.img[rows, cols]
        t = np.clip((y - yh) / ry, 0.0, 1.0)  # 0 at the far shore, 1 at the near one
        deep = _rgb(0.08, 0.20, 0.30)
        water = reflection * 0.82 + (deep - reflection * 0.82) * (0.15 + 0.45 * t)[..., None]
        streak = _smooth(0.62, 0.75, ripple)
        water = water + (_rgb(0.85, 0.9, 0.95) - water) * (streak * 0.35)[..., None]
        shore = self.cov(d + 0.004)  # 1 well inside, 0 on the shore band
        sand = _rgb(0.50, 0.46, 0.34)
        col = sand + (water - sand) * shore[..., None]
        _paint(self.img[rs, cs], col, inside)

    def path(self) -> None:
        y0, y1 = 0.275, float(self.ys[-1])
        win = self.window(-0.3, 0.35, y0, y1)
        if win is None:
            return
        rs, cs, x, y = win
        u = np.clip((y - y0) / np.float32(0.23), 0.0, None)
        centre = 0.215 - 0.25 * u + 0.09 * np.sin(u * np.float32(math.pi))
        edge_noise = _fbm2(self.xs[cs], self.ys[rs], self.key(70), 40.0, 4, self.px)
        half = 0.010 + 0.055 * u + (edge_noise - 0.5) * 0.02 * (0.3 + u)
        d = np.abs(x - centre) - half
        alpha = self.cov(d) * self.cov(y0 - y)
        grit = _fbm2(self.xs[cs], self.ys[rs], self.key(71), 120.0, 3, self.px)
        rut = np.clip(1 - np.abs(np.abs(x - centre) / np.maximum(half, 1e-4) - 0.5) * 4, 0, 1)
        col = _rgb(0.60, 0.50, 0.36) * (0.75 + 0.5 * grit - 0.12 * rut)[..., None]
        _paint(self.img[rs, cs], col, alpha)

    def barn(self) -> None:
        """A red barn in two-point-ish view: lit gable front, shaded side wall, shingled roof."""
        win = self.window(0.10, 0.56, 0.05, 0.33)
        if win is None:
            return
        rs, cs, x, y = win
        img = self.img[rs, cs]
        ground = 0.275
        # Shadow cast to the right on the grass.
        shadow = _convex(
            x, y, [(0.30, ground), (0.45, ground - 0.012), (0.54, ground + 0.018), (0.36, ground + 0.03)]
        )
        img *= (1 - 0.3 * _smooth(0.004, -0.006, shadow))[..., None]
        planks = np.abs(((x * 160.0) % 1.0) - 0.5)
        plank_dark = 1 - 0.25 * _smooth(0.38, 0.5, planks)
        wood = _fbm2(self.xs[cs], self.ys[rs], self.key(80), 25.0, 4, self.px, stretch=(0.3, 3.0))
        red = _rgb(0.70, 0.12, 0.09)
        # Side wall (receding to the right).
        side = _convex(x, y, [(0.30, 0.155), (0.45, 0.170), (0.45, ground - 0.012), (0.30, ground)])
        side_col = red * (0.55 * plank_dark * (0.8 + 0.4 * wood))[..., None]
        _paint(img, side_col, self.cov(side))
        for wx in (0.335, 0.395):  # windows on the side wall
            frame = _convex(x, y, [(wx, 0.19), (wx + 0.03, 0.192), (wx + 0.03, 0.225), (wx, 0.226)])
            glass = _convex(
                x, y, [(wx + 0.005, 0.196), (wx + 0.025, 0.197), (wx + 0.025, 0.22), (wx + 0.005, 0.221)]
            )
            _paint(img, _rgb(0.78, 0.76, 0.72), self.cov(frame))
            _paint(img, _rgb(0.10, 0.12, 0.16), self.cov(glass))
        # Roof over the side wall, shingles running parallel to the eave.
        roof = _convex(x, y, [(0.215, 0.075), (0.385, 0.092), (0.465, 0.172), (0.295, 0.152)])
        along = (y - 0.075 - (x - 0.215) * 0.1) * 180.0
        shingle = 1 - 0.3 * _smooth(0.35, 0.5, np.abs((along % 1.0) - 0.5))
        roof_col = _rgb(0.30, 0.27, 0.27) * (shingle * (0.8 + 0.4 * wood))[..., None]
        _paint(img, roof_col, self.cov(roof))
        # Gable front, facing the light.
        front = np.minimum(
            _convex(x, y, [(0.135, 0.155), (0.295, 0.155), (0.295, ground), (0.135, ground)]),
            _convex(x, y, [(0.215, 0.085), (0.295, 0.155), (0.135, 0.155)]),
        )
        front_col = red * (plank_dark * (0.85 + 0.4 * wood))[..., None]
        _paint(img, front_col, self.cov(front))
        # Eaves: a thin white trim along both front roof edges.
        trim = np.minimum(
            _convex(x, y, [(0.215, 0.074), (0.305, 0.154), (0.300, 0.162), (0.215, 0.084)]),
            _convex(x, y, [(0.215, 0.074), (0.125, 0.154), (0.130, 0.162), (0.215, 0.084)]),
        )
        _paint(img, _rgb(0.93, 0.92, 0.88), self.cov(trim))
        # Barn door: white frame with a white X, and a hayloft window above it.
        white = _rgb(0.94, 0.93, 0.89)
        door_out = _convex(x, y, [(0.175, 0.19), (0.255, 0.19), (0.255, ground), (0.175, ground)])
        door_in = _convex(x, y, [(0.181, 0.196), (0.249, 0.196), (0.249, ground), (0.181, ground)])
        _paint(img, white, self.cov(door_out))
        _paint(img, red * 0.8 * plank_dark[..., None], self.cov(door_in))
        cross = np.minimum(
            np.abs((x - 0.181) * (ground - 0.196) - (y - 0.196) * (0.249 - 0.181)) / 0.087 - 0.003,
            np.abs((x - 0.181) * (0.196 - ground) - (y - ground) * (0.249 - 0.181)) / 0.087 - 0.003,
        )
        _paint(img, white, self.cov(np.maximum(cross, door_in)))
        loft_out = _convex(x, y, [(0.198, 0.125), (0.232, 0.125), (0.232, 0.158), (0.198, 0.158)])
        loft_in = _convex(x, y, [(0.203, 0.130), (0.227, 0.130), (0.227, 0.153), (0.203, 0.153)])
        _paint(img, white, self.cov(loft_out))
        _paint(img, _rgb(0.12, 0.09, 0.08), self.cov(loft_in))

    def fence(self) -> None:
        """A wooden post-and-rail fence along the path's left side: many small, regular edges."""
        win = self.window(-0.16, 0.12, 0.27, 0.39)
        if win is None:
            return
        rs, cs, x, y = win
        base = 0.375 - 0.28 * (x + 0.16) * 0.35
        scale = 1.0 - (x + 0.16) * 0.5  # nearer on the left: a little taller
        rel = (base - y) / scale  # height above the ground line
        span = (x > -0.16) & (x < 0.11)
        spacing = 0.045
        post_x = np.abs(((x + 0.16) / spacing + 0.5) % 1.0 - 0.5) * spacing
        post = np.maximum(post_x - 0.004 * scale, np.maximum(rel - 0.055, -rel))
        rails = np.minimum(np.abs(rel - 0.045), np.abs(rel - 0.022)) - 0.0035 * scale
        wood = _rgb(0.52, 0.40, 0.27)
        _paint(self.img[rs, cs], wood * 0.8, self.cov(rails) * span)
        _paint(self.img[rs, cs], wood, self.cov(post) * span)
        cap = np.maximum(post_x - 0.004 * scale, np.abs(rel - 0.054) - 0.0015)
        _paint(self.img[rs, cs], wood * 1.35, self.cov(cap) * span)

    def tree(self) -> None:
        """A broadleaf tree on the left: tapering trunk, lumpy sunlit canopy, and its shadow."""
        tx, base = -0.31, 0.40
        win = self.window(-0.56, -0.04, -0.14, 0.46)
        if win is None:
            return
        rs, cs, x, y = win
        img = self.img[rs, cs]
        xs, ys = self.xs[cs], self.ys[rs]
        shadow = ((x - (tx + 0.09)) / 0.14) ** 2 + ((y - (base + 0.012)) / 0.025) ** 2 - 1.0
        img *= (1 - 0.4 * _smooth(0.3, -0.4, shadow))[..., None]
        lean = (base - y) * 0.08
        half = 0.011 + 0.012 * np.clip((y - 0.25) / 0.15, 0.0, 1.0) ** 2
        trunk = np.maximum(np.abs(x - tx - lean) - half, np.maximum(y - base, 0.14 - y))
        bark = _fbm2(xs, ys, self.key(90), 90.0, 4, self.px, stretch=(3.0, 0.4))
        side = np.clip((x - tx - lean) / half, -1.0, 1.0)
        trunk_col = _rgb(0.38, 0.26, 0.16) * ((0.9 - 0.35 * side) * (0.6 + 0.7 * bark))[..., None]
        _paint(img, trunk_col, self.cov(trunk))
        # Canopy: a union of blobs with a noisy outline.
        blobs = [
            (-0.31, 0.06, 0.115),
            (-0.39, 0.13, 0.085),
            (-0.225, 0.125, 0.09),
            (-0.31, 0.17, 0.075),
            (-0.36, 0.03, 0.07),
            (-0.255, 0.035, 0.075),
        ]
        d = None
        for bx, by, r in blobs:
            e = np.sqrt((x - bx) ** 2 + (y - by) ** 2) - r
            d = e if d is None else np.minimum(d, e)
        leaves = _fbm2(xs, ys, self.key(91), 14.0, 8, self.px, gain=0.6)
        d = d + (leaves - 0.5) * 0.09
        sx, sy = self.sun
        cxy = (-0.31, 0.10)
        lx, ly = sx - cxy[0], sy - cxy[1]
        n = math.hypot(lx, ly)
        toward = ((x - cxy[0]) * (lx / n) + (y - cxy[1]) * (ly / n)) / 0.16
        light = np.clip(0.5 + 0.45 * toward + (leaves - 0.5) * 1.6 - np.clip(-d, 0, 0.05) * 2, 0.0, 1.0)
        fine = _fbm2(xs, ys, self.key(92), 110.0, 3, self.px)
        dark, bright = _rgb(0.06, 0.20, 0.06), _rgb(0.45, 0.66, 0.20)
        col = dark + (bright - dark) * (light * (0.7 + 0.6 * fine))[..., None]
        _paint(img, col, self.cov(d))

    def finish(self) -> np.ndarray:
        img = self.img
        # Vignette relative to the frame (not the world square), so every aspect ratio darkens alike.
        x = self.xs[None, :] * np.float32(self.s / self.w * 2)
        y = self.ys[:, None] * np.float32(self.s / self.h * 2)
        vignette = 1.0 - 0.18 * np.clip(x * x + y * y - 0.45, 0.0, None)
        img *= vignette[..., None]
        # Gentle S-curve for photo-like contrast, then sensor grain (per pixel, hence any-resolution).
        img = np.clip(img, 0.0, 1.0)
        img = img + 0.12 * img * (1 - img) * (2 * img - 1)
        rows = np.arange(self.h, dtype=np.int64)[:, None]
        cols = np.arange(self.w, dtype=np.int64)[None, :]
        grain = _lattice(cols, rows, self.key(100)) - np.float32(0.5)
        img = img + grain[..., None] * np.float32(0.025)
        return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def test_image(width: int = 224, height: int = 224, seed: int = 0) -> Image.Image:
    """A photo-like outdoor scene drawn by glnet itself, the input used when the user gives no --input.

    Sky with clouds and sun, hazy mountain ridges, a meadow with flowers, a lake, a red barn, a fence
    and a tree: edges, textures and colours for a convnet to respond to. Deterministic for a seed; the
    composition does not depend on the size, which only adds detail (and view, for other aspect ratios).
    """
    width, height = _check_side(width, "width"), _check_side(height, "height")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be an integer, got {seed!r}")
    return Image.fromarray(_Scene(width, height, int(seed)).render())


test_image.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name
