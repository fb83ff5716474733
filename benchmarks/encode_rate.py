"""How fast does glnet's video writer encode? Frames/s at 1080p, 4K and 8K for each codec used at that size.

Feeds :class:`glnet.record.VideoWriter` synthetic frames that look like renders (a dark background, a few
hundred thousand coloured dots in slabs, shifted a little every frame like a moving camera) and times the
whole write-to-close: colour conversion, encoding and muxing on the writer's thread, as ``glnet record``
runs it. H.264 is measured where it is allowed (up to 4096x2304); HEVC and AV1 at every size, since above
that limit one of them is picked (the faster: ``glnet.record.LARGE_CODEC``).

    python benchmarks/encode_rate.py                      # ~ a few minutes on 2 cores
    python benchmarks/encode_rate.py --frames 8 --sizes 1920x1080 --json /tmp/enc.json
    glnet record resnet50 --tour flythrough --size 3840x2160 --seconds 4 --out t.mp4 --stats-json r4k.json
    python benchmarks/encode_rate.py --record-stats r4k.json      # embeds that run's render/encode rates
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from glnet.record import CODECS, VideoWriter, h264_fits, video_info  # noqa: E402

SCHEMA_VERSION = 1
SIZES = ((1920, 1080), (3840, 2160), (7680, 4320))


def render_like(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A frame like a render: dark blue-grey, slabs of coloured dots (2-3 px), a few bright ones."""
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), np.uint8)
    img[...] = (14, 16, 22)
    n = width * height // 30
    for k in range(5):  # slabs, nearer ones larger
        x0, x1 = int(width * (0.05 + 0.17 * k)), int(width * (0.2 + 0.17 * k))
        y0, y1 = int(height * (0.1 + 0.05 * k)), int(height * (0.85 - 0.05 * k))
        xs = rng.integers(x0, max(x0 + 1, x1 - 3), n // 5)
        ys = rng.integers(y0, max(y0 + 1, y1 - 3), n // 5)
        colours = (rng.random((n // 5, 3)) * np.array([255, 200, 120]) + 30).clip(0, 255).astype(np.uint8)
        for dy in range(2):
            for dx in range(2 + (k % 2)):
                img[ys + dy, xs + dx] = colours
    return img


def measure(width: int, height: int, codec: str, frames: int) -> dict[str, Any]:
    base = render_like(width, height)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        t0 = time.perf_counter()
        with VideoWriter(path, fps=30, codec=codec) as video:
            for i in range(frames):
                video.write(np.roll(base, (i * 3, i * 5), axis=(0, 1)))  # a slow pan
            t_written = time.perf_counter()
        total = time.perf_counter() - t0
        info = video_info(path)
        size = path.stat().st_size
    return {
        "width": width,
        "height": height,
        "codec": codec,
        "encoder": video.encoder,
        "frames": frames,
        "decoded_frames": info["frames"],
        "fps": round(frames / total, 3),
        "encoder_busy_fps": round(frames / video.encode_s, 3) if video.encode_s else None,
        "flush_s": round(total - (t_written - t0), 3),
        "seconds": round(total, 3),
        "bytes_per_frame": size // frames,
        "options": CODECS[codec][2],
        "crf": CODECS[codec][1],
    }


def machine() -> dict[str, Any]:
    import av

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_avg": [round(v, 2) for v in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pyav": av.__version__,
        "ffmpeg": av.library_versions.get("libavcodec"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=12, help="frames per case (default 12; 8K gets half)")
    ap.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES), metavar="WxH[,WxH...]")
    ap.add_argument("--codecs", default="h264,hevc,av1")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "encode_rate_cpu.json"))
    ap.add_argument(
        "--record-stats",
        nargs="*",
        default=[],
        metavar="FILE",
        help="glnet record --stats-json files to embed (render and encode rates of real renders)",
    )
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    results = []
    for w, h in sizes:
        for codec in args.codecs.split(","):
            if codec == "h264" and not h264_fits(w, h):
                continue
            frames = args.frames if w * h <= 3840 * 2160 else max(3, args.frames // 2)
            r = measure(w, h, codec, frames)
            print(
                f"{w}x{h} {codec:5s} ({r['encoder']}): {r['fps']:.2f} frames/s "
                f"({r['bytes_per_frame'] / 1e3:.0f} kB/frame)",
                flush=True,
            )
            results.append(r)
    records = []
    for f in args.record_stats:
        r = json.loads(Path(f).read_text(encoding="utf-8"))
        r.pop("frame_times", None)
        records.append(r)
    out = {"schema_version": SCHEMA_VERSION, "machine": machine(), "results": results}
    out["glnet_record"] = records
    p = Path(args.json)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
