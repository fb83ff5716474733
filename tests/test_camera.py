"""The fly camera and its controls, as plain math: no GL, no window."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from glnet.camera import (
    CONTROLS,
    Camera,
    FlyController,
    camera_from_spec,
    controls_help,
    layer_camera,
    named_camera,
)
from glnet.errors import InputError
from glnet.layout import Layout
from glnet.tour import flythrough

TICK = 1 / 120


@pytest.fixture
def fly(layout: Layout) -> FlyController:
    return FlyController(named_camera("overview", layout), layout)


def run(ctl: FlyController, seconds: float, dt: float = TICK) -> None:
    for _ in range(round(seconds / dt)):
        ctl.update(dt)


def speed(ctl: FlyController) -> float:
    return float(np.linalg.norm(ctl.velocity))


@pytest.mark.parametrize("dt", [1 / 40, TICK, 1 / 240])
def test_a_held_key_reaches_full_speed_in_accel_time_at_any_frame_rate(fly, dt):
    fly.key("w", True)
    run(fly, FlyController.ACCEL_TIME / 2, dt)
    assert speed(fly) == pytest.approx(0.5 * fly.speed, rel=1e-6)
    run(fly, FlyController.ACCEL_TIME / 2, dt)
    assert speed(fly) == pytest.approx(fly.speed, rel=1e-6)
    run(fly, 0.5, dt)
    assert speed(fly) == pytest.approx(fly.speed, rel=1e-6)  # and no faster


@pytest.mark.parametrize(
    ("key", "axis"), [("w", "forward"), ("s", "back"), ("a", "left"), ("right", "right")]
)
def test_moves_follow_the_cameras_own_axes(fly, key, axis):
    cam = fly.camera
    axes = {"forward": cam.forward, "back": -cam.forward, "left": -cam.right, "right": cam.right}
    expected = axes[axis].copy()
    assert abs(expected[2]) < 0.99  # the overview camera is turned, so camera axes are not world axes
    start = cam.position.copy()
    fly.key(key, True)
    run(fly, 0.5)
    d = cam.position - start
    assert np.linalg.norm(d) > 0
    assert np.allclose(d / np.linalg.norm(d), expected, atol=1e-9)


def test_release_glides_to_a_stop_within_glide_time(fly):
    fly.key("w", True)
    run(fly, FlyController.ACCEL_TIME)
    fly.key("w", False)
    start = fly.camera.position.copy()
    run(fly, FlyController.GLIDE_TIME / 2)
    assert speed(fly) == pytest.approx(0.5 * fly.speed, rel=1e-6)  # still gliding
    run(fly, FlyController.GLIDE_TIME / 2 + TICK)
    assert speed(fly) == 0.0 and not fly.moving
    glide = float(np.linalg.norm(fly.camera.position - start))
    # a linear slow-down covers half the distance full speed would have
    assert glide == pytest.approx(0.5 * fly.speed * FlyController.GLIDE_TIME, rel=0.05)
    resting = fly.camera.position.copy()
    assert fly.update(TICK) is False and np.array_equal(fly.camera.position, resting)


def test_space_stops_at_once(fly):
    fly.key("w", True)
    run(fly, 0.5)
    assert fly.key("space", True) == "stop"
    here = fly.camera.position.copy()
    assert speed(fly) == 0.0 and not fly.held
    assert fly.update(TICK) is False
    assert np.array_equal(fly.camera.position, here)


@pytest.mark.parametrize(("key", "sign"), [("q", 1.0), ("e", -1.0)])
def test_q_and_e_roll_about_the_forward_axis(fly, key, sign):
    cam = fly.camera
    fwd, up, right, pos = cam.forward.copy(), cam.up.copy(), cam.right.copy(), cam.position.copy()
    fly.key(key, True)
    run(fly, 0.5)
    angle = FlyController.ROLL_SPEED * 0.5
    assert np.allclose(cam.forward, fwd, atol=1e-9) and np.allclose(cam.position, pos)
    # Q turns the camera's up towards its right (the view banks clockwise), E the other way
    assert float(cam.up @ right) == pytest.approx(sign * math.sin(angle), abs=1e-9)
    assert float(cam.up @ up) == pytest.approx(math.cos(angle), abs=1e-9)


def test_mouse_look_yaws_and_pitches_by_look_per_pixel(fly):
    cam = fly.camera
    fwd, up, right = cam.forward.copy(), cam.up.copy(), cam.right.copy()
    fly.look(100, 0)  # drag right: turn right about the camera's up
    yaw = 100 * FlyController.LOOK_PER_PIXEL
    assert float(cam.forward @ right) == pytest.approx(math.sin(yaw), abs=1e-9)
    assert np.allclose(cam.up, up, atol=1e-9)
    fwd, up, right = cam.forward.copy(), cam.up.copy(), cam.right.copy()
    fly.look(0, 50)  # drag down (window y grows downwards): look down about the camera's right
    pitch = 50 * FlyController.LOOK_PER_PIXEL
    assert float(cam.forward @ up) == pytest.approx(-math.sin(pitch), abs=1e-9)
    assert float(cam.forward @ fwd) == pytest.approx(math.cos(pitch), abs=1e-9)
    assert np.allclose(cam.right, right, atol=1e-9)


def test_the_wheel_scales_the_speed(fly):
    base = fly.speed
    fly.scale_speed(1)
    assert fly.speed == pytest.approx(base * 1.25)
    fly.scale_speed(-3)
    assert fly.speed == pytest.approx(base / 1.25**2)
    fly.scale_speed(1000)
    assert fly.speed == 1e7  # clipped


def finish_jump(ctl: FlyController) -> None:
    run(ctl, FlyController.JUMP_TIME + 2 * TICK)
    assert not ctl.moving


def test_layer_jumps_end_at_the_layer_camera_and_stop_at_both_ends(fly, layout):
    n = len(layout.slabs)
    assert fly.key("pageup", True) == "layer"
    finish_jump(fly)
    assert fly.layer_index == 0  # the overview is in front of every layer: the first one is next
    visited = [0]
    for _ in range(n + 2):
        fly.key("pageup", True)
        finish_jump(fly)
        visited.append(fly.layer_index)
        target = layer_camera(layout, fly.layer_index, fly.aspect)
        assert np.allclose(fly.camera.position, target.position, atol=1e-9)
        assert np.allclose(fly.camera.rotation, target.rotation, atol=1e-9)
    assert visited == [*range(n), n - 1, n - 1, n - 1]
    for _ in range(n + 1):
        fly.key("pagedown", True)
        finish_jump(fly)
    assert fly.layer_index == 0


def test_a_jump_after_free_flight_goes_to_the_layer_ahead(fly, layout):
    fly.jump_layer(1)
    fly.jump_layer(1)  # a second press mid-flight goes one further
    finish_jump(fly)
    assert fly.layer_index == 1
    gap = layout.slabs[2].z - layout.slabs[3].z
    fly.speed = 0.2 * gap  # slow enough that the glide stays between layers 2 and 3
    fly.key("w", True)  # fly on, past layers 1 and 2
    while fly.camera.position[2] > layout.slabs[2].z - 0.3 * gap:
        fly.update(TICK)
    fly.key("w", False)
    run(fly, FlyController.GLIDE_TIME + TICK)
    assert layout.slabs[3].z < fly.camera.position[2] < layout.slabs[2].z
    assert fly.layer_index is None  # flown off layer 1
    fly.key("pageup", True)
    finish_jump(fly)
    assert fly.layer_index == 3  # the layer ahead, not layer 1 + 1


def test_window_requests_and_unknown_keys(fly):
    assert fly.key("f11", True) == "fullscreen"
    assert fly.key("escape", True) == "quit"
    assert fly.requests == ["fullscreen", "quit"]
    assert fly.key("f11", False) == "fullscreen" and fly.requests == ["fullscreen", "quit"]
    assert fly.key("x", True) is None


def test_r_resets_to_the_start(fly):
    home = fly.camera.copy()
    fly.key("w", True)
    fly.look(30, 10)
    run(fly, 0.3)
    fly.key("r", True)
    assert np.array_equal(fly.camera.position, home.position)
    assert np.array_equal(fly.camera.rotation, home.rotation)
    assert not fly.moving


def test_the_tour_starts_at_the_overview_ends_facing_the_output_and_is_continuous(layout):
    path = flythrough(layout, 16 / 9, seconds=1.0).at  # t in seconds: 0..1
    start = named_camera("overview", layout, 16 / 9)
    assert np.allclose(path(0.0).position, start.position) and np.allclose(path(0.0).rotation, start.rotation)
    end = path(1.0)
    out = layout.slabs[-1]
    assert np.allclose(end.position, layer_camera(layout, len(layout.slabs) - 1, 16 / 9).position)
    to_output = out.centre - end.position
    assert float(end.forward @ to_output / np.linalg.norm(to_output)) == pytest.approx(1.0, abs=1e-9)
    ts = np.linspace(0.0, 1.0, 2001)
    cams = [path(float(t)) for t in ts]
    steps = [np.linalg.norm(b.position - a.position) for a, b in itertools.pairwise(cams)]
    turns = [np.abs(b.rotation - a.rotation).max() for a, b in itertools.pairwise(cams)]
    assert max(steps) < 0.01 * layout.extent  # no jumps between neighbouring instants
    assert max(turns) < 0.02
    assert sum(steps) > 0.5 * layout.extent  # and it does travel


def test_camera_json_file_round_trips(layout, tmp_path):
    cam = named_camera("side", layout)
    cam.fov = 45.0
    cam.rotate_local(roll=0.3)
    path = tmp_path / "cam.json"
    path.write_text(json.dumps(cam.to_dict()))
    back = camera_from_spec(str(path), layout)
    assert np.allclose(back.position, cam.position, atol=1e-5)
    assert np.allclose(back.rotation, cam.rotation, atol=1e-5)
    assert back.fov == 45.0


@pytest.mark.parametrize("text", ["{not json", "[1, 2, 3]", '{"look_at": [0, 0, 0]}', '{"position": [0, 0]}'])
def test_a_bad_camera_file_is_one_line_glnet_error(layout, tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError) as e:
        camera_from_spec(str(path), layout)
    message = str(e.value)
    assert message and "\n" not in message


def test_project_puts_points_where_the_view_projection_says():
    cam = Camera(position=(1.0, 2.0, 5.0)).look_at((0.0, 0.5, -3.0))
    w, h = 640, 360
    rng = np.random.default_rng(0)
    pts = rng.uniform(-4, 4, (200, 3)) + np.array([0.0, 0.5, -3.0])
    p = cam.project(pts, w, h)
    clip = np.c_[pts, np.ones(len(pts))] @ cam.view_projection(w, h).T
    ndc = clip[:, :3] / clip[:, 3:]
    inside = (clip[:, 3] > 0) & np.all(np.abs(ndc) <= 1, axis=1)
    assert inside.any() and not inside.all()
    assert np.array_equal(p.visible, inside)
    assert np.allclose(p.x[inside], (ndc[inside, 0] + 1) / 2 * w, atol=1e-2)
    assert np.allclose(p.y[inside], (ndc[inside, 1] + 1) / 2 * h, atol=1e-2)
    ahead = cam.position + 7.0 * cam.forward + 1.0 * cam.up
    q = cam.project(ahead[None], w, h)
    assert q.x[0] == pytest.approx(w / 2, abs=1e-2)  # straight ahead: the centre column
    assert q.y[0] == pytest.approx(h / 2 + cam.focal_px(h) / 7.0, abs=1e-2)  # one unit up, seven away
    assert q.w[0] == pytest.approx(7.0, rel=1e-5)
    assert not cam.project((cam.position - cam.forward)[None], w, h).visible[0]  # behind the eye


def test_the_help_text_is_built_from_the_controls_table():
    from glnet.cli import build_parser

    text = controls_help()
    labels = {"pageup": "PgUp", "pagedown": "PgDn", "escape": "Esc", "f11": "F11", "space": "Space"}
    for key in CONTROLS:
        assert labels.get(key, key.upper() if len(key) == 1 else key.capitalize()) in text, key
    view = build_parser()._subparsers._group_actions[0].choices["view"]
    assert text in view.description
