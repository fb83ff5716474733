"""The structure graph: data flow between drawn layers, followed through the capture's forward pass (residual
adds, concatenations, functional ops, modules called twice), drawn as lines and arcs, and in the stats."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from glnet._torchvision import import_torchvision
from glnet.capture import capture
from glnet.graph import layer_edges


def _tv_trace(name: str, side: int = 64):
    model = getattr(import_torchvision().models, name)(weights=None)
    return capture(model, torch.randn(1, 3, side, side))


def _index(trace) -> dict[str, int]:
    return {r.name: i for i, r in enumerate(trace.layers)}


def _skips(edges) -> list[tuple[int, int]]:
    return [(a, b) for a, b in edges if abs(b - a) > 1]


def test_resnet50_has_its_residual_connections():
    trace = _tv_trace("resnet50")
    edges, at = trace.edges, _index(trace)
    assert edges == sorted(set(edges)) and all(a != b for a, b in edges)
    assert all(0 <= a < len(trace.layers) and 0 <= b < len(trace.layers) for a, b in edges)
    assert len([(a, b) for a, b in edges if b - a > 1]) >= 16
    # layer1.1's input (layer1.0's output, shown as conv3 after the add and ReLU) reaches layer1.1's add,
    # whose ReLU is what layer1.1.conv3 shows: an arc over layer1.1.conv1 and conv2.
    assert trace.layer("layer1.1.conv3").shown == "layer1.1.relu:2"
    assert (at["layer1.0.conv3"], at["layer1.1.conv3"]) in edges
    assert (at["maxpool"], at["layer1.0.downsample.0"]) in edges  # the projection shortcut
    assert (at["layer1.0.downsample.0"], at["layer1.0.conv3"]) in edges  # into the block's add
    assert (at["avgpool"], at["fc"]) in edges  # through torch.flatten


def test_vgg16_is_a_chain():
    trace = _tv_trace("vgg16")
    assert trace.edges == [(i, i + 1) for i in range(len(trace.layers) - 1)]


def test_densenet121_concatenations_have_many_producers():
    trace = _tv_trace("densenet121")
    producers = Counter(b for _a, b in trace.edges)
    assert max(producers.values()) >= 3
    at = _index(trace)
    # the third layer of the first dense block sees pool0 and both earlier layers' new features
    first = at["features.denseblock1.denselayer3.conv1"]
    assert {a for a, b in trace.edges if b == first} >= {
        at["features.pool0"],
        at["features.denseblock1.denselayer1.conv2"],
        at["features.denseblock1.denselayer2.conv2"],
    }


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.conv(torch.relu(x))
        z = self.conv(torch.relu(y)) + x
        return self.head(z.mean((2, 3)))


def test_a_module_called_twice_gets_both_calls_edges():
    trace = capture(Twice(), torch.randn(1, 3, 8, 8))
    assert [r.name for r in trace.layers] == ["stem", "conv", "conv:1", "head"]
    assert trace.edges == [(0, 1), (0, 3), (1, 2), (2, 3)]


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.c = nn.Conv2d(8, 2, 1)
        self.d = nn.Conv2d(2, 2, 1)
        self.fc = nn.Linear(2 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a(x)
        b = self.b(torch.relu(a))
        c = self.c(torch.cat([a, b], 1).contiguous())
        d = self.d(c)
        d[:, :1] = c[:, :1] * 2  # written in place, through a view: c now feeds fc too
        out = torch.zeros_like(a[:, :2])  # only the shape of a: no data flows from a
        out += d  # in place, into a tensor no layer made
        return self.fc(out.flatten(1).view(1, -1))


def test_functional_ops_and_in_place_writes_are_followed():
    trace = capture(Functional(), torch.randn(1, 3, 8, 8))
    assert [r.name for r in trace.layers] == ["a", "b", "c", "d", "fc"]
    assert trace.edges == [(0, 1), (0, 2), (1, 2), (2, 3), (2, 4), (3, 4)]


def test_leaf_granularity_and_torchscript_get_edges():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(64, 2))
    leaf = capture(net, torch.randn(1, 3, 8, 8), granularity="leaf")
    assert leaf.edges == [(i, i + 1) for i in range(4)]
    scripted = capture(torch.jit.script(net), torch.randn(1, 3, 8, 8))
    assert scripted.edges == [(0, 1), (1, 2)]  # first-input chains: conv -> conv -> linear


def test_edges_fold_undrawn_calls_into_their_layers():
    # calls: 0 conv, 1 bn, 2 relu (shown for conv), 3 conv, 4 add-less norm, 5 conv consuming 2 and 4
    sources = [frozenset(), {0}, {1}, {2}, {3}, {2, 4}]
    input_from = [None, 0, 1, 2, 3, 4]
    assert layer_edges(sources, input_from, [(0, 2), (3, 3), (5, 5)]) == [(0, 1), (0, 2), (1, 2)]


def test_layout_carries_edges_and_arcs_rise_above_the_slabs_they_span():
    from glnet.layout import layout_for
    from glnet.render.edges import arc_points, edge_segments

    trace = _tv_trace("resnet18")
    layout = layout_for(trace)
    assert layout.edges == trace.edges
    for a, b in _skips(layout.edges):
        pts = arc_points(layout, (a, b))
        lo, hi = sorted((a, b))
        top = max(s.bounds()[1][1] for s in layout.slabs[lo : hi + 1])
        assert pts[len(pts) // 2, 1] > top
        assert np.allclose(pts[0, [0, 2]], [layout.slabs[a].centre[0], layout.slabs[a].z])
    seg = edge_segments(layout)
    assert seg.shape[1:] == (2, 3) and seg.dtype == np.float32 and len(seg) >= len(layout.edges)


def test_the_c_key_asks_the_window_to_toggle_edges():
    from glnet.camera import CONTROLS, Camera, FlyController

    assert CONTROLS["c"] == ("edges", None)
    fly = FlyController(Camera())
    assert fly.key("c", True) == "edges" and fly.requests == ["edges"]


@pytest.mark.gl
@pytest.mark.parametrize("renderer", ["instanced", "compute"])
def test_arcs_are_drawn_above_the_stack_in_the_edge_colour(gl, renderer):
    from glnet.app import Visualization
    from glnet.camera import named_camera
    from glnet.gpu.framebuffer import Framebuffer
    from glnet.render.edges import ARC_SEGMENTS, EDGE_COLOUR, arc_points

    w, h = 320, 180
    trace = _tv_trace("resnet18")
    vis = Visualization(gl, trace, renderer=renderer)
    fb = Framebuffer(gl, w, h)
    try:
        cam = named_camera("overview", vis.layout, w / h)
        images = {}
        for shown in (True, False):
            vis.scene.show_edges = shown
            vis.render(cam, fb, hud=False, finish=True)
            images[shown] = fb.read_rgba()[..., :3].astype(int)
    finally:
        fb.delete()
        vis.close()
    colour = np.round(np.array(EDGE_COLOUR) * 255).astype(int)
    apexes = np.array([arc_points(vis.layout, e)[ARC_SEGMENTS // 2] for e in _skips(trace.edges)])
    pr = cam.project(apexes, w, h)
    assert pr.visible.sum() >= 4
    hits = {True: 0, False: 0}
    for x, y in zip(pr.x[pr.visible], pr.y[pr.visible], strict=True):
        row, col = h - 1 - int(np.floor(y)), int(np.floor(x))
        for shown, img in images.items():
            patch = img[max(row - 2, 0) : row + 3, max(col - 2, 0) : col + 3]
            hits[shown] += bool((np.abs(patch - colour).max(axis=-1) <= 3).any())
    assert hits[True] >= 0.75 * pr.visible.sum(), hits
    assert hits[False] == 0, hits


@pytest.mark.gl
def test_snapshot_stats_list_the_edges(tmp_path, gl_ctx):
    from glnet.cli import main

    stats = tmp_path / "s.json"
    out = str(tmp_path / "s.png")
    assert main(["snapshot", "resnet18", "--out", out, "--size", "320x180", "--input-size", "64",
                 "--stats-json", str(stats)]) == 0  # fmt: skip
    s = json.loads(stats.read_text())
    edges = [tuple(e) for e in s["edges"]]
    assert edges and all(len(e) == 2 for e in s["edges"])
    names = [layer["name"] for layer in s["layers"]]
    assert (names.index("layer1.0.conv2"), names.index("layer1.1.conv2")) in edges


class Stream(nn.Module):
    """A transformer-like residual stream: each block adds to the stream, with no module after the add."""

    def __init__(self, blocks: int = 6, in_place: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.blocks = nn.ModuleList(nn.Conv2d(4, 4, 1) for _ in range(blocks))
        self.in_place = in_place
        self.shortcut = nn.Identity()  # timm's ConvNeXt and ViT blocks add through one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            if self.in_place:
                y = block(x)
                y += x  # MobileNet's `result += input`
                x = y
            else:
                x = block(x) + self.shortcut(x)
        return x


@pytest.mark.parametrize("in_place", [False, True])
def test_a_residual_stream_links_each_block_to_the_one_before(in_place):
    trace = capture(Stream(6, in_place), torch.randn(1, 3, 8, 8))
    at = _index(trace)
    blocks = [at[f"blocks.{k}"] for k in range(6)]
    # block k reads the stream: block k-1's output (its latest write) and the skip from before it, not the
    # output of every earlier block (which would draw n^2 arcs over a ViT)
    for k in range(2, 6):
        into = {a for a, b in trace.edges if b == blocks[k]}
        assert into == {blocks[k - 1], blocks[k - 2]}, (k, into)
    assert len(trace.edges) <= 2 * len(blocks) + 1
