"""Models: resolve a MODEL argument to a module, and load a user's weights file safely.

MODEL is a torchvision model name (built with random weights: nothing is downloaded), ``timm:NAME`` or
``hf:DIR`` (resolved by :mod:`glnet.sources`), a ``package.module:callable`` zero-argument factory, or a
TorchScript file. Weights files are safetensors or read with ``torch.load(weights_only=True)``, so a file can
never run code, and are checked against the model key by key before loading so a mismatch is reported in
one line; wrapper prefixes (``module.``, ``model.``, a Hugging Face base-model prefix) are matched up first.
"""

from __future__ import annotations

import difflib
import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._torchvision import import_torchvision
from .errors import ModelError, OutOfMemoryError, WeightsError
from .sources import build_model, import_user_module, is_source, load_source, weight_prefixes

__all__ = ["ModelSpec", "available_memory", "load_model", "load_weights", "torchvision_names"]

_FAMILIES = ("classification", "video", "segmentation")


@dataclass
class ModelSpec:
    """A resolved model and how to feed it."""

    model: nn.Module
    name: str
    family: str  # classification | video | segmentation | custom | torchscript | transformers
    input_shape: tuple[int, ...]  # per-sample shape of the default input, e.g. (3, 224, 224)
    mean: tuple[float, ...] | None = None  # input normalisation (None: ImageNet's)
    std: tuple[float, ...] | None = None
    random_weights: bool = False  # built with random weights (torchvision, timm, an hf config alone)


def torchvision_names() -> dict[str, str]:
    """torchvision model names glnet can build, mapped to their family."""
    tv = import_torchvision()
    names: dict[str, str] = {}
    for name in tv.models.list_models(module=tv.models.video):
        names[name] = "video"
    for name in tv.models.list_models(module=tv.models.segmentation):
        names[name] = "segmentation"
    for name in tv.models.list_models(module=tv.models):
        names[name] = "classification"
    return names


def available_memory(device: torch.device | str = "cpu") -> int:
    """Bytes free for new tensors on ``device`` (MemAvailable for the host)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


def _check_fits(name: str, build: Any, device: torch.device) -> None:
    """Build the model on the meta device (no memory) and refuse it if its parameters cannot fit."""
    try:
        with torch.device("meta"):
            meta = build()
    except Exception:
        return  # some factories cannot build on meta; the real build will report its own error
    need = sum(p.numel() * p.element_size() for p in meta.parameters())
    have = available_memory(device)
    if need * 1.5 > have:
        raise OutOfMemoryError(
            f"{name} needs {need / 2**30:.1f} GiB for its weights but only {have / 2**30:.1f} GiB"
            f" is free on {device}"
        )


def _input_shape(family: str, size: int) -> tuple[int, ...]:
    if family == "video":
        return (3, 16, size // 2, size // 2)
    return (3, size, size)


def load_model(
    spec: str, *, input_size: int | None = None, device: str | torch.device = "cpu", seed: int = 0
) -> ModelSpec:
    """Resolve MODEL (torchvision name, ``timm:NAME``, ``hf:DIR``, ``pkg.module:callable``, TorchScript file)
    to a module; ``input_size`` None takes the model's own (224 where it has none)."""
    device = torch.device(device)
    text = str(spec).strip()
    if not text:
        raise ModelError(
            "no model given: name a torchvision model (e.g. resnet50), timm:NAME, hf:DIR, "
            "pkg.module:callable or a file"
        )
    if is_source(text):
        sm = load_source(text, input_size=input_size, device=device, seed=seed, check_fits=_check_fits)
        return ModelSpec(sm.model, sm.name, sm.family, sm.input_shape, sm.mean, sm.std, sm.random_weights)
    input_size = input_size or 224
    path = Path(text)
    if path.suffix in (".pt", ".pth", ".ts", ".jit", ".torchscript") or path.is_file():
        return _load_torchscript(path, input_size, device)
    if ":" in text:
        torch.manual_seed(seed)  # --seed fixes a factory's random weights too
        return _load_factory(text, input_size, device)
    names = torchvision_names()
    family = names.get(text)
    if family is None:
        close = difflib.get_close_matches(text.lower(), list(names), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see torchvision.models.list_models()"
        raise ModelError(f"unknown model {text!r}{hint}")
    tv = import_torchvision()

    def build() -> nn.Module:
        kwargs: dict[str, Any] = {"weights": None}
        if family == "segmentation":
            kwargs["weights_backbone"] = None
        if text.startswith("inception") or text == "googlenet":
            kwargs["init_weights"] = True
            kwargs["aux_logits"] = False
        return tv.models.get_model(text, **kwargs)

    _check_fits(text, build, device)
    torch.manual_seed(seed)
    model = build_model(build, text, f"building {text} failed")
    spec = ModelSpec(model.to(device).eval(), text, family, _input_shape(family, input_size))
    spec.random_weights = True
    return spec


def _load_factory(text: str, input_size: int, device: torch.device) -> ModelSpec:
    module_name, _, attr = text.partition(":")
    if not module_name or not attr:
        raise ModelError(f"{text!r} is not of the form package.module:callable")
    module = import_user_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"{module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"{text!r} is not callable")
    model = build_model(obj, text, f"{text}() failed")
    if not isinstance(model, nn.Module):
        raise ModelError(f"{text}() returned a {type(model).__name__}, not a torch.nn.Module")
    return ModelSpec(model.to(device).eval(), text, "custom", _input_shape("classification", input_size))


def _load_torchscript(path: Path, input_size: int, device: torch.device) -> ModelSpec:
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript files remain loadable
            model = torch.jit.load(str(path), map_location=device)
    except Exception as e:
        hint = ""
        if zipfile.is_zipfile(path):
            hint = " (a weights file? pass it with --weights next to a model name)"
        raise ModelError(f"{str(path)!r} is not a TorchScript model{hint}") from e
    return ModelSpec(model.eval(), path.stem, "torchscript", _input_shape("classification", input_size))


def _unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        keys = ("state_dict", "model_state_dict", "model", "net", "weights", "state_dict_ema", "model_ema")
        for key in keys:
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError("the weights file holds no state dict (a mapping of parameter names to tensors)")
    return obj


def _align_keys(state: dict[str, torch.Tensor], own: set[str], prefixes: tuple[str, ...]) -> dict[str, Any]:
    """The checkpoint with wrapper prefixes stripped (or the model's base prefix added) so that the most keys
    match the model's; ties keep the file's own names."""

    def strip(d: dict[str, Any], p: str) -> dict[str, Any]:
        return {k.removeprefix(p): v for k, v in d.items()}

    best, score = state, len(own.intersection(state))
    frontier = [state]
    for _ in range(3):  # nested wrappers, e.g. module.model.
        nxt = []
        for d in frontier:
            for p in prefixes:
                cands = []
                if any(k.startswith(p) for k in d):
                    cands.append(strip(d, p))
                if any(k.startswith(p) for k in own) and not any(k.startswith(p) for k in d):
                    cands.append({p + k: v for k, v in d.items()})
                for c in cands:
                    n = len(own.intersection(c))
                    if n > score:
                        best, score = c, n
                        nxt.append(c)
        frontier = nxt
    return best


def _read_state(p: Path) -> Any:
    """The file's contents, without running code: safetensors, else torch.load(weights_only=True)."""
    with open(p, "rb") as f:
        head = f.read(9)
    # a safetensors file opens with its JSON header's length (8 bytes, little-endian) and then "{"
    sniffed = len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 27
    if p.suffix == ".safetensors" or sniffed:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise WeightsError(f"{str(p)!r} is not a readable safetensors file: {why}") from e
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightsError(
            f"{str(p)!r} holds objects other than tensors; glnet loads weights with weights_only=True "
            "and will not run code from a file"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise WeightsError(f"{str(p)!r} is not a readable PyTorch weights file (corrupt or truncated)") from e


def _examples(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")


def load_weights(model: nn.Module, path: str | os.PathLike[str], model_name: str = "the model") -> None:
    """Load a ``.safetensors``/``.pt``/``.pth`` file into ``model`` (never running code from it), matching
    up wrapper and base-model key prefixes; one-line errors on any mismatch."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file {str(p)!r} does not exist")
    obj = _read_state(p)
    try:
        state = _unwrap_state_dict(obj)
    except WeightsError as e:
        raise WeightsError(f"{str(p)!r}: {e}") from e
    own = model.state_dict()
    state = _align_keys(state, set(own), weight_prefixes(model))
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_examples(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_examples(unexpected)})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} of the wrong shape"
                f" ({k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)})"
            )
        raise WeightsError(f"{str(p)!r} does not match {model_name}: " + "; ".join(parts))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(
            f"{str(p)!r} could not be loaded into {model_name}: {str(e).splitlines()[0]}"
        ) from e
