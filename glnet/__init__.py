"""glnet: every neuron of a PyTorch model as a 3D point cloud you can fly through, drawn with OpenGL.

The data flows through one module per stage::

    model + input -> capture -> layout -> gpu (buffers, textures, interop) -> render -> camera
                  -> app (window or offscreen)

The public API is re-exported here. ``capture`` and ``live`` are bound at import (their modules have the same
names, and a lazily resolved name would be shadowed by the submodule once anything imports it); the rest is
imported lazily, so ``import glnet`` never touches OpenGL, which must be configured for EGL or GLX before it
is first imported.

Example::

    import glnet, torch, torchvision
    trace = glnet.capture(model, x)                       # activations, shapes, weights
    glnet.render_snapshot(trace, size=(1920, 1080)).save("model.png")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "capture": "glnet.capture",
    "Trace": "glnet.capture",
    "LayerRecord": "glnet.capture",
    "build_layout": "glnet.layout",
    "Layout": "glnet.layout",
    "Camera": "glnet.camera",
    "FlyController": "glnet.camera",
    "named_camera": "glnet.camera",
    "GLContext": "glnet.gpu.context",
    "configure_platform": "glnet.gpu.context",
    "NeuronCloud": "glnet.gpu.cloud",
    "Visualization": "glnet.app",
    "Viewer": "glnet.window",
    "render_snapshot": "glnet.app",
    "render_tour": "glnet.offline",
    "Tour": "glnet.tour",
    "load_tour": "glnet.tour",
    "layout_for": "glnet.layout",
    "trace_model": "glnet.pipeline",
    "load_model": "glnet.models",
    "load_weights": "glnet.models",
    "test_image": "glnet.testimage",
    "GlnetError": "glnet.errors",
    "live": "glnet.live",
    "Live": "glnet.live",
    "show": "glnet.notebook",
    "view": "glnet.notebook",
    "NotebookView": "glnet.notebook",
}

__all__ = sorted(_EXPORTS)

from .capture import capture  # noqa: E402  (see the module docstring)
from .live import live  # noqa: E402  (the same: the function, not its module glnet.live)

if TYPE_CHECKING:
    from .app import Visualization, render_snapshot
    from .camera import Camera, FlyController, named_camera
    from .capture import LayerRecord, Trace
    from .errors import GlnetError
    from .gpu.cloud import NeuronCloud
    from .gpu.context import GLContext, configure_platform
    from .layout import Layout, build_layout, layout_for
    from .live import Live
    from .models import load_model, load_weights
    from .notebook import NotebookView, show, view
    from .offline import render_tour
    from .pipeline import trace_model
    from .testimage import test_image
    from .tour import Tour, load_tour
    from .window import Viewer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'glnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
