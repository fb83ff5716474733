"""A bench result for people: a terminal table, a markdown table for the README, a log-log PNG plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from .schema import MARKERS, PYGFX

if TYPE_CHECKING:
    from .results import BenchResult

__all__ = ["HEADER", "markdown", "plot", "rows", "table"]

HEADER = (
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


def rows(result: BenchResult) -> list[list[str]]:
    """One row of :data:`HEADER` cells per case, as both tables print them."""
    out = []
    for c in result.cases:
        ratio = "-" if c.ratio_vs_markers is None else f"{c.ratio_vs_markers:.1f}x"
        out.append(
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
    return out


def table(result: BenchResult) -> str:
    """A plain-text table for a terminal, headed by the machine; ``*`` marks cases cut by the budget."""
    m, s = result.machine, result.settings
    cells = [list(HEADER), *rows(result)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(HEADER))]
    left = {0, 1}
    lines = [
        f"glnet bench  ·  {m['gl_renderer']} (OpenGL {m['gl_version']})  ·  GPU {m['gpu'] or 'none'}  ·  "
        f"{m['cpu']} ({m['cpu_cores']} cores"
        + (f", load {m['load_average'][0]:g}" if m.get("load_average") else "")
        + ")"
        + (f"  ·  {PYGFX} on {m['wgpu_adapter']} ({m['wgpu_backend']})" if m.get("wgpu_adapter") else ""),
        f"camera {s['camera']}  ·  up to {s['frames']} timed frames after "
        f"{s['warmup']} warm-up, {s['budget_s']:g} s budget per case",
    ]
    for k, r in enumerate(cells):
        padded = [r[i].ljust(widths[i]) if i in left else r[i].rjust(widths[i]) for i in range(len(r))]
        lines.append("  ".join(padded).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    for skip in result.skipped:
        lines.append(f"skipped: {skip['renderer']} on {skip['workload']}: {skip['reason']}")
    if any(c.budget_stopped for c in result.cases):
        lines.append("* stopped by the time budget")
    return "\n".join(lines)


def markdown(result: BenchResult) -> str:
    """The same table as GitHub markdown, with a line naming the machine (for the README)."""
    m, s = result.machine, result.settings
    head = list(HEADER)
    out = [
        f"Measured {result.created[:10]} on {m['gl_renderer']} (OpenGL {m['gl_version']}), GPU "
        f"{m['gpu'] or 'none'}, {m['cpu']} ({m['cpu_cores']} cores); "
        + (
            f"{PYGFX} on {m['wgpu_adapter']} ({m['wgpu_backend']}, readback each frame); "
            if m.get("wgpu_adapter")
            else ""
        )
        + f"{s['width']}x{s['height']}, camera `{s['camera']}`, "
        f"p50/p95 of up to {s['frames']} frames after {s['warmup']} warm-up "
        "(glFinish each frame).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows(result)]
    if result.skipped:
        out.append("")
        out += [
            f"- skipped {skip['renderer']} on {skip['workload']}: {skip['reason']}" for skip in result.skipped
        ]
    return "\n".join(out) + "\n"


def plot(result: BenchResult, path: str | os.PathLike[str]) -> Path:
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
    kinds = {w["name"]: w["kind"] for w in result.settings["workloads"]}
    colours = {"instanced": "tab:blue", "compute": "tab:orange", MARKERS: "tab:grey", PYGFX: "tab:green"}
    for renderer in result.settings["renderers"]:
        mine = sorted((c for c in result.cases if c.renderer == renderer), key=lambda c: c.points)
        synth = [c for c in mine if kinds.get(c.workload) == "synthetic"]
        colour = colours.get(renderer)
        if synth:
            x = [c.points for c in synth]
            y = [c.frame_ms_p50 for c in synth]
            up = [c.frame_ms_p95 - c.frame_ms_p50 for c in synth]
            ax.errorbar(x, y, yerr=[[0] * len(y), up], marker="o", capsize=3, color=colour, label=renderer)
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
    if result.cases:  # a decade-wide margin looks lost around one point count; half a decade is enough
        xs = [c.points for c in result.cases]
        ax.set_xlim(min(xs) / 2, max(xs) * 2)
    ax.set_yscale("log")
    ax.set_xlabel("points (neurons)")
    ax.set_ylabel("frame time, ms (p50; bar to p95)")
    size = f"{result.settings['width']}x{result.settings['height']}"
    ax.set_title(f"glnet bench: {result.machine['gl_renderer'][:60]}, {size}", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(p)
    return p
