"""What a classifier predicts: its top classes with probabilities, and names for the classes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..capture import first_tensor
from ..errors import InputError

__all__ = ["Prediction", "class_labels", "imagenet_labels", "load_labels", "logits_of", "top_k"]


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    prob: float

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "prob": round(self.prob, 6)}


def load_labels(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a text file, one a line (blank lines kept as empty names)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"labels file {str(p)!r} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read labels file {str(p)!r}: {e}") from e
    return [line.strip() for line in text.splitlines()]


def imagenet_labels(model_name: str) -> list[str] | None:
    """The 1000 ImageNet class names that torchvision's weight enums carry (offline), for its classifiers."""
    from .._torchvision import import_torchvision

    name = model_name.split(":")[-1]
    try:
        enum = import_torchvision().models.get_model_weights(name)
    except (ValueError, KeyError):
        return None
    for w in enum:
        cats = w.meta.get("categories")
        if cats and len(cats) == 1000:
            return list(cats)
    return None


def class_labels(
    model_name: str, classes: int, labels: str | os.PathLike[str] | Sequence[str] | None = None
) -> list[str]:
    """Names for ``classes`` outputs: the given file or list, ImageNet's for torchvision classifiers, else
    "class N"."""
    names: list[str] | None = None
    if labels is not None:
        names = load_labels(labels) if isinstance(labels, (str, os.PathLike)) else list(labels)
    elif classes == 1000:
        names = imagenet_labels(model_name)
    names = names or []
    return [names[i] if i < len(names) and names[i] else f"class {i}" for i in range(classes)]


def logits_of(output: Any) -> torch.Tensor | None:
    """A classifier's logits for the first sample (1-D), or None when the output is not a class vector."""
    t = first_tensor(output)
    if t is None or t.dim() != 2 or t.shape[1] < 2 or not t.is_floating_point():
        return None
    return t[0].detach().float()


def top_k(output: Any, labels: Sequence[str] | None = None, k: int = 5) -> list[Prediction]:
    """The top ``k`` classes of the first sample (softmax probabilities); [] when not a classifier."""
    logits = logits_of(output)
    if logits is None:
        return []
    probs = torch.softmax(logits, dim=0)
    p, i = probs.topk(min(k, len(probs)))
    names = list(labels) if labels is not None else []
    return [
        Prediction(int(j), names[j] if j < len(names) else f"class {j}", float(q))
        for q, j in zip(p.tolist(), i.tolist(), strict=True)
    ]
