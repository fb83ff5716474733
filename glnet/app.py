"""Output: a trace drawn offscreen, as an image (videos of tours: :mod:`glnet.offline`).

:class:`Visualization` is the GPU side of one trace (layout, neuron cloud, weights, input image and the scene
renderer) and is shared by every output: these offscreen ones through EGL, and the window of
:mod:`glnet.window`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .camera import Camera, camera_from_spec
from .capture import Trace
from .colormap import ValueRange, robust_range
from .distributions import LayerStats, layer_stats
from .explain import Inspection, Prediction, class_labels, inspect_neuron, logits_of, top_k
from .explain.images import saliency_overlay
from .explain.predictions import load_labels
from .gpu.cloud import NeuronCloud
from .gpu.context import GLContext, context_or_new
from .gpu.framebuffer import Framebuffer
from .inputs import input_picture
from .layout import conv_weights, layout_for, neuron_positions
from .render.hud import hud_lines
from .render.pick import Pick
from .render.scene import FrameStats, SceneRenderer

if TYPE_CHECKING:
    from .render.hud import Curves

__all__ = ["Snapshot", "Visualization", "input_rgb", "render_snapshot"]


def input_rgb(
    x: torch.Tensor, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> np.ndarray | None:
    """The model input as an RGB uint8 image: the image (normalisation undone), a clip's middle frame, a grey
    image or a waveform (:func:`glnet.inputs.input_picture`); None when it has no picture."""
    return input_picture(x, tuple(mean) if mean else None, tuple(std) if std else None)


class Visualization:
    """A trace on the GPU, ready to draw from any camera into any target."""

    def __init__(
        self,
        ctx: GLContext,
        trace: Trace,
        *,
        renderer: str = "auto",
        weights: bool = True,
        lod: bool = False,
        max_neurons: int | None = None,
        model: nn.Module | None = None,
        labels: str | Sequence[str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.trace = trace
        self.model = model  # for saliency maps of picked neurons (None: no saliency)
        self.labels = labels
        self.inspection: Inspection | None = None
        self._layer_stats: dict[int, LayerStats] = {}
        self.layout = layout_for(trace, weights=weights)
        self.cloud = NeuronCloud(ctx, self.layout, max_neurons=max_neurons)
        try:
            self.scene = SceneRenderer(ctx, self.cloud, renderer, lod=lod)
        except BaseException:
            self.cloud.close()
            raise
        self.update(trace)
        if weights:
            for i, w in conv_weights(trace).items():
                self.cloud.set_weight(i, w)
            self.scene.histograms.set_weights(
                {i: r.weight for i, r in enumerate(trace.layers) if r.weight is not None}
            )
        meta = trace.meta
        self.input_image = rgb = input_rgb(trace.input, meta.get("input_mean"), meta.get("input_std"))
        if rgb is not None and self.layout.input_panel is not None:
            self.cloud.set_input_image(rgb)
        logits = logits_of(trace.output)
        if logits is not None:
            classes = len(logits)
        else:
            classes = len(load_labels(labels) if isinstance(labels, str) else labels or [])
        self.class_names = class_labels(trace.model_name, classes, labels) if classes else None
        self.show_predictions(trace.output)

    @property
    def renderer(self) -> str:
        return self.scene.renderer

    def update(
        self, trace: Trace | Sequence[torch.Tensor], ranges: Sequence[ValueRange] | None = None
    ) -> None:
        """Queue new values (a trace of this model, or one tensor per layer); drawn from the next frame."""
        values = [r.value for r in trace.layers] if isinstance(trace, Trace) else list(trace)
        if ranges is None:
            ranges = [robust_range(v) for v in values]
        self.ranges = list(ranges)
        self.cloud.set_values(values, ranges)
        self.scene.use_values(values)
        self.scene.histograms.set_values(values, self.ranges)

    def show_predictions(
        self, output: Any = None, *, top: Sequence[tuple[int, float]] | None = None
    ) -> list[Prediction]:
        """Draw a classifier's top-5 beside the output layer, from its ``output`` or from ``top``
        (index, probability) pairs as a live run hands them over; nothing for other models."""
        if top is not None:
            names = self.class_names or []
            preds = [Prediction(i, names[i] if i < len(names) else f"class {i}", p) for i, p in top]
        else:
            preds = top_k(output, self.class_names) if logits_of(output) is not None else []
        self.predictions = preds
        largest = max(max(s.size) for s in self.layout.slabs)
        self.scene.inspector.show_predictions(preds, self.layout.slabs[-1], 0.3 * largest)
        return preds

    def pick(self, camera: Camera, width: int, height: int, x: int, y: int) -> Pick | None:
        """The neuron drawn at pixel (x, y) (from the top left) of a width x height frame, or None."""
        return self.scene.pick(camera, width, height, x, y)

    def inspect(
        self, pick: Pick | None, *, saliency: bool = True, grad: float | None = None
    ) -> Inspection | None:
        """Explain a picked neuron and show it: the inspector panel, a ring around it, and its saliency
        map and receptive field on the input panel; None clears them."""
        if pick is None:
            self.inspection = None
            self.scene.inspector.show(None)
            if self.input_image is not None and self.layout.input_panel is not None:
                self.cloud.set_input_image(self.input_image)
            return None
        rec = self.trace.layers[pick.layer]
        index = pick.index
        if pick.aggregate:  # a channel's disc: explain the neuron at the channel's centre
            _c, h, w = rec.grid
            index = pick.index * h * w + (h // 2) * w + w // 2
        ins = inspect_neuron(
            self.trace,
            pick.layer,
            index,
            model=self.model,
            labels=self.labels,
            with_saliency=saliency and self.model is not None,
            grad=grad,
        )
        self.inspection = ins
        slab = self.layout.slabs[pick.layer]
        pos = neuron_positions(slab, [index])[0]
        self.scene.inspector.show(ins, input_rgb=self.input_image, position=pos, size=slab.point_size)
        if self.input_image is not None and self.layout.input_panel is not None:
            self.cloud.set_input_image(saliency_overlay(self.input_image, ins.saliency, ins.receptive_field))
        return ins

    def refresh_inspection(self, layer: int, values: torch.Tensor, *, gradients: bool = False) -> None:
        """A live frame's values of the inspected neuron's layer (its (C, H, W) grid, flat): the inspector
        follows them; in ``gradients`` mode they are the neuron's gradients."""
        ins = self.inspection
        if ins is None or ins.layer_index != layer:
            return
        rec = self.trace.layers[layer]
        grid = values.reshape(rec.grid).float()
        if gradients:
            ins.grad = float(grid.reshape(-1)[ins.index])
        else:
            live = replace(self.trace, layers=list(self.trace.layers))
            live.layers[layer] = replace(rec, value=grid.cpu(), raw=None)
            fresh = inspect_neuron(live, layer, ins.index, labels=self.labels, grad=ins.grad)
            fresh.saliency, fresh.predictions = ins.saliency, self.predictions
            self.inspection = ins = fresh
        slab = self.layout.slabs[layer]
        pos = neuron_positions(slab, [ins.index])[0]
        self.scene.inspector.show(ins, input_rgb=self.input_image, position=pos, size=slab.point_size)

    def layer_at(self, camera: Camera) -> int:
        """The layer the camera is at: the nearest slab ahead along the flight axis (else the nearest)."""
        z = float(camera.position[2])
        ahead = [i for i, s in enumerate(self.layout.slabs) if (s.z - z) * camera.forward[2] > 0]
        if not ahead:
            return self.layout.slab_index_at(z)
        return min(ahead, key=lambda i: abs(self.layout.slabs[i].z - z))

    def hud_lines(self, camera: Camera, frame_ms: float | None, stats: FrameStats | None = None) -> list[str]:
        """The standard HUD text for the layer ``camera`` is at (see :func:`glnet.render.hud.hud_lines`)."""
        i = self.layer_at(camera)
        if i not in self._layer_stats:  # the captured values' distribution, once per layer
            self._layer_stats[i] = layer_stats(self.trace.layers[i].value)
        return hud_lines(
            self.trace,
            i,
            self.ranges[i],
            renderer=self.renderer,
            frame_ms=frame_ms,
            stats=stats,
            distribution=self._layer_stats[i],
        )

    def render(
        self,
        camera: Camera,
        target: Any,
        *,
        hud: bool | Sequence[str] = True,
        frame_ms: float | None = None,
        curves: Curves | None = None,
        finish: bool = False,
    ) -> FrameStats:
        lines = self.hud_lines(camera, frame_ms) if hud is True else (list(hud) if hud else None)
        return self.scene.render(camera, target, hud=lines, curves=curves, finish=finish)

    def close(self) -> None:
        self.scene.close()
        self.cloud.close()


@dataclass
class Snapshot:
    """A rendered image and what it took."""

    image: np.ndarray  # (H, W, 4) uint8, top row first
    frame_ms: float  # median GPU-synchronised frame time (uploads excluded)
    renderer: str
    gl_renderer: str
    neurons_drawn: int  # every layer's neurons, or its channel count where drawn as channel means
    frame_times: list[float] = field(default_factory=list)
    layer_neurons: list[int] = field(default_factory=list)  # the same, per layer
    predictions: list[Prediction] = field(default_factory=list)  # top-5, for classifiers
    pick: Pick | None = None  # the neuron under the asked pixel (``pick=``), None where none covers it
    inspection: Inspection | None = None
    pick_ms: float | None = None  # the GPU pick, readback included
    inspect_ms: float | None = None  # the inspection, its saliency map's backward pass included
    renderer_why: str = ""  # why this renderer (asked for, measured fastest, or by the GL renderer's name)

    def save(self, path: str | Path) -> Path:
        from PIL import Image

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(self.image[..., :3]).save(p)
        return p


def render_snapshot(
    trace: Trace,
    *,
    size: tuple[int, int] = (1280, 720),
    camera: str | Camera | None = None,
    renderer: str = "auto",
    hud: bool = True,
    weights: bool = True,
    timed_frames: int = 3,
    lod: bool = False,
    max_neurons: int | None = None,
    ctx: GLContext | None = None,
    pick: tuple[int, int] | None = None,
    model: nn.Module | None = None,
    labels: str | Sequence[str] | None = None,
) -> Snapshot:
    """Render a trace headless: one warm-up frame (uploads), then ``timed_frames`` timed frames; with
    ``pick`` (x, y), inspect the neuron drawn at that pixel and draw the inspector into the image."""
    vis = fb = None
    with context_or_new(ctx) as ctx:
        try:
            vis = Visualization(
                ctx,
                trace,
                renderer=renderer,
                weights=weights,
                lod=lod,
                max_neurons=max_neurons,
                model=model,
                labels=labels,
            )
            width, height = size
            cam = (
                camera if isinstance(camera, Camera) else camera_from_spec(camera, vis.layout, width / height)
            )
            fb = Framebuffer(ctx, width, height)
            stats = vis.render(cam, fb, hud=False, finish=True)
            times = []
            for _ in range(max(1, timed_frames)):
                t0 = time.perf_counter()
                stats = vis.render(cam, fb, hud=False, finish=True)
                times.append((time.perf_counter() - t0) * 1e3)
            frame_ms = statistics.median(times)
            picked = ins = pick_ms = inspect_ms = None
            if pick is not None:
                t0 = time.perf_counter()
                picked = vis.pick(cam, width, height, *pick)
                pick_ms = (time.perf_counter() - t0) * 1e3
                t0 = time.perf_counter()
                ins = vis.inspect(picked)
                inspect_ms = (time.perf_counter() - t0) * 1e3
            if hud or pick is not None:
                lines = vis.hud_lines(cam, frame_ms, stats) if hud else False
                vis.render(cam, fb, hud=lines, finish=True)
            image = fb.read_rgba()
            per_layer = [s.grid[0] if s.index in stats.aggregated else s.count for s in vis.layout.slabs]
            return Snapshot(
                image,
                frame_ms,
                vis.renderer,
                ctx.info.renderer,
                sum(per_layer),
                times,
                per_layer,
                vis.predictions,
                picked,
                ins,
                pick_ms,
                inspect_ms,
                vis.scene.renderer_why,
            )
        finally:
            if fb is not None:
                fb.delete()
            if vis is not None:
                vis.close()
