"""Stills bigger than one framebuffer: the frame cut into tiles, each drawn with an off-axis sub-frustum of
the one camera (:meth:`glnet.camera.Camera.tiled`), stitched row of tiles by row of tiles into a streamed PNG.

A tile is drawn into a framebuffer grown by a guard band of ``GUARD_PX`` on each side that stays inside the
full frame, then cropped: neurons whose centre lies just outside the tile but whose disc reaches into it are
drawn as in one big render (the renderers drop a point whose centre is outside the frame, as GL clips points).
Memory stays bounded by one row of tiles; the whole image is never held. The HUD, when asked for, is drawn
once, in the top-left tile, at that tile's scale. :class:`TileRenderer` is shared with display walls.
"""

from __future__ import annotations

import math
import re
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from .app import Visualization
from .camera import Camera, camera_from_spec
from .errors import InputError
from .gpu.context import GLContext, context_or_new
from .gpu.framebuffer import Framebuffer
from .progress import progress
from .render.frame import MAX_RADIUS_PX

if TYPE_CHECKING:
    from torch import nn

    from .capture import Trace
    from .render.scene import FrameStats

__all__ = [
    "GUARD_PX",
    "MAX_STILL_SIDE",
    "PngStream",
    "TileRenderer",
    "TiledStill",
    "check_still",
    "parse_grid",
    "parse_still_size",
    "render_tiled",
    "suggest_grid",
    "tile_rects",
    "tiles_option",
]

GUARD_PX = math.ceil(MAX_RADIUS_PX) + 2  # a disc's reach beyond its centre's pixel, and a pixel to spare
MAX_STILL_SIDE = 1 << 18  # pixels a side of a tiled still (PNG allows 2^31 - 1; this keeps rows sane)
_GRID_RE = re.compile(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*")


def parse_grid(text: str, what: str = "--tiles") -> tuple[int, int]:
    """``'4x4'`` as (columns, rows); InputError unless both are integers in 1..64."""
    m = _GRID_RE.fullmatch(text) if isinstance(text, str) else None
    if m is None or not (1 <= int(m[1]) <= 64 and 1 <= int(m[2]) <= 64):
        raise InputError(f"invalid {what} {text!r}: expected COLUMNSxROWS, each 1..64, e.g. 4x4")
    return int(m[1]), int(m[2])


def parse_still_size(text: str) -> tuple[int, int]:
    """A still's ``WxH``, up to ``MAX_STILL_SIDE`` a side (past one framebuffer only with tiles)."""
    m = _GRID_RE.fullmatch(text) if isinstance(text, str) else None
    if m is None or not (1 <= int(m[1]) <= MAX_STILL_SIDE and 1 <= int(m[2]) <= MAX_STILL_SIDE):
        raise InputError(
            f"invalid size {text!r}: expected WIDTHxHEIGHT, each 1..{MAX_STILL_SIDE}, e.g. 1280x720"
        )
    return int(m[1]), int(m[2])


def tiles_option(text: str | None, out: Path, pick: str | None) -> tuple[int, int] | None:
    """``snapshot --tiles``: the grid, None without it; a tiled still is a PNG and has no pick."""
    if text is None:
        return None
    if pick or out.suffix.lower() != ".png":
        raise InputError("--tiles writes a PNG (--out FILE.png) and works without --pick")
    return parse_grid(text)


def check_still(size: tuple[int, int], grid: tuple[int, int] | None, limit: int) -> None:
    """Untiled stills must fit one framebuffer: past ``limit`` the error names the --tiles that would do."""
    if grid is None and max(size) > limit:
        c, r = suggest_grid(size, limit)
        raise InputError(
            f"{size[0]}x{size[1]} is past this GPU's {limit}-pixel framebuffer: add --tiles {c}x{r} "
            "(or more) to render it tile by tile"
        )


def suggest_grid(size: tuple[int, int], limit: int, guard: int = GUARD_PX) -> tuple[int, int]:
    """The fewest columns and rows whose guarded tiles fit a ``limit``-pixel framebuffer side."""
    room = max(1, limit - 2 * guard)
    return max(1, -(-size[0] // room)), max(1, -(-size[1] // room))


def tile_rects(size: tuple[int, int], grid: tuple[int, int]) -> list[list[tuple[int, int, int, int]]]:
    """Rows (top first) of tile rectangles (x0, y0 from the top, w, h) that cover ``size`` exactly."""
    (width, height), (cols, rows) = size, grid
    if cols > width or rows > height:
        raise InputError(f"{cols}x{rows} tiles do not fit a {width}x{height} image (a tile needs a pixel)")
    xs = [round(i * width / cols) for i in range(cols + 1)]
    ys = [round(j * height / rows) for j in range(rows + 1)]
    return [[(xs[i], ys[j], xs[i + 1] - xs[i], ys[j + 1] - ys[j]) for i in range(cols)] for j in range(rows)]


class TileRenderer:
    """Draws rectangles of a virtual screen through one :class:`Visualization`; owns its framebuffers."""

    def __init__(self, vis: Visualization, full: tuple[int, int], *, guard: int = GUARD_PX) -> None:
        self.vis = vis
        self.full = (int(full[0]), int(full[1]))
        self.guard = int(guard)
        self._fbs: dict[tuple[int, int], Framebuffer] = {}
        self.last_ms = 0.0
        self.last_stats: FrameStats | None = None

    def guarded(self, rect: tuple[int, int, int, int]) -> tuple[tuple[int, int, int, int], int, int]:
        """``rect`` grown by the guard band, within the full frame, and where ``rect`` starts inside it."""
        x0, y0, w, h = rect
        fw, fh = self.full
        gx0, gy0 = max(0, x0 - self.guard), max(0, y0 - self.guard)
        gx1, gy1 = min(fw, x0 + w + self.guard), min(fh, y0 + h + self.guard)
        return (gx0, gy0, gx1 - gx0, gy1 - gy0), x0 - gx0, y0 - gy0

    def _framebuffer(self, w: int, h: int) -> Framebuffer:
        fb = self._fbs.get((w, h))
        if fb is None:
            if len(self._fbs) >= 4:  # edge tiles come in a few sizes; keep memory bounded all the same
                self.close()
            fb = self._fbs[(w, h)] = Framebuffer(self.vis.ctx, w, h, label="tile")
        return fb

    def render(
        self, camera: Camera, rect: tuple[int, int, int, int], *, hud: bool | Sequence[str] = False
    ) -> np.ndarray:
        """The pixels ``rect`` (x0, y0 from the top, w, h) of the full frame as (h, w, 4) uint8, top row
        first; ``hud`` lines are drawn at the guarded tile's top-left corner."""
        (gx, gy, gw, gh), dx, dy = self.guarded(rect)
        fb = self._framebuffer(gw, gh)
        cam = camera.tiled(self.full, (gx, gy, gw, gh))
        t0 = time.perf_counter()
        self.last_stats = self.vis.render(cam, fb, hud=hud, finish=True)
        self.last_ms = (time.perf_counter() - t0) * 1e3
        _, _, w, h = rect
        return fb.read_rgba()[dy : dy + h, dx : dx + w]

    def close(self) -> None:
        for fb in self._fbs.values():
            fb.delete()
        self._fbs.clear()


class PngStream:
    """Writes an 8-bit RGB PNG row band by row band (zlib-compressed as they come): never the whole image.

    A context manager; on an exception the partial file is removed, so no truncated PNG is left behind.
    """

    def __init__(self, path: str | Path, width: int, height: int, *, level: int = 6) -> None:
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: BinaryIO | None = self.path.open("wb")
        self._z = zlib.compressobj(level)
        self._f.write(b"\x89PNG\r\n\x1a\n")
        self._chunk(b"IHDR", struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0))

    def _chunk(self, kind: bytes, data: bytes) -> None:
        assert self._f is not None
        self._f.write(struct.pack(">I", len(data)) + kind + data)
        self._f.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF))

    def write(self, band: np.ndarray) -> None:
        """Append rows: (n, width, 3 or 4) uint8, top row first (alpha dropped)."""
        if band.ndim != 3 or band.shape[1] != self.width or band.dtype != np.uint8:
            raise ValueError(f"a band of shape {band.shape} does not fit a {self.width}-pixel-wide PNG")
        if self.rows + len(band) > self.height:
            raise ValueError("more rows than the PNG's height")
        raw = np.empty((len(band), 1 + 3 * self.width), np.uint8)
        raw[:, 0] = 0  # filter: none
        raw[:, 1:] = band[..., :3].reshape(len(band), -1)
        data = self._z.compress(raw.tobytes())
        if data:
            self._chunk(b"IDAT", data)
        self.rows += len(band)

    def close(self) -> None:
        if self._f is None:
            return
        try:
            if self.rows != self.height:
                raise ValueError(f"the PNG got {self.rows} of its {self.height} rows")
            self._chunk(b"IDAT", self._z.flush())
            self._chunk(b"IEND", b"")
        finally:
            self._f.close()
            self._f = None

    def __enter__(self) -> PngStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
            return
        if self._f is not None:
            self._f.close()
            self._f = None
        self.path.unlink(missing_ok=True)


@dataclass
class TiledStill:
    """What a tiled render wrote and what it took (the fields ``glnet snapshot --stats-json`` reports)."""

    path: Path
    size: tuple[int, int]
    grid: tuple[int, int]
    frame_ms: float  # all tiles' draw times together: one frame of the full size
    renderer: str
    gl_renderer: str
    neurons_drawn: int
    tile_ms: list[float] = field(default_factory=list)
    layer_neurons: list[int] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)  # top-5, for classifiers (explain.Prediction)
    renderer_why: str = ""

    @property
    def frame_times(self) -> list[float]:
        return self.tile_ms


def render_tiled(
    trace: Trace,
    out: str | Path,
    *,
    size: tuple[int, int],
    grid: tuple[int, int],
    camera: str | Camera | None = None,
    renderer: str = "auto",
    hud: bool = True,
    weights: bool = True,
    lod: bool = False,
    max_neurons: int | None = None,
    ctx: GLContext | None = None,
    model: nn.Module | None = None,
    labels: str | Sequence[str] | None = None,
    show_progress: bool = True,
) -> TiledStill:
    """Render a ``size`` still of ``trace`` as ``grid`` (columns, rows) tiles into the PNG ``out``."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise InputError(f"a tiled still is written as PNG: --out must end in .png, not {out.name!r}")
    rows = tile_rects(size, grid)
    vis = tiles = None
    with context_or_new(ctx) as ctx:
        largest = max(r[2] for row in rows for r in row), max(row[0][3] for row in rows)
        limit = ctx.max_texture_size
        if max(largest) + 2 * GUARD_PX > limit:
            c, r = suggest_grid(size, limit)
            raise InputError(
                f"{grid[0]}x{grid[1]} tiles of {size[0]}x{size[1]} are larger than this GPU's {limit}-pixel "
                f"framebuffer: use --tiles {max(c, grid[0])}x{max(r, grid[1])} or more"
            )
        try:
            vis = Visualization(
                ctx, trace, renderer=renderer, weights=weights, lod=lod, max_neurons=max_neurons,
                model=model, labels=labels,
            )  # fmt: skip
            cam = (
                camera
                if isinstance(camera, Camera)
                else camera_from_spec(camera, vis.layout, size[0] / size[1])
            )
            tiles = TileRenderer(vis, size)
            tiles.render(cam, rows[0][0])  # warm-up: uploads, program compiles
            warm_ms = tiles.last_ms
            times: list[float] = []
            aggregated: set[int] = set()
            bar = progress(grid[0] * grid[1], "glnet: tiles", unit="tile", enabled=show_progress)
            with PngStream(out, *size) as png, bar:
                for j, row in enumerate(rows):
                    band = np.empty((row[0][3], size[0], 3), np.uint8)
                    for i, rect in enumerate(row):
                        first = hud and i == 0 and j == 0
                        lines = vis.hud_lines(cam, warm_ms, tiles.last_stats) if first else False
                        img = tiles.render(cam, rect, hud=lines)
                        times.append(tiles.last_ms)
                        if tiles.last_stats is not None:
                            aggregated |= tiles.last_stats.aggregated
                        band[:, rect[0] : rect[0] + rect[2]] = img[..., :3]
                        bar.update()
                    png.write(band)
            per_layer = [s.grid[0] if s.index in aggregated else s.count for s in vis.layout.slabs]
            return TiledStill(
                out, tuple(size), tuple(grid), sum(times), vis.renderer, ctx.info.renderer, sum(per_layer),
                times, per_layer, vis.predictions, vis.scene.renderer_why,
            )  # fmt: skip
        finally:
            if tiles is not None:
                tiles.close()
            if vis is not None:
                vis.close()
