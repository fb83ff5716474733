"""Writing rendered frames to a video: H.264 .mp4, animated .gif, or a folder of numbered PNGs.

MP4 frames stream straight into imageio-ffmpeg's bundled ffmpeg (no system ffmpeg needed) and are
never held in memory, so recordings can be as long as the disk allows. ffmpeg's stderr goes to a file of its
own, read back into the error when it fails; this process's stderr is never touched.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO

import imageio_ffmpeg
import numpy as np
from PIL import Image

from glnet.errors import GlnetError, InputError

__all__ = ["VideoWriteError", "VideoWriter", "read_video_frames"]

_SUFFIXES = (".mp4", ".gif")


class VideoWriteError(GlnetError, OSError):
    """ffmpeg (or the file system) failed to write the video; the message carries ffmpeg's own words."""


def _is_folder(path: str | os.PathLike) -> bool:
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).suffix == ""


class VideoWriter:
    """Writes RGB frames to an .mp4 (H.264), a .gif, or numbered PNGs in a folder (no suffix or a
    trailing '/').

    Use as a context manager or call :meth:`close`; the first frame fixes the size. ``quality`` is
    imageio's 1..10 scale for H.264 (10 best; 7 means CRF 15, visually lossless for renders) and is
    ignored by the other outputs. GIF frames are palettised and kept (1 byte a pixel) until close, so
    GIFs suit short clips; Pillow merges identical consecutive GIF frames into one longer frame.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 30.0, *, quality: int = 7) -> None:
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
            raise InputError(f"fps must be a positive number, got {fps!r}")
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 10:
            raise InputError(f"video quality must be an integer in 1..10, got {quality!r}")
        self.path = Path(path)
        if _is_folder(path):
            self._kind = "png"
        elif self.path.suffix.lower() in _SUFFIXES:
            self._kind = self.path.suffix.lower()[1:]
        else:
            raise InputError(
                f"cannot record to {str(path)!r}: unknown suffix {self.path.suffix!r}; "
                "use .mp4, .gif, or a folder name (no suffix, or ending in '/') for PNG frames"
            )
        self.fps = float(fps)
        self.quality = quality
        self.frames = 0
        self._size: tuple[int, int] | None = None  # (height, width) as given by the first frame
        self._closed = False
        self._ffmpeg: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None  # ffmpeg's stderr
        self._failed = False  # ffmpeg failed and that was raised: no more frames, close() cleans up
        self._gif: list[Image.Image] = []
        folder = self.path if self._kind == "png" else self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            reason = err.strerror or err
            raise InputError(f"cannot create folder {str(folder)!r} for the recording: {reason}") from None
        if self._kind == "mp4":
            try:
                self._exe = imageio_ffmpeg.get_ffmpeg_exe()
            except RuntimeError as err:
                raise VideoWriteError(f"no ffmpeg to write {str(path)!r}: {err}") from None

    # ---- writing -------------------------------------------------------------------------------

    def write(self, frame: np.ndarray) -> None:
        """Append one HxWx3 or HxWx4 uint8 frame (alpha is dropped); ValueError if its size differs."""
        if self._closed:
            raise ValueError(f"VideoWriter for {str(self.path)!r} is closed")
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] not in (3, 4) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be an HxWx3 or HxWx4 uint8 array, got {frame.dtype} {frame.shape}")
        height, width = frame.shape[:2]
        if height == 0 or width == 0:
            raise ValueError(f"frame is empty: {frame.shape}")
        if self._size is None:
            self._size = (height, width)
        elif self._size != (height, width):
            raise ValueError(
                f"frame size changed from {self._size[1]}x{self._size[0]} to {width}x{height}; "
                "all frames of a video must have the first frame's size"
            )
        rgb = np.ascontiguousarray(frame[..., :3])
        if self._kind == "mp4":
            self._write_mp4(rgb)
        elif self._kind == "gif":
            # GIFs are assembled at close, so keep each frame palettised: a third of its RGB size.
            self._gif.append(Image.fromarray(rgb).quantize(256, method=Image.Quantize.FASTOCTREE))
        else:
            target = self.path / f"frame_{self.frames:06d}.png"
            try:
                Image.fromarray(rgb).save(target, compress_level=1)  # fast: these are intermediates
            except OSError as err:
                raise VideoWriteError(f"cannot write {str(target)!r}: {err}") from None
        self.frames += 1

    def _write_mp4(self, rgb: np.ndarray) -> None:
        if self._failed:
            raise VideoWriteError(f"cannot write more frames to {str(self.path)!r}: ffmpeg failed earlier")
        if self._ffmpeg is None:
            self._failed = True  # until ffmpeg is running
            self._start_ffmpeg(rgb.shape[1], rgb.shape[0])
            self._failed = False
        assert self._ffmpeg is not None and self._ffmpeg.stdin is not None
        try:
            self._ffmpeg.stdin.write(memoryview(rgb).cast("B"))
        except OSError:
            self._stop_ffmpeg()  # it has exited: wait for it so that its log is complete
            self._failed = True
            raise self._failure("ffmpeg stopped while writing") from None

    def _ffmpeg_command(self, width: int, height: int) -> list[str]:
        """imageio-ffmpeg's ``write_frames`` command line for raw RGB on stdin to H.264 in ``self.path``."""
        crf = int((1 - self.quality / 10.0) * 51)
        cmd = [self._exe, "-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{width}x{height}"]
        cmd += ["-pix_fmt", "rgb24", "-r", str(Fraction(self.fps).limit_denominator()), "-i", "-", "-an"]
        cmd += ["-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf), "-v", "error"]
        cmd += ["-movflags", "+faststart"]
        if width % 2 or height % 2:  # yuv420p needs even sides: add one black row/column
            cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
        return [*cmd, str(self.path)]

    def _start_ffmpeg(self, width: int, height: int) -> None:
        self._log = tempfile.TemporaryFile(prefix="glnet-ffmpeg-")
        # A session of its own: Ctrl-C in the terminal stops glnet, which then finishes the file.
        group = (
            {"creationflags": 0x00000200} if sys.platform.startswith("win") else {"start_new_session": True}
        )
        try:
            self._ffmpeg = subprocess.Popen(
                self._ffmpeg_command(width, height),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self._log,
                **group,
            )
        except OSError as err:
            raise VideoWriteError(f"cannot start ffmpeg to write {str(self.path)!r}: {err}") from None

    def _stop_ffmpeg(self) -> int | None:
        """Close ffmpeg's stdin and wait for it to finish the file; returns its exit status."""
        proc, self._ffmpeg = self._ffmpeg, None
        if proc is None:
            return None
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:  # it had already exited; the log says why
            pass
        return proc.wait()

    def _ffmpeg_message(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace")
        return " | ".join(line.strip() for line in text.splitlines() if line.strip())

    def _failure(self, what: str) -> VideoWriteError:
        message = self._ffmpeg_message() or "no message from ffmpeg"
        return VideoWriteError(f"{what} {str(self.path)!r}: {message}")

    # ---- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Finish the file (flush ffmpeg, or save the GIF); safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._kind == "mp4":
                self._close_mp4()
            elif self._kind == "gif" and self._gif:
                self._save_gif()
        finally:
            self._gif = []
            if self._log is not None:
                self._log.close()
                self._log = None

    def _close_mp4(self) -> None:
        if self._ffmpeg is None:
            return  # no frame written (no file, no error), or the failure was already raised
        status = self._stop_ffmpeg()
        # With log level "error", anything ffmpeg printed is an error; a missing file is one too.
        if status or self._ffmpeg_message() or not self.path.is_file() or self.path.stat().st_size == 0:
            raise self._failure("ffmpeg failed writing")

    def _save_gif(self) -> None:
        first, *rest = self._gif
        # GIF delays are in hundredths of a second; Pillow takes milliseconds and rounds to 10 ms.
        duration = max(20, int(round(1000.0 / self.fps, -1)))
        try:
            first.save(
                self.path,
                save_all=True,
                append_images=rest,
                duration=duration,
                loop=0,
                optimize=False,
                disposal=1,
            )
        except OSError as err:
            raise VideoWriteError(f"cannot write {str(self.path)!r}: {err}") from None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A writer dropped without close() must not leave an orphaned ffmpeg process behind.
        if getattr(self, "_ffmpeg", None) is not None:
            try:
                self._stop_ffmpeg()
            except Exception:  # nothing can be reported from a finaliser
                pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"VideoWriter({str(self.path)!r}, fps={self.fps:g}, frames={self.frames}, {state})"


def read_video_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield the frames of a video (anything ffmpeg reads) or a PNG folder as HxWx3 uint8 arrays."""
    path = Path(path)
    if path.is_dir():
        for file in sorted(path.glob("*.png")):
            with Image.open(file) as im:
                yield np.asarray(im.convert("RGB"))
        return
    if not path.is_file():
        raise InputError(f"video {str(path)!r} does not exist")
    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
        width, height = meta["size"]
        for raw in reader:
            yield np.frombuffer(raw, np.uint8).reshape(height, width, 3)
    finally:
        reader.close()
