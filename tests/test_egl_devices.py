"""EGL devices: the rule that puts a context on the model's GPU, ``--gl-device``, ``glnet info``.

The rule is a pure function of the EGL devices' CUDA ordinals, the wanted device and ``CUDA_VISIBLE_DEVICES``,
tested here on made-up machines. Mesa's software device (this machine) is opened for real; on an NVIDIA GPU a
CUDA-GL registration on every CUDA device proves each context landed on the tensors' GPU (skipped elsewhere).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from glnet import cli
from glnet.errors import GLUnavailableError, InputError
from glnet.gpu import egl
from glnet.gpu.egl import EGLDevice, choose_device, cuda_ordinal, parse_visible_devices

ROOT = Path(__file__).resolve().parent.parent
MESA = None  # Mesa's software device: no CUDA ordinal


def _run(code: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter: VisPy's EGL backend keeps one display per process."""
    cmd = [sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


# ----------------------------------------------------------------------------------------------------------
# The rule
# ----------------------------------------------------------------------------------------------------------


def test_the_tensors_gpu_wins_whatever_order_egl_lists_devices_in():
    ordinals = [1, 0, MESA]  # EGL lists cuda:1 first
    assert choose_device(ordinals, cuda_device=0).index == 1
    assert choose_device(ordinals, cuda_device=1).index == 0


def test_mesa_stays_on_the_platform_default():
    assert choose_device([MESA], cuda_device=0).index is None
    assert choose_device([], cuda_device=0).index is None
    assert choose_device(None, cuda_device=0).index is None  # no enumeration at all
    assert choose_device([MESA], cuda_device=None).index is None


def test_driver_numbering_as_this_process_does_under_cuda_visible_devices():
    # physical GPUs 0..3, CUDA_VISIBLE_DEVICES=2,3: the hidden GPUs name no CUDA device, the visible ones 0, 1
    ordinals = [None, 0, None, 1, MESA]
    assert choose_device(ordinals, cuda_device=0, visible="2,3").index == 1
    assert choose_device(ordinals, cuda_device=1, visible="2,3").index == 3


def test_driver_numbering_physically_is_mapped_through_cuda_visible_devices():
    # an ordinal this process cannot see (3 with two visible) means the driver numbers physically
    ordinals = [0, 1, 2, 3, MESA]
    assert choose_device(ordinals, cuda_device=0, visible="2,3").index == 2
    assert choose_device(ordinals, cuda_device=1, visible="2,3").index == 3
    reversed_order = [3, 2, 1, 0]
    assert choose_device(reversed_order, cuda_device=0, visible="1").index == 2
    assert choose_device(reversed_order, cuda_device=0, visible=" 0 , -1, 3").index == 3  # CUDA stops at -1


def test_without_cuda_visible_devices_both_numberings_agree():
    assert choose_device([2, 0, 1], cuda_device=2, visible=None).index == 0
    assert choose_device([2, 0, 1], cuda_device=2, visible="0,1,2").index == 0


def test_no_matching_device_falls_back_and_says_why():
    choice = choose_device([0, MESA], cuda_device=3)
    assert choice.index is None and "CUDA device 3" in choice.why
    uuid = choose_device([0, 1, 2], cuda_device=0, visible="GPU-8f2a,1")
    assert uuid.index is None and "GPU-8f2a" in uuid.why  # physical numbering, but named by UUID


@pytest.mark.parametrize(
    ("ordinals", "gl_device", "message"),
    [
        ([MESA], 1, r"--gl-device 1 is out of range: this machine has 1 EGL device \(0\)"),
        ([0, 1, MESA], 5, r"has 3 EGL devices \(0\.\.2\)"),
        ([0], -1, "out of range"),
        ([], 0, "no EGL device"),
        (None, 0, "enumeration"),
        ([0], True, "EGL device index"),
    ],
)
def test_a_bad_gl_device_is_a_one_line_input_error(ordinals, gl_device, message):
    with pytest.raises(InputError, match=message) as info:
        choose_device(ordinals, gl_device=gl_device, cuda_device=0)
    assert "\n" not in str(info.value)


def test_gl_device_beats_the_tensors_gpu():
    assert choose_device([0, 1, MESA], gl_device=2, cuda_device=0).index == 2


def test_cuda_ordinals_of_torch_devices():
    assert cuda_ordinal(None) is None and cuda_ordinal("cpu") is None and cuda_ordinal("meta") is None
    assert cuda_ordinal("cuda:1") == 1 and cuda_ordinal(torch.device("cuda", 2)) == 2 and cuda_ordinal(3) == 3
    assert cuda_ordinal("not a device") is None  # the model loader reports it
    if not torch.cuda.is_available():
        assert cuda_ordinal("cuda") == 0


def test_cuda_visible_devices_is_read_as_cuda_reads_it():
    assert parse_visible_devices(None) is None
    assert parse_visible_devices("") == []
    assert parse_visible_devices("1, 0") == ["1", "0"]
    assert parse_visible_devices("GPU-ab12,MIG-cd34,2") == ["GPU-ab12", "MIG-cd34", "2"]
    assert parse_visible_devices("0,-1,1") == ["0"]


def test_select_display_matches_cuda_device_0_by_default_on_nvidia(monkeypatch):
    """The wiring around the rule: CUDA_VISIBLE_DEVICES from the environment, cuda:0 when nothing is asked."""
    fake = [EGLDevice(i, ("EGL_NV_device_cuda",), o, None, "NVIDIA") for i, o in enumerate([1, 0])]
    used: list[int] = []
    monkeypatch.setattr(egl, "query_devices", lambda: fake)
    monkeypatch.setattr(egl._DISPLAYS, "use", lambda d: used.append(d.index))
    monkeypatch.setattr(egl._DISPLAYS, "active", None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert egl.select_display().index == 1
    assert egl.select_display(cuda_device="cuda:1").index == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")  # one visible, ordinal 1 reported: physical numbering
    assert egl.select_display(cuda_device="cuda:0").index is None  # physical GPU 5 is not among them
    assert used == [1, 0]
    with pytest.raises(InputError, match="out of range"):
        egl.select_display(gl_device=2)


def test_live_training_hands_the_device_to_a_headless_viewer_only(tiny_net, monkeypatch):
    from glnet.live import Live, session

    specs = []

    class Spawned(Exception):
        pass

    def fake_viewer(spec, slots):
        specs.append(spec)
        raise Spawned

    monkeypatch.setattr(session, "ViewerProcess", fake_viewer)
    window = Live(tiny_net.train(), torch.randn(1, 3, 16, 16), headless=False, gl_device=0)
    with pytest.raises(InputError, match="headless"):
        window.start()
    window.close()
    viz = Live(tiny_net.train(), torch.randn(1, 3, 16, 16), headless=True, gl_device=1)
    with pytest.raises(Spawned):
        viz.start()
    viz.close()
    assert [(s.gl_device, s.cuda_device) for s in specs] == [(1, None)]  # CPU slots: no CUDA device


# ----------------------------------------------------------------------------------------------------------
# This machine
# ----------------------------------------------------------------------------------------------------------


def test_this_machine_lists_its_egl_devices():
    try:
        devices = egl.query_devices()
    except GLUnavailableError as e:
        assert "enumeration is unavailable" in str(e)
        return
    assert devices, "EGL enumerates devices but lists none"
    assert [d.index for d in devices] == list(range(len(devices)))
    for d in devices:
        assert d.name
        if "EGL_NV_device_cuda" not in d.extensions:
            assert d.cuda is None  # only NVIDIA's devices name a CUDA device


@pytest.mark.gl
def test_glnet_info_lists_the_egl_devices(gl_ctx, capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("EGL ")]
    assert lines and (lines[0].startswith("EGL 0 ") or "enumeration is unavailable" in lines[0]), out
    assert all("; cuda " in ln for ln in lines if ln.startswith("EGL 0 ")), out
    assert any(ln.startswith("display ") for ln in out.splitlines()), out


@pytest.mark.gl
def test_gl_device_out_of_range_on_the_command_line_is_one_line(gl_ctx, capsys):
    code = cli.main(["snapshot", "resnet18", "--out", "x.png", "--gl-device", "99"])
    err = capsys.readouterr().err
    if "enumeration is unavailable" in err:
        pytest.skip("this EGL cannot enumerate devices")
    assert code == 2 and "--gl-device 99 is out of range" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.gl
def test_a_context_on_an_egl_device_renders_and_keeps_the_process_on_it(gl_ctx):
    """Opened through EGL_EXT_platform_device for real (Mesa's software device here), in a fresh process."""
    r = _run(
        """
        from glnet.errors import GLUnavailableError
        from glnet.gpu.context import GLContext
        from glnet.gpu.egl import query_devices
        default = GLContext.offscreen()
        other = next(i for i in range(len(query_devices())) if i != default.egl_device)
        try:
            GLContext.offscreen(gl_device=other)
            raise SystemExit("a second EGL display was accepted while a context was open")
        except GLUnavailableError as e:
            assert "one EGL device per process" in str(e), e
        default.close()
        with GLContext.offscreen(gl_device=other) as ctx, GLContext.offscreen() as again:
            assert ctx.egl_device == other == again.egl_device, (other, ctx.egl_device, again.egl_device)
            from OpenGL import GL
            GL.glClearColor(0.25, 0.5, 0.75, 1.0)
            print("ok", ctx.info.renderer)
        """
    )
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr[-2000:]


# ----------------------------------------------------------------------------------------------------------
# An NVIDIA GPU
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.cuda
def test_every_cuda_device_gets_a_context_on_its_own_gpu():
    """CUDA registers a GL buffer only from a context on the tensors' GPU: one process per CUDA device."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device: torch.cuda.is_available() is False")
    from glnet.gpu.interop import interop_status

    ok, why = interop_status()
    if not ok:
        pytest.skip(f"CUDA-GL interop unavailable: {why}")
    for i in range(torch.cuda.device_count()):
        r = _run(
            f"""
            import numpy as np, torch
            from glnet.gpu.buffer import Buffer
            from glnet.gpu.context import GLContext
            from glnet.gpu.egl import query_devices
            from glnet.gpu.interop import CudaGLBuffer
            with GLContext.offscreen(cuda_device="cuda:{i}") as ctx:
                assert ctx.egl_device is not None, ctx.egl_device_why
                buf = Buffer(ctx, 64)
                with torch.cuda.device({i}), CudaGLBuffer(buf.glo, 64) as shared:
                    shared.write(torch.arange(16, dtype=torch.float32, device="cuda:{i}"))
                assert (buf.read(0, 64, np.float32) == np.arange(16)).all()
                buf.delete()
                print(ctx.egl_device, query_devices()[ctx.egl_device].cuda)
            """
        )
        assert r.returncode == 0, f"cuda:{i}: {r.stderr[-2000:]}"
