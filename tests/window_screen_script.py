"""Run by test_window_screen.py under Xvfb: a real window opened with ``monitor=0, fullscreen=True`` (the
``--screen 0 --fullscreen`` options), then F11 twice by real X key events. One JSON report goes to stdout."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from window_script import Driver, xdo  # configures the platform for a window

from glnet.capture import capture
from glnet.errors import InputError
from glnet.window import Viewer, choose_monitor, monitors

TITLE = "glnet-screen-test"
SIZE = (320, 200)


class ScreenDriver(Driver):
    def window_pos(self) -> tuple[int, int]:
        import glfw

        return self.gui(lambda: tuple(glfw.get_window_pos(self.v.canvas.native._id)))

    def xpos(self) -> tuple[int, int]:
        m = re.search(r"Position:\s*(-?\d+),(-?\d+)", xdo("getwindowgeometry", self.window))
        assert m is not None
        return int(m.group(1)), int(m.group(2))

    def snapshot(self) -> dict:
        return {
            "fullscreen": self.gui(lambda: self.v.fullscreen),
            "geometry": list(self.geometry()),
            "position": list(self.xpos()),
            "glfw_position": list(self.window_pos()),
            "framebuffer": list(self.state()["framebuffer"]),
        }

    def session(self) -> None:
        r, v = self.report, self.v
        self.wait("the first frame", lambda: self.state()["frames"] >= 1)
        self.window = xdo("search", "--sync", "--name", TITLE).split()[0]
        found = self.gui(monitors)
        r["monitors"] = [m.describe() for m in found]
        r["monitor0"] = {"mode": list(found[0].mode), "position": list(found[0].position)}
        try:
            choose_monitor(len(found), found)
        except InputError as e:
            r["bad_screen_error"] = str(e)
        mode = tuple(found[0].mode[:2])
        self.wait("fullscreen at the monitor's mode", lambda: self.state()["framebuffer"] == mode)
        r["start"] = self.snapshot()
        self.press("F11", "f11")
        self.wait("windowed", lambda: self.state()["framebuffer"] == SIZE)
        self.wait("the window's size", lambda: self.geometry() == SIZE)
        r["windowed"] = self.snapshot()
        self.press("F11", "f11")
        self.wait("fullscreen again", lambda: self.state()["framebuffer"] == mode)
        r["again"] = self.snapshot()
        img = self.gui(lambda: v.read_pixels())
        r["again_image"] = [img.shape[1], img.shape[0]]
        r["escape_sent_at"] = time.perf_counter()
        self.focus()
        xdo("key", "Escape")


def main() -> None:
    from conftest import TinyNet

    torch.manual_seed(0)
    net = TinyNet().eval()
    trace = capture(net, torch.randn(1, 3, 16, 16), model_name="tiny")
    v = Viewer(trace, size=SIZE, title=TITLE, fullscreen=True, monitor=0)
    driver = ScreenDriver(v)
    v.add_key_handler(driver.on_key)
    v.add_tick_handler(driver.on_tick)
    thread = threading.Thread(target=driver.run, daemon=True)
    thread.start()
    v.run(max_seconds=200.0)
    thread.join(timeout=5)
    r = driver.report
    r["closed"] = v.closed
    r.pop("escape_sent_at", None)
    print(json.dumps(r, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))


if __name__ == "__main__":
    main()
