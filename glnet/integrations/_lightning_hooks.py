"""The Lightning callback's hooks, shared by ``lightning.pytorch`` and ``pytorch_lightning`` (no import of
either here: each module mixes these into its own package's ``Callback``)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ._session import ACC_KEYS, LOSS_KEYS, LiveHooks, metric

__all__ = ["LightningHooks"]


def _step_loss(outputs: Any) -> float | None:
    """The loss ``training_step`` returned (a tensor, or a dict with ``loss``)."""
    if isinstance(outputs, torch.Tensor) and outputs.numel() == 1:
        return float(outputs.detach())
    if isinstance(outputs, dict):
        return metric(outputs, ("loss",))
    return None


class LightningHooks(LiveHooks):
    """Opens the session on fit start (global rank 0 only), hands over every training batch after its
    optimizer step (weights updated, gradients still there), closes on fit end, teardown or an exception."""

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        if total is None:
            try:
                est = trainer.estimated_stepping_batches
                total = int(est) if math.isfinite(est) else None
            except Exception:  # no length known: the HUD shows no total
                total = None
        self.open(pl_module, rank_zero=bool(trainer.is_global_zero), total_steps=total)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.live is None:
            return
        logged = trainer.callback_metrics
        loss = _step_loss(outputs)
        self.step(loss if loss is not None else metric(logged, LOSS_KEYS), metric(logged, ACC_KEYS))
        if self.should_stop:
            trainer.should_stop = True

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.close()  # Ctrl-C too: Lightning calls this before it exits

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.close()
