"""The compute rasterizer in plain torch, on any torch device: the reference the tests hold the GL path to,
and the ``torch`` renderer's rasterizer (:mod:`glnet.render.torch_raster`).

Same arithmetic as ``raster.comp``, from the same per-draw uniforms: each layer's plane in clip space
(:meth:`FrameParams.plane_uniforms`), the coverage rule of ``camera.glsl`` and a min-reduction per pixel
(``scatter_reduce(amin)``) of 64-bit keys whose high half is the GL key ``depth bits | colour code`` and whose
low half names the neuron, so the same pass also answers picks. On a CUDA device it runs where the values
already are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..colormap import CODE_DIVERGING, CODE_NAN, CODE_NEG_INF, CODE_POS_INF, LEVELS, ValueRange, lut
from ..layout import Slab
from .frame import FrameParams

__all__ = [
    "EMPTY_KEY",
    "EMPTY_KEY64",
    "keys32",
    "rasterize_items",
    "rasterize_reference",
    "resolve_reference",
]

EMPTY_KEY = 0xFFFFFFFF


EMPTY_KEY64 = torch.iinfo(torch.int64).max


def _grid_cells(grid: Sequence[int], gap: Sequence[int], count: int, device: torch.device) -> torch.Tensor:
    """Each neuron's cell (cx, cy) from ``u_grid`` (C, H, W, tiles_x) and ``u_gap``: ``layer.glsl``."""
    _c, h, w, tiles_x = (int(v) for v in grid)
    i = torch.arange(count, device=device)
    ch, r = i // (h * w), i % (h * w)
    row, col = r // w, r % w
    cx = (ch % tiles_x) * (w + int(gap[0])) + col
    cy = (ch // tiles_x) * (h + int(gap[1])) + row
    return torch.stack([cx, cy], dim=1).to(torch.float32)


def _item_codes(v: torch.Tensor, u: dict[str, object]) -> torch.Tensor:
    lo, scale = (float(np.float32(x)) for x in u["u_range"])  # type: ignore[union-attr]
    diverging = bool(u["u_diverging"])
    t = ((v - lo) * scale).clamp(0.0, 1.0)
    code = torch.floor(t * (LEVELS - 1) + 0.5).nan_to_num(0.0).to(torch.int64)
    if diverging:
        code = code + CODE_DIVERGING
    code = torch.where(torch.isnan(v), CODE_NAN, code)
    code = torch.where(torch.isposinf(v), CODE_POS_INF, code)
    return torch.where(torch.isneginf(v), CODE_NEG_INF, code)


def rasterize_items(
    items: Sequence[tuple[dict[str, object], torch.Tensor, int]], frame: FrameParams
) -> torch.Tensor:
    """64-bit keys (height * width,) for draws given as (uniforms, values, first id): the high 32 bits are
    ``raster.comp``'s key (depth bits | colour code), the low 32 the neuron's id (first id + its index), so
    the minimum per pixel is the compute rasterizer's key and names the neuron drawn. Empty: EMPTY_KEY64."""
    device = items[0][1].device if items else torch.device("cpu")
    width, height = frame.width, frame.height
    keys = torch.full((height * width,), EMPTY_KEY64, dtype=torch.int64, device=device)
    viewport = torch.tensor([width, height], dtype=torch.float32, device=device)
    top = torch.tensor([width - 1, height - 1], device=device)
    for u, v, first in items:
        count = int(u["u_count"])  # type: ignore[call-overload]
        f32 = {
            k: torch.as_tensor(np.asarray(u[k], np.float32), device=device)
            for k in ("u_clip_origin", "u_clip_dx", "u_clip_dy")
        }
        cell = _grid_cells(u["u_grid"], u["u_gap"], count, device)  # type: ignore[arg-type]
        clip = f32["u_clip_origin"] + cell[:, :1] * f32["u_clip_dx"] + cell[:, 1:] * f32["u_clip_dy"]
        w = clip[:, 3]
        visible = (w > 0) & (clip[:, :3].abs() <= w[:, None]).all(dim=1)
        sel = visible.nonzero().squeeze(1)
        if not len(sel):
            continue
        clip, w = clip[sel], w[sel]
        inv_w = 1.0 / w
        centre = (clip[:, :2] * inv_w[:, None] * 0.5 + 0.5) * viewport
        radius = (np.float32(u["u_radius_k"]) * inv_w).clamp(0.5, frame.max_radius)
        depth = w.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFC00
        code = _item_codes(v.reshape(-1)[:count][sel].float(), u)
        key = ((depth | code) << 32) | (sel + int(first))
        base = torch.minimum(centre.floor().to(torch.int64), top)
        keys.scatter_reduce_(0, base[:, 1] * width + base[:, 0], key, reduce="amin")
        big = (radius > 0.5).nonzero().squeeze(1)
        if len(big):
            reach = int(np.ceil(float(radius[big].max()))) + 1
            cb, rb, kb, bb = centre[big], radius[big], key[big], base[big]
            for dy in range(-reach, reach + 1):
                for dx in range(-reach, reach + 1):
                    px, py = bb[:, 0] + dx, bb[:, 1] + dy
                    d = torch.stack([px.float() + 0.5, py.float() + 0.5], dim=1) - cb
                    ok = ((d * d).sum(dim=1) <= rb**2) & (px >= 0) & (px < width) & (py >= 0) & (py < height)
                    k = ok.nonzero().squeeze(1)
                    if len(k):
                        keys.scatter_reduce_(0, py[k] * width + px[k], kb[k], reduce="amin")
    return keys


def keys32(keys64: torch.Tensor) -> torch.Tensor:
    """The compute rasterizer's 32-bit keys (as int64, empty = 0xFFFFFFFF) from 64-bit ones."""
    return torch.where(keys64 == EMPTY_KEY64, torch.full_like(keys64, EMPTY_KEY), keys64 >> 32)


def rasterize_reference(
    slabs: Sequence[Slab], values: Sequence[torch.Tensor], ranges: Sequence[ValueRange], frame: FrameParams
) -> torch.Tensor:
    """Keys (height, width) as int64 (bottom row first, empty = 0xFFFFFFFF) for the layers' neurons."""
    items = []
    for slab, v, rng in zip(slabs, values, ranges, strict=True):
        c, h, w = slab.grid
        u = {
            **frame.slab_uniforms(slab),
            "u_grid": (c, h, w, slab.tiles_x),
            "u_gap": slab.gap,
            "u_count": slab.count,
            "u_range": (rng.lo, rng.scale),
            "u_diverging": int(rng.diverging),
        }
        items.append((u, v, slab.offset))
    return keys32(rasterize_items(items, frame)).reshape(frame.height, frame.width)


def resolve_reference(keys: torch.Tensor) -> np.ndarray:
    """The image (height, width, 4) uint8, top row first, that ``present.frag`` makes of the keys."""
    from ..colormap import BACKGROUND

    k = keys.cpu().numpy()
    img = lut()[(k & 1023).astype(np.int64)]
    img[k == EMPTY_KEY] = np.round(np.array([*BACKGROUND, 1.0]) * 255).astype(np.uint8)
    return img[::-1].copy()
