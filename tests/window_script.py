"""Driven by test_window.py under Xvfb: open the GLFW window, fly with scripted key presses, quit with Esc."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from glnet.gpu.context import configure_platform

configure_platform(headless=False)

from vispy import app

from glnet.app import Viewer
from glnet.capture import capture

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TinyNet


def main() -> None:
    torch.manual_seed(0)
    trace = capture(TinyNet().eval(), torch.randn(1, 3, 16, 16), model_name="tiny")
    v = Viewer(trace, size=(320, 200))
    report: dict = {"gl": v.ctx.info.version, "renderer": v.vis.renderer}
    start = v.camera.position.copy()

    def grab() -> np.ndarray:
        from OpenGL import GL

        v.canvas.set_current()
        w, h = v.screen.width, v.screen.height
        px = np.empty((h, w, 4), np.uint8)
        GL.glReadPixels(0, 0, w, h, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, px)
        return px[::-1]

    def first(_e: object) -> None:
        img = grab()
        report["lit_share"] = float((img[..., :3] != img[-1, 0, :3]).any(-1).mean())
        report["frames_before"] = v.frames
        v.controller.key("w", True)

    def second(_e: object) -> None:
        v.controller.key("w", False)
        report["moved"] = float(np.linalg.norm(v.camera.position - start))
        v.controller.key("pageup", True)

    def third(_e: object) -> None:
        report["layer_index"] = v.controller.layer_index
        report["t_quit"] = time.perf_counter()
        v.controller.key("escape", True)

    app.Timer(0.4, connect=first, iterations=1, app=v.app, start=True)
    app.Timer(0.8, connect=second, iterations=1, app=v.app, start=True)
    app.Timer(1.6, connect=third, iterations=1, app=v.app, start=True)
    t0 = time.perf_counter()
    v.run(max_seconds=8.0)
    report["ran_s"] = time.perf_counter() - t0
    report["frames"] = v.frames
    print(json.dumps(report))


if __name__ == "__main__":
    main()
