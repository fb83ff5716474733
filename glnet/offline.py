"""Offline, frame-exact video of a tour: frame n shows the tour at t = n / fps, whatever the render speed.

Rendering, read-back and encoding overlap: frames are drawn without waiting for the GPU, read back through
a ring of pixel-buffer objects (:class:`glnet.gpu.readback.FrameReader`) and handed to
:class:`glnet.record.VideoWriter`, which encodes on a thread of its own. ``glnet record`` and ``glnet view``
without a display both come here.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .app import Visualization
from .capture import Trace
from .errors import InputError
from .gpu.context import GLContext, context_or_new
from .gpu.framebuffer import Framebuffer
from .gpu.readback import FrameReader
from .progress import progress as progress_bar
from .record import VideoWriter
from .tour import Tour, load_tour

__all__ = ["Recording", "frame_count", "render_tour"]


def frame_count(seconds: float, fps: float) -> int:
    """How many frames ``seconds`` of video at ``fps`` holds: round(seconds x fps), at least one."""
    if not (seconds > 0 and fps > 0):
        raise InputError(f"a recording needs positive seconds and fps, not {seconds!r} s at {fps!r} fps")
    return max(1, round(seconds * fps))


@dataclass
class Recording:
    """What :func:`render_tour` wrote and what it took; rates in frames per second."""

    path: str
    frames: int
    width: int
    height: int
    fps: float
    seconds: float
    tour: str
    codec: str | None  # h264, hevc, av1, png or gif
    encoder: str | None  # e.g. libx264 (None for PNG and GIF)
    encoded_size: tuple[int, int] | None  # differs from (width, height) where an odd side was padded
    renderer: str
    gl_renderer: str
    render_fps: float  # frames / time spent drawing and starting the read-back
    encode_fps: float | None  # frames / the encoder thread's busy time
    wall_s: float  # the whole recording, uploads and the encoder's flush included
    frame_ms: float  # median time of one frame's draw
    frame_times: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["frame_times"] = [round(t, 3) for t in self.frame_times]
        return d

    def __getitem__(self, key: str) -> Any:  # the old dict-shaped result of render_tour
        return getattr(self, key)


def render_tour(
    trace: Trace,
    out: str | Path,
    *,
    tour: str | Tour = "flythrough",
    size: tuple[int, int] = (1280, 720),
    seconds: float | None = None,
    fps: float = 30.0,
    renderer: str = "auto",
    lod: bool = False,
    max_neurons: int | None = None,
    codec: str | None = None,
    crf: int | None = None,
    hud: bool = False,
    ctx: GLContext | None = None,
    progress: bool = True,
) -> Recording:
    """Render ``tour`` (a :class:`Tour`, a built-in name or a tour file) to ``out`` (.mp4, .gif or a PNG
    folder): exactly round(seconds x fps) frames, frame n at t = n / fps; ``seconds`` defaults to the tour's
    duration and sets a built-in tour's length. ``hud`` adds the layer text (never timings: a frame must
    not depend on how fast it was drawn)."""
    width, height = size
    if not (fps > 0 and fps <= 1000):
        raise InputError(f"fps must be in (0, 1000], not {fps!r}")
    vis = fb = reader = None
    with context_or_new(ctx) as ctx:
        try:
            t_start = time.perf_counter()
            vis = Visualization(ctx, trace, renderer=renderer, lod=lod, max_neurons=max_neurons, weights=True)
            path = (
                tour
                if isinstance(tour, Tour)
                else load_tour(tour, vis.layout, width / height, seconds=seconds)
            )
            length = path.duration if seconds is None else float(seconds)
            frames = frame_count(length, fps)
            fb = Framebuffer(ctx, width, height)
            reader = FrameReader(ctx, width, height, ring=2)
            lines: Any = False
            vis.render(path.at(0.0), fb, hud=False, finish=True)  # uploads, before the clock starts
            times: list[float] = []
            with (
                VideoWriter(out, fps=fps, codec=codec, crf=crf) as writer,
                progress_bar(frames, "glnet: recording", unit="frame", enabled=progress) as bar,
            ):
                for n in range(frames):
                    cam = path.at(n / fps)
                    if hud:
                        lines = vis.hud_lines(cam, None)
                    t0 = time.perf_counter()
                    vis.render(cam, fb, hud=lines, finish=False)
                    ready = reader.read(fb)
                    times.append((time.perf_counter() - t0) * 1e3)
                    if ready is not None:
                        writer.write(ready)
                        bar.update()
                for ready in reader.drain():
                    writer.write(ready)
                    bar.update()
                bar.postfix(codec=writer.codec)
            wall = time.perf_counter() - t_start
            return Recording(
                path=str(writer.path),
                frames=writer.frames,
                width=width,
                height=height,
                fps=float(fps),
                seconds=length,
                tour=path.name or str(tour),
                codec=writer.codec,
                encoder=writer.encoder,
                encoded_size=writer.size,
                renderer=vis.renderer,
                gl_renderer=ctx.info.renderer,
                render_fps=len(times) / (sum(times) / 1e3) if sum(times) > 0 else float("inf"),
                encode_fps=writer.frames / writer.encode_s if writer.encode_s > 0 else None,
                wall_s=wall,
                frame_ms=statistics.median(times),
                frame_times=times,
            )
        finally:
            if reader is not None:
                reader.close()
            if fb is not None:
                fb.delete()
            if vis is not None:
                vis.close()
