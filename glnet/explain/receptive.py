"""Receptive fields: the box of input pixels that can reach a neuron, from the layers' geometry and graph.

Boxes travel backwards through the drawn layers in reverse forward order (each consumer before its
producers), each conv or pool growing its output box to the input cells it reads, and merge where branches
meet (a box per layer, so a ResNet's many paths cost one pass). Ops that are not drawn (adds, norms,
activations, concatenations) are taken to keep the spatial grid; a layer that sees its whole input (Linear,
adaptive pooling to one cell) makes the field the whole image.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..capture import LayerRecord, Trace

__all__ = ["Box", "producers", "receptive_field"]

Box = tuple[int, int, int, int]  # y0, y1, x0, x1, inclusive


def producers(trace: Trace) -> dict[int, list[int]]:
    """Each layer's producer layers: from the captured graph, else (no graph) the layer before."""
    edges: Sequence[tuple[int, int]] = getattr(trace, "edges", None) or [
        (i - 1, i) for i in range(1, len(trace.layers))
    ]
    out: dict[int, list[int]] = {}
    for a, b in edges:
        out.setdefault(int(b), []).append(int(a))
    return out


def _spatial(rec: LayerRecord) -> tuple[int, int] | None:
    """(H, W) of a layer's feature maps, or None where its grid is not an image (tokens, vectors)."""
    if rec.channels_last and len(rec.shape) == 2:
        return None
    if len(rec.shape) < 3:
        return None
    return rec.grid[1], rec.grid[2]


def _back(rec: LayerRecord, box: Box, size: tuple[int, int]) -> Box | None:
    """The cells of the layer's input (``size``) its output ``box`` reads; None where it reads them all."""
    g = rec.geometry
    if g is None:  # a leaf layer (norm, activation) keeps the grid; an unknown conv or pool may not
        if rec.kind in ("conv", "pool", "linear"):
            return None
        g = {"kernel": (1, 1), "stride": (1, 1), "padding": (0, 0), "dilation": (1, 1)}
    if g.get("global"):
        return None
    y0, y1, x0, x1 = box
    if "adaptive" in g:
        oh, ow = _spatial(rec) or g["adaptive"]
        ih, iw = size

        def span(lo: int, hi: int, n_in: int, n_out: int) -> tuple[int, int]:
            return (lo * n_in) // n_out, -(-((hi + 1) * n_in) // n_out) - 1

        (a, b), (c, d) = span(y0, y1, ih, oh), span(x0, x1, iw, ow)
    else:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = g["kernel"], g["stride"], g["padding"], g["dilation"]
        a, b = y0 * sh - ph, y1 * sh - ph + dh * (kh - 1)
        c, d = x0 * sw - pw, x1 * sw - pw + dw * (kw - 1)
    h, w = size
    a, b, c, d = max(a, 0), min(b, h - 1), max(c, 0), min(d, w - 1)
    if a > b or c > d:
        return None
    return a, b, c, d


def _union(a: Box | None, b: Box) -> Box:
    if a is None:
        return b
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


def receptive_field(trace: Trace, layer: int, y: int, x: int) -> Box | None:
    """The input pixels (y0, y1, x0, x1) that can affect the neuron at (y, x) of ``layer``'s feature maps,
    or None when the input is not an image or the neuron sees all of it."""
    if trace.input.dim() != 4:
        return None
    in_size = (int(trace.input.shape[-2]), int(trace.input.shape[-1]))
    if _spatial(trace.layers[layer]) is None:
        return None
    prods = producers(trace)
    boxes: dict[int, Box] = {layer: (y, y, x, x)}
    whole = (0, in_size[0] - 1, 0, in_size[1] - 1)
    field: Box | None = None
    for k in range(layer, -1, -1):
        if k not in boxes:
            continue
        box = boxes.pop(k)
        rec = trace.layers[k]
        sources = [p for p in prods.get(k, []) if p < k]
        for p in sources:
            size = _spatial(trace.layers[p])
            if size is None:
                return whole
            mapped = _back(rec, box, size)
            if mapped is None:
                return whole
            boxes[p] = _union(boxes.get(p), mapped)
        if not sources:
            mapped = _back(rec, box, in_size)
            if mapped is None:
                return whole
            field = _union(field, mapped)
    return field
