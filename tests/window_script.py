"""Run by test_window.py under Xvfb: a real GLFW window driven by real X input events from ``xdotool``.

The viewer runs its event loop on the main thread; a driver thread sends key and mouse events with
``xdotool`` (XTEST, to the focused window) and polls the viewer's state, read on the GUI thread through a
tick handler, until each effect shows or a generous timeout passes. One JSON report goes to stdout.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glnet.gpu.context import configure_platform

configure_platform(headless=False)

from glnet.camera import layer_camera
from glnet.capture import capture
from glnet.colormap import BACKGROUND
from glnet.layout import neuron_positions
from glnet.render.hud import text_box
from glnet.render.inspector import MARK
from glnet.window import Viewer

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TinyNet

TITLE = "glnet-window-test"
SIZE = (320, 200)
SAFETY_S = 240.0  # the loop is closed by this timer only if Esc failed
WAIT_S = 60.0  # longest wait for any one effect (llvmpipe under Xvfb on busy cores is slow)


def xdo(*args: str) -> str:
    r = subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=WAIT_S)
    if r.returncode != 0:
        raise RuntimeError(f"xdotool {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout.strip()


class Driver:
    """Runs the scripted session on its own thread; GUI-thread work goes through :meth:`gui`."""

    def __init__(self, v: Viewer) -> None:
        self.v = v
        self.report: dict[str, Any] = {}
        self.keys: list[tuple[str, bool]] = []  # every key the viewer's key hook saw
        self.consume = frozenset[str]()  # keys the hook consumes
        self.calls: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]]] = queue.Queue()
        self.abort = False
        self.window = ""

    # -- GUI thread ------------------------------------------------------------------------------------
    def on_key(self, name: str, pressed: bool, _mods: frozenset[str]) -> bool:
        self.keys.append((name, pressed))
        return name in self.consume

    def on_tick(self, _dt: float) -> None:
        if self.abort:
            self.v.close()
            return
        while not self.calls.empty():
            fn, out = self.calls.get()
            try:
                out.put((True, fn()))
            except Exception as e:
                out.put((False, e))

    # -- driver thread ---------------------------------------------------------------------------------
    def gui(self, fn: Callable[[], Any]) -> Any:
        out: queue.Queue[Any] = queue.Queue()
        self.calls.put((fn, out))
        ok, value = out.get(timeout=WAIT_S)
        if not ok:
            raise value
        return value

    def state(self) -> dict[str, Any]:
        v = self.v

        def read() -> dict[str, Any]:
            return {
                "position": v.camera.position.copy(),
                "rotation": v.camera.rotation.copy(),
                "moving": v.controller.moving,
                "layer_index": v.controller.layer_index,
                "framebuffer": (v.screen.width, v.screen.height),
                "frames": v.frames,
            }

        return self.gui(read)

    def wait(self, what: str, cond: Callable[[], bool]) -> float:
        t0 = time.perf_counter()
        while not cond():
            if time.perf_counter() - t0 > WAIT_S:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.02)
        return time.perf_counter() - t0

    def geometry(self) -> tuple[int, int]:
        m = re.search(r"Geometry:\s*(\d+)x(\d+)", xdo("getwindowgeometry", self.window))
        assert m is not None
        return int(m.group(1)), int(m.group(2))

    def screen_size(self) -> tuple[int, int]:
        w, h = xdo("getdisplaygeometry").split()
        return int(w), int(h)

    def focus(self) -> None:
        xdo("windowfocus", self.window)

    def press(self, keysym: str, name: str) -> None:
        """Tap a key and wait until the viewer's key hook saw the release."""
        seen = len(self.keys)
        self.focus()
        xdo("key", keysym)
        self.wait(f"{keysym} to arrive", lambda: (name, False) in self.keys[seen:])

    def settle(self) -> dict[str, Any]:
        self.wait("the camera to stop", lambda: not self.state()["moving"])
        return self.state()

    def pixels(self) -> tuple[np.ndarray, list[str]]:
        return self.gui(lambda: (self.v.read_pixels(), list(self.v.hud_lines)))

    def run(self) -> None:
        try:
            self.session()
        except Exception as e:
            self.report["error"] = "".join(traceback.format_exception_only(e)).strip()
            traceback.print_exc()
            self.abort = True

    def hover_and_click(self, before: np.ndarray) -> None:
        r, v = self.report, self.v
        slab = v.vis.layout.slabs[0]
        pos = neuron_positions(slab)
        w, h = v.screen.width, v.screen.height
        pr = v.camera.project(pos, w, h)
        # a neuron of the first layer, the one nearest the eye: nothing can cover its centre pixel
        i = int(np.argmin(np.where(pr.visible, pr.w, np.inf)))
        px, py = int(np.floor(pr.x[i])), h - 1 - int(np.floor(pr.y[i]))
        self.focus()
        xdo("mousemove", "--window", self.window, str(px), str(py))
        self.wait("a hover pick", lambda: self.gui(lambda: v.picked) is not None)
        p = self.gui(lambda: v.picked)
        r["hover_target"] = [0, i, px, py]
        r["hover_pick"] = [p.layer, p.index, *p.pixel]
        r["hover_cover_px"] = float(np.hypot(pr.x[p.index] - (px + 0.5), pr.y[p.index] - (h - 1 - py + 0.5)))
        img, _ = self.pixels()
        box = self.gui(lambda: v.vis.scene.inspector.panel_box(w, h))
        r["panel_box"] = list(box) if box else None
        if box:
            x0, y0, x1, y1 = box
            diff = np.abs(img[y0:y1, x0:x1, :3].astype(int) - before[y0:y1, x0:x1, :3].astype(int)).max(-1)
            r["panel_changed_share"] = float((diff > 24).mean())
        ring = np.all(
            np.abs(
                img[max(0, py - 12) : py + 13, max(0, px - 12) : px + 13, :3].astype(int) - np.array(MARK[:3])
            )
            < 40,
            axis=-1,
        )
        r["ring_pixels"] = int(ring.sum())
        r["hover_saliency"] = self.gui(lambda: v.vis.inspection.saliency is not None)
        xdo("click", "1")
        self.wait("the click to pin", lambda: self.gui(lambda: v.pinned))
        r["click_saliency"] = self.gui(lambda: v.vis.inspection.saliency is not None)
        self.gui(lambda: v.pick_at(-100, -100))  # clear: nothing is drawn off the window
        self.gui(lambda: setattr(v, "picking", False))
        r["cleared"] = self.gui(lambda: v.vis.inspection is None)

    def session(self) -> None:
        r, v = self.report, self.v
        self.wait("the first frame", lambda: self.state()["frames"] >= 1)
        self.window = xdo("search", "--sync", "--name", TITLE).split()[0]
        r["screen"] = self.screen_size()

        # the network is on screen: lit pixels outside the HUD's text box
        img, lines = self.pixels()
        x0, y0, x1, y1 = text_box(lines, img.shape[0])
        outside = np.ones(img.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        bg = np.round(np.array(BACKGROUND) * 255)
        lit = np.abs(img[..., :3].astype(np.int32) - bg).max(-1) > 24
        r["image_size"] = [img.shape[1], img.shape[0]]
        r["hud_box"] = [x0, y0, x1, y1]
        r["lit_share_outside_hud"] = float(lit[outside].mean())
        r["lit_share_in_hud"] = float(lit[~outside].mean())

        # hover: the neuron under the cursor is picked and explained; a click pins it with its saliency
        self.hover_and_click(img)

        # hold W: fly forward along the camera's forward axis
        s0 = self.state()
        seen = len(self.keys)
        self.focus()
        xdo("keydown", "w")
        self.wait("w down", lambda: ("w", True) in self.keys[seen:])
        self.wait("the camera to move", lambda: np.linalg.norm(self.state()["position"] - s0["position"]) > 0)
        time.sleep(0.3)  # keep holding: the camera accelerates meanwhile
        xdo("keyup", "w")
        self.wait("w up", lambda: ("w", False) in self.keys[seen:])
        s1 = self.settle()
        d = s1["position"] - s0["position"]
        fwd = -s0["rotation"][:, 2]
        r["w_along_forward"] = float(d @ fwd)
        r["w_off_axis"] = float(np.linalg.norm(d - (d @ fwd) * fwd))
        r["w_turned"] = float(np.abs(s1["rotation"] - s0["rotation"]).max())

        # PgUp twice: the layer ahead, then the next; the HUD names it
        n = len(v.vis.layout.slabs)
        jumps = []
        for _ in range(2):
            self.press("Prior", "pageup")
            s = self.settle()
            i = s["layer_index"]
            _img, lines = self.pixels()
            target = layer_camera(v.vis.layout, i, v.controller.aspect) if i is not None else None
            jumps.append(
                {
                    "index": i,
                    "name": v.vis.layout.slabs[i].name if i is not None else None,
                    "hud": lines,
                    "off_target": float(np.linalg.norm(s["position"] - target.position)) if target else None,
                }
            )
        r["layers"] = n
        r["jumps"] = jumps

        # mouse drag to the right: the camera turns right
        s0 = self.state()
        w, h = self.geometry()
        cx, cy = w // 2, h // 2
        self.focus()
        xdo("mousemove", "--window", self.window, str(cx), str(cy))
        xdo("mousedown", "1")
        for k in range(1, 7):
            xdo("mousemove", "--window", self.window, str(cx + 10 * k), str(cy))
        xdo("mouseup", "1")
        self.wait(
            "the drag to turn the camera",
            lambda: np.abs(self.state()["rotation"] - s0["rotation"]).max() > 1e-6,
        )
        time.sleep(0.2)  # any motion events still queued
        s1 = self.state()
        r["drag_turn"] = float(np.abs(s1["rotation"] - s0["rotation"]).max())
        r["drag_right_component"] = float(-s1["rotation"][:, 2] @ s0["rotation"][:, 0])

        # a key hook that returns True consumes the key: R does not reset the camera
        s0 = self.state()
        self.consume = frozenset({"r"})
        self.press("r", "r")
        self.consume = frozenset()
        r["consumed_r_moved"] = float(np.linalg.norm(self.settle()["position"] - s0["position"]))
        self.press("r", "r")
        r["r_moved"] = float(np.linalg.norm(self.settle()["position"] - s0["position"]))

        # set_draw replaces the frame; None restores the network
        def red(target: Any) -> None:
            from OpenGL import GL

            target.bind()
            GL.glClearColor(1.0, 0.0, 0.0, 1.0)
            GL.glClear(GL.GL_COLOR_BUFFER_BIT)

        self.gui(lambda: v.set_draw(red))
        img, _ = self.pixels()
        r["custom_draw_red_share"] = float((img[..., :3] == (255, 0, 0)).all(-1).mean())
        self.gui(lambda: v.set_draw(None))
        img, _ = self.pixels()
        r["default_draw_red_share"] = float((img[..., :3] == (255, 0, 0)).all(-1).mean())

        # F11: the screen's size, then the old size again
        r["window_before"] = self.geometry()
        self.press("F11", "f11")
        self.wait("fullscreen", lambda: self.state()["framebuffer"] == r["screen"])
        self.wait("the window to fill the screen", lambda: self.geometry() == r["screen"])
        r["window_fullscreen"] = self.geometry()
        r["framebuffer_fullscreen"] = self.state()["framebuffer"]
        r["fullscreen_flag"] = self.gui(lambda: v.fullscreen)
        self.press("F11", "f11")
        self.wait("windowed", lambda: self.state()["framebuffer"] == r["window_before"])
        r["window_after"] = self.geometry()
        r["framebuffer_after"] = self.state()["framebuffer"]

        # Esc ends the loop
        r["escape_sent_at"] = time.perf_counter()
        self.focus()
        xdo("key", "Escape")


def main() -> None:
    torch.manual_seed(0)
    net = TinyNet().eval()
    trace = capture(net, torch.randn(1, 3, 16, 16), model_name="tiny")
    v = Viewer(trace, size=SIZE, title=TITLE, model=net)
    driver = Driver(v)
    closes: list[float] = []
    v.add_key_handler(driver.on_key)
    v.add_tick_handler(driver.on_tick)
    v.add_close_handler(lambda: closes.append(time.perf_counter()))
    thread = threading.Thread(target=driver.run, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    v.run(max_seconds=SAFETY_S)
    t1 = time.perf_counter()
    thread.join(timeout=5)
    r = driver.report
    r["ran_s"] = t1 - t0
    r["safety_s"] = SAFETY_S
    r["close_handler_calls"] = len(closes)
    r["closed"] = v.closed
    r["escape_seen"] = ("escape", True) in driver.keys
    if "escape_sent_at" in r:
        r["escape_to_end_s"] = t1 - r.pop("escape_sent_at")
    print(json.dumps(r, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))


if __name__ == "__main__":
    main()
