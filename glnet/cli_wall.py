"""``glnet wall``: one picture over a wall of displays, a process per tile, started by torchrun."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from collections.abc import Callable
from typing import Any

from .errors import GlnetError, InputError

__all__ = ["add_wall_parser"]

_DESCRIPTION = """\
Spread one picture of MODEL over a C x R wall of W x H displays, one process (and GPU) per tile, started
by torchrun: torchrun --nproc-per-node 4 -m glnet wall resnet18 --grid 2x2 --tile 640x360 --out wall/.
Rank r draws tile (r mod C, r div C) with an off-axis part of one camera; --bezel hides what lies behind
the displays' frames. Rank 0 owns the camera (a tour, --camera, or its window's fly controls) and
broadcasts it every frame; the ranks present in lockstep. With --out every rank writes its tiles and rank
0 stitches wall.png (wall.mp4 for a tour or --seconds) and wall.json (the frames each rank drew). Several
machines: torchrun's own --nnodes, --node-rank and --rdzv-endpoint options.
"""


def add_wall_parser(
    sub: argparse._SubParsersAction,
    add_model_args: Callable[..., None],
    prepare: Callable[[argparse.Namespace], Any],
) -> None:
    """``glnet wall``, with the model options and the model-to-trace step every command shares."""
    p = sub.add_parser(
        "wall",
        help="one picture over a wall of displays (torchrun, one process per tile)",
        description=_DESCRIPTION,
    )
    add_model_args(p, sized=False)
    p.add_argument("--grid", required=True, metavar="CxR", help="columns x rows of displays")
    p.add_argument("--tile", required=True, metavar="WxH", help="one display's size in pixels")
    p.add_argument("--bezel", metavar="X,Y", help="pixels hidden between neighbouring displays (default 0,0)")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--tour", metavar="FILE|NAME", help="play a tour (flythrough, orbit or a tour file)")
    view.add_argument(
        "--camera", metavar="NAME|JSON", help="a fixed camera, as for snapshot (default overview)"
    )
    p.add_argument(
        "--seconds", type=float, help="how long (default: the tour's; one frame for a fixed camera)"
    )
    p.add_argument("--fps", type=float, default=30.0, help="frame rate (default 30)")
    p.add_argument("--out", metavar="DIR", help="write tiles, the stitched wall.png/mp4 and wall.json here")
    p.add_argument("--fullscreen", action="store_true", help="each tile fullscreen on its monitor")
    p.add_argument(
        "--screen", type=int, metavar="N", help="the monitor to show the tile on (glnet info lists)"
    )
    p.add_argument(
        "--timeout", type=float, default=300.0, metavar="S", help="give up on a silent rank after S s (300)"
    )
    p.set_defaults(run=_cmd_wall, prepare=prepare)


def _cmd_wall(args: argparse.Namespace) -> int:
    rank = int(os.environ.get("RANK", "0") or 0)
    try:
        return _wall(args)
    except GlnetError:
        if rank != 0:
            return 2  # rank 0 says it, once
        raise


def _wall(args: argparse.Namespace) -> int:
    from .gpu.context import has_display
    from .inputs import parse_size
    from .tiles import parse_grid
    from .wall import WallSpec, parse_bezel, run_wall, torchrun_env

    spec = WallSpec(parse_grid(args.grid, "--grid"), parse_size(args.tile), parse_bezel(args.bezel))
    if (args.seconds is not None and not 0 < args.seconds <= 3600) or not 0 < args.fps <= 240:
        raise InputError("--seconds must be in (0, 3600] and --fps in (0, 240]")
    if args.max_neurons is not None and args.max_neurons < 1:
        raise InputError("--max-neurons must be a positive number")
    rank = torchrun_env()[0]
    window = None
    if args.out is None and has_display():
        window = {"fullscreen": args.fullscreen, "monitor": args.screen}
    elif args.fullscreen or args.screen is not None:
        raise InputError("--fullscreen and --screen show the tiles on a display: leave out --out")

    def prepare() -> Any:
        if rank == 0:
            return args.prepare(args)
        with contextlib.redirect_stderr(io.StringIO()):  # one rank tells the story
            return args.prepare(args)

    return run_wall(
        spec,
        prepare,
        camera=args.camera,
        tour=args.tour,
        seconds=args.seconds,
        fps=args.fps,
        out=args.out,
        renderer=args.renderer,
        lod=args.lod,
        max_neurons=args.max_neurons,
        gl_device=args.gl_device,
        window=window,
        timeout_s=args.timeout,
    )
