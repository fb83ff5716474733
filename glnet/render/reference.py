"""The compute rasterizer in plain torch: the reference the tests hold the GL path to, on any torch device.

Same arithmetic as ``raster.comp``: each layer's plane in clip space (:meth:`FrameParams.plane_uniforms`), the
coverage rule of ``camera.glsl``, 32-bit keys ``depth bits | colour code`` and a min-reduction per pixel
(``scatter_reduce(amin)``). On a CUDA device it runs where the values already are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..colormap import CODE_DIVERGING, CODE_NAN, CODE_NEG_INF, CODE_POS_INF, LEVELS, ValueRange, lut
from ..layout import Slab
from .frame import FrameParams

__all__ = ["EMPTY_KEY", "rasterize_reference", "resolve_reference"]

EMPTY_KEY = 0xFFFFFFFF


def _codes(v: torch.Tensor, rng: ValueRange) -> torch.Tensor:
    lo = torch.tensor(rng.lo, dtype=torch.float32, device=v.device)
    scale = torch.tensor(rng.scale, dtype=torch.float32, device=v.device)
    t = ((v - lo) * scale).clamp(0.0, 1.0)
    code = torch.floor(t * (LEVELS - 1) + 0.5).nan_to_num(0.0).to(torch.int64)
    if rng.diverging:
        code = code + CODE_DIVERGING
    code = torch.where(torch.isnan(v), CODE_NAN, code)
    code = torch.where(torch.isposinf(v), CODE_POS_INF, code)
    return torch.where(torch.isneginf(v), CODE_NEG_INF, code)


def _cells(slab: Slab, device: torch.device) -> torch.Tensor:
    _c, h, w = slab.grid
    i = torch.arange(slab.count, device=device)
    ch, r = i // (h * w), i % (h * w)
    row, col = r // w, r % w
    gx, gy = slab.gap
    cx = (ch % slab.tiles_x) * (w + gx) + col
    cy = (ch // slab.tiles_x) * (h + gy) + row
    return torch.stack([cx, cy], dim=1).to(torch.float32)


def rasterize_reference(
    slabs: Sequence[Slab], values: Sequence[torch.Tensor], ranges: Sequence[ValueRange], frame: FrameParams
) -> torch.Tensor:
    """Keys (height, width) as int64 (bottom row first, empty = 0xFFFFFFFF) for the layers' neurons."""
    device = values[0].device if values else torch.device("cpu")
    width, height = frame.width, frame.height
    keys = torch.full((height * width,), EMPTY_KEY, dtype=torch.int64, device=device)
    viewport = torch.tensor([width, height], dtype=torch.float32, device=device)
    for slab, v, rng in zip(slabs, values, ranges, strict=True):
        u = frame.slab_uniforms(slab)
        f32 = {
            k: torch.as_tensor(np.asarray(u[k], np.float32), device=device)
            for k in ("u_clip_origin", "u_clip_dx", "u_clip_dy")
        }
        cell = _cells(slab, device)
        clip = f32["u_clip_origin"] + cell[:, :1] * f32["u_clip_dx"] + cell[:, 1:] * f32["u_clip_dy"]
        w = clip[:, 3]
        visible = (w > 0) & (clip[:, :3].abs() <= w[:, None]).all(dim=1)
        inv_w = 1.0 / w
        centre = (clip[:, :2] * inv_w[:, None] * 0.5 + 0.5) * viewport
        radius = (np.float32(u["u_radius_k"]) * inv_w).clamp(0.5, frame.max_radius)
        depth = w.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFC00
        key = depth | _codes(v.reshape(-1).float(), rng)
        sel = visible.nonzero().squeeze(1)
        centre, radius, key = centre[sel], radius[sel], key[sel]
        base = torch.minimum(
            centre.floor().to(torch.int64), torch.tensor([width - 1, height - 1], device=device)
        )
        keys.scatter_reduce_(0, base[:, 1] * width + base[:, 0], key, reduce="amin")
        big = (radius > 0.5).nonzero().squeeze(1)
        if len(big):
            reach = int(np.ceil(float(radius[big].max()))) + 1
            for dy in range(-reach, reach + 1):
                for dx in range(-reach, reach + 1):
                    px = base[big, 0] + dx
                    py = base[big, 1] + dy
                    d = torch.stack([px.float() + 0.5, py.float() + 0.5], dim=1) - centre[big]
                    ok = (
                        ((d * d).sum(dim=1) <= radius[big] ** 2)
                        & (px >= 0)
                        & (px < width)
                        & (py >= 0)
                        & (py < height)
                    )
                    k = ok.nonzero().squeeze(1)
                    if len(k):
                        keys.scatter_reduce_(0, py[k] * width + px[k], key[big][k], reduce="amin")
    return keys.reshape(height, width)


def resolve_reference(keys: torch.Tensor) -> np.ndarray:
    """The image (height, width, 4) uint8, top row first, that ``present.frag`` makes of the keys."""
    from ..colormap import BACKGROUND

    k = keys.cpu().numpy()
    img = lut()[(k & 1023).astype(np.int64)]
    img[k == EMPTY_KEY] = np.round(np.array([*BACKGROUND, 1.0]) * 255).astype(np.uint8)
    return img[::-1].copy()
