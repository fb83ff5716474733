"""The bench run loop: every renderer on every workload, warm-up then timed frames, p50/p95 into a result.

Every renderer draws the same workload from the same camera (``named_camera("overview")``), at the same
resolution, into an offscreen framebuffer of one EGL context. Each case runs warm-up frames, then timed
frames (wall clock around a frame that ends in ``glFinish``) until ``frames`` are done or the case's time
budget is spent (never fewer than :data:`MIN_TIMED_FRAMES`, unless ``frames`` is smaller).
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InputError, OutOfMemoryError
from ..progress import progress as progress_bar
from .machine import machine_info
from .results import BenchResult, Case
from .schema import MARKERS, PEERS, PYGFX, RENDERERS
from .workloads import SEED, Workload, model_workload, parse_points, synthetic_workload

if TYPE_CHECKING:
    from ..camera import Camera
    from ..gpu.context import GLContext
    from .peers.pygfx_points import PygfxAdapter

__all__ = [
    "AUTO",
    "CAMERA",
    "DEFAULT_BUDGET_S",
    "DEFAULT_FRAMES",
    "DEFAULT_WARMUP",
    "MARKERS_HOST_BYTES_PER_POINT",
    "MIN_TIMED_FRAMES",
    "UPLOAD_REPEATS",
    "Timing",
    "make_case",
    "parse_renderers",
    "run_bench",
    "time_frames",
]

MIN_TIMED_FRAMES = 3
DEFAULT_FRAMES = 20
DEFAULT_WARMUP = 2
DEFAULT_BUDGET_S = 10.0
UPLOAD_REPEATS = 3
CAMERA = "overview"
AUTO = "auto"  # every renderer that can run here; optional peers that cannot are skipped with a note
# Host bytes per point VisPy Markers needs while its data is built and sent (positions, colours, sizes, its
# 56-byte interleaved record, the queued copy): cases that would not fit in memory are skipped, not run.
MARKERS_HOST_BYTES_PER_POINT = 200


def parse_renderers(text: str | Iterable[str]) -> list[str]:
    """``"compute,vispy-markers"`` to renderer names (order kept, repeats dropped); InputError if unknown."""
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else [str(t).strip() for t in text]
    out: list[str] = []
    for name in items:
        if name not in RENDERERS:
            raise InputError(f"unknown renderer {name!r}: use some of {', '.join(RENDERERS)}")
        if name not in out:
            out.append(name)
    if not out:
        raise InputError(f"no renderer given: use some of {', '.join(RENDERERS)}")
    return out


# -- timing --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """The timed frames of one case (milliseconds each), the warm-up frames run, and whether time ran out."""

    times_ms: list[float]
    warmup: int
    budget_stopped: bool


def time_frames(frame: Callable[[], None], frames: int, warmup: int, budget_s: float) -> Timing:
    """Warm-up frames (at least one; no more once half the budget is gone), then timed frames until
    ``frames`` are done or ``budget_s`` is spent after at least :data:`MIN_TIMED_FRAMES`."""
    t_start = time.perf_counter()
    done_warm = 0
    for _ in range(max(1, warmup)):
        frame()
        done_warm += 1
        if time.perf_counter() - t_start > budget_s / 2:
            break
    times: list[float] = []
    t_timed = time.perf_counter()
    stopped = False
    while len(times) < frames:
        t0 = time.perf_counter()
        frame()
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= min(frames, MIN_TIMED_FRAMES) and time.perf_counter() - t_timed > budget_s:
            stopped = len(times) < frames
            break
    return Timing(times, done_warm, stopped)


def make_case(
    renderer: str,
    work: Workload,
    size: tuple[int, int],
    timing: Timing,
    *,
    gpu_bytes: int,
    frame_bytes: int,
    upload_bytes: int,
    upload_ms: float,
    image: str | None,
) -> Case:
    """The case record: percentiles of ``timing``, throughput, bytes per point and upload rate."""
    t = np.asarray(timing.times_ms, np.float64)
    p50 = float(np.percentile(t, 50))
    return Case(
        renderer=renderer,
        workload=work.name,
        points=work.points,
        layers=len(work.layout.slabs),
        width=size[0],
        height=size[1],
        frame_ms_p50=round(p50, 4),
        frame_ms_p95=round(float(np.percentile(t, 95)), 4),
        frame_ms_min=round(float(t.min()), 4),
        frame_ms_mean=round(float(t.mean()), 4),
        frames=len(t),
        warmup=timing.warmup,
        budget_stopped=timing.budget_stopped,
        points_per_s=round(work.points / (p50 / 1e3), 1),
        bytes_per_point=round(gpu_bytes / work.points, 4),
        gpu_bytes=int(gpu_bytes),
        frame_bytes=int(frame_bytes),
        upload_bytes=int(upload_bytes),
        upload_ms=round(upload_ms, 4),
        upload_gb_s=round(upload_bytes / (upload_ms / 1e3) / 1e9, 4),
        image=image,
    )


def _save_image(fb: Any, images: Path | None, work: Workload, renderer: str) -> str | None:
    if images is None:
        return None
    from PIL import Image

    images.mkdir(parents=True, exist_ok=True)
    p = images / f"{work.name}-{renderer}.png"
    Image.fromarray(fb.read_rgba()[..., :3]).save(p)
    return str(p)


@dataclass(frozen=True)
class _Plan:
    """What every case of a run shares."""

    size: tuple[int, int]
    frames: int
    warmup: int
    budget_s: float
    markers_max_points: int | None
    images: Path | None
    say: Callable[[str], None]
    unavailable: tuple[tuple[str, str], ...] = ()  # (renderer, why) of optional peers ``auto`` left out
    pygfx: PygfxAdapter | None = None


# -- the renderers -------------------------------------------------------------------------------------------


def _bench_glnet(
    ctx: GLContext, work: Workload, renderers: Sequence[str], camera: Camera, plan: _Plan
) -> list[Case]:
    """glnet's renderers on one cloud: its upload timed (median of ``UPLOAD_REPEATS``), then their frames."""
    from OpenGL import GL

    from ..gpu.cloud import NeuronCloud
    from ..gpu.framebuffer import Framebuffer
    from ..render.scene import SceneRenderer

    size = plan.size
    cloud = NeuronCloud(ctx, work.layout, label="bench")
    fb = Framebuffer(ctx, *size, label="bench")
    cases = []
    try:
        uploads, sent = [], 0
        for _ in range(UPLOAD_REPEATS):
            GL.glFinish()
            t0 = time.perf_counter()
            cloud.set_values(work.values, work.ranges)
            sent = cloud.flush()
            GL.glFinish()
            uploads.append((time.perf_counter() - t0) * 1e3)
        upload_ms = statistics.median(uploads)
        for name in renderers:
            plan.say(f"{name}: {work.points:,} points at {size[0]}x{size[1]}")
            scene = SceneRenderer(ctx, cloud, name)
            if name == "torch":  # it draws from tensors where they live: on the GPU when there is one
                dev = "cuda" if torch.cuda.is_available() else "cpu"
                scene.use_values([v.to(dev) for v in work.values])
            scene.show_panels = False  # the points alone: what every renderer in the comparison draws
            scene.show_edges = False
            try:
                timing = time_frames(
                    lambda s=scene: s.render(camera, fb, hud=None, finish=True),
                    plan.frames,
                    plan.warmup,
                    plan.budget_s,
                )
                keys = getattr(scene.neurons, "keys", None)  # the compute path's per-pixel key buffer
                frame_bytes = size[0] * size[1] * 8 + (keys.nbytes if keys is not None else 0)
                image = _save_image(fb, plan.images, work, name)
                cases.append(
                    make_case(
                        name,
                        work,
                        size,
                        timing,
                        gpu_bytes=cloud.gpu_bytes,
                        frame_bytes=frame_bytes,
                        upload_bytes=sent,
                        upload_ms=upload_ms,
                        image=image,
                    )
                )
            finally:
                scene.close()
    finally:
        fb.delete()
        cloud.close()
    return cases


def _bench_markers(ctx: GLContext, work: Workload, camera: Camera, plan: _Plan) -> Case:
    """The VisPy Markers peer on the same workload, camera and size."""
    from .peers.vispy_markers import VispyMarkers

    with VispyMarkers(ctx, work, camera, plan.size) as peer:
        return _peer_case(MARKERS, peer, peer.framebuffer, work, plan)


def _bench_pygfx(work: Workload, camera: Camera, plan: _Plan) -> Case:
    """The pygfx Points peer on the same workload, camera and size (a frame ends in reading it back)."""
    from .peers.pygfx_points import PygfxPoints

    with PygfxPoints(work, camera, plan.size) as peer:
        return _peer_case(PYGFX, peer, peer, work, plan)


def _peer_case(name: str, peer: Any, pixels: Any, work: Workload, plan: _Plan) -> Case:
    """Time another library's renderer (``peer.frame``) and keep its picture (read from ``pixels``)."""
    width, height = plan.size
    timing = time_frames(peer.frame, plan.frames, plan.warmup, plan.budget_s)
    return make_case(
        name,
        work,
        plan.size,
        timing,
        gpu_bytes=peer.gpu_bytes,
        frame_bytes=width * height * 8,
        upload_bytes=peer.gpu_bytes,
        upload_ms=peer.upload_ms,
        image=_save_image(pixels, plan.images, work, name),
    )


def _probe_pygfx(auto: bool) -> tuple[PygfxAdapter | None, str | None]:
    """The pygfx peer's adapter, or (``auto`` only) why it cannot run; explicitly chosen, it raises."""
    from .peers.pygfx_points import PygfxUnavailableError, probe

    try:
        return probe(), None
    except PygfxUnavailableError as e:
        if not auto:
            raise
        return None, str(e)


def _markers_skip_reason(work: Workload, plan: _Plan) -> str | None:
    from ..models import available_memory

    need = work.points * MARKERS_HOST_BYTES_PER_POINT
    if plan.markers_max_points is not None and work.points > plan.markers_max_points:
        return f"above the {plan.markers_max_points:,}-point limit set for Markers"
    if need > available_memory("cpu"):
        return f"needs ~{need / 2**30:.1f} GiB of host memory, more than is free"
    return None


# -- the run loop --------------------------------------------------------------------------------------------


def run_bench(
    points: Sequence[int] | None = None,
    model: str | None = None,
    size: tuple[int, int] = (1280, 720),
    frames: int = DEFAULT_FRAMES,
    renderers: Sequence[str] | str | None = None,
    warmup: int = DEFAULT_WARMUP,
    *,
    budget_s: float = DEFAULT_BUDGET_S,
    markers_max_points: int | None = None,
    images: str | os.PathLike[str] | None = None,
    ctx: GLContext | None = None,
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    """Benchmark ``renderers`` on synthetic clouds of ``points`` neurons and/or ``model``'s real cloud.

    Every renderer of a workload sees the same points, ``overview`` camera and ``size``. ``frames`` timed
    frames follow ``warmup`` frames, cut short once a case has used ``budget_s`` (never under
    ``MIN_TIMED_FRAMES``). Markers is skipped (and the skip recorded) above ``markers_max_points`` or when it
    would not fit in host memory. ``renderers``: names, or None / ``"auto"`` for every renderer that can run
    here (an optional peer that cannot is skipped with a note; named explicitly, it raises an InputError).
    ``images``: a folder to save each case's last frame in (PNG), to compare renderers by eye. ``ctx``: an
    existing GL context (else one is made and closed).
    """
    from ..gpu.context import configure_platform, context_or_new
    from ..inputs import check_side

    if points is None and model is None:
        points = [1_000_000]
    pts = parse_points(points) if points is not None else []
    auto = renderers is None or renderers == AUTO
    names = parse_renderers(RENDERERS if auto else renderers)  # type: ignore[arg-type]
    pygfx, unavailable = None, ()
    if PYGFX in names:
        pygfx, why = _probe_pygfx(auto)
        if why is not None:
            names.remove(PYGFX)
            unavailable = ((PYGFX, why),)
    width, height = check_side(size[0], "width"), check_side(size[1], "height")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise InputError(f"frames must be a positive integer, not {frames!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise InputError(f"warm-up must be a non-negative integer, not {warmup!r}")
    if not (isinstance(budget_s, (int, float)) and budget_s > 0):
        raise InputError(f"the time budget must be positive seconds, not {budget_s!r}")
    plan = _Plan(
        (width, height),
        frames,
        warmup,
        float(budget_s),
        markers_max_points,
        Path(images) if images is not None else None,
        progress or (lambda _msg: None),
        unavailable,
        pygfx,
    )
    for name, why in unavailable:
        plan.say(f"note: skipping {name}: {why}")
    configure_platform(headless=True)
    with context_or_new(ctx) as ctx:
        machine = machine_info(ctx.info)
        if pygfx is not None:
            machine.update(pygfx.machine_info())
            machine["versions"].update(pygfx.versions)
        load = machine["load_average"]
        if load and load[0] > 0.5 * machine["cpu_cores"]:
            plan.say(f"note: load average {load[0]:g} on {machine['cpu_cores']} cores: timings will be noisy")
        settings = {
            "width": width,
            "height": height,
            "frames": frames,
            "warmup": warmup,
            "budget_s": float(budget_s),
            "renderers": names,
            "camera": CAMERA,
            "seed": SEED,
            "markers_max_points": markers_max_points,
            "workloads": [],
        }
        result = BenchResult(machine, settings)
        jobs: list[Callable[[], Workload]] = [lambda n=n: synthetic_workload(n) for n in pts]
        if model is not None:
            jobs.append(lambda: model_workload(model))
        bar = progress_bar(len(jobs) * len(names), "glnet: bench", unit="case", enabled=progress is not None)
        with bar:
            plan = replace(plan, say=bar.wrap(plan.say))  # notes printed around the bar
            for job in jobs:
                work = job()
                _run_workload(ctx, work, result, names, plan)
                bar.update(len(names))
                del work
                gc.collect()
        return result


def _run_workload(
    ctx: GLContext, work: Workload, result: BenchResult, names: Sequence[str], plan: _Plan
) -> None:
    """Every renderer on one workload; each glnet case gets its speed-up over Markers when Markers ran."""
    from ..camera import named_camera

    result.settings["workloads"].append(
        {"name": work.name, "kind": work.kind, "points": work.points, "layers": len(work.layout.slabs)}
    )
    camera = named_camera(CAMERA, work.layout, plan.size[0] / plan.size[1])
    plan.say(f"{work.name}: {work.points:,} points in {len(work.layout.slabs)} layers")
    ours = [n for n in names if n not in PEERS]
    cases = {}
    if ours:
        try:
            for c in _bench_glnet(ctx, work, ours, camera, plan):
                cases[c.renderer] = c
        except OutOfMemoryError as e:
            for n in ours:
                result.skipped.append(
                    {"renderer": n, "workload": work.name, "points": work.points, "reason": str(e)}
                )
    if MARKERS in names:
        reason = _markers_skip_reason(work, plan)
        if reason:
            result.skipped.append(
                {"renderer": MARKERS, "workload": work.name, "points": work.points, "reason": reason}
            )
        else:
            plan.say(f"{MARKERS}: {work.points:,} points at {plan.size[0]}x{plan.size[1]}")
            cases[MARKERS] = _bench_markers(ctx, work, camera, plan)
    if plan.pygfx is not None and PYGFX in names:
        from .peers.pygfx_points import skip_reason

        reason = skip_reason(work, plan.pygfx)
        if reason:
            result.skipped.append(
                {"renderer": PYGFX, "workload": work.name, "points": work.points, "reason": reason}
            )
        else:
            plan.say(f"{PYGFX}: {work.points:,} points at {plan.size[0]}x{plan.size[1]} on {plan.pygfx.name}")
            cases[PYGFX] = _bench_pygfx(work, camera, plan)
    for name, why in plan.unavailable:
        result.skipped.append({"renderer": name, "workload": work.name, "points": work.points, "reason": why})
    base = cases.get(MARKERS)
    for n in names:
        c = cases.get(n)
        if c is None:
            continue
        if base is not None:
            ratio = base.frame_ms_p50 / c.frame_ms_p50  # 4 significant digits: a slow peer's is below 0.1
            c = replace(c, ratio_vs_markers=float(f"{ratio:.4g}"))
        result.cases.append(c)
