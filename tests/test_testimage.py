"""glnet.testimage: the built-in test scene is deterministic, photo-like, and the same at any size."""

from __future__ import annotations

import numpy as np
import pytest

import glnet
from glnet.errors import InputError
from glnet.testimage import test_image


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return np.asarray(test_image(224, 224, seed=0))


def test_test_image_is_deterministic_per_seed(scene: np.ndarray) -> None:
    assert np.array_equal(scene, np.asarray(test_image(224, 224, seed=0)))
    other = np.asarray(test_image(224, 224, seed=1))
    assert np.abs(scene.astype(int) - other.astype(int)).mean() > 2.0


@pytest.mark.parametrize(("width", "height"), [(224, 224), (320, 180), (101, 257), (1, 1), (7, 3)])
def test_test_image_has_requested_size(width: int, height: int) -> None:
    im = test_image(width, height)
    assert im.mode == "RGB"
    assert im.size == (width, height)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_test_image_looks_like_a_photo(seed: int) -> None:
    scene = np.asarray(test_image(224, 224, seed=seed))
    img = scene.astype(np.float32) / 255.0
    # Neither dark nor blown out, and all three channels vary.
    assert 0.25 < img.mean() < 0.75
    assert all(img[..., c].std() > 0.12 for c in range(3))
    # Real colour, not grey: plenty of pixels with a clear hue (sky blue, grass green, barn red).
    saturation = img.max(axis=2) - img.min(axis=2)
    assert (saturation > 0.25).mean() > 0.15
    red = (img[..., 0] > 0.45) & (img[..., 1] < 0.25) & (img[..., 2] < 0.25)
    green = (img[..., 1] > img[..., 0] + 0.05) & (img[..., 1] > img[..., 2] + 0.05)
    blue = img[..., 2] > img[..., 0] + 0.15
    assert red.mean() > 0.01 and green.mean() > 0.15 and blue.mean() > 0.15
    # Edges and texture everywhere, not a smooth gradient: a fair share of strong gradients.
    grey = img.mean(axis=2)
    gx, gy = np.abs(np.diff(grey, axis=1))[:-1], np.abs(np.diff(grey, axis=0))[:, :-1]
    edges = np.hypot(gx, gy)
    assert (edges > 0.1).mean() > 0.03
    assert (edges > 0.02).mean() > 0.3
    # Many distinct colours (textures), not a handful of flat fills.
    assert len(np.unique(scene.reshape(-1, 3), axis=0)) > 10000


def test_test_image_composition_does_not_depend_on_size() -> None:
    small = np.asarray(test_image(112, 112), dtype=np.float32)
    large = np.asarray(test_image(448, 448), dtype=np.float32)
    shrunk = large.reshape(112, 4, 112, 4, 3).mean(axis=(1, 3))  # box-filter 4x4 down to 112x112
    assert np.abs(shrunk - small).mean() < 12.0
    # A wider frame shows more of the same world: its centre square is the square render.
    wide = np.asarray(test_image(224, 112), dtype=np.float32)[:, 56:168]
    assert np.abs(wide - small).mean() < 6.0


@pytest.mark.parametrize("bad", [0, -5, 16385, 2.5, "224", True, None])
def test_test_image_rejects_bad_sizes(bad: object) -> None:
    with pytest.raises(InputError):
        test_image(bad, 224)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        test_image(224, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [1.0, "0", None])
def test_test_image_rejects_bad_seeds(bad: object) -> None:
    with pytest.raises(InputError, match="seed"):
        test_image(8, 8, seed=bad)  # type: ignore[arg-type]


def test_test_image_is_the_package_export() -> None:
    assert glnet.test_image is test_image
