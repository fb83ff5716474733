"""What a bench run measured: a :class:`Case` per renderer and workload, in one :class:`BenchResult`."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import report
from .schema import PEERS, SCHEMA_VERSION, validate

__all__ = ["BenchResult", "Case"]


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
        """The validated document as JSON text, ending in a newline."""
        return json.dumps(self.to_dict(), indent=indent) + "\n"

    def ratios(self) -> list[tuple[Case, float]]:
        """(glnet case, speed-up over Markers on the same workload) wherever Markers ran."""
        return [(c, c.ratio_vs_markers) for c in self.cases if c.renderer not in PEERS and c.ratio_vs_markers]

    def table(self) -> str:
        """A plain-text table for a terminal, headed by the machine; ``*`` marks cases cut by the budget."""
        return report.table(self)

    def markdown(self) -> str:
        """The same table as GitHub markdown, with a line naming the machine (for the README)."""
        return report.markdown(self)

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Frame time (p50, bar to p95) against point count, log-log, one line per renderer, as a PNG."""
        return report.plot(self, path)
