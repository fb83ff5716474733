"""Import torchvision's model definitions even when its compiled ops do not match torch.

PyPI's torchvision wheels are CUDA builds. Paired with a CPU-only torch (as on our CI machines) its C
extension fails to load, and ``import torchvision`` then dies in ``_meta_registrations`` with
"operator torchvision::nms does not exist", because it registers fake kernels for two ops that the
extension would have defined. glnet needs the model definitions, never those ops, so when (and only
when) the ops are missing we declare their two schemas before importing. A matching torchvision
(CPU or CUDA) already defines them, and is left untouched.
"""

from __future__ import annotations

import threading
import warnings
from types import ModuleType

_lock = threading.Lock()
_library = None  # keeps the fallback op schemas alive for the life of the process

# Schemas as torchvision's own C++ registers them (torchvision/csrc/ops/nms.cpp and qnms).
_MISSING_OP_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


def _ops_present() -> bool:
    import torch

    try:
        _ = torch.ops.torchvision.nms  # the attribute lookup is the probe
    except (AttributeError, RuntimeError):
        return False
    return True


def _load_extension(locations) -> bool:
    """Try loading torchvision's compiled ops the way torchvision does; False when they do not fit."""
    import glob
    import os

    import torch

    for folder in locations:
        for path in glob.glob(os.path.join(folder, "_C*.so")) + glob.glob(os.path.join(folder, "_C*.pyd")):
            try:
                torch.ops.load_library(path)
            except (OSError, RuntimeError):
                return False
            return _ops_present()
    return False


def prepare_torchvision() -> bool:
    """Declare torchvision's missing op schemas (when its extension does not fit torch) without importing it.

    Call before any code that may ``import torchvision`` itself (timm, a user's module). Returns False when
    torchvision is not installed; cheap and idempotent.
    """
    global _library
    with _lock:
        import importlib.util

        import torch

        spec = importlib.util.find_spec("torchvision")
        if spec is None or not spec.submodule_search_locations:
            return False
        if _library is None and not _ops_present() and not _load_extension(spec.submodule_search_locations):
            _library = torch.library.Library("torchvision", "FRAGMENT")
            for schema in _MISSING_OP_SCHEMAS:
                _library.define(schema)
        return True


def import_torchvision() -> ModuleType:
    """Return the ``torchvision`` module, declaring its missing op schemas first if needed."""
    import sys

    if "torchvision.models" in sys.modules:
        return sys.modules["torchvision"]
    if not prepare_torchvision():
        from .errors import ModelError

        raise ModelError("torchvision is not installed: pip install torchvision")
    with _lock, warnings.catch_warnings():
        # torchvision warns once that its extension did not load; that is expected here.
        warnings.simplefilter("ignore")
        import torchvision
        import torchvision.models
    return torchvision
