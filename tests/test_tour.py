"""Tours as plain math: keyframes hit at their times, smooth in between, slerp, JSON errors, built-ins."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from glnet.camera import Camera, camera_from_dict, clip_planes, layer_camera, named_camera
from glnet.errors import InputError
from glnet.tour import (
    Keyframe,
    KeyframeRecorder,
    Tour,
    camera_keyframe,
    load_tour,
    quat_from_matrix,
    quat_to_matrix,
    slerp,
)


def authored() -> Tour:
    """Uneven times and spacing, a roll (up), a fov change and a sharp turn: the hard cases."""
    return Tour(
        [
            Keyframe(0.0, (0.0, 0.0, 10.0), (0.0, 0.0, 0.0)),
            Keyframe(1.5, (6.0, 2.0, 8.0), (0.0, 0.0, 0.0), (0.3, 1.0, 0.0), 45.0),
            Keyframe(2.0, (8.0, 1.0, 0.0), (0.0, 0.0, -5.0), fov=50.0),
            Keyframe(5.0, (0.0, -3.0, -12.0), (0.0, 0.0, -20.0), (0.0, 1.0, 0.0), 80.0),
        ]
    )


def test_the_camera_is_at_each_keyframe_at_its_time():
    tour = authored()
    for k in tour.keyframes:
        cam = tour.at(k.t)
        want = camera_from_dict(k.to_dict())  # what --camera builds from the same JSON
        assert np.array_equal(cam.position, want.position)
        assert np.array_equal(cam.rotation, want.rotation)
        assert cam.fov == k.fov
        to_target = np.asarray(k.look_at) - cam.position
        assert float(cam.forward @ to_target / np.linalg.norm(to_target)) == pytest.approx(1.0, abs=1e-12)
    assert tour.duration == 5.0
    assert np.array_equal(tour.at(-1.0).position, tour.at(0.0).position)  # clamped
    assert np.array_equal(tour.at(99.0).position, tour.at(5.0).position)


def test_between_keyframes_there_are_no_jumps_in_position_direction_or_fov():
    tour = authored()
    ts = np.linspace(0.0, tour.duration, 5001)
    cams = [tour.at(float(t)) for t in ts]
    steps = [float(np.linalg.norm(b.position - a.position)) for a, b in itertools.pairwise(cams)]
    turns = [math.acos(min(1.0, float(a.forward @ b.forward))) for a, b in itertools.pairwise(cams)]
    rolls = [math.acos(min(1.0, float(a.up @ b.up))) for a, b in itertools.pairwise(cams)]
    fovs = [abs(b.fov - a.fov) for a, b in itertools.pairwise(cams)]
    travel = sum(steps)
    # 5000 samples: a smooth path moves a few thousandths of its length a sample, a jump far more
    assert max(steps) < 0.004 * travel, max(steps) / travel
    assert max(turns) < 0.01 and max(rolls) < 0.01  # radians per 1 ms of tour
    assert max(fovs) < 0.05
    assert all(np.allclose(c.rotation.T @ c.rotation, np.eye(3), atol=1e-9) for c in cams[::50])


def test_time_maps_monotonically_onto_the_curve():
    """Keyframes on a line at uneven times and spacing: x only ever grows, and is each keyframe's at t_i."""
    xs = [0.0, 1.0, 10.0, 11.0, 30.0]
    ts = [0.0, 2.0, 2.5, 6.0, 7.0]
    tour = Tour([Keyframe(t, (x, 0.0, 0.0), (x + 1.0, 0.0, 0.0)) for t, x in zip(ts, xs, strict=True)])
    got = np.array([tour.at(float(t)).position for t in np.linspace(0, 7, 2001)])
    assert np.all(np.diff(got[:, 0]) > 0)
    assert np.allclose(got[:, 1:], 0.0)
    assert [tour.at(t).position[0] for t in ts] == xs


def test_slerp_gives_unit_quaternions_on_the_shorter_arc():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b = (q / np.linalg.norm(q) for q in rng.normal(size=(2, 4)))
        for u in (0.0, 0.1, 0.5, 0.77, 1.0):
            q = slerp(a, b, u)
            assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-12)
        assert np.allclose(slerp(a, b, 0.0), a)
        assert np.allclose(slerp(a, b, 1.0), b) or np.allclose(slerp(a, b, 1.0), -b)
        half = slerp(a, b, 0.5)
        full = math.acos(min(1.0, abs(float(a @ b))))
        assert math.acos(min(1.0, abs(float(a @ half)))) == pytest.approx(full / 2, abs=1e-9)


def test_quaternions_round_trip_rotation_matrices():
    rng = np.random.default_rng(1)
    for _ in range(100):
        cam = Camera(rng.normal(size=3)).look_at(rng.normal(size=3) * 5, rng.normal(size=3))
        q = quat_from_matrix(cam.rotation)
        assert np.linalg.norm(q) == pytest.approx(1.0)
        assert np.allclose(quat_to_matrix(q), cam.rotation, atol=1e-12)


def test_camera_keyframe_reproduces_the_camera_roll_included():
    cam = Camera((1.0, 2.0, 3.0), fov=40.0).look_at((0.0, 0.0, -4.0))
    cam.rotate_local(roll=0.4)
    back = camera_keyframe(cam, 1.25).camera()
    assert np.allclose(back.position, cam.position) and np.allclose(back.rotation, cam.rotation, atol=1e-12)
    assert back.fov == 40.0


def test_tour_json_round_trips(layout, tmp_path):
    tour = authored()
    path = tour.save(tmp_path / "deep" / "t.json")
    back = load_tour(str(path), layout)
    assert [k.to_dict() for k in back.keyframes] == [k.to_dict() for k in tour.keyframes]
    for t in (0.0, 0.7, 1.5, 3.3):
        assert np.array_equal(back.at(t).position, tour.at(t).position)
    clip = clip_planes(Camera(), layout)  # the layout's clip planes, as --camera gets them
    assert (back.at(1.0).near, back.at(1.0).far) == (clip.near, clip.far)


GOOD = {"t": 0.0, "position": [0, 0, 5], "look_at": [0, 0, 0]}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "keyframes"),
        ('{"keyframes": 3}', "keyframes"),
        (json.dumps({"keyframes": [GOOD]}), "at least 2 keyframes"),
        (json.dumps({"keyframes": [GOOD, {"t": 1, "look_at": [0, 0, 0]}]}), 'no "position"'),
        (json.dumps({"keyframes": [GOOD, {"position": [1, 0, 5], "look_at": [0, 0, 0]}]}), 'no "t"'),
        (json.dumps({"keyframes": [GOOD, {**GOOD, "position": [1, 0, 5]}]}), "not after keyframe 0"),
        (json.dumps({"keyframes": [GOOD, {**GOOD, "t": 1, "position": [1, 0]}]}), "3 finite numbers"),
        (json.dumps({"keyframes": [GOOD, {**GOOD, "t": 1, "up": "north"}]}), '"up" must be'),
        (json.dumps({"keyframes": [GOOD, {**GOOD, "t": 1, "fov": 200}]}), "fov between"),
        (json.dumps({"keyframes": [GOOD, {**GOOD, "t": 1, "look_at": [0, 0, 5]}]}), "own position"),
        (json.dumps({"keyframes": [GOOD, 7]}), "must be a JSON object"),
    ],
)
def test_a_bad_tour_file_is_a_one_line_input_error(layout, tmp_path, text, words):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError, match=words) as info:
        load_tour(str(path), layout)
    assert "\n" not in str(info.value)


def test_an_unknown_tour_names_the_built_ins(layout):
    with pytest.raises(InputError, match="flythrough, orbit"):
        load_tour("nosuch", layout)
    with pytest.raises(InputError, match="positive"):
        load_tour("orbit", layout, seconds=0)


def test_the_flythrough_runs_from_the_overview_to_the_output_layer(layout):
    tour = load_tour("flythrough", layout, 16 / 9)
    assert tour.duration == 6.0 and load_tour("flythrough", layout, seconds=4).duration == 4.0
    start = named_camera("overview", layout, 16 / 9)
    assert np.allclose(tour.at(0).position, start.position) and np.allclose(
        tour.at(0).rotation, start.rotation
    )
    end = layer_camera(layout, len(layout.slabs) - 1, 16 / 9)
    assert np.allclose(tour.at(6.0).position, end.position)
    assert np.allclose(tour.at(0.5).position, start.position)  # the overview is held at first


def test_the_orbit_circles_the_centre_looking_at_it_and_closes(layout):
    tour = load_tour("orbit", layout, 16 / 9, seconds=8)
    assert tour.duration == 8.0 and tour.closed
    lo, hi = layout.bounds()
    centre = (lo + hi) / 2
    cams = [tour.at(float(t)) for t in np.linspace(0, 8, 801)]
    radii = [float(np.hypot(*(c.position - centre)[[0, 2]])) for c in cams]
    assert max(radii) / min(radii) < 1.01
    for c in cams[::20]:
        to_c = centre - c.position
        assert float(c.forward @ to_c / np.linalg.norm(to_c)) > 0.999
    angles = np.unwrap([math.atan2(*(c.position - centre)[[0, 2]]) for c in cams])
    assert abs(angles[-1] - angles[0]) == pytest.approx(2 * math.pi, abs=1e-6)
    assert np.all(np.diff(angles) > 0) or np.all(np.diff(angles) < 0)
    steps = [float(np.linalg.norm(b.position - a.position)) for a, b in itertools.pairwise(cams)]
    assert max(steps) < 1.1 * min(steps) + 1e-9  # an even pace, also across the loop's seam


def test_the_keyframe_recorder_spaces_keys_two_seconds_apart(tmp_path, layout):
    cam = named_camera("overview", layout)
    rec = KeyframeRecorder(lambda: cam)
    assert rec.save(tmp_path / "one.json") is None
    rec.add()
    cam = named_camera("side", layout)
    rec.add()
    cam = named_camera("top", layout)
    rec.add()
    assert [k.t for k in rec.keyframes] == [0.0, 2.0, 4.0]
    path = rec.save(tmp_path / "t.json")
    back = load_tour(str(path), layout)
    assert np.allclose(back.at(4.0).rotation, named_camera("top", layout).rotation, atol=1e-9)
    assert not (tmp_path / "one.json").exists()


def test_the_window_plays_a_tour_by_moving_the_viewers_camera_on_each_tick(layout, tmp_path):
    """--tour in the window, through the Viewer's public hooks (a stand-in viewer: no window needed)."""
    from types import SimpleNamespace

    from glnet.cli_record import attach_tour

    hooks: dict[str, list] = {"key": [], "tick": [], "close": []}
    viewer = SimpleNamespace(
        camera=named_camera("front", layout),
        vis=SimpleNamespace(layout=layout),
        screen=SimpleNamespace(width=160, height=90),
        add_key_handler=hooks["key"].append,
        add_tick_handler=hooks["tick"].append,
        add_close_handler=hooks["close"].append,
        request_draw=lambda: None,
    )
    said: list[str] = []
    controls = attach_tour(viewer, "orbit", str(tmp_path / "t.json"), said.append)
    tour = load_tour("orbit", layout, 160 / 90)
    for _ in range(30):
        hooks["tick"][0](0.1)
    assert np.allclose(viewer.camera.position, tour.at(3.0).position)
    assert np.allclose(viewer.camera.rotation, tour.at(3.0).rotation)
    for _ in range(100):  # past the end: it loops
        hooks["tick"][0](0.1)
    assert np.allclose(viewer.camera.position, tour.at(13.0 % 12.0).position)
    assert hooks["key"][0]("k", True, frozenset()) and hooks["key"][0]("k", False, frozenset())
    assert not hooks["key"][0]("k", True, frozenset({"shift"}))  # Shift+K is not ours
    hooks["close"][0]()
    assert controls.saved is None and "a tour needs 2" in said[-1]  # one keyframe: nothing written
    assert not (tmp_path / "t.json").exists()
