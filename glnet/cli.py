"""The ``glnet`` command: view, snapshot, inspect, train, bench, info.

Every user error is a :class:`glnet.errors.GlnetError` and prints as one line (``glnet: error: ...``) with
exit status 2; an interrupted command exits 130. Only bugs print a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .camera import controls_help
from .cli_info import cmd_info
from .cli_inspect import add_inspect_parser, parse_pixel, pick_json, say_pick
from .cli_record import add_record_parser, add_view_tour_args, attach_tour, record_view
from .cli_wall import add_wall_parser
from .errors import GlnetError, InputError
from .inputs import parse_size
from .render.scene import RENDERERS

__all__ = ["build_parser", "main"]

_EPILOG = """\
MODEL is a torchvision model name, timm:NAME or hf:FOLDER (random weights unless --weights is given or
the folder holds them; nothing is downloaded), a package.module:callable returning an nn.Module, or a
TorchScript file.
Examples:
  glnet view resnet50                     fly through ResNet-50 (a video when there is no display)
  glnet snapshot vgg16 --out vgg16.png --size 1920x1080 --stats-json vgg16.json
  glnet snapshot resnet18 --input cat.jpg --weights resnet18.pth --camera layer:conv1 --out conv1.png
  glnet snapshot resnet50 --camera layer:layer3.0.conv2 --pick 640,360 --out pick.png --stats-json pick.json
  glnet inspect resnet50 --neuron layer3.0.conv2:5,7,7 --json n.json --saliency s.png
  glnet record resnet50 --tour flythrough --size 3840x2160 --fps 30 --out tour4k.mp4
  glnet snapshot timm:convnext_tiny --weights convnext.safetensors --out c.png
  glnet snapshot r3d_18 --input-shape 1x3x16x112x112 --out r3d.png
"""


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _add_gl_device(p: argparse.ArgumentParser) -> None:
    what = "EGL device to render on headless (an index glnet info lists; default: --device's GPU, or cuda:0)"
    p.add_argument("--gl-device", type=int, metavar="N", help=what)


def _add_model_args(p: argparse.ArgumentParser, drawing: bool = True, sized: bool = True) -> None:
    p.add_argument(
        "model",
        metavar="MODEL",
        help="torchvision model name, timm:NAME, hf:FOLDER, package.module:callable, or TorchScript file",
    )
    p.add_argument(
        "--input",
        metavar="FILE",
        help="image file, or a tensor (.npy, .pt; batch first) to feed the model (default: a built-in test "
        "image, clip or signal)",
    )
    p.add_argument(
        "--weights",
        metavar="FILE",
        help="state dict to load: .safetensors, or .pt/.pth read with weights_only=True (never runs code)",
    )
    p.add_argument(
        "--input-size",
        type=int,
        metavar="N",
        help="side of the model's square input in pixels (default: the model's own, else 224)",
    )
    p.add_argument(
        "--input-shape",
        metavar="NxCx...",
        help="the built-in input's full shape, batch first: 1x3x224x224, 1x1x28x28 (grey), "
        "1x3x16x112x112 (video), 1x1x16000 (audio)",
    )
    p.add_argument(
        "--granularity",
        choices=("layer", "leaf"),
        default="layer",
        help="layer: every Conv/Linear/pooling output, shown after its activation (default); "
        "leaf: every leaf module",
    )
    p.add_argument(
        "--device", default="cpu", help="torch device to run the model on (cpu, cuda, cuda:1; default cpu)"
    )
    p.add_argument(
        "--labels",
        metavar="FILE",
        help="class names, one a line (default: ImageNet's for torchvision classifiers)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed for random weights and the test image (default 0)"
    )
    if not drawing:
        return
    p.add_argument(
        "--renderer",
        choices=RENDERERS,
        default="auto",
        help="instanced: GL point sprites; compute: compute-shader rasterizer; torch: rasterized by torch on "
        "the values' device, GL presents; auto: the one measured fastest here (once, cached)",
    )
    if sized:  # a wall's size is its --grid and --tile
        p.add_argument("--size", default="1280x720", metavar="WxH", help="window or image size (1280x720)")
    p.add_argument(
        "--lod",
        action="store_true",
        help="level of detail: draw far layers whose neurons are packed tighter than a quarter pixel as one "
        "disc per channel (its mean); off by default, every neuron drawn",
    )
    p.add_argument(
        "--max-neurons",
        type=int,
        metavar="N",
        help="keep at most N neurons' own values on the GPU: the largest layers are drawn as channel means "
        "(default: all, or what memory allows)",
    )
    _add_gl_device(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glnet",
        description="Fly through every neuron of a PyTorch model: activations, weights and training, "
        "drawn with OpenGL.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    v = sub.add_parser(
        "view",
        help="fly through a model in a window (or render a fly-through video without a display)",
        description=f"Open a window to fly through MODEL: {controls_help()}. "
        "With no display (or --headless) render the scripted fly-through to a video instead.",
    )
    _add_model_args(v)
    v.add_argument("--fullscreen", action="store_true", help="start fullscreen (at the monitor's own mode)")
    v.add_argument("--screen", type=int, metavar="N", help="open on monitor N (glnet info lists them)")
    v.add_argument(
        "--headless", action="store_true", help="render a fly-through video even if a display exists"
    )
    add_view_tour_args(v)  # --out, --tour, --save-tour, --seconds, --fps
    v.set_defaults(run=_cmd_view)

    s = sub.add_parser(
        "snapshot",
        help="render one image of a model headless",
        description="Render MODEL's neurons to an image offscreen (EGL), and optionally its statistics "
        "as JSON.",
    )
    _add_model_args(s)
    s.add_argument("--out", required=True, metavar="FILE.png", help="image to write (PNG or JPEG)")
    s.add_argument(
        "--camera",
        metavar="NAME|JSON",
        help='overview (default), front, side, top, back, layer:<index|name>, or JSON {"position": [x,y,z], '
        '"look_at": [x,y,z], "up": [x,y,z], "fov": deg} (inline or a .json file)',
    )
    s.add_argument(
        "--stats-json", metavar="FILE", help="write model, neuron counts, layers, renderer and frame time"
    )
    s.add_argument("--no-hud", action="store_true", help="leave the text overlay out of the image")
    s.add_argument(
        "--pick",
        metavar="X,Y",
        help="inspect the neuron drawn at pixel X,Y (from the top left): the inspector in the image, "
        "the pick in the stats",
    )
    s.add_argument(
        "--tiles",
        metavar="CxR",
        help="render C x R tiles streamed into one PNG, past the GPU's framebuffer limit (the HUD in the "
        "top-left tile): --size 30720x17280 --tiles 4x4",
    )
    s.set_defaults(run=_cmd_snapshot)

    add_inspect_parser(sub, _add_model_args, _prepare)
    add_record_parser(sub, _add_model_args, _prepare, _neuron_budget)
    add_wall_parser(sub, _add_model_args, _prepare)

    b = sub.add_parser(
        "bench",
        help="measure render throughput against VisPy Markers on the same points",
        description="Time glnet's renderers and VisPy's Markers visual on the same points, camera and size: "
        "p50/p95 frame time (glFinish), points/s, GPU bytes per point, upload GB/s and the speed-up over "
        "Markers. Writes a table to stdout, and JSON (schema_version 1) plus a log-log PNG plot with --json.",
    )
    b.add_argument(
        "--points",
        metavar="N[,N...]",
        help="synthetic cloud sizes, e.g. 1e6,1e7 or 500k,2M (default 1e6 unless --model is given)",
    )
    b.add_argument(
        "--model", metavar="NAME", help="also (or only) bench this model's real neuron cloud, e.g. resnet50"
    )
    b.add_argument("--size", default="1280x720", metavar="WxH", help="frame size (default 1280x720)")
    b.add_argument("--frames", type=int, default=20, metavar="N", help="timed frames per case (default 20)")
    b.add_argument("--warmup", type=int, default=2, metavar="N", help="warm-up frames per case (default 2)")
    b.add_argument(
        "--budget",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="stop timing a case after this long, once 3 frames are in (default 10)",
    )
    b.add_argument(
        "--renderers",
        default="auto",
        metavar="LIST",
        help="comma-separated renderer names, or auto (the default): every one that can run here, the "
        "optional pygfx-points peer (glnet[peers], a Vulkan adapter) skipped with a note when it cannot",
    )
    b.add_argument("--json", metavar="FILE", help="write the results as JSON, and the plot next to it (.png)")
    b.add_argument("--plot", metavar="FILE.png", help="write the frame-time plot here")
    b.add_argument("--images", metavar="DIR", help="save each case's last frame as a PNG in DIR")
    _add_gl_device(b)
    b.set_defaults(run=_cmd_bench)

    t = sub.add_parser(
        "train",
        help="train a model and watch its neurons change every step",
        description="Train MODEL (a classifier; its head is resized to the data's classes) with cross entropy"
        " while the cloud shows one fixed held-out probe sample every step: frame-to-frame change is "
        "learning. Window keys: 1/2/3 activations/gradients/weight change (also G and Shift+W; plain W "
        "flies). The window (or the headless recorder) is a process of its own: closing it or its crash "
        "never costs the run (--on-close). Ctrl-C ends training after the current step and writes --save.",
    )
    t.add_argument("model", metavar="MODEL", help="torchvision model name or package.module:callable")
    t.add_argument(
        "--data",
        default="synthetic",
        metavar="synthetic|PATH",
        help="synthetic coloured shapes (default), an ImageFolder tree or a CIFAR-10 folder",
    )
    t.add_argument("--device", help="cuda or cpu (default cuda when available)")
    t.add_argument("--batch", type=int, default=32, metavar="N", help="samples per step (default 32)")
    t.add_argument("--lr", type=float, help="learning rate (default 1e-3 for adamw, 0.05 for sgd)")
    t.add_argument(
        "--optimizer",
        choices=("adamw", "sgd"),
        default="adamw",
        help="AdamW (default), or SGD with momentum 0.9",
    )
    t.add_argument("--steps", type=int, default=100, metavar="N", help="training steps (default 100)")
    t.add_argument(
        "--every", type=int, default=1, metavar="K", help="update the view every K steps (default 1)"
    )
    t.add_argument("--headless", action="store_true", help="render offscreen even if a display exists")
    t.add_argument("--record", metavar="FILE.mp4", help="record a video: one frame for every updated step")
    t.add_argument("--save", metavar="CKPT", help="checkpoint at the end, on Ctrl-C and on a NaN stop")
    t.add_argument("--stats-json", metavar="FILE", help="write steps, frames, losses, update path, timings")
    t.add_argument(
        "--image-size",
        "--input-size",
        dest="image_size",
        type=int,
        metavar="N",
        help="side of the square training images (default 64 on CPU, 224 on CUDA)",
    )
    t.add_argument(
        "--keep-going",
        action="store_true",
        help="on a NaN/Inf loss show it and go on (skipping that update) instead of stopping",
    )
    t.add_argument(
        "--mode",
        choices=("activations", "gradients", "weights"),
        default="activations",
        help="what the cloud shows at first (default activations)",
    )
    t.add_argument(
        "--on-close",
        choices=("continue", "stop"),
        default="continue",
        help="when the window is closed or the viewer fails: continue training (default) or stop after "
        "the step",
    )
    t.add_argument("--weights", metavar="FILE", help="state dict to start from (e.g. an earlier --save)")
    t.add_argument(
        "--workers", type=int, metavar="N", help="data loader processes (default 0 on CPU, 4 on CUDA)"
    )
    t.add_argument("--size", default="1280x720", metavar="WxH", help="window/video size (default 1280x720)")
    t.add_argument("--fps", type=float, default=15.0, help="frame rate of the --record video (default 15)")
    t.add_argument("--camera", metavar="NAME|JSON", help="headless camera as for snapshot (default overview)")
    t.add_argument(
        "--renderer",
        choices=RENDERERS,
        default="auto",
        help="neuron renderer (default auto)",
    )
    t.add_argument("--seed", type=int, default=0, help="seed for weights, data order and probe (default 0)")
    _add_gl_device(t)
    t.set_defaults(run=_cmd_train)

    i = sub.add_parser("info", help="report the OpenGL driver, capabilities and CUDA interop status")
    i.set_defaults(run=cmd_info)
    return parser


def _prepare(args: argparse.Namespace):
    from .inputs import parse_shape
    from .pipeline import trace_model
    from .progress import module_progress

    t0 = time.perf_counter()
    shape = parse_shape(args.input_shape) if args.input_shape else None
    _say(f"glnet: building {args.model} and capturing its activations ...")
    with module_progress("glnet: capturing"):  # a bar of the layers run, when that takes over a second
        prep = trace_model(
            args.model,
            image=args.input,
            weights=args.weights,
            input_size=args.input_size,
            granularity=args.granularity,
            device=args.device,
            seed=args.seed,
            input_shape=shape,
        )
    if prep.spec.random_weights:
        _say(f"glnet: {prep.spec.name}: random weights (no --weights)")
    tr = prep.trace
    _say(f"glnet: {tr.neurons:,} neurons in {len(tr.layers)} layers ({time.perf_counter() - t0:.1f} s)")
    bad = [(r.name, int((~r.value.isfinite()).sum())) for r in tr.layers]
    bad = [(n, k) for n, k in bad if k]
    if bad:
        _say(
            f"glnet: note: {len(bad)} layer(s) hold NaN/Inf (first: {bad[0][0]}, {bad[0][1]:,} values); "
            "NaN is drawn magenta, +Inf green, -Inf dark green"
        )
    return prep


def _layers_json(trace: Any, drawn: list[int]) -> list[dict[str, Any]]:
    from .distributions import trace_stats

    return [
        {"name": r.name, "kind": r.kind, "shape": list(r.shape), "neurons": n, **st.as_dict()}
        for r, n, st in zip(trace.layers, drawn, trace_stats(trace), strict=True)
    ]


def _neuron_budget(args: argparse.Namespace, trace: Any, ctx: Any) -> int | None:
    """--max-neurons, or fewer when the values would not fit in GPU (or host) memory; says so when it cuts."""
    from .gpu.context import free_gpu_memory

    if args.max_neurons is not None and args.max_neurons < 1:
        raise InputError("--max-neurons must be a positive number")
    budget = args.max_neurons
    free = free_gpu_memory(ctx)
    if free is not None:
        fits = (
            int(free * 0.5) // 4
        )  # half the free memory for 4-byte values; the rest for frames and textures
        if trace.neurons > fits and (budget is None or budget > fits):
            _say(
                f"glnet: only ~{free >> 20} MiB free on the GPU: keeping {fits:,} of {trace.neurons:,} "
                "neurons, the largest layers as channel means"
            )
            budget = fits
    if budget is not None and trace.neurons > budget:
        _say(f"glnet: over the {budget:,}-neuron budget: the largest layers are drawn as channel means")
    return budget


def _cmd_snapshot(args: argparse.Namespace) -> int:
    from .gpu.context import configure_platform

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise InputError(f"--out must end in .png or .jpg, not {out.name!r}")
    from .tiles import check_still, parse_still_size, render_tiled, tiles_option

    size = parse_still_size(args.size)
    grid = tiles_option(args.tiles, out, args.pick)
    pick = parse_pixel(args.pick, size) if args.pick else None
    configure_platform(headless=True)
    t0 = time.perf_counter()
    from .app import render_snapshot
    from .gpu.context import GLContext

    # fail fast, before building the model, when there is no GL; on the GPU the model runs on
    with GLContext.offscreen(gl_device=args.gl_device, cuda_device=args.device) as ctx:
        check_still(size, grid, ctx.max_texture_size)
        prep = _prepare(args)
        render = render_snapshot if grid is None else render_tiled
        extra = {"pick": pick} if grid is None else {"out": out, "grid": grid}
        snap = render(
            prep.trace,
            size=size,
            camera=args.camera,
            renderer=args.renderer,
            hud=not args.no_hud,
            ctx=ctx,
            lod=args.lod,
            max_neurons=_neuron_budget(args, prep.trace, ctx),
            model=prep.spec.model,
            labels=args.labels,
            **extra,
        )
    if grid is None:
        snap.save(out)
    if args.pick:
        say_pick(snap, _say)
    wall = time.perf_counter() - t0
    w, h = size
    _say(
        f"glnet: wrote {out} ({w}x{h}, {snap.neurons_drawn:,} neurons drawn, "
        f"{snap.renderer} on {snap.gl_renderer}, frame {snap.frame_ms:.1f} ms, {wall:.1f} s in all)"
    )
    if args.stats_json:
        stats = {
            "model": prep.spec.name,
            "neurons": snap.neurons_drawn,
            "layers": _layers_json(prep.trace, snap.layer_neurons),
            "edges": [list(e) for e in prep.trace.edges],
            "width": w,
            "height": h,
            "renderer": snap.renderer,
            "renderer_why": snap.renderer_why,
            "gl_renderer": snap.gl_renderer,
            "frame_ms": round(snap.frame_ms, 3),
            "frame_ms_samples": [round(t, 3) for t in snap.frame_times],
            "wall_s": round(wall, 3),
            "granularity": args.granularity,
            "input": args.input or "builtin:test_image",
            "input_shape": list(prep.input.shape),
            "camera": args.camera or "overview",
        }
        if grid is not None:
            stats["tiles"] = f"{grid[0]}x{grid[1]}"
        if snap.predictions:
            stats["predictions"] = [p.as_dict() for p in snap.predictions]
        if args.pick:
            stats["pick"] = pick_json(snap)
            stats["pick_ms"] = round(snap.pick_ms or 0.0, 3)
            stats["inspect_ms"] = round(snap.inspect_ms or 0.0, 3)
        p = Path(args.stats_json)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return 0


def _cmd_view(args: argparse.Namespace) -> int:
    from .gpu.context import configure_platform, has_display

    size = parse_size(args.size)
    if not ((args.seconds is None or 0 < args.seconds <= 3600) and 0 < args.fps <= 240):
        raise InputError("--seconds must be in (0, 3600] and --fps in (0, 240]")
    headless = args.headless or not has_display()
    if args.screen is not None and headless:
        raise InputError(f"--screen {args.screen} picks a monitor: there is none without a display")
    if args.gl_device is not None and not headless:
        raise InputError(
            "--gl-device picks the GPU for headless rendering: add --headless (a window is drawn by its "
            "display's GPU)"
        )
    configure_platform(headless=headless)
    if headless:  # the same frame-exact path as glnet record
        return record_view(args, _prepare, _neuron_budget)
    from .window import Viewer

    prep = _prepare(args)
    viewer = Viewer(
        prep.trace,
        lod=args.lod,
        max_neurons=args.max_neurons,
        size=size,
        fullscreen=args.fullscreen,
        monitor=args.screen,
        renderer=args.renderer,
        title=f"glnet - {prep.spec.name}",
        model=prep.spec.model,
        labels=args.labels,
    )
    _say(f"glnet: flying through {prep.spec.name} ({viewer.vis.renderer}); Esc quits")
    tours = attach_tour(viewer, args.tour, args.save_tour, _say)
    try:
        viewer.run()
    finally:  # on Ctrl-C too: the keyframes added with K are written
        tours.finish()
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import parse_points, parse_renderers

    points = parse_points(args.points) if args.points is not None else None
    renderers = None if args.renderers.strip() == "auto" else parse_renderers(args.renderers)
    size = parse_size(args.size)
    if args.frames < 1 or args.warmup < 0 or not args.budget > 0:
        raise InputError("--frames must be at least 1, --warmup at least 0 and --budget positive")
    plot = Path(args.plot) if args.plot else (Path(args.json).with_suffix(".png") if args.json else None)
    if plot is not None and plot.suffix.lower() != ".png":
        raise InputError(f"--plot must end in .png, not {plot.name!r}")
    from .gpu.context import configure_platform

    configure_platform(headless=True)
    from .bench import run_bench
    from .gpu.context import GLContext

    with GLContext.offscreen(gl_device=args.gl_device) as ctx:
        result = run_bench(
            points,
            args.model,
            size,
            args.frames,
            renderers,
            args.warmup,
            budget_s=args.budget,
            images=args.images,
            ctx=ctx,
            progress=lambda msg: _say(f"glnet: bench {msg}"),
        )
    print(result.table(), flush=True)
    for case, ratio in result.ratios():
        print(f"{case.renderer} is {ratio:.1f}x VisPy Markers at {case.points:,} points ({case.workload})")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(result.to_json(), encoding="utf-8")
        _say(f"glnet: wrote {out}")
    if plot is not None:
        _say(f"glnet: wrote {result.plot(plot)}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train

    cfg = TrainConfig(
        model=args.model,
        data=args.data,
        device=args.device,
        batch=args.batch,
        lr=args.lr,
        optimizer=args.optimizer,
        steps=args.steps,
        every=args.every,
        headless=args.headless,
        record=args.record,
        save=args.save,
        stats_json=args.stats_json,
        image_size=args.image_size,
        keep_going=args.keep_going,
        weights=args.weights,
        seed=args.seed,
        size=parse_size(args.size),
        renderer=args.renderer,
        mode=args.mode,
        fps=args.fps,
        camera=args.camera,
        workers=args.workers,
        on_close=args.on_close,
        gl_device=args.gl_device,
    )
    result = train(cfg, say=_say)
    losses = [v for v in result["loss"] if isinstance(v, float)]
    _say(
        f"glnet: {result['stopped']} after {result['steps']} steps, {result['frames']} frames "
        f"({result['update_path']}); loss {losses[0]:.3f} -> {losses[-1]:.3f}"
        if losses
        else f"glnet: {result['stopped']} after {result['steps']} steps"
    )
    if result["stopped"] not in ("completed", "window closed"):
        return 130 if result["stopped"] == "interrupted" else 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the glnet command line; returns the exit status."""
    from ._torchvision import prepare_torchvision

    prepare_torchvision()  # before any module of the user's (or timm) can import a mismatched torchvision
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except GlnetError as e:
        print(f"glnet: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("glnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
