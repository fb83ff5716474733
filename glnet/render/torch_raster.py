"""The ``torch`` renderer: neurons rasterized by torch on the device that holds the values, GL only presents.

Each frame's draws (the same :class:`DrawItem` list and uniforms the GL renderers get) go through
:func:`glnet.render.reference.rasterize_items`: 64-bit keys, the compute rasterizer's 32-bit key above the
neuron's id. The high halves are copied into the compute rasterizer's key buffer and ``present.frag`` turns
them into colour, so the picture is the compute path's key for key; the low halves answer picks from the same
pass. On CUDA the values never leave the device (the key buffer's upload is the only copy; a CUDA-GL shared
key buffer is where this goes next); on the CPU it is the reference, run as a renderer.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..gpu.cloud import channel_means
from .frame import DrawItem, FrameParams
from .raster import ComputeNeurons
from .reference import EMPTY_KEY64, keys32, rasterize_items

if TYPE_CHECKING:
    from ..gpu.cloud import NeuronCloud
    from ..gpu.context import GLContext

__all__ = ["TorchNeurons"]


class TorchNeurons:
    """Draws a :class:`NeuronCloud` by rasterizing in torch; owns the compute path's present pass."""

    name = "torch"

    def __init__(self, ctx: GLContext) -> None:
        self.ctx = ctx
        self.present = ComputeNeurons(ctx)  # its key buffer and present pass
        self.values: list[torch.Tensor] | None = None  # each layer's (C, H, W) values, where they live
        self.keys64: torch.Tensor | None = None  # the last frame's keys (height * width,)
        self.frame_key: tuple[bytes, int, int] | None = None
        self._aggregated: frozenset[int] = frozenset()
        self._means: dict[int, torch.Tensor] = {}

    def set_values(self, values: Sequence[torch.Tensor]) -> None:
        """The values to draw from now on (references, not copies: they stay on their device)."""
        self.values = list(values)
        self._means.clear()

    def _layer(self, cloud: NeuronCloud, i: int) -> torch.Tensor:
        if self.values is not None:
            return self.values[i]
        return torch.from_numpy(cloud.read_values(i))  # values only the GL buffer holds (live frames)

    def _item_values(self, cloud: NeuronCloud, item: DrawItem) -> torch.Tensor:
        if not item.aggregate:
            return self._layer(cloud, item.layer)
        if self.values is None:  # the means the GL buffer holds
            return torch.from_numpy(item.buffer.read(item.byte_offset, item.nbytes, np.float32))
        if item.layer not in self._means:
            self._means[item.layer] = channel_means(self.values[item.layer])
        return self._means[item.layer]

    def rasterize(self, cloud: NeuronCloud, frame: FrameParams, items: list[DrawItem]) -> int:
        """Fill :attr:`keys64` for ``items``; returns the number of discs processed."""
        slabs = cloud.layout.slabs
        draws = [(it.uniforms, self._item_values(cloud, it), slabs[it.layer].offset) for it in items]
        self.keys64 = rasterize_items(draws, frame)
        self.frame_key = (frame.view_proj.tobytes(), frame.width, frame.height)
        self._aggregated = frozenset(it.layer for it in items if it.aggregate)
        self._offsets = [s.offset for s in slabs]
        return sum(it.count for it in items)

    def draw(self, cloud: NeuronCloud, frame: FrameParams, items: list[DrawItem], depth: bool = True) -> int:
        drawn = self.rasterize(cloud, frame, items)
        assert self.keys64 is not None
        k32 = keys32(self.keys64).to(torch.int64).cpu().numpy().astype(np.uint32)
        self.present.key_buffer(frame.width, frame.height).write(k32)
        self.present.rect = (0, 0, frame.width, frame.height) if items else (0, 0, 0, 0)
        self.present.resolve(cloud, frame, depth)
        return drawn

    def pick_key(self, frame: FrameParams, x: int, y: int) -> tuple[int, int, bool] | None:
        """(layer, index in its grid or channel, aggregate) of the neuron drawn at pixel (x, y) (top-left
        origin) in the last frame drawn from ``frame``; None when another frame or nothing is there."""
        if self.keys64 is None or self.frame_key != (frame.view_proj.tobytes(), frame.width, frame.height):
            return None
        if not (0 <= x < frame.width and 0 <= y < frame.height):
            return None
        key = int(self.keys64[(frame.height - 1 - y) * frame.width + x])
        if key == EMPTY_KEY64:
            return None
        nid = key & 0xFFFFFFFF
        layer = bisect.bisect_right(self._offsets, nid) - 1
        return layer, nid - self._offsets[layer], layer in self._aggregated

    def close(self) -> None:
        self.present.close()
