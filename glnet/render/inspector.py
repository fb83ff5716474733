"""The inspector: a panel explaining the picked neuron, a ring around it in the cloud, and the model's top-5
predictions as bars beside the output layer.

The panel (top right) holds the inspection's text, the layer's histogram with the neuron's bin marked, its
channel's feature map enlarged with the neuron boxed, the kernel that made the channel, and the input with
the saliency map and receptive field. Images are drawn with Pillow once per pick; a frame pays for a few
textured rectangles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..colormap import ValueRange, robust_range
from ..explain.images import colour_image, enlarge, saliency_overlay
from ..explain.text import inspection_lines
from ..gpu.objects import VertexArray
from ..gpu.program import Program
from ..gpu.texture import Texture2D
from ..layout import Panel, Slab
from .hud import MARGIN, draw_overlays, hud_font, premultiplied

if TYPE_CHECKING:
    from ..explain import Inspection, Prediction
    from ..gpu.context import GLContext
    from .frame import FrameParams

__all__ = ["MARK", "Inspector", "inspector_image", "predictions_image", "predictions_panel", "ring_image"]

MARK = (255, 235, 60, 255)  # the picked neuron: its ring, its box in the feature map, its histogram bin
_BG = (8, 10, 16, 200)
_TEXT = (235, 238, 245, 255)
_DIM = (150, 156, 170, 255)
_BAR = (120, 200, 255, 255)


def _fit(img: np.ndarray, box: int) -> np.ndarray:
    """Enlarge (by whole cells) or shrink an RGB image to fit a square of ``box`` pixels."""
    h, w = img.shape[:2]
    scale = box / max(h, w)
    if scale >= 1:
        return enlarge(img, max(1, int(scale)))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BILINEAR))


def _kernel_image(kernel: torch.Tensor, cell: int) -> np.ndarray:
    """A conv kernel (C_in, kh, kw) as a grid of its first 64 per-input-channel slices, or a Linear row as a
    near-square block; signed values in the diverging colours."""
    k = kernel.float()
    if k.dim() == 1:
        n = k.numel()
        side = math.ceil(math.sqrt(n))
        flat = torch.full((side * side,), float("nan"))
        flat[:n] = k
        return _fit(colour_image(flat.reshape(side, side)), cell * 8)
    k = k.reshape(-1, *k.shape[-2:])[:64]
    n, kh, kw = k.shape
    cols = min(n, 8)
    rows = -(-n // cols)
    scale = max(1, cell // max(kh, kw))
    rng = robust_range(k)
    tiles = [enlarge(colour_image(k[i], rng), scale) for i in range(n)]
    th, tw = tiles[0].shape[:2]
    gap = max(1, scale // 4)
    out = np.full((rows * (th + gap) - gap, cols * (tw + gap) - gap, 3), 20, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (th + gap) : r * (th + gap) + th, c * (tw + gap) : c * (tw + gap) + tw] = t
    return out


def _histogram_box(draw: ImageDraw.ImageDraw, ins: Inspection, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    counts = np.asarray(ins.histogram.counts, np.float64)
    draw.rectangle(box, outline=(90, 95, 110, 255))
    if not len(counts) or counts.max() <= 0:
        return
    heights = np.log1p(counts) / math.log1p(counts.max())  # log: one huge bin (zeros) hides no other
    mark = ins.histogram.bin_of(ins.value)
    bw = (x1 - x0 - 2) / len(counts)
    for b, hgt in enumerate(heights):
        if hgt <= 0:
            continue
        left = x0 + 1 + b * bw
        top = y1 - 1 - hgt * (y1 - y0 - 2)
        draw.rectangle((left, top, max(left, left + bw - 1), y1 - 1), fill=MARK if b == mark else _BAR)
    if 0 <= mark < len(counts):
        cx = x0 + 1 + (mark + 0.5) * bw
        draw.line((cx, y0 + 1, cx, y1 - 1), fill=MARK, width=1)


def _bars(
    draw: ImageDraw.ImageDraw, preds: Sequence[Prediction], x: int, y: int, width: int, font, size: int
) -> int:
    line_h = round(size * 1.3)
    for p in preds:
        draw.text((x, y), f"{100 * p.prob:4.1f}%  {p.label}", font=font, fill=_TEXT)
        y += line_h
        draw.rectangle((x, y, x + max(1, round(p.prob * width)), y + size // 3), fill=_BAR)
        y += size // 3 + size // 3
    return y


def inspector_image(ins: Inspection, frame_height: int, input_rgb: np.ndarray | None = None) -> np.ndarray:
    """The inspector panel as premultiplied RGBA (top row first), at most the frame's height: facts, the
    histogram and the top-5 on the left; feature map, kernel and input on the right."""
    font, size = hud_font(frame_height)
    pad = size // 2
    line_h = round(size * 1.3)
    lines = inspection_lines(ins)
    text_w = max(int(font.getlength(t)) for t in lines)
    left = max(size * 15, text_w)
    left_h = pad + line_h * len(lines) + line_h + size * 4 + pad
    if ins.predictions:
        left_h += line_h + len(ins.predictions) * (line_h + 2 * (size // 3))
    fmap = ins.feature_map
    wanted = [fmap.numel() > 1, ins.kernel is not None, input_rgb is not None]
    n = max(1, sum(wanted))
    avail = max(left_h, frame_height - 2 * MARGIN)
    box = int(min(size * 13, (avail - pad - n * (line_h + pad)) / n))
    pictures: list[tuple[str, np.ndarray]] = []
    if wanted[0]:
        pictures.append(
            (f"feature map, channel {ins.coords[0]}", _fit(colour_image(fmap, _layer_range(ins)), box))
        )
    if ins.kernel is not None:
        more = ins.kernel.dim() > 2 and ins.kernel.shape[0] > 64
        kernel = _fit(_kernel_image(ins.kernel, size * 2), box)
        pictures.append(("kernel" + (" (first 64 inputs)" if more else ""), kernel))
    if input_rgb is not None:
        over = saliency_overlay(input_rgb, ins.saliency, ins.receptive_field)
        what = "saliency, receptive field" if ins.saliency is not None else "receptive field"
        pictures.append((f"input: {what}", _fit(over, box)))
    right_h = pad + sum(line_h + p.shape[0] + pad for _, p in pictures)
    col = max([box, *(int(font.getlength(c)) for c, _ in pictures)]) if pictures else 0
    width = pad * 3 + left + col
    img = Image.new("RGBA", (width, max(left_h, right_h)), _BG)
    draw = ImageDraw.Draw(img)
    y = pad
    for t in lines:
        draw.text((pad, y), t, font=font, fill=_TEXT)
        y += line_h
    draw.text((pad, y), "layer histogram (log count)", font=font, fill=_DIM)
    y += line_h
    _histogram_box(draw, ins, (pad, y, pad + left, y + size * 4))
    y += size * 4 + pad
    if ins.predictions:
        draw.text((pad, y), "top-5 predictions", font=font, fill=_DIM)
        _bars(draw, ins.predictions, pad, y + line_h, left, font, size)
    x, y = pad * 2 + left, pad
    for k, (caption, pic) in enumerate(pictures):
        draw.text((x, y), caption, font=font, fill=_DIM)
        y += line_h
        img.paste(Image.fromarray(pic).convert("RGBA"), (x, y))
        if k == 0 and wanted[0]:  # box the neuron in its feature map
            h, w = fmap.shape[-2:] if fmap.dim() >= 2 else (1, fmap.numel())
            sy, sx = pic.shape[0] / h, pic.shape[1] / w
            ny, nx = _cell(ins)
            draw.rectangle(
                (x + nx * sx - 1, y + ny * sy - 1, x + (nx + 1) * sx, y + (ny + 1) * sy),
                outline=MARK,
                width=2,
            )
        y += pic.shape[0] + pad
    return premultiplied(img)


def _layer_range(ins: Inspection) -> ValueRange:
    lo, hi = ins.range
    return ValueRange(lo, hi if hi > lo else lo + 1.0, lo < 0 < hi)


def _cell(ins: Inspection) -> tuple[int, int]:
    """The neuron's (row, column) within its channel's feature map."""
    h, w = ins.feature_map.shape[-2:] if ins.feature_map.dim() >= 2 else (1, ins.feature_map.numel())
    r = ins.index % (h * w)
    return r // w, r % w


def predictions_image(preds: Sequence[Prediction], height: int = 360) -> np.ndarray:
    """The top-5 bar chart for the in-scene panel beside the output layer: RGB, opaque."""
    font, size = hud_font(height * 3)
    pad = size // 2
    width = size * 20
    img = Image.new("RGB", (width, height), _BG[:3])
    draw = ImageDraw.Draw(img)
    draw.text((pad, pad), "top-5 predictions", font=font, fill=_DIM)
    _bars(draw, preds, pad, pad + round(size * 1.6), width - 2 * pad, font, size)
    return np.asarray(img)


def predictions_panel(slab: Slab, aspect: float, min_height: float = 0.0) -> Panel:
    """Where the top-5 panel goes: left of the output layer's slab (its histogram and weights are on the
    right), centred on it, twice as tall as it and at least ``min_height`` (an output slab of a few
    neurons is tiny beside the layers before it)."""
    sw, sh = slab.size
    height = max(2 * max(sw, sh), slab.spacing * 8, min_height)
    width = height * aspect
    x0 = slab.origin[0] - 0.15 * height - slab.spacing - width
    return Panel((x0, slab.origin[1] + 0.5 * (height - sh), slab.z), (width, height))


def ring_image(radius: int) -> np.ndarray:
    """A ring of ``radius`` pixels (premultiplied RGBA) to mark the picked neuron."""
    d = 2 * radius + 5
    img = Image.new("RGBA", (d, d), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.ellipse((1, 1, d - 2, d - 2), outline=(0, 0, 0, 200), width=4)
    draw.ellipse((2, 2, d - 3, d - 3), outline=MARK, width=2)
    return premultiplied(img)


class Inspector:
    """Owns the inspector's textures and programs: panel, ring and the in-scene predictions panel."""

    def __init__(self, ctx: GLContext) -> None:
        self.ctx = ctx
        self.overlay = Program(ctx, vertex="overlay.vert", fragment="overlay.frag", label="inspector")
        self.world = Program(ctx, vertex="panel.vert", fragment="panel.frag", label="predictions")
        self._vao = VertexArray(ctx, label="inspector")
        self._tex: dict[str, Texture2D] = {}
        self._key: dict[str, object] = {}
        self.inspection: Inspection | None = None
        self.input_rgb: np.ndarray | None = None
        self.marker: tuple[float, float, float] | None = None  # picked neuron's world position
        self.marker_size = 0.0  # its disc's world diameter
        self.panel: Panel | None = None  # where the predictions go
        self._serial = 0  # counts show() calls: the panel image is redrawn when it or the height changes

    def _upload(self, name: str, key: object, image: np.ndarray | None) -> None:
        if self._key.get(name) == key:
            return
        self._key[name] = key
        old = self._tex.pop(name, None)
        if image is None:
            if old is not None:
                old.delete()
            return
        if image.shape[2] == 3:
            image = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
        if old is not None and (old.width, old.height) == (image.shape[1], image.shape[0]):
            tex = old
        else:
            if old is not None:
                old.delete()
            tex = Texture2D(self.ctx, image.shape[1], image.shape[0], "rgba8", label=f"inspector {name}")
        tex.write(np.ascontiguousarray(image))
        self._tex[name] = tex

    def show(
        self,
        ins: Inspection | None,
        *,
        input_rgb: np.ndarray | None = None,
        position: Sequence[float] | None = None,
        size: float = 0.0,
    ) -> None:
        """Explain ``ins`` (None: hide the panel and ring); ``position`` and ``size`` are the neuron's world
        position and disc diameter, for the ring."""
        self.inspection = ins
        self.input_rgb = input_rgb
        self.marker = tuple(float(v) for v in position) if (ins and position is not None) else None
        self.marker_size = size
        self._serial += 1

    def show_predictions(
        self, preds: Sequence[Prediction], slab: Slab | None, min_height: float = 0.0
    ) -> None:
        """The top-5 chart beside ``slab`` (the output layer); nothing when ``preds`` is empty."""
        key = tuple((p.index, round(p.prob, 4)) for p in preds)
        img = predictions_image(preds) if preds and slab is not None else None
        self._upload("predictions", key, img)
        aspect = img.shape[1] / img.shape[0] if img is not None else 1.0
        self.panel = predictions_panel(slab, aspect, min_height) if img is not None else None

    def panel_box(self, width: int, height: int) -> tuple[int, int, int, int] | None:
        """Where the panel is drawn in a width x height frame: (x0, y0, x1, y1) from the top-left corner;
        None when nothing is inspected."""
        ins = self.inspection
        key = (self._serial, height)
        self._upload("panel", key, inspector_image(ins, height, self.input_rgb) if ins else None)
        tex = self._tex.get("panel")
        if tex is None:
            return None
        x1 = width - MARGIN
        return (max(0, x1 - tex.width), MARGIN, x1, MARGIN + tex.height)

    def draw_scene(self, frame: FrameParams) -> None:
        """The in-scene part (predictions panel), depth-tested with the cloud."""
        from OpenGL import GL

        tex = self._tex.get("predictions")
        if tex is None or self.panel is None:
            return
        GL.glEnable(GL.GL_DEPTH_TEST)
        GL.glDisable(GL.GL_BLEND)
        p = self.world.use()
        p.set(
            u_view_proj=frame.view_proj,
            u_texture=1,
            u_rgb=1,
            u_corner=self.panel.origin,
            u_extent=self.panel.size,
        )
        tex.bind(1)
        self._vao.bind()
        GL.glDrawArrays(GL.GL_TRIANGLE_STRIP, 0, 4)
        VertexArray.unbind()

    def draw_overlay(self, frame: FrameParams) -> None:
        """The screen-space part: the panel, then the ring at the picked neuron."""
        rects: list[tuple[Texture2D, tuple[float, float, float, float]]] = []
        box = self.panel_box(frame.width, frame.height)
        if box is not None:
            rects.append((self._tex["panel"], box))
        if self.marker is not None:  # over the panel: the ring always shows
            pr = frame.camera.project(np.array([self.marker]), frame.width, frame.height)
            if pr.visible[0]:
                disc = 0.5 * self.marker_size * frame.focal_px / max(float(pr.w[0]), 1e-6)
                r = int(min(40, max(7, disc + 4)))
                self._upload("ring", r, ring_image(r))
                x, y = float(pr.x[0]), frame.height - float(pr.y[0])
                t = self._tex["ring"]
                rects.append((t, (x - t.width / 2, y - t.height / 2, x + t.width / 2, y + t.height / 2)))
        draw_overlays(self.overlay, self._vao, rects, frame.width, frame.height)

    def close(self) -> None:
        self._vao.delete()
        for t in self._tex.values():
            t.delete()
        self._tex.clear()
        self.overlay.delete()
        self.world.delete()
