"""``LiveCallback`` for Lightning: ``Trainer(callbacks=[LiveCallback(probe=x)])`` draws the model live.

Example::

    from glnet.integrations.lightning import LiveCallback   # before lightning: it fixes torchvision's import
    import lightning as L

    trainer = L.Trainer(max_steps=100, callbacks=[LiveCallback(probe=x_val[0], target=y_val[0])])
    trainer.fit(model, loader)

The cloud follows the LightningModule's forward (``training_step`` should call ``self(x)``; else pass
``module=`` the network it calls). Loss comes from what ``training_step`` returns, accuracy from what it
logs under ``acc``, ``accuracy`` or ``train_acc``. Under DDP only global rank 0 draws.
"""

from __future__ import annotations

from ._session import prepare_framework

prepare_framework()

from lightning.pytorch import Callback  # noqa: E402  (after the torchvision fix)

from ._lightning_hooks import LightningHooks  # noqa: E402

__all__ = ["LiveCallback"]


class LiveCallback(LightningHooks, Callback):
    """A Lightning callback drawing the model live (see :class:`glnet.integrations.LiveHooks`)."""
