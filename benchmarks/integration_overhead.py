"""What does the one-line callback cost a Lightning fit and a Hugging Face Trainer run? The same small model
trained with and without ``LiveCallback``, in interleaved runs (OFF, ON, OFF, ON, ...), so drift hits both.

Each run trains ``--steps`` steps; the first ``--warmup`` are not timed. A step's time is the wall time
between two consecutive step-end hooks (a timing callback placed after glnet's), so it holds the forward,
backward, optimizer step and everything the callbacks do. The figures: median step time OFF and ON, their
ratio, the trainer-side glnet time per step (probe ride-along, hook copies, hand-over), and the viewer's
start and close time (paid once per fit, not per step). On a CPU-only machine with software GL the headless
viewer draws on the same cores as the training, which the ratio includes.

    python benchmarks/integration_overhead.py --threads 1 --json results.json

On a small shared CPU use ``--threads 1``: with torch's default threads, any other busy process (the viewer
included) makes OpenMP spin-wait and single runs jump tenfold, in both variants.
"""

# ruff: noqa: I001  (glnet first: it makes torchvision importable before lightning imports it)
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from glnet.integrations.lightning import LiveCallback as LightningLive  # noqa: E402  (first: torchvision fix)
from glnet.integrations.transformers import LiveCallback as HFLive  # noqa: E402

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

SCHEMA_VERSION = 1


def small_net() -> nn.Module:
    """Three conv blocks and a linear head: a small CNN of the kind people try first (about 30k weights)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )  # fmt: skip


def _data(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


class _Lit(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = small_net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, _i: int) -> torch.Tensor:
        x, y = batch
        out = self(x)
        self.log("train_acc", (out.argmax(1) == y).float().mean())
        return F.cross_entropy(out, y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


class _HFNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = small_net()

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        logits = self.net(pixel_values)
        return {"logits": logits, **({"loss": F.cross_entropy(logits, labels)} if labels is not None else {})}


def _live(x: torch.Tensor, y: torch.Tensor, cls: type, args: argparse.Namespace) -> Any:
    size = tuple(int(v) for v in args.size.split("x"))
    return cls(probe=x[0], target=int(y[0]), headless=True, size=size, say=lambda _m: None)


def run_lightning(on: bool, args: argparse.Namespace) -> dict[str, Any]:
    from lightning.pytorch import Callback

    x, y = _data(args.batch * args.steps, args.image_size)
    times: list[float] = []

    class Timer(Callback):
        def on_train_batch_end(self, *_a: Any) -> None:
            times.append(time.perf_counter())

    live = _live(x, y, LightningLive, args) if on else None
    trainer = L.Trainer(
        max_steps=args.steps, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[c for c in (live, Timer()) if c],
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=args.batch)
    t0 = time.perf_counter()
    trainer.fit(_Lit(), loader)
    return _figures(times, time.perf_counter() - t0, live, args)


def run_hf(on: bool, args: argparse.Namespace) -> dict[str, Any]:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    x, y = _data(args.batch * args.steps, args.image_size)
    data = [{"pixel_values": a, "labels": int(b)} for a, b in zip(x, y, strict=True)]
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_end(self, *_a: Any, **_k: Any) -> None:
            times.append(time.perf_counter())

    live = _live(x, y, HFLive, args) if on else None
    targs = TrainingArguments(
        output_dir=str(Path(args.tmp) / "hf"), max_steps=args.steps, per_device_train_batch_size=args.batch,
        logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0, learning_rate=0.05,
    )  # fmt: skip
    callbacks = [c for c in (live, Timer()) if c]
    t0 = time.perf_counter()
    Trainer(model=_HFNet(), args=targs, train_dataset=data, callbacks=callbacks).train()
    return _figures(times, time.perf_counter() - t0, live, args)


def _figures(times: list[float], wall: float, live: Any, args: argparse.Namespace) -> dict[str, Any]:
    steps = [(b - a) * 1e3 for a, b in itertools.pairwise(times)][args.warmup :]
    out: dict[str, Any] = {"step_ms": steps, "wall_s": wall}
    if live is not None and live.last is not None:
        s = live.last.stats
        out.update(glnet_ms=s.glnet_ms[args.warmup :], frames=s.frames, steps=s.steps)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--size", default="640x360", help="the headless viewer's frame size")
    p.add_argument("--repeats", type=int, default=3, help="OFF/ON pairs per framework")
    p.add_argument("--frameworks", default="lightning,hf")
    p.add_argument("--tmp", default="/tmp/glnet-integration-overhead")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    if args.threads:  # one thread: no OpenMP spin-waits when another process takes a core
        torch.set_num_threads(args.threads)
    runners = {"lightning": run_lightning, "hf": run_hf}
    load0 = list(os.getloadavg())  # other processes on the machine make the figures noisy: recorded
    report: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "settings": vars(args), "results": {}}
    for name in args.frameworks.split(","):
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for _ in range(args.repeats):
            for on in (False, True):
                runs["on" if on else "off"].append(runners[name](on, args))
        off = statistics.median(t for r in runs["off"] for t in r["step_ms"])
        on_ = statistics.median(t for r in runs["on"] for t in r["step_ms"])
        glnet = statistics.median(t for r in runs["on"] for t in r["glnet_ms"])
        res = {
            "step_ms_off_median": round(off, 3),
            "step_ms_on_median": round(on_, 3),
            "ratio_on_off": round(on_ / off, 3),
            "in_loop_glnet_ms_median": round(glnet, 3),
            "fit_wall_s_off_median": round(statistics.median(r["wall_s"] for r in runs["off"]), 2),
            "fit_wall_s_on_median": round(statistics.median(r["wall_s"] for r in runs["on"]), 2),
            "run_medians_ms_off": [round(statistics.median(r["step_ms"]), 2) for r in runs["off"]],
            "run_medians_ms_on": [round(statistics.median(r["step_ms"]), 2) for r in runs["on"]],
            "frames_per_run": [r["frames"] for r in runs["on"]],
            "timed_steps_per_variant": sum(len(r["step_ms"]) for r in runs["off"]),
        }
        report["results"][name] = res
        print(name, json.dumps(res), flush=True)
    report["machine"] = {
        "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_at_end": list(os.getloadavg()), "load_average_at_start": load0,
        "lightning": L.__version__, "transformers": __import__("transformers").__version__,
    }  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
