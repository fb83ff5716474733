"""Which process of a distributed run draws: only rank 0 renders, every other rank gets an idle session.

An idle session has :class:`~glnet.live.session.Live`'s API and does nothing: no capture, no hooks, no
hand-over, no viewer process, and no collective call, so no rank ever waits for rank 0's viewer.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .session import Live

__all__ = ["IdleLive", "global_rank", "unwrap"]


def global_rank() -> int:
    """This process's rank: torch.distributed's once initialised, else the ``RANK`` variable torchrun
    sets (0 when neither says otherwise)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers (the one whose layers get hooks)."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


class IdleLive(Live):
    """What :func:`glnet.live` gives on a rank other than 0: the same API, and it does nothing."""

    def start(self) -> Live:
        self._started = True
        self.stats.viewer = "none (not rank 0)"
        return self

    def step(self, loss: float | None = None, **_: Any) -> None:
        self.stats.steps += 1

    def close(self) -> None:
        self._closed = self.finished = True
