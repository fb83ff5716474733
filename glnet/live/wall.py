"""Live training on a display wall (``glnet.live(..., wall="2x1:640x360")``): the one viewer process that
reads the trainer's slots is rank 0 of a gloo group, and each other tile of the wall is a process of its own.

Every drawn step rank 0 broadcasts a header (the camera as :func:`glnet.wall.camera_state` packs it, then the
step, mode, loss and accuracy, and whether refreshed panel weights follow), then the step's flat value buffer
and its side numbers (gradient norms, top-5). Each rank moves them into its own cloud through a
:class:`~glnet.live.view.LiveView` (so ranges, channel means and predictions are computed alike everywhere),
draws its tile with :class:`glnet.tiles.TileRenderer`, and all meet at an all_reduce; rank 0 then gathers the
tiles and writes the stitched picture (:func:`glnet.wall.stitch`) into the recording. The trainer talks to
rank 0 only, through the slots; the collectives have a timeout, and when one fails (a rank died or hangs)
rank 0 leaves the group, tells the trainer, and draws every tile itself from then on, so the recording keeps
a frame per step. GL is imported inside the functions: the trainer imports this module to spawn the ranks.
"""

from __future__ import annotations

import math
import os
import re
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InputError
from ..inputs import parse_size
from ..wall import STATE_LEN, WallGroup, WallSpec, camera_state, parse_bezel, state_camera, stitch
from .handover import FrameMeta, Slots

if TYPE_CHECKING:
    from ..camera import Camera
    from .viewer import ViewerSpec

__all__ = ["HEADER_LEN", "WallSpec", "free_address", "lead_wall", "parse_wall", "run_wall_rank"]

MODES = ("activations", "gradients", "weights")  # a mode travels as its index
HEADER_LEN = STATE_LEN + 5  # the camera state, then step, mode, loss, accuracy, panels (mode index + 1, or 0)
_WALL_RE = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*:\s*(\d+\s*[xX]\s*\d+)\s*(?::\s*(.+))?")


def parse_wall(wall: str | WallSpec | None) -> WallSpec | None:
    """``"CxR:WxH"`` or ``"CxR:WxH:X,Y"`` (bezels) as a :class:`~glnet.wall.WallSpec`; a spec as it is."""
    if wall is None or isinstance(wall, WallSpec):
        return wall
    m = _WALL_RE.fullmatch(wall) if isinstance(wall, str) else None
    if m is None or not (1 <= int(m[1]) <= 64 and 1 <= int(m[2]) <= 64) or int(m[1]) * int(m[2]) < 2:
        raise InputError(f"invalid wall {wall!r}: expected COLUMNSxROWS:WIDTHxHEIGHT[:X,Y], e.g. 2x2:640x360")
    return WallSpec((int(m[1]), int(m[2])), parse_size(m[3].replace(" ", "")), parse_bezel(m[4]))


def free_address() -> str:
    """A ``tcp://127.0.0.1:PORT`` rendezvous for a wall on this machine (a port free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _header(cam: Camera, frame: int, meta: FrameMeta | None, panels: str | None) -> torch.Tensor:
    nan = float("nan")
    tail = [0.0, 0.0, nan, nan, 0.0] if meta is None else [
        float(meta.step), float(MODES.index(meta.mode)),
        nan if meta.loss is None else meta.loss, nan if meta.acc is None else meta.acc,
        0.0 if panels is None else MODES.index(panels) + 1.0,
    ]  # fmt: skip
    return torch.cat([camera_state(cam, frame, meta is None), torch.tensor(tail, dtype=torch.float64)])


def _meta(head: torch.Tensor) -> tuple[FrameMeta, str | None]:
    step, mode, loss, acc, panels = head[STATE_LEN:].tolist()
    meta = FrameMeta(
        round(step), MODES[round(mode)], None if math.isnan(loss) else loss, None if math.isnan(acc) else acc
    )
    return meta, MODES[round(panels) - 1] if panels > 0.5 else None


class _Leader:
    """Rank 0, in the viewer process: the group (None once lost), the tile renderer and what it drew."""

    def __init__(self, loop: Any, camera: Camera) -> None:
        from ..tiles import TileRenderer

        spec = loop.spec
        self.loop, self.camera, self.wall = loop, camera, spec.wall
        self.tiles = TileRenderer(loop.view.vis, self.wall.size)
        self.data = torch.zeros(loop.slots.floats, dtype=torch.float32)
        self.side = torch.zeros(loop.slots.side.shape[1], dtype=torch.float32)
        self.panels: str | None = None  # the panel weights were refreshed (for this mode): tell the ranks
        self.frame = 0
        self.drawn: list[int] = []
        self.lost = ""
        self.group: WallGroup | None = None
        try:
            self.group = WallGroup(spec.wall_timeout, 0, init=(spec.wall_addr, 0, self.wall.count))
        except Exception as e:  # a rank that never came: rank 0 draws the whole wall
            self._lose(f"the wall did not form: {_line(e)}", 0)

    def _lose(self, why: str, step: int) -> None:
        self.group, self.lost = None, why  # a broken group is left, not torn down (that could wait again)
        self.loop.tell("wall", why, step)

    def _stage(self, i: int) -> None:
        """Copy slot ``i`` (frame and side numbers) before it goes back to the trainer."""
        slots = self.loop.slots
        if slots.events is not None:
            slots.events[i].synchronize()
        self.data.copy_(slots.data[i])
        self.side.copy_(slots.side[i])

    def draw_next(self) -> None:
        """The oldest waiting frame: into rank 0's cloud, out to every rank, drawn, stitched, written."""
        loop = self.loop
        i, meta = loop.pending[0]
        self._stage(i)
        loop.present_next()
        lines = loop.view.hud_lines(self.camera) if loop.spec.hud else False
        tiles = None
        if self.group is not None:
            try:
                self._broadcast(_header(self.camera, self.frame, meta, self.panels))
                img = self.tiles.render(self.camera, self.wall.rect(0), hud=lines)
                loop.view.frame_ms = self.tiles.last_ms  # the HUD's frame time: rank 0's tile
                self.group.lockstep()
                tiles = self.group.gather(img[..., :3])
            except Exception as e:  # a rank died or timed out: go on alone
                self._lose(f"a collective failed at frame {self.frame}: {_line(e)}", meta.step)
        self.panels = None
        if tiles is None:
            rects = [self.wall.rect(r) for r in range(self.wall.count)]
            tiles = [
                self.tiles.render(self.camera, rc, hud=lines if r == 0 else False)
                for r, rc in enumerate(rects)
            ]
        self.drawn.append(self.frame)
        self.frame += 1
        if loop.wants_pixels:
            loop.deliver(stitch(self.wall, tiles))

    def _broadcast(self, head: torch.Tensor) -> None:
        group = self.group
        assert group is not None
        group.broadcast(head)
        panels = self.loop.spec.panels
        if self.panels is not None and panels is not None:
            if panels.event is not None:
                panels.event.synchronize()
            group.broadcast(panels.data.cpu())
        group.broadcast(self.data)
        group.broadcast(self.side)

    def close(self) -> None:
        """Tell the ranks to quit, gather what each drew (the trainer's stats), leave the group."""
        report: dict[str, Any] = {"lost": self.lost, "ranks": None}
        if self.group is not None:
            try:
                self.group.broadcast(_header(self.camera, self.frame, None, None))
                mine = {"rank": 0, "pid": os.getpid(), "frames": self.drawn}
                report["ranks"] = self.group.gather_object(mine)
                self.group.close()
            except Exception as e:
                report["lost"] = self.lost or f"the wall failed at the end: {_line(e)}"
        if report["ranks"] is None:
            report["ranks"] = [{"rank": 0, "pid": os.getpid(), "frames": self.drawn}]
        self.loop.wall_report = report
        self.tiles.close()


def lead_wall(loop: Any, camera: Camera) -> None:
    """Rank 0's main loop (the headless viewer's, with a wall): every frame to every rank, in lockstep."""
    leader = _Leader(loop, camera)
    try:
        while not loop.closing:
            loop.receive(0.0 if loop.pending else 0.05)
            if loop.pending:
                leader.draw_next()
            elif loop.panels_due is not None:
                leader.panels = loop.panels_due
                loop.refresh_panels()
            elif loop.finishing:
                break
    finally:
        leader.close()


def _line(e: BaseException) -> str:
    """An exception in one line, without gloo's source-file prefix."""
    text = str(e).strip().splitlines()
    return re.sub(r"^\[[^\]]*\]\s*", "", text[0] if text else type(e).__name__)[:200]


def run_wall_rank(spec: ViewerSpec, rank: int, shape: tuple[int, int], panels: Any) -> None:
    """A wall rank other than 0 (spawned by the trainer, one per tile): draw what rank 0 broadcasts."""
    from .viewer import die_with_parent

    die_with_parent()
    torch.set_num_threads(1)
    try:
        os.nice(spec.nice)
    except OSError:
        pass
    from ..gpu.context import GLContext, configure_platform

    configure_platform(headless=True)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cuda = f"cuda:{rank % gpus}" if gpus else None  # each rank's GL context on a GPU of its own
    try:
        with GLContext.offscreen(cuda_device=cuda) as ctx:
            _rank_loop(spec, rank, shape, panels, ctx)
    except Exception as e:  # rank 0 went away or a collective timed out: this rank's part is over
        print(f"glnet: wall rank {rank}: {_line(e)}", file=sys.stderr, flush=True)
        sys.exit(3)


def _rank_loop(spec: ViewerSpec, rank: int, shape: tuple[int, int], panels: Any, ctx: Any) -> None:
    from ..app import Visualization
    from ..tiles import TileRenderer
    from .view import LiveView

    wall = spec.wall
    vis = Visualization(ctx, spec.trace, renderer=spec.renderer, labels=spec.labels)
    slots = Slots(1, shape[0], torch.device("cpu"), side=shape[1])
    view = LiveView(vis, slots, spec.offsets, spec.counts, title=spec.title, total_steps=spec.total_steps)
    tiles = TileRenderer(vis, wall.size)
    group = WallGroup(spec.wall_timeout, rank, init=(spec.wall_addr, rank, wall.count))
    drawn: list[int] = []
    head = torch.zeros(HEADER_LEN, dtype=torch.float64)
    try:
        while True:
            h = group.broadcast(head)
            cam, n, quit = state_camera(h[:STATE_LEN])
            if quit:
                break
            meta, refreshed = _meta(h)
            if refreshed is not None and panels is not None:
                panels.data.copy_(group.broadcast(panels.data))
                view.set_weights(refreshed, panels.read())
            slots.data[0].copy_(group.broadcast(slots.data[0]))
            slots.side[0].copy_(group.broadcast(slots.side[0]))
            view.absorb(meta)
            view.present(0, meta)
            view.upload.reclaim()
            t0 = time.perf_counter()
            img = tiles.render(cam, wall.rect(rank))
            view.frame_ms = (time.perf_counter() - t0) * 1e3
            group.lockstep()
            group.gather(img[..., :3])
            drawn.append(n)
        group.gather_object({"rank": rank, "pid": os.getpid(), "frames": drawn})
        group.close()
    finally:
        tiles.close()
        view.close()
        vis.close()
