"""``glnet record``: a tour rendered offline, frame-exact, to an .mp4 (H.264, HEVC or AV1) or numbered
PNGs; and the tour keys of ``glnet view`` (``--tour`` plays one in the window, ``K`` + ``--save-tour``
authors one)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = [
    "TourControls",
    "add_record_parser",
    "add_view_tour_args",
    "attach_tour",
    "record_view",
    "say_recording",
]


def add_record_parser(
    sub: argparse._SubParsersAction,
    add_model_args: Callable[..., None],
    prepare: Callable[[argparse.Namespace], Any],
    budget: Callable[[argparse.Namespace, Any, Any], int | None],
) -> None:
    """``glnet record``, with the model options, the model-to-trace step every command shares, and the
    neuron budget (``--max-neurons``, cut to what fits in GPU memory) of (args, trace, context)."""
    p = sub.add_parser(
        "record",
        help="render a tour offline to a video (H.264, or HEVC/AV1 above 4096x2304) or numbered PNGs",
        description="Render MODEL along a tour headless, frame-exact: frame n shows the tour at t = n / fps "
        "whatever the render speed, so exactly round(seconds x fps) frames. Rendering, read-back (pixel-"
        "buffer objects) and encoding (its own thread) overlap.",
    )
    add_model_args(p)
    p.add_argument(
        "--tour",
        required=True,
        metavar="FILE|NAME",
        help='flythrough or orbit (built in), or a tour JSON file {"keyframes": [{"t": s, "position": '
        '[x,y,z], "look_at": [x,y,z], "up"?: [x,y,z], "fov"?: deg}, ...]} (view --save-tour writes one)',
    )
    p.add_argument("--fps", type=float, default=30.0, help="frames per second (default 30)")
    p.add_argument(
        "--seconds",
        type=float,
        metavar="S",
        help="video length (default: the tour's; sets a built-in tour's length: flythrough 6, orbit 12)",
    )
    p.add_argument(
        "--crf", type=int, metavar="Q", help="constant-rate factor, lower is better (default per codec)"
    )
    p.add_argument(
        "--codec",
        choices=("h264", "hevc", "av1"),
        help="force a codec (default: H.264 up to 4096x2304, AV1 or HEVC above)",
    )
    p.add_argument(
        "--out", required=True, metavar="FILE.mp4|DIR", help="the video, or a folder for frame_000000.png ..."
    )
    p.add_argument("--hud", action="store_true", help="draw the layer text (never timings) into the frames")
    p.add_argument("--stats-json", metavar="FILE", help="write frames, codec, sizes and rates as JSON")
    p.set_defaults(run=_cmd_record, prepare=prepare, budget=budget)


def add_view_tour_args(v: argparse.ArgumentParser) -> None:
    """``glnet view``'s tour options: play or record a tour, author one with K."""
    v.add_argument(
        "--out",
        metavar="VIDEO",
        help="headless output: .mp4, .gif or a folder for PNGs (default glnet-MODEL.mp4)",
    )
    v.add_argument(
        "--tour",
        metavar="FILE|NAME",
        help="play a tour (flythrough, orbit or a tour JSON file) in the window (looping), or record it "
        "headless (default there: flythrough)",
    )
    v.add_argument(
        "--save-tour",
        metavar="FILE.json",
        help="write the keyframes added with K (2 s apart) as a tour file on exit",
    )
    v.add_argument("--seconds", type=float, help="headless video length (default: the tour's, 6 s)")
    v.add_argument("--fps", type=float, default=30.0, help="headless video frame rate (default 30)")


def record_view(
    args: argparse.Namespace,
    prepare: Callable[[argparse.Namespace], Any],
    budget: Callable[[argparse.Namespace, Any, Any], int | None],
) -> int:
    """``glnet view`` without a display: record its tour (default flythrough) as ``glnet record`` does."""
    from .gpu.context import GLContext
    from .inputs import parse_size
    from .offline import render_tour

    with GLContext.offscreen(gl_device=args.gl_device, cuda_device=args.device) as ctx:  # fail fast
        prep = prepare(args)
        out = args.out or f"glnet-{Path(prep.spec.name).name}.mp4"
        why = "--headless" if args.headless else "no display"
        _say(f"glnet: {why}: recording the {args.tour or 'flythrough'} tour to {out}")
        rec = render_tour(
            prep.trace,
            out,
            tour=args.tour or "flythrough",
            size=parse_size(args.size),
            seconds=args.seconds,
            fps=args.fps,
            renderer=args.renderer,
            ctx=ctx,
            lod=args.lod,
            max_neurons=budget(args, prep.trace, ctx),
        )
    say_recording(rec, _say)
    return 0


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def say_recording(rec: Any, say: Callable[[str], None]) -> None:
    """The one line that names what was written: codec, frames, size, and the render and encode rates."""
    codec = rec.codec if rec.encoder is None else f"{rec.codec} ({rec.encoder})"
    size = f"{rec.width}x{rec.height}"
    if rec.encoded_size and tuple(rec.encoded_size) != (rec.width, rec.height):
        size += f", padded to {rec.encoded_size[0]}x{rec.encoded_size[1]} (even sides)"
    encode = f", encode {rec.encode_fps:.2f} frames/s" if rec.encode_fps else ""
    say(
        f"glnet: wrote {rec.path}: {codec}, {rec.frames} frames, {size} at {rec.fps:g} fps "
        f"({rec.seconds:g} s of {rec.tour}); render {rec.render_fps:.2f} frames/s{encode}, "
        f"{rec.wall_s:.1f} s in all ({rec.renderer} on {rec.gl_renderer})"
    )


def _cmd_record(args: argparse.Namespace) -> int:
    from .gpu.context import configure_platform
    from .inputs import parse_size

    size = parse_size(args.size)
    if not 0 < args.fps <= 1000:
        raise InputError(f"--fps must be in (0, 1000], not {args.fps:g}")
    if args.seconds is not None and not 0 < args.seconds <= 24 * 3600:
        raise InputError(f"--seconds must be positive (at most a day), not {args.seconds:g}")
    out = Path(args.out)
    if out.suffix and out.suffix.lower() not in (".mp4", ".gif"):
        raise InputError(f"--out must be an .mp4 (or .gif) file or a folder, not {out.name!r}")
    if args.codec and out.suffix.lower() != ".mp4":
        raise InputError("--codec applies to .mp4 output only")
    from .tour import BUILTIN_TOURS

    if args.tour not in BUILTIN_TOURS and not Path(args.tour).is_file():
        names = ", ".join(BUILTIN_TOURS)
        raise InputError(f"--tour {args.tour!r} is neither a built-in tour ({names}) nor a file")
    configure_platform(headless=True)
    from .gpu.context import GLContext
    from .offline import render_tour

    with GLContext.offscreen(gl_device=args.gl_device, cuda_device=args.device) as ctx:  # fail fast
        prep = args.prepare(args)
        _say(f"glnet: recording {args.tour} at {size[0]}x{size[1]}, {args.fps:g} fps to {out}")
        rec = render_tour(
            prep.trace,
            args.out,
            tour=args.tour,
            size=size,
            seconds=args.seconds,
            fps=args.fps,
            renderer=args.renderer,
            lod=args.lod,
            max_neurons=args.budget(args, prep.trace, ctx),
            codec=args.codec,
            crf=args.crf,
            hud=args.hud,
            ctx=ctx,
        )
    say_recording(rec, _say)
    if args.stats_json:
        data = {"model": prep.spec.name, **rec.as_dict()}
        p = Path(args.stats_json)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        _say(f"glnet: wrote {p}")
    return 0


class TourControls:
    """The window's tour keys: plays a tour (looping) by moving the viewer's camera on every tick, and
    ``K`` adds the current camera as a keyframe, 2 s after the previous one (the first at t = 0), so a
    saved tour replays at an even pace whatever the pauses between presses. :meth:`finish` writes them."""

    def __init__(
        self, viewer: Any, tour: Any = None, save: str | Path | None = None, say: Any = _say
    ) -> None:
        from .tour import KeyframeRecorder

        self.viewer = viewer
        self.tour = tour
        self.save_path = Path(save) if save else None
        self.say = say
        self.recorder = KeyframeRecorder(lambda: viewer.camera)
        self.clock = 0.0
        self.saved: Path | None = None
        self._finished = False

    def on_key(self, name: str, pressed: bool, modifiers: frozenset[str]) -> bool:
        if name != "k" or modifiers:
            return False
        if pressed:
            key = self.recorder.add()
            where = f" (--save-tour {self.save_path} writes them on exit)" if self.save_path else ""
            self.say(f"glnet: keyframe {len(self.recorder.keyframes)} at t={key.t:g} s{where}")
        return True

    def on_tick(self, dt: float) -> None:
        if self.tour is None or self.tour.duration <= 0:
            return
        self.clock = (self.clock + dt) % self.tour.duration
        cam = self.tour.at(self.clock)
        target = self.viewer.camera
        target.position, target.rotation, target.fov = cam.position, cam.rotation, cam.fov
        self.viewer.request_draw()

    def finish(self) -> Path | None:
        """Write the keyframes to ``--save-tour`` (once; on close, Ctrl-C or exit)."""
        if self._finished or self.save_path is None:
            return self.saved
        self._finished = True
        n = len(self.recorder.keyframes)
        if n < 2:
            self.say(f"glnet: {n} keyframe(s) added (K): a tour needs 2, nothing written to {self.save_path}")
            return None
        self.saved = self.recorder.save(self.save_path)
        self.say(f"glnet: wrote {self.saved} ({n} keyframes, {self.recorder.keyframes[-1].t:g} s)")
        return self.saved


def attach_tour(viewer: Any, tour: str | None, save: str | None, say: Any = _say) -> TourControls:
    """Wire ``--tour`` and ``--save-tour`` into a :class:`glnet.window.Viewer` through its public hooks."""
    from .tour import load_tour

    if save and Path(save).suffix.lower() != ".json":
        raise InputError(f"--save-tour must end in .json, not {Path(save).name!r}")
    aspect = viewer.screen.width / max(1, viewer.screen.height)
    played = load_tour(tour, viewer.vis.layout, aspect) if tour else None
    controls = TourControls(viewer, played, save, say)
    viewer.add_key_handler(controls.on_key)
    if played is not None:
        viewer.add_tick_handler(controls.on_tick)
    viewer.add_close_handler(controls.finish)
    return controls
