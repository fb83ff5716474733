"""The viewer process as the trainer sees it: start it, send it messages, read its replies, end it."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import multiprocessing.spawn
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from .. import errors
from ..capture import Trace
from ..errors import ViewerError
from .handover import Slots
from .stats import LiveStats
from .viewer import ViewerSpec, run_viewer

__all__ = ["ViewerProcess", "WallRanks", "exit_reason", "viewer_trace"]


def _cpu(t: Any) -> Any:
    return t.detach().to("cpu").clone() if isinstance(t, torch.Tensor) else None


def viewer_trace(trace: Trace) -> Trace:
    """A detached CPU copy of ``trace`` for the viewer process (no references to the model's parameters)."""
    layers = [
        dataclasses.replace(r, value=_cpu(r.value), weight=_cpu(r.weight), raw=_cpu(r.raw))
        for r in trace.layers
    ]
    return dataclasses.replace(
        trace,
        layers=layers,
        output=_cpu(_logits(trace.output)),
        input=_cpu(trace.input),
        meta=_plain(trace.meta),
    )


def _logits(output: Any) -> Any:
    """A model's output tensor; for a dict-like output (a Hugging Face ``ModelOutput``) its ``logits``, else
    its first tensor."""
    if isinstance(output, dict):
        if isinstance(output.get("logits"), torch.Tensor):
            return output["logits"]
        return next((v for v in output.values() if isinstance(v, torch.Tensor)), None)
    return output


def _plain(meta: dict[str, Any]) -> dict[str, Any]:
    """The picklable, model-free part of a trace's metadata (input mean and std, names, numbers)."""
    ok = (str, int, float, bool, type(None))
    return {
        k: v
        for k, v in meta.items()
        if isinstance(v, ok) or (isinstance(v, (list, tuple)) and all(isinstance(e, ok) for e in v))
    }


def exit_reason(code: int | None) -> str:
    """How a process that was not asked to end did end, in words."""
    if code is None:
        return "crashed"
    if code < 0:
        try:
            return f"crashed (killed by {signal.Signals(-code).name})"
        except ValueError:
            return f"crashed (signal {-code})"
    return f"crashed (exit code {code})"


_START_LOCK = threading.Lock()


@contextlib.contextmanager
def _without_main_module() -> Iterator[None]:
    """Spawn without re-running the user's ``__main__`` in the child: the viewer needs only glnet, and a
    script or notebook without an ``if __name__ == "__main__"`` guard would otherwise train again there."""
    original = multiprocessing.spawn.get_preparation_data

    def prepare(name: str) -> dict[str, Any]:
        data = original(name)
        data.pop("init_main_from_name", None)
        data.pop("init_main_from_path", None)
        return data

    with _START_LOCK:
        multiprocessing.spawn.get_preparation_data = prepare
        try:
            yield
        finally:
            multiprocessing.spawn.get_preparation_data = original


class ViewerProcess:
    """A spawned viewer (``torch.multiprocessing``, so the slots travel as shared memory or CUDA IPC) and
    the two queues to and from it. A daemon: it cannot outlive the trainer's interpreter."""

    def __init__(self, spec: ViewerSpec, slots: Slots) -> None:
        mp = torch.multiprocessing.get_context("spawn")
        self.inbox, self.outbox = mp.Queue(), mp.Queue()
        self.proc = mp.Process(
            target=run_viewer, args=(spec, slots, self.inbox, self.outbox), name="glnet-viewer", daemon=True
        )
        with _without_main_module():
            self.proc.start()
        self.pid: int | None = self.proc.pid
        self._exitcode: int | None = None
        self._closed = False

    @property
    def exitcode(self) -> int | None:
        return self._exitcode if self._closed else self.proc.exitcode

    def alive(self) -> bool:
        return not self._closed and self.proc.is_alive()

    def send(self, *msg: Any) -> None:
        """Queue a message for the viewer (pickled on the queue's feeder thread: never waits)."""
        if not self._closed:
            self.inbox.put(msg)

    def messages(self, timeout: float = 0.0) -> list[tuple[Any, ...]]:
        """The viewer's messages waiting now (waiting up to ``timeout`` for the first)."""
        out: list[tuple[Any, ...]] = []
        while not self._closed:
            try:
                out.append(
                    self.outbox.get(timeout=timeout) if timeout and not out else self.outbox.get_nowait()
                )
            except (queue.Empty, EOFError, OSError):
                break
        return out

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        """Block until the viewer is drawing; raises its own error (a glnet error class) if it failed."""
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.messages(0.1):
                if msg[0] == "ready":
                    return msg[1]
                if msg[0] == "error":
                    cls = getattr(errors, msg[1], None)
                    if not (isinstance(cls, type) and issubclass(cls, errors.GlnetError)):
                        cls = ViewerError
                    raise cls(msg[2])
            if not self.proc.is_alive() and not self.messages(0.2):
                self.proc.join(1.0)
                raise ViewerError(
                    f"the viewer process ended before it was ready ({exit_reason(self.exitcode)})"
                )
            if time.monotonic() > deadline:
                raise ViewerError(f"the viewer process was not ready after {timeout:.0f} s")

    def finish(self, reason: str, on_message: Callable[[tuple[Any, ...]], None]) -> None:
        """Ask the viewer to draw what is queued and end (a held window ends when the user closes it); wait
        for that, handing its messages to ``on_message``."""
        if not self.alive():
            return
        self.send("finish", reason)
        while self.proc.is_alive():
            for msg in self.messages(0.1):
                on_message(msg)

    def close(self, on_message: Callable[[tuple[Any, ...]], None] | None = None) -> None:
        """End the viewer now if it still runs (close, then terminate, then kill) and release the queues."""
        if self._closed:
            return
        proc = self.proc
        if proc.is_alive():
            self.send("close")
            proc.join(3.0)
        if proc.is_alive():
            proc.terminate()
            proc.join(5.0)
        if proc.is_alive():
            proc.kill()
            proc.join()
        for msg in self.messages(0.05):
            if on_message is not None:
                on_message(msg)
        self._closed = True
        self._exitcode = proc.exitcode
        for q in (self.inbox, self.outbox):
            q.close()
            q.join_thread()
        # the queues' semaphores live in /dev/shm until their last reference goes (the process keeps its args)
        self.inbox = self.outbox = self.proc = None  # type: ignore[assignment]


class WallRanks:
    """A live wall's ranks other than 0 (rank 0 is the viewer process), one spawned process per tile
    (``glnet.live.wall.run_wall_rank``). The trainer only watches them (never waits) and ends them at the end.
    """

    def __init__(self, spec: ViewerSpec, slots: Slots, stats: LiveStats) -> None:
        from .wall import run_wall_rank

        mp = torch.multiprocessing.get_context("spawn")
        panels = None
        if spec.panels is not None:  # the plan, over a buffer of the rank's own (rank 0 broadcasts into it)
            panels = copy.copy(spec.panels)
            panels.data, panels.event, panels.device = torch.zeros(spec.panels.data.numel()), None, "cpu"
        rank_spec = dataclasses.replace(spec, panels=None, record=None)
        shape = (slots.floats, int(slots.side.shape[1]))
        self.procs: list[Any] = []
        for r in range(1, spec.wall.count):
            p = mp.Process(
                target=run_wall_rank, args=(rank_spec, r, shape, panels), name=f"glnet-wall-{r}", daemon=True
            )
            with _without_main_module():
                p.start()
            self.procs.append(p)
        self.gone: set[int] = set()
        stats.wall, stats.wall_pids = "running", [p.pid for p in self.procs]

    def poll(self, stats: LiveStats, viewer_alive: bool = True) -> None:
        """Notice a rank that ended while the wall runs, and end the ranks once rank 0 (the viewer) is gone:
        they would wait for it (never waits itself)."""
        if not viewer_alive and len(self.gone) < len(self.procs):
            self.lost("rank 0, the viewer, is gone", stats.steps + 1, stats)
            for p in self.procs:
                p.kill()
            self.gone.update(range(1, len(self.procs) + 1))
        for r, p in enumerate(self.procs, 1):
            if r not in self.gone and p.exitcode is not None:
                self.gone.add(r)
                self.lost(f"rank {r} {exit_reason(p.exitcode)}", stats.steps + 1, stats)

    @staticmethod
    def lost(why: str, step: int, stats: LiveStats) -> None:
        """The wall is lost (said by rank 0 or noticed here): the first word stays."""
        if stats.wall == "running":
            stats.wall, stats.wall_lost_at_step = f"lost ({why})", step

    @staticmethod
    def report(rep: dict[str, Any] | None, stats: LiveStats) -> None:
        """Rank 0's last word: what each rank drew."""
        if rep is not None:
            stats.wall_ranks = rep.get("ranks")
            if rep.get("lost"):
                WallRanks.lost(rep["lost"], stats.steps, stats)

    def close(self, stats: LiveStats | None = None) -> None:
        """Let the ranks end (rank 0 has told them to quit), else kill them (they hold no files)."""
        wait = 10.0 if stats is not None and stats.wall == "running" else 0.5  # lost: none to wait for
        for p in self.procs:
            p.join(wait)
            if p.is_alive():
                p.kill()
                p.join()
        for r, p in enumerate(self.procs, 1):
            if stats is not None and p.exitcode:  # rank 0 died under it, or it had to be killed
                self.lost(f"rank {r} {exit_reason(p.exitcode)}", stats.steps, stats)
        if stats is not None and stats.wall == "running":
            stats.wall = "finished"
        self.procs = []
