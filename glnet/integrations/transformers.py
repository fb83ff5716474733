"""``LiveCallback`` for the Hugging Face ``Trainer``: ``Trainer(..., callbacks=[LiveCallback(probe=x)])``.

Example::

    from glnet.integrations.transformers import LiveCallback   # first: it fixes torchvision's import
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments("out", max_steps=100, logging_steps=1, report_to=[])
    Trainer(model, args, train_dataset=data, callbacks=[LiveCallback(probe=pixels, target=label)]).train()

The Trainer calls ``model(**batch)``: the probe joins the keyword tensor of its shape (``pixel_values``,
``input_ids``), ``labels`` gets ``target`` (other batch-sized keywords repeat their last row). Each step is
handed over right after ``optimizer.step()`` (weights updated, gradients still there) with the loss the
Trainer last logged (``logging_steps=1`` logs every step) and an accuracy logged under a common name.
Under DDP only the world's process zero draws.
"""

from __future__ import annotations

from typing import Any

from ._session import ACC_KEYS, LiveHooks, metric, prepare_framework

prepare_framework()

from transformers import TrainerCallback  # noqa: E402  (after the torchvision fix)

__all__ = ["LiveCallback"]

_ACC = (*ACC_KEYS, "eval_accuracy", "eval_acc")


class LiveCallback(LiveHooks, TrainerCallback):
    """A Trainer callback drawing the model live (see :class:`glnet.integrations.LiveHooks`)."""

    _stepped = False  # this step was handed over by on_optimizer_step

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is not None:
            total = state.max_steps if state.max_steps and state.max_steps > 0 else None
            self.open(model, rank_zero=bool(state.is_world_process_zero), total_steps=total)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._stepped = True
        self._hand_over(control)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._stepped:  # a transformers without on_optimizer_step
            self._hand_over(control)
        self._stepped = False

    def _hand_over(self, control: Any) -> None:
        if self.live is None:
            return
        loss, acc, self.logged_loss, self.logged_acc = self.logged_loss, self.logged_acc, None, None
        self.step(loss, acc)  # each logged figure once, with the step after the one it was logged at
        if self.should_stop:
            control.should_training_stop = True

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        loss, acc = metric(logs, ("loss",)), metric(logs, _ACC)  # not train_loss: the run's mean, at its end
        self.logged_loss = loss if loss is not None else self.logged_loss
        self.logged_acc = acc if acc is not None else self.logged_acc

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.record(self.logged_loss, self.logged_acc)  # the last step's log came after its frame
        self.logged_loss = self.logged_acc = None
        self.close()

    logged_loss: float | None = None  # the loss the Trainer logged last
    logged_acc: float | None = None
