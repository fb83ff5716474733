"""GL limits enforced: storage bindings within the block size, dispatches within the work-group counts.

The limits are lowered here (as fastplotlib's tests lower the texture size) so that layers are bound in parts,
rows run in segments and dispatches are split on small data; the image and the pick must not change by one
pixel against the render bound whole, one invocation a row. Also: uploading a cloud copies none of it whole.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from glnet.camera import layer_camera, named_camera
from glnet.gpu.context import GLInfo
from glnet.gpu.program import MAX_DISPATCH_INVOCATIONS, plan_dispatch
from glnet.layout import build_layout
from glnet.render import frame as frame_mod
from glnet.render.frame import DrawItem, FrameParams, draw_parts, plan_draws

W, H = 200, 150
RENDERERS = ["instanced", "compute"]
# "binding": a block of 1000 bytes (250 values, not a power of two) at an alignment above the layers' 256
# bytes; "dispatch": two work groups a dispatch, so a part runs in several. Both: rows cut into segments of
# 5, thin layers spread wider.
LOW = {
    "binding": {"max_ssbo_block_size": 1000, "ssbo_offset_alignment": 512},
    "dispatch": {"max_compute_work_group_count": (1, 2, 1)},
}
LOW_SEGMENT = 5

INFO = GLInfo(
    version="4.6",
    renderer="NVIDIA H200/PCIe/SSE2",
    vendor="NVIDIA",
    glsl="4.60",
    major=4,
    minor=6,
    max_texture_size=32768,
    max_ssbo_block_size=1 << 27,
    ssbo_offset_alignment=16,
    max_point_size=2048.0,
)


def _item(grid: tuple[int, int, int], byte_offset: int = 0) -> DrawItem:
    c, h, w = grid
    return DrawItem(0, False, None, byte_offset, c * h * w * 4, c * h * w, c * h, {})  # type: ignore[arg-type]


def _segments(part, width: int):
    """Each segment of a part as raster.comp/pick.comp decode it: (first neuron, count, value index)."""
    seg, per_row = part.segment
    for i in range(part.segments):
        j = part.first_segment + i
        row, s = divmod(j, per_row)
        first = row * width + s * seg
        yield first, min(seg, width - s * seg), first - part.first + part.base


# -- without GL: the plans ------------------------------------------------------------------------------


SMALL, SPEC, WIDE = (2, 3, 1), (65535, 65535, 65535), (2147483647, 65535, 65535)  # work-group counts


@pytest.mark.parametrize(
    ("invocations", "groups"),
    [(n, g) for g in (SMALL, SPEC, WIDE) for n in (0, 1, 127, 129, 768, 770, 10**5)]
    + [(n, g) for g in (SPEC, WIDE) for n in (3 * 10**9, (1 << 32) - 1)],
)
def test_dispatches_cover_the_run_within_limits_and_32_bits(invocations, groups):
    plan = plan_dispatch(invocations, 128, groups)
    at = 0
    for first, gx, gy in plan:  # back to back, each within the counts and 2^31 invocations
        assert first == at and 1 <= gx <= groups[0] and 1 <= gy <= groups[1]
        assert gx * gy * 128 <= MAX_DISPATCH_INVOCATIONS
        at = first + gx * gy * 128
    assert invocations <= at < invocations + 128 and at <= 1 << 32  # every index (base + flat) is a uint
    with pytest.raises(ValueError, match="32 bits"):
        plan_dispatch(1 << 32, 128, groups)


@pytest.mark.parametrize(
    ("grid", "offset", "limit", "align"),
    [
        ((3, 5, 7), 256, 1 << 27, 16),  # fits: one part, as before
        ((1000, 1000, 1000), 0, 1 << 27, 16),  # 4 GB in one layer: 30 parts of at most 128 MiB
        ((7, 9, 301), 768, 1000, 512),  # rows wider than a segment, parts within 250 values
        ((1, 1, 5000), 256, 1000, 256),  # one row far larger than a binding
        ((97, 1, 1), 512, 100, 64),  # a vector (one neuron a row) at a tiny block
    ],
)
def test_parts_tile_the_layer_within_the_block_limit(grid, offset, limit, align):
    info = replace(INFO, max_ssbo_block_size=limit, ssbo_offset_alignment=align)
    item = _item(grid, offset)
    parts = draw_parts(item, info)
    width = grid[2]
    next_segment, next_neuron = 0, 0
    for p in parts:
        assert p.first_segment == next_segment and p.first == next_neuron and p.count > 0
        assert p.bind_offset % align == 0 and p.bind_nbytes <= limit
        assert p.bind_offset + 4 * p.base == offset + 4 * p.first  # the shader finds neuron `first`
        assert max(p.first, p.first_segment, p.segments, p.base, p.first + p.count) < 1 << 32
        next_segment += p.segments
        next_neuron += p.count
    assert next_neuron == item.count and next_segment == item.rows * parts[0].segment[1]
    if limit >= item.nbytes + 256:
        assert len(parts) == 1 and parts[0].bind_offset == offset and parts[0].base == 0
    else:
        assert len(parts) > 1
    if item.count <= 10**6:  # every segment, decoded as the shaders do, inside its part's binding
        seen = np.zeros(item.count, np.int64)
        for p in parts:
            for first, n, at in _segments(p, width):
                assert p.first <= first and first + n <= p.first + p.count and n >= 1
                assert 0 <= at and 4 * (at + n) <= p.bind_nbytes
                seen[first : first + n] += 1
        assert (seen == 1).all()


def test_long_rows_and_thin_layers_spread_over_more_invocations():
    thin = draw_parts(_item((4, 8, 65536)), INFO)  # 32 rows of 65536: 32 invocations before
    assert sum(p.segments for p in thin) >= frame_mod.FILL_INVOCATIONS
    small = draw_parts(_item((2, 4, 4096)), INFO)  # too few neurons to fill: segments of SEGMENT_MIN
    assert small[0].segment == (frame_mod.SEGMENT_MIN, 4096 // frame_mod.SEGMENT_MIN)
    cpu = replace(INFO, renderer="llvmpipe (LLVM 15.0.6, 256 bits)")  # a few cores fill sooner
    assert (
        sum(p.segments for p in draw_parts(_item((2, 4, 4096)), cpu)) == frame_mod.FILL_INVOCATIONS_SOFTWARE
    )
    assert draw_parts(_item((16, 64, 1024)), cpu)[0].segment == (frame_mod.SEGMENT_MAX, 4)  # long rows only
    deep = draw_parts(_item((1024, 64, 64)), INFO)  # 65536 rows fill a GPU already: rows stay whole
    assert deep[0].segment == (64, 1)
    with pytest.raises(ValueError, match="2\\^32"):
        draw_parts(_item((1 << 16, 1 << 8, 1 << 8)), INFO)


# -- on GL: the same pixels and picks -----------------------------------------------------------------


def _scene():
    torch.manual_seed(0)
    grids = [("wide", (2, 3, 40)), ("a", (16, 24, 24)), ("b", (32, 12, 12)), ("fc", (300, 1, 1))]
    layout = build_layout(grids)
    values = [torch.randn(g) for _, g in grids]
    values[1][3, 4, 5] = float("nan")
    return layout, values


def _cameras(layout):
    return {
        "overview": named_camera("overview", layout, W / H),
        "layer:1": layer_camera(layout, 1, W / H),  # discs of several pixels: the splat path
        "layer:0": layer_camera(layout, 0, W / H),
    }


class _Draws:
    """One cloud, both renderers and the picker, drawn into one framebuffer; records bindings and groups."""

    def __init__(self, ctx, layout, values, monkeypatch) -> None:
        from OpenGL import GL

        from glnet.gpu.buffer import Buffer
        from glnet.gpu.cloud import NeuronCloud
        from glnet.gpu.framebuffer import Framebuffer
        from glnet.render.neurons import InstancedNeurons
        from glnet.render.pick import Picker
        from glnet.render.raster import ComputeNeurons

        self.ctx = ctx
        self.cloud = NeuronCloud(ctx, layout)
        self.cloud.set_values(values)
        self.cloud.layers[3].forced_aggregate = True  # fc: drawn from the (300-value) channel means
        self.renderers = {"instanced": InstancedNeurons(ctx), "compute": ComputeNeurons(ctx)}
        self.picker = Picker(ctx)
        self.fb = Framebuffer(ctx, W, H)
        self.bound: list[tuple[str, int, int]] = []
        self.groups: list[tuple[int, int, int]] = []
        bind, dispatch = Buffer.bind_range, GL.glDispatchCompute

        def spy_bind(buf, target, index, offset, size):
            self.bound.append((buf.label, offset, size))
            bind(buf, target, index, offset, size)

        def spy_dispatch(x, y, z):
            self.groups.append((x, y, z))
            dispatch(x, y, z)

        monkeypatch.setattr(Buffer, "bind_range", spy_bind)
        monkeypatch.setattr(GL, "glDispatchCompute", spy_dispatch)

    def draw(self, renderer: str, cam) -> np.ndarray:
        from OpenGL import GL

        from glnet.colormap import BACKGROUND

        self.cloud.flush()
        frame = FrameParams(cam, W, H)
        self.fb.bind()
        GL.glClearColor(*BACKGROUND, 1.0)
        GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT)
        self.cloud.lut.bind(0)
        self.renderers[renderer].draw(self.cloud, frame, plan_draws(self.cloud, frame))
        GL.glFinish()
        return self.fb.read_rgba()

    def picks(self, renderer: str, cam, pixels) -> list[tuple[int, int, bool] | None]:
        frame = FrameParams(cam, W, H)
        items = plan_draws(self.cloud, frame)
        self.cloud.lut.bind(0)
        out = []
        for x, y in pixels:
            p = self.picker.pick(self.cloud, frame, items, x, y, renderer=renderer)
            out.append(None if p is None else (p.layer, p.index, p.aggregate))
        return out

    def close(self) -> None:
        self.fb.delete()
        self.picker.close()
        for r in self.renderers.values():
            r.close()
        self.cloud.close()


def _whole(monkeypatch) -> None:
    """Bind every layer whole, one invocation a row: the renderers as they were before the limits."""
    monkeypatch.setattr(frame_mod, "SEGMENT_MAX", 1 << 30)
    monkeypatch.setattr(frame_mod, "FILL_INVOCATIONS", 0)
    monkeypatch.setattr(frame_mod, "FILL_INVOCATIONS_SOFTWARE", 0)


def _lowered(monkeypatch, ctx, limits: dict[str, object]) -> None:
    monkeypatch.setattr(ctx, "info", replace(ctx.info, **limits))
    monkeypatch.setattr(frame_mod, "SEGMENT_MAX", LOW_SEGMENT)
    monkeypatch.setattr(frame_mod, "FILL_INVOCATIONS", 1 << 12)
    monkeypatch.setattr(frame_mod, "FILL_INVOCATIONS_SOFTWARE", 1 << 12)


@pytest.mark.gl
@pytest.mark.parametrize("limit", list(LOW))
@pytest.mark.parametrize("renderer", RENDERERS)
def test_lowered_limits_draw_and_pick_the_same_pixels(gl, monkeypatch, renderer, limit):
    layout, values = _scene()
    cams = _cameras(layout)
    with monkeypatch.context() as m:
        _whole(m)
        d = _Draws(gl, layout, values, m)
        try:
            whole = {name: d.draw(renderer, cam) for name, cam in cams.items()}
            rng = np.random.default_rng(1)
            pixels = {}
            for name, img in whole.items():  # lit pixels (and a few empty ones) to pick at
                lit = np.argwhere((img[..., :3] != img[0, 0, :3]).any(-1))
                assert len(lit) > 50, f"{name}: the view should show something"
                chosen = lit[rng.choice(len(lit), 40, replace=False)]
                pixels[name] = [(int(x), int(y)) for y, x in chosen] + [(0, 0), (W - 1, H // 2)]
            picked = {name: d.picks(renderer, cams[name], pixels[name]) for name in cams}
            assert sum(p is not None for ps in picked.values() for p in ps) > 100
        finally:
            d.close()
    _lowered(monkeypatch, gl, LOW[limit])
    info = gl.info
    d = _Draws(gl, layout, values, monkeypatch)
    try:
        for name, cam in cams.items():
            d.bound.clear()
            d.groups.clear()
            split = d.draw(renderer, cam)
            np.testing.assert_array_equal(split, whole[name], err_msg=f"{renderer} {name}")
            assert d.picks(renderer, cam, pixels[name]) == picked[name], f"{renderer} {name}"
            assert all(size <= info.max_ssbo_block_size for _, _, size in d.bound)
            assert all(off % info.ssbo_offset_alignment == 0 for _, off, _ in d.bound)
            gx, gy, _ = info.max_compute_work_group_count
            assert all(x <= gx and y <= gy for x, y, _ in d.groups)
            if limit == "binding":  # 4 layers, bound from many more offsets
                assert len({(label, off) for label, off, _ in d.bound}) > 8, "no layer bound in parts"
            else:  # one dispatch a part, and one a pick for its stage 1, unless parts run in several
                assert len(d.groups) > len(d.bound) + len(pixels[name]), "no part dispatched in several"
    finally:
        d.close()


@pytest.mark.gl
def test_default_limits_draw_the_same_pixels(gl, monkeypatch):
    """The default segments and fill (thin layers spread over more invocations) change no pixel either."""
    layout, values = _scene()
    cam = _cameras(layout)["layer:0"]
    with monkeypatch.context() as m:
        _whole(m)
        d = _Draws(gl, layout, values, m)
        try:
            whole = {r: d.draw(r, cam) for r in RENDERERS}
        finally:
            d.close()
    d = _Draws(gl, layout, values, monkeypatch)
    try:
        for r in RENDERERS:
            np.testing.assert_array_equal(d.draw(r, cam), whole[r], err_msg=r)
    finally:
        d.close()


# -- host memory: an upload copies no whole cloud -------------------------------------------------------


def _largest_allocation(fn) -> int:
    """The largest single allocation ``fn`` makes: torch's (through its profiler) or Python's and NumPy's."""
    import tracemalloc

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    torch_peak = max((e.self_cpu_memory_usage for e in prof.events()), default=0)
    tracemalloc.start()
    try:
        fn()
        _, numpy_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return max(torch_peak, numpy_peak)


@pytest.mark.gl
def test_set_values_copies_no_whole_cloud(gl):
    from glnet.colormap import robust_range
    from glnet.gpu.cloud import NeuronCloud

    grids = [("a", (16, 64, 64)), ("b", (32, 32, 32)), ("c", (64, 16, 16)), ("d", (64, 1, 1))]
    layout = build_layout(grids)
    values = [torch.randn(g) for _, g in grids]
    ranges = [robust_range(v) for v in values]
    total = sum(v.numel() * 4 for v in values)
    largest = max(v.numel() * 4 for v in values)
    cloud = NeuronCloud(gl, layout)
    try:
        # float32 on the host: sent from the tensors' own memory
        assert _largest_allocation(lambda: cloud.set_values(values, ranges)) < total // 8
        cloud.flush()
        for i, v in enumerate(values):
            np.testing.assert_array_equal(cloud.read_values(i), v.numpy().ravel())
        # half precision: converted one layer at a time, never the cloud at once
        halves = [v.half() for v in values]
        assert _largest_allocation(lambda: cloud.set_values(halves, ranges)) <= largest
        cloud.flush()
        np.testing.assert_array_equal(cloud.read_values(1), halves[1].float().numpy().ravel())
    finally:
        cloud.close()
