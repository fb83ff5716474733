"""The versioned JSON schema of ``glnet bench`` results, and its validation through ``jsonschema``.

A document is what :meth:`glnet.bench.BenchResult.to_dict` writes: the machine, the settings, one entry per
(renderer, workload) case and the cases skipped. Numbers must be finite (JSON has no NaN or Infinity).
"""

from __future__ import annotations

import math
from typing import Any

from jsonschema import Draft202012Validator, exceptions, validators

from ..errors import InputError

__all__ = [
    "BENCH_SCHEMA",
    "MARKERS",
    "PEERS",
    "PYGFX",
    "RENDERERS",
    "SCHEMA_VERSION",
    "BenchSchemaError",
    "validate",
]

SCHEMA_VERSION = 1
MARKERS = "vispy-markers"
PYGFX = "pygfx-points"  # an optional extra (glnet[peers]): pygfx Points on a Vulkan adapter
PEERS = (MARKERS, PYGFX)  # other libraries' renderers; the rest are glnet's
RENDERERS = ("instanced", "compute", "torch", MARKERS, PYGFX)

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
                "load_average": {"type": ["array", "null"], "items": _NUM},
                "os": {"type": "string"},
                "python": {"type": "string"},
                "gl_renderer": {"type": "string"},
                "gl_version": {"type": "string"},
                "gl_vendor": {"type": "string"},
                "gl_software": {"type": "boolean"},
                "gpu": _STR_OR_NULL,
                "wgpu_adapter": {"type": "string"},  # the pygfx peer's adapter, when it ran
                "wgpu_backend": {"type": "string"},
                "wgpu_adapter_type": {"type": "string"},
                "wgpu_driver": {"type": "string"},
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


class BenchSchemaError(InputError, ValueError):
    """A bench document does not match :data:`BENCH_SCHEMA`; the message names the offending path."""


def _finite_number(checker: Any, value: Any) -> bool:
    return Draft202012Validator.TYPE_CHECKER.is_type(value, "number") and math.isfinite(value)


# Draft 2020-12, except that NaN and Infinity are not numbers: json.dumps writes them, JSON cannot hold them.
_Validator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("number", _finite_number),
)


def validate(doc: dict[str, Any], *, schema: dict[str, Any] | None = None) -> None:
    """Raise :class:`BenchSchemaError` unless ``doc`` matches ``schema`` (default :data:`BENCH_SCHEMA`)."""
    schema = BENCH_SCHEMA if schema is None else schema
    _Validator.check_schema(schema)
    error = exceptions.best_match(_Validator(schema).iter_errors(doc))
    if error is not None:
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise BenchSchemaError(f"{where}: {error.message}")
