"""Capture, checked against torch itself: values, shapes, in-place ops, branches, odd modules and cleanup."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from glnet.capture import canonical_grid, capture
from glnet.errors import CaptureError, InputError


def test_values_and_shapes_match_torch(tiny_net):
    x = torch.randn(2, 3, 8, 8)
    trace = capture(tiny_net, x, sample=1)
    m = tiny_net
    with torch.no_grad():
        c1 = m.conv1(x)
        a1 = torch.relu(m.bn1(c1))
        p1 = m.pool(a1)
        c2 = m.conv2(p1)
        a2 = torch.relu(c2)
        av = m.avg(a2)
        fc = m.fc(torch.flatten(av, 1))
    names = [r.name for r in trace.layers]
    assert names == ["conv1", "pool", "conv2", "avg", "fc"]
    expected = {"conv1": a1, "pool": p1, "conv2": a2, "avg": av, "fc": fc}
    for r in trace.layers:
        torch.testing.assert_close(
            r.value.reshape(expected[r.name][1].shape), expected[r.name][1], rtol=0, atol=0
        )
        assert r.shape == tuple(expected[r.name][1].shape)
    assert trace.layer("conv1").shown == "relu" and trace.layer("conv2").shown == "act2"
    assert trace.layer("pool").shown is None and trace.layer("fc").shown is None
    assert trace.neurons == 4 * 64 + 4 * 16 + 6 * 16 + 6 + 5
    torch.testing.assert_close(trace.output, fc)


def test_inplace_relu_does_not_overwrite_batchnorm_output(tiny_net):
    """The leaf capture records BN's output before the in-place ReLU zeroes its negatives."""
    x = torch.randn(1, 3, 8, 8)
    trace = capture(tiny_net, x, granularity="leaf")
    with torch.no_grad():
        bn = tiny_net.bn1(tiny_net.conv1(x))
    assert (bn < 0).any(), "the test needs negative BatchNorm outputs"
    torch.testing.assert_close(trace.layer("bn1").value, bn[0], rtol=0, atol=0)
    torch.testing.assert_close(trace.layer("relu").value, torch.relu(bn[0]), rtol=0, atol=0)
    assert [r.name for r in trace.layers][:4] == ["conv1", "bn1", "relu", "pool"]


def test_hooks_removed_and_mode_restored_even_when_forward_raises():
    class Boom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.conv(x)
            raise RuntimeError("kaboom")

    m = Boom().train()
    with pytest.raises(CaptureError, match="kaboom"):
        capture(m, torch.randn(1, 3, 4, 4))
    assert m.training
    assert not m.conv._forward_hooks and not m._forward_hooks


def test_train_mode_restored_and_eval_used(tiny_net):
    tiny_net.train()
    before = tiny_net.bn1.running_mean.clone()
    capture(tiny_net, torch.randn(2, 3, 8, 8))
    assert tiny_net.training
    torch.testing.assert_close(tiny_net.bn1.running_mean, before)  # eval: statistics untouched


class Branchy(nn.Module):
    """A residual branch, a module called twice, a depthwise conv, Conv1d/Conv3d and a tuple output."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.c1d = nn.Conv1d(8, 4, 3)
        self.c3d = nn.Conv3d(1, 2, 3, padding=1)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.relu(self.stem(x))
        y = self.bn(self.dw(s))
        y += s  # in-place residual add on BN's output
        y = self.relu(y)  # the same ReLU module, second call
        seq = y.flatten(2)  # (B, 8, HW)
        a = self.c1d(seq)
        v = self.c3d(y[:, :3].unsqueeze(1))  # (B, 1, D=3, H, W)
        tokens = seq.transpose(1, 2)
        out, _weights = self.attn(tokens, tokens, tokens)
        return a.mean() + v.mean() + out.mean()


def test_branches_repeated_modules_and_odd_layers():
    torch.manual_seed(0)
    m = Branchy().eval()
    x = torch.randn(1, 3, 6, 6)
    trace = capture(m, x, granularity="leaf")
    names = [r.name for r in trace.layers]
    assert "relu" in names and "relu:1" in names  # called twice, both recorded
    with torch.no_grad():
        s = torch.relu(m.stem(x))
        y = torch.relu(m.bn(m.dw(s)) + s)
    torch.testing.assert_close(trace.layer("relu").value, s[0])
    torch.testing.assert_close(trace.layer("relu:1").value, y[0])
    assert trace.layer("c1d").grid == (4, 1, 34)  # Conv1d: channels x length
    assert trace.layer("c3d").grid == (2 * 3, 6, 6)  # Conv3d: channels x depth folded
    assert trace.layer("attn").shape == (36, 8)  # first tensor of the (out, weights) tuple
    default = capture(m, x)
    assert [r.name for r in default.layers] == ["stem", "dw", "c1d", "c3d"]
    assert default.layer("stem").shown == "relu"
    assert default.layer("dw").shown == "relu:1"  # through BN and the in-place add


def test_channels_last_linear_is_shown_channels_first():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 6)
            self.act = nn.GELU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.lin(x.permute(0, 2, 3, 1)))

    m = Block().eval()
    x = torch.randn(1, 4, 3, 5)
    trace = capture(m, x)
    r = trace.layer("lin")
    assert r.channels_last and r.grid == (6, 3, 5) and r.shape == (3, 5, 6)
    with torch.no_grad():
        ref = torch.nn.functional.gelu(m.lin(x.permute(0, 2, 3, 1)))[0].permute(2, 0, 1)
    torch.testing.assert_close(r.value, ref)


def test_nan_and_inf_are_kept():
    class Bad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    m = Bad()
    with torch.no_grad():
        m.conv.weight.fill_(1.0)
        m.conv.bias.zero_()
    x = torch.tensor([[[[1.0, float("nan")], [float("inf"), -float("inf")]]]])
    v = capture(m, x).layer("conv").value.flatten()
    assert v[0] == 1.0 and torch.isnan(v[1]) and v[2] == float("inf") and v[3] == -float("inf")


def test_bad_arguments():
    m = nn.Sequential(nn.Conv2d(3, 1, 1))
    with pytest.raises(InputError):
        capture(m, torch.randn(1, 3, 2, 2), granularity="neuron")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        capture(m, torch.randn(1, 3, 2, 2), sample=3)
    with pytest.raises(CaptureError, match="no Conv, Linear or pooling"):
        capture(nn.Sequential(nn.ReLU()), torch.randn(1, 3))


def test_canonical_grids():
    assert canonical_grid((64, 56, 56), "conv", "Conv2d", False) == (64, 56, 56)
    assert canonical_grid((1000,), "linear", "Linear", False) == (1000, 1, 1)
    assert canonical_grid((197, 768), "linear", "Linear", True) == (768, 197, 1)
    assert canonical_grid((7, 7, 96), "linear", "Linear", True) == (96, 7, 7)
    assert canonical_grid((8, 4, 5, 6), "conv", "Conv3d", False) == (32, 5, 6)


@pytest.mark.slow
def test_resnet50_counts_match_the_definition():
    """11.32 M neurons by default, 32.0 M leaf outputs (the figures the issue gives)."""
    from glnet._torchvision import import_torchvision

    tv = import_torchvision()
    torch.manual_seed(0)
    m = tv.models.resnet50()
    x = torch.randn(1, 3, 224, 224)
    assert capture(m, x).neurons == 11_317_736
    assert capture(m, x, granularity="leaf").neurons == 32_040_424


def test_public_api_capture_is_the_function():
    """``glnet.capture`` stays the function even after its same-named module is imported elsewhere."""
    import glnet
    import glnet.pipeline

    assert glnet.capture is capture and callable(glnet.capture)
    assert glnet.Trace.__name__ == "Trace" and callable(glnet.render_snapshot)
