"""Display walls over torch.distributed: one picture spread over C x R tiles, one process (and GPU) each.

Started by ``torchrun`` (its environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR...; several machines
through torchrun's own ``--nnodes``/``--rdzv-*`` options). Rank r draws tile (r mod C, r div C) of a virtual
screen of C*W + (C-1)*bx by R*H + (R-1)*by pixels with an off-axis sub-frustum of the one camera
(:class:`glnet.tiles.TileRenderer`, guard band included); what lies behind a bezel is drawn by nobody, as on a
real wall. Rank 0 owns the camera (a tour, a fixed camera, or its window's fly controls) and broadcasts it
every frame with the frame number and a quit flag; after drawing, every rank meets at an all_reduce before it
presents, so no tile shows frame n+1 before all have drawn frame n. gloo on CPU, NCCL where CUDA is. With an
output folder each rank writes its tiles and rank 0 gathers and stitches ``wall.png`` (``wall.mp4`` for more
than one frame), with ``wall.json`` recording which frames each rank drew.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .camera import Camera
from .errors import GlnetError, InputError

__all__ = [
    "WallGroup",
    "WallSpec",
    "camera_state",
    "parse_bezel",
    "run_wall",
    "state_camera",
    "stitch",
    "torchrun_env",
]

STATE_LEN = 3 + 9 + 3 + 2  # position, rotation, fov/near/far, frame number, quit flag
BEZEL_RGB = (0, 0, 0)  # what a bezel looks like in the stitched picture


@dataclass(frozen=True)
class WallSpec:
    """A wall: ``grid`` (columns, rows) of ``tile`` (width, height) displays, ``bezel`` (x, y) pixels
    between neighbours."""

    grid: tuple[int, int]
    tile: tuple[int, int]
    bezel: tuple[int, int] = (0, 0)

    @property
    def size(self) -> tuple[int, int]:
        """The virtual screen, bezels included."""
        (c, r), (w, h), (bx, by) = self.grid, self.tile, self.bezel
        return c * w + (c - 1) * bx, r * h + (r - 1) * by

    @property
    def count(self) -> int:
        return self.grid[0] * self.grid[1]

    def rect(self, rank: int) -> tuple[int, int, int, int]:
        """Rank ``rank``'s tile in the virtual screen: (x0, y0 from the top, w, h)."""
        (c, _), (w, h), (bx, by) = self.grid, self.tile, self.bezel
        col, row = rank % c, rank // c
        return col * (w + bx), row * (h + by), w, h


def parse_bezel(text: str | None) -> tuple[int, int]:
    """``--bezel X,Y`` (or one number for both) in pixels, each 0..4096."""
    if not text:
        return 0, 0
    parts = text.replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or not all(0 <= v <= 4096 for v in values):
        raise InputError(f"invalid --bezel {text!r}: expected X,Y pixels (0..4096), e.g. 40,30")
    return values[0], values[1]


def torchrun_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; InputError when not started by it."""
    try:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    except (KeyError, ValueError):
        raise InputError(
            "glnet wall runs one process per tile under torchrun: torchrun --nproc-per-node N -m glnet "
            "wall MODEL --grid CxR ..."
        ) from None


def camera_state(cam: Camera, frame: int, quit: bool = False) -> torch.Tensor:
    """The camera as the float64 vector rank 0 broadcasts every frame."""
    return torch.tensor(
        [*cam.position, *cam.rotation.reshape(-1), cam.fov, cam.near, cam.far, frame, 1.0 if quit else 0.0],
        dtype=torch.float64,
    )


def state_camera(state: torch.Tensor) -> tuple[Camera, int, bool]:
    """The camera, frame number and quit flag of a broadcast vector."""
    v = state.detach().cpu().double().numpy()
    cam = Camera(v[0:3].copy(), v[3:12].reshape(3, 3).copy(), float(v[12]), float(v[13]), float(v[14]))
    return cam, round(float(v[15])), bool(v[16] > 0.5)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def loopback_interface() -> str | None:
    """The name of this machine's loopback interface (``lo`` on Linux), or None if it has none."""
    return next((name for _, name in socket.if_nameindex() if name.startswith("lo")), None)


def bind_gloo_to_loopback() -> None:
    """Make gloo bind the loopback interface for a group on one machine (unless GLOO_SOCKET_IFNAME is set).

    Left alone, gloo binds the address the hostname resolves to, which on some machines cannot be reached,
    and every rank then waits out the timeout."""
    name = loopback_interface()
    if name is not None and "GLOO_SOCKET_IFNAME" not in os.environ:
        os.environ["GLOO_SOCKET_IFNAME"] = name


class WallGroup:
    """The process group and the device its collectives run on (CPU for gloo, the rank's GPU for NCCL)."""

    def __init__(
        self, timeout_s: float, local_rank: int, *, init: tuple[str, int, int] | None = None
    ) -> None:
        """torchrun's group, or with ``init`` (tcp://host:port, rank, world size) a gloo group of its own."""
        import torch.distributed as dist

        self.dist = dist
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        # the rank's GPU, for its GL context; NCCL only when every local rank has one of its own
        self.gpu = local_rank % gpus if gpus else None
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        nccl = init is None and 0 < local_world <= gpus and os.environ.get("GLNET_WALL_BACKEND", "") != "gloo"
        self.backend = "nccl" if nccl else "gloo"
        self.device = torch.device(f"cuda:{self.gpu}" if nccl else "cpu")
        if nccl:
            torch.cuda.set_device(self.device)
        where = {} if init is None else {"init_method": init[0], "rank": init[1], "world_size": init[2]}
        one_machine = init is not None or local_world == int(os.environ.get("WORLD_SIZE", 0) or 0)
        if self.backend == "gloo" and one_machine:
            bind_gloo_to_loopback()
        dist.init_process_group(self.backend, timeout=timedelta(seconds=timeout_s), **where)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def all_ok(self, error: str | None) -> list[str | None]:
        """Every rank's error (None where fine), on every rank: so all stop together, none hangs."""
        errors: list[str | None] = [None] * self.world
        self.dist.all_gather_object(errors, error)
        return errors

    def broadcast(self, state: torch.Tensor) -> torch.Tensor:
        t = state.to(self.device)
        self.dist.broadcast(t, src=0)
        return t.cpu()

    def lockstep(self) -> None:
        """Every rank has drawn this frame (an all_reduce, which NCCL and gloo both run on their device)."""
        self.dist.all_reduce(torch.ones(1, device=self.device))

    def gather(self, tile: np.ndarray) -> list[np.ndarray] | None:
        """Every rank's tile (same shapes) on rank 0; None elsewhere."""
        t = torch.from_numpy(np.ascontiguousarray(tile)).to(self.device)
        out = [torch.empty_like(t) for _ in range(self.world)] if self.rank == 0 else None
        self.dist.gather(t, out, dst=0)
        return [o.cpu().numpy() for o in out] if out is not None else None

    def gather_object(self, obj: Any) -> list[Any] | None:
        out = [None] * self.world if self.rank == 0 else None
        self.dist.gather_object(obj, out, dst=0)
        return out

    def close(self) -> None:
        if self.dist.is_initialized():
            self.dist.destroy_process_group()


def stitch(spec: WallSpec, tiles: list[np.ndarray]) -> np.ndarray:
    """The wall's picture from every rank's tile (rank order), bezels black."""
    w, h = spec.size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BEZEL_RGB
    for r, tile in enumerate(tiles):
        x0, y0, tw, th = spec.rect(r)
        img[y0 : y0 + th, x0 : x0 + tw] = tile[..., :3]
    return img


def run_wall(
    spec: WallSpec,
    prepare: Callable[[], Any],
    *,
    camera: str | None = None,
    tour: str | None = None,
    seconds: float | None = None,
    fps: float = 30.0,
    out: str | Path | None = None,
    renderer: str = "auto",
    lod: bool = False,
    max_neurons: int | None = None,
    gl_device: int | None = None,
    window: dict[str, Any] | None = None,
    timeout_s: float = 300.0,
) -> int:
    """Run this process's part of a wall (call it in every torchrun rank); 0 when all ranks finished.

    ``prepare()`` builds the trace (each rank builds its own, identically seeded); ``window`` (the
    ``--fullscreen``/``--screen`` options) shows each tile in a window instead of writing ``out``."""
    _, world, local_rank = torchrun_env()
    if world != spec.count:
        raise InputError(
            f"a {spec.grid[0]}x{spec.grid[1]} wall needs {spec.count} processes, torchrun started {world}: "
            f"use --nproc-per-node {spec.count} (times nodes)"
        )
    if out is None and window is None:
        raise InputError("a wall without a display writes its tiles: give --out DIR")
    group = WallGroup(timeout_s, local_rank)
    try:
        draw = {"renderer": renderer, "lod": lod, "max_neurons": max_neurons}
        return _run(group, spec, prepare, camera, tour, seconds, fps, out, draw, gl_device, window)
    finally:
        group.close()


def _run(group, spec, prepare, camera, tour, seconds, fps, out, draw, gl_device, window) -> int:
    from .camera import camera_from_spec
    from .gpu.context import GLContext, configure_platform
    from .offline import frame_count
    from .tiles import TileRenderer
    from .tour import load_tour

    rank = group.rank
    rect = spec.rect(rank)
    error = None
    ctx = vis = tiles = viewer = None
    path: Any = None
    frames = 1
    try:
        configure_platform(headless=window is None)
        prep = prepare()
        if window is None:
            cuda = f"cuda:{group.gpu}" if group.gpu is not None else None
            ctx = GLContext.offscreen(gl_device=gl_device, cuda_device=cuda)
            from .app import Visualization

            vis = Visualization(ctx, prep.trace, **draw)
        else:
            from .window import Viewer

            viewer = Viewer(
                prep.trace, size=spec.tile, **draw,
                title=f"glnet wall {rank % spec.grid[0]},{rank // spec.grid[0]}", **window,
            )  # fmt: skip
            vis = viewer.vis
        tiles = TileRenderer(vis, spec.size)
        aspect = spec.size[0] / spec.size[1]
        if tour:
            path = load_tour(tour, vis.layout, aspect, seconds=seconds)
            frames = frame_count(path.duration, fps)
        else:
            path = camera_from_spec(camera, vis.layout, aspect)
            frames = frame_count(seconds, fps) if seconds else 1
    except GlnetError as e:
        error = str(e)
    except Exception as e:  # a bug or a driver failure on one rank must not leave the others waiting
        error = f"{type(e).__name__}: {e}"
    errors = group.all_ok(error)
    try:
        failed = [(r, e) for r, e in enumerate(errors) if e]
        if failed:
            if rank == 0:
                r, e = failed[0]
                raise InputError(e if r == 0 else f"rank {r}: {e}")
            return 2
        timed = seconds is not None  # a window shows that long, else until it closes
        return _frames(group, spec, rect, tiles, vis, viewer, path, frames, fps, out, timed)
    finally:
        if tiles is not None:
            tiles.close()
        if viewer is not None:
            viewer.close()
        elif vis is not None:
            vis.close()
        if ctx is not None:
            ctx.close()


def _frames(group, spec, rect, tiles, vis, viewer, path, frames, fps, out, timed) -> int:
    from .record import VideoWriter

    rank = group.rank
    folder = Path(out) if out is not None else None
    if folder is not None:
        (folder / "tiles").mkdir(parents=True, exist_ok=True)
    drawn: list[int] = []
    render_ms: list[float] = []
    writer = None
    if rank == 0 and folder is not None and frames > 1:
        writer = VideoWriter(folder / "wall.mp4", fps=fps)
    fixed = isinstance(path, Camera)
    shown: list[Camera] = []  # the tile camera of the frame on screen: what any redraw the window asks shows
    if viewer is not None:
        if fixed:  # fly from the wall's camera (framed for the virtual screen, not one window)
            viewer.camera.position, viewer.camera.rotation = path.position.copy(), path.rotation.copy()
            viewer.controller.home = viewer.camera.copy()
        viewer.picking = False
        viewer.set_draw(lambda target: shown and vis.render(shown[-1], target, hud=False))
    n = 0
    t0 = time.perf_counter()
    try:
        while True:
            if viewer is not None:
                viewer.app.process_events()  # every rank's window stays responsive
            if rank == 0:
                if viewer is None:
                    quit = n >= frames
                    cam = path if fixed else path.at(n / fps)
                else:  # until the window closes (Esc): fly controls, or the tour on a loop
                    quit = viewer.closed or (timed and n >= frames)
                    cam = viewer.camera if fixed else path.at((n % frames) / fps)  # keys move it on its ticks
                state = camera_state(cam, n, quit)
            else:
                state = torch.zeros(STATE_LEN, dtype=torch.float64)
            cam, n, quit = state_camera(group.broadcast(state))
            if quit:
                break
            t1 = time.perf_counter()
            img = None
            if viewer is None:
                img = tiles.render(cam, rect)
            elif not viewer.closed:
                viewer.ctx.make_current()
                shown[:] = [cam.tiled(spec.size, rect)]
                vis.render(shown[0], viewer.screen, hud=False, finish=True)
            render_ms.append((time.perf_counter() - t1) * 1e3)
            drawn.append(n)
            group.lockstep()  # every rank has drawn frame n: now present it
            if viewer is not None and not viewer.closed:
                viewer.canvas.swap_buffers()
            if folder is not None and img is not None:
                from PIL import Image

                Image.fromarray(img[..., :3]).save(folder / "tiles" / f"tile_r{rank}_f{n:05d}.png")
                gathered = group.gather(img[..., :3])
                if gathered is not None:
                    wall = stitch(spec, gathered)
                    if writer is not None:
                        writer.write(wall)
                    else:
                        Image.fromarray(wall).save(folder / "wall.png")
            n += 1
    finally:
        if writer is not None:
            writer.close()
    elapsed = time.perf_counter() - t0
    record = {
        "rank": rank,
        "tile": [rank % spec.grid[0], rank // spec.grid[0]],
        "rect": list(rect),
        "host": socket.gethostname(),
        "frames": drawn,
        "render_ms": [round(t, 3) for t in render_ms],
        "gl_renderer": vis.ctx.info.renderer,
    }
    records = group.gather_object(record)
    if rank != 0:
        return 0
    summary = {
        "grid": list(spec.grid),
        "tile": list(spec.tile),
        "bezel": list(spec.bezel),
        "size": list(spec.size),
        "fps": fps,
        "frames": len(drawn),
        "backend": group.backend,
        "wall_fps": round(len(drawn) / elapsed, 3) if elapsed > 0 else None,
        "output": None if folder is None else ("wall.mp4" if writer is not None else "wall.png"),
        "ranks": records,
    }
    wrote = ""
    if folder is not None:
        (folder / "wall.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        wrote = f"; wrote {folder / summary['output']}"
    _say(
        f"glnet: wall {spec.grid[0]}x{spec.grid[1]} of {spec.tile[0]}x{spec.tile[1]} ({spec.size[0]}x"
        f"{spec.size[1]}): {len(drawn)} frame(s) at {summary['wall_fps']} frames/s over {group.backend}"
        f"{wrote}"
    )
    return 0
