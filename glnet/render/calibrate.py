"""``renderer="auto"``, decided by measurement: each renderer draws the same synthetic cloud for a few frames
on first use, and the fastest is remembered per GL renderer string (and torch device) in a small JSON cache.

The cache lives in ``$GLNET_CACHE_DIR`` (default ``~/.cache/glnet``). ``GLNET_CALIBRATE=0`` skips the
measurement and decides by the GL renderer's name (software GL and datacenter GPUs: compute).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..gpu.context import GLContext

__all__ = ["CALIBRATION_NEURONS", "cache_path", "calibrate", "calibration_enabled", "measured_renderer"]

CALIBRATION_NEURONS = 1_105_920  # the synthetic cloud: four layers, about a million neurons in all
_SIZE = (640, 360)
_FRAMES = 3
_CANDIDATES = ("instanced", "compute", "torch")


def cache_path() -> Path:
    return Path(os.environ.get("GLNET_CACHE_DIR") or Path.home() / ".cache" / "glnet") / "renderers.json"


def calibration_enabled() -> bool:
    return os.environ.get("GLNET_CALIBRATE", "1").strip().lower() not in ("0", "no", "off", "false")


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def calibrate(ctx: GLContext) -> dict[str, float]:
    """Median frame time in ms of each renderer on the synthetic cloud, in this context."""
    from ..camera import named_camera
    from ..gpu.cloud import NeuronCloud
    from ..gpu.framebuffer import Framebuffer
    from ..layout import build_layout
    from .scene import SceneRenderer

    grids = [("a", (64, 96, 96)), ("b", (128, 48, 48)), ("c", (256, 24, 24)), ("d", (512, 12, 12))]
    layout = build_layout(grids)
    gen = torch.Generator().manual_seed(0)
    values = [torch.rand(g, generator=gen).to(_device()) for _, g in grids]
    cam = named_camera("overview", layout, _SIZE[0] / _SIZE[1])
    cloud = NeuronCloud(ctx, layout)
    fb = Framebuffer(ctx, *_SIZE)
    out: dict[str, float] = {}
    try:
        cloud.set_values(values)
        for name in _CANDIDATES:
            scene = SceneRenderer(ctx, cloud, name)
            try:
                scene.use_values(values)
                scene.render(cam, fb, finish=True)  # warm-up: uploads, shader compiles
                times = []
                for _ in range(_FRAMES):
                    t0 = time.perf_counter()
                    scene.render(cam, fb, finish=True)
                    if values[0].is_cuda:
                        torch.cuda.synchronize()
                    times.append((time.perf_counter() - t0) * 1e3)
                out[name] = round(statistics.median(times), 3)
            finally:
                scene.close()
    finally:
        fb.delete()
        cloud.close()
    return out


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measured_renderer(ctx: GLContext, say: Callable[[str], None] = _say) -> tuple[str, str]:
    """The fastest renderer here and why (measured now or earlier, with the figures)."""
    key = f"{ctx.info.renderer} | torch on {_device()}"
    path = cache_path()
    try:
        cache = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    times = cache.get(key)
    fresh = not isinstance(times, dict) or not all(
        isinstance(times.get(n), (int, float)) for n in _CANDIDATES
    )
    if fresh:
        say(f"glnet: measuring which renderer is fastest on {ctx.info.renderer} (once; cached in {path})")
        times = calibrate(ctx)
        cache[key] = times
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(cache, indent=1) + "\n", encoding="utf-8")
            tmp.replace(path)
        except OSError:
            pass  # a read-only home: measure again next time
    best = min(_CANDIDATES, key=lambda n: times[n])
    figures = ", ".join(f"{n} {times[n]:.1f} ms" for n in _CANDIDATES)
    when = "measured now" if fresh else "measured earlier"
    return best, f"fastest on a {CALIBRATION_NEURONS / 1e6:.1f} M-neuron test cloud here ({when}: {figures})"
