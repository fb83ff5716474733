"""The command line: a real snapshot, its statistics, and every kind of bad input as one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glnet.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "glnet", *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


@pytest.mark.gl
def test_snapshot_resnet18_writes_image_and_stats(tmp_path, gl_ctx):
    out, stats = tmp_path / "r18.png", tmp_path / "r18.json"
    rc = main(
        [
            "snapshot",
            "resnet18",
            "--out",
            str(out),
            "--size",
            "320x180",
            "--input-size",
            "64",
            "--stats-json",
            str(stats),
        ]
    )
    assert rc == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (180, 320, 3)
    s = json.loads(stats.read_text())
    assert set(s) >= {"model", "neurons", "layers", "width", "height", "renderer", "gl_renderer", "frame_ms"}
    assert s["model"] == "resnet18" and (s["width"], s["height"]) == (320, 180)
    assert s["neurons"] == sum(layer["neurons"] for layer in s["layers"])
    assert (
        len(s["layers"]) == 23
        and s["layers"][0].items()
        >= {
            "name": "conv1",
            "kind": "conv",
            "shape": [64, 32, 32],
            "neurons": 65536,
        }.items()
    )  # and the distribution keys: tests/test_distributions.py
    assert s["renderer"] in ("compute", "instanced") and s["frame_ms"] > 0
    background = (img == img[0, -1]).all(axis=-1).mean()
    assert background < 0.97, "the network should cover part of the image"


@pytest.mark.gl
def test_snapshot_camera_and_renderer_options(tmp_path, gl_ctx):
    out = tmp_path / "a.png"
    cam = json.dumps({"position": [0, 0, 60], "look_at": [0, 0, 0]})
    stats = tmp_path / "s.json"
    args = ["snapshot", "resnet18", "--out", str(out), "--size", "96x64", "--input-size", "32", "--no-hud"]
    assert main([*args, "--camera", cam, "--renderer", "instanced", "--stats-json", str(stats)]) == 0
    assert json.loads(stats.read_text())["renderer"] == "instanced"
    assert main([*args, "--camera", "layer:fc"]) == 0
    assert main([*args, "--camera", "layer:nosuch"]) == 2


def _bad(capsys, *args: str) -> str:
    rc = main(list(args))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert err[-1].startswith("glnet: error: "), err
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def _bad_snapshot(capsys, tmp_path, model: str, *args: str) -> str:
    """The one-line error of ``glnet snapshot MODEL --out x.png ARGS``."""
    return _bad(capsys, "snapshot", model, "--out", str(tmp_path / "x.png"), *args)


def test_unknown_model_suggests_close_names(tmp_path, capsys):
    msg = _bad_snapshot(capsys, tmp_path, "resnet5")
    assert "resnet50" in msg and "did you mean" in msg


def test_bad_size(tmp_path, capsys):
    for size in ("64by64", "0x10", "12x", "-5x5"):
        assert "size" in _bad_snapshot(capsys, tmp_path, "resnet18", f"--size={size}")


def test_image_that_is_not_an_image(tmp_path, capsys):
    fake = tmp_path / "cat.png"
    fake.write_text("not really a png")
    msg = _bad_snapshot(capsys, tmp_path, "resnet18", "--input", str(fake), "--input-size", "32")
    assert "not an image" in msg


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("case", ["mismatch", "corrupt", "code", "missing", "not_a_state_dict"])
def test_bad_weights(tmp_path, capsys, case):
    path = tmp_path / "w.pth"
    if case == "mismatch":
        torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, path)
    elif case == "corrupt":
        torch.save({"a": torch.zeros(3)}, path)
        path.write_bytes(path.read_bytes()[:40])
    elif case == "code":
        torch.save({"payload": _Evil()}, path)
    elif case == "not_a_state_dict":
        torch.save([1, 2, 3], path)
    msg = _bad_snapshot(capsys, tmp_path, "resnet18", "--weights", str(path), "--input-size", "32")
    expect = {
        "mismatch": "does not match resnet18",
        "corrupt": "not a readable PyTorch weights file",
        "code": "weights_only",
        "missing": "does not exist",
        "not_a_state_dict": "no state dict",
    }[case]
    assert expect in msg


def test_matching_weights_load(tmp_path, gl_ctx):
    from glnet.models import load_model, load_weights

    a = load_model("resnet18", seed=1).model
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": a.state_dict()}, path)
    b = load_model("resnet18", seed=2).model
    load_weights(b, path, "resnet18")
    torch.testing.assert_close(a.conv1.weight, b.conv1.weight)


def test_factory_and_torchscript_models(tmp_path, capsys):
    from glnet.models import load_model

    spec = load_model("torch.nn:Identity")
    assert spec.family == "custom"
    msg = _bad_snapshot(capsys, tmp_path, "json:dumps")
    assert "failed" in msg or "not a torch.nn.Module" in msg
    script = tmp_path / "tiny.pt"
    torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())).save(str(script))
    assert load_model(str(script)).family == "torchscript"
    weights = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(1)}, weights)
    assert "not a TorchScript model" in _bad_snapshot(capsys, tmp_path, str(weights))


@pytest.mark.gl
def test_torchscript_model_snapshot(tmp_path, gl_ctx):
    script = tmp_path / "tiny.pt"
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2))
    torch.jit.script(net).save(str(script))
    stats = tmp_path / "s.json"
    args = [
        "snapshot",
        str(script),
        "--out",
        str(tmp_path / "t.png"),
        "--size",
        "64x48",
        "--input-size",
        "16",
    ]
    assert main([*args, "--stats-json", str(stats)]) == 0
    s = json.loads(stats.read_text())
    assert [layer["name"] for layer in s["layers"]] == ["0", "2"] and s["neurons"] == 4 * 14 * 14 + 16


def test_no_opengl_is_one_line_with_install_hint(tmp_path):
    r = run_cli(
        "snapshot",
        "resnet18",
        "--out",
        str(tmp_path / "x.png"),
        env={"__EGL_VENDOR_LIBRARY_FILENAMES": str(tmp_path / "none.json"), "EGL_PLATFORM": "surfaceless"},
    )
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("glnet: error: no usable OpenGL") and "apt-get install" in last
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("kind", ["missing", "not_a_device"])
def test_unusable_device_is_one_line_naming_it(tmp_path, capsys, kind):
    """A CUDA device torch does not have (any on a CPU-only machine) is refused before the model is built."""
    device = f"cuda:{max(7, torch.cuda.device_count())}" if kind == "missing" else "cudax"
    rc = main(["snapshot", "resnet18", "--out", str(tmp_path / "x.png"), "--device", device])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and [line for line in err if "error" in line] == err[-1:], err
    assert err[-1].startswith("glnet: error: ") and device in err[-1]
    assert ("CUDA device(s)" if kind == "missing" else "not a torch device") in err[-1]
    assert not (tmp_path / "x.png").exists()


def test_help_explains_every_option():
    r = run_cli("--help")
    assert r.returncode == 0 and "snapshot" in r.stdout and "view" in r.stdout
    for cmd in ("snapshot", "view"):
        h = run_cli(cmd, "--help").stdout
        for opt in ("--input", "--weights", "--size", "--renderer", "--granularity"):
            assert opt in h
    assert "--camera" in run_cli("snapshot", "--help").stdout
    assert "--fullscreen" in run_cli("view", "--help").stdout


def test_model_too_large_for_memory(tmp_path, capsys, monkeypatch):
    """The model's weights are sized on the meta device first; one that cannot fit is refused up front."""
    import glnet.models

    monkeypatch.setattr(glnet.models, "available_memory", lambda device="cpu": 10 << 20)  # 10 MiB free
    msg = _bad_snapshot(capsys, tmp_path, "resnet50")
    assert "resnet50 needs" in msg and "GiB" in msg and "free" in msg
