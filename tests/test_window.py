"""The window, for real: a GLFW window under Xvfb, driven by X input events from xdotool."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from procs import needs_x, run_group

ROOT = Path(__file__).resolve().parent.parent
SCREEN = (640, 480)

pytestmark = needs_x


@pytest.fixture(scope="module")
def report() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYOPENGL_PLATFORM", "DISPLAY")}
    env["PYTHONPATH"] = str(ROOT)
    r = run_group(
        [
            "xvfb-run",
            "-a",
            "-s",
            f"-screen 0 {SCREEN[0]}x{SCREEN[1]}x24",
            sys.executable,
            str(ROOT / "tests" / "window_script.py"),
        ],
        env=env,
        timeout=420,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "error" not in out, out["error"] + "\n" + r.stderr[-3000:]
    return out


def test_the_network_is_on_screen_outside_the_hud(report):
    assert report["image_size"] == [320, 200]
    x0, y0, x1, y1 = report["hud_box"]
    assert 0 < x0 < x1 < 320 and 0 < y0 < y1 < 200
    assert report["lit_share_outside_hud"] > 0.03


def test_hover_picks_the_neuron_under_the_cursor_and_a_click_pins_it(report):
    layer, i, px, py = report["hover_target"]
    assert report["hover_pick"] == [layer, i, px, py]
    assert report["hover_cover_px"] <= 0.75  # its centre is in that pixel
    assert report["panel_box"] is not None and report["panel_changed_share"] > 0.3
    assert report["ring_pixels"] > 4  # the picked neuron is ringed
    assert report["hover_saliency"] is False and report["click_saliency"] is True
    assert report["cleared"] is True


def test_holding_w_flies_forward(report):
    assert report["w_along_forward"] > 0  # along the camera's forward axis, not back
    assert report["w_off_axis"] < 1e-6 * report["w_along_forward"]
    assert report["w_turned"] == 0.0


def test_page_up_jumps_to_the_next_layer_and_the_hud_names_it(report):
    first, second = report["jumps"]
    assert first["index"] is not None and second["index"] == first["index"] + 1
    for jump in (first, second):
        assert jump["off_target"] < 1e-6  # the jump ended at that layer's camera
        assert jump["hud"][1].startswith(f"layer {jump['index'] + 1}/{report['layers']}: {jump['name']} (")


def test_dragging_right_turns_the_camera_right(report):
    # six 10-pixel motion events at LOOK_PER_PIXEL = 0.003 rad: at most 0.18 rad, some events may merge
    assert 0.02 < report["drag_right_component"] < 0.2


def test_a_key_hook_consumes_keys(report):
    assert report["consumed_r_moved"] == 0.0  # the hook took R: no reset
    assert report["r_moved"] > 0  # R reaches the fly controls again


def test_set_draw_replaces_the_frame_and_none_restores_it(report):
    assert report["custom_draw_red_share"] == 1.0
    assert report["default_draw_red_share"] == 0.0


def test_f11_toggles_fullscreen_and_back(report):
    assert report["window_before"] == [320, 200]
    assert report["window_fullscreen"] == list(SCREEN) == report["framebuffer_fullscreen"]
    assert report["fullscreen_flag"] is True
    assert report["window_after"] == [320, 200] == report["framebuffer_after"]


def test_escape_ends_the_loop_and_closes_once(report):
    assert report["escape_seen"] and report["closed"]
    assert report["ran_s"] < report["safety_s"]
    assert report["close_handler_calls"] == 1
