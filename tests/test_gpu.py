"""GPU stage: uploads read back equal what was sent; textures tile past the size limit; objects go."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from glnet.gpu.shaders import ShaderNotFoundError, load_shader, shader_dirs
from glnet.layout import WeightAtlas, build_layout

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.gl
@pytest.mark.parametrize("limit", [None, 16])
def test_weight_texture_reads_back_equal_to_the_tensor(gl, limit):
    """The conv kernels' atlas on the GPU, read back and unpacked, is the weight tensor bit for bit."""
    from glnet.gpu.cloud import NeuronCloud

    saved = gl.max_texture_size
    cloud = NeuronCloud(gl, build_layout([("conv", (8, 4, 4))]))
    if limit:
        gl.max_texture_size = limit  # force the tiled path on a small tensor
    try:
        w = torch.randn(8, 3, 5, 5)
        atlas = cloud.set_weight(0, w)
        tiled, _, rng = cloud.weights[0]
        if limit:
            assert len(tiled.tiles) > 1 and all(max(t.width, t.height) <= limit for t in tiled.tiles)
        back = atlas.unpack(tiled.read())
        np.testing.assert_array_equal(back, w.numpy())
        assert rng.diverging and rng.lo == -rng.hi
    finally:
        cloud.close()
        gl.max_texture_size = saved


@pytest.mark.gl
def test_values_upload_reads_back_per_layer(gl):
    from glnet.gpu.cloud import LAYER_ALIGN, NeuronCloud

    layout = build_layout([("a", (3, 5, 7)), ("b", (10, 1, 1)), ("c", (2, 2, 2))])
    cloud = NeuronCloud(gl, layout)
    try:
        values = [torch.randn(s.grid) for s in layout.slabs]
        cloud.set_values(values)
        assert cloud.values.dirty
        sent = cloud.flush()
        assert sent == cloud.nbytes + cloud.aggregates.nbytes and not cloud.values.dirty
        for i, v in enumerate(values):
            np.testing.assert_array_equal(cloud.read_values(i), v.numpy().ravel())
            assert cloud.layers[i].byte_offset % LAYER_ALIGN == 0
        assert cloud.nbytes < 4 * layout.count + LAYER_ALIGN * len(layout.slabs)  # ~4 bytes a neuron
        with pytest.raises(ValueError, match=r"neurons"):
            cloud.set_values([torch.zeros(3), values[1], values[2]])
    finally:
        cloud.close()


@pytest.mark.gl
def test_buffer_ranges_latest_wins_and_bounds(gl):
    from glnet.gpu.buffer import Buffer

    buf = Buffer(gl, 16, label="test")
    try:
        buf.update_range(np.arange(4, dtype=np.float32))
        buf.update_range(np.full(4, 7, np.float32))  # same range again before a flush: the newest wins
        buf.update_range(np.array([9], np.float32), offset=12)
        assert buf.flush() == 20
        np.testing.assert_array_equal(buf.read(dtype=np.float32), [7, 7, 7, 9])
        with pytest.raises(ValueError):
            buf.update_range(np.zeros(5, np.float32))
    finally:
        buf.delete()
        buf.delete()  # idempotent


@pytest.mark.gl
def test_objects_are_released(gl):
    from glnet.gpu.buffer import Buffer
    from glnet.gpu.framebuffer import Framebuffer
    from glnet.gpu.program import Program
    from glnet.gpu.texture import Texture2D

    before = gl.live_objects
    objs = [
        Buffer(gl, 64),
        Texture2D(gl, 4, 4, "rgba8"),
        Framebuffer(gl, 8, 8),
        Program(gl, compute="raster.comp"),
    ]
    assert gl.live_objects > before
    for o in objs:
        o.delete()
    assert gl.live_objects == before
    dropped = Buffer(gl, 64)
    del dropped  # __del__ only queues the delete; collect() runs it on this thread
    assert gl.collect() >= 1


@pytest.mark.gl
def test_shader_errors_name_the_file(gl):
    from glnet.gpu.program import Program, ShaderError

    with pytest.raises(ShaderNotFoundError, match=r"no_such\.vert"):
        Program(gl, vertex="no_such.vert", fragment="neurons.frag")
    with pytest.raises(ShaderError, match=r"raster\.comp"):
        Program(gl, compute="raster.comp", defines={"u_count": "syntax error here"})


def test_loader_expands_includes_once_and_raises_on_a_miss():
    src = load_shader("raster.comp")
    assert src.count('// --- start of "common/camera.glsl" ---') == 1
    assert "#include" not in src
    frag = load_shader("neurons.frag")  # includes camera and colormap; each once
    assert frag.count("vec4 code_colour") == 1
    with pytest.raises(ShaderNotFoundError):
        load_shader("missing.comp")
    with pytest.raises(ShaderNotFoundError):
        load_shader("../pyproject.toml")  # no escaping the shader folders


def test_shaders_load_from_the_checkout():
    """A checkout (and an editable install, which imports glnet from it) finds the top-level shaders/."""
    assert (ROOT / "shaders") in [d.resolve() for d in shader_dirs()]


@pytest.mark.slow
def test_shaders_load_from_an_installed_wheel(tmp_path):
    """Build the wheel, install it elsewhere and load every shader from there, not from the checkout."""
    pytest.importorskip("hatchling")
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
        ],
        check=True,
        timeout=300,
    )
    wheel = next(dist.glob("glnet-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n.split("glnet/shaders/", 1)[1] for n in names if n.startswith("glnet/shaders/"))
    local = sorted(str(p.relative_to(ROOT / "shaders")) for p in (ROOT / "shaders").rglob("*") if p.is_file())
    assert shipped == local
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    code = (
        "import glnet.gpu.shaders as s, pathlib;"
        "d = s.shader_dirs(); print(d[0]);"
        "[s.load_shader(n) for n in"
        " ('raster.comp', 'neurons.vert', 'neurons.frag', 'present.frag', 'panel.frag')]"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).resolve() == (site / "glnet" / "shaders").resolve()


def test_weight_atlas_sizes_fit_textures():
    for shape in [(512, 512, 3, 3), (2048, 512, 1, 1), (1536, 1, 7, 7)]:
        w, h = WeightAtlas.for_shape(shape).size
        assert max(w, h) <= 16384


# -- one owner for every GL object -------------------------------------------------------------------------


@pytest.mark.gl
def test_vertex_array_and_fence_are_tracked_objects(gl):
    from glnet.gpu.objects import VertexArray
    from glnet.gpu.sync import Fence

    before = gl.live_objects
    vao = VertexArray(gl, label="test")
    vao.bind()
    VertexArray.unbind()
    fence = Fence(gl)
    assert gl.live_objects == before + 2
    assert fence.wait(5.0) and fence.signaled()
    for obj in (vao, fence, vao, fence):  # twice: idempotent
        obj.delete()
    assert gl.live_objects == before
    dropped = Fence(gl)
    del dropped  # only queued; collect() deletes the sync object on this thread
    assert gl.collect() >= 1


@pytest.mark.gl
def test_mapped_buffer_writes_without_gl_and_copies_on_the_gpu(gl):
    from glnet.gpu.buffer import Buffer, MappedBuffer
    from glnet.gpu.sync import Fence

    before = gl.live_objects
    staging = MappedBuffer(gl, 64, label="staging")
    dst = Buffer(gl, 32, label="dst")
    try:
        assert staging.array.dtype == np.uint8 and staging.array.nbytes == 64
        torch.from_numpy(staging.array.view(np.float32))[8:16] = torch.arange(8, dtype=torch.float32)
        staging.copy_to(dst, src_offset=32, dst_offset=0, nbytes=32)
        assert Fence(gl).wait(5.0)
        np.testing.assert_array_equal(dst.read(dtype=np.float32), np.arange(8, dtype=np.float32))
        with pytest.raises(ValueError, match="outside"):
            staging.copy_to(dst, src_offset=48, dst_offset=0, nbytes=32)
    finally:
        staging.delete()
        staging.delete()
        dst.delete()
    gl.collect()
    assert gl.live_objects == before


def _fail_with(monkeypatch, entry: str, err: int) -> list[tuple[str, int]]:
    """Make ``GL.<entry>`` raise PyOpenGL's GLError(err); returns the (kind, name)s generated meanwhile."""
    from OpenGL import GL
    from OpenGL.error import GLError

    made: list[tuple[str, int]] = []

    def recorder(kind, gen):
        def record(n):
            name = gen(n)
            made.append((kind, int(name)))
            return name

        return record

    def fail(*args):
        raise GLError(err=err, result=None, cArguments=args, baseOperation=entry)

    for kind in ("Buffers", "Textures", "Renderbuffers"):
        monkeypatch.setattr(GL, f"glGen{kind}", recorder(kind, getattr(GL, f"glGen{kind}")))
    monkeypatch.setattr(GL, entry, fail)
    return made


def _alive(made: list[tuple[str, int]]) -> list[tuple[str, int]]:
    from OpenGL import GL

    return [(k, n) for k, n in made if getattr(GL, f"glIs{k[:-1]}")(n)]


@pytest.mark.gl
@pytest.mark.parametrize(
    ("what", "entry"),
    [
        ("buffer", "glBufferData"),
        ("mapped", "glNamedBufferStorage"),
        ("texture", "glTexStorage2D"),
        ("framebuffer", "glRenderbufferStorage"),
    ],
)
def test_gpu_out_of_memory_is_one_line_and_leaks_nothing(gl, monkeypatch, what, entry):
    from OpenGL import GL

    from glnet.errors import OutOfMemoryError
    from glnet.gpu.buffer import Buffer, MappedBuffer
    from glnet.gpu.framebuffer import Framebuffer
    from glnet.gpu.texture import Texture2D

    make = {
        "buffer": lambda: Buffer(gl, 1 << 20, label="values"),
        "mapped": lambda: MappedBuffer(gl, 1 << 20, label="staging"),
        "texture": lambda: Texture2D(gl, 512, 512, "rgba8", label="atlas"),
        "framebuffer": lambda: Framebuffer(gl, 512, 512, label="frame"),
    }[what]
    before = gl.live_objects
    made = _fail_with(monkeypatch, entry, GL.GL_OUT_OF_MEMORY)
    with pytest.raises(OutOfMemoryError) as info:
        make()
    message = str(info.value)
    assert "\n" not in message and "out of memory" in message
    assert f"{1 << 20:,} bytes" in message or f"{512 * 512 * 4:,} bytes" in message
    assert gl.live_objects == before
    assert made and _alive(made) == []


@pytest.mark.gl
def test_out_of_memory_left_for_glgeterror_is_caught_too(gl, monkeypatch):
    from OpenGL import GL

    from glnet.errors import OutOfMemoryError
    from glnet.gpu.buffer import Buffer

    real = GL.glGetError
    pending = [GL.GL_OUT_OF_MEMORY]
    monkeypatch.setattr(GL, "glBufferData", lambda *args: None)  # "succeeds", as with error checks off
    monkeypatch.setattr(GL, "glGetError", lambda: pending.pop() if pending else real())
    before = gl.live_objects
    with pytest.raises(OutOfMemoryError, match=r"4,096 bytes"):
        Buffer(gl, 4096, label="values")
    assert gl.live_objects == before


@pytest.mark.gl
def test_a_failed_mapping_is_a_mapping_error_and_leaks_nothing(gl, monkeypatch):
    from OpenGL import GL

    from glnet.errors import MappingError
    from glnet.gpu.buffer import MappedBuffer

    before = gl.live_objects
    made = _fail_with(monkeypatch, "glMapNamedBufferRange", GL.GL_INVALID_OPERATION)
    with pytest.raises(MappingError, match=r"4,096 bytes.*0x0502") as info:
        MappedBuffer(gl, 4096, label="staging")
    assert isinstance(info.value, RuntimeError) and "\n" not in str(info.value)
    assert gl.live_objects == before
    assert made and _alive(made) == []


# -- threads ------------------------------------------------------------------------------------------------


def _on_thread(fn, name: str = "intruder"):
    """Run ``fn`` on a new thread; returns what it returned or raised."""
    import threading

    out: list[object] = []

    def run():
        try:
            out.append(fn())
        except BaseException as e:  # handed back to the test
            out.append(e)

    t = threading.Thread(target=run, name=name)
    t.start()
    t.join(60)
    return out[0]


@pytest.mark.gl
def test_another_thread_cannot_use_the_context(gl):
    import threading

    from glnet.errors import GLThreadError
    from glnet.gpu.buffer import Buffer

    before = gl.live_objects
    for attempt in (lambda: Buffer(gl, 64), gl.make_current, gl.close, gl.release):
        err = _on_thread(attempt)
        assert isinstance(err, GLThreadError), err
        assert "'intruder'" in str(err) and repr(threading.current_thread().name) in str(err)
        assert "\n" not in str(err)
    assert not gl.closed and gl.live_objects == before
    buf = Buffer(gl, 16)  # the owner carries on
    buf.write(np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(buf.read(dtype=np.float32), np.arange(4, dtype=np.float32))
    buf.delete()


@pytest.mark.gl
def test_release_hands_the_context_over(gl):
    from glnet.gpu.buffer import Buffer

    def work():
        gl.make_current()  # takes the released context over
        buf = Buffer(gl, 16, data=np.arange(4, dtype=np.float32))
        try:
            return buf.read(dtype=np.float32).tolist()
        finally:
            buf.delete()
            gl.release()

    main = gl.owner
    gl.release()
    try:
        assert gl.owner is None
        assert _on_thread(work, "worker") == [0.0, 1.0, 2.0, 3.0]
        assert gl.owner is None  # the worker gave it back
    finally:
        gl.make_current()
    assert gl.owner is main


# -- versions and context helpers ---------------------------------------------------------------------------


@pytest.mark.gl
def test_a_gl_4_3_driver_is_refused_in_one_line(gl, monkeypatch):
    import dataclasses

    import glnet.gpu.context as context
    from glnet.errors import GLUnavailableError

    real = context._query_info
    monkeypatch.setattr(
        context, "_query_info", lambda: dataclasses.replace(real(), major=4, minor=3, renderer="OldGL 1.0")
    )
    with pytest.raises(GLUnavailableError) as info:
        context.GLContext.offscreen()
    assert str(info.value) == (
        "glnet needs OpenGL 4.5 (direct state access); this driver offers 4.3: OldGL 1.0"
    )


@pytest.mark.gl
def test_context_or_new_closes_only_what_it_made(gl):
    from glnet.gpu.buffer import Buffer
    from glnet.gpu.context import context_or_new

    with context_or_new(gl) as ctx:
        assert ctx is gl
    assert not gl.closed
    with context_or_new(None) as own:
        assert own is not gl
        buf = Buffer(own, 64)
    assert own.closed and buf.deleted


@pytest.mark.gl
def test_the_key_buffer_waits_for_shader_writes(gl, monkeypatch):
    """The compute pass's key buffer is cleared and read back only after a buffer-update barrier."""
    from OpenGL import GL

    from glnet.camera import named_camera
    from glnet.gpu.cloud import NeuronCloud
    from glnet.render.frame import FrameParams, plan_draws
    from glnet.render.raster import ComputeNeurons

    layout = build_layout([("a", (4, 6, 6))])
    cloud = NeuronCloud(gl, layout)
    raster = ComputeNeurons(gl)
    calls: list[object] = []
    barrier, clear = GL.glMemoryBarrier, GL.glClearNamedBufferData
    monkeypatch.setattr(GL, "glMemoryBarrier", lambda bits: (calls.append(bits), barrier(bits))[1])
    monkeypatch.setattr(GL, "glClearNamedBufferData", lambda *a: (calls.append("clear"), clear(*a))[1])
    try:
        cloud.set_values([torch.randn(4, 6, 6)])
        cloud.flush()
        frame = FrameParams(named_camera("overview", layout, 64 / 48), 64, 48)
        raster.rasterize(cloud, frame, plan_draws(cloud, frame))
        at_clear = calls.index("clear")
        assert at_clear > 0 and calls[at_clear - 1] & GL.GL_BUFFER_UPDATE_BARRIER_BIT
        assert GL.GL_SHADER_STORAGE_BARRIER_BIT & calls[-1]  # after the dispatches, for the present pass
        calls.clear()
        keys = raster.read_keys()
        assert calls and calls[-1] & GL.GL_BUFFER_UPDATE_BARRIER_BIT
        assert (keys != 0xFFFFFFFF).any()
    finally:
        raster.close()
        cloud.close()
