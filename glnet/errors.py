"""The errors glnet raises for the user to read: one line each, no traceback needed.

The CLI prints ``glnet: error: <message>`` for any :class:`GlnetError` and exits non-zero;
everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "CaptureError",
    "CudaInteropUnavailable",
    "GLThreadError",
    "GLUnavailableError",
    "GlnetError",
    "InputError",
    "MappingError",
    "ModelError",
    "NonFiniteError",
    "OutOfMemoryError",
    "ViewerError",
    "WeightsError",
]


class GlnetError(Exception):
    """Base class: an error whose message alone tells the user what went wrong and what to do."""

    exit_code = 2


class ModelError(GlnetError):
    """The model could not be found, built or loaded."""


class WeightsError(GlnetError):
    """A weights file is unreadable, unsafe or does not match the model."""


class InputError(GlnetError):
    """An input (image, size, camera, data folder, option) is not usable."""


class CaptureError(GlnetError):
    """The model's forward pass failed while glnet was recording it."""


class NonFiniteError(GlnetError):
    """Training produced NaN or Inf; ``layer`` names the first layer holding one."""

    def __init__(self, message: str, layer: str | None = None, step: int | None = None) -> None:
        super().__init__(message)
        self.layer = layer
        self.step = step


class OutOfMemoryError(GlnetError):
    """A model, batch or frame does not fit in host or device memory."""


class GLUnavailableError(GlnetError):
    """No usable OpenGL context (driver, libraries or version missing)."""


class GLThreadError(GlnetError, RuntimeError):
    """A GL context was used from a thread that does not own it; hand it over with ``release()`` first."""


class MappingError(GlnetError, RuntimeError):
    """A persistently mapped GL buffer could not be created or mapped; callers fall back to plain uploads."""


class ViewerError(GlnetError):
    """The live viewer process could not start or failed; training itself is unaffected."""


class CudaInteropUnavailable(GlnetError):
    """CUDA-OpenGL buffer sharing cannot be used here; callers fall back to host uploads."""
