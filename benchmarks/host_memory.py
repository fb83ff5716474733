"""How much host memory does a big cloud cost? Peak RSS while building, uploading and drawing it.

Builds a synthetic cloud of ``--points`` neurons (float32 torch values, one tensor per layer, laid out by
:func:`glnet.layout.build_layout`), then uploads it (colour ranges, :meth:`NeuronCloud.set_values`,
``flush``) and draws one frame, and reports the peak resident set of each phase in bytes per neuron. The
values themselves are 4 bytes a neuron; everything above that is what glnet (and the driver) add. On a
software rasterizer (llvmpipe) the GL buffer is host memory too: another 4 bytes a neuron that a GPU keeps
in device memory, reported apart.

    python benchmarks/host_memory.py                             # 1e8 neurons, a minute on 2 cores
    python benchmarks/host_memory.py --points 3e7 --grids convnet --json /tmp/host_memory.json

The peak is the kernel's high-water mark (``VmHWM``), reset before each phase where Linux allows it
(``/proc/self/clear_refs``), else ``resource.getrusage``'s lifetime peak. ``tracemalloc`` adds the peak
of Python and NumPy allocations in the upload (torch's allocator is not traced).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from glnet.gpu.context import configure_platform  # noqa: E402

configure_platform(headless=True)

import torch  # noqa: E402

from glnet.bench.workloads import parse_points, synthetic_grids  # noqa: E402
from glnet.camera import named_camera  # noqa: E402
from glnet.colormap import robust_range  # noqa: E402
from glnet.gpu.cloud import NeuronCloud  # noqa: E402
from glnet.gpu.context import GLContext  # noqa: E402
from glnet.gpu.framebuffer import Framebuffer  # noqa: E402
from glnet.layout import build_layout  # noqa: E402
from glnet.render.scene import SceneRenderer  # noqa: E402

SCHEMA_VERSION = 1
MAP = 1024  # the big grids' feature maps are MAP x MAP


def big_grids(points: int, channels: int = 40) -> list[tuple[str, tuple[int, int, int]]]:
    """Layers of ``channels`` MAP x MAP maps (160 MiB each at 40: above llvmpipe's 128 MiB binding limit),
    then the remainder as one vector layer: exactly ``points`` neurons."""
    grids, left, k = [], points, 0
    while left >= MAP * MAP:
        c = min(channels, left // (MAP * MAP))
        grids.append((f"big{k}", (c, MAP, MAP)))
        left -= c * MAP * MAP
        k += 1
    if left:
        grids.append(("fc", (left, 1, 1)))
    return grids


def _rss() -> int:
    """Resident set now, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak() -> int:
    """The high-water mark of the resident set, bytes (since the last reset where that works)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _phase(name: str, fn: Callable[[], Any], out: dict[str, Any]) -> Any:
    before = _rss()
    reset = _reset_peak()
    t0 = time.perf_counter()
    result = fn()
    out[name] = {
        "seconds": round(time.perf_counter() - t0, 3),
        "rss_before": before,
        "rss_after": _rss(),
        "peak": _peak(),
        "peak_reset": reset,
    }
    return result


def measure(points: int, grids_kind: str, size: tuple[int, int], renderer: str) -> dict[str, Any]:
    grids = big_grids(points) if grids_kind == "big" else synthetic_grids(points)
    ctx = GLContext.offscreen()
    phases: dict[str, Any] = {}
    base = _rss()
    layout = build_layout(grids)
    gen = torch.Generator().manual_seed(0)
    values = _phase("values", lambda: [torch.randn(g, generator=gen) for _, g in grids], phases)
    cloud = _phase("buffers", lambda: NeuronCloud(ctx, layout, label="host_memory"), phases)
    scene = SceneRenderer(ctx, cloud, renderer)
    fb = Framebuffer(ctx, *size)
    try:
        tracemalloc.start()

        ranges = _phase("ranges", lambda: [robust_range(v) for v in values], phases)

        def upload() -> None:
            cloud.set_values(values, ranges)
            cloud.flush()
            from OpenGL import GL

            GL.glFinish()

        _phase("upload", upload, phases)
        _, traced = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        cam = named_camera("overview", layout, size[0] / size[1])
        stats = _phase("draw", lambda: scene.render(cam, fb, finish=True), phases)
        image = fb.read_rgba()
    finally:
        fb.delete()
        scene.close()
        cloud.close()
        ctx.close()
    n = layout.count
    values_bytes = sum(v.numel() * v.element_size() for v in values)
    peak = max(p["peak"] for p in phases.values())
    for p in phases.values():  # what the phase held at its peak beyond what it started with
        p["transient_per_neuron"] = round((p["peak"] - p["rss_before"]) / n, 3)
    gl_host = cloud.nbytes if ctx.info.software else 0  # llvmpipe's "device" memory is host memory
    return {
        "schema_version": SCHEMA_VERSION,
        "points": n,
        "grids": grids_kind,
        "layers": len(grids),
        "largest_layer_bytes": max(s.count for s in layout.slabs) * 4,
        "max_ssbo_block_size": ctx.info.max_ssbo_block_size,
        "gl_renderer": ctx.info.renderer,
        "renderer": stats.renderer,
        "neurons_drawn": stats.neurons_drawn,
        "lit_pixels": int((image[..., :3] != image[0, 0, :3]).any(-1).sum()),
        "baseline_rss": base,
        "values_bytes": values_bytes,
        "gl_buffer_in_host_bytes": gl_host,
        "peak_rss": peak,
        "peak_bytes_per_neuron": round((peak - base) / n, 3),
        "peak_above_values_per_neuron": round((peak - base - values_bytes) / n, 3),
        "glnet_copies_per_neuron": round((peak - base - values_bytes - gl_host) / n, 3),
        "upload_traced_peak_bytes": traced,
        "phases": phases,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", default="1e8", help="neurons in the cloud (default 1e8)")
    ap.add_argument(
        "--grids", choices=("big", "convnet"), default="big", help="MAP x MAP maps or convnet slabs"
    )
    ap.add_argument("--size", default="640x360", help="frame size WxH")
    ap.add_argument("--renderer", default="compute", choices=("instanced", "compute"))
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args(argv)
    (points,) = parse_points(args.points)
    w, h = (int(v) for v in args.size.lower().split("x"))
    r = measure(points, args.grids, (w, h), args.renderer)
    gib = 1 << 30
    print(
        f"{r['points']:,} neurons in {r['layers']} layers ({r['gl_renderer']}, {r['renderer']}): "
        f"peak RSS {r['peak_rss'] / gib:.2f} GiB, {r['peak_bytes_per_neuron']:.2f} B/neuron above the "
        f"baseline ({r['values_bytes'] / r['points']:.0f} of them the torch values"
        + (", 4 the driver's GL buffer in host memory" if r["gl_buffer_in_host_bytes"] else "")
        + f"); glnet's own copies {r['glnet_copies_per_neuron']:.2f} B/neuron"
    )
    for name, p in r["phases"].items():
        print(
            f"  {name:7s} {p['seconds']:7.2f} s  peak {p['peak'] / gib:6.2f} GiB  "
            f"RSS {p['rss_before'] / gib:.2f} -> {p['rss_after'] / gib:.2f} GiB  "
            f"transient {p['transient_per_neuron']:5.2f} B/neuron"
        )
    if args.json:
        args.json.write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
