"""Real X key presses for the training viewer's window (a process of its own), sent with xdotool from the
trainer's step callback: each key once its effect on the previous one has been seen."""

from __future__ import annotations

import re
import subprocess
import time
from typing import Any


class XKeys:
    """Press 2 (gradients), then Shift+W (weight change), then Esc (close), each after the trainer shows the
    mode the previous key asked for; the window is found by its title."""

    PLAN = (("2", "gradients"), ("shift+w", "weights"), ("Escape", None))

    def __init__(self, title: str, timeout: float = 120.0) -> None:
        self.title = title
        self.sent: list[str] = []
        self.deadline = time.monotonic() + timeout
        self._window: str | None = None
        self._at = 0.0

    def _find(self) -> str | None:
        r = subprocess.run(
            ["xdotool", "search", "--name", re.escape(self.title)],
            capture_output=True,
            text=True,
            check=False,
        )
        ids = r.stdout.split()
        return ids[0] if ids else None

    def step(self, k: int, viz: Any) -> None:
        """Called after every training step; sends the next key when its turn has come."""
        if time.monotonic() > self.deadline:
            raise TimeoutError(f"the window keys did not take effect; sent {self.sent}")
        if len(self.sent) == len(self.PLAN) or time.monotonic() - self._at < 0.3:
            return
        if self._window is None:
            self._window = self._find()
            if self._window is None or viz.stats.frames < 1:
                return
        if self.sent and self.PLAN[len(self.sent) - 1][1] != viz.mode:
            return  # the previous key has not reached the trainer yet
        key = self.PLAN[len(self.sent)][0]
        subprocess.run(["xdotool", "windowfocus", self._window], check=False, timeout=30)
        subprocess.run(["xdotool", "key", key], check=True, timeout=30)  # XTEST, to the focused window
        self.sent.append(key)
        self._at = time.monotonic()
