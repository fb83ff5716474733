"""The window path: a GLFW window under Xvfb draws the network, flies on WASD, jumps layers, quits on Esc."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    shutil.which("xvfb-run") is None, reason="xvfb-run is not installed (apt-get install xvfb)"
)
def test_window_flies_and_quits():
    env = {k: v for k, v in os.environ.items() if k not in ("PYOPENGL_PLATFORM", "DISPLAY")}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run(
        [
            "xvfb-run",
            "-a",
            "-s",
            "-screen 0 640x480x24",
            sys.executable,
            str(ROOT / "tests" / "window_script.py"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["frames_before"] >= 1 and report["lit_share"] > 0.01  # the network is on screen
    assert report["moved"] > 0  # W flew forward
    assert report["layer_index"] is not None  # PgUp jumped to a layer
    assert report["ran_s"] < 6.0  # Esc ended the loop before the 8 s safety timer
