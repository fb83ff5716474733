"""glnet.inputs: image loading, the model's input tensor, and size parsing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from glnet.data import IMAGENET_MEAN, IMAGENET_STD
from glnet.errors import InputError
from glnet.inputs import load_image, parse_size, to_tensor
from glnet.testimage import test_image


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return np.asarray(test_image(224, 224, seed=0))


# ---- load_image ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_load_image_round_trips(tmp_path, scene: np.ndarray, suffix: str) -> None:
    path = tmp_path / f"scene{suffix}"
    Image.fromarray(scene).save(path, quality=95)
    im = load_image(path)
    assert im.mode == "RGB" and im.size == (224, 224)
    tolerance = 0 if suffix == ".png" else 12
    assert np.abs(np.asarray(im).astype(int) - scene.astype(int)).mean() <= tolerance
    assert load_image(str(path)).size == (224, 224)  # str paths too


def test_load_image_converts_other_modes(tmp_path) -> None:
    grey = tmp_path / "grey.png"
    Image.new("L", (5, 4), 77).save(grey)
    assert np.asarray(load_image(grey)).tolist() == [[[77, 77, 77]] * 5] * 4
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (3, 3), (10, 20, 30, 0)).save(clear)
    assert np.asarray(load_image(clear))[0, 0].tolist() == [255, 255, 255]  # transparent -> white
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((2, 2), 65535, np.uint16)).save(deep)
    assert np.asarray(load_image(deep))[0, 0].tolist() == [255, 255, 255]


def test_load_image_rejects_a_text_file_named_png(tmp_path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n")
    with pytest.raises(InputError, match="not an image") as info:
        load_image(path)
    assert "\n" not in str(info.value)


def test_load_image_rejects_a_truncated_png(tmp_path, scene: np.ndarray) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(scene).save(path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(InputError) as info:
        load_image(path)
    assert "\n" not in str(info.value)


def test_load_image_rejects_missing_paths_and_folders(tmp_path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="directory"):
        load_image(tmp_path)


# ---- to_tensor -------------------------------------------------------------------------------------


def test_to_tensor_shape_and_dtype(scene: np.ndarray) -> None:
    x = to_tensor(Image.fromarray(scene), (224, 224))
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32 and x.is_contiguous()
    y = to_tensor(Image.fromarray(scene), (320, 180))
    assert y.shape == (1, 3, 180, 320)


def test_to_tensor_normalises_with_imagenet_stats() -> None:
    x = to_tensor(Image.new("RGB", (300, 200), (128, 128, 128)), (224, 224))
    expected = [(128 / 255 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.tensor(expected), atol=1e-5)
    assert float(x.std(dim=(2, 3)).max()) < 1e-5


def test_to_tensor_resizes_the_shorter_side_and_crops_the_centre() -> None:
    # A 400x200 image: left quarter red, middle half green, right quarter blue. Scaling the short
    # side to 100 makes it 200x100; the centre 100x100 crop is exactly the green half.
    arr = np.zeros((200, 400, 3), np.uint8)
    arr[:, :100, 0] = 255
    arr[:, 100:300, 1] = 255
    arr[:, 300:, 2] = 255
    x = to_tensor(Image.fromarray(arr), (100, 100))
    pixels = x[0].permute(1, 2, 0) * torch.tensor(IMAGENET_STD) + torch.tensor(IMAGENET_MEAN)
    assert torch.allclose(pixels[:, 2:-2], torch.tensor([0.0, 1.0, 0.0]).expand(100, 96, 3), atol=1e-3)


def test_to_tensor_accepts_non_rgb_images() -> None:
    x = to_tensor(Image.new("L", (50, 50), 255), (32, 32))
    assert x.shape == (1, 3, 32, 32)


@pytest.mark.parametrize("bad", [0, 16385, 2.5, True])
def test_to_tensor_rejects_bad_sizes(bad: object) -> None:
    with pytest.raises(InputError, match="height must be an integer"):
        to_tensor(Image.new("RGB", (8, 8)), (8, bad))  # type: ignore[arg-type]


# ---- parse_size ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1280x720", (1280, 720)),
        ("224X224", (224, 224)),
        (" 64 x 48 ", (64, 48)),
        ("1x1", (1, 1)),
        ("16384x16384", (16384, 16384)),
    ],
)
def test_parse_size_accepts(text: str, size: tuple[int, int]) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1280",
        "12x",
        "x12",
        "axb",
        "0x10",
        "10x0",
        "-5x10",
        "10x-5",
        "1.5x2",
        "16385x10",
        "10x99999",
        "12x12x12",
        "+5x5",
        "1280*720",
        "٣x٣",
    ],
)
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(InputError) as info:
        parse_size(text)
    assert repr(text) in str(info.value)
