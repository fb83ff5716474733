"""Run a test's child command (xvfb-run and what it starts) in a session of its own, so a timeout ends every
process it started instead of leaving a window, a viewer or an X server running after the test."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any


def run_group(args: list[str], *, timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(args, capture_output=True, text=True)``; on a timeout the whole group is killed."""
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{args[0]} ran past {timeout:.0f} s; its stderr ends:\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(args, proc.returncode, out, err)
