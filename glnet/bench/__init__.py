"""``glnet bench``: render throughput of glnet's renderers against VisPy's ``Markers``, in one run.

Every renderer draws the same workload (:mod:`~glnet.bench.workloads`: a synthetic convnet-shaped cloud of
exactly N neurons, or a model's real activations) from the same camera at the same size; the harness
(:mod:`~glnet.bench.harness`) times warm-up and timed frames and reports p50/p95 frame time, points per
second, GPU bytes per point (framebuffers excluded), upload GB/s and the speed-up over the VisPy peer
(:mod:`~glnet.bench.peers.vispy_markers`), with pygfx ``Points`` as an optional second peer
(:mod:`~glnet.bench.peers.pygfx_points`). A :class:`BenchResult` writes JSON (:mod:`~glnet.bench.schema`,
validated with ``jsonschema``), a terminal or markdown table and a plot (:mod:`~glnet.bench.report`).
Nothing here imports OpenGL at module import: parsing and validation work without a GL driver.
"""

from __future__ import annotations

from .harness import (
    AUTO,
    CAMERA,
    DEFAULT_BUDGET_S,
    DEFAULT_FRAMES,
    DEFAULT_WARMUP,
    MIN_TIMED_FRAMES,
    Timing,
    make_case,
    parse_renderers,
    run_bench,
    time_frames,
)
from .machine import machine_info
from .results import BenchResult, Case
from .schema import BENCH_SCHEMA, MARKERS, PEERS, PYGFX, RENDERERS, SCHEMA_VERSION, BenchSchemaError, validate
from .workloads import (
    MAX_POINTS,
    SEED,
    SYNTHETIC_CYCLE,
    Workload,
    model_workload,
    parse_points,
    synthetic_grids,
    synthetic_workload,
)

__all__ = [
    "AUTO",
    "BENCH_SCHEMA",
    "CAMERA",
    "DEFAULT_BUDGET_S",
    "DEFAULT_FRAMES",
    "DEFAULT_WARMUP",
    "MARKERS",
    "MAX_POINTS",
    "MIN_TIMED_FRAMES",
    "PEERS",
    "PYGFX",
    "RENDERERS",
    "SCHEMA_VERSION",
    "SEED",
    "SYNTHETIC_CYCLE",
    "BenchResult",
    "BenchSchemaError",
    "Case",
    "Timing",
    "Workload",
    "machine_info",
    "make_case",
    "model_workload",
    "parse_points",
    "parse_renderers",
    "run_bench",
    "synthetic_grids",
    "synthetic_workload",
    "time_frames",
    "validate",
]
