"""Explanation, checked against torch: inspector values, top-5, receptive fields and saliency maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from glnet.capture import capture
from glnet.errors import InputError
from glnet.explain import coords_of, find_layer, index_of, inspect_neuron, parse_neuron, receptive_field
from glnet.explain.predictions import class_labels, imagenet_labels, load_labels, top_k


def _outputs(model, x):
    """Every module's own output, by name, from plain forward hooks (torch's view, not glnet's)."""
    got = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, n=n: got.setdefault(n, o.detach().clone()))
        for n, m in model.named_modules()
        if n
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return got


def test_inspector_values_equal_torch_at_those_coordinates(tiny_net):
    x = torch.randn(1, 3, 16, 16)
    tr = capture(tiny_net, x)
    out = _outputs(tiny_net, x)
    i, index = parse_neuron(tr, "conv2:3,2,5")
    ins = inspect_neuron(tr, i, index)
    assert (ins.layer, ins.coords, ins.coord_names) == ("conv2", (3, 2, 5), ("channel", "y", "x"))
    assert ins.value == pytest.approx(float(out["act2"][0, 3, 2, 5]))  # shown: after its ReLU
    assert ins.raw_value == pytest.approx(float(out["conv2"][0, 3, 2, 5]))  # the conv's own output
    assert torch.equal(ins.feature_map, out["act2"][0, 3])
    assert torch.equal(ins.kernel, tiny_net.conv2.weight[3].detach())
    # conv1 is shown after bn1 and the in-place ReLU: raw is the conv itself
    i, index = parse_neuron(tr, "conv1:1,4,7")
    ins = inspect_neuron(tr, i, index)
    assert ins.raw_value == pytest.approx(float(out["conv1"][0, 1, 4, 7]))
    assert ins.value == pytest.approx(float(torch.relu(out["bn1"][0, 1, 4, 7])))
    # a vector layer: just the index
    i, index = parse_neuron(tr, "fc:2")
    ins = inspect_neuron(tr, i, index)
    assert ins.coords == (2,) and ins.value == pytest.approx(float(out["fc"][0, 2]))
    assert sum(ins.histogram.counts) + ins.histogram.nonfinite == 5


def test_token_layers_take_token_and_channel():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(4, 6)
            self.head = nn.Linear(6, 3)

        def forward(self, x):
            return self.head(self.embed(x).mean(1))

    torch.manual_seed(0)
    m = Tokens().eval()
    x = torch.randn(1, 5, 4)
    tr = capture(m, x)
    rec = tr.layers[find_layer(tr, "embed")]
    i, index = parse_neuron(tr, "embed:3,4")  # token 3, channel 4
    assert coords_of(rec, index) == (3, 4)
    ins = inspect_neuron(tr, i, index)
    assert ins.coord_names == ("token", "channel")
    with torch.no_grad():
        assert ins.value == pytest.approx(float(m.embed(x)[0, 3, 4]))
    with pytest.raises(InputError, match="channel 6 is outside"):
        index_of(rec, (0, 6))


def test_bad_neuron_specs_are_one_line_errors(tiny_net):
    tr = capture(tiny_net, torch.randn(1, 3, 16, 16))
    for spec, msg in [
        ("conv2", "LAYER:C,Y,X"),
        ("nope:1,2,3", "no drawn layer 'nope'"),
        ("conv2:1,2", "takes 3 coordinate"),
        ("conv2:1,2,99", "x 99 is outside"),
        ("conv2:a,b,c", "integers"),
        ("99:1", "outside 0.."),
    ]:
        with pytest.raises(InputError, match=msg):
            parse_neuron(tr, spec)
    assert parse_neuron(tr, "1:0,0,0") == (1, 0)  # by index


def test_top5_equals_softmax_topk():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 12)).eval()
    x = torch.randn(1, 3, 8, 8)
    tr = capture(m, x)
    preds = top_k(tr.output, class_labels("mine", 12))
    with torch.no_grad():
        p, i = torch.softmax(m(x)[0], 0).topk(5)
    assert [q.index for q in preds] == i.tolist()
    assert [q.prob for q in preds] == pytest.approx(p.tolist())
    assert preds[0].label == f"class {i[0]}"
    assert top_k(torch.randn(1, 3, 4, 4)) == []  # not a classifier


def test_labels_from_a_file_and_imagenet_offline(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("cat\ndog\n\nbird\n")
    assert load_labels(f) == ["cat", "dog", "", "bird"]
    assert class_labels("x", 5, f) == ["cat", "dog", "class 2", "bird", "class 4"]
    with pytest.raises(InputError, match="does not exist"):
        load_labels(tmp_path / "missing.txt")
    names = imagenet_labels("resnet18")
    assert names is not None and len(names) == 1000 and names[0] == "tench"
    assert class_labels("resnet50", 1000)[1] == "goldfish"
    assert imagenet_labels("not_a_model") is None


def _conv_stack():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.Conv2d(3, 3, 3, stride=2, padding=1),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 2, 5, padding=2, dilation=1),
    ).eval()


def test_receptive_field_of_a_conv_stack():
    m = _conv_stack()
    tr = capture(m, torch.randn(1, 2, 32, 32))
    # layer 3 (5x5 conv on 8x8): cell (4, 4) reads pool cells 2..6, conv2 cells 4..13, conv1 cells 7..27,
    # input pixels 6..28
    assert receptive_field(tr, 3, 4, 4) == (6, 28, 6, 28)
    assert receptive_field(tr, 0, 0, 0) == (0, 1, 0, 1)  # clipped at the border
    assert receptive_field(tr, 1, 3, 5) == (4, 8, 8, 12)  # conv1 cells 5..7 x 9..11


def test_saliency_is_nonzero_inside_the_receptive_field_and_zero_outside():
    m = _conv_stack()
    x = torch.randn(1, 2, 32, 32)
    tr = capture(m, x)
    for layer, (y, xx) in [(3, (4, 4)), (1, (3, 5)), (3, (0, 7))]:
        rec = tr.layers[layer]
        index = index_of(rec, (1, y, xx))
        ins = inspect_neuron(tr, layer, index, model=m, with_saliency=True)
        y0, y1, x0, x1 = ins.receptive_field
        s = ins.saliency
        assert s.shape == (32, 32)
        inside = torch.zeros_like(s, dtype=torch.bool)
        inside[y0 : y1 + 1, x0 : x1 + 1] = True
        assert float(s[~inside].abs().max()) == 0.0
        # the support reaches every edge of the box (max pooling picks one input per window, so not
        # every pixel inside is nonzero)
        ys, xs = torch.nonzero(s > 0, as_tuple=True)
        assert len(ys) > 0
        if layer == 1:  # convs only: every pixel of the field matters
            assert bool((s[inside] > 0).all())
            assert (int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())) == (y0, y1, x0, x1)


def test_saliency_equals_autograd_of_the_neuron(tiny_net):
    x = torch.randn(1, 3, 16, 16)
    tr = capture(tiny_net, x)
    i, index = parse_neuron(tr, "conv2:2,3,1")
    ins = inspect_neuron(tr, i, index, model=tiny_net, with_saliency=True)
    xg = x.clone().requires_grad_(True)
    feats = tiny_net.pool(tiny_net.relu(tiny_net.bn1(tiny_net.conv1(xg))))
    tiny_net.conv2(feats)[0, 2, 3, 1].backward()
    assert torch.allclose(ins.saliency, xg.grad[0].abs().amax(0))
    assert not tiny_net.training  # eval mode kept


def test_inspection_json_has_every_number(tiny_net):
    tr = capture(tiny_net, torch.randn(1, 3, 16, 16))
    i, index = parse_neuron(tr, "conv2:0,1,1")
    d = inspect_neuron(tr, i, index, model=tiny_net, with_saliency=True).as_dict()
    for key in ("layer", "coords", "value", "raw_value", "range", "stats", "histogram", "feature_map",
                "kernel", "receptive_field", "predictions", "saliency"):  # fmt: skip
        assert key in d
    assert np.array(d["feature_map"]).shape == (8, 8)
    assert len(d["predictions"]) == 5
    assert sum(d["histogram"]["counts"]) == tr.layers[i].neurons
