"""``glnet bench``: render throughput of glnet's renderers against VisPy's ``Markers``, in one run.

Every renderer draws the same workload (a synthetic convnet-shaped cloud of exactly N neurons, or a model's
real activations), from the same camera (``named_camera("overview")``), at the same resolution, into an
offscreen framebuffer of one EGL context. Each case runs warm-up frames, then timed frames (wall clock around
a frame that ends in ``glFinish``) until ``frames`` are done or the case's time budget is spent (never fewer
than ``MIN_TIMED_FRAMES``, unless ``frames`` is smaller), and reports p50/p95 frame time, points per second,
GPU bytes per point (framebuffers excluded), upload GB/s and the speed-up over VisPy ``Markers``.

The baseline is :class:`vispy.visuals.MarkersVisual` drawn in glnet's own context with the camera's
view-projection as a :class:`~vispy.visuals.transforms.MatrixTransform` (VisPy carries the homogeneous w to
``gl_Position``, so the perspective divide is GL's, as in glnet), one disc per neuron whose pixel diameter is
glnet's (``2 * clamp(radius_k / w, 0.5, MAX_RADIUS_PX)``) with no edge and no antialiasing fringe (the closest
VisPy comes to glnet's discs, and the cheapest Markers setting), coloured through glnet's colour table.

Results are a :class:`BenchResult`: ``to_json()`` (schema version :data:`SCHEMA_VERSION`, validated against
:data:`BENCH_SCHEMA`), ``table()`` for a terminal, ``markdown()`` for a README, ``plot(path)`` (PNG).
Nothing here imports OpenGL at module import: parsing and validation work without a GL driver.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .errors import InputError, OutOfMemoryError

if TYPE_CHECKING:
    from .camera import Camera
    from .colormap import ValueRange
    from .gpu.context import GLContext, GLInfo
    from .layout import Layout

__all__ = [
    "BENCH_SCHEMA",
    "MARKERS",
    "RENDERERS",
    "SCHEMA_VERSION",
    "BenchResult",
    "BenchSchemaError",
    "Case",
    "Workload",
    "machine_info",
    "model_workload",
    "parse_points",
    "parse_renderers",
    "run_bench",
    "synthetic_grids",
    "synthetic_workload",
    "validate",
]

SCHEMA_VERSION = 1
MARKERS = "vispy-markers"
RENDERERS = ("instanced", "compute", MARKERS)
MAX_POINTS = 2_000_000_000
MIN_TIMED_FRAMES = 3
DEFAULT_FRAMES = 20
DEFAULT_WARMUP = 2
DEFAULT_BUDGET_S = 10.0
UPLOAD_REPEATS = 3
SEED = 0
CAMERA = "overview"
# Host bytes per point VisPy Markers needs while its data is built and sent (positions, colours, sizes, its
# 56-byte interleaved record, the queued copy): cases that would not fit in memory are skipped, not run.
MARKERS_HOST_BYTES_PER_POINT = 200

# Slabs of a ResNet-50-like network, repeated until N neurons: stage widths double as maps halve.
SYNTHETIC_CYCLE: tuple[tuple[int, int, int], ...] = (
    (64, 56, 56),
    (64, 56, 56),
    (256, 56, 56),
    (128, 28, 28),
    (128, 28, 28),
    (512, 28, 28),
    (256, 14, 14),
    (1024, 14, 14),
    (512, 7, 7),
    (2048, 7, 7),
)

# -- the JSON schema ----------------------------------------------------------------------------------------

_NUM = {"type": "number", "minimum": 0}
_POS = {"type": "number", "exclusiveMinimum": 0}
_INT1 = {"type": "integer", "minimum": 1}
_STR_OR_NULL = {"type": ["string", "null"]}

BENCH_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "glnet bench results",
    "description": "Render throughput of glnet renderers and VisPy Markers: same points, camera and size.",
    "type": "object",
    "required": ["schema_version", "tool", "created", "machine", "settings", "cases", "skipped"],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "tool": {"const": "glnet bench"},
        "created": {"type": "string"},
        "machine": {
            "type": "object",
            "required": ["cpu", "cpu_cores", "os", "python", "gl_renderer", "gl_version", "gl_vendor", "gpu"],
            "additionalProperties": True,
            "properties": {
                "cpu": {"type": "string"},
                "cpu_cores": _INT1,
                "memory_bytes": {"type": ["integer", "null"]},
                "load_average": {"type": ["array", "null"], "items": {"type": "number", "minimum": 0}},
                "os": {"type": "string"},
                "python": {"type": "string"},
                "gl_renderer": {"type": "string"},
                "gl_version": {"type": "string"},
                "gl_vendor": {"type": "string"},
                "gl_software": {"type": "boolean"},
                "gpu": _STR_OR_NULL,
                "versions": {"type": "object", "additionalProperties": _STR_OR_NULL},
            },
        },
        "settings": {
            "type": "object",
            "required": [
                "width",
                "height",
                "frames",
                "warmup",
                "budget_s",
                "renderers",
                "camera",
                "workloads",
            ],
            "additionalProperties": True,
            "properties": {
                "width": _INT1,
                "height": _INT1,
                "frames": _INT1,
                "warmup": {"type": "integer", "minimum": 0},
                "budget_s": _POS,
                "renderers": {"type": "array", "minItems": 1, "items": {"enum": list(RENDERERS)}},
                "camera": {"type": "string"},
                "seed": {"type": "integer"},
                "workloads": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "kind", "points", "layers"],
                        "properties": {
                            "name": {"type": "string"},
                            "kind": {"enum": ["synthetic", "model"]},
                            "points": _INT1,
                            "layers": _INT1,
                        },
                    },
                },
            },
        },
        "cases": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "renderer",
                    "points",
                    "width",
                    "height",
                    "frame_ms_p50",
                    "frame_ms_p95",
                    "points_per_s",
                    "bytes_per_point",
                ],
                "additionalProperties": False,
                "properties": {
                    "renderer": {"enum": list(RENDERERS)},
                    "workload": {"type": "string"},
                    "points": _INT1,
                    "layers": _INT1,
                    "width": _INT1,
                    "height": _INT1,
                    "frame_ms_p50": _POS,
                    "frame_ms_p95": _POS,
                    "frame_ms_min": _POS,
                    "frame_ms_mean": _POS,
                    "frames": _INT1,
                    "warmup": {"type": "integer", "minimum": 0},
                    "budget_stopped": {"type": "boolean"},
                    "points_per_s": _POS,
                    "bytes_per_point": _POS,
                    "gpu_bytes": _INT1,
                    "frame_bytes": {"type": "integer", "minimum": 0},
                    "upload_bytes": _INT1,
                    "upload_ms": _POS,
                    "upload_gb_s": _POS,
                    "ratio_vs_markers": {"type": ["number", "null"], "exclusiveMinimum": 0},
                    "image": _STR_OR_NULL,
                },
            },
        },
        "skipped": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["renderer", "workload", "points", "reason"],
                "additionalProperties": False,
                "properties": {
                    "renderer": {"enum": list(RENDERERS)},
                    "workload": {"type": "string"},
                    "points": _INT1,
                    "reason": {"type": "string"},
                },
            },
        },
    },
}


class BenchSchemaError(ValueError):
    """A bench document does not match :data:`BENCH_SCHEMA`; the message names the offending path."""


_ANNOTATIONS = {"$schema", "$id", "title", "description", "default", "examples"}
_KEYWORDS = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "const",
    "enum",
    "minimum",
    "exclusiveMinimum",
    "minItems",
}
_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
}


def _check(value: Any, schema: dict[str, Any], path: str) -> None:
    """The built-in validator: the JSON-Schema keywords :data:`BENCH_SCHEMA` uses, and no silent others."""
    unknown = set(schema) - _ANNOTATIONS - _KEYWORDS
    if unknown:
        raise NotImplementedError(f"the built-in validator does not know {sorted(unknown)} (at {path})")
    const = schema.get("const")
    if "const" in schema and not (value == const and isinstance(value, bool) == isinstance(const, bool)):
        raise BenchSchemaError(f"{path}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise BenchSchemaError(f"{path}: {value!r} is not one of {schema['enum']}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            raise BenchSchemaError(f"{path}: {value!r} is not of type {' or '.join(types)}")
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            raise BenchSchemaError(f"{path}: {value!r} is less than {schema['minimum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            raise BenchSchemaError(f"{path}: {value!r} is not greater than {schema['exclusiveMinimum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                raise BenchSchemaError(f"{path}: {key!r} is a required property")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                _check(item, props[key], f"{path}.{key}")
            elif extra is False:
                raise BenchSchemaError(f"{path}: additional property {key!r} is not allowed")
            elif isinstance(extra, dict):
                _check(item, extra, f"{path}.{key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise BenchSchemaError(f"{path}: fewer than {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], f"{path}[{i}]")


def validate(doc: dict[str, Any], *, schema: dict[str, Any] | None = None, builtin: bool = False) -> None:
    """Raise :class:`BenchSchemaError` unless ``doc`` matches ``schema`` (default :data:`BENCH_SCHEMA`).

    Uses ``jsonschema`` when it is installed (and ``builtin`` is false), else a small built-in validator of
    the keywords the bench schema uses (it raises NotImplementedError on any other, rather than pass).
    """
    schema = BENCH_SCHEMA if schema is None else schema
    if not builtin:
        try:
            import jsonschema
        except ImportError:
            builtin = True
    if builtin:
        _check(doc, schema, "$")
        return
    try:
        jsonschema.validate(doc, schema)
    except jsonschema.ValidationError as e:
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
        raise BenchSchemaError(f"{where}: {e.message}") from None


# -- argument parsing (GL-free, so bad input fails before any driver loads) ---------------------------------

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_points(text: str | Iterable[int | float | str]) -> list[int]:
    """``"1e6,5e6"`` (or ``"500k,2M"``, or a list) to point counts; InputError unless whole and in 1..2e9."""
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    if not items or any(isinstance(t, str) and not t for t in items):
        raise InputError(f"invalid --points {text!r}: expected counts like 1e6,5e6 (comma-separated)")
    out = []
    for t in items:
        value: float | None
        if isinstance(t, bool):
            value = None
        elif isinstance(t, (int, float)):
            value = float(t)
        else:
            m = re.fullmatch(r"([0-9eE+\-._]+)\s*([kKmMgG]?)", str(t))
            try:
                value = float(m[1]) * _SUFFIX[m[2].lower()] if m else None
            except ValueError:
                value = None
        if value is None or not math.isfinite(value):
            raise InputError(f"invalid point count {t!r}: expected a number such as 1e6 or 500k")
        if value <= 0 or value > MAX_POINTS:
            raise InputError(f"point count {t!r} is out of range: use 1 to {MAX_POINTS:.0e}")
        if value != int(value):
            raise InputError(f"point count {t!r} is not a whole number")
        out.append(int(value))
    return out


def parse_renderers(text: str | Iterable[str]) -> list[str]:
    """``"compute,vispy-markers"`` to renderer names (order kept, repeats dropped); InputError if unknown."""
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else [str(t).strip() for t in text]
    out: list[str] = []
    for name in items:
        if name not in RENDERERS:
            raise InputError(f"unknown renderer {name!r}: use some of {', '.join(RENDERERS)}")
        if name not in out:
            out.append(name)
    if not out:
        raise InputError(f"no renderer given: use some of {', '.join(RENDERERS)}")
    return out


# -- workloads ----------------------------------------------------------------------------------------------


@dataclass
class Workload:
    """What every renderer draws in one case: a layout, one value tensor per layer and its colour range."""

    name: str
    kind: str  # "synthetic" | "model"
    layout: Layout
    values: list[torch.Tensor]
    ranges: list[ValueRange]

    @property
    def points(self) -> int:
        return self.layout.count


def synthetic_grids(points: int) -> list[tuple[str, tuple[int, int, int]]]:
    """Convnet-like slabs (:data:`SYNTHETIC_CYCLE`, repeated) holding exactly ``points`` neurons.

    The last slab keeps the whole channels that fit; what is left over becomes a final ``(r, 1, 1)`` vector
    layer, as a network ends in a classifier.
    """
    if points < 1:
        raise InputError(f"a synthetic cloud needs at least 1 point, not {points}")
    grids: list[tuple[str, tuple[int, int, int]]] = []
    left, k = points, 0
    while left:
        c, h, w = SYNTHETIC_CYCLE[k % len(SYNTHETIC_CYCLE)]
        name = f"block{k // len(SYNTHETIC_CYCLE)}.{k % len(SYNTHETIC_CYCLE)}"
        if c * h * w <= left:
            grids.append((name, (c, h, w)))
            left -= c * h * w
        else:
            if left >= h * w:
                grids.append((name, (left // (h * w), h, w)))
                left %= h * w
            if left:
                grids.append(("fc", (left, 1, 1)))
                left = 0
        k += 1
    return grids


def synthetic_workload(points: int, seed: int = SEED) -> Workload:
    """Exactly ``points`` neurons in :func:`synthetic_grids` slabs, values from a seeded standard normal."""
    from .colormap import robust_range
    from .layout import build_layout

    grids = synthetic_grids(points)
    gen = torch.Generator().manual_seed(seed)
    values = [torch.randn(g, generator=gen) for _, g in grids]
    return Workload(
        f"synthetic-{points}", "synthetic", build_layout(grids), values, [robust_range(v) for v in values]
    )


def model_workload(model: str, seed: int = SEED) -> Workload:
    """A model's real activation cloud: :func:`glnet.pipeline.trace_model`, :func:`glnet.app.layout_for`.

    The layout is the one ``glnet view`` shows (weight panels and the input image reserve their places)."""
    from .app import layout_for
    from .colormap import robust_range
    from .pipeline import trace_model

    trace = trace_model(model, seed=seed).trace
    values = [r.value.detach().float().cpu() for r in trace.layers]
    return Workload(
        trace.model_name or model, "model", layout_for(trace), values, [robust_range(v) for v in values]
    )


# -- results -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One renderer on one workload: the schema's ``cases[]`` entry."""

    renderer: str
    workload: str
    points: int
    layers: int
    width: int
    height: int
    frame_ms_p50: float
    frame_ms_p95: float
    frame_ms_min: float
    frame_ms_mean: float
    frames: int
    warmup: int
    budget_stopped: bool
    points_per_s: float
    bytes_per_point: float
    gpu_bytes: int
    frame_bytes: int
    upload_bytes: int
    upload_ms: float
    upload_gb_s: float
    ratio_vs_markers: float | None = None
    image: str | None = None


@dataclass
class BenchResult:
    """Everything one ``run_bench`` measured, with the machine it ran on."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    cases: list[Case] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (schema version :data:`SCHEMA_VERSION`), validated."""
        doc = {
            "schema_version": SCHEMA_VERSION,
            "tool": "glnet bench",
            "created": self.created,
            "machine": self.machine,
            "settings": self.settings,
            "cases": [asdict(c) for c in self.cases],
            "skipped": list(self.skipped),
        }
        validate(doc)
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> BenchResult:
        """A result back from its (validated) JSON document: to re-plot or re-tabulate saved runs."""
        validate(doc)
        cases = [Case(**c) for c in doc["cases"]]
        return cls(doc["machine"], doc["settings"], cases, list(doc["skipped"]), doc["created"])

    def to_json(self, indent: int = 2) -> str:
        import json

        return json.dumps(self.to_dict(), indent=indent) + "\n"

    def ratios(self) -> list[tuple[Case, float]]:
        """(glnet case, speed-up over Markers on the same workload) wherever Markers ran."""
        return [(c, c.ratio_vs_markers) for c in self.cases if c.renderer != MARKERS and c.ratio_vs_markers]

    def _rows(self) -> list[list[str]]:
        rows = []
        for c in self.cases:
            ratio = "-" if c.ratio_vs_markers is None else f"{c.ratio_vs_markers:.1f}x"
            rows.append(
                [
                    c.workload,
                    c.renderer,
                    f"{c.points:,}",
                    f"{c.width}x{c.height}",
                    f"{c.frames}" + ("*" if c.budget_stopped else ""),
                    f"{c.frame_ms_p50:.1f}",
                    f"{c.frame_ms_p95:.1f}",
                    f"{c.points_per_s / 1e6:,.1f}",
                    f"{c.bytes_per_point:.2f}",
                    f"{c.upload_gb_s:.2f}",
                    ratio,
                ]
            )
        return rows

    _HEADER = (
        "workload",
        "renderer",
        "points",
        "size",
        "frames",
        "p50 ms",
        "p95 ms",
        "Mpts/s",
        "B/pt",
        "upload GB/s",
        "vs Markers",
    )

    def table(self) -> str:
        """A plain-text table for a terminal, headed by the machine; ``*`` marks cases cut by the budget."""
        m = self.machine
        rows = [list(self._HEADER), *self._rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self._HEADER))]
        left = {0, 1}
        lines = [
            f"glnet bench  ·  {m['gl_renderer']} (OpenGL {m['gl_version']})  ·  GPU {m['gpu'] or 'none'}  ·  "
            f"{m['cpu']} ({m['cpu_cores']} cores"
            + (f", load {m['load_average'][0]:g}" if m.get("load_average") else "")
            + ")",
            f"camera {self.settings['camera']}  ·  up to {self.settings['frames']} timed frames after "
            f"{self.settings['warmup']} warm-up, {self.settings['budget_s']:g} s budget per case",
        ]
        for k, r in enumerate(rows):
            cells = [r[i].ljust(widths[i]) if i in left else r[i].rjust(widths[i]) for i in range(len(r))]
            lines.append("  ".join(cells).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        for s in self.skipped:
            lines.append(f"skipped: {s['renderer']} on {s['workload']}: {s['reason']}")
        if any(c.budget_stopped for c in self.cases):
            lines.append("* stopped by the time budget")
        return "\n".join(lines)

    def markdown(self) -> str:
        """The same table as GitHub markdown, with a line naming the machine (for the README)."""
        m = self.machine
        head = list(self._HEADER)
        out = [
            f"Measured {self.created[:10]} on {m['gl_renderer']} (OpenGL {m['gl_version']}), GPU "
            f"{m['gpu'] or 'none'}, {m['cpu']} ({m['cpu_cores']} cores); "
            f"{self.settings['width']}x{self.settings['height']}, camera `{self.settings['camera']}`, "
            f"p50/p95 of up to {self.settings['frames']} frames after {self.settings['warmup']} warm-up "
            "(glFinish each frame).",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|",
        ]
        out += ["| " + " | ".join(r) + " |" for r in self._rows()]
        if self.skipped:
            out.append("")
            out += [f"- skipped {s['renderer']} on {s['workload']}: {s['reason']}" for s in self.skipped]
        return "\n".join(out) + "\n"

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Frame time (p50, bar to p95) against point count, log-log, one line per renderer, as a PNG."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as e:
            raise InputError("the bench plot needs matplotlib: pip install matplotlib") from e
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fig = Figure(figsize=(7.5, 5.0), dpi=120)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        kinds = {w["name"]: w["kind"] for w in self.settings["workloads"]}
        colours = {"instanced": "tab:blue", "compute": "tab:orange", MARKERS: "tab:grey"}
        for renderer in self.settings["renderers"]:
            mine = sorted((c for c in self.cases if c.renderer == renderer), key=lambda c: c.points)
            synth = [c for c in mine if kinds.get(c.workload) == "synthetic"]
            colour = colours.get(renderer)
            if synth:
                x = [c.points for c in synth]
                y = [c.frame_ms_p50 for c in synth]
                up = [c.frame_ms_p95 - c.frame_ms_p50 for c in synth]
                ax.errorbar(
                    x, y, yerr=[[0] * len(y), up], marker="o", capsize=3, color=colour, label=renderer
                )
            for c in (c for c in mine if kinds.get(c.workload) == "model"):
                label = f"{renderer} ({c.workload})" if not synth else None
                up = [[0], [c.frame_ms_p95 - c.frame_ms_p50]]
                ax.errorbar(
                    [c.points],
                    [c.frame_ms_p50],
                    yerr=up,
                    fmt="*",
                    markersize=13,
                    capsize=3,
                    color=colour,
                    label=label,
                )
                ax.annotate(
                    c.workload,
                    (c.points, c.frame_ms_p50),
                    xytext=(6, -4),
                    textcoords="offset points",
                    fontsize=8,
                    color=colour,
                )
        for ms, text in ((1000 / 60, "60 fps"), (200.0, "5 fps")):
            ax.axhline(ms, color="0.8", linewidth=0.8, linestyle="--", zorder=0)
            ax.annotate(text, (0.01, ms), xycoords=("axes fraction", "data"), fontsize=7, color="0.5")
        ax.set_xscale("log")
        if self.cases:  # a decade-wide margin looks lost around one point count; half a decade is enough
            xs = [c.points for c in self.cases]
            ax.set_xlim(min(xs) / 2, max(xs) * 2)
        ax.set_yscale("log")
        ax.set_xlabel("points (neurons)")
        ax.set_ylabel("frame time, ms (p50; bar to p95)")
        m = self.machine
        size = f"{self.settings['width']}x{self.settings['height']}"
        ax.set_title(f"glnet bench: {m['gl_renderer'][:60]}, {size}", fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(p)
        return p


# -- the machine ---------------------------------------------------------------------------------------------


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def machine_info(gl: GLInfo) -> dict[str, Any]:
    """The machine fingerprint: CPU, memory, OS, library versions, GL renderer and version, GPU name."""
    from . import __version__
    from .models import available_memory

    gpu: str | None = None
    if not gl.software:
        gpu = re.sub(r"/(PCIe|SSE2|AVX2?)\b", "", gl.renderer).strip()
    elif torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        load = None
    return {
        "cpu": _cpu_name(),
        "cpu_cores": os.cpu_count() or 1,
        "load_average": load,  # 1, 5, 15 minutes, at the start: other work on the CPU makes timings noisy
        "memory_bytes": total,
        "memory_available_bytes": available_memory("cpu"),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "gl_renderer": gl.renderer,
        "gl_version": gl.version,
        "gl_vendor": gl.vendor,
        "gl_software": gl.software,
        "gpu": gpu,
        "versions": {
            "glnet": __version__,
            "glnet_commit": _git_commit(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "vispy": _version("vispy"),
            "PyOpenGL": _version("PyOpenGL"),
        },
    }


# -- timing --------------------------------------------------------------------------------------------------


@dataclass
class _Timing:
    times_ms: list[float]
    warmup: int
    budget_stopped: bool


def _time_frames(frame: Callable[[], None], frames: int, warmup: int, budget_s: float) -> _Timing:
    """Warm-up frames (at least one; no more once half the budget is gone), then timed frames until
    ``frames`` are done or ``budget_s`` is spent after at least ``MIN_TIMED_FRAMES``."""
    t_start = time.perf_counter()
    done_warm = 0
    for _ in range(max(1, warmup)):
        frame()
        done_warm += 1
        if time.perf_counter() - t_start > budget_s / 2:
            break
    times: list[float] = []
    t_timed = time.perf_counter()
    stopped = False
    while len(times) < frames:
        t0 = time.perf_counter()
        frame()
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= min(frames, MIN_TIMED_FRAMES) and time.perf_counter() - t_timed > budget_s:
            stopped = len(times) < frames
            break
    return _Timing(times, done_warm, stopped)


def _case(
    renderer: str,
    work: Workload,
    size: tuple[int, int],
    timing: _Timing,
    gpu_bytes: int,
    frame_bytes: int,
    upload_bytes: int,
    upload_ms: float,
    image: str | None,
) -> Case:
    t = np.asarray(timing.times_ms, np.float64)
    p50 = float(np.percentile(t, 50))
    return Case(
        renderer=renderer,
        workload=work.name,
        points=work.points,
        layers=len(work.layout.slabs),
        width=size[0],
        height=size[1],
        frame_ms_p50=round(p50, 4),
        frame_ms_p95=round(float(np.percentile(t, 95)), 4),
        frame_ms_min=round(float(t.min()), 4),
        frame_ms_mean=round(float(t.mean()), 4),
        frames=len(t),
        warmup=timing.warmup,
        budget_stopped=timing.budget_stopped,
        points_per_s=round(work.points / (p50 / 1e3), 1),
        bytes_per_point=round(gpu_bytes / work.points, 4),
        gpu_bytes=int(gpu_bytes),
        frame_bytes=int(frame_bytes),
        upload_bytes=int(upload_bytes),
        upload_ms=round(upload_ms, 4),
        upload_gb_s=round(upload_bytes / (upload_ms / 1e3) / 1e9, 4),
        image=image,
    )


def _save_image(fb: Any, images: Path | None, work: Workload, renderer: str) -> str | None:
    if images is None:
        return None
    from PIL import Image

    images.mkdir(parents=True, exist_ok=True)
    p = images / f"{work.name}-{renderer}.png"
    Image.fromarray(fb.read_rgba()[..., :3]).save(p)
    return str(p)


# -- glnet's renderers ---------------------------------------------------------------------------------------


def _bench_glnet(
    ctx: GLContext,
    work: Workload,
    renderers: Sequence[str],
    camera: Camera,
    size: tuple[int, int],
    frames: int,
    warmup: int,
    budget_s: float,
    images: Path | None,
    say: Callable[[str], None],
) -> list[Case]:
    """glnet's renderers on one cloud: its upload timed (median of ``UPLOAD_REPEATS``), then their frames."""
    from OpenGL import GL

    from .gpu.cloud import NeuronCloud
    from .gpu.framebuffer import Framebuffer
    from .render.scene import SceneRenderer

    cloud = NeuronCloud(ctx, work.layout, label="bench")
    fb = Framebuffer(ctx, *size, label="bench")
    cases = []
    try:
        uploads, sent = [], 0
        for _ in range(UPLOAD_REPEATS):
            GL.glFinish()
            t0 = time.perf_counter()
            cloud.set_values(work.values, work.ranges)
            sent = cloud.flush()
            GL.glFinish()
            uploads.append((time.perf_counter() - t0) * 1e3)
        upload_ms = statistics.median(uploads)
        for name in renderers:
            say(f"{name}: {work.points:,} points at {size[0]}x{size[1]}")
            scene = SceneRenderer(ctx, cloud, name)
            scene.show_panels = False  # the points alone: what every renderer in the comparison draws
            try:
                timing = _time_frames(
                    lambda s=scene: s.render(camera, fb, hud=None, finish=True), frames, warmup, budget_s
                )
                keys = getattr(scene.neurons, "keys", None)  # the compute path's per-pixel key buffer
                frame_bytes = size[0] * size[1] * 8 + (keys.nbytes if keys is not None else 0)
                image = _save_image(fb, images, work, name)
                cases.append(
                    _case(name, work, size, timing, cloud.gpu_bytes, frame_bytes, sent, upload_ms, image)
                )
            finally:
                scene.close()
    finally:
        fb.delete()
        cloud.close()
    return cases


# -- the VisPy baseline --------------------------------------------------------------------------------------


def _markers_data(work: Workload, camera: Camera, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Positions (N, 3), RGBA colours (N, 4) and pixel diameters (N,) of glnet's discs, for VisPy."""
    from .colormap import colour_codes, lut
    from .layout import neuron_positions
    from .render.frame import MAX_RADIUS_PX

    width, height = size
    vp = camera.view_projection(width, height)
    focal = camera.focal_px(height)
    table = lut().astype(np.float32) / 255.0
    n = work.points
    pos = np.empty((n, 3), np.float32)
    rgba = np.empty((n, 4), np.float32)
    diameter = np.empty(n, np.float32)
    at = 0
    for slab, v, rng in zip(work.layout.slabs, work.values, work.ranges, strict=True):
        k = slab.count
        p = neuron_positions(slab)
        pos[at : at + k] = p
        rgba[at : at + k] = table[colour_codes(v, rng)]
        w = p.astype(np.float64) @ vp[3, :3] + vp[3, 3]  # view depth, as clip w
        with np.errstate(divide="ignore"):
            r = np.clip(0.5 * slab.point_size * focal / w, 0.5, MAX_RADIUS_PX)
        diameter[at : at + k] = np.where(w > 0, 2.0 * r, 1.0)
        at += k
    return pos, rgba, diameter


def _bench_markers(
    ctx: GLContext,
    work: Workload,
    camera: Camera,
    size: tuple[int, int],
    frames: int,
    warmup: int,
    budget_s: float,
    images: Path | None,
) -> Case:
    """VisPy ``MarkersVisual`` drawing the workload with glnet's camera and disc sizes, in glnet's context."""
    from OpenGL import GL
    from vispy.visuals import MarkersVisual
    from vispy.visuals.transforms import MatrixTransform, NullTransform, STTransform

    from .colormap import BACKGROUND
    from .gpu.framebuffer import Framebuffer

    width, height = size
    pos, rgba, diameter = _markers_data(work, camera, size)
    gloo_ctx = ctx.canvas.context  # VisPy queues GL commands (GLIR) here; flush_commands runs them
    fb = Framebuffer(ctx, width, height, label="bench markers")
    markers = MarkersVisual(scaling="fixed", antialias=0.0)
    try:
        tr = markers.transforms
        # world -> clip is glnet's view-projection (MatrixTransform stores it transposed: row vectors);
        # clip -> framebuffer pixels -> clip again are affine in homogeneous coordinates, so w survives.
        tr.visual_transform = MatrixTransform(camera.view_projection(width, height).T)
        tr.scene_transform = NullTransform()
        tr.document_transform = STTransform(
            scale=(width / 2, height / 2, 1), translate=(width / 2, height / 2, 0)
        )
        tr.canvas_transform = NullTransform()
        tr.framebuffer_transform = STTransform(scale=(2 / width, 2 / height, 1), translate=(-1, -1, 0))
        gloo_ctx.flush_commands()
        GL.glFinish()
        t0 = time.perf_counter()
        markers.set_data(pos, size=diameter, edge_width=0, face_color=rgba, edge_color=rgba, symbol="disc")
        gloo_ctx.flush_commands()
        GL.glFinish()
        upload_ms = (time.perf_counter() - t0) * 1e3
        vbo_bytes = int(markers._vbo.nbytes)  # VisPy's interleaved vertex buffer: its whole per-point cost
        del pos, rgba, diameter

        def frame() -> None:
            gloo_ctx.flush_commands()  # runs a pending CURRENT (binds framebuffer 0) before ours is bound
            fb.bind()
            GL.glClearColor(*BACKGROUND, 1.0)
            GL.glClearDepth(1.0)
            GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT)
            markers.draw()
            gloo_ctx.flush_commands()
            GL.glFinish()

        timing = _time_frames(frame, frames, warmup, budget_s)
        image = _save_image(fb, images, work, MARKERS)
        return _case(MARKERS, work, size, timing, vbo_bytes, width * height * 8, vbo_bytes, upload_ms, image)
    finally:
        markers._vbo.delete()
        markers._program.delete()  # the visual's one gloo program (VisPy keeps no other reference)
        gloo_ctx.flush_commands()
        GL.glUseProgram(0)
        GL.glDisable(GL.GL_BLEND)
        fb.delete()
        gc.collect()


# -- the harness ---------------------------------------------------------------------------------------------


def run_bench(
    points: Sequence[int] | None = None,
    model: str | None = None,
    size: tuple[int, int] = (1280, 720),
    frames: int = DEFAULT_FRAMES,
    renderers: Sequence[str] = RENDERERS,
    warmup: int = DEFAULT_WARMUP,
    *,
    budget_s: float = DEFAULT_BUDGET_S,
    markers_max_points: int | None = None,
    images: str | os.PathLike[str] | None = None,
    ctx: GLContext | None = None,
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    """Benchmark ``renderers`` on synthetic clouds of ``points`` neurons and/or ``model``'s real cloud.

    Every renderer of a workload sees the same points, ``overview`` camera and ``size``. ``frames`` timed
    frames follow ``warmup`` frames, cut short once a case has used ``budget_s`` (never under
    ``MIN_TIMED_FRAMES``). Markers is skipped (and the skip recorded) above ``markers_max_points`` or when it
    would not fit in host memory. ``images``: a folder to save each case's last frame in (PNG), to compare
    renderers by eye. ``ctx``: an existing GL context (else one is made and closed).
    """
    from .gpu.context import GLContext, configure_platform
    from .inputs import _check_side

    if points is None and model is None:
        points = [1_000_000]
    pts = parse_points(points) if points is not None else []
    names = parse_renderers(renderers)
    width, height = _check_side(size[0], "width"), _check_side(size[1], "height")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise InputError(f"frames must be a positive integer, not {frames!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise InputError(f"warm-up must be a non-negative integer, not {warmup!r}")
    if not (isinstance(budget_s, (int, float)) and budget_s > 0):
        raise InputError(f"the time budget must be positive seconds, not {budget_s!r}")
    say = progress or (lambda _msg: None)
    configure_platform(headless=True)
    own = ctx is None
    ctx = ctx or GLContext.offscreen()
    try:
        ctx.make_current()
        machine = machine_info(ctx.info)
        load = machine["load_average"]
        if load and load[0] > 0.5 * machine["cpu_cores"]:
            say(f"note: load average {load[0]:g} on {machine['cpu_cores']} cores: timings will be noisy")
        result = BenchResult(
            machine,
            {
                "width": width,
                "height": height,
                "frames": frames,
                "warmup": warmup,
                "budget_s": float(budget_s),
                "renderers": names,
                "camera": CAMERA,
                "seed": SEED,
                "markers_max_points": markers_max_points,
                "workloads": [],
            },
        )
        jobs: list[Callable[[], Workload]] = [lambda n=n: synthetic_workload(n) for n in pts]
        if model is not None:
            jobs.append(lambda: model_workload(model))
        for job in jobs:
            work = job()
            folder = Path(images) if images is not None else None
            _run_workload(
                ctx,
                work,
                result,
                names,
                (width, height),
                frames,
                warmup,
                budget_s,
                markers_max_points,
                folder,
                say,
            )
            del work
            gc.collect()
        return result
    finally:
        if own:
            ctx.close()


def _run_workload(
    ctx: GLContext,
    work: Workload,
    result: BenchResult,
    names: Sequence[str],
    size: tuple[int, int],
    frames: int,
    warmup: int,
    budget_s: float,
    markers_max_points: int | None,
    images: Path | None,
    say: Callable[[str], None],
) -> None:
    from .camera import named_camera
    from .models import available_memory

    result.settings["workloads"].append(
        {"name": work.name, "kind": work.kind, "points": work.points, "layers": len(work.layout.slabs)}
    )
    camera = named_camera(CAMERA, work.layout, size[0] / size[1])
    say(f"{work.name}: {work.points:,} points in {len(work.layout.slabs)} layers")
    ours = [n for n in names if n != MARKERS]
    cases = {}
    if ours:
        try:
            for c in _bench_glnet(ctx, work, ours, camera, size, frames, warmup, budget_s, images, say):
                cases[c.renderer] = c
        except OutOfMemoryError as e:
            for n in ours:
                result.skipped.append(
                    {"renderer": n, "workload": work.name, "points": work.points, "reason": str(e)}
                )
    if MARKERS in names:
        need = work.points * MARKERS_HOST_BYTES_PER_POINT
        reason = None
        if markers_max_points is not None and work.points > markers_max_points:
            reason = f"above the {markers_max_points:,}-point limit set for Markers"
        elif need > available_memory("cpu"):
            reason = f"needs ~{need / 2**30:.1f} GiB of host memory, more than is free"
        if reason:
            result.skipped.append(
                {"renderer": MARKERS, "workload": work.name, "points": work.points, "reason": reason}
            )
        else:
            say(f"{MARKERS}: {work.points:,} points at {size[0]}x{size[1]}")
            cases[MARKERS] = _bench_markers(ctx, work, camera, size, frames, warmup, budget_s, images)
    base = cases.get(MARKERS)
    for n in names:
        c = cases.get(n)
        if c is None:
            continue
        if base is not None:
            c = replace(c, ratio_vs_markers=round(base.frame_ms_p50 / c.frame_ms_p50, 3))
        result.cases.append(c)
