"""Tours: keyframed camera paths, authored as JSON or built in (``flythrough``, ``orbit``), replayed exactly.

A tour file is ``{"keyframes": [{"t": 0.0, "position": [x, y, z], "look_at": [x, y, z], "up": [0, 1, 0],
"fov": 60}, ...]}`` (``t`` in seconds, increasing; ``up`` and ``fov`` optional). Positions follow a
centripetal Catmull-Rom curve through the keyframes, reparametrised per segment so the camera is at
keyframe i at exactly ``t_i``; orientations are slerped between the keyframes' quaternions and the field of
view is interpolated linearly. A tour whose last position equals its first closes into a smooth loop.
Plain numpy: no GL.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .camera import Camera, clip_planes, layer_camera, named_camera
from .errors import InputError

if TYPE_CHECKING:
    from .layout import Layout

__all__ = [
    "BUILTIN_TOURS",
    "Keyframe",
    "KeyframeRecorder",
    "Tour",
    "camera_keyframe",
    "flythrough",
    "load_tour",
    "orbit",
    "quat_from_matrix",
    "quat_to_matrix",
    "slerp",
]

_EPS = 1e-9


@dataclass
class Keyframe:
    """The camera at time ``t`` (seconds): where it is, what it looks at, its up and its field of view."""

    t: float
    position: tuple[float, float, float]
    look_at: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    fov: float = 60.0

    def camera(self) -> Camera:
        """This keyframe as a camera, built exactly as ``--camera`` builds one from the same JSON."""
        cam = Camera(np.asarray(self.position, np.float64), fov=float(self.fov))
        return cam.look_at(self.look_at, self.up)

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "position": [float(v) for v in self.position],
            "look_at": [float(v) for v in self.look_at],
            "up": [float(v) for v in self.up],
            "fov": float(self.fov),
        }


def camera_keyframe(camera: Camera, t: float) -> Keyframe:
    """The keyframe that reproduces ``camera`` (its roll kept through ``up``) at time ``t``."""
    pos = tuple(float(v) for v in camera.position)
    target = tuple(float(v) for v in camera.position + camera.forward)
    return Keyframe(float(t), pos, target, tuple(float(v) for v in camera.up), float(camera.fov))


# -- quaternions (w, x, y, z) -----------------------------------------------------------------------------
def quat_from_matrix(r: np.ndarray) -> np.ndarray:
    """The unit quaternion (w, x, y, z) of a rotation matrix."""
    m = np.asarray(r, np.float64)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    return q / np.linalg.norm(q)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """The rotation matrix of a (w, x, y, z) quaternion (normalised first)."""
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def slerp(a: np.ndarray, b: np.ndarray, u: float) -> np.ndarray:
    """Spherical interpolation between unit quaternions along the shorter arc; a unit quaternion."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    dot = float(a @ b)
    if dot < 0:
        b, dot = -b, -dot
    if dot > 0.9995:  # nearly equal: linear, then normalised (slerp's limit, without dividing by ~0)
        q = a + u * (b - a)
        return q / np.linalg.norm(q)
    theta = math.acos(min(1.0, dot))
    s = math.sin(theta)
    q = (math.sin((1 - u) * theta) / s) * a + (math.sin(u * theta) / s) * b
    return q / np.linalg.norm(q)


# -- the path -----------------------------------------------------------------------------------------------
def _catmull_rom(p: Sequence[np.ndarray], u: float) -> np.ndarray:
    """Centripetal Catmull-Rom between p[1] and p[2] at u in [0, 1] (Barry-Goldman pyramid)."""
    p0, p1, p2, p3 = p
    if np.linalg.norm(p2 - p1) < _EPS:
        return p1.copy()
    k0 = 0.0
    k1 = k0 + max(float(np.linalg.norm(p1 - p0)) ** 0.5, _EPS)
    k2 = k1 + max(float(np.linalg.norm(p2 - p1)) ** 0.5, _EPS)
    k3 = k2 + max(float(np.linalg.norm(p3 - p2)) ** 0.5, _EPS)
    s = k1 + u * (k2 - k1)  # time maps linearly (so monotonically) onto the segment's knot interval
    a1 = (k1 - s) / (k1 - k0) * p0 + (s - k0) / (k1 - k0) * p1
    a2 = (k2 - s) / (k2 - k1) * p1 + (s - k1) / (k2 - k1) * p2
    a3 = (k3 - s) / (k3 - k2) * p2 + (s - k2) / (k3 - k2) * p3
    b1 = (k2 - s) / (k2 - k0) * a1 + (s - k0) / (k2 - k0) * a2
    b2 = (k3 - s) / (k3 - k1) * a2 + (s - k1) / (k3 - k1) * a3
    return (k2 - s) / (k2 - k1) * b1 + (s - k1) / (k2 - k1) * b2


class Tour:
    """A camera path through ``keyframes`` (at least two, increasing ``t``); ``at(t)`` is the camera at any
    time, clamped to [0, duration]. ``near``/``far`` are the clip planes every camera gets."""

    def __init__(
        self, keyframes: Sequence[Keyframe], *, near: float = 0.05, far: float = 20000.0, name: str = ""
    ) -> None:
        _check_keyframes(keyframes)
        self.keyframes = list(keyframes)
        self.near, self.far = float(near), float(far)
        self.name = name
        self._times = np.array([k.t for k in self.keyframes], np.float64)
        self._points = [np.asarray(k.position, np.float64) for k in self.keyframes]
        self._cameras = [k.camera() for k in self.keyframes]
        self._quats = [quat_from_matrix(c.rotation) for c in self._cameras]
        pts = self._points
        self.closed = len(pts) >= 4 and float(np.linalg.norm(pts[0] - pts[-1])) < _EPS
        if self.closed:  # a loop: the neighbours wrap around, so the curve is smooth at the seam too
            self._ends = (pts[-2], pts[1])
        else:  # open: mirror the second point and the one before last
            self._ends = (2 * pts[0] - pts[1], 2 * pts[-1] - pts[-2])

    @property
    def duration(self) -> float:
        """Seconds from t = 0 to the last keyframe."""
        return float(self._times[-1])

    def _point(self, i: int) -> np.ndarray:
        if i < 0:
            return self._ends[0]
        if i >= len(self._points):
            return self._ends[1]
        return self._points[i]

    def at(self, t: float) -> Camera:
        """The camera at ``t`` seconds: exactly keyframe i's camera at ``t_i``, interpolated between."""
        t = min(max(float(t), float(self._times[0])), self.duration)
        i = int(np.searchsorted(self._times, t, side="right")) - 1
        i = min(max(i, 0), len(self._times) - 2)
        t0, t1 = self._times[i], self._times[i + 1]
        u = (t - t0) / (t1 - t0)
        if u <= 0.0 or u >= 1.0:
            cam = self._cameras[i if u <= 0.0 else i + 1].copy()
        else:
            pos = _catmull_rom([self._point(j) for j in range(i - 1, i + 3)], u)
            rot = quat_to_matrix(slerp(self._quats[i], self._quats[i + 1], u))
            fov = (1 - u) * self.keyframes[i].fov + u * self.keyframes[i + 1].fov
            cam = Camera(pos, rot, fov)
        cam.near, cam.far = self.near, self.far
        return cam

    def to_json(self) -> str:
        """The tour file: ``{"keyframes": [...]}``, loadable with :func:`load_tour`."""
        return json.dumps({"keyframes": [k.to_dict() for k in self.keyframes]}, indent=1) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` (folders created)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.to_json(), encoding="utf-8")
        return p

    def __repr__(self) -> str:
        return f"Tour({self.name or 'custom'}, {len(self.keyframes)} keyframes, {self.duration:g} s)"


def _check_keyframes(keyframes: Sequence[Keyframe]) -> None:
    if len(keyframes) < 2:
        raise InputError(f"a tour needs at least 2 keyframes, this one has {len(keyframes)}")
    for i, (a, b) in enumerate(itertools.pairwise(keyframes)):
        if not b.t > a.t:
            raise InputError(f"tour keyframe {i + 1} has t={b.t:g}, not after keyframe {i}'s t={a.t:g}")
    if keyframes[0].t < 0:
        raise InputError(f"tour keyframe 0 has t={keyframes[0].t:g}: times start at 0 or later")


def _vector(d: dict[str, Any], key: str, i: int, default: Any = None) -> tuple[float, float, float]:
    v = d.get(key, default)
    if v is None:
        raise InputError(f'tour keyframe {i} has no "{key}" (it needs "t", "position" and "look_at")')
    try:
        out = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        raise InputError(f'tour keyframe {i}: "{key}" must be a list of 3 numbers, not {v!r}') from None
    if len(out) != 3 or not all(math.isfinite(x) for x in out):
        raise InputError(f'tour keyframe {i}: "{key}" must be 3 finite numbers, not {v!r}')
    return out  # type: ignore[return-value]


def _keyframe(d: Any, i: int) -> Keyframe:
    if not isinstance(d, dict):
        raise InputError(f"tour keyframe {i} must be a JSON object, not {type(d).__name__}")
    if "t" not in d:
        raise InputError(f'tour keyframe {i} has no "t" (its time in seconds)')
    try:
        t, fov = float(d["t"]), float(d.get("fov", 60.0))
    except (TypeError, ValueError):
        raise InputError(f'tour keyframe {i}: "t" and "fov" must be numbers') from None
    if not (math.isfinite(t) and 1.0 <= fov <= 170.0):
        raise InputError(f"tour keyframe {i}: t must be finite and fov between 1 and 170 degrees")
    pos, target = _vector(d, "position", i), _vector(d, "look_at", i)
    if np.allclose(pos, target, atol=0, rtol=0):
        raise InputError(f"tour keyframe {i} looks at its own position")
    return Keyframe(t, pos, target, _vector(d, "up", i, (0.0, 1.0, 0.0)), fov)


def tour_from_dict(d: Any, layout: Layout | None = None, *, name: str = "") -> Tour:
    """A tour from the parsed JSON object; one-line :class:`InputError` when it is malformed."""
    if not isinstance(d, dict) or not isinstance(d.get("keyframes"), list):
        raise InputError('a tour file must be a JSON object {"keyframes": [...]}')
    return _tour([_keyframe(k, i) for i, k in enumerate(d["keyframes"])], layout, name)


def _tour(keyframes: list[Keyframe], layout: Layout | None, name: str) -> Tour:
    if layout is None:
        return Tour(keyframes, name=name)
    clip = clip_planes(Camera(), layout)
    return Tour(keyframes, near=clip.near, far=clip.far, name=name)


# -- built-in tours -----------------------------------------------------------------------------------------
def _flythrough_path(layout: Layout, aspect: float) -> Callable[[float], Camera]:
    """The scripted fly-through, ``u`` in [0, 1]: hold the overview, glide down beside the stack looking
    ahead at the coming layers, then turn to face the output layer."""
    start = named_camera("overview", layout, aspect)
    start_target = start.position + start.forward * np.linalg.norm(
        start.position - np.mean(layout.bounds(), axis=0)
    )
    end = layer_camera(layout, len(layout.slabs) - 1, aspect)
    end_target = layout.slabs[-1].centre
    zs = np.array([s.z for s in layout.slabs])
    sides = np.array([max(max(s.size), 4 * s.spacing) for s in layout.slabs])
    k = min(5, len(sides))
    smooth = np.convolve(np.pad(sides, (k // 2, k - 1 - k // 2), mode="edge"), np.ones(k) / k, mode="valid")

    def glide(u: float) -> tuple[np.ndarray, np.ndarray]:
        z = zs[0] + u * (zs[-1] - zs[0])
        side = float(np.interp(-z, -zs, smooth))
        eye = np.array([1.1 * side, 0.45 * side, z + 0.9 * side])
        return eye, np.array([0.0, 0.0, z - 1.2 * side])

    def blend(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], w: float) -> Camera:
        w = w * w * (3 - 2 * w)
        cam = start.copy()
        cam.position = (1 - w) * a[0] + w * b[0]
        return cam.look_at((1 - w) * a[1] + w * b[1])

    def at(u: float) -> Camera:
        u = min(max(u, 0.0), 1.0)
        if u < 0.12:
            return start.copy()
        if u < 0.25:
            return blend((start.position, start_target), glide(0.0), (u - 0.12) / 0.13)
        if u < 0.85:
            g = (u - 0.25) / 0.6
            return blend(glide(g), glide(g), 0.0)
        return blend(glide(1.0), (end.position, end_target), (u - 0.85) / 0.15)

    return at


def flythrough(layout: Layout, aspect: float = 16 / 9, seconds: float = 6.0) -> Tour:
    """The scripted fly-through as keyframes over ``seconds``: the overview held, a glide down beside the
    stack looking at the coming layers, and a turn to face the output layer."""
    path = _flythrough_path(layout, aspect)
    us = sorted({*np.linspace(0.0, 1.0, 41).round(6).tolist(), 0.12, 0.25, 0.85})
    keys = [camera_keyframe(path(u), u * seconds) for u in us]
    return _tour(keys, layout, "flythrough")


def orbit(layout: Layout, aspect: float = 16 / 9, seconds: float = 12.0) -> Tour:
    """Once around the model in ``seconds``, at the overview's distance and height, looking at its centre."""
    lo, hi = layout.bounds()
    centre = (lo + hi) / 2
    start = named_camera("overview", layout, aspect)
    offset = start.position - centre
    radius = max(float(np.hypot(offset[0], offset[2])), 1e-3)
    height = float(offset[1])
    phase = math.atan2(offset[0], offset[2])
    keys = []
    n = 16
    for j in range(n + 1):
        a = phase + 2 * math.pi * j / n
        pos = centre + np.array([radius * math.sin(a), height, radius * math.cos(a)])
        if j == n:
            pos = np.asarray(keys[0].position)  # exactly the first: a closed loop
        keys.append(Keyframe(seconds * j / n, tuple(float(v) for v in pos), tuple(float(v) for v in centre)))
    return _tour(keys, layout, "orbit")


BUILTIN_TOURS: dict[str, Callable[..., Tour]] = {"flythrough": flythrough, "orbit": orbit}


def load_tour(spec: str, layout: Layout, aspect: float = 16 / 9, *, seconds: float | None = None) -> Tour:
    """``--tour``: a built-in name (``flythrough``, ``orbit``; ``seconds`` sets its length) or a JSON file."""
    name = spec.strip()
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise InputError(f"a tour's length must be a positive number of seconds, not {seconds!r}")
    if name in BUILTIN_TOURS:
        kwargs = {} if seconds is None else {"seconds": float(seconds)}
        return BUILTIN_TOURS[name](layout, aspect, **kwargs)
    path = Path(name)
    if not path.is_file():
        known = ", ".join(BUILTIN_TOURS)
        raise InputError(f"--tour {spec!r} is neither a built-in tour ({known}) nor a JSON file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"tour file {str(path)!r} is not valid JSON: {e.msg} at line {e.lineno}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read tour file {str(path)!r}: {e}") from None
    return tour_from_dict(data, layout, name=path.stem)


class KeyframeRecorder:
    """Collects keyframes from a live camera (the window's ``K``): the first at t = 0, each next one
    ``spacing`` seconds after the previous, so a tour replays at an even pace whatever the pauses between
    presses; :meth:`save` writes them as a tour file."""

    def __init__(self, camera: Callable[[], Camera], *, spacing: float = 2.0) -> None:
        self.camera = camera
        self.spacing = float(spacing)
        self.keyframes: list[Keyframe] = []

    def add(self) -> Keyframe:
        """Add the camera as it is now."""
        t = 0.0 if not self.keyframes else self.keyframes[-1].t + self.spacing
        key = camera_keyframe(self.camera(), t)
        self.keyframes.append(key)
        return key

    def save(self, path: str | Path) -> Path | None:
        """Write the keyframes as a tour file (None, and nothing written, with fewer than two)."""
        if len(self.keyframes) < 2:
            return None
        return Tour(self.keyframes).save(path)
