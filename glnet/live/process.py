"""The viewer process as the trainer sees it: start it, send it messages, read its replies, end it."""

from __future__ import annotations

import contextlib
import multiprocessing.spawn
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from .. import errors
from ..errors import ViewerError
from .handover import Slots
from .viewer import ViewerSpec, run_viewer

__all__ = ["ViewerProcess", "exit_reason"]


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
