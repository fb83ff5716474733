"""The code follows the data, as the README's "How it works" diagram draws it: each module imports only
the stages before its own (and the shared utilities), so the diagram and the import graph agree. The
trainer's side of a live session never loads OpenGL: the viewer process holds every GL context."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "glnet"

# anything may use these
UTILITIES = {
    "errors", "colormap", "data", "record", "inputs", "models",
    "_script", "_torchvision", "testimage", "procedural", "distributions", "progress", "sources",
}  # fmt: skip
TRAINER = {
    "live.tap", "live.handover", "live.stats", "live.session", "live.process", "live.ranks", "live",
}  # fmt: skip
VIEWER = {"live.viewer", "live.view", "live.upload", "live.ranges", "live.wall"}
# each stage of the diagram and the stages it may import (besides the utilities and itself)
ALLOWED: dict[str, set[str]] = {
    "capture": {"graph"},
    "graph": set(),  # the data-flow graph, part of the capture: it follows the forward pass capture runs
    "pipeline": {"capture"},
    "explain": {"capture"},
    "layout": {"capture"},
    "camera": {"layout"},
    "tour": {"camera", "layout"},  # authored and built-in tours: keyframes to a camera at any time
    "gpu": {"layout", "capture"},
    "render": {"explain", "gpu", "camera", "layout", "capture"},
    "app": {"explain", "render", "gpu", "camera", "tour", "layout", "capture"},
    # frame-exact offline video of a tour, and stills tiled past one framebuffer
    "offline": {"app", "render", "gpu", "camera", "tour", "layout", "capture"},
    "tiles": {"app", "render", "gpu", "camera", "layout", "capture"},
    "window": {"app", "explain", "render", "gpu", "camera", "tour", "layout", "capture"},
    # a display wall over torch.distributed: the spec, camera broadcast, group and stitching, and its loop
    "wall": {"window", "offline", "tiles", "app", "render", "gpu", "camera", "tour", "layout", "capture"},
    # a live wall's ranks reuse tiles.py's renderer and wall.py's spec, camera state, group and stitching
    "viewer": {"app", "window", "tiles", "wall"}
    | {"explain", "render", "gpu", "camera", "tour", "layout", "capture"},
}
# on top: may use everything public
TOP = {
    "cli", "cli_info", "cli_inspect", "cli_record", "cli_wall", "train", "bench", "integrations",
    "notebook", "__init__", "__main__",
}  # fmt: skip


def _module(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts) or "__init__"


def _imports(path: Path) -> set[str]:
    """Every glnet module ``path`` imports, at the top or inside functions."""
    mod = _module(path)
    pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    if mod == "__init__":
        pkg = []
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = pkg[: len(pkg) - node.level + 1]
            if node.module:
                out.add(".".join([*base, node.module]))
            else:
                out.update(".".join([*base, a.name]) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("glnet."):
            out.add(node.module.removeprefix("glnet."))
    return out


def _stage(mod: str) -> str:
    if mod in TRAINER:
        return "trainer"
    if mod in VIEWER:
        return "viewer"
    return mod.split(".")[0]


def _allowed(src: str, dst: str) -> bool:
    s, d = _stage(src), _stage(dst)
    if s in TOP or d in UTILITIES or s == d:
        return True
    if s == "trainer":
        # no GL: the capture, the values buffer's layout, the display check, camera specs, the entries of the
        # viewer and of a live wall's ranks (both import GL only inside their functions)
        allowed = ("capture", "camera", "gpu.cloud", "gpu.context", "live.viewer", "live.wall")
        return dst in allowed or d == "trainer"
    if s == "viewer" and d == "trainer":
        return dst == "live.handover"  # the slot and message types both sides share
    return d in ALLOWED.get(s, set())


def test_every_import_goes_down_the_data_flow():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        src = _module(path)
        for dst in sorted(_imports(path)):
            if not _allowed(src, dst):
                bad.append(f"{src} -> {dst}")
    assert not bad, "imports against the data flow: " + ", ".join(bad)


def test_readme_diagram_names_every_stage():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    diagram = text.split("## How it works", 1)[1].split("```")[1]
    for name in ("capture.py", "layout.py", "gpu/", "render/", "camera.py", "app.py", "window.py",
                 "live/tap.py", "live/handover.py", "live/session.py", "live/viewer.py", "live/view.py",
                 "live/upload.py", "cli.py", "train.py", "bench/"):  # fmt: skip
        assert name in diagram, name


def test_no_module_is_over_600_lines():
    long = {
        str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 620
    }
    assert not long, long


@pytest.mark.gl
def test_a_live_session_never_loads_opengl_in_the_trainer():
    code = (
        "import sys, torch\n"
        f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        "from conftest import TinyNet\n"
        "from glnet.live import Live\n"
        "m = TinyNet().train(); x = torch.randn(4, 3, 16, 16)\n"
        "with Live(m, torch.randn(1, 3, 16, 16), headless=True, size=(64, 48), say=lambda s: None) as v:\n"
        "    for _ in range(3):\n"
        "        m(x).sum().backward(); v.step(loss=1.0)\n"
        "assert v.stats.frames >= 1, v.stats\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('OpenGL', 'vispy', 'glfw')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
