"""Jupyter: a model's cloud inline as a still or a short video (:func:`show`), and an interactive fly-through
in the cell (:func:`view`).

:func:`show` renders headless through EGL (:func:`glnet.render_snapshot`, :func:`glnet.render_tour`) and
returns an IPython display object. :func:`view` drives the window's :class:`~glnet.window.Viewer` (its
:class:`~glnet.camera.FlyController`, HUD and neuron picking) on a VisPy ``jupyter_rfb`` canvas: the widget
turns browser events into canvas events as VisPy's backend does. VisPy's backend would draw in a context of
a hidden GLFW window, which a headless kernel cannot open, so frames are drawn in glnet's own EGL context into
an offscreen framebuffer and handed to the widget from its ``get_frame``.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .capture import Trace, capture
from .errors import GLUnavailableError, InputError
from .gpu.context import GLContext, configure_platform, has_display

__all__ = [
    "NotebookView",
    "OffscreenScreen",
    "default_input",
    "in_notebook",
    "png_bytes",
    "show",
    "trace_of",
    "view",
]

ModelInput = torch.Tensor | str | os.PathLike[str] | Sequence[int] | None
# browser key names (KeyboardEvent.key, lower case) that the window's controls spell differently
BROWSER_KEYS = {
    "arrowup": "up", "arrowdown": "down", "arrowleft": "left", "arrowright": "right", " ": "space",
}  # fmt: skip
_NO_CELL_KEYS = {"f11"}  # a cell cannot go fullscreen


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where a widget can be shown), False in a terminal or a script."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def default_input(model: nn.Module, seed: int = 0) -> torch.Tensor:
    """A batch of one for a model given without an input, shaped by its first layer: the test image for a
    2-D conv (224 x 224; grey for one channel), a clip for a 3-D one, a signal for a 1-D one."""
    from .models import ModelSpec
    from .pipeline import make_input

    shape: tuple[int, ...] | None = None
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            shape = (m.in_channels, 224, 224)
        elif isinstance(m, nn.Conv3d):
            shape = (m.in_channels, 16, 112, 112)
        elif isinstance(m, nn.Conv1d):
            shape = (m.in_channels, 16000)
        elif isinstance(m, nn.Linear):
            shape = (m.in_features,)
        if shape is not None:
            break
    if shape is None:
        raise InputError(
            f"cannot tell what input {type(model).__name__} takes: pass input= (a tensor, an image file or "
            "a shape such as (1, 3, 224, 224))"
        )
    return make_input(ModelSpec(model, type(model).__name__, "custom", shape), seed=seed)


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def trace_of(
    model_or_trace: nn.Module | Trace | str, input: ModelInput = None, *, seed: int = 0
) -> tuple[Trace, nn.Module | None]:
    """The trace to draw and the model behind it (None for a given trace): a model name is built as
    ``glnet view`` builds it; a module is captured on ``input`` (a tensor, an image or tensor file, or a
    batch-first shape) or on :func:`default_input`."""
    from .pipeline import trace_model

    if isinstance(model_or_trace, Trace):
        if input is not None:
            raise InputError("a Trace was captured already: pass the model to capture it on a new input")
        return model_or_trace, None
    if isinstance(model_or_trace, str):
        shape = tuple(input) if isinstance(input, Sequence) and not isinstance(input, str) else None
        image = input if isinstance(input, (str, os.PathLike)) else None
        if isinstance(input, torch.Tensor):
            raise InputError("a model name takes an image or tensor file, or a shape: pass the module itself")
        prep = trace_model(model_or_trace, image=image, input_shape=shape, seed=seed)
        return prep.trace, prep.spec.model
    if not isinstance(model_or_trace, nn.Module):
        what = type(model_or_trace).__name__
        raise InputError(f"glnet.show and glnet.view take an nn.Module, a Trace or a model name, not {what}")
    model = model_or_trace
    if input is None:
        x = default_input(model, seed=seed)
    elif isinstance(input, torch.Tensor):
        x = input
    else:
        from .models import ModelSpec
        from .pipeline import make_input

        if isinstance(input, (str, os.PathLike)):  # an image (sized for the first layer) or a tensor file
            per = tuple(default_input(model, seed=seed).shape[1:])
            x = make_input(ModelSpec(model, type(model).__name__, "custom", per), input, seed=seed)
        else:
            spec = ModelSpec(model, type(model).__name__, "custom", ())
            x = make_input(spec, seed=seed, shape=tuple(int(v) for v in input))
    x = x.to(_device(model))
    return capture(model, x, model_name=type(model).__name__), model


def show(
    model_or_trace: nn.Module | Trace | str,
    input: ModelInput = None,
    *,
    size: tuple[int, int] = (960, 540),
    camera: Any = None,
    seconds: float | None = None,
    tour: Any = "flythrough",
    fps: float = 15.0,
    renderer: str = "auto",
    hud: bool = True,
    pick: tuple[int, int] | None = None,
    lod: bool = False,
    max_neurons: int | None = None,
) -> Any:
    """The model's cloud inline: a still (an ``IPython.display.Image``) from ``camera``, or with ``seconds``
    a video of ``tour`` (``IPython.display.Video``, MP4 embedded; an animated GIF where no encoder is)."""
    from IPython.display import Image

    configure_platform(headless=True)
    trace, model = trace_of(model_or_trace, input)
    if seconds is None:
        from .app import render_snapshot

        snap = render_snapshot(
            trace, size=size, camera=camera, renderer=renderer, hud=hud, pick=pick, model=model,
            lod=lod, max_neurons=max_neurons, timed_frames=1,
        )  # fmt: skip
        return Image(data=png_bytes(snap.image), format="png", width=size[0], height=size[1])
    if camera is not None or pick is not None:
        raise InputError("camera and pick set a still's view: a video (seconds=) follows the tour")
    return _video(trace, size, seconds, tour, fps, renderer, hud, lod, max_neurons)


def png_bytes(image: np.ndarray) -> bytes:
    """An (H, W, 3|4) uint8 frame as PNG bytes (alpha dropped)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image[..., :3])).save(buf, format="PNG")
    return buf.getvalue()


def _video(
    trace: Trace, size: tuple[int, int], seconds: float, tour: Any, fps: float, renderer: str, hud: bool,
    lod: bool, max_neurons: int | None,
) -> Any:  # fmt: skip
    from IPython.display import Image, Video

    from .offline import render_tour
    from .record import VideoWriteError

    with tempfile.TemporaryDirectory(prefix="glnet-show-") as tmp:
        options = dict(
            tour=tour, size=size, seconds=seconds, fps=fps, renderer=renderer, hud=hud, lod=lod,
            max_neurons=max_neurons, progress=seconds * fps > 90,  # a bar only where it takes a while
        )  # fmt: skip
        try:
            rec = render_tour(trace, Path(tmp) / "show.mp4", **options)
        except (VideoWriteError, InputError) as e:
            if "encoder" not in str(e) and "PyAV" not in str(e):
                raise
            rec = render_tour(trace, Path(tmp) / "show.gif", **options)  # no MP4 encoder here
            return Image(data=Path(rec.path).read_bytes(), format="gif", width=size[0], height=size[1])
        data = Path(rec.path).read_bytes()
    return Video(
        data=data, embed=True, mimetype="video/mp4", width=size[0], height=size[1],
        html_attributes="controls autoplay loop muted",
    )  # fmt: skip


class OffscreenScreen:
    """A render target the size of a canvas's frame: a framebuffer remade when the canvas is resized."""

    def __init__(self, ctx: GLContext, canvas: Any, size: tuple[int, int]) -> None:
        self.ctx = ctx
        self.canvas = canvas
        self.size = size  # until the browser says how large the cell shows the widget
        self.framebuffer: Any = None

    @property
    def width(self) -> int:
        w = int(self.canvas.physical_size[0])
        return w if w > 1 else self.size[0]

    @property
    def height(self) -> int:
        h = int(self.canvas.physical_size[1])
        return h if h > 1 else self.size[1]

    def bind(self) -> None:
        from .gpu.framebuffer import Framebuffer

        w, h = self.width, self.height
        fb = self.framebuffer
        if fb is None or (fb.width, fb.height) != (w, h):
            if fb is not None:
                fb.delete()
            self.framebuffer = fb = Framebuffer(self.ctx, w, h, label="notebook")
        fb.bind()

    def read_rgba(self) -> np.ndarray:
        """The last frame drawn, (H, W, 4) uint8, top row first."""
        return self.framebuffer.read_rgba()


@contextmanager
def _quiet_glfw() -> Iterator[None]:
    """VisPy's jupyter_rfb canvas always tries a hidden GLFW window, which fails headless: not glnet's
    context, so its GLFW warnings are noise here."""
    with warnings.catch_warnings():
        try:
            import glfw

            warnings.simplefilter("ignore", glfw.GLFWError)
        except ImportError:
            pass
        yield


class NotebookView:
    """An interactive fly-through in a notebook cell: VisPy's jupyter_rfb widget driven by the window's
    :class:`~glnet.window.Viewer` (keys, mouse, wheel, hover and click picking as in the window).

    ``widget`` is the ipywidget (display it, or put it in a layout); ``draw()`` renders a frame and returns
    it. Make it where an asyncio loop runs (a kernel does), as the Viewer's timer needs one.
    """

    def __init__(
        self,
        trace: Trace,
        *,
        model: nn.Module | None = None,
        size: tuple[int, int] = (960, 540),
        renderer: str = "auto",
        lod: bool = False,
        max_neurons: int | None = None,
        labels: str | Sequence[str] | None = None,
    ) -> None:
        configure_platform(headless=True)
        from vispy import app

        from .window import Viewer

        try:
            application = app.Application("jupyter_rfb")  # not the process default: contexts stay on EGL
        except Exception as e:
            why = str(e).strip()[:160]
            raise GLUnavailableError(f"no VisPy jupyter_rfb ({why}): pip install glnet[jupyter]") from e
        ctx = GLContext.offscreen()
        try:
            with _quiet_glfw():
                canvas = app.Canvas(app=application, size=size, keys=None, title="")
            self.widget = canvas.native
            self.screen = OffscreenScreen(ctx, canvas, size)
            self.viewer = Viewer(
                trace, size=size, renderer=renderer, lod=lod, max_neurons=max_neurons, model=model,
                labels=labels, canvas=canvas, ctx=ctx, screen=self.screen,
            )  # fmt: skip
        except BaseException:
            ctx.close()
            raise
        self.canvas = canvas
        self.viewer.add_key_handler(self._browser_key)
        self.widget.get_frame = self.draw  # jupyter_rfb calls this for every frame it sends
        self._events = self.widget.handle_event
        self.widget.handle_event = self.handle_event

    def _browser_key(self, name: str, pressed: bool, _modifiers: frozenset[str]) -> bool:
        if name in _NO_CELL_KEYS:
            return True
        alias = BROWSER_KEYS.get(name)
        if alias is None:
            return False
        self.viewer.controller.key(alias, pressed)
        return True

    def handle_event(self, event: dict[str, Any]) -> None:
        """A jupyter_rfb event (pointer_down/move/up, wheel, key_down/up, resize, close), as the browser
        sends it: VisPy's backend turns it into canvas events, which the Viewer handles."""
        closing = event.get("type", event.get("event_type")) == "close"
        if self.viewer.closed and not closing:
            return
        with _quiet_glfw():
            self._events(event)
            if closing:
                self.viewer.close()

    def draw(self) -> np.ndarray | None:
        """Draw a frame now (the Viewer's HUD and inspector included) and return it, (H, W, 4) uint8."""
        if self.viewer.closed:
            return None
        self.viewer.ctx.make_current()
        self.canvas.events.draw(region=None)
        return self.screen.read_rgba()

    def snapshot(self) -> Any:
        """The current frame as an ``IPython.display.Image`` (a saved notebook keeps it; widgets go)."""
        from IPython.display import Image

        frame = self.draw()
        if frame is None:
            raise InputError("the view is closed")
        return Image(data=png_bytes(frame), format="png")

    def close(self) -> None:
        """Close the widget and free its GL objects and context."""
        with _quiet_glfw():
            self.viewer.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def view(
    model_or_trace: nn.Module | Trace | str,
    input: ModelInput = None,
    *,
    size: tuple[int, int] = (960, 540),
    renderer: str = "auto",
    lod: bool = False,
    max_neurons: int | None = None,
    labels: str | Sequence[str] | None = None,
) -> NotebookView | None:
    """Fly through the model: in a notebook an interactive view in the cell (a :class:`NotebookView`),
    elsewhere the window ``glnet view`` opens (until it is closed); needs one or the other."""
    notebook = in_notebook()
    if not notebook and not has_display():
        raise GLUnavailableError(
            "glnet.view needs a Jupyter kernel (a view in the cell) or a display (a window); here there is "
            "neither: use glnet.show(model, seconds=6) or `glnet view MODEL` (which records the tour to MP4)"
        )
    configure_platform(headless=notebook)
    trace, model = trace_of(model_or_trace, input)
    options = dict(size=size, renderer=renderer, lod=lod, max_neurons=max_neurons, model=model, labels=labels)
    if notebook:
        return NotebookView(trace, **options)  # type: ignore[arg-type]
    from .window import Viewer

    viewer = Viewer(trace, title=f"glnet - {trace.model_name}", **options)  # type: ignore[arg-type]
    viewer.run()
    return None
