"""Layout: every neuron a distinct place inside its slab; slabs in forward order; panels beside them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from glnet.layout import WeightAtlas, build_layout, neuron_positions

GRIDS = [
    ("stem", (64, 112, 112)),
    ("pool", (64, 56, 56)),
    ("late", (2048, 7, 7)),
    ("tokens", (768, 197, 1)),
    ("fc", (1000, 1, 1)),
    ("odd", (3, 5, 7)),
]


def test_every_neuron_is_a_distinct_place_inside_its_slab():
    layout = build_layout(GRIDS)
    assert layout.count == sum(c * h * w for _, (c, h, w) in GRIDS)
    for slab in layout.slabs:
        p = neuron_positions(slab)
        assert len(p) == slab.count
        lo, hi = slab.bounds()
        eps = 1e-3 * slab.spacing
        assert np.all(p >= lo - eps) and np.all(p <= hi + eps)
        assert np.all(p[:, 2] == np.float32(slab.z))
        cells = np.round((p[:, :2] - p[0, :2]) / slab.spacing).astype(np.int64)
        assert len(np.unique(cells, axis=0)) == slab.count, f"{slab.name}: two neurons share a place"
        assert slab.point_size < slab.spacing  # discs do not touch their neighbours


def test_slabs_follow_forward_order_without_overlap():
    layout = build_layout(GRIDS)
    zs = [s.z for s in layout.slabs]
    assert zs == sorted(zs, reverse=True)
    assert all(a - b > 0 for a, b in itertools.pairwise(zs))
    offsets = [s.offset for s in layout.slabs]
    assert offsets == list(np.cumsum([0] + [s.count for s in layout.slabs])[:-1])


def test_sizes_keep_big_and_small_layers_readable():
    layout = build_layout(GRIDS)
    sides = {s.name: max(s.size) for s in layout.slabs}
    # a 112x112x64 stem and a 7x7x2048 stage within a small factor of each other, neither a speck
    assert 0.5 < sides["late"] / sides["stem"] < 2.0
    assert sides["fc"] > 0.1 * sides["stem"]
    for s in layout.slabs:  # near square
        w, h = s.size
        if min(w, h) > 0:
            assert max(w, h) / min(w, h) < 3.0, s.name


def test_single_neuron_and_empty_layers():
    layout = build_layout([("one", (1, 1, 1))])
    assert layout.count == 1 and np.allclose(neuron_positions(layout.slabs[0])[0, :2], 0)
    with pytest.raises(ValueError):
        build_layout([("empty", (0, 4, 4))])
    with pytest.raises(ValueError):
        build_layout([])


def test_panels_sit_beside_their_slab_and_input_in_front():
    layout = build_layout(GRIDS, weight_shapes={0: (200, 100)}, input_aspect=1.0)
    s = layout.slabs[0]
    panel = layout.weight_panels[0]
    assert panel.origin[2] == s.z
    assert panel.origin[0] > s.bounds()[1][0]  # right of the slab
    assert abs(panel.size[0] / panel.size[1] - 2.0) < 1e-6
    assert layout.input_panel is not None and layout.input_panel.origin[2] > s.z


@pytest.mark.parametrize("shape", [(64, 3, 7, 7), (2048, 512, 1, 1), (96, 1, 7, 7), (5, 3, 3), (10, 4, 3, 2)])
def test_weight_atlas_round_trip(shape):
    atlas = WeightAtlas.for_shape(shape)
    w = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    img = atlas.pack(w)
    assert img.shape == atlas.size[::-1]
    np.testing.assert_array_equal(atlas.unpack(img), w.reshape(atlas.shape))
    width, height = atlas.size
    assert max(width, height) / min(width, height) < 4.5  # folded towards square
