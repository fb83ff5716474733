"""Authoring a tour in a real window: K adds the camera as a keyframe, --save-tour writes them on Esc and on
Ctrl-C; the saved file replays through the same camera poses (GLFW under Xvfb, keys from xdotool)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from procs import needs_x, run_group

ROOT = Path(__file__).resolve().parent.parent

pytestmark = needs_x


@pytest.mark.parametrize("how", ["escape", "sigint"])
def test_k_adds_keyframes_and_save_tour_writes_them_on_exit(tmp_path, how):
    env = {k: v for k, v in os.environ.items() if k not in ("PYOPENGL_PLATFORM", "DISPLAY")}
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{ROOT / 'tests'}"
    env["GLNET_CALIBRATE"] = "0"
    out = tmp_path / "authored.json"
    script = str(ROOT / "tests" / "tour_window_script.py")
    args = ["xvfb-run", "-a", "-s", "-screen 0 640x480x24", sys.executable, script, str(out), how]
    r = run_group(args, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["rc"] == (130 if how == "sigint" else 0), report["stderr"][-2000:]
    assert f"wrote {out} (2 keyframes, 2 s)" in report["stderr"]
    keys = json.loads(out.read_text())["keyframes"]
    assert [k["t"] for k in keys] == [0.0, 2.0]
    a, b = (np.array(k["position"]) for k in keys)
    forward = np.array(keys[0]["look_at"]) - a
    assert float((b - a) @ forward) > 0  # W flew forward between the two presses
    from glnet.tour import tour_from_dict

    tour = tour_from_dict(json.loads(out.read_text()))
    assert np.allclose(tour.at(2.0).position, b) and tour.duration == 2.0
