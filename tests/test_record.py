"""glnet.record: frames into .mp4 (PyAV: H.264, HEVC, AV1 on an encoder thread), .gif and PNG folders, and
reading them back; ``glnet record``: frame-exact tours, read back with PyAV."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from glnet.errors import InputError
from glnet.record import VideoWriteError, VideoWriter, choose_codec, read_video_frames, video_info

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
    path = tmp_path / "clip.mp4"
    with VideoWriter(path, fps=25) as video:
        for frame in moving_square(5):
            video.write(frame)
    assert (video.codec, video.encoder) == ("h264", "libx264")
    info = video_info(path)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["fps"] == pytest.approx(25)
    assert (info["width"], info["height"], info["frames"]) == (W, H, 5)


@pytest.mark.parametrize("codec", ["hevc", "av1"])
def test_hevc_and_av1_can_be_forced_and_read_back(tmp_path: Path, codec: str) -> None:
    path = tmp_path / f"{codec}.mp4"
    with VideoWriter(path, fps=12, codec=codec) as video:
        for frame in moving_square(6):
            video.write(frame)
    assert video.codec == codec
    assert video_info(path)["codec"] == codec and video_info(path)["frames"] == 6
    decoded = list(read_video_frames(path))
    assert [square_left_edge(f) for f in decoded] == [8 + 6 * i for i in range(6)]


def test_the_codec_is_chosen_by_size() -> None:
    assert choose_codec(1920, 1080) == "h264"
    assert choose_codec(4096, 2304) == "h264"  # H.264's largest 16:9 frame
    for w, h in ((4112, 2304), (7680, 4320), (3840, 4320)):
        assert choose_codec(w, h) in ("hevc", "av1")
    assert choose_codec(7680, 4320, "hevc") == "hevc"
    with pytest.raises(InputError, match=r"H\.264 cannot encode 7680x4320"):
        choose_codec(7680, 4320, "h264")
    with pytest.raises(InputError, match="unknown codec"):
        choose_codec(64, 64, "vp9")


def test_encoding_runs_on_a_thread_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    seen: list[int] = []
    real = VideoWriter._encode

    def encode(self: VideoWriter, rgb: np.ndarray) -> None:
        seen.append(threading.get_ident())
        real(self, rgb)

    monkeypatch.setattr(VideoWriter, "_encode", encode)
    with VideoWriter(tmp_path / "clip.mp4") as video:
        for frame in moving_square(4):
            video.write(frame)
    assert len(seen) == 4 and threading.get_ident() not in seen
    assert video.encoded == 4 and video.encode_s > 0


def test_an_encoder_failure_surfaces_on_the_next_write_or_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = VideoWriter._encode

    def encode(self: VideoWriter, rgb: np.ndarray) -> None:
        if self.encoded == 2:
            raise RuntimeError("disk on fire")
        real(self, rgb)

    monkeypatch.setattr(VideoWriter, "_encode", encode)
    video = VideoWriter(tmp_path / "clip.mp4", queue_size=1)
    with pytest.raises(VideoWriteError, match="disk on fire"):
        for frame in moving_square(40):  # bounded queue: a write soon sees the failure, never hangs
            video.write(frame)
    assert video.frames < 40
    with pytest.raises(VideoWriteError, match="disk on fire"):
        video.close()
    video.close()  # once closed, closed
    assert video_info(tmp_path / "clip.mp4")["frames"] == 2  # what was encoded is a playable file


def test_ctrl_c_while_recording_leaves_a_playable_file(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    with pytest.raises(KeyboardInterrupt), VideoWriter(path, fps=10) as video:
        for i, frame in enumerate(moving_square(8)):
            if i == 5:
                raise KeyboardInterrupt
            video.write(frame)
    assert video_info(path)["frames"] == 5
    assert [square_left_edge(f) for f in read_video_frames(path)] == [8 + 6 * i for i in range(5)]


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
    for crf in (-1, 64, 5.5):
        with pytest.raises(InputError, match="crf"):
            VideoWriter(tmp_path / "clip.mp4", crf=crf)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="codec"):
        VideoWriter(tmp_path / "clip.mp4", codec="vp9")


def test_encoder_errors_carry_their_message(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "taken.mp4"
    target.mkdir()  # FFmpeg cannot open a folder as its output file
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


@pytest.mark.parametrize("codec", [None, "hevc", "av1"])
def test_writing_a_video_leaves_this_process_stderr_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], codec: str | None
) -> None:
    """The encoders write nothing to stderr, and fd 2 is never redirected, not even briefly."""
    real_dup2 = os.dup2
    redirected: list[int] = []

    def dup2(fd: int, fd2: int, inheritable: bool = True) -> int:
        if fd2 == 2:
            redirected.append(fd)
        return real_dup2(fd, fd2, inheritable)

    monkeypatch.setattr(os, "dup2", dup2)
    before, stream = os.fstat(2), sys.stderr
    with VideoWriter(tmp_path / "clip.mp4", codec=codec) as video:
        for frame in moving_square(3):
            video.write(frame)
            now = os.fstat(2)
            assert (now.st_dev, now.st_ino) == (before.st_dev, before.st_ino)
            assert sys.stderr is stream
    assert redirected == []
    assert len(list(read_video_frames(tmp_path / "clip.mp4"))) == 3
    assert capfd.readouterr().err == ""  # x265 and SVT-AV1 print banners unless told not to


# -- glnet record: the command, end to end ---------------------------------------------------------------

MODEL = ["conftest:TinyNet", "--input-size", "32", "--renderer", "instanced"]


def keyframes_file(tmp_path: Path, times: tuple[float, ...] = (0.0, 0.5, 1.3)) -> Path:
    """Three keyframes framing TinyNet (its layout depends on shapes only): overview, side (rolled,
    narrower), a layer close up (wider)."""
    import torch
    from conftest import TinyNet

    from glnet.camera import layer_camera, named_camera
    from glnet.capture import capture
    from glnet.layout import layout_for
    from glnet.tour import Tour, camera_keyframe

    layout = layout_for(capture(TinyNet().eval(), torch.randn(1, 3, 32, 32)))
    side = named_camera("side", layout, 16 / 9)
    side.rotate_local(roll=0.2)
    side.fov = 50.0
    close = layer_camera(layout, 1, 16 / 9)
    close.fov = 70.0
    cams = [named_camera("overview", layout, 16 / 9), side, close]
    return Tour([camera_keyframe(c, t) for c, t in zip(cams, times, strict=True)]).save(
        tmp_path / "tour.json"
    )


@pytest.mark.gl
def test_record_writes_exactly_round_duration_times_fps_frames(tmp_path: Path, gl_ctx: object) -> None:
    from glnet.cli import main

    tour, out, stats = keyframes_file(tmp_path), tmp_path / "t.mp4", tmp_path / "s.json"
    args = ["record", *MODEL, "--tour", str(tour), "--fps", "10", "--size", "160x90", "--out", str(out)]
    assert main([*args, "--stats-json", str(stats)]) == 0
    info = video_info(out)
    assert (info["codec"], info["frames"], info["width"], info["height"]) == ("h264", 13, 160, 90)  # 1.3 s
    s = json.loads(stats.read_text())
    assert s["frames"] == 13 and s["codec"] == "h264" and s["render_fps"] > 0 and s["encode_fps"] > 0
    assert main([*args, "--seconds", "0.7"]) == 0  # --seconds cuts a file's tour short
    assert video_info(out)["frames"] == 7
    orbit = ["record", *MODEL, "--tour", "orbit", "--size", "160x90", "--out", str(out)]
    assert main([*orbit, "--seconds", "0.4", "--fps", "5"]) == 0  # a built-in's length
    assert video_info(out)["frames"] == 2


@pytest.mark.gl
def test_record_keeps_to_the_neuron_budget(
    tmp_path: Path, gl_ctx: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from glnet.cli import main

    base = ["record", *MODEL, "--tour", "orbit", "--seconds", "0.2", "--fps", "5", "--size", "160x90"]
    assert main([*base, "--out", str(tmp_path / "full")]) == 0
    assert main([*base, "--max-neurons", "50", "--out", str(tmp_path / "cut")]) == 0
    assert "over the 50-neuron budget" in capsys.readouterr().err
    full, cut = (np.asarray(Image.open(sorted((tmp_path / d).glob("*.png"))[0])) for d in ("full", "cut"))
    assert full.shape == cut.shape and (full != cut).any()  # the largest layers drawn as channel means


@pytest.mark.gl
@pytest.mark.parametrize(("size", "codecs"), [("1920x1080", ("h264",)), ("7680x4320", ("av1", "hevc"))])
def test_record_picks_h264_at_1080p_and_hevc_or_av1_at_8k(
    tmp_path: Path, gl_ctx: object, capfd: pytest.CaptureFixture[str], size: str, codecs: tuple[str, ...]
) -> None:
    from glnet.cli import main

    out = tmp_path / "big.mp4"
    args = ["record", *MODEL, "--tour", "orbit", "--fps", "10", "--seconds", "0.1", "--size", size]
    assert main([*args, "--out", str(out)]) == 0
    info = video_info(out)
    assert info["codec"] in codecs and f"{info['width']}x{info['height']}" == size and info["frames"] == 1
    assert f"wrote {out}: {info['codec']} (" in capfd.readouterr().err  # the output line names the codec


@pytest.mark.gl
def test_a_tour_frame_at_a_keyframe_equals_the_snapshot_from_it(tmp_path: Path, gl_ctx: object) -> None:
    """Frame n is the tour at t = n / fps: at a keyframe's time, exactly what --camera <keyframe> draws."""
    from PIL import Image

    from glnet.cli import main

    tour = keyframes_file(tmp_path, (0.0, 0.5, 1.0))
    out = tmp_path / "frames"
    args = ["--fps", "10", "--size", "160x90", "--out", str(out)]
    assert main(["record", *MODEL, "--tour", str(tour), *args]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:06d}.png" for i in range(10)]
    keys = json.loads(tour.read_text())["keyframes"]
    for frame, key in ((0, keys[0]), (5, keys[1])):
        cam = {k: v for k, v in key.items() if k != "t"}
        snap = tmp_path / f"snap{frame}.png"
        snap_args = ["--camera", json.dumps(cam), "--no-hud", "--size", "160x90", "--out", str(snap)]
        assert main(["snapshot", *MODEL, *snap_args]) == 0
        got = np.asarray(Image.open(out / f"frame_{frame:06d}.png"))
        want = np.asarray(Image.open(snap))
        assert got.shape == want.shape == (90, 160, 3)
        assert (want != want[0, 0]).any(axis=-1).mean() > 0.02  # something is drawn
        assert np.array_equal(got, want)
    between = np.asarray(Image.open(out / "frame_000003.png"))
    assert not np.array_equal(between, np.asarray(Image.open(out / "frame_000005.png")))


@pytest.mark.gl
def test_interrupting_a_recording_leaves_a_playable_file(
    tmp_path: Path, gl_ctx: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from conftest import TinyNet

    from glnet.capture import capture
    from glnet.offline import render_tour
    from glnet.tour import Tour

    real = Tour.at

    def at(self: Tour, t: float):  # Ctrl-C while drawing frame 6
        if t >= 0.6:
            raise KeyboardInterrupt
        return real(self, t)

    monkeypatch.setattr(Tour, "at", at)
    trace = capture(TinyNet().eval(), torch.randn(1, 3, 32, 32))
    out = tmp_path / "cut.mp4"
    with pytest.raises(KeyboardInterrupt):
        render_tour(trace, out, tour="orbit", size=(96, 64), fps=10, ctx=gl_ctx, progress=False)
    info = video_info(out)
    assert info["codec"] == "h264" and 3 <= info["frames"] <= 6  # those read back before the interrupt


@pytest.mark.gl
def test_bad_record_options_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from glnet.cli import main

    base = ["record", *MODEL, "--size", "96x64"]
    cases = [
        (["--tour", "nosuch", "--out", str(tmp_path / "a.mp4")], "neither a built-in"),
        (["--tour", "orbit", "--out", str(tmp_path / "a.avi")], ".mp4"),
        (["--tour", "orbit", "--fps", "0", "--out", str(tmp_path / "a.mp4")], "--fps"),
        (["--tour", "orbit", "--codec", "hevc", "--out", str(tmp_path / "d")], "--codec"),
        (["--tour", "orbit", "--crf", "99", "--out", str(tmp_path / "a.mp4")], "crf"),
    ]
    for extra, words in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("glnet: error:") and words in err[-1], err


@pytest.mark.gl
def test_view_without_a_display_records_its_tour_the_same_way(tmp_path: Path, gl_ctx: object) -> None:
    from glnet.cli import main

    out = tmp_path / "v.mp4"
    args = ["view", *MODEL, "--headless", "--size", "96x64", "--fps", "10", "--out", str(out)]
    assert main([*args, "--tour", "orbit", "--seconds", "0.3"]) == 0
    assert video_info(out)["frames"] == 3
    assert main([*args, "--seconds", "0.2"]) == 0  # the flythrough by default
    assert video_info(out)["frames"] == 2


def test_view_help_names_the_tour_options_and_the_k_key() -> None:
    from glnet.cli import build_parser

    view = build_parser()._subparsers._group_actions[0].choices["view"].format_help()
    assert "--tour" in view and "--save-tour" in view and "K adds a tour keyframe" in " ".join(view.split())
