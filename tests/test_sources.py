"""Your models: timm and Hugging Face sources, a user's module that imports torchvision, safetensors and
prefixed checkpoints, and inputs that are not an RGB image (video, audio, grey, tensor files). Real packages,
real forwards: captured values are compared with torch's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from glnet.cli import main

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--size", "160x90"]


def run_cli(*args: str, pythonpath: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter, so that import order is what a user's shell gives."""
    path = os.pathsep.join(str(p) for p in (pythonpath, ROOT) if p)
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-m", "glnet", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _stats(tmp_path: Path, *args: str) -> dict:
    out, stats = tmp_path / "o.png", tmp_path / "o.json"
    assert main(["snapshot", *args, "--out", str(out), "--stats-json", str(stats), *SMALL]) == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (90, 160, 3) and img.std() > 5  # something was drawn
    return json.loads(stats.read_text())


def _error(capsys, *args: str) -> str:
    assert main(["snapshot", *args, "--out", "/tmp/never.png", *SMALL]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("glnet: error: ")
    return err[-1]


# ---- timm ----------------------------------------------------------------------------------------------


@pytest.mark.gl
def test_timm_cnn_by_name_matches_torch(tmp_path, gl_ctx, capsys):
    from glnet._torchvision import prepare_torchvision
    from glnet.pipeline import trace_model

    prepare_torchvision()  # as glnet's CLI does before anything imports torchvision (timm does)
    import timm

    s = _stats(tmp_path, "timm:resnet18", "--input-size", "64")
    assert "timm:resnet18: random weights (no --weights)" in capsys.readouterr().err
    assert s["model"] == "timm:resnet18" and s["input_shape"] == [1, 3, 64, 64]
    assert s["layers"][0]["name"] == "conv1" and s["layers"][0]["shape"] == [64, 32, 32]
    assert len(s["predictions"]) == 5
    prep = trace_model("timm:resnet18", input_size=64)
    torch.manual_seed(0)
    ref = timm.create_model("resnet18", pretrained=False).eval()  # the same seed: the same weights
    with torch.no_grad():
        conv1 = ref.act1(ref.bn1(ref.conv1(prep.input)))[0]
        logits = ref(prep.input)[0]
    torch.testing.assert_close(prep.trace.layer("conv1").value, conv1)
    torch.testing.assert_close(prep.trace.output[0], logits)


@pytest.mark.gl
def test_timm_vit_small_input(tmp_path, gl_ctx):
    s = _stats(tmp_path, "timm:vit_tiny_patch16_224", "--input-size", "32")
    assert s["input_shape"] == [1, 3, 32, 32]
    qkv = [layer for layer in s["layers"] if layer["name"].endswith("attn.qkv")]
    assert len(qkv) == 12 and qkv[0]["shape"] == [5, 576]  # 2x2 patches + the class token, 3 x 192
    assert len(s["predictions"]) == 5


def test_timm_default_input_size_and_unknown_name(capsys):
    from glnet.models import load_model

    spec = load_model("timm:vit_tiny_patch16_224")  # the model's own size
    assert spec.input_shape == (3, 224, 224) and spec.mean == (0.5, 0.5, 0.5) and spec.random_weights
    msg = _error(capsys, "timm:resnt18")
    assert "unknown timm model 'resnt18'" in msg and "timm:resnet18" in msg


def test_missing_extra_names_it(monkeypatch, capsys):
    monkeypatch.setitem(
        sys.modules, "timm", None
    )  # import timm now raises ImportError, as when not installed
    assert "pip install 'glnet[timm]'" in _error(capsys, "timm:resnet18")
    monkeypatch.setitem(sys.modules, "transformers", None)
    (Path("/tmp") / "glnet-cfg-only").mkdir(exist_ok=True)
    (Path("/tmp") / "glnet-cfg-only" / "config.json").write_text("{}")
    assert "pip install 'glnet[hf]'" in _error(capsys, "hf:/tmp/glnet-cfg-only")


# ---- Hugging Face --------------------------------------------------------------------------------------


def _hf_resnet(folder: Path, classes: int = 5, save: bool = True):
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(3)
    cfg = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=classes)
    model = ResNetForImageClassification(cfg).eval()
    if save:
        model.save_pretrained(folder)
    return model


def test_hf_classifier_logits_equal_torch(tmp_path):
    from transformers import ResNetForImageClassification

    from glnet.explain.predictions import logits_of
    from glnet.pipeline import trace_model

    folder = tmp_path / "tiny-resnet"
    _hf_resnet(folder)
    prep = trace_model(f"hf:{folder}", input_size=32)
    assert prep.spec.name == "hf:tiny-resnet" and not prep.spec.random_weights
    ref = ResNetForImageClassification.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        out = ref(pixel_values=prep.input)
    torch.testing.assert_close(logits_of(prep.trace.output), out.logits[0])
    first = prep.trace.layers[0]
    assert first.name == "resnet.embedder.embedder.convolution" and first.shape == (8, 16, 16)


@pytest.mark.gl
def test_hf_vit_from_config_alone_is_random_and_sized_by_its_config(tmp_path, gl_ctx, capsys):
    from transformers import ViTConfig

    folder = tmp_path / "vit"
    ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
        patch_size=8, num_labels=4,
    ).save_pretrained(folder)  # fmt: skip
    s = _stats(tmp_path, f"hf:{folder}")
    assert "hf:vit: random weights (no --weights)" in capsys.readouterr().err
    assert s["input_shape"] == [1, 3, 32, 32] and len(s["predictions"]) == 4
    attention = [layer for layer in s["layers"] if ".attention." in layer["name"]]  # 16 patches + class token
    assert len(attention) == 8 and all(layer["shape"] == [17, 32] for layer in attention)


def test_hf_backbone_and_bad_folders(tmp_path, capsys):
    from transformers import ResNetConfig, ResNetModel

    from glnet.pipeline import trace_model

    folder = tmp_path / "backbone"
    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])).save_pretrained(folder)
    prep = trace_model(f"hf:{folder}", input_size=32)
    assert type(prep.spec.model).__name__ == "ResNetModel" and prep.spec.family == "transformers"
    assert "not-there" in _error(capsys, f"hf:{tmp_path / 'not-there'}")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("not json")
    assert "config.json is not a model config" in _error(capsys, f"hf:{tmp_path / 'junk'}")


# ---- weights -------------------------------------------------------------------------------------------


@pytest.mark.gl
def test_safetensors_weights_change_the_activations(tmp_path, gl_ctx):
    from safetensors.torch import save_file

    from glnet.models import load_model

    other = load_model("resnet18", seed=7).model
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    s = _stats(tmp_path, "resnet18", "--input-size", "64", "--weights", str(path))
    s0 = _stats(tmp_path, "resnet18", "--input-size", "64")
    from glnet.pipeline import make_input

    x = make_input(load_model("resnet18", input_size=64))
    with torch.no_grad():
        conv1 = other.relu(other.bn1(other.conv1(x)))[0]
    mean = s["layers"][0]["mean"]
    assert mean == pytest.approx(float(conv1.mean()), rel=1e-4)
    assert s0["layers"][0]["mean"] != pytest.approx(mean, rel=1e-3)  # the file's weights, not the seed's


def test_bad_safetensors_is_one_line(tmp_path, capsys):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    assert "not a readable safetensors file" in _error(
        capsys, "resnet18", "--input-size", "32", "--weights", str(path)
    )


def test_prefixed_checkpoints_load(tmp_path):
    from safetensors.torch import save_file

    from glnet.models import load_model, load_weights

    # a Lightning checkpoint of timm's resnet18 (keys under "model."), a DDP one (module.), timm's EMA
    src = load_model("timm:resnet18", seed=5).model
    want = src.conv1.weight.detach().clone()
    cases = {
        "lightning.pt": {"state_dict": {f"model.{k}": v for k, v in src.state_dict().items()}},
        "ddp.pt": {f"module.{k}": v for k, v in src.state_dict().items()},
        "ema.pth": {"state_dict_ema": src.state_dict(), "epoch": 3},
    }
    for name, obj in cases.items():
        torch.save(obj, tmp_path / name)
        dst = load_model("timm:resnet18", seed=0).model
        load_weights(dst, tmp_path / name, "timm:resnet18")
        torch.testing.assert_close(dst.conv1.weight, want, msg=name)
    # Hugging Face: a backbone's checkpoint (no "resnet." prefix) into the backbone of a classifier folder
    hf = _hf_resnet(tmp_path / "hf")
    bare = {
        k.removeprefix("resnet."): v.contiguous()
        for k, v in hf.state_dict().items()
        if k.startswith("resnet.")
    }
    save_file(bare, str(tmp_path / "backbone.safetensors"))
    from transformers import ResNetConfig, ResNetModel

    backbone = ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]))
    load_weights(backbone, tmp_path / "backbone.safetensors")
    torch.testing.assert_close(
        backbone.embedder.embedder.convolution.weight, hf.resnet.embedder.embedder.convolution.weight
    )
    # ... and the classifier's own keys, under DDP's prefix, into the classifier
    save_file(
        {f"module.{k}": v.contiguous() for k, v in hf.state_dict().items()}, str(tmp_path / "ddp.safetensors")
    )
    fresh = _hf_resnet(tmp_path, save=False)
    nn.init.zeros_(fresh.classifier[1].weight)
    load_weights(fresh, tmp_path / "ddp.safetensors")
    torch.testing.assert_close(fresh.classifier[1].weight, hf.classifier[1].weight)


def test_backbone_checkpoint_into_a_classifier_names_the_missing_head(tmp_path):
    from safetensors.torch import save_file

    from glnet.errors import WeightsError
    from glnet.models import load_weights

    hf = _hf_resnet(tmp_path, save=False)
    bare = {
        k.removeprefix("resnet."): v.contiguous()
        for k, v in hf.state_dict().items()
        if k.startswith("resnet.")
    }
    save_file(bare, str(tmp_path / "b.safetensors"))
    with pytest.raises(WeightsError, match=r"2 missing \(classifier.1.weight, classifier.1.bias\)"):
        load_weights(hf, tmp_path / "b.safetensors", "hf:tiny")


# ---- a user's module -----------------------------------------------------------------------------------


def test_module_importing_torchvision_at_import_time(tmp_path):
    (tmp_path / "tvmodels.py").write_text(
        textwrap.dedent(
            """
            import torchvision  # at import time, before glnet has imported it
            from torchvision.models import resnet18

            def build():
                return resnet18(weights=None, num_classes=7)
            """
        )
    )
    r = run_cli("snapshot", "tvmodels:build", "--input-size", "32", "--out", str(tmp_path / "o.png"), *SMALL,
                pythonpath=tmp_path)  # fmt: skip
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert (tmp_path / "o.png").is_file()
    # timm imports torchvision itself: the issue's own example
    t = str(tmp_path / "t.png")
    r = run_cli("snapshot", "timm.models.resnet:resnet18", "--input-size", "32", "--out", t, *SMALL)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]


BROKEN = {
    "raises": "raise RuntimeError('no GPU found\\nsecond line')\n",
    "syntax": "def build(:\n    pass\n",
    "imports": "import not_a_package_anywhere\n",
    "ctor": "def build():\n    raise ValueError('bad width')\n",
    "exits": "import sys\nsys.exit(3)\n",
}


def test_failing_user_module_is_one_line_in_a_real_shell(tmp_path):
    (tmp_path / "brokenmod.py").write_text(BROKEN["raises"])
    r = run_cli("snapshot", "brokenmod:build", "--out", str(tmp_path / "o.png"), pythonpath=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "glnet: error: importing 'brokenmod' failed: RuntimeError: no GPU found"
    )


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_failing_user_module_cases(tmp_path, monkeypatch, capsys, case):
    name = f"broken_{case}"
    (tmp_path / f"{name}.py").write_text(BROKEN[case])
    monkeypatch.syspath_prepend(str(tmp_path))
    msg = _error(capsys, f"{name}:build")
    expect = {
        "raises": "RuntimeError: no GPU found",
        "syntax": f"SyntaxError: invalid syntax ({name}.py, line 1)",
        "imports": "No module named 'not_a_package_anywhere'",
        "ctor": "build() failed: ValueError: bad width",
        "exits": "SystemExit: 3",
    }[case]
    assert expect in msg
    assert "no module named 'nope_xyz'" in _error(capsys, "nope_xyz:build")


# ---- inputs that are not an RGB image ------------------------------------------------------------------


@pytest.mark.gl
def test_video_model_with_input_shape(tmp_path, gl_ctx):
    s = _stats(tmp_path, "r3d_18", "--input-shape", "1x3x4x32x32")
    assert s["input_shape"] == [1, 3, 4, 32, 32]
    assert s["layers"][0]["name"] == "stem.0" and s["layers"][0]["shape"] == [64, 4, 16, 16]


AUDIO = """
from torch import nn

def build():
    return nn.Sequential(
        nn.Conv1d(1, 8, 9, stride=4), nn.ReLU(), nn.Conv1d(8, 16, 9, stride=4), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(16, 10),
    )
"""


@pytest.mark.gl
def test_audio_convnet_and_its_waveform_panel(tmp_path, gl_ctx, monkeypatch):
    from glnet.app import input_rgb
    from glnet.layout import layout_for
    from glnet.pipeline import trace_model

    (tmp_path / "audionet.py").write_text(AUDIO)
    monkeypatch.syspath_prepend(str(tmp_path))
    s = _stats(tmp_path, "audionet:build", "--input-shape", "1x1x16000")
    assert s["input_shape"] == [1, 1, 16000] and s["layers"][0]["shape"] == [8, 3998]
    prep = trace_model("audionet:build", input_shape=(1, 1, 16000))
    tr = prep.trace
    panel = layout_for(tr).input_panel
    assert panel is not None and panel.size[0] / panel.size[1] == pytest.approx(512 / 160)
    pic = input_rgb(tr.input)
    assert pic.shape == (160, 512, 3)
    ink = (pic == (120, 210, 255)).all(axis=2)
    assert ink.any(axis=0).all()  # every column carries the envelope
    # a step from +1 to -0.5: the first half drawn at the band's top, the second half below the middle line
    step = torch.cat([torch.ones(500), torch.full((500,), -0.5)]).view(1, 1, 1000)
    ink = (input_rgb(step) == (120, 210, 255)).all(axis=2)
    left, right = np.nonzero(ink[:, :250].any(axis=1))[0], np.nonzero(ink[:, 262:].any(axis=1))[0]
    assert left.min() >= 7 and left.max() <= 9  # 80 - 0.45 * 160
    assert right.min() >= 115 and right.max() <= 117  # 80 + 0.5 * 72
    # a neuron's saliency over the samples it sees, lighting those columns of the waveform
    from glnet.explain import inspect_neuron
    from glnet.explain.images import saliency_overlay

    ins = inspect_neuron(tr, 1, 3 * 998 + 100, model=prep.spec.model, with_saliency=True)
    lit = np.nonzero(ins.saliency.numpy())[0]
    assert ins.saliency.shape == (16000,) and lit.min() >= 1600 and lit.max() < 1641  # 4 * (4 * 100) + 41
    over = saliency_overlay(pic, ins.saliency).astype(int).sum(axis=(0, 2))
    assert 50 <= int(np.argmax(over)) <= 53  # samples 1600..1640 of 16000 over 512 columns


def test_grey_and_video_pictures():
    from glnet.app import input_rgb

    ramp = torch.linspace(-1, 1, 28).repeat(28, 1)[None, None]  # 1x1x28x28, brighter to the right
    pic = input_rgb(ramp)
    assert (
        pic.shape == (28, 28, 3) and (pic[..., 0] == pic[..., 1]).all() and (pic[..., 1] == pic[..., 2]).all()
    )
    assert (np.diff(pic[14, :, 0].astype(int)) >= 0).all() and pic[14, 0, 0] < 10 and pic[14, -1, 0] > 245
    clip = torch.zeros(1, 3, 5, 8, 8)
    clip[:, 0, 2] = 3.0  # only the middle frame is red
    mid = input_rgb(clip)
    assert mid.shape == (8, 8, 3) and (mid[..., 0] == 255).all() and (mid[..., 1] < 140).all()
    assert input_rgb(torch.zeros(1, 10)) is None  # a plain vector has no picture


@pytest.mark.gl
def test_grey_input_shape_and_tensor_files(tmp_path, gl_ctx, monkeypatch):
    from glnet.models import load_model

    (tmp_path / "mnist.py").write_text(
        "from torch import nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    s = _stats(tmp_path, "mnist:build", "--input-shape", "1x1x28x28")
    assert s["input_shape"] == [1, 1, 28, 28] and s["layers"][0]["shape"] == [4, 26, 26]
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float64)
    np.save(tmp_path / "x.npy", x)
    torch.save(torch.from_numpy(x[0]).float(), tmp_path / "x.pt")  # no batch dimension: glnet adds it
    model = load_model("resnet18", seed=0).model
    with torch.no_grad():
        conv1 = model.relu(model.bn1(model.conv1(torch.from_numpy(x).float())))[0]
    for f in ("x.npy", "x.pt"):
        s = _stats(tmp_path, "resnet18", "--input", str(tmp_path / f))
        assert s["input_shape"] == [1, 3, 32, 32]
        assert s["layers"][0]["mean"] == pytest.approx(float(conv1.mean()), rel=1e-4), f


def test_input_errors_are_one_line(tmp_path, capsys):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 32, 32), np.float32))
    Image.new("RGB", (8, 8)).save(tmp_path / "cat.png")
    cases = {
        ("resnet18", "--input", str(tmp_path / "obj.npy")): "not a readable tensor file",
        ("resnet18", "--input", str(tmp_path / "x.npy"), "--input-shape", "1x3x32x32"): "drop --input-shape",
        (
            "resnet18",
            "--input",
            str(tmp_path / "cat.png"),
            "--input-shape",
            "1x1x16000",
        ): "cannot fill input shape",
        ("resnet18", "--input-size", "32", "--input-shape", "1x3x32x32"): "give one of them",
        ("resnet18", "--input-shape", "1x3xbig"): "invalid --input-shape",
        ("resnet18", "--input-shape", "1x1x16000"): "the model's forward pass failed on input (1, 1, 16000)",
        ("timm:vit_tiny_patch16_224", "--input-shape", "1x3x32x48"): "forward pass failed",
    }
    for args, expect in cases.items():
        assert expect in _error(capsys, *args), args
