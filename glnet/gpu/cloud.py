"""The neuron cloud on the GPU: one buffer of values (4 bytes a neuron), the colour table, weight atlases.

Layers sit back to back in the values buffer, each starting on a 256-byte boundary so it can be bound as a
storage range of its own (a layer larger than the driver's binding limit, 128 MiB on llvmpipe, is bound in
parts: :func:`glnet.render.frame.draw_parts`). Nothing else is stored per neuron: positions come from the
layout table in the shaders.

Values arrive as a *frame-set*: one tensor per layer. Host tensors are queued as they are, layer by layer, and
sent straight from their memory on the next :meth:`NeuronCloud.flush` (render thread): no packed copy of the
cloud is made (only a layer that is not float32 and contiguous is converted, on its own). CUDA tensors are
packed on their device and brought to the host once; live training copies CUDA frames device-to-device into
:attr:`NeuronCloud.values` itself (:mod:`glnet.live.upload`, CUDA-GL interop).
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

__all__ = [
    "LAYER_ALIGN",
    "LayerGPU",
    "NeuronCloud",
    "channel_means",
    "layer_offsets",
    "over_budget",
    "pack_values",
]

LAYER_ALIGN = 256  # bytes; a multiple of every driver's SSBO offset alignment seen (16..256)
BYTES_PER_NEURON = 4


@dataclass
class LayerGPU:
    """A layer as the renderers see it: its slab, byte range in the values buffer and colour range."""

    slab: Slab
    byte_offset: int
    range: ValueRange
    forced_aggregate: bool = False  # over the neuron budget: only per-channel means are on the GPU

    @property
    def nbytes(self) -> int:
        return 0 if self.forced_aggregate else self.slab.count * BYTES_PER_NEURON

    def uniforms(self) -> dict[str, object]:
        """The layer's own uniforms (``layer.glsl``, ``colormap.glsl``); the frame adds its plane."""
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


def layer_offsets(counts: Sequence[int] | Layout, align: int = LAYER_ALIGN) -> tuple[list[int], int]:
    """Byte offsets of layers of ``counts`` values (or a layout's slabs) in a packed buffer, and its size."""
    if isinstance(counts, Layout):
        counts = [s.count for s in counts.slabs]
    offsets, at = [], 0
    for n in counts:
        offsets.append(at)
        at += -(-(n * BYTES_PER_NEURON) // align) * align
    return offsets, max(at, align)


def over_budget(layout: Layout, max_neurons: int | None) -> set[int]:
    """Layers to keep only as per-channel aggregates so that at most ``max_neurons`` neurons stay on the GPU:
    the largest layers first."""
    if max_neurons is None or layout.count <= max_neurons:
        return set()
    forced, total = set(), layout.count
    for s in sorted(layout.slabs, key=lambda s: s.count, reverse=True):
        if total <= max_neurons:
            break
        if s.grid[1] * s.grid[2] > 1:  # a layer of 1x1 maps gains nothing from aggregating
            forced.add(s.index)
            total -= s.count - s.grid[0]
    return forced


def channel_means(v: torch.Tensor) -> torch.Tensor:
    """One value per channel (the mean of its H x W map; NaN if any is NaN), on the tensor's device."""
    return v.reshape(v.shape[0] if v.dim() == 3 else -1, -1).float().mean(dim=1)


def pack_values(values: Sequence[torch.Tensor], offsets: Sequence[int], total_bytes: int) -> torch.Tensor:
    """One flat float32 tensor (on the values' device) holding each layer at its offset."""
    if not values:
        raise ValueError("no layer values to pack")
    device = values[0].device
    flat = torch.zeros(total_bytes // BYTES_PER_NEURON, dtype=torch.float32, device=device)
    for v, off in zip(values, offsets, strict=True):
        start = off // BYTES_PER_NEURON
        flat[start : start + v.numel()].copy_(v.reshape(-1), non_blocking=True)
    return flat


class NeuronCloud:
    """Owns the GPU copy of one layout's neuron values, colour ranges, colour table and textures."""

    def __init__(
        self, ctx: GLContext, layout: Layout, *, max_neurons: int | None = None, label: str = "neurons"
    ) -> None:
        self.ctx = ctx
        self.layout = layout
        self.forced = over_budget(layout, max_neurons)
        full = [0 if s.index in self.forced else s.count for s in layout.slabs]
        self.offsets, self.nbytes = layer_offsets(full)
        self.agg_offsets, agg_bytes = layer_offsets([s.grid[0] for s in layout.slabs])
        self.values = Buffer(ctx, self.nbytes, label=f"{label}.values")
        self.aggregates = Buffer(ctx, agg_bytes, label=f"{label}.channel_means")
        self.lut = Texture2D(ctx, 1024, 1, "rgba8", data=lut()[None], label="colour table")
        self.layers = [
            LayerGPU(s, off, ValueRange(0.0, 1.0, False), s.index in self.forced)
            for s, off in zip(layout.slabs, self.offsets, strict=True)
        ]
        self.weights: dict[int, tuple[TiledTexture, WeightAtlas, ValueRange]] = {}
        self.input_image: Texture2D | None = None
        self._lock = threading.Lock()
        self._pending_ranges: list[ValueRange] | None = None
        self.frame_sets = 0

    @property
    def neurons_on_gpu(self) -> int:
        """Neurons whose own values are on the GPU (all of them unless over the budget)."""
        return sum(s.count for s in self.layout.slabs if s.index not in self.forced)

    def aggregate_range(self, index: int) -> tuple[int, int]:
        """Byte offset and size of a layer's per-channel means in the aggregates buffer."""
        return self.agg_offsets[index], self.layout.slabs[index].grid[0] * BYTES_PER_NEURON

    # -- values -------------------------------------------------------------------------------------------
    def check(self, values: Sequence[torch.Tensor]) -> None:
        if len(values) != len(self.layers):
            raise ValueError(f"{len(values)} layer tensors for a layout of {len(self.layers)} layers")
        for v, layer in zip(values, self.layers, strict=True):
            if v.numel() != layer.slab.count:
                raise ValueError(
                    f"layer {layer.slab.name!r} has {layer.slab.count} neurons but its tensor {v.numel()}"
                )

    def set_values(self, values: Sequence[torch.Tensor], ranges: Sequence[ValueRange] | None = None) -> None:
        """Queue a frame-set (one tensor per layer, any device); ranges computed on that device if not given.

        Thread-safe and GL-free: the upload happens in :meth:`flush` on the render thread, which reads host
        float32 tensors in place (do not write them before then; the newest state wins).
        """
        self.check(values)
        if ranges is None:
            ranges = [robust_range(v) for v in values]
        full = [
            (v, o) for i, (v, o) in enumerate(zip(values, self.offsets, strict=True)) if i not in self.forced
        ]
        if full and full[0][0].is_cuda:
            flat = pack_values([v for v, _ in full], [o for _, o in full], self.nbytes)
            self.values.update_range(flat.cpu(), 0)  # one host copy, for one upload
        elif full:
            self._queue_layers(full)
        means = pack_values([channel_means(v) for v in values], self.agg_offsets, self.aggregates.nbytes)
        self.aggregates.update_range(means.cpu(), 0)
        with self._lock:
            self._pending_ranges = list(ranges)

    def _queue_layers(self, layers: Sequence[tuple[torch.Tensor, int]]) -> None:
        """Queue each layer from its own memory (float32 on the host) and zeros for the padding between."""
        at = 0
        for v, off in layers:
            if off > at:
                self.values.update_range(np.zeros(off - at, np.uint8), at)
            flat = v.detach().reshape(-1).to("cpu", torch.float32).contiguous()
            self.values.update_range(flat, off)
            at = off + flat.numel() * BYTES_PER_NEURON
        if self.nbytes > at:
            self.values.update_range(np.zeros(self.nbytes - at, np.uint8), at)

    def flush(self) -> int:
        """Upload what was queued (context current, render thread); returns bytes sent."""
        with self._lock:
            ranges, self._pending_ranges = self._pending_ranges, None
        sent = self.values.flush() + self.aggregates.flush()
        if ranges is not None:
            for layer, r in zip(self.layers, ranges, strict=True):
                layer.range = r
            self.frame_sets += 1
        return sent

    def apply_ranges(self, ranges: Sequence[ValueRange]) -> None:
        """Set every layer's colour range now and count a frame-set (render thread).

        For update paths that copy values into :attr:`values` themselves (live training's staging copies),
        so the ranges take effect in the same frame as the values they describe.
        """
        if len(ranges) != len(self.layers):
            raise ValueError(f"{len(ranges)} ranges for a layout of {len(self.layers)} layers")
        for layer, r in zip(self.layers, ranges, strict=True):
            layer.range = r
        self.frame_sets += 1

    def read_values(self, index: int) -> np.ndarray:
        """A layer's values as the GPU holds them (tests)."""
        layer = self.layers[index]
        if layer.forced_aggregate:
            raise ValueError(
                f"layer {layer.slab.name!r} is over the neuron budget: only its channel means are on the GPU"
            )
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
            img = np.concatenate([img, np.full((*img.shape[:2], 1), 255, np.uint8)], axis=2)
        self.input_image = Texture2D(
            self.ctx, img.shape[1], img.shape[0], "rgba8", data=img, linear=True, label="input"
        )

    @property
    def gpu_bytes(self) -> int:
        """Bytes of GPU memory held: values, colour table and textures."""
        tex = sum(t.nbytes for t, _, _ in self.weights.values())
        extra = (
            self.aggregates.nbytes + self.lut.nbytes + (self.input_image.nbytes if self.input_image else 0)
        )
        return self.values.nbytes + extra + tex

    def close(self) -> None:
        """Release every GL object (context current); idempotent."""
        for t, _, _ in self.weights.values():
            t.delete()
        self.weights.clear()
        if self.input_image is not None:
            self.input_image.delete()
        self.values.delete()
        self.aggregates.delete()
        self.lut.delete()
