"""Explanation while training: the probe's top-5 with the dataset's names, and an inspector that follows
each frame (its values, and in gradients mode the neuron's gradient)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from glnet.capture import capture
from glnet.live.handover import TOP_K, FrameMeta, Slots
from glnet.live.tap import ProbeTap
from glnet.render.pick import Pick

pytestmark = pytest.mark.gl


def test_tap_top_k_is_softmax_topk_of_the_probe_row(tiny_net):
    probe = torch.randn(1, 3, 16, 16)
    trace = capture(tiny_net, probe)
    tap = ProbeTap(tiny_net, trace.layers, ride_along=probe).install()
    try:
        assert (tap.top_k() == -1).all()  # nothing captured yet
        tap.armed = True
        with torch.no_grad():
            out = tiny_net(torch.randn(4, 3, 16, 16))
        assert out.shape[0] == 4  # the probe row rode along and was stripped again
        with torch.no_grad():
            p, i = torch.softmax(tiny_net.eval()(probe)[0], 0).topk(TOP_K)
        got = tap.top_k().tolist()
        assert got[:TOP_K] == [float(v) for v in i.tolist()]
        assert got[TOP_K:] == pytest.approx(p.tolist(), rel=1e-5)
    finally:
        tap.remove()


def test_live_view_shows_the_handed_over_top5_and_follows_the_inspected_neuron(gl, tiny_net):
    from glnet.app import Visualization
    from glnet.live.view import LiveView

    probe = torch.randn(1, 3, 16, 16)
    trace = capture(tiny_net, probe)
    n = len(trace.layers)
    tap = ProbeTap(tiny_net, trace.layers, ride_along=probe).install()
    slots = Slots(3, tap.flat.numel(), torch.device("cpu"), side=n + 2 * TOP_K)
    names = ["red", "green", "blue", "cyan", "pink"]
    vis = Visualization(gl, trace, labels=names)
    view = LiveView(vis, slots, tap.offsets, [r.neurons for r in trace.layers])
    try:
        tap.armed = True
        F.cross_entropy(tiny_net.train()(torch.randn(4, 3, 16, 16)), torch.randint(0, 5, (4,))).backward()
        side = torch.cat([tap.grad_norms(), tap.top_k()])
        frame = torch.arange(tap.flat.numel(), dtype=torch.float32)  # every neuron a different value
        slots.write(0, frame, side)
        li = 1  # conv2
        rec = trace.layers[li]
        vis.inspect(Pick((0, 0), li, 7, False))
        meta = FrameMeta(1)
        view.absorb(meta)
        view.present(0, meta)
        top = side[n:].tolist()
        assert [p.index for p in vis.predictions] == [int(v) for v in top[:TOP_K]]
        assert [p.label for p in vis.predictions] == [names[int(v)] for v in top[:TOP_K]]
        start = tap.offsets[li] // 4
        assert vis.inspection.value == float(start + 7)  # the frame's value, not the capture's
        assert float(vis.inspection.feature_map.reshape(-1)[7]) == float(start + 7)
        assert rec.value.reshape(-1)[7] != start + 7
        slots.write(1, -frame, side)
        meta = FrameMeta(2, mode="gradients")
        view.absorb(meta)
        view.present(1, meta)
        assert vis.inspection.grad == -float(start + 7)
        assert vis.inspection.value == float(start + 7)  # the activation stays what it was
    finally:
        view.close()
        vis.close()
        tap.remove()
