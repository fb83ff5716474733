"""What the model sees: image files, the normalised tensor a convnet takes, and checked image sizes.

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
    "check_side",
    "load_image",
    "parse_size",
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


def to_tensor(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """Scale ``image`` to cover ``size=(width, height)``, centre-crop it, and normalise with ImageNet stats.

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
    arr = (arr - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]
