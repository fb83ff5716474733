"""What does explaining a neuron cost? A GPU pick against a frame of the same scene, and an inspection with
and without its saliency map, measured in one run.

For each model: median frame time (GPU-synchronised) and median pick time (the pick pass and its 12-byte
readback) over the same camera, at pixels spread over the frame, their ratio, and the inspection's cost
(layer statistics, histogram, receptive field, top-5) alone and with the saliency map's forward-to-the-layer
and backward pass.

    python benchmarks/explain_cost.py                        # ResNet-50 at 1280x720, a minute on 2 cores
    python benchmarks/explain_cost.py --models resnet18,resnet50 --json benchmarks/results/explain_cost.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from glnet.gpu.context import configure_platform  # noqa: E402

configure_platform(headless=True)

from glnet.app import Visualization  # noqa: E402
from glnet.bench.machine import machine_info  # noqa: E402
from glnet.camera import camera_from_spec  # noqa: E402
from glnet.gpu.context import GLContext  # noqa: E402
from glnet.gpu.framebuffer import Framebuffer  # noqa: E402
from glnet.pipeline import trace_model  # noqa: E402


def _ms(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1e3, out


def measure(
    ctx: GLContext, model: str, camera: str, size: tuple[int, int], repeats: int, renderer: str = "auto"
) -> dict[str, Any]:
    prep = trace_model(model)
    w, h = size
    vis = Visualization(ctx, prep.trace, model=prep.spec.model, renderer=renderer)
    fb = Framebuffer(ctx, w, h)
    try:
        cam = camera_from_spec(camera, vis.layout, w / h)
        vis.render(cam, fb, hud=False, finish=True)  # uploads
        pixels = [(w * (1 + k % 5) // 6, h * (1 + k // 5 % 3) // 4) for k in range(repeats)]
        frames, picks, plain, full = [], [], [], []
        picked = 0
        for x, y in pixels:  # interleaved: drift hits both
            frames.append(_ms(lambda: vis.render(cam, fb, hud=False, finish=True))[0])
            t, p = _ms(lambda x=x, y=y: vis.pick(cam, w, h, x, y))
            picks.append(t)
            if p is not None:
                picked += 1
                plain.append(_ms(lambda p=p: vis.inspect(p, saliency=False))[0])
                full.append(_ms(lambda p=p: vis.inspect(p, saliency=True))[0])
        frame_ms, pick_ms = statistics.median(frames), statistics.median(picks)
        return {
            "model": model,
            "neurons": prep.trace.neurons,
            "camera": camera,
            "size": [w, h],
            "renderer": vis.renderer,
            "frame_ms": round(frame_ms, 2),
            "pick_ms": round(pick_ms, 2),
            "pick_over_frame": round(pick_ms / frame_ms, 3),
            "picks": len(picks),
            "picks_hit": picked,
            "inspect_ms": round(statistics.median(plain), 1) if plain else None,
            "inspect_with_saliency_ms": round(statistics.median(full), 1) if full else None,
            "readback_bytes": 12,
        }
    finally:
        fb.delete()
        vis.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet50")
    ap.add_argument("--camera", default="layer:layer3.0.conv2")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--renderers", default="auto", help="comma-separated: auto, compute, instanced")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    with GLContext.offscreen() as ctx:
        rows = []
        for m, renderer in [(m, r) for m in args.models.split(",") for r in args.renderers.split(",")]:
            r = measure(ctx, m, args.camera, size, args.repeats, renderer)
            print(
                f"{m}: frame {r['frame_ms']} ms, pick {r['pick_ms']} ms ({r['pick_over_frame']}x a frame), "
                f"inspect {r['inspect_ms']} ms, with saliency {r['inspect_with_saliency_ms']} ms "
                f"[{r['renderer']}, {r['picks_hit']}/{r['picks']} picks hit]",
                flush=True,
            )
            rows.append(r)
        out = {"machine": machine_info(ctx.info), "results": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
