"""From a MODEL argument to a trace: resolve the model, load weights, make the input, capture.

This is the front half of every command (``view``, ``snapshot``, ``bench --model``, ``train``), in one
place so each reports bad input the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .capture import Granularity, Trace, capture
from .errors import InputError
from .inputs import load_image, to_tensor
from .models import ModelSpec, load_model, load_weights
from .testimage import test_image

__all__ = ["Prepared", "check_device", "make_input", "trace_model"]


@dataclass
class Prepared:
    spec: ModelSpec
    input: torch.Tensor
    trace: Trace


def make_input(spec: ModelSpec, image: str | os.PathLike[str] | None = None, seed: int = 0) -> torch.Tensor:
    """The model's input batch of one: the user's image, or the built-in test image, shaped for the model."""
    shape = spec.input_shape
    if shape[0] != 3 or len(shape) not in (3, 4):
        raise InputError(f"{spec.name} takes input of shape {shape}; glnet feeds images (3 x H x W) or clips")
    h, w = shape[-2], shape[-1]
    picture = load_image(image) if image is not None else test_image(w, h, seed=seed)
    x = to_tensor(picture, (w, h))
    if len(shape) == 4:  # a video clip: the picture panning slowly across T frames
        frames = [torch.roll(x, shifts=(t // 2, t), dims=(2, 3)) for t in range(shape[1])]
        x = torch.stack(frames, dim=2)
    return x


def check_device(device: str) -> torch.device:
    """Refuse a device torch cannot use here up front, with one line naming it, not a CUDA traceback."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"--device {device!r} is not a torch device (try cpu, cuda or cuda:1)") from None
    count = torch.cuda.device_count() if dev.type == "cuda" else 0
    if dev.type == "cuda" and (dev.index or 0) >= count:
        raise InputError(f"--device {device} was asked for but torch sees {count} CUDA device(s)")
    return dev


def trace_model(
    model: str,
    *,
    image: str | os.PathLike[str] | None = None,
    weights: str | os.PathLike[str] | None = None,
    input_size: int = 224,
    granularity: Granularity = "layer",
    device: str = "cpu",
    seed: int = 0,
) -> Prepared:
    """Build (or load) ``model``, load ``weights`` if given, and capture it on ``image`` or the test image."""
    if input_size < 16 or input_size > 4096:
        raise InputError(f"input size must be between 16 and 4096 pixels, not {input_size}")
    check_device(device)
    spec = load_model(model, input_size=input_size, device=device, seed=seed)
    if weights is not None:
        load_weights(spec.model, weights, spec.name)
    x = make_input(spec, image, seed=seed).to(device)
    trace = capture(spec.model, x, granularity=granularity, model_name=spec.name)
    return Prepared(spec, x, trace)
