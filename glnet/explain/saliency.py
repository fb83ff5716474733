"""Saliency: the gradient of one neuron with respect to the input, from one forward pass cut short at the
neuron's layer and one backward pass."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..capture import LayerRecord, first_tensor, model_device, to_canonical
from ..errors import CaptureError

__all__ = ["raw_index", "saliency"]


class _Reached(Exception):
    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output


def raw_index(rec: LayerRecord, index: int) -> int:
    """Where neuron ``index`` of the layer's (C, H, W) grid sits in the module's own per-sample output."""
    order = torch.arange(int(np.prod(rec.shape)), dtype=torch.float64).reshape(rec.shape)
    return int(to_canonical(order.to(torch.float64), rec.grid, rec.channels_last).reshape(-1)[index].item())


def _module_and_call(model: nn.Module, name: str) -> tuple[nn.Module, int]:
    base, _, n = name.partition(":")
    modules = dict(model.named_modules())
    module = modules.get(base) or (modules.get("") if base == type(model).__name__ else None)
    if module is None:
        raise CaptureError(f"the model has no module named {base!r}")
    return module, int(n) if n else 0


def saliency(model: nn.Module, x: torch.Tensor, rec: LayerRecord, index: int) -> torch.Tensor:
    """|d neuron / d input| for neuron ``index`` of ``rec``, the layer module's own output (before its
    activation, so a neuron the ReLU silences still shows what drives it); shaped like one input sample."""
    module, call = _module_and_call(model, rec.name)
    flat = raw_index(rec, index)
    seen = [0]

    def hook(_m: nn.Module, _inp: object, out: object) -> None:
        if seen[0] == call:
            t = first_tensor(out)
            if t is not None:
                raise _Reached(t)
        seen[0] += 1

    x = x[:1].detach().to(model_device(model)).clone().requires_grad_(True)
    handle = module.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            try:
                model(x)
            except _Reached as r:
                target = r.output[0].reshape(-1)[flat]
            else:
                raise CaptureError(f"layer {rec.name!r} was not reached by the forward pass")
            (grad,) = torch.autograd.grad(target, x, allow_unused=True)
    finally:
        handle.remove()
        model.train(was_training)
    if grad is None:
        return torch.zeros_like(x[0])
    return grad[0].abs()
