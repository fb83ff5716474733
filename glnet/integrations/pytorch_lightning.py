"""``LiveCallback`` for the ``pytorch_lightning`` package (the same as :mod:`glnet.integrations.lightning`,
for scripts that import Lightning under its older name)."""

from __future__ import annotations

from ._session import prepare_framework

prepare_framework()

from pytorch_lightning import Callback  # noqa: E402  (after the torchvision fix)

from ._lightning_hooks import LightningHooks  # noqa: E402

__all__ = ["LiveCallback"]


class LiveCallback(LightningHooks, Callback):
    """A pytorch_lightning callback drawing the model live (see :class:`glnet.integrations.LiveHooks`)."""
