"""The viewer process: a window (or the headless recorder) fed by a training process.

Started by :class:`glnet.live.Live` with ``torch.multiprocessing`` (spawn), it owns its main thread (GLFW
needs it) and its GL context; the trainer holds none. Messages, both ways over two queues:

* trainer -> viewer: ``("frame", slot, FrameMeta)``, ``("weights", mode)`` (the panel weights were refreshed),
  ``("finish", reason)`` (draw what is queued, then end; a window with ``hold`` stays until closed),
  ``("close",)`` (end now).
* viewer -> trainer: ``("ready", info)``, ``("error", kind, message)``, ``("released", [slots], counters)``,
  ``("image", step, (H, W, 3) uint8)`` (a drawn frame, when the spec asks for images),
  ``("mode", mode)`` (a key in the window), ``("closed", reason)`` (the window was closed),
  ``("done", counters)``.

The viewer ignores Ctrl-C (the trainer handles it and then ends the viewer) and ends by itself when the
trainer process is gone, so it never outlives it.
"""

from __future__ import annotations

import collections
import ctypes
import multiprocessing
import os
import queue
import signal
import sys
from dataclasses import dataclass
from typing import Any

import torch

from ..capture import Trace
from .handover import FrameMeta, PanelWeights, Slots

__all__ = ["MODE_KEYS", "ViewerSpec", "mode_for_key", "run_viewer"]

MODE_KEYS = {"1": "activations", "2": "gradients", "3": "weights"}  # plus G and Shift+W, see mode_for_key


@dataclass
class ViewerSpec:
    """Everything the viewer process needs besides the slots (pickled to it at start)."""

    trace: Trace  # a detached CPU copy, for the layout and the first picture
    offsets: list[int]  # each layer's byte offset in a slot
    counts: list[int]
    policy: str = "latest"  # latest: draw the newest frame; queue: draw every frame in order
    headless: bool = True
    record: str | None = None
    size: tuple[int, int] = (1280, 720)
    fps: float = 15.0
    renderer: str = "auto"
    camera: Any = None  # a --camera spec string, or a Camera
    update_path: str = "auto"
    title: str = ""
    total_steps: int | None = None
    hold: bool = True
    panels: PanelWeights | None = None  # the weights of the panel layers, refreshed by the trainer
    nice: int = 10  # the viewer's scheduling niceness, above the trainer's
    labels: list[str] | None = None  # class names for the top-5 (the dataset's while training)
    cuda_device: int | None = None  # the CUDA ordinal of the slots: a headless viewer renders on that GPU
    gl_device: int | None = None  # or on this EGL device (--gl-device)
    images: bool = False  # send each drawn frame back to the trainer (its TensorBoard writer)
    hud: bool = True  # False: the picture only
    wall: Any = None  # a glnet.wall.WallSpec: this process is rank 0 of a wall (glnet.live.wall)
    wall_addr: str = ""  # the wall's tcp:// rendezvous
    wall_timeout: float = 60.0  # seconds a wall collective may wait on a silent rank


def mode_for_key(key: str, shift: bool, current: str) -> str | None:
    """The display mode a key asks for: 1/2/3, G toggles gradients, Shift+W toggles weight change."""
    if key == "g":
        return "activations" if current == "gradients" else "gradients"
    if key == "w" and shift:
        return "activations" if current == "weights" else "weights"
    return MODE_KEYS.get(key)


def die_with_parent() -> None:
    """Ask Linux for SIGTERM when the trainer dies (on top of polling it), and end cleanly on SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


class _Loop:
    """The viewer's state between messages: frames waiting to be drawn and what to tell the trainer."""

    def __init__(self, spec: ViewerSpec, slots: Slots, inbox: Any, outbox: Any) -> None:
        self.spec, self.slots, self.inbox, self.outbox = spec, slots, inbox, outbox
        self.pending: collections.deque[tuple[int, FrameMeta]] = collections.deque()
        self.superseded = 0
        self.finishing = False
        self.closing = False
        self.redraw = False  # something the HUD shows changed without a new frame
        self.panels_due: str | None = None  # the trainer refreshed the panel weights (for this mode)
        self.view: Any = None
        self.writer: Any = None
        self.shown: FrameMeta | None = None  # the frame presented last
        self.parent = multiprocessing.parent_process()
        self.wall_report: dict[str, Any] | None = None  # what a wall's ranks drew, for the trainer's stats

    def counters(self) -> dict[str, Any]:
        v = self.view
        return {
            "frames": v.frames if v else 0,
            "superseded": self.superseded,
            "bytes_device_to_host": v.upload.bytes_device_to_host if v else 0,
            "range_bytes_to_host": v.upload.range_bytes_to_host if v else 0,
        }

    def trainer_gone(self) -> bool:
        return self.parent is not None and not self.parent.is_alive()

    def receive(self, timeout: float) -> None:
        """Take every waiting message (waiting up to ``timeout`` for the first)."""
        released: list[int] = []
        block = timeout > 0
        while True:
            try:
                msg = self.inbox.get(timeout=timeout) if block else self.inbox.get_nowait()
            except (queue.Empty, EOFError, OSError):
                break
            block = False
            kind = msg[0]
            if kind == "frame":
                _, i, meta = msg
                self.view.absorb(meta)
                self.pending.append((i, meta))
                if self.spec.policy == "latest":
                    while len(self.pending) > 1:
                        released.append(self.pending.popleft()[0])
                        self.superseded += 1
            elif kind == "weights" and self.spec.panels is not None:
                self.panels_due = msg[1]  # applied when no frame is waiting: frames come first
            elif kind == "finish":
                self.finishing = True
                self.redraw = True
                self.view.finished = True
                self.view.stopping = msg[1] if len(msg) > 1 else ""
            elif kind == "close":
                self.closing = True
        released += self.view.upload.reclaim()
        if released:
            self.tell("released", released, self.counters())
        if self.trainer_gone():
            self.closing = True

    def refresh_panels(self) -> bool:
        """Upload the refreshed panel weights, if the trainer sent some; True if it did."""
        if self.panels_due is None or self.spec.panels is None:
            return False
        self.view.set_weights(self.panels_due, self.spec.panels.read())
        self.panels_due = None
        return True

    def present_next(self) -> bool:
        """Move the oldest waiting frame into the cloud; False if none was waiting."""
        if not self.pending:
            return False
        i, meta = self.pending.popleft()
        self.view.present(i, meta)
        self.shown = meta
        done = self.view.upload.reclaim()
        if done:
            self.tell("released", done, self.counters())
        return True

    def deliver(self, rgba: Any) -> None:
        """A drawn frame (H, W, 4) to the video and, as (H, W, 3), back to the trainer if it asked."""
        if self.writer is not None:
            self.writer.write(rgba)
        if self.spec.images and self.shown is not None:
            self.tell("image", self.shown.step, rgba[..., :3].copy())

    @property
    def wants_pixels(self) -> bool:
        return self.writer is not None or self.spec.images

    def tell(self, *msg: Any) -> None:
        try:
            self.outbox.put(msg)
        except (OSError, ValueError):  # the trainer is gone
            self.closing = True


def _headless(loop: _Loop) -> None:
    from ..app import Visualization
    from ..camera import camera_from_spec
    from ..gpu.context import GLContext
    from ..gpu.framebuffer import Framebuffer
    from .view import LiveView

    spec = loop.spec
    w, h = spec.size
    with GLContext.offscreen(gl_device=spec.gl_device, cuda_device=spec.cuda_device) as ctx:
        vis = Visualization(ctx, spec.trace, renderer=spec.renderer, labels=spec.labels)
        fb = Framebuffer(ctx, w, h) if spec.wall is None else None  # a wall draws tiles
        loop.view = LiveView(
            vis, loop.slots, spec.offsets, spec.counts, update_path=spec.update_path,
            title=spec.title, total_steps=spec.total_steps,
        )  # fmt: skip
        camera = spec.camera if not isinstance(spec.camera, (str, type(None))) else None
        camera = camera or camera_from_spec(spec.camera, vis.layout, w / h)
        loop.tell("ready", _info(loop, ctx))
        try:
            if spec.wall is not None:  # rank 0 of a wall: its own loop, every frame to every rank
                from .wall import lead_wall

                lead_wall(loop, camera)
            while fb is not None and not loop.closing:
                loop.receive(0.0 if loop.pending else 0.05)
                if loop.present_next():
                    loop.view.draw(camera, fb, hud=spec.hud)
                    if loop.wants_pixels:
                        loop.deliver(fb.read_rgba())
                elif loop.refresh_panels():
                    continue
                elif loop.finishing:
                    break
        finally:
            loop.view.close()
            if fb is not None:
                fb.delete()
            vis.close()


def _window(loop: _Loop) -> None:
    from ..window import Viewer
    from .view import LiveView

    spec = loop.spec
    v = Viewer(
        spec.trace,
        size=spec.size,
        renderer=spec.renderer,
        title=f"glnet - {spec.title} (training)",
        labels=spec.labels,
    )
    loop.view = view = LiveView(
        v.vis, loop.slots, spec.offsets, spec.counts, update_path=spec.update_path,
        title=spec.title, total_steps=spec.total_steps,
    )  # fmt: skip

    def on_key(name: str, pressed: bool, modifiers: frozenset[str]) -> bool:
        current = view.newest.mode if view.newest else "activations"  # the trainer's, as last handed over
        m = mode_for_key(name, "shift" in modifiers, current) if pressed else None
        if m is None:
            return False
        loop.tell("mode", m)
        return True

    def on_tick(_dt: float) -> None:
        loop.receive(0.0)
        if not loop.pending and loop.refresh_panels():
            loop.redraw = True
        if loop.pending or loop.redraw:
            loop.redraw = False
            v.request_draw()
        if loop.closing or (loop.finishing and not spec.hold and not loop.pending):
            v.close()

    def draw(target: Any) -> None:
        drawn = loop.present_next()
        view.draw(v.camera, target, hud=spec.hud)
        if drawn and loop.wants_pixels:
            loop.deliver(v.read_pixels())

    def on_close() -> None:
        if not loop.finishing and not loop.closing:
            loop.tell("closed", "window closed")
        view.close()

    v.add_key_handler(on_key)
    v.add_tick_handler(on_tick)
    v.set_draw(draw)
    v.add_close_handler(on_close)
    loop.tell("ready", _info(loop, v.ctx))
    v.run()


def _info(loop: _Loop, ctx: Any) -> dict[str, Any]:
    view = loop.view
    return {
        "update_path": view.upload.name,
        "why": view.why,
        "renderer": view.vis.renderer,
        "gl_renderer": ctx.info.renderer,
        "pid": os.getpid(),
    }


def run_viewer(spec: ViewerSpec, slots: Slots, inbox: Any, outbox: Any) -> None:
    """The viewer process's main function (spawned by :class:`glnet.live.Live`)."""
    die_with_parent()
    torch.set_num_threads(1)  # its tensor work is small; the cores are the trainer's
    if spec.nice:
        try:
            os.nice(spec.nice)  # where they compete for cores (software GL), the trainer goes first
        except OSError:
            pass
    from ..errors import GlnetError
    from ..gpu.context import configure_platform

    loop = _Loop(spec, slots, inbox, outbox)
    code = 0
    try:
        configure_platform(headless=spec.headless)
        if spec.record:
            from ..record import VideoWriter

            loop.writer = VideoWriter(spec.record, fps=spec.fps)
        (_headless if spec.headless else _window)(loop)
    except BaseException as e:
        code = 1
        kind = type(e).__name__ if isinstance(e, GlnetError) else "ViewerError"
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        loop.tell("error", kind, text[:300])
    finally:
        try:
            if loop.writer is not None:
                loop.writer.close()
        except BaseException as e:
            code = 1
            loop.tell("error", "VideoWriteError", str(e).splitlines()[0][:300] if str(e) else "video")
        dead = loop.view.dead_frac if loop.view is not None else None
        loop.tell("done", {**loop.counters(), "dead_frac": dead, "wall": loop.wall_report})
    if code:
        sys.exit(code)
