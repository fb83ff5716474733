"""Pictures of an inspection, as plain RGB arrays: the input with the saliency map and receptive field, a
feature map or kernel in the layer's colours. Shared by ``glnet inspect`` and the renderer's panels."""

from __future__ import annotations

import numpy as np
import torch

from ..colormap import ValueRange, colour_codes, lut, robust_range
from .receptive import Box

__all__ = ["HEAT", "colour_image", "enlarge", "saliency_overlay"]

HEAT = np.array([255, 120, 30], np.float32)  # saliency, drawn over the dimmed input
BOX = np.array([90, 230, 255], np.uint8)  # the receptive field's outline


def colour_image(values: torch.Tensor, rng: ValueRange | None = None) -> np.ndarray:
    """A 2-D tensor as RGB uint8 in the colours the cloud uses for it (``rng``: the layer's range)."""
    v = values.detach().float().cpu()
    if v.dim() == 1:
        v = v[None]
    rng = rng or robust_range(v)
    return lut()[colour_codes(v.reshape(-1), rng)][:, :3].reshape(*v.shape, 3)


def enlarge(img: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement: every cell stays a crisp square."""
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


def _outline(img: np.ndarray, box: Box, colour: np.ndarray, width: int) -> None:
    y0, y1, x0, x1 = box
    h, w = img.shape[:2]
    for k in range(width):
        ya, yb = max(y0 - k, 0), min(y1 + k, h - 1)
        xa, xb = max(x0 - k, 0), min(x1 + k, w - 1)
        img[ya, xa : xb + 1] = colour
        img[yb, xa : xb + 1] = colour
        img[ya : yb + 1, xa] = colour
        img[ya : yb + 1, xb] = colour


def saliency_overlay(
    rgb: np.ndarray, saliency: torch.Tensor | None = None, box: Box | None = None, *, line: int = 0
) -> np.ndarray:
    """The input image (H, W, 3) dimmed under the saliency map (brightest = most sensitive pixel, on a
    square-root scale so faint support stays visible) with the receptive field outlined. A 1-D saliency
    (over a signal's samples) lights the columns of the signal's waveform picture."""
    out = rgb.astype(np.float32)
    s = saliency.detach().float().cpu().numpy() if saliency is not None else None
    if s is not None and s.ndim == 1 and s.size:  # each column: its samples' largest
        starts = np.linspace(0, s.size, rgb.shape[1] + 1).astype(np.int64)[:-1]
        s = np.broadcast_to(np.maximum.reduceat(s, starts)[None], rgb.shape[:2])
    if s is not None and s.shape == rgb.shape[:2]:
        top = float(s.max())
        a = np.sqrt(s / top) if top > 0 else np.zeros_like(s)
        out = out * 0.4 + a[..., None] * HEAT * 0.9
    img = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if box is not None:
        _outline(img, box, BOX, line or max(1, rgb.shape[0] // 112))
    return img
