"""Output: a trace drawn offscreen (an image, a fly-through video) or in a window you fly through.

:class:`Visualization` is the GPU side of one trace (layout, neuron cloud, weights, input image and the scene
renderer) and is shared by every output. Offscreen rendering goes through EGL; the window is a VisPy canvas
on GLFW, redrawn only when the camera moves or new data arrives.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .camera import Camera, FlyController, camera_from_spec, tour
from .capture import Trace
from .colormap import ValueRange, robust_range
from .gpu.cloud import NeuronCloud
from .gpu.context import GLContext, configure_platform, context_or_new
from .gpu.framebuffer import Framebuffer
from .layout import Layout, WeightAtlas, build_layout
from .render.scene import FrameStats, SceneRenderer

if TYPE_CHECKING:
    from .render.hud import Curves

__all__ = ["Snapshot", "Viewer", "Visualization", "input_rgb", "layout_for", "render_snapshot", "render_tour"]

_MEAN = torch.tensor([0.485, 0.456, 0.406])
_STD = torch.tensor([0.229, 0.224, 0.225])
MAX_WEIGHT_TEXELS = 64 << 20  # weight atlases above this many texels in all are not uploaded


def input_rgb(x: torch.Tensor) -> np.ndarray | None:
    """The model input as an RGB uint8 image (ImageNet normalisation undone); None if not an image."""
    t = x.detach()
    if t.dim() >= 4:
        t = t[0]
    if t.dim() == 4:  # video clip (C, T, H, W): the middle frame
        t = t[:, t.shape[1] // 2]
    if t.dim() != 3 or t.shape[0] != 3:
        return None
    t = t.float().cpu() * _STD[:, None, None] + _MEAN[:, None, None]
    return (t.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()


def _conv_weights(trace: Trace) -> dict[int, torch.Tensor]:
    out, total = {}, 0
    for i, r in enumerate(trace.layers):
        if r.kind == "conv" and r.weight is not None and r.weight.dim() >= 3:
            w, h = WeightAtlas.for_shape(r.weight.shape).size
            if total + w * h > MAX_WEIGHT_TEXELS:
                continue
            total += w * h
            out[i] = r.weight
    return out


def layout_for(trace: Trace, *, weights: bool = True) -> Layout:
    """The layout of a trace: one slab per layer, weight panels beside conv layers, the input in front."""
    rgb = input_rgb(trace.input)
    shapes = (
        {i: WeightAtlas.for_shape(w.shape).size for i, w in _conv_weights(trace).items()} if weights else {}
    )
    return build_layout(
        [(r.name, r.grid) for r in trace.layers],
        weight_shapes=shapes,
        input_aspect=(rgb.shape[1] / rgb.shape[0]) if rgb is not None else None,
    )


def _fmt_shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape) or "scalar"


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
    ) -> None:
        self.ctx = ctx
        self.trace = trace
        self.layout = layout_for(trace, weights=weights)
        self.cloud = NeuronCloud(ctx, self.layout, max_neurons=max_neurons)
        try:
            self.scene = SceneRenderer(ctx, self.cloud, renderer, lod=lod)
        except BaseException:
            self.cloud.close()
            raise
        self.update(trace)
        if weights:
            for i, w in _conv_weights(trace).items():
                self.cloud.set_weight(i, w)
        rgb = input_rgb(trace.input)
        if rgb is not None and self.layout.input_panel is not None:
            self.cloud.set_input_image(rgb)

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

    def layer_at(self, camera: Camera) -> int:
        """The layer the camera is at: the nearest slab ahead along the flight axis (else the nearest)."""
        z = float(camera.position[2])
        ahead = [i for i, s in enumerate(self.layout.slabs) if (s.z - z) * camera.forward[2] > 0]
        if not ahead:
            return self.layout.slab_index_at(z)
        return min(ahead, key=lambda i: abs(self.layout.slabs[i].z - z))

    def hud_lines(self, camera: Camera, frame_ms: float | None, stats: FrameStats | None = None) -> list[str]:
        i = self.layer_at(camera)
        rec = self.trace.layers[i]
        rng = self.ranges[i]
        total = self.layout.count
        drawn = stats.neurons_drawn if stats else total
        detail = f" ({len(stats.aggregated)} layers as channel means)" if stats and stats.aggregated else ""
        lines = [
            f"{self.trace.model_name or 'model'}  ·  {total:,} neurons  ·  {self.renderer}",
            f"layer {i + 1}/{len(self.layout.slabs)}: {rec.name} ({rec.module_type}"
            + (f" -> {rec.shown_type}" if rec.shown_type else "")
            + ")",
            f"shape {_fmt_shape(rec.shape)}  ·  range {rng.lo:.3g} … {rng.hi:.3g}"
            + (f"  ·  {rng.nonfinite:,} NaN/Inf" if rng.nonfinite else ""),
        ]
        if frame_ms is not None:
            lines.append(f"frame {frame_ms:.1f} ms  ·  drawn {drawn:,}{detail}")
        return lines

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
) -> Snapshot:
    """Render a trace headless: one warm-up frame (uploads), then ``timed_frames`` timed frames."""
    vis = fb = None
    with context_or_new(ctx) as ctx:
        try:
            vis = Visualization(
                ctx, trace, renderer=renderer, weights=weights, lod=lod, max_neurons=max_neurons
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
            if hud:
                vis.render(cam, fb, hud=vis.hud_lines(cam, frame_ms, stats), finish=True)
            image = fb.read_rgba()
            per_layer = [s.grid[0] if s.index in stats.aggregated else s.count for s in vis.layout.slabs]
            return Snapshot(
                image, frame_ms, vis.renderer, ctx.info.renderer, sum(per_layer), times, per_layer
            )
        finally:
            if fb is not None:
                fb.delete()
            if vis is not None:
                vis.close()


def render_tour(
    trace: Trace,
    out: str | Path,
    *,
    size: tuple[int, int] = (1280, 720),
    seconds: float = 6.0,
    fps: float = 30.0,
    renderer: str = "auto",
    lod: bool = False,
    max_neurons: int | None = None,
    ctx: GLContext | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Render the scripted fly-through to a video (or PNG folder); returns frame count and timings."""
    from .record import VideoWriter

    vis = fb = None
    with context_or_new(ctx) as ctx:
        try:
            vis = Visualization(ctx, trace, renderer=renderer, lod=lod, max_neurons=max_neurons)
            width, height = size
            path = tour(vis.layout, width / height)
            fb = Framebuffer(ctx, width, height)
            frames = max(2, round(seconds * fps))
            times: list[float] = []
            stats: FrameStats | None = None
            with VideoWriter(out, fps=fps) as writer:
                for k in range(frames):
                    cam = path(k / (frames - 1))
                    hud = vis.hud_lines(cam, times[-1] if times else None, stats)
                    t0 = time.perf_counter()
                    stats = vis.render(cam, fb, hud=hud, finish=True)
                    times.append((time.perf_counter() - t0) * 1e3)
                    writer.write(fb.read_rgba())
                    if progress is not None:
                        progress(k + 1, frames)
            return {
                "frames": frames,
                "frame_ms": statistics.median(times),
                "renderer": vis.renderer,
                "gl_renderer": ctx.info.renderer,
                "path": str(writer.path),
            }
        finally:
            if fb is not None:
                fb.delete()
            if vis is not None:
                vis.close()


class _Screen:
    """The window's default framebuffer as a render target."""

    def __init__(self, canvas: Any) -> None:
        self.canvas = canvas

    @property
    def width(self) -> int:
        return int(self.canvas.physical_size[0])

    @property
    def height(self) -> int:
        return int(self.canvas.physical_size[1])

    def bind(self) -> None:
        from OpenGL import GL

        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        GL.glViewport(0, 0, self.width, self.height)


class Viewer:
    """A window (VisPy on GLFW) to fly through a trace: controls in :data:`glnet.camera.CONTROLS`."""

    def __init__(
        self,
        trace: Trace,
        *,
        size: tuple[int, int] = (1280, 720),
        fullscreen: bool = False,
        renderer: str = "auto",
        title: str = "glnet",
        backend: str = "glfw",
        lod: bool = False,
        max_neurons: int | None = None,
    ) -> None:
        configure_platform(headless=False)
        from vispy import app

        from .errors import GLUnavailableError

        try:
            self.app = app.use_app(backend)
            self.canvas = app.Canvas(
                title=title, size=size, fullscreen=fullscreen, keys=None, show=True, app=self.app, vsync=True
            )
        except Exception as e:
            raise GLUnavailableError(f"cannot open a window with {backend} ({str(e).strip()[:160]})") from e
        self.ctx = GLContext(self.canvas, owns_canvas=False)
        self.vis = Visualization(self.ctx, trace, renderer=renderer, lod=lod, max_neurons=max_neurons)
        w, h = size
        self.camera = camera_from_spec(None, self.vis.layout, w / h)
        self.controller = FlyController(self.camera, self.vis.layout, aspect=w / h)
        self.screen = _Screen(self.canvas)
        self.frame_ms: float | None = None
        self._stats: FrameStats | None = None
        self.frames = 0
        self.curves: Curves | None = None
        self._last = time.perf_counter()
        self._dirty = True
        c = self.canvas.events
        c.draw.connect(self._on_draw)
        c.key_press.connect(lambda e: self._on_key(e, True))
        c.key_release.connect(lambda e: self._on_key(e, False))
        c.mouse_move.connect(self._on_mouse_move)
        c.mouse_wheel.connect(self._on_wheel)
        c.resize.connect(lambda e: self.request_draw())
        c.close.connect(self._on_close)
        self.timer = app.Timer(1 / 120, connect=self._on_tick, app=self.app, start=True)
        self.closed = False

    def request_draw(self) -> None:
        self._dirty = True

    def _on_tick(self, _event: Any) -> None:
        now = time.perf_counter()
        dt, self._last = now - self._last, now
        if self.controller.update(dt):
            self._dirty = True
        for req in self.controller.requests:
            if req == "fullscreen":
                self.canvas.fullscreen = not self.canvas.fullscreen
            elif req == "quit":
                self.canvas.close()
                return
        self.controller.requests.clear()
        if self._dirty or self.vis.cloud.values.dirty:
            self._dirty = False
            self.canvas.update()

    def _on_draw(self, _event: Any) -> None:
        w, h = self.screen.width, self.screen.height
        if w == 0 or h == 0:
            return
        t0 = time.perf_counter()
        hud = self.vis.hud_lines(self.camera, self.frame_ms, self._stats)
        self._stats = self.vis.render(self.camera, self.screen, hud=hud, curves=self.curves, finish=True)
        ms = (time.perf_counter() - t0) * 1e3
        self.frame_ms = ms if self.frame_ms is None else 0.8 * self.frame_ms + 0.2 * ms
        self.frames += 1

    def _on_key(self, event: Any, pressed: bool) -> None:
        if event.key is None:
            return
        if self.controller.key(event.key.name, pressed):
            self._dirty = True

    def _on_mouse_move(self, event: Any) -> None:
        if event.is_dragging and event.last_event is not None:
            dx, dy = np.asarray(event.pos) - np.asarray(event.last_event.pos)
            self.controller.look(float(dx), float(dy))
            self._dirty = True

    def _on_wheel(self, event: Any) -> None:
        self.controller.scale_speed(float(event.delta[1]))
        self._dirty = True

    def _on_close(self, _event: Any) -> None:
        if not self.closed:
            self.closed = True
            self.timer.stop()
            self.canvas.set_current()
            self.vis.close()
            self.ctx.close()
            self.app.quit()

    def run(self, max_seconds: float | None = None) -> None:
        """Run the event loop until the window closes (or ``max_seconds`` pass, for tests)."""
        if max_seconds is not None:
            from vispy import app

            app.Timer(
                max_seconds, connect=lambda e: self.canvas.close(), iterations=1, app=self.app, start=True
            )
        self.app.run()
