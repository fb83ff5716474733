"""The neuron cloud on the GPU: one buffer of values (4 bytes a neuron), the colour table, weight atlases.

Layers sit back to back in the values buffer, each starting on a 256-byte boundary so it can be bound as a
storage range of its own (llvmpipe caps one binding at 128 MiB; a layer is far smaller). Nothing else is
stored per neuron: positions come from the layout table in the shaders.

Values arrive as a *frame-set*: one tensor per layer, packed on their own device into one flat array and
sent in one upload on the next :meth:`NeuronCloud.flush` (render thread). On CUDA with interop the packed
tensor is copied device-to-device into the GL buffer instead (:mod:`glnet.gpu.interop`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..colormap import ValueRange, lut, robust_range
from ..layout import Layout, Slab, WeightAtlas
from .buffer import Buffer
from .texture import Texture2D, TiledTexture

if TYPE_CHECKING:
    from .context import GLContext

__all__ = ["LAYER_ALIGN", "LayerGPU", "NeuronCloud", "layer_offsets", "pack_values"]

LAYER_ALIGN = 256  # bytes; a multiple of every driver's SSBO offset alignment seen (16..256)
BYTES_PER_NEURON = 4


@dataclass
class LayerGPU:
    """A layer as the renderers see it: its slab, byte range in the values buffer and colour range."""

    slab: Slab
    byte_offset: int
    range: ValueRange

    @property
    def nbytes(self) -> int:
        return self.slab.count * BYTES_PER_NEURON

    def uniforms(self) -> dict[str, object]:
        """The layer's own uniforms (``layer.glsl``, ``colormap.glsl``); the camera adds its plane per frame."""
        s = self.slab
        c, h, w = s.grid
        return {
            "u_grid": (c, h, w, s.tiles_x),
            "u_gap": s.gap,
            "u_inv": (1.0 / (h * w), 1.0 / w, 1.0 / s.tiles_x),
            "u_count": s.count,
            "u_range": (self.range.lo, self.range.scale),
            "u_diverging": int(self.range.diverging),
        }


def layer_offsets(layout: Layout, align: int = LAYER_ALIGN) -> tuple[list[int], int]:
    """Byte offset of each layer in the values buffer, and the buffer's total size."""
    offsets, at = [], 0
    for s in layout.slabs:
        offsets.append(at)
        at += -(-(s.count * BYTES_PER_NEURON) // align) * align
    return offsets, at


def pack_values(values: Sequence[torch.Tensor], offsets: Sequence[int], total_bytes: int) -> torch.Tensor:
    """One flat float32 tensor (on the values' device) holding each layer at its offset."""
    if not values:
        raise ValueError("no layer values to pack")
    device = values[0].device
    flat = torch.zeros(total_bytes // BYTES_PER_NEURON, dtype=torch.float32, device=device)
    for v, off in zip(values, offsets):
        start = off // BYTES_PER_NEURON
        flat[start : start + v.numel()].copy_(v.reshape(-1), non_blocking=True)
    return flat


class NeuronCloud:
    """Owns the GPU copy of one layout's neuron values, colour ranges, colour table and textures."""

    def __init__(self, ctx: GLContext, layout: Layout, *, label: str = "neurons") -> None:
        self.ctx = ctx
        self.layout = layout
        self.offsets, self.nbytes = layer_offsets(layout)
        self.values = Buffer(ctx, self.nbytes, label=f"{label}.values")
        self.lut = Texture2D(ctx, 1024, 1, "rgba8", data=lut()[None], label="colour table")
        self.layers = [LayerGPU(s, off, ValueRange(0.0, 1.0, False)) for s, off in zip(layout.slabs, self.offsets)]
        self.weights: dict[int, tuple[TiledTexture, WeightAtlas, ValueRange]] = {}
        self.input_image: Texture2D | None = None
        self._lock = threading.Lock()
        self._pending_ranges: list[ValueRange] | None = None
        self.frame_sets = 0
        self._sink = None  # a CUDA-GL interop writer, when attached

    # -- values -------------------------------------------------------------------------------------------
    def check(self, values: Sequence[torch.Tensor]) -> None:
        if len(values) != len(self.layers):
            raise ValueError(f"{len(values)} layer tensors for a layout of {len(self.layers)} layers")
        for v, layer in zip(values, self.layers):
            if v.numel() != layer.slab.count:
                raise ValueError(
                    f"layer {layer.slab.name!r} has {layer.slab.count} neurons but its tensor {v.numel()}"
                )

    def set_values(
        self, values: Sequence[torch.Tensor], ranges: Sequence[ValueRange] | None = None
    ) -> None:
        """Queue a frame-set (one tensor per layer, any device); ranges are computed on that device if not given.

        Thread-safe and GL-free: the upload happens in :meth:`flush` on the render thread.
        """
        self.check(values)
        if ranges is None:
            ranges = [robust_range(v) for v in values]
        flat = pack_values(values, self.offsets, self.nbytes)
        if self._sink is not None and flat.is_cuda:
            self._sink.stage(flat)
        else:
            self.values.update_range(flat.cpu(), 0)
        with self._lock:
            self._pending_ranges = list(ranges)

    def attach_interop(self, sink: object) -> None:
        """Route CUDA frame-sets through ``sink`` (``stage(tensor)`` now, ``flush()`` on the render thread)."""
        self._sink = sink

    def flush(self) -> int:
        """Upload what was queued (context current, render thread); returns bytes sent."""
        with self._lock:
            ranges, self._pending_ranges = self._pending_ranges, None
        sent = self.values.flush()
        if self._sink is not None:
            sent += int(self._sink.flush())
        if ranges is not None:
            for layer, r in zip(self.layers, ranges):
                layer.range = r
            self.frame_sets += 1
        return sent

    def read_values(self, index: int) -> np.ndarray:
        """A layer's values as the GPU holds them (tests)."""
        layer = self.layers[index]
        return self.values.read(layer.byte_offset, layer.nbytes, np.float32)

    # -- textures -----------------------------------------------------------------------------------------
    def set_weight(self, index: int, weight: torch.Tensor, rng: ValueRange | None = None) -> WeightAtlas:
        """Upload a conv layer's kernels as an atlas texture (tiled past the texture size limit)."""
        atlas = WeightAtlas.for_shape(weight.shape)
        image = atlas.pack(weight.detach().float().cpu().numpy())
        if rng is None:
            r = robust_range(weight, 0.005, 0.995)
            m = max(abs(r.lo), abs(r.hi)) or 1.0
            rng = ValueRange(-m, m, True, r.nonfinite)
        old = self.weights.pop(index, None)
        if old is not None:
            old[0].delete()
        tex = TiledTexture(self.ctx, image, "r32f", label=f"weights {self.layers[index].slab.name}")
        self.weights[index] = (tex, atlas, rng)
        return atlas

    def set_input_image(self, rgb: np.ndarray) -> None:
        """The model's input as an RGB(A) uint8 image (top row first), drawn in front of the first layer."""
        if self.input_image is not None:
            self.input_image.delete()
        img = np.asarray(rgb, np.uint8)
        if img.shape[2] == 3:
            img = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
        self.input_image = Texture2D(self.ctx, img.shape[1], img.shape[0], "rgba8", data=img, linear=True, label="input")

    @property
    def gpu_bytes(self) -> int:
        """Bytes of GPU memory held: values, colour table and textures."""
        tex = sum(t.nbytes for t, _, _ in self.weights.values())
        return self.values.nbytes + self.lut.nbytes + tex + (self.input_image.nbytes if self.input_image else 0)

    def close(self) -> None:
        """Release every GL object (context current); idempotent."""
        for t, _, _ in self.weights.values():
            t.delete()
        self.weights.clear()
        if self.input_image is not None:
            self.input_image.delete()
        self.values.delete()
        self.lut.delete()
        if self._sink is not None and hasattr(self._sink, "close"):
            self._sink.close()
            self._sink = None
