"""The scripted sweep behind the README's performance table: synthetic clouds of growing size plus ResNet-50.

Runs :func:`glnet.bench.run_bench` once over every workload (all renderers see the same points, camera and
frame size) and writes three files named after the machine (``--tag``, default from the GPU or GL renderer):

* ``<out>/<tag>.json``: the results and the machine, ``schema_version`` 1 (:data:`glnet.bench.BENCH_SCHEMA`);
* ``<out>/<tag>.md``: the markdown table for the README;
* ``<out>/<tag>.png``: frame time against point count, log-log, one line per renderer.

Usage (from a checkout; see benchmarks/README.md)::

    python benchmarks/sweep.py                                   # 1e5 .. 1e7 points + resnet50, 1280x720
    python benchmarks/sweep.py --points 1e6,1e7,1e8 --markers-max-points 1e7 --out /tmp/sweep
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing glnet
    sys.path.insert(0, str(ROOT))

DEFAULT_POINTS = "1e5,3e5,1e6,3e6,1e7"
DEFAULT_MODEL = "resnet50"
DEFAULT_MARKERS_MAX = "1e7"  # VisPy Markers above this is minutes per case and gigabytes of host memory


def machine_tag(machine: dict[str, object]) -> str:
    """A file-name tag for the machine: its GPU (``nvidia-h100-80gb-hbm3``) or its software rasterizer."""
    name = str(machine.get("gpu") or machine.get("gl_renderer") or "unknown")
    name = name.split("(")[0] if not machine.get("gpu") else name
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmarks/sweep.py",
        description="Benchmark glnet's renderers against VisPy Markers over a sweep of point counts and a "
        "real model; write JSON, a markdown table and a log-log plot.",
    )
    p.add_argument("--points", default=DEFAULT_POINTS, help=f"cloud sizes or 'none' ({DEFAULT_POINTS})")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"a model, or 'none' (default {DEFAULT_MODEL})")
    p.add_argument("--size", default="1280x720", help="frame size (default 1280x720)")
    p.add_argument("--frames", type=int, default=20, help="timed frames per case (default 20)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up frames per case (default 2)")
    p.add_argument("--budget", type=float, default=10.0, help="seconds of timed frames per case (default 10)")
    p.add_argument("--renderers", default="instanced,compute,vispy-markers", help="renderers to run")
    p.add_argument(
        "--markers-max-points",
        default=DEFAULT_MARKERS_MAX,
        help=f"skip VisPy Markers above this many points, or 'none' (default {DEFAULT_MARKERS_MAX})",
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="output folder")
    p.add_argument("--tag", help="output file name (default: derived from the GPU / GL renderer)")
    p.add_argument("--images", help="also save each case's last frame as a PNG in this folder")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep; returns the exit status (2 with one line for bad input or no GL)."""
    args = build_parser().parse_args(argv)
    from glnet.gpu.context import configure_platform

    configure_platform(headless=True)
    from glnet.bench import parse_points, parse_renderers, run_bench
    from glnet.errors import GlnetError
    from glnet.inputs import parse_size

    def say(msg: str) -> None:
        print(f"sweep: {msg}", file=sys.stderr, flush=True)

    try:
        points = parse_points(args.points) if args.points.strip().lower() != "none" else None
        model = None if args.model.strip().lower() == "none" else args.model
        limit = args.markers_max_points.strip().lower()
        markers_max = None if limit == "none" else parse_points(limit)[0]
        result = run_bench(
            points,
            model,
            parse_size(args.size),
            args.frames,
            parse_renderers(args.renderers),
            args.warmup,
            budget_s=args.budget,
            markers_max_points=markers_max,
            images=args.images,
            progress=say,
        )
    except GlnetError as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.tag or machine_tag(result.machine)
    (out / f"{tag}.json").write_text(result.to_json(), encoding="utf-8")
    (out / f"{tag}.md").write_text(result.markdown(), encoding="utf-8")
    result.plot(out / f"{tag}.png")
    print(result.table())
    say(f"wrote {out / tag}.json, .md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
