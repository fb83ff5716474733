"""What the framework callbacks share: a live session opened on rank 0 only, fed by logged metrics."""

from __future__ import annotations

import atexit
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .._torchvision import prepare_torchvision
from ..errors import InputError
from ..live import Live, live
from ..live.ranks import global_rank, unwrap

__all__ = ["ACC_KEYS", "LOSS_KEYS", "LiveHooks", "metric", "prepare_framework"]

LOSS_KEYS = ("loss", "train_loss", "train/loss", "loss_step", "train_loss_step")
ACC_KEYS = (
    "acc", "accuracy", "train_acc", "train_accuracy", "train/acc", "train/accuracy",
    "acc_step", "train_acc_step", "accuracy_step", "train_accuracy_step",
)  # fmt: skip


def prepare_framework() -> None:
    """Lightning and transformers import torchvision; make that import work before they do."""
    prepare_torchvision()


def metric(values: Mapping[str, Any] | None, keys: tuple[str, ...]) -> float | None:
    """The first of ``keys`` in ``values`` as a float (a one-element tensor is read once), else None."""
    if not values:
        return None
    for k in keys:
        v = values.get(k)
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            return float(v.detach())
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


class LiveHooks:
    """A :func:`glnet.live` session a framework callback opens, steps and closes.

    ``probe`` is the sample the cloud shows (with or without its batch dimension), ``target`` its label
    (for its gradients); ``module`` the module to draw (default: the one the framework trains, unwrapped
    from DDP), or a function of that module returning it. The other keywords go to :func:`glnet.live`.
    """

    def __init__(
        self,
        probe: torch.Tensor,
        target: int | torch.Tensor | None = None,
        *,
        module: nn.Module | Callable[[nn.Module], nn.Module] | None = None,
        **live_kwargs: Any,
    ) -> None:
        if not isinstance(probe, torch.Tensor):
            raise InputError(f"the probe must be a tensor, not {type(probe).__name__}")
        self.probe, self.target, self.module = probe, target, module
        self.live_kwargs = live_kwargs
        self.live: Live | None = None  # set on rank 0 while training runs
        self.last: Live | None = None  # the last session, kept after it closed (its stats)
        self.loss: float | None = None
        self.acc: float | None = None

    def open(self, model: nn.Module, *, rank_zero: bool = True, total_steps: int | None = None) -> None:
        """Start the session on global rank 0; elsewhere nothing happens at all."""
        if self.live is not None or not rank_zero or global_rank() != 0:
            return
        m = self.module if isinstance(self.module, nn.Module) else unwrap(model)
        if callable(self.module) and not isinstance(self.module, nn.Module):
            m = self.module(m)
        # the framework decides what a NaN loss does (glnet shows it); keep_going=False makes glnet raise
        options = {"total_steps": total_steps, "keep_going": True, **self.live_kwargs}
        self.live = self.last = live(m, self.probe, target=self.target, **options)
        self.live.start()
        # a run that dies without the framework's end hook (the HF Trainer has none) still finishes its video
        atexit.register(self.close)

    def step(self, loss: float | None = None, acc: float | None = None) -> None:
        """One optimizer step done: hand it over (never waits for the viewer)."""
        if self.live is None:
            return
        loss = self.loss if loss is None else loss
        acc = self.acc if acc is None else acc
        self.loss = self.acc = None
        self.live.step(loss=loss, acc=acc)

    def record(self, loss: float | None = None, acc: float | None = None) -> None:
        """Figures logged after the last step (no frame left to carry them): into the stats only."""
        if self.live is not None:
            self.live.stats.loss += [loss] if loss is not None else []
            self.live.stats.acc += [acc] if acc is not None else []

    @property
    def should_stop(self) -> bool:
        """The viewer asked training to end (window closed with ``on_close="stop"``)."""
        return self.live is not None and self.live.should_stop

    def close(self) -> None:
        """Let the viewer finish (its recording is closed properly) and remove every hook; idempotent."""
        s, self.live = self.live, None
        if s is not None:
            atexit.unregister(self.close)
            s.close()
