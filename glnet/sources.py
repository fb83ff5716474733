"""Model sources beyond torchvision: ``timm:NAME``, ``hf:DIR`` and a user's ``package.module:callable``.

Nothing is ever downloaded: timm models are built with ``pretrained=False`` and Hugging Face folders are
read with ``local_files_only=True`` under ``HF_HUB_OFFLINE=1``. timm and transformers are optional extras
(``glnet[timm]``, ``glnet[hf]``); torchvision's op fix runs before any of them, or a user's module, is
imported, so a torchvision that does not match torch cannot break the import.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ._torchvision import prepare_torchvision
from .errors import ModelError, OutOfMemoryError

__all__ = [
    "PREFIXES", "SourceModel", "import_user_module", "is_source", "load_source", "one_line",
    "weight_prefixes",
]  # fmt: skip

PREFIXES = ("timm:", "hf:")
"""MODEL prefixes this module resolves."""

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


@dataclass
class SourceModel:
    """A model built from a source, with the input it expects."""

    model: nn.Module
    name: str
    family: str  # classification (timm) | transformers
    input_shape: tuple[int, ...]  # per-sample, e.g. (3, 224, 224)
    mean: tuple[float, ...] | None  # the input normalisation the model was trained with
    std: tuple[float, ...] | None
    random_weights: bool  # True when no weights came with the source


def is_source(text: str) -> bool:
    """True when MODEL names a timm model or a Hugging Face folder."""
    return text.startswith(PREFIXES)


def one_line(e: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def build_model(build: Callable[[], Any], what: str, failed: str) -> Any:
    """``build()``; running out of memory, or any other failure, as one line (``failed``: what went wrong)."""
    try:
        return build()
    except (MemoryError, torch.OutOfMemoryError) as e:
        raise OutOfMemoryError(f"not enough memory to build {what}") from e
    except Exception as e:
        raise ModelError(f"{failed}: {one_line(e)}") from e


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Forbid the Hugging Face hub any network access while a model is loaded (set before its import)."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict.fromkeys(keys, "1"))
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _import_extra(module: str, extra: str) -> ModuleType:
    prepare_torchvision()
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ModelError(
            f"{module} is not installed (needed for {extra}:...): pip install 'glnet[{extra}]'"
        ) from e
    except Exception as e:  # a broken install raising at import time
        raise ModelError(f"importing {module} failed: {one_line(e)}") from e


def import_user_module(name: str) -> ModuleType:
    """Import a user's module for ``package.module:callable``: torchvision fixed first, the current folder on
    the path (as ``python -m`` has it), and any failure while importing it as one ModelError line."""
    prepare_torchvision()
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            raise ModelError(f"no module named {name!r} (is it on PYTHONPATH?)") from e
        raise ModelError(f"importing {name!r} failed: {one_line(e)}") from e
    except SyntaxError as e:
        where = f" ({Path(e.filename).name}, line {e.lineno})" if e.filename else ""
        raise ModelError(f"importing {name!r} failed: SyntaxError: {e.msg}{where}") from e
    except (Exception, SystemExit) as e:
        raise ModelError(f"importing {name!r} failed: {one_line(e)}") from e


def load_source(
    text: str,
    *,
    input_size: int | None,
    device: torch.device,
    seed: int,
    check_fits: Callable[[str, Callable[[], nn.Module], torch.device], None] | None = None,
) -> SourceModel:
    """Build ``timm:NAME`` or ``hf:DIR`` on ``device`` (random weights where the source has none)."""
    kind, _, rest = text.partition(":")
    rest = rest.strip()
    if not rest:
        raise ModelError(f"{text!r} names no model: write timm:NAME (e.g. timm:resnet18) or hf:FOLDER")
    with _offline():
        if kind == "timm":
            sm = _timm(rest, input_size, seed, check_fits, device)
        else:
            sm = _hf(rest, input_size, seed)
    try:
        sm.model = sm.model.to(device).eval()
    except (MemoryError, torch.OutOfMemoryError) as e:
        raise OutOfMemoryError(f"not enough memory on {device} for {text}") from e
    return sm


def _timm(
    name: str, input_size: int | None, seed: int, check_fits: Callable[..., None] | None, device: torch.device
) -> SourceModel:
    timm = _import_extra("timm", "timm")
    if not timm.is_model(name):
        base = name.split(".")[0]
        close = difflib.get_close_matches(base.lower(), timm.list_models(), n=3, cutoff=0.6)
        hint = (
            f"; did you mean {', '.join('timm:' + c for c in close)}?"
            if close
            else "; see timm.list_models()"
        )
        raise ModelError(f"unknown timm model {name!r}{hint}")
    cfg = timm.models.get_pretrained_cfg(name)
    default = tuple(cfg.input_size) if cfg is not None and cfg.input_size else (3, 224, 224)
    kwargs: dict[str, Any] = {"pretrained": False}
    if input_size is not None and cfg is not None and cfg.fixed_input_size:
        kwargs["img_size"] = input_size  # ViT-like models size their position embeddings at build time
    shape = (default[0], input_size, input_size) if input_size is not None else default

    def build() -> nn.Module:
        return timm.create_model(name, **kwargs)

    if check_fits is not None:
        check_fits(f"timm:{name}", build, device)
    torch.manual_seed(seed)
    model = build_model(build, f"timm:{name}", f"building timm:{name} failed")
    mean = tuple(cfg.mean) if cfg is not None and cfg.mean else None
    std = tuple(cfg.std) if cfg is not None and cfg.std else None
    return SourceModel(model, f"timm:{name}", "classification", shape, mean, std, True)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{str(path)!r} is not readable JSON: {one_line(e)}") from e
    return data if isinstance(data, dict) else {}


def _hf_side(config: Any, pre: dict[str, Any]) -> int | None:
    """The square input side a Hugging Face image model expects, from its preprocessor or config."""
    for key in ("crop_size", "size"):
        v = pre.get(key)
        if isinstance(v, int):
            return v
        if isinstance(v, dict):
            for k in ("height", "shortest_edge", "width"):
                if isinstance(v.get(k), int):
                    return int(v[k])
    side = getattr(config, "image_size", None)
    if isinstance(side, (list, tuple)) and side:
        side = side[0]
    return int(side) if isinstance(side, int) else None


def _hf_build(
    folder: str, path: Path, config: Any, classes: list[Any], has_weights: bool
) -> tuple[nn.Module | None, list[Exception]]:
    """The model from the first auto class that knows the config: the folder's weights, else random."""
    errors: list[Exception] = []
    for auto in classes:
        try:
            if has_weights:
                return auto.from_pretrained(str(path), local_files_only=True), errors
            return auto.from_config(config), errors
        except ValueError as e:  # this auto class does not know the config: try the next one
            errors.append(e)
        except (MemoryError, torch.OutOfMemoryError) as e:
            raise OutOfMemoryError(f"not enough memory to build hf:{folder}") from e
        except Exception as e:
            raise ModelError(f"hf:{folder}: loading the model failed: {one_line(e)}") from e
    return None, errors


def _hf(folder: str, input_size: int | None, seed: int) -> SourceModel:
    path = Path(folder).expanduser()
    if not (path / "config.json").is_file():
        what = "does not exist" if not path.exists() else "has no config.json"
        raise ModelError(
            f"hf:{folder}: the folder {what}; hf: takes a local Hugging Face model folder (config.json and "
            "weights, e.g. from save_pretrained); nothing is downloaded"
        )
    transformers = _import_extra("transformers", "hf")
    try:
        config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as e:
        raise ModelError(f"hf:{folder}: config.json is not a model config: {one_line(e)}") from e
    has_weights = any((path / f).is_file() for f in _WEIGHT_FILES)
    archs = list(getattr(config, "architectures", None) or [])
    classes = (
        [transformers.AutoModelForImageClassification, transformers.AutoModel]
        if not archs or any("ImageClassification" in a for a in archs)
        else [transformers.AutoModel]
    )
    torch.manual_seed(seed)
    logging = transformers.utils.logging
    bars, verbosity = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()  # glnet reports its own progress: no "Loading weights" bar
    logging.set_verbosity_error()
    try:
        model, errors = _hf_build(folder, path, config, classes, has_weights)
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
    if model is None:
        raise ModelError(f"hf:{folder}: transformers cannot build it: {one_line(errors[-1])}")
    pre_file = path / "preprocessor_config.json"
    pre = _read_json(pre_file) if pre_file.is_file() else {}
    side = input_size or _hf_side(config, pre) or 224
    channels = int(getattr(config, "num_channels", 3) or 3)
    mean, std = pre.get("image_mean"), pre.get("image_std")
    return SourceModel(
        model,
        f"hf:{path.name or folder}",
        "transformers",
        (channels, side, side),
        tuple(mean) if isinstance(mean, list) else None,
        tuple(std) if isinstance(std, list) else None,
        not has_weights,
    )


def weight_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Key prefixes a checkpoint for ``model`` may carry or lack: wrappers (DDP, torch.compile, Lightning,
    timm's EMA) and a Hugging Face model's base-model prefix (``resnet.``, ``vit.``)."""
    out = ["module.", "_orig_mod.", "model.", "net.", "backbone."]
    base = getattr(model, "base_model_prefix", None)
    if isinstance(base, str) and base:
        out.append(base + ".")
    return tuple(dict.fromkeys(out))
