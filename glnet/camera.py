"""Camera: a fly camera's state and matrices, the key/mouse controls as a table, and named views (tours are
in :mod:`glnet.tour`).

Plain numpy, no GL and no window, so everything here is testable and scriptable: benchmarks and recordings
drive the same :class:`FlyController` actions a user's keys do. World: x right, y up, layers along -z.
Matrices are row-major (uploaded with ``transpose=True``); window coordinates have y up, as in GL.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError

if TYPE_CHECKING:
    from .layout import Layout

__all__ = [
    "CONTROLS",
    "Camera",
    "FlyController",
    "Projected",
    "Tile",
    "camera_from_spec",
    "clip_planes",
    "controls_help",
    "named_camera",
]


def _normalize(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    x, y, z = _normalize(np.asarray(axis, np.float64))
    c, s = math.cos(angle), math.sin(angle)
    t = 1 - c
    return np.array(
        [
            [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
            [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
            [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
        ]
    )


def _orthonormalize(r: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(r)
    return u @ vt


@dataclass
class Projected:
    """Points in window coordinates: x, y in pixels (y up), w the view depth, and which are drawable."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    visible: np.ndarray


@dataclass(frozen=True)
class Tile:
    """A pixel rectangle ``rect`` = (x0, y0, w, h) of a ``full`` = (W, H) virtual screen; y0 counts rows from
    the top, as in the stitched image. A camera with a tile draws exactly those pixels of the full frame."""

    full: tuple[int, int]
    rect: tuple[int, int, int, int]

    def __post_init__(self) -> None:
        (fw, fh), (_, _, w, h) = self.full, self.rect
        if not (fw > 0 and fh > 0 and w > 0 and h > 0):
            raise InputError(f"a tile needs positive sizes (full {fw}x{fh}, tile {w}x{h})")

    def ndc_matrix(self) -> np.ndarray:
        """Clip-space scale and offset taking the full frame's NDC to the tile's (x, y only; y up in GL)."""
        (fw, fh), (x0, y0, w, h) = self.full, self.rect
        yb = fh - y0 - h  # the tile's bottom row in GL's y-up window coordinates
        m = np.eye(4)
        m[0, 0], m[0, 3] = fw / w, (fw - 2 * x0 - w) / w
        m[1, 1], m[1, 3] = fh / h, (fh - 2 * yb - h) / h
        return m


@dataclass
class Camera:
    """Where the eye is and where it looks. ``rotation`` columns are the camera's right, up and back axes.
    With ``tile`` set it draws only that rectangle of the full frame (off-axis): walls and big stills."""

    position: np.ndarray = field(default_factory=lambda: np.zeros(3))
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    fov: float = 60.0  # vertical field of view, degrees
    near: float = 0.05
    far: float = 20000.0
    tile: Tile | None = None

    def __post_init__(self) -> None:
        self.position = np.asarray(self.position, np.float64).reshape(3)
        self.rotation = np.asarray(self.rotation, np.float64).reshape(3, 3)
        if not (1.0 <= self.fov <= 170.0):
            raise InputError(f"field of view must be between 1 and 170 degrees, not {self.fov}")
        if not (0 < self.near < self.far):
            raise InputError(f"camera needs 0 < near < far (got near={self.near}, far={self.far})")

    # -- axes ----------------------------------------------------------------------------------------------
    @property
    def right(self) -> np.ndarray:
        return self.rotation[:, 0]

    @property
    def up(self) -> np.ndarray:
        return self.rotation[:, 1]

    @property
    def forward(self) -> np.ndarray:
        return -self.rotation[:, 2]

    def copy(self) -> Camera:
        return Camera(self.position.copy(), self.rotation.copy(), self.fov, self.near, self.far, self.tile)

    def tiled(self, full_size: tuple[int, int], rect: tuple[int, int, int, int]) -> Camera:
        """A copy that draws only ``rect`` (x0, y0 from the top, w, h) of a ``full_size`` frame: render it
        into a w x h target; point sizes and level of detail stay the full frame's."""
        cam = self.copy()
        cam.tile = Tile(tuple(full_size), tuple(rect))  # type: ignore[arg-type]
        return cam

    def look_at(self, target: Sequence[float], up: Sequence[float] = (0.0, 1.0, 0.0)) -> Camera:
        """Turn to face ``target`` with ``up`` as close to the screen's up as possible."""
        fwd = _normalize(np.asarray(target, np.float64) - self.position)
        if not np.any(fwd):
            raise InputError("the camera cannot look at its own position")
        upv = np.asarray(up, np.float64)
        if abs(float(np.dot(fwd, _normalize(upv)))) > 0.999:
            upv = np.array([0.0, 0.0, -1.0]) if abs(fwd[1]) > 0.9 else np.array([0.0, 1.0, 0.0])
        right = _normalize(np.cross(fwd, upv))
        true_up = np.cross(right, fwd)
        self.rotation = np.stack([right, true_up, -fwd], axis=1)
        return self

    # -- matrices ------------------------------------------------------------------------------------------
    def view_matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.rotation.T
        m[:3, 3] = -self.rotation.T @ self.position
        return m

    def projection_matrix(self, aspect: float) -> np.ndarray:
        """The perspective projection; with a tile, the full frame's (``aspect`` is then the tile's, unused)
        followed by the tile's NDC scale and offset."""
        if self.tile is not None:
            fw, fh = self.tile.full
            return self.tile.ndc_matrix() @ Camera.projection_matrix(replace(self, tile=None), fw / fh)
        f = 1.0 / math.tan(math.radians(self.fov) / 2)
        n, fa = self.near, self.far
        m = np.zeros((4, 4))
        m[0, 0] = f / aspect
        m[1, 1] = f
        m[2, 2] = (fa + n) / (n - fa)
        m[2, 3] = 2 * fa * n / (n - fa)
        m[3, 2] = -1.0
        return m

    def view_projection(self, width: int, height: int) -> np.ndarray:
        return self.projection_matrix(width / height) @ self.view_matrix()

    def focal_px(self, height: int) -> float:
        """Pixels per world unit for an object at view depth 1 (the full frame's height when tiled)."""
        if self.tile is not None:
            height = self.tile.full[1]
        return 0.5 * height / math.tan(math.radians(self.fov) / 2)

    def full_size(self, width: int, height: int) -> tuple[int, int]:
        """The whole frame a ``width`` x ``height`` target of this camera is part of (itself when untiled)."""
        return self.tile.full if self.tile is not None else (width, height)

    def project(self, points: np.ndarray, width: int, height: int) -> Projected:
        """Window coordinates of world ``points`` (N, 3), in float32 as the shaders compute them."""
        vp = self.view_projection(width, height).astype(np.float32)
        p = np.asarray(points, np.float32)
        clip = np.c_[p, np.ones(len(p), np.float32)] @ vp.T
        w = clip[:, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            visible = (w > 0) & np.all(np.abs(clip[:, :3]) <= w[:, None], axis=1)
            ndc = clip[:, :2] / w[:, None]
        x = (ndc[:, 0] * np.float32(0.5) + np.float32(0.5)) * np.float32(width)
        y = (ndc[:, 1] * np.float32(0.5) + np.float32(0.5)) * np.float32(height)
        return Projected(x, y, w, visible)

    # -- motion --------------------------------------------------------------------------------------------
    def move_local(self, delta: Sequence[float]) -> None:
        """Move by ``delta`` in camera axes (x right, y up, z back)."""
        self.position = self.position + self.rotation @ np.asarray(delta, np.float64)

    def rotate_local(self, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> None:
        """Turn by angles in radians about the camera's own up, right and forward axes."""
        r = self.rotation
        if yaw:
            r = _axis_angle(r[:, 1], yaw) @ r
        if pitch:
            r = _axis_angle(r[:, 0], pitch) @ r
        if roll:
            r = _axis_angle(-r[:, 2], roll) @ r
        self.rotation = _orthonormalize(r)

    # -- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "position": [round(float(v), 6) for v in self.position],
            "look_at": [round(float(v), 6) for v in self.position + self.forward],
            "up": [round(float(v), 6) for v in self.up],
            "fov": self.fov,
        }


def camera_from_dict(d: dict[str, Any]) -> Camera:
    """A camera from ``{"position": [x,y,z], "look_at": [x,y,z], "up"?: [...], "fov"?: deg}``."""
    try:
        pos = np.asarray(d["position"], np.float64).reshape(3)
        target = np.asarray(d.get("look_at", pos + np.array([0.0, 0.0, -1.0])), np.float64).reshape(3)
        up = np.asarray(d.get("up", (0.0, 1.0, 0.0)), np.float64).reshape(3)
        fov = float(d.get("fov", 60.0))
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(
            'a camera JSON needs {"position": [x, y, z], "look_at": [x, y, z]} (optional "up", "fov")'
        ) from e
    if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(target))):
        raise InputError("camera position and look_at must be finite numbers")
    cam = Camera(pos, fov=fov)
    return cam.look_at(target, up)


def _fit_distance(radius: float, cam: Camera, aspect: float) -> float:
    half = math.radians(cam.fov) / 2
    half_h = math.atan(math.tan(half) * min(aspect, 1.0))
    return radius / math.sin(min(half, half_h))


def clip_planes(cam: Camera, layout: Layout) -> Camera:
    """Set ``cam``'s near and far planes for ``layout``'s extent (every built camera gets these)."""
    ext = layout.extent
    cam.far = max(ext * 4.0, 100.0)
    cam.near = max(cam.far * 2e-6, 1e-3)
    return cam


NAMED_VIEWS = ("overview", "front", "side", "top", "back")


def named_camera(name: str, layout: Layout, aspect: float = 16 / 9) -> Camera:
    """A camera framing the layout: overview, front, side, top, back, or ``layer:<index|name>``."""
    lo, hi = layout.bounds()
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo)) / 2 or 1.0
    cam = clip_planes(Camera(), layout)
    if name.startswith("layer:"):
        return layer_camera(layout, name.split(":", 1)[1], aspect)
    directions = {
        "overview": np.array([0.55, 0.4, 1.0]),
        "front": np.array([0.0, 0.0, 1.0]),
        "side": np.array([1.0, 0.05, 0.0]),
        "top": np.array([0.0, 1.0, 0.05]),
        "back": np.array([0.0, 0.0, -1.0]),
    }
    if name not in directions:
        raise InputError(
            f"unknown camera {name!r}: use one of {', '.join(NAMED_VIEWS)}, layer:<n>, or a JSON object"
        )
    d = _normalize(directions[name])
    if name == "overview":
        # From the front-right, above, looking down the stack: near layers large, the rest receding.
        target = np.array([centre[0], centre[1], hi[2] - 0.3 * (hi[2] - lo[2])])
        return fit_box(cam, lo, hi, d, aspect, target=target)
    dist = _fit_distance(radius, cam, aspect) * (1.05 if name != "front" else 1.0)
    if name in ("front", "back"):
        # Face the first (last) slab, framed: the rest of the network lies behind it.
        s = layout.slabs[0] if name == "front" else layout.slabs[-1]
        r = max(max(s.size) / 2, s.spacing)
        target = s.centre
        panel = layout.input_panel
        if name == "front" and panel is not None:
            r = max(panel.size) / 2
            target = np.array(
                [panel.origin[0] + panel.size[0] / 2, panel.origin[1] - panel.size[1] / 2, panel.origin[2]]
            )
        dist = _fit_distance(r, cam, aspect) * 1.15
        cam.position = target + d * dist
        return cam.look_at(target)
    cam.position = centre + d * dist
    return cam.look_at(centre)


def fit_box(
    cam: Camera,
    lo: np.ndarray,
    hi: np.ndarray,
    direction: np.ndarray,
    aspect: float,
    *,
    target: np.ndarray | None = None,
    margin: float = 0.92,
) -> Camera:
    """Place ``cam`` on the ray from ``target`` along ``direction``, as close as keeps the box in view."""
    target = (lo + hi) / 2 if target is None else target
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    d = _normalize(np.asarray(direction, np.float64))

    def fits(dist: float) -> bool:
        cam.position = target + d * dist
        cam.look_at(target)
        clip = np.c_[corners, np.ones(8)] @ cam.view_projection(1000, max(1, round(1000 / aspect))).T
        w = clip[:, 3]
        return bool(np.all(w > cam.near) and np.all(np.abs(clip[:, :2]) <= margin * w[:, None]))

    near_d, far_d = 0.0, float(np.linalg.norm(hi - lo)) + 1.0
    while not fits(far_d):
        far_d *= 2
    for _ in range(40):
        mid = (near_d + far_d) / 2
        near_d, far_d = (near_d, mid) if fits(mid) else (mid, far_d)
    fits(far_d)
    return cam


def layer_camera(layout: Layout, which: str | int, aspect: float = 16 / 9) -> Camera:
    """A camera facing one slab, framing it."""
    index: int | None = None
    if isinstance(which, int) or str(which).lstrip("-").isdigit():
        index = int(which)
        if not -len(layout.slabs) <= index < len(layout.slabs):
            raise InputError(f"layer index {index} is outside 0..{len(layout.slabs) - 1}")
        index %= len(layout.slabs)
    else:
        names = [s.name for s in layout.slabs]
        if which not in names:
            import difflib

            close = difflib.get_close_matches(str(which), names, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise InputError(f"no layer named {which!r}{hint}")
        index = names.index(str(which))
    s = layout.slabs[index]
    cam = clip_planes(Camera(), layout)
    r = max(max(s.size) / 2, 4 * s.spacing)
    dist = _fit_distance(r, cam, aspect) * 1.1
    # stay in the gap in front of the layer, so the previous one (or the input) does not block the view
    in_front = (
        layout.slabs[index - 1].z
        if index > 0
        else (layout.input_panel.origin[2] if layout.input_panel else None)
    )
    if in_front is not None:
        dist = min(dist, 0.85 * (in_front - s.z))
    cam.position = s.centre + np.array([0.0, 0.0, dist])
    return cam.look_at(s.centre)


def camera_from_spec(spec: str | None, layout: Layout, aspect: float = 16 / 9) -> Camera:
    """Parse ``--camera``: a view name, ``layer:<n>``, a JSON object, or a path to a JSON file."""
    if not spec:
        return named_camera("overview", layout, aspect)
    text = spec.strip()
    if not text.startswith("{"):
        from pathlib import Path

        p = Path(text)
        if p.suffix == ".json" and p.is_file():
            text = p.read_text(encoding="utf-8")
        else:
            return named_camera(text, layout, aspect)
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"--camera JSON is not valid: {e.msg} at column {e.colno}") from e
    if not isinstance(d, dict):
        raise InputError("--camera JSON must be an object")
    cam = camera_from_dict(d)
    clip_planes(cam, layout)
    return cam


# -- controls ------------------------------------------------------------------------------------------

# key (VisPy key name, lower case) -> (action, argument). Movement axes are camera-local (x right, z back).
CONTROLS: dict[str, tuple[str, Any]] = {
    "w": ("move", (0, 0, -1)),
    "up": ("move", (0, 0, -1)),
    "s": ("move", (0, 0, 1)),
    "down": ("move", (0, 0, 1)),
    "a": ("move", (-1, 0, 0)),
    "left": ("move", (-1, 0, 0)),
    "d": ("move", (1, 0, 0)),
    "right": ("move", (1, 0, 0)),
    "q": ("roll", 1),
    "e": ("roll", -1),
    "space": ("stop", None),
    "r": ("reset", None),
    "pageup": ("layer", 1),
    "pagedown": ("layer", -1),
    "f11": ("fullscreen", None),
    "c": ("edges", None),
    "k": ("keyframe", None),
    "escape": ("quit", None),
}
MOUSE = {"drag": "look", "wheel": "speed"}

_KEY_LABELS = {"pageup": "PgUp", "pagedown": "PgDn", "escape": "Esc", "f11": "F11"}
_MOVE_WORDS = {(0, 0, -1): "forward", (0, 0, 1): "back", (-1, 0, 0): "left", (1, 0, 0): "right"}
_ACTION_WORDS = {
    "roll": "roll",
    "stop": "stops",
    "reset": "resets",
    "layer": "next/previous layer",
    "fullscreen": "fullscreen",
    "edges": "shows/hides the layer graph",
    "keyframe": "adds a tour keyframe (--save-tour)",
    "quit": "quits",
}
_MOUSE_WORDS = {"look": "looks", "speed": "sets speed"}
_MOUSE_LABELS = {"drag": "mouse drag"}


def controls_help() -> str:
    """The controls in words, built from :data:`CONTROLS` and :data:`MOUSE` (for ``glnet view --help``)."""
    groups: dict[str, list[str]] = {}
    for key, (action, arg) in CONTROLS.items():
        label = _KEY_LABELS.get(key, key.upper() if len(key) == 1 else key.capitalize())
        words = (
            _MOVE_WORDS.get(tuple(arg), str(arg)) if action == "move" else _ACTION_WORDS.get(action, action)
        )
        groups.setdefault(words, []).append(label)
    keys = [f"{'/'.join(labels)} {words}" for words, labels in groups.items()]
    mouse = [f"{_MOUSE_LABELS.get(how, how)} {_MOUSE_WORDS.get(what, what)}" for how, what in MOUSE.items()]
    return ", ".join(keys) + "; " + ", ".join(mouse)


class FlyController:
    """Turns key/mouse events (or scripted calls) into camera motion. Held keys accelerate, release glides
    to a stop, Space stops at once; the wheel scales the speed; PgUp/PgDn fly to the next/previous layer."""

    LOOK_PER_PIXEL = 0.003  # radians
    ROLL_SPEED = 1.2  # radians per second
    ACCEL_TIME = 0.25  # seconds from rest to full speed
    GLIDE_TIME = 0.35  # seconds from full speed to a stop
    JUMP_TIME = 0.6

    def __init__(self, camera: Camera, layout: Layout | None = None, *, aspect: float = 16 / 9) -> None:
        self.camera = camera
        self.home = camera.copy()
        self.layout = layout
        self.aspect = aspect
        base = max(s.spacing for s in layout.slabs) * 40 if layout else 1.0
        self.speed = base  # world units per second at full throttle
        self.velocity = np.zeros(3)
        self.held: set[str] = set()
        self.layer_index: int | None = None
        self._jump: tuple[Camera, Camera, float] | None = None
        self.requests: list[str] = []  # "fullscreen", "edges", "quit": for the window to act on

    # scripted actions, the same the keys call
    def stop(self) -> None:
        self.velocity[:] = 0
        self.held.clear()
        self._jump = None

    def reset(self) -> None:
        self.stop()
        self.camera.position = self.home.position.copy()
        self.camera.rotation = self.home.rotation.copy()
        self.layer_index = None

    def look(self, dx_px: float, dy_px: float) -> None:
        self.camera.rotate_local(yaw=-dx_px * self.LOOK_PER_PIXEL, pitch=-dy_px * self.LOOK_PER_PIXEL)

    def scale_speed(self, steps: float) -> None:
        self.speed = float(np.clip(self.speed * 1.25**steps, 1e-4, 1e7))

    def jump_layer(self, step: int) -> None:
        if self.layout is None:
            return
        n = len(self.layout.slabs)
        if self.layer_index is None:
            # Flying freely: the nearest layer ahead along the flight axis (-z), or the nearest behind.
            z = float(self.camera.position[2])
            zs = [s.z for s in self.layout.slabs]
            if step == 0:
                self.layer_index = self.layout.slab_index_at(z)
            elif step > 0:
                self.layer_index = next((i for i, sz in enumerate(zs) if sz < z), n - 1)
            else:
                self.layer_index = next((i for i in reversed(range(n)) if zs[i] >= z), 0)
        else:
            self.layer_index = int(np.clip(self.layer_index + step, 0, n - 1))
        target = layer_camera(self.layout, self.layer_index, self.aspect)
        self.velocity[:] = 0
        self._jump = (self.camera.copy(), target, 0.0)

    def key(self, name: str, pressed: bool) -> str | None:
        """Handle a key; returns the action name it maps to, if any."""
        entry = CONTROLS.get(name.lower())
        if entry is None:
            return None
        action, arg = entry
        if action in ("move", "roll"):
            (self.held.add if pressed else self.held.discard)(name.lower())
        elif pressed:
            if action == "stop":
                self.stop()
            elif action == "reset":
                self.reset()
            elif action == "layer":
                self.jump_layer(int(arg))
            else:
                self.requests.append(action)
        return action

    @property
    def moving(self) -> bool:
        return bool(self.held) or bool(np.any(self.velocity)) or self._jump is not None

    def update(self, dt: float) -> bool:
        """Advance ``dt`` seconds; True when the camera changed (a redraw is due)."""
        dt = float(min(max(dt, 0.0), 0.25))
        if self._jump is not None:
            a, b, t = self._jump
            t = min(1.0, t + dt / self.JUMP_TIME)
            s = t * t * (3 - 2 * t)
            self.camera.position = (1 - s) * a.position + s * b.position
            self.camera.rotation = _orthonormalize((1 - s) * a.rotation + s * b.rotation)
            self._jump = None if t >= 1.0 else (a, b, t)
            return True
        want = np.zeros(3)
        roll = 0.0
        for k in self.held:
            action, arg = CONTROLS[k]
            if action == "move":
                want += np.asarray(arg, np.float64)
            else:
                roll += float(arg)
        # Constant acceleration towards the wanted velocity: full speed after ACCEL_TIME, a stop from full
        # speed after GLIDE_TIME, whatever the frame rate.
        if np.any(want):
            want = _normalize(want) * self.speed
            max_step = self.speed * dt / self.ACCEL_TIME
        else:
            max_step = self.speed * dt / self.GLIDE_TIME
        gap = want - self.velocity
        dist = float(np.linalg.norm(gap))
        self.velocity = want.copy() if dist <= max_step else self.velocity + gap * (max_step / dist)
        changed = False
        if np.any(self.velocity):
            self.camera.move_local(self.velocity * dt)
            self.layer_index = None  # flown off the layer: the next jump starts from here
            changed = True
        if roll:
            self.camera.rotate_local(roll=roll * self.ROLL_SPEED * dt)
            changed = True
        return changed
