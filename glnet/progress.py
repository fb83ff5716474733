"""Progress for long work (building, capturing, recording, benchmark sweeps, training).

A tqdm bar on a terminal; on anything else (CI logs, pipes, files) a plain line at each tenth of the work,
so logs stay short. tqdm is used rather than a home-made bar for its rate and ETA maths and its terminal
handling. Everything goes to stderr, so stdout stays free for JSON and the like.
"""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import Any, TextIO

__all__ = ["Progress", "progress"]


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
    sets the trailing figures (``loss=0.31``). With ``total=None`` it counts without a bar."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "it",
        stream: TextIO | None = None,
        enabled: bool = True,
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
        if enabled and _interactive(self._stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self._stream, dynamic_ncols=True)
        self._step = max(1, (total or 10) // 10)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._enabled and (self.n >= self._next_line or (self.total and self.n >= self.total)):
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


def progress(total: int | None, desc: str, *, unit: str = "it", enabled: bool = True) -> Progress:
    """A :class:`Progress` on stderr."""
    return Progress(total, desc, unit=unit, enabled=enabled)
