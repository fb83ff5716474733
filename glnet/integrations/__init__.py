"""Live clouds inside the training frameworks people already use: one callback added to their script.

* :mod:`glnet.integrations.lightning`: ``LiveCallback`` for ``lightning.pytorch.Trainer``
  (:mod:`glnet.integrations.pytorch_lightning` for the older ``pytorch_lightning`` package).
* :mod:`glnet.integrations.transformers`: ``LiveCallback`` for the Hugging Face ``Trainer``.

Each opens a :func:`glnet.live` session when training starts, hands over every optimizer step with the
loss and accuracy the framework already logs, and closes it when training ends or fails. In a
multi-process run only global rank 0 draws; the other ranks do nothing at all (no hooks, no viewer, no
collective calls). The submodules import their framework only when they are imported themselves.
"""

from __future__ import annotations

from ._session import ACC_KEYS, LOSS_KEYS, LiveHooks, metric

__all__ = ["ACC_KEYS", "LOSS_KEYS", "LiveHooks", "metric"]
