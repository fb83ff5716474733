"""glnet.record: frames into .mp4 (ffmpeg), .gif and PNG folders, and reading them back."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from glnet.errors import InputError
from glnet.record import VideoWriteError, VideoWriter, read_video_frames

W, H, SQUARE = 96, 64, 16


def moving_square(n: int, width: int = W, height: int = H) -> Iterator[np.ndarray]:
    """Frames of a white square on dark blue moving right by 6 px a frame; frame i's square starts at 6i+8."""
    for i in range(n):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 2] = 60
        x = 8 + 6 * i
        frame[24 : 24 + SQUARE, x : x + SQUARE] = 255
        yield frame


def square_left_edge(frame: np.ndarray) -> int:
    """Column where the white square starts in a decoded frame (compression may blur it slightly)."""
    bright = frame[24 + SQUARE // 2, :, :].min(axis=1) > 128
    return int(np.argmax(bright))


@pytest.mark.parametrize("name", ["clip.mp4", "clip.gif", "frames", "frames/"])
def test_frames_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / "out" / name if not name.endswith("/") else Path(f"{tmp_path}/out/{name}")
    with VideoWriter(path, fps=12) as video:
        for frame in moving_square(10):
            video.write(frame)
        assert video.frames == 10
    assert video.path == Path(path)
    decoded = list(read_video_frames(path))
    assert len(decoded) == 10
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in decoded)
    assert [square_left_edge(f) for f in decoded] == [8 + 6 * i for i in range(10)]
    tolerance = {"mp4": 12, "gif": 12}.get(Path(name).suffix[1:], 0)
    for got, want in zip(decoded, moving_square(10), strict=True):
        assert np.abs(got.astype(int) - want.astype(int)).mean() <= tolerance


def test_png_folder_has_numbered_files(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "pngs") as video:
        for frame in moving_square(3):
            video.write(frame)
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == [
        "frame_000000.png",
        "frame_000001.png",
        "frame_000002.png",
    ]


def test_mp4_is_h264_and_keeps_fps(tmp_path: Path) -> None:
    import imageio_ffmpeg

    path = tmp_path / "clip.mp4"
    with VideoWriter(path, fps=25) as video:
        for frame in moving_square(5):
            video.write(frame)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    reader.close()
    assert meta["codec"].startswith("h264")
    assert meta["fps"] == pytest.approx(25)
    assert meta["size"] == (W, H)


def test_alpha_is_dropped(tmp_path: Path) -> None:
    frames = [np.dstack([f, np.full((H, W), 7, np.uint8)]) for f in moving_square(2)]
    with VideoWriter(tmp_path / "rgba") as video:
        for frame in frames:
            video.write(frame)
    decoded = list(read_video_frames(tmp_path / "rgba"))
    assert np.array_equal(decoded[1], frames[1][..., :3])


def test_odd_sizes_are_padded_for_h264(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    with VideoWriter(path) as video:
        for frame in moving_square(3, width=W - 1, height=H - 1):
            video.write(frame)
    decoded = list(read_video_frames(path))
    assert len(decoded) == 3 and decoded[0].shape == (H, W, 3)
    assert [square_left_edge(f) for f in decoded] == [8, 14, 20]


@pytest.mark.parametrize("name", ["a.mp4", "a.gif", "a"])
def test_size_change_is_an_error(tmp_path: Path, name: str) -> None:
    with VideoWriter(tmp_path / name) as video:
        video.write(np.zeros((H, W, 3), np.uint8))
        with pytest.raises(ValueError, match="size changed"):
            video.write(np.zeros((H, W + 2, 3), np.uint8))
        video.write(np.zeros((H, W, 4), np.uint8))  # same size, with alpha: fine
    assert video.frames == 2


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((H, W), np.uint8),
        np.zeros((H, W, 2), np.uint8),
        np.zeros((H, W, 3), np.float32),
        np.zeros((0, W, 3), np.uint8),
    ],
)
def test_bad_frames_are_rejected(tmp_path: Path, bad: np.ndarray) -> None:
    with VideoWriter(tmp_path / "a.gif") as video, pytest.raises(ValueError):
        video.write(bad)


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    video = VideoWriter(tmp_path / "a.mp4")
    video.write(next(moving_square(1)))
    video.close()
    size = (tmp_path / "a.mp4").stat().st_size
    video.close()
    assert (tmp_path / "a.mp4").stat().st_size == size > 0
    with pytest.raises(ValueError, match="closed"):
        video.write(next(moving_square(1)))


def test_closing_without_frames_writes_nothing(tmp_path: Path) -> None:
    for name in ("a.mp4", "a.gif"):
        VideoWriter(tmp_path / name).close()
        assert not (tmp_path / name).exists()


def test_parent_folders_are_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "clip.mp4"
    with VideoWriter(path) as video:
        video.write(next(moving_square(1)))
    assert path.is_file()


def test_unknown_suffix_and_bad_options_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\.avi"):
        VideoWriter(tmp_path / "clip.avi")
    for fps in (0, -1, float("nan"), float("inf")):
        with pytest.raises(InputError, match="fps"):
            VideoWriter(tmp_path / "clip.mp4", fps=fps)
    for quality in (0, 11, 5.5):
        with pytest.raises(InputError, match="quality"):
            VideoWriter(tmp_path / "clip.mp4", quality=quality)  # type: ignore[arg-type]


def test_ffmpeg_errors_carry_ffmpegs_message(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "taken.mp4"
    target.mkdir()  # ffmpeg cannot open a folder as its output file
    with pytest.raises(OSError, match="Is a directory") as info:  # by write() or close()
        with VideoWriter(target) as video:
            for frame in moving_square(50, width=640, height=480):
                video.write(frame)
    assert isinstance(info.value, VideoWriteError)
    assert "\n" not in str(info.value)
    assert "Is a directory" not in capfd.readouterr().err  # captured, not printed


def test_read_video_frames_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        list(read_video_frames(tmp_path / "nope.mp4"))


def test_writing_a_video_leaves_this_process_stderr_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ffmpeg gets a log file of its own: fd 2 is never redirected, not even briefly; sys.stderr stays."""
    real_dup2 = os.dup2
    redirected: list[int] = []

    def dup2(fd: int, fd2: int, inheritable: bool = True) -> int:
        if fd2 == 2:
            redirected.append(fd)
        return real_dup2(fd, fd2, inheritable)

    monkeypatch.setattr(os, "dup2", dup2)
    before, stream = os.fstat(2), sys.stderr
    with VideoWriter(tmp_path / "clip.mp4") as video:
        for frame in moving_square(3):
            video.write(frame)
            now = os.fstat(2)
            assert (now.st_dev, now.st_ino) == (before.st_dev, before.st_ino)
            assert sys.stderr is stream
    assert redirected == []
    assert len(list(read_video_frames(tmp_path / "clip.mp4"))) == 3
