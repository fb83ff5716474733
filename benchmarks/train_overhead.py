"""What does watching a model train cost the training? The same run, with the view updated every step and not
at all, in alternating blocks of steps of one process, for ResNet-18 and ResNet-50.

For each model: step time without the view and with it (the probe riding along in the batch, the hooks'
copies, the hand-over to the viewer process, which draws every frame it gets concurrently), the overhead
in %, bytes copied per update and the update path used. Blocks alternate
OFF/ON so slow drift (thermal, other processes) hits both; each block starts with warm-up steps that are not
timed. Batches are made once and reused, so data loading is not measured.

    python benchmarks/train_overhead.py                                   # CPU: 64 px, batch 8, a few minutes
    python benchmarks/train_overhead.py --device cuda --image-size 224 --batch 64 --steps 30 --json r.json

The goal on a GPU is an overhead of at most 5 % with every-step updates for ResNet-50. On a CPU-only machine
with software GL the viewer process competes with training for the same cores (it shares no GIL with
the trainer any more); ``in_loop_glnet_ms`` is the trainer-side cost alone (probe + copies).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from glnet.gpu.context import configure_platform  # noqa: E402

configure_platform(headless=True)

from glnet.data import make_dataset  # noqa: E402
from glnet.live import Live  # noqa: E402
from glnet.models import load_model  # noqa: E402
from glnet.train import fit_classifier  # noqa: E402

SCHEMA_VERSION = 1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fingerprint(device: torch.device, gl_renderer: str | None) -> dict[str, Any]:
    """The machine the figures come from."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "gl_renderer": gl_renderer,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run_model(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """One model: alternating blocks without and with the live view; per-step times of each."""
    data = make_dataset("synthetic", args.image_size, seed=0)
    probe, label = make_dataset("synthetic", args.image_size, train=False, seed=0)[0]
    model = load_model(name, input_size=args.image_size, device=device, seed=0).model
    fit_classifier(model, data.num_classes, probe[None].to(device))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    batches = []
    for k in range(4):
        x, y = data.generate(range(k * args.batch, (k + 1) * args.batch))
        batches.append((x.to(device), y.to(device)))

    live = Live(
        model, probe.to(device), target=int(label), headless=True, size=args.size,
        say=lambda m: None,
    )  # fmt: skip
    live.start()
    times: dict[str, list[float]] = {"off": [], "on": []}
    block_means: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for block in range(args.blocks):
            on = block % 2 == 1
            live.paused = not on
            block_times = []
            for k in range(args.warmup + args.steps):
                x, y = batches[k % len(batches)]
                _sync(device)
                t0 = time.perf_counter()
                out = model(x)
                loss = criterion(out, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if on:
                    live.step(loss=float(loss.detach()))
                _sync(device)
                if k >= args.warmup:
                    block_times.append((time.perf_counter() - t0) * 1e3)
            key = "on" if on else "off"
            times[key] += block_times
            block_means[key].append(statistics.mean(block_times))
        stats = live.stats
        glnet_ms = statistics.median(stats.glnet_ms[1:] or stats.glnet_ms)
        path, nbytes = stats.update_path, stats.bytes_per_update
        frames, dropped = stats.frames, stats.dropped
        neurons = live.trace.neurons if live.trace else 0
        gl = stats.gl_renderer or None
    finally:
        live.close()
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    return {
        "model": name,
        "image_size": args.image_size,
        "batch": args.batch,
        "steps_per_block": args.steps,
        "blocks": args.blocks,
        "viewer": "process",
        "neurons": neurons,
        "step_ms_off": round(off, 3),
        "step_ms_on": round(on, 3),
        "step_ms_off_p90": round(_p90(times["off"]), 3),
        "step_ms_on_p90": round(_p90(times["on"]), 3),
        "block_means_off": [round(v, 3) for v in block_means["off"]],
        "block_means_on": [round(v, 3) for v in block_means["on"]],
        "overhead_pct": round(100.0 * (on - off) / off, 2),
        "in_loop_glnet_ms": round(glnet_ms, 4),
        "in_loop_overhead_pct": round(100.0 * glnet_ms / on, 3),
        "probe_share_pct": round(100.0 / args.batch, 2),
        "bytes_per_update": nbytes,
        "update_path": path,
        "frames": frames,
        "dropped": dropped,
        "gl_renderer": gl,
    }


def _p90(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet18,resnet50", help="comma-separated torchvision names")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=8, help="timed steps per block")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each block")
    p.add_argument("--blocks", type=int, default=6, help="alternating OFF/ON blocks (even)")
    p.add_argument("--size", default="640x360", help="frame size of the viewer")
    p.add_argument("--json", metavar="FILE", help="write the results here")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    args.size = (w, h)
    device = torch.device(args.device)
    results = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        t0 = time.perf_counter()
        r = run_model(name, args, device)
        results.append(r)
        print(
            f"{name:>10}  {r['image_size']}px b{r['batch']}  "
            f"off {r['step_ms_off']:9.2f} ms  on {r['step_ms_on']:9.2f} ms  "
            f"overhead {r['overhead_pct']:+6.2f} %  (in-loop glnet {r['in_loop_glnet_ms']:.3f} ms = "
            f"{r['in_loop_overhead_pct']:.2f} %)  {r['bytes_per_update'] / 2**20:.2f} MiB/update  "
            f"{r['update_path']}  frames {r['frames']}  [{time.perf_counter() - t0:.0f} s]",
            flush=True,
        )
    report = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "train_overhead",
        "machine": fingerprint(device, results[0]["gl_renderer"] if results else None),
        "results": results,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
