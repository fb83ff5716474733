"""Run by test_tour_window.py under Xvfb: ``glnet view --save-tour`` in a real window, keys from xdotool.

Presses K, flies forward (W held), presses K again, then ends the viewer with Esc or with Ctrl-C (SIGINT,
argv[2] says which) and prints a JSON report of what the viewer said and how it exited.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

WAIT_S = 90.0


def main() -> int:
    out, how = sys.argv[1], sys.argv[2]
    cmd = [
        sys.executable,
        "-m",
        "glnet",
        "view",
        "conftest:TinyNet",
        "--input-size",
        "32",
        "--size",
        "320x200",
    ]
    proc = subprocess.Popen([*cmd, "--save-tour", out], stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True).start()

    def wait_for(words: str) -> None:
        t0 = time.monotonic()
        while not any(words in line for line in lines):
            if time.monotonic() - t0 > WAIT_S or proc.poll() is not None:
                raise TimeoutError(f"no {words!r} from the viewer; it said: {''.join(lines)[-2000:]}")
            time.sleep(0.05)

    def xdo(*args: str) -> None:
        subprocess.run(["xdotool", *args], check=True, capture_output=True, timeout=WAIT_S)

    try:
        wait_for("flying through")
        time.sleep(1.0)
        win = ""
        for _ in range(100):
            r = subprocess.run(
                ["xdotool", "search", "--name", "glnet - conftest"], capture_output=True, text=True
            )
            if r.stdout.split():
                win = r.stdout.split()[0]
                break
            time.sleep(0.1)
        xdo("windowfocus", "--sync", win)
        xdo("key", "k")
        wait_for("keyframe 1 ")
        xdo("keydown", "w")
        time.sleep(0.6)
        xdo("keyup", "w")
        time.sleep(0.5)
        xdo("key", "k")
        wait_for("keyframe 2 ")
        if how == "sigint":
            os.kill(proc.pid, signal.SIGINT)
        else:
            xdo("key", "Escape")
        rc = proc.wait(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)
    print(json.dumps({"rc": rc, "stderr": "".join(lines)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
