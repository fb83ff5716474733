"""Jupyter: glnet.show's stills and videos, the in-cell fly-through driven by jupyter_rfb events, and
docs/quickstart.ipynb executed headless by nbclient in a real kernel."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import glnet
from glnet.colormap import lut
from glnet.errors import GLUnavailableError, InputError
from glnet.notebook import NotebookView, show, view

pytestmark = pytest.mark.gl
ROOT = Path(__file__).resolve().parent.parent
W, H = 320, 180
_COLOURS = {tuple(c) for c in lut()[:, :3][lut()[:, 3] > 0]}  # every colour a neuron can be drawn in


def neuron_mask(rgb: np.ndarray) -> np.ndarray:
    """Where a pixel holds exactly a colour of glnet's colour map: a neuron's disc, not text or background."""
    flat = rgb[..., :3].reshape(-1, 3)
    keys, inverse = np.unique(flat, axis=0, return_inverse=True)
    hit = np.array([tuple(k) in _COLOURS for k in keys])
    return hit[inverse.reshape(-1)].reshape(rgb.shape[:2])


def neuron_pixels(rgb: np.ndarray) -> int:
    return int(neuron_mask(rgb).sum())


def decode_png(data: bytes | str) -> np.ndarray:
    raw = base64.b64decode(data) if isinstance(data, str) else data
    with Image.open(io.BytesIO(raw)) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def _input() -> torch.Tensor:
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))


# ----------------------------------------------------------------------------------------------------------
# glnet.show
# ----------------------------------------------------------------------------------------------------------


def test_show_is_the_snapshot_of_the_model_as_an_inline_png(gl_ctx, tiny_net):
    """The still is an IPython Image holding exactly what render_snapshot draws for the same capture."""
    from IPython.display import Image as IPyImage

    x = _input()
    img = show(tiny_net, x, size=(W, H), hud=False)
    assert isinstance(img, IPyImage) and img.format == "png"
    assert "image/png" in img._repr_mimebundle_()[0]
    got = decode_png(img.data)
    assert got.shape == (H, W, 3)
    want = glnet.render_snapshot(glnet.capture(tiny_net, x), size=(W, H), hud=False, timed_frames=1)
    np.testing.assert_array_equal(got, want.image[..., :3])
    assert neuron_pixels(got) > 200  # the neurons, in the colour map's colours
    assert glnet.show is show  # the public name


def test_show_takes_a_trace_a_shape_or_nothing_and_says_what_is_wrong_in_one_line(gl_ctx, tiny_net):
    trace = glnet.capture(tiny_net, _input())
    from_trace = decode_png(show(trace, size=(W, H), hud=False).data)
    assert neuron_pixels(from_trace) > 200
    # a module without an input gets one shaped by its first layer (the test image, 224 x 224)
    assert glnet.notebook.default_input(tiny_net).shape == (1, 3, 224, 224)
    shaped = decode_png(show(tiny_net, (1, 3, 24, 24), size=(W, H), hud=False).data)
    assert neuron_pixels(shaped) > 100 and not np.array_equal(shaped, from_trace)
    with pytest.raises(InputError, match=r"nn\.Module, a Trace or a model name"):
        show(42)
    with pytest.raises(InputError, match="captured already"):
        show(trace, _input())
    with pytest.raises(InputError, match="cannot tell what input"):
        show(torch.nn.ReLU())


def test_show_with_seconds_embeds_an_mp4_of_the_tour(gl_ctx, tiny_net, tmp_path):
    from IPython.display import Video

    from glnet.record import read_video_frames, video_info

    vid = show(tiny_net, _input(), size=(W, H), seconds=1.0, fps=6)
    assert isinstance(vid, Video)
    html = vid._repr_html_()
    m = re.search(r'src="data:video/mp4;base64,([A-Za-z0-9+/=]+)"', html)
    assert m, html[:200]
    path = tmp_path / "tour.mp4"
    path.write_bytes(base64.b64decode(m.group(1)))
    info = video_info(path)
    assert info["frames"] == 6 and (info["width"], info["height"]) == (W, H)
    frames = list(read_video_frames(path))
    assert all(f.std() > 5 for f in frames)  # not blank
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 1  # the camera flew


def test_show_falls_back_to_an_animated_gif_without_an_mp4_encoder(gl_ctx, tiny_net, monkeypatch):
    import glnet.offline
    from glnet.record import VideoWriteError

    real = glnet.offline.render_tour

    def no_mp4(trace, out, **kw):
        if str(out).endswith(".mp4"):
            raise VideoWriteError("PyAV is needed to write 'show.mp4': no encoder")
        return real(trace, out, **kw)

    monkeypatch.setattr(glnet.offline, "render_tour", no_mp4)
    gif = show(tiny_net, _input(), size=(W, H), seconds=0.5, fps=6)
    assert gif.format == "gif"
    with Image.open(io.BytesIO(gif.data)) as im:
        assert im.format == "GIF" and im.n_frames == 3 and im.size == (W, H)
        assert np.asarray(im.convert("RGB")).std() > 5


# ----------------------------------------------------------------------------------------------------------
# glnet.view: the widget, driven the way jupyter_rfb drives it
# ----------------------------------------------------------------------------------------------------------


def _pointer(kind: str, x: float, y: float, button: int, buttons: tuple[int, ...]) -> dict:
    return {"type": kind, "x": x, "y": y, "button": button, "buttons": buttons, "modifiers": (),
            "timestamp": 0}  # fmt: skip


def _key(kind: str, key: str) -> dict:
    return {"type": kind, "key": key, "modifiers": (), "timestamp": 0}


async def _fly(view: NotebookView) -> None:
    w = view.widget
    w.handle_event({"type": "resize", "width": W, "height": H, "ratio": 1.0, "timestamp": 0})
    await asyncio.sleep(0.05)
    f0 = view.draw()
    assert f0.shape == (H, W, 4) and neuron_pixels(f0) > 200
    cam = view.viewer.camera
    pos0, rot0 = cam.position.copy(), cam.rotation.copy()

    # a drag looks around (yaw), as in the window
    w.handle_event(_pointer("pointer_down", 100, 90, 1, (1,)))
    for k in range(1, 6):
        w.handle_event(_pointer("pointer_move", 100 + 12 * k, 90, 0, (1,)))
    w.handle_event(_pointer("pointer_up", 160, 90, 1, ()))
    assert not np.allclose(cam.rotation, rot0) and np.allclose(cam.position, pos0)
    f1 = view.draw()
    assert np.abs(f1.astype(int) - f0).mean() > 1

    assert neuron_pixels(f1) > 200

    # hovering a neuron explains it (the window's GPU pick), drawn into the next frame
    ys, xs = np.nonzero(neuron_mask(f1))
    i = len(ys) // 2
    w.handle_event(_pointer("pointer_move", float(xs[i]), float(ys[i]), 0, ()))
    await asyncio.sleep(0.1)
    assert view.viewer.picked is not None
    f2 = view.draw()
    assert np.abs(f2.astype(int) - f1).mean() > 0.1  # the ring and the inspector

    # the wheel sets the speed (x1.25 a notch)
    speed = view.viewer.controller.speed
    for _ in range(4):
        w.handle_event({"type": "wheel", "x": 10, "y": 10, "dx": 0, "dy": 100, "buttons": (), "modifiers": (),
                        "timestamp": 0})  # fmt: skip
    assert view.viewer.controller.speed == pytest.approx(speed / 1.25**4)

    # W held flies forward (the Viewer's timer integrates it); the browser's ArrowUp does too
    fwd = cam.forward.copy()
    w.handle_event(_key("key_down", "w"))
    await asyncio.sleep(0.2)
    w.handle_event(_key("key_up", "w"))
    await asyncio.sleep(0.5)  # the glide to a stop
    moved = cam.position - pos0
    assert float(moved @ fwd) > 0.5 * np.linalg.norm(moved) > 0
    pos1 = cam.position.copy()
    w.handle_event(_key("key_down", "ArrowUp"))
    await asyncio.sleep(0.1)
    w.handle_event(_key("key_up", "ArrowUp"))
    await asyncio.sleep(0.5)
    assert float((cam.position - pos1) @ cam.forward) > 0
    f3 = view.draw()
    assert np.abs(f3.astype(int) - f2).mean() > 1

    # F11 is swallowed (a cell has no fullscreen); Esc closes the view, as it closes the window
    w.handle_event(_key("key_down", "F11"))
    await asyncio.sleep(0.05)
    assert not view.viewer.closed

    snap = view.snapshot()
    assert decode_png(snap.data).shape == (H, W, 3)
    w.handle_event(_key("key_down", "Escape"))
    await asyncio.sleep(0.05)
    assert view.viewer.closed and view.draw() is None


def test_view_in_a_cell_flies_with_the_windows_mouse_and_keys(gl_ctx, tiny_net):
    trace = glnet.capture(tiny_net, _input())

    async def main() -> None:  # a kernel runs an asyncio loop; the Viewer's timer needs one
        v = NotebookView(trace, model=tiny_net, size=(W, H))
        try:
            await _fly(v)
        finally:
            v.close()

    asyncio.run(main())


def test_view_outside_a_notebook_without_a_display_says_what_it_needs(tiny_net, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(GLUnavailableError, match=r"Jupyter kernel.*or a display"):
        view(tiny_net)


_WINDOW_SCRIPT = """
import json, sys, numpy as np, torch
sys.path.insert(0, sys.argv[1])
from conftest import TinyNet
import glnet
from glnet.window import Viewer

seen = {}
run = Viewer.run
def run_briefly(self, max_seconds=None):  # what the window shows, then close it instead of waiting for Esc
    seen["backend"], frame = self.backend, self.read_pixels()
    seen["size"], seen["lit"] = list(frame.shape[:2]), float((frame[..., :3].max(axis=2) > 60).mean())
    run(self, max_seconds=0.5)
Viewer.run = run_briefly
torch.manual_seed(0)
returned = glnet.view(TinyNet().eval(), torch.randn(1, 3, 32, 32), size=(320, 180))
print(json.dumps({"returned": returned, **seen}))
"""


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run (apt-get install xvfb)")
def test_view_outside_a_notebook_opens_the_window_when_there_is_a_display():
    sys.path.insert(0, str(Path(__file__).parent))
    from procs import run_group

    env = {k: v for k, v in os.environ.items() if k not in ("PYOPENGL_PLATFORM", "DISPLAY")}
    env["PYTHONPATH"] = str(ROOT)
    args = ["xvfb-run", "-a", "-s", "-screen 0 640x480x24", sys.executable, "-c", _WINDOW_SCRIPT]
    r = run_group([*args, str(ROOT / "tests")], env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["returned"] is None and out["backend"] == "glfw" and out["size"] == [180, 320]
    assert out["lit"] > 0.02  # the network, in a real window


# ----------------------------------------------------------------------------------------------------------
# docs/quickstart.ipynb, executed
# ----------------------------------------------------------------------------------------------------------


def _kernel_env(tmp: Path) -> dict[str, str]:
    """A JUPYTER_PATH under which 'python3' runs this interpreter: the installed spec when it already does,
    else one installed into ``tmp`` (never into the user's home)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
        exe = shutil.which(spec.argv[0])
        ok = exe is not None and os.path.realpath(exe) == os.path.realpath(sys.executable)
    except NoSuchKernel:
        ok = False
    if ok:
        return {}
    from ipykernel.kernelspec import install

    install(prefix=str(tmp), kernel_name="python3")
    return {"JUPYTER_PATH": str(tmp / "share" / "jupyter")}


def test_the_quickstart_notebook_runs_and_shows_the_network(gl_ctx, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    source = ROOT / "docs" / "quickstart.ipynb"
    nb = nbformat.read(source, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "stored with outputs"
    for k, v in _kernel_env(tmp_path / "kernel").items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("GLNET_CALIBRATE", "0")
    work = tmp_path / "run"
    work.mkdir()
    client = nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    )
    client.execute()

    pngs, videos, widgets = [], [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", out
            data = out.get("data", {})
            if "image/png" in data:
                pngs.append(decode_png(data["image/png"]))
            for m in re.finditer(r"data:video/mp4;base64,([A-Za-z0-9+/=]+)", data.get("text/html", "")):
                videos.append(base64.b64decode(m.group(1)))
            widgets += "application/vnd.jupyter.widget-view+json" in data
    # the snapshot, the picked neuron, the trained model, the view's snapshot: all of them the network
    assert len(pngs) >= 4
    for img in pngs:
        assert img.std() > 10 and neuron_pixels(img) > 500, "an image without the network's neurons"
    # the tour and the training recording, both real MP4s
    assert len(videos) >= 2
    from glnet.record import video_info

    for k, blob in enumerate(videos):
        p = tmp_path / f"v{k}.mp4"
        p.write_bytes(blob)
        assert video_info(p)["frames"] >= 8
    assert (work / "quickstart-train.mp4").is_file()
    assert widgets >= 1  # glnet.view's widget
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "139,338 neurons in 7 layers" in text and "12 steps, 12 frames recorded" in text
