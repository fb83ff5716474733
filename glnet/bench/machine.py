"""The machine fingerprint a bench result carries: CPU, memory, load, OS, library versions, GL and GPU."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from ..gpu.context import GLInfo

__all__ = ["machine_info"]


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
    root = Path(__file__).resolve().parents[2]
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
    from .. import __version__
    from ..models import available_memory

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
            "jsonschema": _version("jsonschema"),
        },
    }
