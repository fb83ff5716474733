"""What the model sees: image files, tensor files, the normalised tensor a convnet takes, checked sizes and
shapes, and the input as a picture (an image, a clip's middle frame, a grey image or a waveform).

The built-in test scene used when no image is given is drawn in ``glnet.testimage``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from glnet.data import IMAGENET_MEAN, IMAGENET_STD
from glnet.errors import InputError

__all__ = [
    "MAX_SIDE",
    "TENSOR_SUFFIXES",
    "check_side",
    "input_picture",
    "is_tensor_file",
    "load_image",
    "load_tensor",
    "parse_shape",
    "parse_size",
    "picture_aspect",
    "to_tensor",
]

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


def check_side(value: object, name: str) -> int:
    """``value`` as an int when it is a usable image side (1..MAX_SIDE); InputError naming ``name`` if not."""
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


def to_tensor(
    image: Image.Image,
    size: tuple[int, int],
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> torch.Tensor:
    """Scale ``image`` to cover ``size=(width, height)``, centre-crop it, and normalise (ImageNet's stats
    unless ``mean``/``std`` are given).

    Returns a contiguous float32 tensor of shape (1, 3, height, width), as torchvision's models expect.
    For a square size this is torchvision's Resize(shorter side) + CenterCrop.
    """
    width, height = (check_side(v, n) for v, n in zip(size, ("width", "height"), strict=True))
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
    m = np.asarray(mean if mean is not None and len(mean) == 3 else IMAGENET_MEAN, np.float32)
    sd = np.asarray(std if std is not None and len(std) == 3 else IMAGENET_STD, np.float32)
    arr = (arr - m) / sd
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]


# --------------------------------------------------------------------------------------------------
# Tensors: shapes and files

MAX_ELEMENTS = 1 << 30
"""Largest input tensor accepted from --input-shape (elements)."""

TENSOR_SUFFIXES = (".npy", ".pt", ".pth")
"""--input files read as a tensor rather than an image."""


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse ``'1x3x16x112x112'`` into a full input shape (batch first); InputError unless 2 to 6 positive
    integers with at most MAX_ELEMENTS elements in all."""
    parts = [p.strip() for p in re.split(r"[xX×,]", text.strip())] if isinstance(text, str) else []
    if not 2 <= len(parts) <= 6 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise InputError(
            f"invalid --input-shape {text!r}: expected 2 to 6 positive integers joined by x, batch first, "
            "e.g. 1x3x224x224, 1x3x16x112x112 (video) or 1x1x16000 (audio)"
        )
    shape = tuple(int(p) for p in parts)
    if int(np.prod(shape, dtype=np.int64)) > MAX_ELEMENTS:
        raise InputError(f"--input-shape {text!r} is too large (over {MAX_ELEMENTS:,} values)")
    return shape


def is_tensor_file(path: str | os.PathLike) -> bool:
    """True when ``path`` names a tensor file (.npy, .pt, .pth) rather than an image."""
    return Path(path).suffix.lower() in TENSOR_SUFFIXES


def load_tensor(path: str | os.PathLike) -> torch.Tensor:
    """Read a float tensor from ``.npy`` (no pickles) or ``.pt`` (``weights_only=True``): never runs code."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input {str(path)!r} does not exist")
    try:
        if path.suffix.lower() == ".npy":
            obj: object = torch.from_numpy(np.array(np.load(path, allow_pickle=False)))
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # numpy and torch report unreadable files with many types
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{str(path)!r} is not a readable tensor file (read without code): {why}") from None
    if isinstance(obj, dict) and len(obj) == 1:
        obj = next(iter(obj.values()))
    if not isinstance(obj, torch.Tensor):
        raise InputError(f"{str(path)!r} holds a {type(obj).__name__}, not one tensor")
    if obj.dim() == 0 or obj.numel() == 0:
        raise InputError(f"{str(path)!r} holds an empty tensor of shape {tuple(obj.shape)}")
    numeric = obj.is_floating_point() or obj.dtype.is_signed or obj.dtype == torch.uint8
    if obj.dtype == torch.bool or not numeric:
        raise InputError(f"{str(path)!r} holds {obj.dtype} values; the model needs numbers")
    return obj if obj.is_floating_point() else obj.float()


# --------------------------------------------------------------------------------------------------
# The input as a picture (the input panel)

WAVEFORM_SIZE = (512, 160)
"""(width, height) of the picture of a 1-D signal."""


def _sample(x: torch.Tensor) -> np.ndarray:
    t = x.detach()[0] if x.dim() >= 2 else x.detach()
    return t.float().cpu().numpy()


def picture_aspect(x: torch.Tensor) -> float | None:
    """Width / height of :func:`input_picture` for input batch ``x`` (None when it has no picture)."""
    shape = tuple(x.shape[1:])
    if len(shape) == 4 and shape[0] in (1, 3):  # a clip (C, T, H, W)
        shape = (shape[0], shape[2], shape[3])
    if len(shape) == 3 and shape[0] in (1, 3):
        return shape[2] / shape[1]
    if len(shape) == 2 and shape[0] <= 8 and shape[1] >= 16:
        return WAVEFORM_SIZE[0] / WAVEFORM_SIZE[1]
    return None


def input_picture(
    x: torch.Tensor, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None
) -> np.ndarray | None:
    """The first sample of input batch ``x`` as an RGB uint8 image (H, W, 3): an image (normalisation
    undone), a clip's middle frame, a grey image for one channel, a waveform for a (C, L) signal; or None."""
    if picture_aspect(x) is None:
        return None
    a = _sample(x)
    if a.ndim == 4:  # (C, T, H, W): the middle frame
        a = a[:, a.shape[1] // 2]
    if a.ndim == 2:
        return waveform_image(a)
    if a.shape[0] == 1:
        g = a[0]
        lo, hi = np.nanpercentile(g, (0.5, 99.5)) if np.isfinite(g).any() else (0.0, 1.0)
        g = np.clip((g - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
        grey = (np.nan_to_num(g) * 255 + 0.5).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    m = np.asarray(mean if mean is not None and len(mean) == 3 else IMAGENET_MEAN, np.float32)[:, None, None]
    sd = np.asarray(std if std is not None and len(std) == 3 else IMAGENET_STD, np.float32)[:, None, None]
    rgb = np.clip(np.nan_to_num(a * sd + m), 0, 1)
    return (rgb * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0).copy()


def waveform_image(signal: np.ndarray, size: tuple[int, int] = WAVEFORM_SIZE) -> np.ndarray:
    """A (C, L) signal drawn as an RGB uint8 image: one band per channel, each column the min..max envelope
    of its samples, on a dark background with a faint zero line."""
    width, height = size
    sig = np.nan_to_num(np.asarray(signal, np.float32))
    if sig.ndim == 1:
        sig = sig[None]
    img = np.full((height, width, 3), 24, np.uint8)
    channels = sig.shape[0]
    band = height / channels
    top = float(np.abs(sig).max()) or 1.0
    starts = np.linspace(0, sig.shape[1], width + 1).astype(np.int64)[:-1]
    rows = np.arange(height, dtype=np.float32)[:, None]
    for c in range(channels):
        s = sig[c] / top
        lo, hi = np.minimum.reduceat(s, starts), np.maximum.reduceat(s, starts)
        mid, half = (c + 0.5) * band, 0.45 * band
        y0, y1 = mid - hi * half - 0.5, mid - lo * half + 0.5  # y grows downwards
        img[int(mid)] = (70, 70, 70)
        ink = (rows >= y0[None]) & (rows <= y1[None])
        img[ink] = (120, 210, 255)
    return img
