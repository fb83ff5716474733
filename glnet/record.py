"""Writing rendered frames to a video (.mp4 through PyAV: H.264, HEVC or AV1), an animated .gif, or a folder
of numbered PNGs.

MP4 frames are encoded in-process by PyAV's bundled encoders (libx264, libx265, SVT-AV1; no ffmpeg binary,
no system packages) and never held in memory beyond a short queue, so recordings can be as long as the disk
allows. Encoding (and PNG/GIF compression) runs on a thread of its own behind a bounded queue, so the
caller renders frame n+1 while frame n is encoded; an error on that thread is raised by the next
:meth:`VideoWriter.write` or by :meth:`VideoWriter.close`. The encoders' own chatter is kept off stderr.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from PIL import Image

from glnet.errors import GlnetError, InputError

__all__ = [
    "CODECS",
    "H264_MAX",
    "VideoWriteError",
    "VideoWriter",
    "choose_codec",
    "h264_fits",
    "read_video_frames",
    "video_info",
]

_SUFFIXES = (".mp4", ".gif")
H264_MAX = (4096, 2304)  # H.264 level 5.2's largest 16:9 frame (36,864 macroblocks), and its widest side
# codec name -> (encoders to try in order, default CRF, encoder options): the presets trade size for speed,
# since CPU encoding of 4K/8K is the recording's bottleneck (there is no hardware encoder to lean on)
CODECS: dict[str, tuple[tuple[str, ...], int, dict[str, str]]] = {
    "h264": (("libx264",), 18, {"preset": "fast"}),
    "hevc": (("libx265",), 22, {"preset": "fast", "x265-params": "log-level=error"}),
    "av1": (("libsvtav1", "libaom-av1"), 32, {"preset": "10"}),
}
# above H.264's limit: whichever of the two encodes 8K faster here (benchmarks/encode_rate.py)
LARGE_CODEC = "av1"
_QUEUE = 3  # frames waiting for the encoder: enough to overlap, little memory at 8K (100 MB a frame)


class VideoWriteError(GlnetError, OSError):
    """The encoder (or the file system) failed to write the video; the message carries its own words."""


def _is_folder(path: str | os.PathLike) -> bool:
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).suffix == ""


def h264_fits(width: int, height: int) -> bool:
    """Whether H.264 (level 5.2) can encode a ``width`` x ``height`` frame."""
    mbs = math.ceil(width / 16) * math.ceil(height / 16)
    return mbs <= (H264_MAX[0] // 16) * (H264_MAX[1] // 16) and max(width, height) <= H264_MAX[0]


def _encoder(name: str) -> str | None:
    """The first encoder this PyAV build has for codec ``name``, or None."""
    import av

    for enc in CODECS[name][0]:
        try:
            av.codec.Codec(enc, "w")
            return enc
        except Exception:  # not in this build
            continue
    return None


def choose_codec(width: int, height: int, codec: str | None = None) -> str:
    """The codec for a ``width`` x ``height`` video: ``codec`` if given, else H.264 up to 4096x2304 and
    HEVC or AV1 above (whichever this build has, AV1 first)."""
    if codec is not None:
        if codec not in CODECS:
            raise InputError(f"unknown codec {codec!r}: use one of {', '.join(CODECS)}")
        if _encoder(codec) is None:
            raise InputError(f"this PyAV build has no {codec} encoder ({', '.join(CODECS[codec][0])})")
        if codec == "h264" and not h264_fits(width, height):
            raise InputError(
                f"H.264 cannot encode {width}x{height}: its limit is {H264_MAX[0]}x{H264_MAX[1]}; "
                "use --codec hevc or av1"
            )
        return codec
    if h264_fits(width, height):
        return "h264"
    for name in (LARGE_CODEC, "hevc", "av1"):
        if _encoder(name) is not None:
            return name
    raise VideoWriteError(f"no HEVC or AV1 encoder in this PyAV build for a {width}x{height} video")


class VideoWriter:
    """Writes RGB frames to an .mp4, a .gif, or numbered PNGs in a folder (no suffix or a trailing '/').

    Use as a context manager or call :meth:`close`; the first frame fixes the size. For .mp4, ``codec``
    (h264, hevc, av1) forces one, otherwise :func:`choose_codec` picks by size; ``crf`` is the encoder's
    constant-rate factor (lower is better). Odd sides are padded to even with a black row or column
    (yuv420p needs even sides); :attr:`size` is the encoded size. GIF frames are palettised and kept until
    close, so GIFs suit short clips.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float = 30.0,
        *,
        codec: str | None = None,
        crf: int | None = None,
        queue_size: int = _QUEUE,
    ) -> None:
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
            raise InputError(f"fps must be a positive number, got {fps!r}")
        if crf is not None and (isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 63):
            raise InputError(f"crf must be an integer in 0..63, got {crf!r}")
        if codec is not None and codec not in CODECS:
            raise InputError(f"unknown codec {codec!r}: use one of {', '.join(CODECS)}")
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
        self.crf = crf
        self.codec: str | None = codec if self._kind == "mp4" else self._kind  # the one used, once chosen
        self.encoder: str | None = None  # e.g. libx264
        self.frames = 0  # frames accepted by write()
        self.encoded = 0  # frames the thread has finished
        self.encode_s = 0.0  # seconds the thread spent encoding (its busy time)
        self.size: tuple[int, int] | None = None  # (width, height) as encoded
        self._shape: tuple[int, int] | None = None  # (height, width) as given by the first frame
        self._closed = False
        self._error: BaseException | None = None
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=max(1, queue_size))
        self._thread: threading.Thread | None = None
        self._container: Any = None
        self._stream: Any = None
        self._gif: list[Image.Image] = []
        folder = self.path if self._kind == "png" else self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            reason = err.strerror or err
            raise InputError(f"cannot create folder {str(folder)!r} for the recording: {reason}") from None
        if self._kind == "mp4":
            try:
                import av  # noqa: F401
            except ImportError as err:
                raise VideoWriteError(f"PyAV is needed to write {str(path)!r}: {err}") from None

    # ---- writing -------------------------------------------------------------------------------

    def write(self, frame: np.ndarray) -> None:
        """Queue one HxWx3 or HxWx4 uint8 frame (alpha dropped; copied, so the caller may reuse it);
        ValueError if its size differs, VideoWriteError if the encoder has failed."""
        if self._closed:
            raise ValueError(f"VideoWriter for {str(self.path)!r} is closed")
        self._raise_failure()
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] not in (3, 4) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be an HxWx3 or HxWx4 uint8 array, got {frame.dtype} {frame.shape}")
        height, width = frame.shape[:2]
        if height == 0 or width == 0:
            raise ValueError(f"frame is empty: {frame.shape}")
        if self._shape is None:
            self._start(width, height)
        elif self._shape != (height, width):
            raise ValueError(
                f"frame size changed from {self._shape[1]}x{self._shape[0]} to {width}x{height}; "
                "all frames of a video must have the first frame's size"
            )
        rgb = np.ascontiguousarray(frame[..., :3]) if frame.shape[2] == 4 else frame.copy()
        while True:  # bounded: wait for the encoder, but never past its failure
            try:
                self._queue.put(rgb, timeout=0.1)
                break
            except queue.Full:
                self._raise_failure()
        self.frames += 1

    def _start(self, width: int, height: int) -> None:
        self._shape = (height, width)
        self.size = (width + width % 2, height + height % 2) if self._kind == "mp4" else (width, height)
        if self._kind == "mp4":
            self._open_mp4(*self.size)
        self._thread = threading.Thread(target=self._work, name=f"glnet-encode-{self.path.name}", daemon=True)
        self._thread.start()

    def _open_mp4(self, width: int, height: int) -> None:
        import av

        self.codec = choose_codec(width, height, self.codec)
        self.encoder = _encoder(self.codec)
        _, default_crf, options = CODECS[self.codec]
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints to stderr itself: errors only
        try:
            self._container = av.open(str(self.path), mode="w", format="mp4")
        except (OSError, av.FFmpegError) as err:
            raise VideoWriteError(f"cannot write {str(self.path)!r}: {_words(err)}") from None
        try:
            rate = Fraction(self.fps).limit_denominator(1001)
            stream = self._container.add_stream(self.encoder, rate=rate)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.time_base = 1 / rate
            opts = dict(options)
            opts["crf"] = str(default_crf if self.crf is None else self.crf)
            stream.options = opts
            cc = stream.codec_context
            cc.colorspace, cc.color_primaries, cc.color_trc = 1, 1, 1  # BT.709, as the frames are converted
            cc.color_range = 1  # limited ("TV") range, what players expect of yuv420p
            if self.codec == "hevc":
                cc.codec_tag = "hvc1"  # the tag Apple players need for HEVC in MP4
            self._stream = stream
        except BaseException as err:
            self._container.close()
            self._container = None
            if isinstance(err, (OSError, av.FFmpegError, ValueError)):
                what = f"cannot set up {self.encoder} for {str(self.path)!r}"
                raise VideoWriteError(f"{what}: {_words(err)}") from None
            raise

    def _work(self) -> None:
        """The encoder thread: frames off the queue until the end marker, then the encoder's flush."""
        try:
            while True:
                rgb = self._queue.get()
                if rgb is None:
                    break
                if self._error is not None:
                    continue  # drain: write() raises the failure
                t0 = time.perf_counter()
                self._encode(rgb)
                self.encode_s += time.perf_counter() - t0
                self.encoded += 1
            if self._error is None and self._stream is not None:
                t0 = time.perf_counter()
                self._container.mux(self._stream.encode(None))
                self.encode_s += time.perf_counter() - t0
        except BaseException as err:  # surfaced on the caller's thread
            self._error = err
            if self._stream is not None:  # keep what was encoded: a shorter file, still playable
                try:
                    self._container.mux(self._stream.encode(None))
                except Exception:
                    pass
            while True:  # unblock a write() waiting on a full queue
                try:
                    if self._queue.get_nowait() is None:
                        break
                except queue.Empty:
                    break

    def _encode(self, rgb: np.ndarray) -> None:
        n = self.encoded
        if self._kind == "mp4":
            import av

            w, h = self.size or (0, 0)
            if rgb.shape[:2] != (h, w):  # odd side: one black row/column more
                padded = np.zeros((h, w, 3), np.uint8)
                padded[: rgb.shape[0], : rgb.shape[1]] = rgb
                rgb = padded
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709")
            frame.pts = n
            self._container.mux(self._stream.encode(frame))
        elif self._kind == "gif":
            self._gif.append(Image.fromarray(rgb).quantize(256, method=Image.Quantize.FASTOCTREE))
        else:
            Image.fromarray(rgb).save(self.path / f"frame_{n:06d}.png", compress_level=1)

    def _raise_failure(self) -> None:
        err = self._error
        if err is None:
            return
        if isinstance(err, VideoWriteError):
            raise err
        raise VideoWriteError(f"cannot write {str(self.path)!r}: {_words(err)}") from None

    # ---- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Finish the file (flush the encoder, or save the GIF); safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._thread is not None:
                while self._thread.is_alive():  # the end marker; a failed thread has stopped taking frames
                    try:
                        self._queue.put(None, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                self._thread.join()
            if self._container is not None:
                container, self._container = self._container, None
                try:
                    container.close()
                except Exception as err:
                    self._error = self._error or err
            self._raise_failure()
            if self._kind == "gif" and self._gif:
                self._save_gif()
        finally:
            self._gif = []

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
        if exc_type is None:
            self.close()
            return
        try:  # already failing (Ctrl-C included): finish what was written, keep the first error
            self.close()
        except VideoWriteError:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        codec = f", {self.codec}" if self.codec else ""
        return f"VideoWriter({str(self.path)!r}, fps={self.fps:g}{codec}, frames={self.frames}, {state})"


def _words(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text


def video_info(path: str | os.PathLike) -> dict[str, Any]:
    """A video's codec, size, frame rate and frame count (counted by decoding), read with PyAV."""
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(f"video {str(path)!r} does not exist")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return {
            "codec": stream.codec_context.codec.canonical_name,  # the format's name: av1, not libdav1d
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "fps": float(stream.average_rate or stream.guessed_rate or 0),
            "frames": frames,
            "pix_fmt": stream.codec_context.pix_fmt,
        }


def read_video_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield the frames of a video (anything FFmpeg reads) or a PNG folder as HxWx3 uint8 arrays."""
    path = Path(path)
    if path.is_dir():
        for file in sorted(path.glob("*.png")):
            with Image.open(file) as im:
                yield np.asarray(im.convert("RGB"))
        return
    if not path.is_file():
        raise InputError(f"video {str(path)!r} does not exist")
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            space = "ITU709" if frame.colorspace == 1 else None
            yield frame.reformat(format="rgb24", src_colorspace=space).to_ndarray()
