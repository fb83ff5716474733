"""The counters of a live session, and the figures ``--stats-json`` writes."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OVERHEAD_DEFINITION", "LiveStats", "json_number"]

OVERHEAD_DEFINITION = (
    "trainer-side wall time spent in glnet per step (probe ride-along, capture hooks, hand-over copy) "
    "as % of "
    "the step's wall time, steps after the first; on CUDA kernels are asynchronous, so this is launch time: "
    "benchmarks/train_overhead.py measures the end-to-end difference"
)


def json_number(v: float | None) -> float | str | None:
    """A figure for JSON: rounded, "nan"/"inf" where not finite."""
    if v is None:
        return None
    return float(f"{v:.6g}") if math.isfinite(v) else str(v)


@dataclass
class LiveStats:
    """Counters of a live session: steps, frames, losses, timings and what the update path moved."""

    update_path: str = ""
    steps: int = 0
    frames: int = 0
    samples: int = 0
    loss: list[float] = field(default_factory=list)
    acc: list[float] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    glnet_ms: list[float] = field(default_factory=list)
    bytes_per_update: int = 0
    updates: int = 0  # frames handed over
    dropped: int = 0  # frames not drawn: no free slot, or a newer frame came first (latest wins)
    bytes_device_to_host: int = 0  # activation bytes that went device -> host on the way to GL
    range_bytes_to_host: int = 0  # the per-layer range numbers read back from the device
    batch: int = 0  # training samples per step (the probe not counted)
    nonfinite: list[dict[str, Any]] = field(default_factory=list)
    viewer: str = ""  # the viewer process: "running", "closed (window closed)", "crashed (...)", "finished"
    viewer_pid: int | None = None
    viewer_exitcode: int | None = None
    viewer_lost_at_step: int | None = None  # the step at which the viewer went away while training went on
    gl_renderer: str = ""
    renderer: str = ""
    grad_norms: dict[str, Any] | None = None  # layer -> the last handed-over step's weight-gradient norm
    dead_frac: dict[str, Any] | None = None  # layer -> share of dead units in the viewer's last frames
    wall: str = ""  # a live wall: "running", "finished" or "lost (why)"; "" without one
    wall_pids: list[int] = field(default_factory=list)  # the ranks other than 0 (the viewer is rank 0)
    wall_lost_at_step: int | None = None
    wall_ranks: list[dict[str, Any]] | None = None  # per rank: rank, pid, the frames it drew

    def summary(self) -> dict[str, Any]:
        """The figures ``--stats-json`` writes (see :data:`OVERHEAD_DEFINITION` for ``overhead_pct``)."""
        warm = slice(1, None) if len(self.step_ms) > 1 else slice(None)
        steps_ms, glnet_ms = self.step_ms[warm], self.glnet_ms[warm]
        total = sum(steps_ms)
        return {
            "steps": self.steps,
            "frames": self.frames,
            "loss": [round(v, 6) if math.isfinite(v) else str(v) for v in self.loss],
            "acc": [round(v, 6) for v in self.acc],
            "update_path": self.update_path,
            "step_ms": round(statistics.median(steps_ms), 3) if steps_ms else None,
            "step_ms_mean": round(total / len(steps_ms), 3) if steps_ms else None,
            "glnet_ms": round(statistics.median(glnet_ms), 4) if glnet_ms else None,
            "overhead_pct": round(100.0 * sum(glnet_ms) / total, 3) if total > 0 else None,
            "overhead_definition": OVERHEAD_DEFINITION,
            "probe_share_pct": round(100.0 / self.batch, 3) if self.batch else None,
            "samples_per_s": round(1e3 * self.batch * len(steps_ms) / total, 2)
            if total > 0 and self.batch
            else None,
            "bytes_per_update": self.bytes_per_update,
            "updates": self.updates,
            "dropped": self.dropped,
            "bytes_device_to_host": self.bytes_device_to_host,
            "range_bytes_to_host": self.range_bytes_to_host,
            "nonfinite": self.nonfinite,
            "viewer": self.viewer,
            "viewer_pid": self.viewer_pid,
            "viewer_exitcode": self.viewer_exitcode,
            "viewer_lost_at_step": self.viewer_lost_at_step,
            "gl_renderer": self.gl_renderer,
            "renderer": self.renderer,
            "grad_norms": self.grad_norms,
            "dead_frac": self.dead_frac,
            "wall": self.wall,
            "wall_pids": self.wall_pids,
            "wall_lost_at_step": self.wall_lost_at_step,
            "wall_ranks": self.wall_ranks,
        }
