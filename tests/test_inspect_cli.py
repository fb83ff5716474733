"""``glnet inspect`` and ``glnet snapshot --pick``: the numbers against torch, the pictures as pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from glnet.cli import main


def _resnet18(x):
    from glnet.models import load_model

    spec = load_model("resnet18", input_size=64)
    got = {}
    h = spec.model.layer2[0].conv2.register_forward_hook(lambda _m, _i, o: got.setdefault("o", o.detach()))
    with torch.no_grad():
        logits = spec.model(x)
    h.remove()
    return got["o"], logits


def test_inspect_prints_writes_json_and_saliency(tmp_path, capsys):
    js, sal = tmp_path / "n.json", tmp_path / "s.png"
    rc = main(
        ["inspect", "resnet18", "--input-size", "64", "--neuron", "layer2.0.conv2:5,3,4", "--json", str(js),
         "--saliency", str(sal)]
    )  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "layer2.0.conv2 (Conv2d -> ReLU)" in out and "channel 5, y 3, x 4" in out and "top-5" in out
    d = json.loads(js.read_text())
    assert d["coords"] == [5, 3, 4] and d["layer"] == "layer2.0.conv2"
    from glnet.models import load_model
    from glnet.pipeline import make_input

    x = make_input(load_model("resnet18", input_size=64))
    conv, logits = _resnet18(x)
    assert d["raw_value"] == pytest.approx(float(conv[0, 5, 3, 4]), abs=1e-5)
    _p, i = torch.softmax(logits[0], 0).topk(5)
    assert [q["index"] for q in d["predictions"]] == i.tolist()
    assert d["predictions"][0]["label"]  # ImageNet names, offline
    rf = d["receptive_field"]
    assert 0 <= rf["y0"] <= rf["y1"] < 64 and d["saliency"]["nonzero"] > 0
    img = np.asarray(Image.open(sal))
    assert img.shape == (64, 64, 3)


def test_inspect_bad_neuron_is_one_line(capsys):
    assert main(["inspect", "resnet18", "--input-size", "64", "--neuron", "layer2.0.conv2:5,3,99"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("glnet: error: x 99 is outside layer 'layer2.0.conv2'")


@pytest.mark.gl
def test_snapshot_pick_writes_the_pick_and_draws_the_inspector(tmp_path, gl_ctx):
    out, stats = tmp_path / "p.png", tmp_path / "p.json"
    plain = tmp_path / "plain.png"
    args = [
        "snapshot",
        "resnet18",
        "--input-size",
        "64",
        "--size",
        "480x270",
        "--camera",
        "layer:layer2.0.conv2",
    ]
    assert main([*args, "--out", str(plain)]) == 0
    # the pixel where the camera projects the layer's neuron nearest the image centre
    from glnet.camera import camera_from_spec
    from glnet.layout import layout_for, neuron_positions
    from glnet.pipeline import trace_model

    tr = trace_model("resnet18", input_size=64).trace
    layout = layout_for(tr)
    li = [r.name for r in tr.layers].index("layer2.0.conv2")
    cam = camera_from_spec("layer:layer2.0.conv2", layout, 480 / 270)
    pr = cam.project(neuron_positions(layout.slabs[li]), 480, 270)
    k = int(np.argmin(np.where(pr.visible, np.hypot(pr.x - 240, pr.y - 135), np.inf)))
    px, py = int(pr.x[k]), 269 - int(pr.y[k])
    rec = tr.layers[li]
    _c, h, w = rec.grid
    coords = [k // (h * w), k % (h * w) // w, k % w]
    assert main([*args, "--out", str(out), "--stats-json", str(stats), "--pick", f"{px},{py}"]) == 0
    s = json.loads(stats.read_text())
    assert s["pick"]["pixel"] == [px, py]
    assert (s["pick"]["layer"], s["pick"]["layer_index"], s["pick"]["coords"]) == (
        "layer2.0.conv2",
        li,
        coords,
    )
    assert s["pick"]["value"] == pytest.approx(float(rec.value[tuple(coords)]), abs=1e-5)
    assert len(s["predictions"]) == 5 and "pick_ms" in s
    a, b = np.asarray(Image.open(plain)).astype(int), np.asarray(Image.open(out)).astype(int)
    changed = np.abs(a - b).max(-1) > 24
    assert changed[:, 240:].mean() > 0.2  # the inspector panel, top right
    # a pixel no neuron covers: "pick": null
    assert main([*args, "--out", str(out), "--stats-json", str(stats), "--pick", "0,269", "--no-hud"]) == 0
    assert json.loads(stats.read_text())["pick"] is None


def test_pick_outside_the_image_is_one_line(tmp_path, capsys):
    rc = main(
        ["snapshot", "resnet18", "--out", str(tmp_path / "x.png"), "--size", "320x180", "--pick", "400,10"]
    )
    assert rc == 2
    assert "outside the 320x180 image" in capsys.readouterr().err
