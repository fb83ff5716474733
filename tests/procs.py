"""Run a test's child command (xvfb-run and what it starts) in a session of its own, so a timeout ends every
process it started instead of leaving a window, a viewer or an X server running after the test."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from typing import Any

import pytest

needs_x = pytest.mark.skipif(
    shutil.which("xvfb-run") is None or shutil.which("xdotool") is None,
    reason="needs xvfb-run and xdotool (apt-get install xvfb xdotool)",
)  # a real window on a virtual X screen, driven by real key and mouse events


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


_GLOO_RANK = """
import datetime, sys, torch, torch.distributed as dist
rank, address = int(sys.argv[1]), sys.argv[2]
dist.init_process_group("gloo", init_method=address, rank=rank, world_size=2,
                        timeout=datetime.timedelta(seconds=30))
t = torch.ones(1)
dist.all_reduce(t)
assert t.item() == 2.0, t
dist.destroy_process_group()
"""
_gloo_verdict: list[str | None] = []


def gloo_unavailable() -> str | None:
    """Why two processes cannot all-reduce over gloo on loopback here (None when they can); checked once."""
    if not _gloo_verdict:
        from glnet.wall import loopback_interface

        env = dict(os.environ, GLOO_SOCKET_IFNAME=loopback_interface() or "lo")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        ranks = [
            subprocess.Popen(
                [sys.executable, "-c", _GLOO_RANK, str(r), address], env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True, start_new_session=True,
            )
            for r in (0, 1)
        ]  # fmt: skip
        why = None
        for proc in ranks:
            try:
                _, err = proc.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                why = why or "a rank was still waiting after 90 s"
                continue
            lines = [line for line in err.splitlines() if line.strip()]
            if proc.returncode != 0:
                why = why or (lines[-1] if lines else f"a rank exited with {proc.returncode}")
        _gloo_verdict.append(why)
    return _gloo_verdict[0]
