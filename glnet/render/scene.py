"""One frame: clear, neurons (through the chosen renderer), panels, graph edges, HUD, into any render target.

``renderer="auto"`` takes the compute rasterizer where it wins: software GL (llvmpipe), datacenter GPUs
(vertex/fragment work reaches only a few of their SMs) and clouds above ``AUTO_COMPUTE_ABOVE`` neurons;
elsewhere the point-sprite path.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from ..colormap import BACKGROUND
from .calibrate import calibration_enabled, measured_renderer
from .edges import Edges
from .frame import FrameParams, plan_draws
from .histograms import HistogramPanels
from .hud import Curves, Hud
from .inspector import Inspector
from .neurons import InstancedNeurons
from .panels import Panels
from .pick import Pick, Picker
from .raster import ComputeNeurons
from .torch_raster import TorchNeurons

if TYPE_CHECKING:
    import torch

    from ..camera import Camera
    from ..gpu.cloud import NeuronCloud
    from ..gpu.context import GLContext, GLInfo

__all__ = ["AUTO_COMPUTE_ABOVE", "RENDERERS", "FrameStats", "SceneRenderer", "Target", "choose_renderer"]

RendererName = Literal["auto", "instanced", "compute", "torch"]
RENDERERS = ("auto", "instanced", "compute", "torch")
AUTO_COMPUTE_ABOVE = 2_000_000
_DATACENTER = ("h100", "h200", "h800", "a100", "a800", "a30", "a10", "l40", "l4", "tesla", "gh200", "b200")


def choose_renderer(requested: str, info: GLInfo, neurons: int) -> str:
    """Resolve ``auto`` to ``compute`` or ``instanced`` for this GL driver and point count."""
    if requested not in RENDERERS:
        from ..errors import InputError

        raise InputError(f"unknown renderer {requested!r}: use one of {', '.join(RENDERERS)}")
    if requested != "auto":
        return requested
    words = set(re.split(r"[^a-z0-9]+", info.renderer.lower()))  # "NVIDIA H200/PCIe/SSE2" -> h200, pcie, ...
    datacenter = any(k in words for k in _DATACENTER)
    if info.software or datacenter or neurons > AUTO_COMPUTE_ABOVE:
        return "compute"
    return "instanced"


class Target(Protocol):
    width: int
    height: int

    def bind(self) -> None: ...


@dataclass
class FrameStats:
    renderer: str
    neurons_drawn: int
    layers_drawn: int
    cpu_ms: float  # time to issue the frame (GPU work may still run, unless ``finish``)
    aggregated: frozenset[int] = (
        frozenset()
    )  # layers drawn as per-channel aggregates (level of detail, budget)


class SceneRenderer:
    """Draws a :class:`NeuronCloud` with its panels and a HUD; owns the GL programs it uses."""

    def __init__(
        self, ctx: GLContext, cloud: NeuronCloud, renderer: str = "auto", *, lod: bool = False
    ) -> None:
        self.ctx = ctx
        self.cloud = cloud
        if renderer == "auto" and calibration_enabled():
            self.renderer, self.renderer_why = measured_renderer(ctx)
        else:
            self.renderer = choose_renderer(renderer, ctx.info, cloud.layout.count)
            self.renderer_why = (
                "as asked" if renderer != "auto" else "by the GL renderer's name (GLNET_CALIBRATE=0)"
            )
        kinds = {"compute": ComputeNeurons, "instanced": InstancedNeurons, "torch": TorchNeurons}
        self.neurons = kinds[self.renderer](ctx)
        self.panels = Panels(ctx)
        self.hud = Hud(ctx)
        self.picker = Picker(ctx)
        self.inspector = Inspector(ctx)
        self.histograms = HistogramPanels(ctx, cloud.layout)
        self.edges = Edges(ctx)
        self.show_panels = True
        self.show_histograms = True  # the histogram panels (drawn only with the other panels)
        self.lod = lod  # far, dense slabs as per-channel aggregates
        self.show_edges = True  # the structure graph (drawn where the layout has edges)

    def render(
        self,
        camera: Camera,
        target: Target,
        *,
        hud: Sequence[str] | None = None,
        curves: Curves | None = None,
        finish: bool = False,
    ) -> FrameStats:
        """Draw one frame into ``target``; with ``finish`` wait for the GPU (for timing)."""
        from OpenGL import GL

        t0 = time.perf_counter()
        self.ctx.collect()
        self.cloud.flush()
        target.bind()
        hist = self.show_panels and self.show_histograms and self.histograms.active
        panels = hist or (
            self.show_panels
            and bool(self.cloud.weights or self.cloud.input_image or self.inspector.panel is not None)
        )
        edges = self.show_edges and bool(self.cloud.layout.edges)
        depth_tested = panels or edges or self.renderer == "instanced"  # else nothing reads the depth buffer
        GL.glClearColor(*BACKGROUND, 1.0)
        GL.glClearDepth(1.0)
        GL.glClear(GL.GL_COLOR_BUFFER_BIT | (GL.GL_DEPTH_BUFFER_BIT if depth_tested else 0))
        frame = FrameParams(camera, target.width, target.height)
        items = plan_draws(self.cloud, frame, self.lod)
        drawn = self.neurons.draw(self.cloud, frame, items, depth=panels or edges) if items else 0
        if self.show_panels:
            self.panels.draw(self.cloud, frame)
        if hist:
            self.histograms.draw(frame)
        if edges:
            self.edges.draw(self.cloud.layout, frame)
        if self.show_panels:
            self.inspector.draw_scene(frame)
        if hud:
            self.hud.update(hud, target.height, curves)
            self.hud.draw(target.width, target.height)
        self.inspector.draw_overlay(frame)
        if finish:
            GL.glFinish()
        aggregated = frozenset(it.layer for it in items if it.aggregate)
        return FrameStats(self.renderer, drawn, len(items), (time.perf_counter() - t0) * 1e3, aggregated)

    def pick(self, camera: Camera, width: int, height: int, x: int, y: int) -> Pick | None:
        """The neuron this renderer draws at pixel (x, y), top-left origin, of a width x height frame."""
        self.ctx.collect()
        self.cloud.flush()
        frame = FrameParams(camera, width, height)
        items = plan_draws(self.cloud, frame, self.lod)
        if isinstance(self.neurons, TorchNeurons):  # the low halves of its 64-bit keys name the neuron
            if self.neurons.frame_key != (frame.view_proj.tobytes(), width, height):
                self.neurons.rasterize(self.cloud, frame, items)
            hit = self.neurons.pick_key(frame, x, y)
            return Pick((x, y), *hit) if hit is not None else None
        self.cloud.lut.bind(0)
        return self.picker.pick(self.cloud, frame, items, x, y, renderer=self.renderer)

    def use_values(self, values: Sequence[torch.Tensor] | None) -> None:
        """The tensors the ``torch`` renderer draws from (where they live); None: what the GL buffer holds
        (live frames arrive there directly). The GL renderers draw the buffer either way."""
        if isinstance(self.neurons, TorchNeurons):
            if values is None:
                self.neurons.values = None
            else:
                self.neurons.set_values(values)

    def close(self) -> None:
        self.picker.close()
        self.inspector.close()
        self.neurons.close()
        self.panels.close()
        self.histograms.close()
        self.edges.close()
        self.hud.close()
