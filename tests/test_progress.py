"""Progress for long work: plain lines where stderr is not a terminal (cadence, delay), a tqdm bar on one,
and the per-layer bar a capture shows."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import torch

from glnet.progress import Progress, module_progress

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import TinyNet


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_plain_lines_at_each_tenth_or_every_k(monkeypatch):
    monkeypatch.setenv("GLNET_PROGRESS", "plain")
    out = io.StringIO()
    with Progress(100, "glnet: work", unit="step", stream=out) as p:
        for _ in range(100):
            p.update()
    assert [line.split()[2] for line in _lines(out)] == [f"{k}/100" for k in (1, *range(10, 101, 10))]
    out = io.StringIO()
    with Progress(30, "glnet: training", unit="step", stream=out, every=5) as p:
        for k in range(30):
            p.postfix(loss=1.0 / (k + 1))
            p.update()
    lines = _lines(out)
    assert [line.split()[2] for line in lines] == [f"{k}/30" for k in range(5, 31, 5)]
    assert lines[-1].startswith("glnet: training: 30/30 step, ") and lines[-1].endswith("loss 0.03333")


def test_delay_keeps_quick_work_quiet(monkeypatch):
    monkeypatch.setenv("GLNET_PROGRESS", "plain")
    out = io.StringIO()
    with Progress(10, "quick", stream=out, delay=60.0) as p:
        for _ in range(10):
            p.update()
    assert out.getvalue() == ""


def test_a_bar_on_a_terminal_and_messages_around_it(monkeypatch):
    monkeypatch.setenv("GLNET_PROGRESS", "bar")
    out = io.StringIO()
    said = []
    with Progress(4, "glnet: bench", unit="case", stream=out) as p:
        say = p.wrap(said.append)
        p.update(2)
        say("a note")
        p.update(2)
    text = out.getvalue()
    assert said == ["a note"] and "4/4" in text and "case" in text and "\r" in text  # tqdm redraws in place


def test_module_progress_counts_the_layers_a_forward_runs(monkeypatch, capsys):
    monkeypatch.setenv("GLNET_PROGRESS", "plain")
    net = TinyNet()
    with module_progress("glnet: capturing", delay=0.0):
        net(torch.randn(1, 3, 16, 16))
    lines = capsys.readouterr().err.splitlines()
    leaves = sum(1 for m in net.modules() if next(m.children(), None) is None)
    assert lines and lines[-1].startswith(f"glnet: capturing: {leaves}/{leaves} layer")
    net(torch.randn(1, 3, 16, 16))  # the global hooks are gone again
    assert capsys.readouterr().err == ""
    assert not torch.nn.modules.module._global_forward_hooks


@pytest.mark.parametrize("env", ["plain", "bar"])
def test_disabled_progress_says_nothing(monkeypatch, env):
    monkeypatch.setenv("GLNET_PROGRESS", env)
    out = io.StringIO()
    with Progress(5, "x", stream=out, enabled=False) as p:
        p.update(5)
        p.write("hidden")
    assert out.getvalue() == ""
