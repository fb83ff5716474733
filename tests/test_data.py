"""Tests for glnet.data: synthetic shapes, ImageFolder trees and CIFAR-10 batches, all fabricated offline."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from glnet.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Cifar10Batches,
    ImageFolderDataset,
    SyntheticShapes,
    make_dataset,
    make_loader,
)
from glnet.errors import InputError

Image = pytest.importorskip("PIL.Image")

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _unnormalise(image: torch.Tensor) -> torch.Tensor:
    return image * _STD + _MEAN


def _raises_one_line(fn, *match: str) -> str:
    """Call ``fn``, expect an InputError with a one-line message containing every ``match``."""
    with pytest.raises(InputError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    for fragment in match:
        assert fragment in message, message
    return message


# ------------------------------------------------------------------------------------------------
# Synthetic


def test_synthetic_shapes_dtype_and_normalisation():
    ds = SyntheticShapes(image_size=32, num_classes=10, length=50, seed=3)
    assert len(ds) == 50
    assert ds.num_classes == 10
    assert len(ds.classes) == 10 and len(set(ds.classes)) == 10
    image, label = ds[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert isinstance(label, int) and 0 <= label < 10
    raw = _unnormalise(image)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert raw.std() > 0.05  # not a flat image
    images, labels = ds.generate(range(50))
    assert images.shape == (50, 3, 32, 32) and labels.dtype == torch.int64
    # Normalised with the ImageNet statistics: roughly centred, unit-ish spread.
    assert abs(images.mean().item()) < 1.0 and 0.3 < images.std().item() < 1.5


def test_synthetic_is_deterministic_per_seed_and_index():
    a, b = SyntheticShapes(24, length=20, seed=7), SyntheticShapes(24, length=20, seed=7)
    for i in (0, 5, 19):
        assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
    other = SyntheticShapes(24, length=20, seed=8)
    assert not torch.equal(a[0][0], other[0][0])
    assert not torch.equal(a[0][0], a[1][0])
    # The pixels of image i do not depend on which batch it is rendered in.
    batch, labels = a.generate([3, 9, 4])
    assert torch.equal(batch[1], a[9][0]) and int(labels[2]) == a[4][1]
    assert torch.equal(a[-1][0], a[19][0])
    with pytest.raises(IndexError):
        a[20]


def test_synthetic_covers_all_classes():
    ds = SyntheticShapes(16, num_classes=12, length=400)
    _, labels = ds.generate(range(400))
    counts = torch.bincount(labels, minlength=12)
    assert (counts > 10).all(), counts
    assert len(set(ds.classes)) == 12


def test_synthetic_is_learnable():
    torch.manual_seed(0)
    steps, batch = 40, 16
    ds = SyntheticShapes(image_size=32, num_classes=10, length=steps * batch, seed=0)

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    net = nn.Sequential(
        *block(3, 16),
        *block(16, 32),
        *block(32, 32),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for images, labels in make_loader(ds, batch, seed=0):
        loss = nn.functional.cross_entropy(net(images), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert len(losses) == steps
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first - 0.2, (first, last)
    assert last < math.log(10) - 0.2, (first, last)


def test_synthetic_bad_arguments():
    _raises_one_line(lambda: SyntheticShapes(image_size=4), "image size")
    _raises_one_line(lambda: SyntheticShapes(num_classes=1), "num_classes")
    _raises_one_line(lambda: SyntheticShapes(length=0), "length")


def test_make_dataset_synthetic_splits():
    train, test = make_dataset("synthetic", 16), make_dataset("synthetic", 16, train=False)
    assert isinstance(train, SyntheticShapes) and isinstance(test, SyntheticShapes)
    assert train.num_classes == test.num_classes and train.classes == test.classes
    assert len(train) > len(test)
    assert not torch.equal(train[0][0], test[0][0])


# ------------------------------------------------------------------------------------------------
# Loader


def test_loader_batches_and_reproducible_shuffle():
    ds = SyntheticShapes(16, length=35)
    order = [labels.tolist() for _, labels in make_loader(ds, 8, seed=1)]
    again = [labels.tolist() for _, labels in make_loader(ds, 8, seed=1)]
    assert order == again
    assert len(order) == 4  # the ragged batch of 3 is dropped when shuffling
    images, labels = next(iter(make_loader(ds, 8, shuffle=False)))
    assert images.shape == (8, 3, 16, 16) and labels.shape == (8,)
    assert labels.tolist() == [ds[i][1] for i in range(8)]
    assert sum(len(y) for _, y in make_loader(ds, 8, shuffle=False)) == 35
    _raises_one_line(lambda: make_loader(ds, 0), "batch size")


# ------------------------------------------------------------------------------------------------
# ImageFolder

_COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "emu": (0, 0, 255)}


def _write_png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (20, 14)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    for name, colour in _COLOURS.items():
        _write_png(root / name / "a.png", colour)
        _write_png(root / name / "b.PNG", colour, size=(9, 30))
        (root / name / "notes.txt").write_text("not an image")
    _write_png(root / "dog" / "nested" / "c.png", _COLOURS["dog"])
    Image.new("RGB", (16, 16), _COLOURS["emu"]).save(root / "emu" / "d.jpg", quality=95)
    return root


def test_image_folder_reads_labels_and_pixels(image_tree: Path):
    ds = make_dataset(str(image_tree), 12)
    assert isinstance(ds, ImageFolderDataset)
    assert ds.classes == ["cat", "dog", "emu"] and ds.num_classes == 3
    assert len(ds) == 8  # 2 + 3 (one nested) + 3 (one jpg); the .txt files are ignored
    assert sorted(set(ds.targets)) == [0, 1, 2]
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape == (3, 12, 12) and image.dtype == torch.float32
        expected = torch.tensor(_COLOURS[ds.classes[label]], dtype=torch.float32).view(3, 1, 1) / 255
        assert (_unnormalise(image) - expected).abs().max() < 0.03, ds.samples[i]
    images, labels = next(iter(make_loader(ds, 4, shuffle=False)))
    assert images.shape == (4, 3, 12, 12) and labels.tolist() == [0, 0, 1, 1]


def test_image_folder_resizes_shorter_side_then_centre_crops(tmp_path: Path):
    img = Image.new("RGB", (60, 20), (255, 255, 255))
    img.paste((0, 0, 0), (0, 0, 20, 20))  # black left third, cropped away by the centre crop
    img.paste((255, 0, 0), (40, 0, 60, 20))  # red right third, likewise
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        img.save(tmp_path / name / "x.png")
    image, _ = make_dataset(str(tmp_path), 10)[0]
    raw = _unnormalise(image)
    assert raw.shape == (3, 10, 10)
    assert (raw[:, :, 1:-1] - 1.0).abs().max() < 0.05  # only the white middle third remains


def test_image_folder_train_val_layout(tmp_path: Path):
    for split in ("train", "val"):
        for name in ("x", "y"):
            _write_png(tmp_path / split / name / f"{split}.png", (10, 20, 30))
    train, val = make_dataset(str(tmp_path), 8), make_dataset(str(tmp_path), 8, train=False)
    assert train.classes == val.classes == ["x", "y"]
    assert all(p.parent.parent.name == "train" for p, _ in train.samples)
    assert all(p.parent.parent.name == "val" for p, _ in val.samples)


def test_corrupt_image_raises_naming_the_file(image_tree: Path):
    bad = image_tree / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    truncated = image_tree / "dog" / "truncated.png"
    data = (image_tree / "dog" / "a.png").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    ds = make_dataset(str(image_tree), 12)  # listing does not open images
    for path in (bad, truncated):
        index = [p for p, _ in ds.samples].index(path)
        _raises_one_line(lambda index=index: ds[index], str(path), "cannot read image")


def test_image_folder_bad_inputs(tmp_path: Path):
    _raises_one_line(lambda: make_dataset(str(tmp_path / "missing"), 16), "does not exist", "synthetic")
    a_file = tmp_path / "file.bin"
    a_file.write_bytes(b"x")
    _raises_one_line(lambda: make_dataset(str(a_file), 16), "is a file")
    empty = tmp_path / "empty"
    empty.mkdir()
    _raises_one_line(lambda: make_dataset(str(empty), 16), "no subfolders", "ImageFolder")
    loose = tmp_path / "loose"
    _write_png(loose / "x.png", (1, 2, 3))
    _raises_one_line(lambda: make_dataset(str(loose), 16), "no class subfolders")
    no_images = tmp_path / "no_images"
    (no_images / "a").mkdir(parents=True)
    (no_images / "b").mkdir()
    (no_images / "a" / "readme.txt").write_text("hi")
    _raises_one_line(lambda: make_dataset(str(no_images), 16), "no images")
    single = tmp_path / "single"
    _write_png(single / "only" / "x.png", (1, 2, 3))
    _raises_one_line(lambda: make_dataset(str(single), 16), "only one class", "'only'")
    one_empty = tmp_path / "one_empty"
    _write_png(one_empty / "a" / "x.png", (1, 2, 3))
    (one_empty / "b").mkdir()
    _raises_one_line(lambda: make_dataset(str(one_empty), 16), "'b'", "no images")
    _raises_one_line(lambda: make_dataset(str(loose), 0), "image size")


# ------------------------------------------------------------------------------------------------
# CIFAR-10


def _cifar_batch(labels: list[int], seed: int) -> dict:
    """A batch in CIFAR's layout: each image one flat colour so upsampling keeps its value."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(len(labels), 3), dtype=np.uint8)
    data = np.repeat(colours, 1024, axis=1)  # channel-major rows: R*1024, G*1024, B*1024
    return {b"batch_label": b"fake", b"labels": labels, b"data": data, b"filenames": [b"x.png"] * len(labels)}


def _dump(obj: object, path: Path, old_numpy: bool = False) -> None:
    raw = pickle.dumps(obj, protocol=2)
    if old_numpy:  # protocol 2 spells globals as text: rewrite them the way numpy 1.x wrote them
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.write_bytes(raw)


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for k in range(1, 6):
        _dump(
            _cifar_batch([(k + j) % 10 for j in range(4)], seed=k),
            folder / f"data_batch_{k}",
            old_numpy=k == 1,
        )
    _dump(_cifar_batch([9, 8, 7], seed=99), folder / "test_batch")
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    _dump({b"label_names": names, b"num_cases_per_batch": 4, b"num_vis": 3072}, folder / "batches.meta")
    return tmp_path


def test_cifar_reads_train_and_test(cifar_root: Path):
    ds = make_dataset(str(cifar_root), 48)  # the parent of cifar-10-batches-py works too
    assert isinstance(ds, Cifar10Batches)
    assert ds.num_classes == 10 and ds.classes[0] == "airplane" and ds.classes[9] == "truck"
    assert len(ds) == 20
    expected_labels = [(k + j) % 10 for k in range(1, 6) for j in range(4)]
    assert ds.targets == expected_labels
    first = _cifar_batch([0] * 4, seed=1)[b"data"][0, ::1024].astype(np.float32) / 255
    image, label = ds[0]
    assert image.shape == (3, 48, 48) and image.dtype == torch.float32 and label == expected_labels[0]
    assert (_unnormalise(image) - torch.from_numpy(first).view(3, 1, 1)).abs().max() < 1e-4
    images, labels = next(iter(make_loader(ds, 5, shuffle=False)))
    assert images.shape == (5, 3, 48, 48) and labels.tolist() == expected_labels[:5]
    assert torch.allclose(images[0], image)

    test = make_dataset(str(cifar_root / "cifar-10-batches-py"), 32, train=False)
    assert len(test) == 3 and test.targets == [9, 8, 7]
    assert test[0][0].shape == (3, 32, 32)
    assert make_dataset(str(cifar_root), 16)[0][0].shape == (3, 16, 16)


def test_cifar_bad_inputs(cifar_root: Path):
    folder = cifar_root / "cifar-10-batches-py"
    batch = folder / "data_batch_2"
    good = batch.read_bytes()

    def load() -> object:
        return make_dataset(str(cifar_root), 32)

    batch.write_bytes(b"definitely not a pickle")
    _raises_one_line(load, "corrupt CIFAR-10 file", "data_batch_2")
    batch.write_bytes(good[: len(good) // 2])
    _raises_one_line(load, "corrupt CIFAR-10 file", "data_batch_2")
    _dump([1, 2, 3], batch)
    _raises_one_line(load, "expected a dict")
    bad = _cifar_batch([1, 2], seed=0)
    bad[b"data"] = bad[b"data"][:, :100]
    _dump(bad, batch)
    _raises_one_line(load, "uint8 Nx3072")
    bad = _cifar_batch([1, 2], seed=0)
    del bad[b"labels"]
    _dump(bad, batch)
    _raises_one_line(load, "no 'labels' entry")
    _dump(_cifar_batch([1, 2, 3], seed=0) | {b"labels": [1, 2]}, batch)
    _raises_one_line(load, "2 labels for 3 images")
    _dump(_cifar_batch([1, 12], seed=0), batch)
    _raises_one_line(load, "expected 0..9")

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (cifar_root / "pwned",))

    _dump({b"data": Exploit(), b"labels": []}, batch)
    _raises_one_line(load, "corrupt CIFAR-10 file", "refusing")
    assert not (cifar_root / "pwned").exists()

    batch.unlink()
    _raises_one_line(load, "lacks data_batch_2")
    (folder / "batches.meta").write_bytes(b"garbage")
    _raises_one_line(lambda: make_dataset(str(folder), 32, train=False), "batches.meta")
