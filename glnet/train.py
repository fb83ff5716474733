"""``glnet train``: train a classifier on a data set while its cloud is drawn live by a viewer process.

The loop runs on the calling (main) thread; the window or the headless recorder is a process of its own
(:mod:`glnet.live`), so a closed window, a crashed driver or a slow frame never costs the run. Ctrl-C ends
training after the current step; the checkpoint is written at the end, on interrupt, and when training stops
on a non-finite loss (the weights from before that step).
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .capture import first_tensor
from .errors import InputError, ModelError, NonFiniteError, OutOfMemoryError
from .live import MODES, Live
from .live.session import say_stderr
from .pipeline import check_device
from .progress import progress

__all__ = ["TrainConfig", "find_nonfinite", "fit_classifier", "save_checkpoint", "train"]


@dataclass
class TrainConfig:
    """Options of ``glnet train`` (see ``glnet train --help``)."""

    model: str | nn.Module
    data: str = "synthetic"
    device: str | None = None  # cuda when available
    batch: int = 32
    lr: float | None = None  # 1e-3 for AdamW, 0.05 for SGD
    optimizer: str = "adamw"
    steps: int = 100
    every: int = 1
    headless: bool = False
    record: str | None = None
    save: str | None = None
    stats_json: str | None = None
    image_size: int | None = None  # 64 on CPU, 224 on CUDA
    keep_going: bool = False
    weights: str | None = None
    seed: int = 0
    size: tuple[int, int] = (1280, 720)
    renderer: str = "auto"
    mode: str = "activations"
    fps: float = 15.0
    camera: str | None = None
    workers: int | None = None
    queue_mb: float = 256.0
    update_path: str = "auto"
    model_name: str = ""
    on_close: str = "continue"  # the window closed or the viewer failed: "continue" training, or "stop"
    gl_device: int | None = None  # the EGL device a headless viewer renders on (default: the model's GPU)
    on_step: Callable[[int, Live], None] | None = None  # called after each step (tests, scripts)


def fit_classifier(model: nn.Module, num_classes: int, example: torch.Tensor) -> str | None:
    """Make ``model`` predict ``num_classes`` classes: replace the last Linear (or 1x1 conv) layer that
    produces its output width with a fresh one. Returns the replaced module's name (None if it fits)."""
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = first_tensor(model(example))
    finally:
        model.train(was_training)
    if out is None or out.dim() < 2:
        raise ModelError("the model's output is not a batch of class scores; glnet train needs a classifier")
    width = int(out.shape[1])
    if width == num_classes:
        return None
    found: tuple[str, nn.Module] | None = None
    for name, m in model.named_modules():
        if (isinstance(m, nn.Linear) and m.out_features == width) or (
            isinstance(m, nn.Conv2d) and m.out_channels == width and m.kernel_size == (1, 1)
        ):
            found = (name, m)
    if found is None:
        raise ModelError(
            f"the model predicts {width} classes and glnet cannot find its classifier layer to give it "
            f"{num_classes}; build it with num_classes={num_classes}"
        )
    name, old = found
    ref = old.weight
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    else:
        new = nn.Conv2d(old.in_channels, num_classes, 1, bias=old.bias is not None)  # type: ignore[attr-defined]
    new = new.to(device=ref.device, dtype=ref.dtype)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)
    return name


def find_nonfinite(model: nn.Module, x: torch.Tensor) -> str | None:
    """The first module, in call order, whose output for batch ``x`` holds NaN/Inf (None if none does).

    Runs one extra forward without gradients in the model's current mode; BatchNorm statistics are restored.
    Used only after a non-finite loss, so its host syncs do not matter.
    """
    if not bool(torch.isfinite(x).all()):
        return "the input batch"
    saved = {k: v.detach().clone() for k, v in model.named_buffers()}
    first: list[str] = []
    handles = []

    def hook(name: str) -> Callable[..., None]:
        def on_forward(_m: nn.Module, _a: Any, out: Any) -> None:
            t = first_tensor(out)
            if not first and t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                first.append(name)

        return on_forward

    try:
        for name, m in model.named_modules():
            if name and not any(True for _ in m.children()):
                handles.append(m.register_forward_hook(hook(name)))
        with torch.no_grad():
            model(x)
    except Exception:
        pass  # the diagnosis is best effort; the loss itself already says training failed
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for k, v in model.named_buffers():
                if k in saved:
                    v.copy_(saved[k])
    if first:
        return first[0]
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            return f"{name} (a parameter)"
    return None


def save_checkpoint(
    path: str | os.PathLike[str], model: nn.Module, optimizer: torch.optim.Optimizer | None, **meta: Any
) -> Path:
    """Write model (and optimizer) state and ``meta`` atomically; loads with ``torch.load(weights_only=True)``
    and :func:`glnet.models.load_weights`."""
    p = Path(path)
    if p.parent != Path(""):
        p.parent.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **meta}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    tmp = p.with_name(p.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, p)
    return p


def _batches(loader_factory: Callable[[int], Any]) -> Iterator[Any]:
    epoch = 0
    while True:
        got = False
        for batch in loader_factory(epoch):
            got = True
            yield batch
        if not got:
            raise InputError("the training data yielded no batch (is the data set smaller than --batch?)")
        epoch += 1


@dataclass
@dataclass
class _TrainState:
    step: int = 0
    stopped: str = "completed"
    interrupts: int = 0


class _CtrlC:
    """While training on the main thread, the first Ctrl-C asks the loop to stop after the current step (so
    the checkpoint holds whole steps); a second one interrupts at once."""

    def __init__(self, state: _TrainState, say: Callable[[str], None]) -> None:
        self.state, self.say = state, say
        self._old: Any = None

    def _handler(self, _signum: int, _frame: Any) -> None:
        self.state.interrupts += 1
        if self.state.interrupts > 1:
            raise KeyboardInterrupt
        self.say("glnet: interrupted: finishing the current step, then writing the checkpoint")

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def train(cfg: TrainConfig, *, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data`` with the cloud drawn live; returns the ``--stats-json`` figures.

    Training runs on this thread; the window (or the headless frames and video) in a viewer process.
    Ctrl-C or closing the window ends training after the current step; the checkpoint (``cfg.save``) is
    written at the end, on interrupt and when training stops on a non-finite loss (the weights from before
    that step). Raises :class:`NonFiniteError` or :class:`OutOfMemoryError` after writing it.
    """
    from .data import make_dataset, make_loader
    from .gpu.context import has_display

    say = say or say_stderr
    t_start = time.perf_counter()
    for name, value in (("--steps", cfg.steps), ("--batch", cfg.batch), ("--every", cfg.every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, not {value!r}")
    if cfg.optimizer not in ("adamw", "sgd"):
        raise InputError(f"--optimizer must be adamw or sgd, not {cfg.optimizer!r}")
    lr = cfg.lr if cfg.lr is not None else (1e-3 if cfg.optimizer == "adamw" else 0.05)
    if not (lr > 0 and math.isfinite(lr)):
        raise InputError(f"--lr must be a positive number, not {lr!r}")
    if cfg.mode not in MODES:
        raise InputError(f"--mode must be one of {', '.join(MODES)}")
    device_name = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    device = check_device(device_name)
    image_size = cfg.image_size or (224 if device.type == "cuda" else 64)
    if not 16 <= image_size <= 1024:
        raise InputError(f"--image-size must be between 16 and 1024 pixels, not {image_size}")
    headless = cfg.headless or not has_display()

    torch.manual_seed(cfg.seed)
    data = make_dataset(cfg.data, image_size, train=True, seed=cfg.seed)
    probe_set = make_dataset(cfg.data, image_size, train=False, seed=cfg.seed)
    probe, probe_label = probe_set[0]
    num_classes = int(data.num_classes)
    if isinstance(cfg.model, nn.Module):
        model, name = cfg.model.to(device), cfg.model_name or type(cfg.model).__name__
    else:
        from .models import load_model

        spec = load_model(cfg.model, input_size=image_size, device=device, seed=cfg.seed)
        if spec.family not in ("classification", "custom"):
            raise ModelError(f"glnet train trains image classifiers; {spec.name} is a {spec.family} model")
        model, name = spec.model, spec.name
    if isinstance(model, torch.jit.ScriptModule):
        raise ModelError("glnet train needs an nn.Module; TorchScript models take no hooks")
    replaced = fit_classifier(model, num_classes, probe[None].to(device))
    if replaced:
        say(f"glnet: {name}: new classifier {replaced!r} for the {num_classes} classes of {cfg.data}")
    if cfg.weights:
        from .models import load_weights

        load_weights(model, cfg.weights, name)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    workers = (
        cfg.workers
        if cfg.workers is not None
        else (min(4, os.cpu_count() or 1) if device.type == "cuda" else 0)
    )
    batches = _batches(
        lambda epoch: make_loader(data, cfg.batch, shuffle=True, seed=cfg.seed + epoch, num_workers=workers)
    )

    viz = Live(
        model,
        probe,
        target=int(probe_label),
        every=cfg.every,
        mode=cfg.mode,
        headless=headless,
        record=cfg.record,
        size=cfg.size,
        fps=cfg.fps,
        renderer=cfg.renderer,
        camera=cfg.camera,
        keep_going=cfg.keep_going,
        queue_mb=cfg.queue_mb,
        update_path=cfg.update_path,
        title=name,
        total_steps=cfg.steps,
        on_close=cfg.on_close,
        gl_device=cfg.gl_device,
        say=say,
        labels=getattr(data, "classes", None),
    )
    state = _TrainState()
    criterion = nn.CrossEntropyLoss()
    bar = progress(cfg.steps, "glnet: training", enabled=False)  # replaced once the viewer is up
    error: BaseException | None = None
    checkpoint = None
    trained = False  # the loop is over: a Ctrl-C now only closes the held window
    try:
        with _CtrlC(state, say):
            viz.start()
            say(
                f"glnet: training {name} on {device} ({cfg.data}, {num_classes} classes, {image_size}px, "
                f"batch {cfg.batch}, {cfg.optimizer} lr {lr:g}) for {cfg.steps} steps; "
                "the cloud shows sample 0 of the held-out split"
            )
            every = max(1, min(10, cfg.steps // 6 or 1))  # plain lines (CI logs): about six, at most every 10
            bar = progress(cfg.steps, "glnet: training", unit="step", every=every)
            viz.say = bar.wrap(viz.say)  # the viewer's notes, printed around the bar
            for k in range(1, cfg.steps + 1):
                if state.interrupts:
                    state.stopped = "interrupted"
                    break
                if viz.should_stop:
                    state.stopped = viz.stop_reason or "stopped"
                    break
                x, y = next(batches)
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                try:
                    out = model(x)
                    loss = criterion(out, y)
                    lv, av = torch.stack(
                        [loss.detach().float(), (out.argmax(1) == y).float().mean()]
                    ).tolist()
                    if not math.isfinite(lv):
                        layer = find_nonfinite(model, x)
                        opt.zero_grad(set_to_none=True)
                        viz.step(
                            loss=lv, acc=av, samples=len(y), nonfinite_layer=layer
                        )  # raises unless keep_going
                        state.step = k
                        continue  # keep going: this step's update is skipped, the weights stay finite
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                except torch.OutOfMemoryError as e:
                    raise OutOfMemoryError(
                        f"out of memory training {name} on {device} with batch {cfg.batch} "
                        f"at {image_size}px: "
                        f"try --batch {max(1, cfg.batch // 2)}"
                    ) from e
                viz.step(loss=lv, acc=av, samples=len(y))
                state.step = k
                if cfg.on_step is not None:
                    cfg.on_step(k, viz)
                sps = viz.samples_per_s()
                bar.postfix(loss=f"{lv:.3f}", acc=f"{av:.2f}", **{"samples/s": f"{sps or 0:.1f}"})
                bar.postfix(frames=viz.stats.frames)
                bar.update()
            if state.interrupts:
                state.stopped = "interrupted"
        trained = True
        bar.close()
        if not viz.headless and viz.viewer_alive and state.stopped == "completed" and viz.hold:
            say("glnet: training finished; fly on, close the window (or Ctrl-C) to exit")
        viz.request_stop(state.stopped if state.stopped != "completed" else "")
        viz.close()  # draws what is queued; a held window stays until it is closed (Ctrl-C: at once)
    except KeyboardInterrupt:
        if not trained:
            state.stopped = "interrupted"
            state.interrupts = max(1, state.interrupts)
    except BaseException as e:
        error = e
        if isinstance(e, NonFiniteError):
            state.stopped = "non-finite loss"
        elif isinstance(e, OutOfMemoryError):
            state.stopped = "out of memory"
        else:
            state.stopped = "failed"
    finally:
        bar.close()
        try:
            viz.close()
        except KeyboardInterrupt:
            if not trained:
                state.stopped = "interrupted"
        finally:
            if cfg.save and state.step > 0:
                checkpoint = save_checkpoint(
                    cfg.save,
                    model,
                    opt,
                    step=state.step,
                    arch=name,
                    num_classes=num_classes,
                    classes=list(data.classes),
                    image_size=image_size,
                    stopped=state.stopped,
                )
                say(f"glnet: checkpoint at step {state.step} written to {checkpoint}")
    summary = viz.stats.summary()
    result = {
        **summary,
        "model": name,
        "device": str(device),
        "data": cfg.data,
        "batch": cfg.batch,
        "image_size": image_size,
        "optimizer": cfg.optimizer,
        "lr": lr,
        "every": cfg.every,
        "mode": cfg.mode,
        "stopped": state.stopped,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "video": str(cfg.record) if cfg.record else None,
        "wall_s": round(time.perf_counter() - t_start, 3),
    }
    if cfg.stats_json:
        p = Path(cfg.stats_json)
        if p.parent != Path(""):
            p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if error is not None:
        raise error
    if state.interrupts:
        raise KeyboardInterrupt
    return result
