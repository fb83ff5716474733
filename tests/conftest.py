"""Shared fixtures: one headless EGL context per session, GL error checks around GL tests, tiny models.

GL tests are skipped (with the reason) when no OpenGL 4.5 context can be made; on CI the Mesa packages that
``install.sh`` installs make them run. Each GL test fails if it leaves a GL error behind.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from glnet.gpu.context import configure_platform

configure_platform(headless=True)
# renderer="auto" by the GL renderer's name: no measuring in every test process (tests/test_calibrate.py
# measures, with a cache of its own); subprocesses inherit it
os.environ.setdefault("GLNET_CALIBRATE", "0")

_ctx = None
_why_not = None


def _context():
    global _ctx, _why_not
    if _ctx is None and _why_not is None:
        from glnet.errors import GLUnavailableError
        from glnet.gpu.context import GLContext

        try:
            _ctx = GLContext.offscreen()
        except GLUnavailableError as e:
            _why_not = str(e)
    return _ctx


@pytest.fixture(scope="session")
def gl_ctx():
    ctx = _context()
    if ctx is None:
        pytest.skip(f"no OpenGL 4.5 context: {_why_not}")
    yield ctx


@pytest.fixture
def gl(gl_ctx):
    """The session context, current, with glGetError clean before and checked after the test."""
    from OpenGL import GL

    gl_ctx.make_current()
    while GL.glGetError() != GL.GL_NO_ERROR:
        pass
    yield gl_ctx
    gl_ctx.make_current()
    err = GL.glGetError()
    assert err == GL.GL_NO_ERROR, f"the test left GL error 0x{err:04x}"


@pytest.fixture(scope="session")
def gloo():
    """Skips (with the reason) where two processes cannot form a gloo group over loopback on this machine."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from procs import gloo_unavailable

    why = gloo_unavailable()
    if why is not None:
        pytest.skip(f"no gloo group over loopback here: {why}")


def pytest_sessionfinish(session, exitstatus):
    if _ctx is not None:
        _ctx.close()


@pytest.fixture
def layout():
    """Five small layers (conv, pool, conv, avg, fc) behind a square input: camera and tour tests."""
    from glnet.layout import build_layout

    grids = [
        ("conv1", (4, 16, 16)),
        ("pool", (4, 8, 8)),
        ("conv2", (6, 8, 8)),
        ("avg", (6, 1, 1)),
        ("fc", (5, 1, 1)),
    ]
    return build_layout(grids, input_aspect=1.0)


def layered_scene(seed: int = 0):
    """Four layers from wide maps to a vector, random values with one NaN and one +Inf (renderer tests)."""
    from glnet.layout import build_layout

    torch.manual_seed(seed)
    grids = [("a", (16, 24, 24)), ("b", (32, 12, 12)), ("c", (64, 6, 6)), ("d", (100, 1, 1))]
    layout = build_layout(grids)
    values = [torch.randn(g) for _, g in grids]
    values[1][3, 4, 5] = float("nan")
    values[2][0, 0, 0] = float("inf")
    return layout, values


class TinyNet(nn.Module):
    """conv-bn-relu(inplace) / maxpool / conv-relu / avgpool / linear: every layer kind, few neurons."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.act2 = nn.ReLU()
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.bn1(self.conv1(x))))
        x = self.avg(self.act2(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    net = TinyNet().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the in-place ReLU test means something
        net.bn1.running_mean.uniform_(-0.5, 0.5)
        net.bn1.running_var.uniform_(0.5, 2.0)
        net.bn1.weight.uniform_(0.5, 1.5)
        net.bn1.bias.uniform_(-0.5, 0.5)
    return net
