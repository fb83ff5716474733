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
