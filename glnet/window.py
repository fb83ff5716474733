"""The window: a VisPy canvas on GLFW to fly through a trace, with hooks for whoever drives it.

:class:`Viewer` owns the window, its GL context, the :class:`~glnet.app.Visualization`, the camera and its
:class:`~glnet.camera.FlyController`. It redraws only when the camera moves, new values are queued or someone
calls :meth:`Viewer.request_draw`. Callers extend it through hooks instead of its internals: key handlers run
before the fly controls and may consume a key, tick handlers run on every timer tick, :meth:`Viewer.set_draw`
replaces the whole frame, and close handlers run once, with the context current, before teardown.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .app import Visualization
from .camera import FlyController, camera_from_spec
from .capture import Trace
from .errors import GLUnavailableError, InputError
from .gpu.context import GLContext, configure_platform

if TYPE_CHECKING:
    from torch import nn

    from .render.hud import Curves
    from .render.pick import Pick
    from .render.scene import FrameStats

__all__ = [
    "CloseHandler", "DrawFunction", "KeyHandler", "Monitor", "Screen", "TickHandler", "Viewer",
    "choose_monitor", "monitors",
]  # fmt: skip

KeyHandler = Callable[[str, bool, frozenset[str]], bool]  # (key name, pressed, modifiers) -> consumed
TickHandler = Callable[[float], None]  # (seconds since the last tick)
DrawFunction = Callable[[Any], None]  # (render target): draw a whole frame
CloseHandler = Callable[[], None]

TICK_S = 1 / 120  # timer interval: key motion is integrated at this rate
_WAIT_S = 0.004  # longest sleep between event polls, well under one tick
CLICK_SLOP_PX = 3.0  # a press and release this close together are a click (a pick), farther a drag (a look)


class Screen:
    """The window's default framebuffer as a render target, sized in device pixels."""

    def __init__(self, canvas: Any) -> None:
        self.canvas = canvas

    @property
    def width(self) -> int:
        return int(self.canvas.physical_size[0])

    @property
    def height(self) -> int:
        return int(self.canvas.physical_size[1])

    def bind(self) -> None:
        from OpenGL import GL

        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        GL.glViewport(0, 0, self.width, self.height)


def _glfw_window(canvas: Any) -> Any:
    """The GLFW window pointer behind a VisPy canvas on the GLFW backend."""
    # VisPy has no public accessor: its GLFW backend object (canvas.native) keeps the pointer in ``_id``.
    return canvas.native._id


def _fullscreen_monitor(win: Any) -> Any:
    """The monitor a fullscreen window covers, or None when windowed."""
    import glfw

    monitor = glfw.get_window_monitor(win)
    return monitor if monitor else None  # pyGLFW returns a NULL pointer, not None, for a windowed window


@dataclass(frozen=True)
class Monitor:
    """A monitor as GLFW reports it: ``index`` is what ``--screen`` takes; sizes in screen coordinates."""

    index: int
    name: str
    mode: tuple[int, int, int]  # native video mode: width, height, refresh rate (Hz; 0 when unknown)
    position: tuple[int, int]  # top-left corner on the virtual desktop
    scale: tuple[float, float]  # content scale: device pixels per screen coordinate (HiDPI: 2.0)
    handle: Any = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        w, h, hz = self.mode
        rate = f"@{hz}Hz" if hz else ""
        return (
            f"{self.index}: {self.name} {w}x{h}{rate} at {self.position[0]},{self.position[1]} "
            f"scale {self.scale[0]:g}x{self.scale[1]:g}"
        )


def monitors() -> list[Monitor]:
    """The monitors GLFW sees on this display (needs a display: GLUnavailableError without one)."""
    import glfw

    if not glfw.init():
        raise GLUnavailableError("GLFW cannot start: no display to list monitors on")
    out = []
    for i, m in enumerate(glfw.get_monitors() or []):
        mode = glfw.get_video_mode(m)
        name = glfw.get_monitor_name(m)
        text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        size = (mode.size.width, mode.size.height, mode.refresh_rate)
        pos, scale = tuple(glfw.get_monitor_pos(m)), tuple(glfw.get_monitor_content_scale(m))
        out.append(Monitor(i, text, size, pos, scale, m))
    return out


def choose_monitor(index: int, available: Sequence[Monitor]) -> Monitor:
    """Monitor ``index`` (``--screen``), or an InputError naming the monitors there are."""
    if 0 <= index < len(available):
        return available[index]
    there = "; ".join(m.describe() for m in available) or "none"
    raise InputError(f"no monitor {index} (--screen): the monitors here are {there}")


def centred_on(monitor: Monitor, size: tuple[int, int]) -> tuple[int, int]:
    """Where a window of ``size`` sits centred on ``monitor`` (its top-left corner)."""
    (mx, my), (mw, mh, _) = monitor.position, monitor.mode
    return mx + max(0, (mw - size[0]) // 2), my + max(0, (mh - size[1]) // 2)


def _monitor_of(win: Any) -> Any:
    """The monitor holding the window's centre (the primary one if none does)."""
    import glfw

    x, y = glfw.get_window_pos(win)
    w, h = glfw.get_window_size(win)
    cx, cy = x + w // 2, y + h // 2
    for monitor in glfw.get_monitors() or []:
        mx, my = glfw.get_monitor_pos(monitor)
        mode = glfw.get_video_mode(monitor)
        if mx <= cx < mx + mode.size.width and my <= cy < my + mode.size.height:
            return monitor
    return glfw.get_primary_monitor()


class Viewer:
    """A window (VisPy on GLFW) to fly through a trace: controls in :data:`glnet.camera.CONTROLS`. With
    ``canvas``, ``ctx`` and ``screen`` it drives a canvas made elsewhere instead (the notebook widget of
    :mod:`glnet.notebook`), drawing in ``ctx`` (which it then owns) into the target ``screen``."""

    def __init__(
        self,
        trace: Trace,
        *,
        size: tuple[int, int] = (1280, 720),
        fullscreen: bool = False,
        renderer: str = "auto",
        title: str = "glnet",
        backend: str = "glfw",
        lod: bool = False,
        max_neurons: int | None = None,
        model: nn.Module | None = None,
        labels: str | Sequence[str] | None = None,
        canvas: Any = None,
        ctx: GLContext | None = None,
        screen: Any = None,
        monitor: int | None = None,
    ) -> None:
        from vispy import app

        place: Monitor | None = None
        if canvas is None:
            configure_platform(headless=False)
            try:
                self.app = app.use_app(backend)
            except Exception as e:
                why = str(e).strip()[:160]
                raise GLUnavailableError(f"cannot open a window with {backend} ({why})") from e
            if monitor is not None:  # --screen: on that monitor (GLFW), fullscreen there at its own mode
                place = choose_monitor(monitor, monitors() if backend == "glfw" else [])
            try:
                self.canvas = app.Canvas(
                    title=title, size=size, fullscreen=fullscreen and place is None, keys=None, show=True,
                    app=self.app, vsync=True,
                )  # fmt: skip
            except Exception as e:
                why = str(e).strip()[:160]
                raise GLUnavailableError(f"cannot open a window with {backend} ({why})") from e
            self.ctx = GLContext(self.canvas, owns_canvas=False)
            self.screen: Any = Screen(self.canvas)
        else:  # a canvas made elsewhere (a notebook widget: glnet.notebook), drawn through ctx into screen
            if ctx is None or screen is None:
                raise ValueError("a Viewer on a given canvas needs the GL context and the screen to draw in")
            self.app, self.canvas, self.ctx, self.screen = canvas.app, canvas, ctx, screen
            backend = canvas.app.backend_name.lower()
        self.backend = backend
        self.size = size
        self.vis = Visualization(
            self.ctx, trace, renderer=renderer, lod=lod, max_neurons=max_neurons, model=model, labels=labels
        )
        aspect = self._aspect()
        self.camera = camera_from_spec(None, self.vis.layout, aspect)
        self.controller = FlyController(self.camera, self.vis.layout, aspect=aspect)
        self.frames = 0
        self.frame_ms: float | None = None
        self.curves: Curves | None = None
        self.hud_lines: list[str] = []  # the standard HUD's text in the last default frame
        self.closed = False
        self._stats: FrameStats | None = None
        self._key_handlers: list[KeyHandler] = []
        self._tick_handlers: list[TickHandler] = []
        self._close_handlers: list[CloseHandler] = []
        self._draw_fn: DrawFunction | None = None
        self._drawing = False
        self._windowed: tuple[int, int, int, int] | None = None  # position and size before fullscreen
        self._last = time.perf_counter()
        self._dirty = True
        if place is not None:
            self._place(place, fullscreen)
        self.picking = True  # hover explains the neuron under the cursor; a click pins it with its saliency
        self.pinned = False
        self.picked: Pick | None = None
        self._hover: tuple[float, float] | None = None  # cursor position (window pixels) not yet picked
        self._click: tuple[float, float] | None = None
        c = self.canvas.events
        c.draw.connect(self._on_draw)
        c.key_press.connect(lambda e: self._on_key(e, True))
        c.key_release.connect(lambda e: self._on_key(e, False))
        c.mouse_move.connect(self._on_mouse_move)
        c.mouse_release.connect(self._on_mouse_release)
        c.mouse_wheel.connect(self._on_wheel)
        c.resize.connect(self._on_resize)
        c.close.connect(self._on_close)
        self.timer = app.Timer(TICK_S, connect=self._on_tick, app=self.app, start=True)

    # -- hooks -------------------------------------------------------------------------------------------
    def add_key_handler(self, fn: KeyHandler) -> None:
        """Call ``fn(name, pressed, modifiers)`` on every key press and release, before the fly controls;
        a True return consumes the key."""
        self._key_handlers.append(fn)

    def add_tick_handler(self, fn: TickHandler) -> None:
        """Call ``fn(dt)`` on every timer tick, on the GUI thread with the context current."""
        self._tick_handlers.append(fn)

    def add_close_handler(self, fn: CloseHandler) -> None:
        """Call ``fn()`` once when the window closes, context current, before glnet's GL objects go."""
        self._close_handlers.append(fn)

    def set_draw(self, fn: DrawFunction | None) -> None:
        """Draw whole frames with ``fn(target)`` instead of the trace and standard HUD (None: the default)."""
        self._draw_fn = fn
        self.request_draw()

    # -- actions -----------------------------------------------------------------------------------------
    def request_draw(self) -> None:
        """Redraw on the next tick."""
        self._dirty = True

    def close(self) -> None:
        """Close the window (runs the close handlers); the event loop then ends."""
        if not self.closed:
            self.canvas.close()

    @property
    def fullscreen(self) -> bool:
        """Whether the window covers a whole monitor."""
        if self.backend != "glfw" or self.closed:
            return bool(self.canvas.fullscreen)
        return _fullscreen_monitor(_glfw_window(self.canvas)) is not None

    def toggle_fullscreen(self) -> None:
        """Fullscreen on the window's monitor, or back to the window's earlier place and size."""
        if self.closed:
            return
        if self.backend != "glfw":
            self.canvas.fullscreen = not self.canvas.fullscreen
            return
        import glfw

        # VisPy's GLFW backend cannot switch at run time, so switch the GLFW window itself.
        win = _glfw_window(self.canvas)
        monitor = _fullscreen_monitor(win)
        if monitor is None:
            self._windowed = (*glfw.get_window_pos(win), *glfw.get_window_size(win))
            monitor = _monitor_of(win)
            mode = glfw.get_video_mode(monitor)
            glfw.set_window_monitor(win, monitor, 0, 0, mode.size.width, mode.size.height, mode.refresh_rate)
        else:
            if self._windowed is None:  # started fullscreen: the requested size, centred
                mode = glfw.get_video_mode(monitor)
                w, h = self.size
                self._windowed = ((mode.size.width - w) // 2, (mode.size.height - h) // 2, w, h)
            x, y, w, h = self._windowed
            glfw.set_window_monitor(win, None, x, y, w, h, 0)
        self.request_draw()

    def _place(self, monitor: Monitor, fullscreen: bool) -> None:
        """Move the window onto ``monitor``, centred; with ``fullscreen`` cover it at its native mode (F11
        then comes back to the centred window there)."""
        import glfw

        win = _glfw_window(self.canvas)
        x, y = centred_on(monitor, self.size)
        glfw.set_window_pos(win, x, y)
        self._windowed = (x, y, *self.size)
        if fullscreen:
            w, h, hz = monitor.mode
            glfw.set_window_monitor(win, monitor.handle, 0, 0, w, h, hz)
        self.request_draw()

    def read_pixels(self) -> np.ndarray:
        """The window's frame as (height, width, 4) uint8, top row first: inside a draw function what it
        has drawn so far, elsewhere a frame drawn now (the back buffer is undefined after a swap)."""
        from OpenGL import GL

        self.ctx.make_current()
        if not self._drawing:
            self._draw_frame()
            self.request_draw()
        w, h = self.screen.width, self.screen.height
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, 0)
        GL.glReadBuffer(GL.GL_BACK)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        out = np.empty((h, w, 4), np.uint8)
        GL.glReadPixels(0, 0, w, h, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, out)
        return out[::-1].copy()

    def run(self, max_seconds: float | None = None) -> None:
        """Run the event loop until the window closes (or ``max_seconds`` pass, for tests)."""
        if self.closed:
            return
        deadline = None if max_seconds is None else time.perf_counter() + max_seconds
        if self.backend != "glfw":
            if deadline is not None:
                from vispy import app

                app.Timer(max_seconds, connect=lambda e: self.close(), iterations=1, app=self.app, start=True)
            self.app.run()
            return
        import glfw

        # VisPy's own GLFW loop polls without sleeping; waiting for events keeps a core free.
        while not self.closed:
            if deadline is not None and time.perf_counter() >= deadline:
                self.close()
                break
            glfw.wait_events_timeout(_WAIT_S)
            self.app.process_events()

    # -- events ------------------------------------------------------------------------------------------
    def _aspect(self) -> float:
        w, h = self.screen.width, self.screen.height
        return w / h if w > 0 and h > 0 else self.size[0] / self.size[1]

    def _on_tick(self, _event: Any) -> None:
        if self.closed:
            return
        now = time.perf_counter()
        dt, self._last = now - self._last, now
        self.ctx.make_current()
        for fn in list(self._tick_handlers):
            fn(dt)
            if self.closed:
                return
        self._pick_pending()
        if self.controller.update(dt):
            self._dirty = True
        requests, self.controller.requests = list(self.controller.requests), []
        for req in requests:
            if req == "fullscreen":
                self.toggle_fullscreen()
            elif req == "edges":
                self.vis.scene.show_edges = not self.vis.scene.show_edges
                self._dirty = True
            elif req == "quit":
                self.close()
                return
        if self._dirty or self.vis.cloud.values.dirty:
            self._dirty = False
            self.canvas.update()

    def _draw_frame(self) -> None:
        if self._draw_fn is not None:
            self._draw_fn(self.screen)
            return
        self.hud_lines = self.vis.hud_lines(self.camera, self.frame_ms, self._stats)
        self._stats = self.vis.render(
            self.camera, self.screen, hud=self.hud_lines, curves=self.curves, finish=True
        )

    def _on_draw(self, _event: Any) -> None:
        if self.closed or self.screen.width == 0 or self.screen.height == 0:
            return
        t0 = time.perf_counter()
        self._drawing = True
        try:
            self._draw_frame()
        finally:
            self._drawing = False
        ms = (time.perf_counter() - t0) * 1e3
        self.frame_ms = ms if self.frame_ms is None else 0.8 * self.frame_ms + 0.2 * ms
        self.frames += 1

    def _on_key(self, event: Any, pressed: bool) -> None:
        if event.key is None:
            return
        name = event.key.name.lower()
        modifiers = frozenset(m.name.lower() for m in event.modifiers or ())
        for fn in list(self._key_handlers):
            if fn(name, pressed, modifiers):
                self._dirty = True
                return
        if self.controller.key(name, pressed):
            self._dirty = True

    def pick_at(self, x: float, y: float, *, saliency: bool = False) -> Pick | None:
        """Pick the neuron drawn under window position (x, y) (top-left origin, window pixels) and show
        it in the inspector (None clears it); ``saliency`` adds its saliency map (one backward pass)."""
        pick = self._pick(x, y)
        self._show(pick, saliency)
        return pick

    def _pick(self, x: float, y: float) -> Pick | None:
        self.ctx.make_current()
        sx = self.screen.width / max(1, self.canvas.size[0])
        sy = self.screen.height / max(1, self.canvas.size[1])
        return self.vis.pick(self.camera, self.screen.width, self.screen.height, int(x * sx), int(y * sy))

    def _show(self, pick: Pick | None, saliency: bool) -> None:
        self.picked = pick
        self.vis.inspect(pick, saliency=saliency)
        self.request_draw()

    def _pick_pending(self) -> None:
        """At most one pick a tick: a click pins (or, on empty space, clears); hovering follows the cursor
        over neurons while nothing is pinned."""
        if not self.picking:
            return
        if self._click is not None:
            click, self._click, self._hover = self._click, None, None
            self.pinned = self.pick_at(*click, saliency=True) is not None
        elif self._hover is not None and not self.pinned:
            hover, self._hover = self._hover, None
            pick = self._pick(*hover)
            old = self.picked
            if pick is not None and (old is None or (old.layer, old.index) != (pick.layer, pick.index)):
                self._show(pick, saliency=False)

    def _on_mouse_move(self, event: Any) -> None:
        if event.is_dragging and event.last_event is not None:
            dx, dy = np.asarray(event.pos) - np.asarray(event.last_event.pos)
            self.controller.look(float(dx), float(dy))
            self._dirty = True
        elif not event.is_dragging:
            self._hover = (float(event.pos[0]), float(event.pos[1]))

    def _on_mouse_release(self, event: Any) -> None:
        press = getattr(event, "press_event", None)
        if event.button != 1 or press is None:
            return
        if np.hypot(*(np.asarray(event.pos) - np.asarray(press.pos))) <= CLICK_SLOP_PX:  # not a drag
            self._click = (float(event.pos[0]), float(event.pos[1]))

    def _on_wheel(self, event: Any) -> None:
        self.controller.scale_speed(float(event.delta[1]))
        self._dirty = True

    def _on_resize(self, _event: Any) -> None:
        self.controller.aspect = self._aspect()
        self.request_draw()

    def _on_close(self, _event: Any) -> None:
        if self.closed:
            return
        self.closed = True
        self.timer.stop()
        self.ctx.make_current()
        try:
            for fn in self._close_handlers:
                fn()
        finally:
            self.vis.close()
            self.ctx.close()
            self.app.quit()
