"""``--screen`` and ``--fullscreen`` on a real window under Xvfb (real X key events), ``glnet info``'s monitor
list, and the one-line errors for a monitor that is not there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from procs import needs_x, run_group

from glnet.errors import InputError
from glnet.window import Monitor, centred_on, choose_monitor

ROOT = Path(__file__).resolve().parent.parent
SCREEN = (800, 600)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYOPENGL_PLATFORM", "DISPLAY")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    env.setdefault("GLNET_CALIBRATE", "0")
    return env


def _xvfb(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = ["xvfb-run", "-a", "-s", f"-screen 0 {SCREEN[0]}x{SCREEN[1]}x24", *args]
    return run_group(cmd, env=_env(), timeout=timeout)


def test_a_window_is_centred_on_the_monitor_it_is_asked_for():
    """Two monitors side by side (as GLFW would report them): --screen 1 lands on the right one."""
    left = Monitor(0, "left", (1920, 1080, 60), (0, 0), (1.0, 1.0))
    right = Monitor(1, "right", (2560, 1440, 144), (1920, -180), (2.0, 2.0))
    assert choose_monitor(1, [left, right]) is right
    assert centred_on(right, (1280, 720)) == (1920 + 640, -180 + 360)
    assert centred_on(left, (4000, 3000)) == (0, 0)  # larger than the monitor: at its corner
    with pytest.raises(InputError) as e:
        choose_monitor(2, [left, right])
    msg = str(e.value)
    assert "\n" not in msg and "0: left 1920x1080@60Hz at 0,0" in msg and "1: right 2560x1440@144Hz" in msg
    assert "scale 2x2" in msg


@needs_x
def test_screen_fullscreen_and_f11_on_a_real_window():
    r = _xvfb(sys.executable, str(ROOT / "tests" / "window_screen_script.py"))
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "error" not in out, out["error"] + "\n" + r.stderr[-3000:]
    assert out["monitors"] == ["0: screen 800x600 at 0,0 scale 1x1"]
    # --screen 0 --fullscreen: the monitor's own mode, in device pixels
    assert out["start"] == {
        "fullscreen": True, "geometry": [800, 600], "position": [0, 0], "glfw_position": [0, 0],
        "framebuffer": [800, 600],
    }  # fmt: skip
    # F11: back to the asked size, centred on that monitor; F11 again: fullscreen on it again
    assert out["windowed"]["fullscreen"] is False
    assert out["windowed"]["geometry"] == out["windowed"]["framebuffer"] == [320, 200]
    assert out["windowed"]["position"] == out["windowed"]["glfw_position"] == [240, 200]
    assert out["again"]["fullscreen"] is True and out["again"]["framebuffer"] == [800, 600]
    assert out["again_image"] == [800, 600]
    assert out["bad_screen_error"].startswith("no monitor 1 (--screen)")
    assert out["closed"] is True


@needs_x
def test_bad_screen_is_one_line_listing_the_monitors_and_info_lists_them():
    r = _xvfb(
        sys.executable, "-m", "glnet", "view", "conftest:TinyNet", "--input-size", "16", "--screen", "3"
    )
    assert r.returncode == 2, r.stderr[-2000:]
    err = [line for line in r.stderr.splitlines() if "error" in line]
    assert err == [
        "glnet: error: no monitor 3 (--screen): the monitors here are 0: screen 800x600 at 0,0 scale 1x1"
    ]
    assert "Traceback" not in r.stderr
    info = _xvfb(sys.executable, "-m", "glnet", "info")
    assert info.returncode == 0, info.stderr[-2000:]
    assert "monitor    0: screen 800x600 at 0,0 scale 1x1" in info.stdout


def test_screen_without_a_display_is_one_line(capsys, monkeypatch):
    from glnet.cli import main

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["view", "resnet18", "--screen", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["glnet: error: --screen 1 picks a monitor: there is none without a display"]
