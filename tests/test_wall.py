"""Display walls: 4 real processes over gloo (torchrun) stitch the picture one snapshot draws, bezels hide
what lies behind them, every rank draws the same frames, and bad setups end every rank with one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from procs import run_group

from glnet.camera import Camera
from glnet.errors import InputError
from glnet.wall import (
    WallSpec,
    bind_gloo_to_loopback,
    camera_state,
    loopback_interface,
    parse_bezel,
    state_camera,
)

ROOT = Path(__file__).resolve().parent.parent
MODEL = ["resnet18", "--input-size", "64"]


def _torchrun(n: int, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone`` (its own free port) in a session of its own: a timeout ends every rank."""
    drop = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "DISPLAY")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = str(ROOT)
    env.setdefault("GLNET_CALIBRATE", "0")
    env["GLNET_PROGRESS"] = "plain"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n)]
    return run_group([*cmd, "-m", "glnet", "wall", *args], env=env, timeout=timeout)


def test_wall_geometry_and_options():
    spec = WallSpec((3, 2), (160, 90), (20, 10))
    assert spec.size == (3 * 160 + 2 * 20, 2 * 90 + 10) and spec.count == 6
    assert [spec.rect(r) for r in range(6)] == [
        (0, 0, 160, 90), (180, 0, 160, 90), (360, 0, 160, 90),
        (0, 100, 160, 90), (180, 100, 160, 90), (360, 100, 160, 90),
    ]  # fmt: skip
    assert parse_bezel("20,10") == (20, 10) and parse_bezel("7") == (7, 7) and parse_bezel(None) == (0, 0)
    for bad in ("a,b", "1,2,3", "-1,0"):
        with pytest.raises(InputError, match="bezel"):
            parse_bezel(bad)
    cam = Camera(np.array([1.0, 2.0, 3.0]), fov=47.0, near=0.2, far=900.0).look_at((0.3, -1.0, -4.0))
    back, frame, quit = state_camera(camera_state(cam, 41, True))
    assert frame == 41 and quit is True
    assert np.array_equal(back.position, cam.position) and np.array_equal(back.rotation, cam.rotation)
    assert (back.fov, back.near, back.far) == (cam.fov, cam.near, cam.far)


def test_a_group_on_one_machine_binds_gloo_to_loopback(monkeypatch):
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    bind_gloo_to_loopback()
    assert os.environ["GLOO_SOCKET_IFNAME"] == loopback_interface() == "lo"  # Linux's name
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "eth7")
    bind_gloo_to_loopback()
    assert os.environ["GLOO_SOCKET_IFNAME"] == "eth7"  # the user's choice stands


def test_wall_help_sizes_by_grid_and_tile_only(capsys):
    from glnet.cli import main

    with pytest.raises(SystemExit):
        main(["wall", "--help"])
    text = capsys.readouterr().out
    assert "--tile WxH" in text and "--grid CxR" in text and "--size" not in text


def test_wall_outside_torchrun_is_one_line(capsys, monkeypatch, tmp_path):
    from glnet.cli import main

    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["wall", *MODEL, "--grid", "2x2", "--tile", "160x90", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torchrun --nproc-per-node" in err[0]
    assert main(["wall", *MODEL, "--grid", "2x0", "--tile", "160x90"]) == 2
    assert "--grid" in capsys.readouterr().err


@pytest.mark.gl
def test_wrong_number_of_processes_ends_every_rank_with_one_line(tmp_path):
    r = _torchrun(2, *MODEL, "--grid", "2x2", "--tile", "160x90", "--out", str(tmp_path), timeout=120)
    assert r.returncode != 0
    ours = [line for line in r.stderr.splitlines() if line.startswith("glnet:")]
    assert ours == [
        "glnet: error: a 2x2 wall needs 4 processes, torchrun started 2: use --nproc-per-node 4 (times nodes)"
    ], r.stderr[-3000:]


@pytest.mark.gl
@pytest.mark.usefixtures("gloo")
def test_a_2x2_wall_over_gloo_stitches_one_snapshot(tmp_path, gl_ctx):
    from glnet.cli import main

    out = tmp_path / "wall"
    r = _torchrun(4, *MODEL, "--grid", "2x2", "--tile", "160x90", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    big = tmp_path / "big.png"
    assert main(["snapshot", *MODEL, "--size", "320x180", "--no-hud", "--out", str(big)]) == 0
    a, b = np.asarray(Image.open(big)), np.asarray(Image.open(out / "wall.png"))
    assert a.shape == b.shape == (180, 320, 3)
    assert (a != a[0, -1]).any(-1).mean() > 0.05, "the picture should show neurons"
    assert (a == b).all(-1).mean() >= 0.999
    for rank in range(4):
        tile = np.asarray(Image.open(out / "tiles" / f"tile_r{rank}_f00000.png"))
        x, y = (rank % 2) * 160, (rank // 2) * 90
        assert (tile == b[y : y + 90, x : x + 160]).all()
    info = json.loads((out / "wall.json").read_text())
    assert info["backend"] == "gloo" and info["size"] == [320, 180] and info["frames"] == 1
    assert [rk["frames"] for rk in info["ranks"]] == [[0]] * 4
    assert [rk["tile"] for rk in info["ranks"]] == [[0, 0], [1, 0], [0, 1], [1, 1]]


@pytest.mark.gl
@pytest.mark.usefixtures("gloo")
def test_a_wall_with_bezels_plays_a_tour_in_lockstep(tmp_path, gl):
    from glnet.app import Visualization
    from glnet.gpu.framebuffer import Framebuffer
    from glnet.pipeline import trace_model
    from glnet.record import read_video_frames
    from glnet.tour import load_tour

    out = tmp_path / "wall"
    tour = ["--tour", "orbit", "--seconds", "0.15", "--fps", "20"]
    r = _torchrun(
        4, *MODEL, "--grid", "2x2", "--tile", "160x90", "--bezel", "20,10", *tour, "--out", str(out)
    )
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((out / "wall.json").read_text())
    assert info["size"] == [340, 190] and info["frames"] == 3 and info["output"] == "wall.mp4"
    assert [rk["frames"] for rk in info["ranks"]] == [[0, 1, 2]] * 4  # every rank drew every frame
    # the big render of frame 0 at the virtual size: each tile is its rectangle, bezels hide the rest
    prep = trace_model("resnet18", input_size=64, seed=0)
    vis = Visualization(gl, prep.trace)
    fb = Framebuffer(gl, 340, 190)
    try:
        cam = load_tour("orbit", vis.layout, 340 / 190, seconds=0.15).at(0.0)
        vis.render(cam, fb, hud=False, finish=True)
        big = fb.read_rgba()[..., :3]
    finally:
        fb.delete()
        vis.close()
    spec = WallSpec((2, 2), (160, 90), (20, 10))
    for rank in range(4):
        x, y, w, h = spec.rect(rank)
        tile = np.asarray(Image.open(out / "tiles" / f"tile_r{rank}_f00000.png"))
        assert (tile == big[y : y + h, x : x + w]).all(-1).mean() >= 0.999
    assert (big[:, 160:180] != big[0, -1]).any(-1).mean() > 0.02, "the bezel column hides drawn neurons"
    frames = list(read_video_frames(out / "wall.mp4"))
    assert len(frames) == 3 and frames[0].shape[:2] == (190, 340)
    f0 = frames[0].astype(int)
    assert f0[:, 162:178].max() < 24 and f0[92:98].max() < 24  # the bezels: black in the wall's picture
    assert np.abs(f0[:90, :160] - big[:90, :160]).mean() < 8  # and the tiles as drawn (lossy video)
    assert torch.cuda.is_available() or info["backend"] == "gloo"


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run")
@pytest.mark.usefixtures("gloo")
def test_a_wall_in_windows_presents_in_lockstep_for_its_seconds():
    """No --out on a display: each rank shows its tile in a window (on monitor 0) for --seconds."""
    env_display = ["xvfb-run", "-a", "-s", "-screen 0 800x600x24"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    args = [
        "-m",
        "glnet",
        "wall",
        *MODEL,
        "--grid",
        "2x1",
        "--tile",
        "160x90",
        "--seconds",
        "0.3",
        "--fps",
        "10",
    ]
    env = {
        k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "DISPLAY", "PYOPENGL_PLATFORM")
    }
    env["PYTHONPATH"] = str(ROOT)
    env.setdefault("GLNET_CALIBRATE", "0")
    r = run_group([*env_display, *cmd, *args, "--screen", "0"], env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "glnet: wall 2x1 of 160x90 (320x90): 3 frame(s)" in r.stderr
