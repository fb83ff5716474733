"""Display-wall frame rate and tiled-still time on this machine.

Runs ``torchrun --standalone --nproc-per-node 4 -m glnet wall`` (2x2 walls, a fixed camera held for
``--seconds``, so every frame draws the same work) and ``glnet snapshot --tiles`` for one big still, and
writes their figures (from wall.json and --stats-json) as JSON. Usage:

    python benchmarks/wall_rate.py [--out benchmarks/results/wall_llvmpipe.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCHEMA_VERSION = 1
WALLS = [("resnet18", "320x180"), ("resnet18", "640x360")]
STILL = ("resnet50", "15360x8640", "2x2")


def _run(cmd: list[str], timeout: float) -> float:
    env = {**os.environ, "GLNET_CALIBRATE": os.environ.get("GLNET_CALIBRATE", "0"), "GLNET_PROGRESS": "plain"}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/wall_llvmpipe.json")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true", help="walls only, no big still")
    args = ap.parse_args()
    results: dict = {
        "schema_version": SCHEMA_VERSION,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
        "walls": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for model, tile in WALLS:
            out = Path(tmp) / f"wall-{tile}"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4"]
            cmd += ["-m", "glnet", "wall", model, "--grid", "2x2", "--tile", tile, "--out", str(out)]
            cmd += ["--seconds", str(args.seconds), "--fps", str(args.fps)]
            wall_s = _run(cmd, 900)
            info = json.loads((out / "wall.json").read_text())
            ms = sorted(t for rank in info["ranks"] for t in rank["render_ms"])
            results["walls"].append(
                {
                    "model": model,
                    "grid": info["grid"],
                    "tile": info["tile"],
                    "size": info["size"],
                    "backend": info["backend"],
                    "frames": info["frames"],
                    "wall_fps": info["wall_fps"],
                    "tile_render_ms_p50": ms[len(ms) // 2],
                    "gl_renderer": info["ranks"][0]["gl_renderer"],
                    "process_wall_s": round(wall_s, 1),
                }
            )
            print(results["walls"][-1], flush=True)
        if not args.quick:
            model, size, tiles = STILL
            png, stats = Path(tmp) / "big.png", Path(tmp) / "big.json"
            cmd = [sys.executable, "-m", "glnet", "snapshot", model, "--size", size, "--tiles", tiles]
            wall_s = _run([*cmd, "--out", str(png), "--stats-json", str(stats)], 1800)
            s = json.loads(stats.read_text())
            results["tiled_still"] = {
                "model": model, "size": size, "tiles": tiles, "frame_ms": s["frame_ms"],
                "tile_ms": s["frame_ms_samples"], "png_bytes": png.stat().st_size,
                "process_wall_s": round(wall_s, 1),
                "renderer": s["renderer"], "gl_renderer": s["gl_renderer"],
            }  # fmt: skip
            print(results["tiled_still"], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
