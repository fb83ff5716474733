"""From a MODEL argument to a trace: resolve the model, load weights, make the input, capture.

This is the front half of every command (``view``, ``snapshot``, ``bench --model``, ``train``), in one
place so each reports bad input the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .capture import Granularity, Trace, capture
from .errors import InputError
from .inputs import is_tensor_file, load_image, load_tensor, to_tensor
from .models import ModelSpec, load_model, load_weights
from .testimage import test_image, test_signal

__all__ = ["Prepared", "check_device", "make_input", "trace_model"]


@dataclass
class Prepared:
    spec: ModelSpec
    input: torch.Tensor
    trace: Trace


_GREY_MEAN, _GREY_STD = 0.449, 0.226  # ImageNet's channel means, for one-channel pictures


def _picture_input(
    spec: ModelSpec, per: tuple[int, ...], image: str | os.PathLike[str] | None, seed: int
) -> torch.Tensor:
    """A (1, C, H, W) or (1, C, T, H, W) batch from the user's image or the test image (C is 1 or 3)."""
    h, w = per[-2], per[-1]
    picture = load_image(image) if image is not None else test_image(w, h, seed=seed)
    if per[0] == 3:
        x = to_tensor(picture, (w, h), spec.mean, spec.std)
    else:  # grey: luminance, normalised like one ImageNet channel (or as the model says)
        rgb = to_tensor(picture, (w, h), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        y = (rgb * torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1, keepdim=True)
        mean = spec.mean[0] if spec.mean and len(spec.mean) == 1 else _GREY_MEAN
        std = spec.std[0] if spec.std and len(spec.std) == 1 else _GREY_STD
        x = (y - mean) / std
    if len(per) == 4:  # a video clip: the picture panning slowly across T frames
        frames = [torch.roll(x, shifts=(t // 2, t), dims=(2, 3)) for t in range(per[1])]
        x = torch.stack(frames, dim=2)
    return x


def make_input(
    spec: ModelSpec,
    image: str | os.PathLike[str] | None = None,
    seed: int = 0,
    shape: Sequence[int] | None = None,
) -> torch.Tensor:
    """The model's input batch: a tensor file as it is, else the user's image or a built-in test input (the
    test image, a grey image, a panning clip, a test signal, or seeded noise) of ``shape`` (batch first;
    default one sample of the model's input shape)."""
    if image is not None and is_tensor_file(image):
        if shape is not None:
            raise InputError(
                "--input-shape and a tensor --input both give the input: drop --input-shape (the tensor is "
                "fed as it is)"
            )
        x = load_tensor(image)
        x = x.float() if x.dtype == torch.float64 else x  # numpy's default; models hold float32
        return x[None] if x.dim() == len(spec.input_shape) else x
    full = tuple(int(v) for v in shape) if shape is not None else (1, *spec.input_shape)
    n, per = full[0], full[1:]
    picture = len(per) in (3, 4) and per[0] in (1, 3) and min(per[-2:]) >= 2
    if image is not None and not picture:
        raise InputError(
            f"--input {str(image)!r} is an image, which cannot fill input shape {'x'.join(map(str, full))} "
            "(images fill Nx3xHxW, Nx1xHxW or Nx3xTxHxW): give a .npy or .pt tensor instead"
        )
    if picture:
        x = _picture_input(spec, per, image, seed)
    elif len(per) == 2 and per[1] >= 16:  # (C, L): a 1-D signal such as audio
        x = torch.from_numpy(test_signal(per[0], per[1], seed=seed))[None]
    else:
        x = torch.randn((1, *per), generator=torch.Generator().manual_seed(seed))
    return x.expand(n, *x.shape[1:]).contiguous() if n > 1 else x


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
    input_size: int | None = None,
    granularity: Granularity = "layer",
    device: str = "cpu",
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
) -> Prepared:
    """Build (or load) ``model``, load ``weights`` if given, and capture it on ``image`` (an image or tensor
    file) or a built-in input of ``input_shape`` (batch first; default: the model's own)."""
    if input_size is not None and (input_size < 16 or input_size > 4096):
        raise InputError(f"input size must be between 16 and 4096 pixels, not {input_size}")
    if input_size is not None and input_shape is not None:
        raise InputError("--input-size and --input-shape both set the input's size: give one of them")
    if input_shape is not None and len(input_shape) == 4 and input_shape[-1] == input_shape[-2]:
        input_size = int(input_shape[-1])  # models sized at build time (ViTs) are built for it
    check_device(device)
    spec = load_model(model, input_size=input_size, device=device, seed=seed)
    if weights is not None:
        load_weights(spec.model, weights, spec.name)
        spec.random_weights = False
    x = make_input(spec, image, seed=seed, shape=input_shape).to(device)
    trace = capture(spec.model, x, granularity=granularity, model_name=spec.name)
    if spec.mean is not None:
        trace.meta.update(input_mean=spec.mean, input_std=spec.std)
    return Prepared(spec, x, trace)
