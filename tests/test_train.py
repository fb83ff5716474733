"""``glnet train``: the synthetic data is learnable, --stats-json holds its keys, Ctrl-C and a closed window
write a checkpoint that loads, a NaN loss stops naming the layer, out-of-memory says which batch to try.

Tiny models, 32x32 images, a few dozen steps: the whole file runs in well under a minute on two CPU cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from glnet.cli import main
from glnet.errors import NonFiniteError, OutOfMemoryError
from glnet.models import load_weights
from glnet.train import TrainConfig, fit_classifier, train

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from procs import needs_x, run_group  # noqa: E402

pytestmark = pytest.mark.gl


def small_net(classes: int = 10) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, classes),
    )  # fmt: skip


def _cfg(model: nn.Module, **kw) -> TrainConfig:
    base = dict(model=model, steps=6, batch=8, image_size=32, headless=True, size=(96, 64), lr=3e-3)
    return TrainConfig(**{**base, **kw})


def test_synthetic_data_is_learnable():
    r = train(_cfg(small_net(), steps=40, batch=16))
    loss = r["loss"]
    assert r["steps"] == 40 and len(loss) == 40 and r["stopped"] == "completed"
    first, last = np.mean(loss[:10]), np.mean(loss[-10:])
    assert last < 0.85 * first, (first, last)
    assert r["update_path"] == "host upload (persistent-mapped staging)" and r["bytes_device_to_host"] == 0


def test_cli_stats_json_and_a_frame_for_every_step(tmp_path):
    from glnet.record import read_video_frames

    stats, video, ckpt = tmp_path / "t.json", tmp_path / "frames", tmp_path / "r18.pt"
    rc = main(
        [
            "train", "resnet18", "--steps", "4", "--batch", "4", "--input-size", "32", "--headless",
            "--size", "128x72", "--record", str(video), "--stats-json", str(stats), "--save", str(ckpt),
        ]
    )  # fmt: skip
    assert rc == 0
    s = json.loads(stats.read_text())
    assert set(s) >= {"steps", "frames", "loss", "update_path", "step_ms", "overhead_pct"}
    assert s["steps"] == 4 and s["frames"] == 4 and len(s["loss"]) == 4 and s["dropped"] == 0
    assert s["update_path"].startswith("host upload") and s["step_ms"] > 0 and 0 <= s["overhead_pct"] < 100
    assert s["image_size"] == 32 and s["model"] == "resnet18"
    assert len(list(read_video_frames(video))) == 4
    from glnet.models import load_model

    model = load_model("resnet18", input_size=32).model
    fit_classifier(model, 10, torch.zeros(1, 3, 32, 32))
    load_weights(model, ckpt)  # the checkpoint loads into the same architecture


def test_closed_window_or_stop_request_ends_after_the_step_and_checkpoints(tmp_path):
    ckpt = tmp_path / "stop.pt"

    def stop_at_3(step, viz):
        if step == 3:
            viz.request_stop("window closed")

    r = train(_cfg(small_net(), steps=50, save=str(ckpt), on_step=stop_at_3))
    assert r["steps"] == 3 and r["stopped"] == "window closed" and r["checkpoint"] == str(ckpt)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 3 and state["num_classes"] == 10 and len(state["classes"]) == 10
    fresh = small_net()
    fresh.load_state_dict(state["model"])
    assert "optimizer" in state


def test_ctrl_c_writes_a_checkpoint_that_loads(tmp_path):
    ckpt, stats = tmp_path / "int.pt", tmp_path / "int.json"
    shm_before = set(os.listdir("/dev/shm"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [
        sys.executable, "-m", "glnet", "train", "resnet18", "--steps", "2000", "--batch", "4",
        "--image-size", "32", "--headless", "--size", "96x64",
        "--save", str(ckpt), "--stats-json", str(stats),
    ]  # fmt: skip
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    lines = []
    try:
        deadline = time.time() + 180
        for line in proc.stderr:
            lines.append(line)
            if "training: 10/2000 step" in line or time.time() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines) + rest
    assert proc.returncode == 130, text[-2000:]
    assert "interrupted" in text and "checkpoint at step" in text and "Traceback" not in text
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] >= 10 and state["stopped"] == "interrupted"
    s = json.loads(stats.read_text())
    assert s["stopped"] == "interrupted" and s["steps"] == state["step"]
    assert not Path(f"/proc/{s['viewer_pid']}").exists()  # Ctrl-C ended the viewer process too
    assert set(os.listdir("/dev/shm")) == shm_before  # and left no shared memory behind
    from glnet.models import load_model

    model = load_model("resnet18", input_size=32).model
    fit_classifier(model, 10, torch.zeros(1, 3, 32, 32))
    load_weights(model, ckpt)


class _NaNConv(nn.Conv2d):
    poisoned = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out * float("nan") if self.poisoned else out


def nan_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), _NaNConv(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )  # fmt: skip


def _poison_after(k: int):
    def on_step(step, viz):
        if step == k:
            viz.model[2].poisoned = True

    return on_step


def test_nan_loss_stops_with_a_message_naming_the_layer(tmp_path):
    ckpt = tmp_path / "nan.pt"
    stats = tmp_path / "nan.json"
    with pytest.raises(NonFiniteError) as info:
        train(_cfg(nan_net(), steps=20, save=str(ckpt), stats_json=str(stats), on_step=_poison_after(3)))
    e = info.value
    assert e.layer == "2" and e.step == 4  # module "2" of the Sequential: the poisoned conv
    assert "layer '2'" in str(e) and "step 4" in str(e)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    s = json.loads(stats.read_text())
    assert s["stopped"] == "non-finite loss" and s["nonfinite"][0]["layer"] == "2" and s["loss"][-1] == "nan"


def test_keep_going_counts_nan_steps_and_finishes():
    r = train(_cfg(nan_net(), steps=6, keep_going=True, on_step=_poison_after(2)))
    assert r["stopped"] == "completed" and r["steps"] == 6
    assert [n["step"] for n in r["nonfinite"]] == [3, 4, 5, 6]
    assert all(n["layer"] == "2" for n in r["nonfinite"])


class _OOMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_out_of_memory_names_the_batch_to_try():
    with pytest.raises(OutOfMemoryError, match=r"--batch 8\b"):
        train(_cfg(_OOMNet(), batch=16))


def test_fit_classifier_replaces_the_head():
    net = small_net(classes=1000)
    assert fit_classifier(net, 7, torch.zeros(1, 3, 16, 16)) == "13"
    assert net(torch.zeros(2, 3, 16, 16)).shape == (2, 7)
    assert fit_classifier(net, 7, torch.zeros(1, 3, 16, 16)) is None


def test_bad_options_are_one_line_errors(capsys):
    assert main(["train", "resnet18", "--steps", "0", "--headless"]) == 2
    assert "--steps must be a positive integer" in capsys.readouterr().err
    n = max(7, torch.cuda.device_count())  # a CUDA device that is not there, with or without a GPU
    assert main(["train", "resnet18", "--device", f"cuda:{n}", "--headless"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cuda:{n}" in err[0] and "CUDA device(s)" in err[0]


def test_killing_the_viewer_mid_run_leaves_training_running_and_the_checkpoint_written(tmp_path):
    """SIGKILL to the viewer process in the middle of `glnet train --save`: training runs to its end."""
    ckpt, stats = tmp_path / "k.pt", tmp_path / "k.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [
        sys.executable, "-m", "glnet", "train", "resnet18", "--steps", "30", "--batch", "4",
        "--image-size", "32", "--headless", "--size", "96x64", "--record", str(tmp_path / "frames"),
        "--save", str(ckpt), "--stats-json", str(stats),
    ]  # fmt: skip
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    lines, viewer = [], None
    try:
        for line in proc.stderr:
            lines.append(line)
            if viewer is None and "viewer process" in line:
                viewer = int(line.split("viewer process")[1].split()[0])
            if viewer and "training: 5/30 step" in line:
                os.kill(viewer, signal.SIGKILL)
                break
        _, rest = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines) + rest
    assert proc.returncode == 0, text[-2000:]
    assert "viewer crashed (killed by SIGKILL); training goes on without it" in text
    s = json.loads(stats.read_text())
    assert s["steps"] == 30 and s["stopped"] == "completed" and s["viewer"] == "crashed (killed by SIGKILL)"
    assert 5 < s["viewer_lost_at_step"] <= 30 and s["frames"] < 30
    assert torch.load(ckpt, weights_only=True)["step"] == 30


_WINDOW_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from glnet.train import TrainConfig, train
from test_train import small_net
from window_keys import XKeys

keys = XKeys("glnet - Sequential (training)")
modes = []

def on_step(k, viz):
    modes.append(viz.mode)
    keys.step(k, viz)

r = train(TrainConfig(model=small_net(), steps=4000, batch=8, image_size=32, size=(320, 200),
                      save={ckpt!r}, on_close="stop", on_step=on_step))
print(json.dumps({{"steps": r["steps"], "frames": r["frames"], "stopped": r["stopped"], "modes": modes,
                   "viewer": r["viewer"], "sent": keys.sent}}))
"""


@needs_x
def test_window_trains_switches_modes_on_real_keys_and_closing_it_checkpoints(tmp_path):
    """Under Xvfb: the viewer process's window draws while training; real X key presses (2, Shift+W) switch
    what it shows, in the trainer; Esc closes the window, and with on_close="stop" training stops, saves."""
    ckpt = tmp_path / "win.pt"
    env = {k: v for k, v in os.environ.items() if k not in ("PYOPENGL_PLATFORM", "DISPLAY", "EGL_PLATFORM")}
    env["PYTHONPATH"] = str(ROOT)
    script = _WINDOW_SCRIPT.format(tests=str(ROOT / "tests"), ckpt=str(ckpt))
    r = run_group(
        ["xvfb-run", "-a", "-s", "-screen 0 640x480x24", sys.executable, "-c", script], env=env, timeout=400
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["sent"] == ["2", "shift+w", "Escape"], report
    assert report["stopped"] == "window closed" and 0 < report["steps"] < 4000
    assert report["viewer"] == "closed (window closed)" and report["frames"] >= 1
    assert "gradients" in report["modes"] and report["modes"][-1] == "weights"
    assert torch.load(ckpt, weights_only=True)["step"] == report["steps"]
