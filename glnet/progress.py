"""Progress for long work (building, capturing, recording, benchmark sweeps, training).

A tqdm bar on a terminal; on anything else (CI logs, pipes, files) a plain line at each tenth of the work,
so logs stay short. tqdm is used rather than a home-made bar for its rate and ETA maths and its terminal
handling. Everything goes to stderr, so stdout stays free for JSON and the like.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, TextIO

__all__ = ["Progress", "module_progress", "progress"]


def _interactive(stream: TextIO) -> bool:
    if os.environ.get("GLNET_PROGRESS") == "bar":
        return True
    if os.environ.get("GLNET_PROGRESS") == "plain":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Counts ``total`` units of work under ``desc``; a context manager. ``update`` advances, ``postfix``
    sets the trailing figures (``loss=0.31``). With ``total=None`` it counts without a bar. ``every``: a plain
    line every that many units instead of each tenth; ``delay``: nothing is shown before that many seconds
    (quick work stays quiet)."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "it",
        stream: TextIO | None = None,
        enabled: bool = True,
        every: int | None = None,
        delay: float = 0.0,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = 0
        self._stream = stream or sys.stderr
        self._enabled = enabled
        self._postfix: dict[str, Any] = {}
        self._bar: Any = None
        self._next_line = 0
        self._t0 = time.perf_counter()
        self._delay = delay
        if enabled and _interactive(self._stream):
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=desc, unit=unit, file=self._stream, dynamic_ncols=True, delay=delay
            )
        self._step = every if every and every > 0 else max(1, (total or 10) // 10)
        self._next_line = self._step if every else 0

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._enabled and (self.n >= self._next_line or (self.total and self.n >= self.total)):
            if time.perf_counter() - self._t0 < self._delay:
                return
            self._line()
            while self._next_line <= self.n:
                self._next_line += self._step

    def postfix(self, **values: Any) -> None:
        self._postfix.update(values)
        if self._bar is not None:
            self._bar.set_postfix(self._postfix, refresh=False)

    def write(self, message: str) -> None:
        """A line of its own that does not break the bar."""
        if self._bar is not None:
            self._bar.write(message, file=self._stream)
        elif self._enabled:
            print(message, file=self._stream, flush=True)

    def wrap(self, say: Callable[[str], None]) -> Callable[[str], None]:
        """``say`` made safe to call while the bar is drawn (the bar is cleared, then redrawn)."""
        if self._bar is None:
            return say

        def safe(message: str) -> None:
            from tqdm import tqdm

            with tqdm.external_write_mode(file=self._stream):
                say(message)

        return safe

    def _line(self) -> None:
        if self.n == 0:
            return
        total = f"/{self.total}" if self.total else ""
        elapsed = time.perf_counter() - self._t0
        rate = f", {self.n / elapsed:.1f} {self.unit}/s" if elapsed > 0 else ""
        extra = "".join(f", {k} {_fmt(v)}" for k, v in self._postfix.items())
        print(f"{self.desc}: {self.n}{total} {self.unit}{rate}{extra}", file=self._stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def progress(
    total: int | None,
    desc: str,
    *,
    unit: str = "it",
    enabled: bool = True,
    every: int | None = None,
    delay: float = 0.0,
) -> Progress:
    """A :class:`Progress` on stderr."""
    return Progress(total, desc, unit=unit, enabled=enabled, every=every, delay=delay)


@contextlib.contextmanager
def module_progress(desc: str, *, delay: float = 1.0) -> Iterator[None]:
    """While inside, each outermost ``nn.Module`` call shows a bar of the leaf modules it has run (a global
    forward hook), so capturing a big model shows its progress; calls quicker than ``delay`` stay quiet."""
    from torch.nn.modules import module as torch_module

    state: dict[str, Any] = {"depth": 0, "bar": None}

    def pre(m: Any, _args: Any) -> None:
        if state["depth"] == 0:
            if state["bar"] is not None:
                state["bar"].close()
            leaves = sum(1 for x in m.modules() if next(x.children(), None) is None)
            state["bar"] = progress(leaves, desc, unit="layer", delay=delay)
        state["depth"] += 1

    def post(m: Any, _args: Any, _out: Any) -> None:
        state["depth"] = max(0, state["depth"] - 1)
        bar = state["bar"]
        if bar is not None and next(m.children(), None) is None and (bar.total is None or bar.n < bar.total):
            bar.update()

    handles = [
        torch_module.register_module_forward_pre_hook(pre),
        torch_module.register_module_forward_hook(post),
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        if state["bar"] is not None:
            state["bar"].close()
