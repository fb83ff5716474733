"""Training data for ``glnet train MODEL --data synthetic|PATH``.

Three sources, all offline: ``synthetic`` (coloured shapes drawn on the fly with torch ops, so a
model's loss visibly falls within a few dozen steps), an ImageFolder tree (``root/<class>/<image>``)
and CIFAR-10's python batches. Every dataset yields ``(image, label)`` with ``image`` a float32
``3xSxS`` tensor normalised with the ImageNet mean/std, and exposes ``num_classes`` and ``classes``.
"""

from __future__ import annotations

import math
import operator
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from glnet.errors import InputError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "Cifar10Batches",
    "ImageFolderDataset",
    "SyntheticShapes",
    "make_dataset",
    "make_loader",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

_SPEC_HELP = (
    "expected 'synthetic', an ImageFolder tree (root/<class>/*.png|jpg) "
    "or a CIFAR-10 'cifar-10-batches-py' folder"
)


def _normalise(images: torch.Tensor) -> torch.Tensor:
    """Map ``[0, 1]`` RGB images (``...x3xHxW``) to ImageNet-normalised values, in place when possible."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype).view(3, 1, 1)
    return images.sub_(mean).div_(std)


def _check_size(image_size: int, minimum: int = 1) -> int:
    try:
        size = operator.index(image_size) if not isinstance(image_size, bool) else None
    except TypeError:
        size = None
    if size is None or size < minimum:
        raise InputError(f"image size must be an integer >= {minimum}, got {image_size!r}")
    return size


# --------------------------------------------------------------------------------------------------
# Synthetic shapes

_SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "stripes",
    "diamond",
    "frame",
    "star",
    "crescent",
)
_HUE_NAMES: tuple[str, ...] = (
    "red",
    "orange",
    "yellow",
    "chartreuse",
    "green",
    "spring",
    "cyan",
    "azure",
    "blue",
    "violet",
    "magenta",
    "rose",
)
_CLUTTER = 3  # small distractor discs per image
_LOWFREQ = 4  # side of the coarse colour texture upsampled over the background

# Layout of the per-image uniform draws (the noise follows these).
_P_LABEL, _P_HUE, _P_SAT, _P_VAL, _P_RADIUS, _P_CX, _P_CY, _P_ROT, _P_ASPECT = range(9)
_P_BG_HUE, _P_BG_SAT, _P_BG_VAL, _P_GRAD_DIR, _P_GRAD_AMP, _P_NOISE = range(9, 15)
_P_CLUTTER = 15  # _CLUTTER groups of (x, y, radius, hue, sat, val, alpha)
_P_TEXTURE = _P_CLUTTER + 7 * _CLUTTER
_P_COUNT = _P_TEXTURE + 3 * _LOWFREQ * _LOWFREQ


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Vectorised HSV -> RGB for tensors of equal shape; returns shape ``(*h.shape, 3)`` in [0, 1]."""
    n = torch.tensor([5.0, 3.0, 1.0])
    k = (n + h.unsqueeze(-1) * 6.0) % 6.0
    ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return v.unsqueeze(-1) * (1.0 - s.unsqueeze(-1) * ramp)


def _shape_distance(shape: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Approximate signed distance (negative inside) of shape ``shape`` in its unit frame."""
    au, av = u.abs(), v.abs()
    box = torch.maximum(au, av)
    name = _SHAPES[shape]
    if name == "circle":
        return torch.hypot(u, v) - 0.95
    if name == "square":
        return box - 0.8
    if name == "triangle":  # apex up (image y grows downwards)
        return torch.maximum(v - 0.55, (1.7320508 * au - v - 1.0) * 0.5)
    if name == "cross":
        return torch.maximum(torch.minimum(au, av) - 0.25, box - 0.95)
    if name == "ring":
        return (torch.hypot(u, v) - 0.72).abs() - 0.24
    if name == "stripes":
        bands = ((u + 1.0) * 2.5 % 1.0 - 0.5).abs() - 0.25
        return torch.maximum(box - 0.85, bands / 2.5)
    if name == "diamond":
        return (au + av - 1.05) * 0.70710678
    if name == "frame":
        return (box - 0.68).abs() - 0.2
    if name == "star":
        radius = torch.hypot(u, v)
        angle = torch.atan2(u, -v)  # one point straight up
        return (radius - (0.6 + 0.38 * torch.cos(5.0 * angle))) * 0.6
    # crescent: a disc with an offset disc bitten out of it
    return torch.maximum(torch.hypot(u, v) - 0.95, 0.8 - torch.hypot(u - 0.5, v + 0.1))


def _coverage(distance: torch.Tensor, pixels_per_unit: torch.Tensor | float) -> torch.Tensor:
    """Anti-aliased coverage in [0, 1] from a signed distance (a one-pixel soft edge); reuses ``distance``."""
    return distance.mul_(pixels_per_unit).neg_().add_(0.5).clamp_(0.0, 1.0)


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) & 0x7FFFFFFFFFFFFFFF


class SyntheticShapes(Dataset):
    """A learnable image set made on the fly: coloured shapes in classes, so the loss visibly falls.

    Class ``k`` is one shape (circle, square, triangle, ... cycling through ten) in one hue band
    (``k / num_classes`` of the colour wheel); position, size, tilt, shade, a tinted gradient
    background, distractor discs and pixel noise vary per image. Image ``i`` depends only on
    ``(seed, i)``, so any batch composition and any number of loader workers give the same pixels.
    """

    def __init__(
        self, image_size: int = 64, num_classes: int = 10, length: int = 10_000, seed: int = 0
    ) -> None:
        self.image_size = _check_size(image_size, minimum=8)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise InputError(f"synthetic data needs an integer num_classes >= 2, got {num_classes!r}")
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise InputError(f"synthetic data needs an integer length >= 1, got {length!r}")
        self.num_classes = num_classes
        self.length = length
        self.seed = int(seed)
        self.classes = self._class_names(num_classes)
        centres = (torch.arange(image_size, dtype=torch.float32) + 0.5) * (2.0 / image_size) - 1.0
        self._ys = centres.view(1, image_size, 1)
        self._xs = centres.view(1, 1, image_size)
        self._bank: torch.Tensor | None = None

    @staticmethod
    def _class_names(num_classes: int) -> list[str]:
        names: list[str] = []
        for k in range(num_classes):
            hue = _HUE_NAMES[round(k / num_classes * len(_HUE_NAMES)) % len(_HUE_NAMES)]
            name = f"{hue} {_SHAPES[k % len(_SHAPES)]}"
            names.append(name if name not in names else f"{name} {k}")
        return names

    def __len__(self) -> int:
        return self.length

    def _index(self, i: int) -> int:
        i = int(i)
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for {self.length} synthetic images")
        return i

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        images, labels = self.generate([i])
        return images[0], int(labels[0])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """Batched fetch used by DataLoader: one vectorised render instead of one per image."""
        images, labels = self.generate(indices)
        return list(zip(images.unbind(0), labels.tolist(), strict=True))

    def _noise_bank(self) -> torch.Tensor:
        """Uniform noise in [-1, 1] over a 3 x 2S x 2S field, made once per seed; images crop it."""
        if self._bank is None:
            gen = torch.Generator().manual_seed(_splitmix64(self.seed ^ 0xBA4C))
            size = 2 * self.image_size
            self._bank = torch.rand(3, size, size, generator=gen).mul_(2.0).sub_(1.0)
        return self._bank

    def generate(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Render images ``indices`` at once: ``(Bx3xSxS float32 normalised, B int64 labels)``."""
        indices = [self._index(i) for i in indices]
        size, batch = self.image_size, len(indices)
        # Per-image random stream seeded from (seed, i): the same image whatever batch it falls in.
        gen = torch.Generator()
        draws = torch.empty(batch, _P_COUNT)
        noise = torch.empty(batch, 3, size, size)
        bank = self._noise_bank()
        for row, i in enumerate(indices):
            gen.manual_seed(_splitmix64((self.seed << 32) ^ i))
            torch.rand(_P_COUNT, generator=gen, out=draws[row])
            # Pixel noise is a crop of the shared field at a per-image offset: drawing fresh noise
            # per pixel would cost several times the whole render.
            ox, oy = (int(k) for k in torch.randint(size, (2,), generator=gen))
            noise[row] = bank[:, oy : oy + size, ox : ox + size]
        p = draws.unbind(1)

        labels = (p[_P_LABEL] * self.num_classes).long().clamp_(max=self.num_classes - 1)
        pixels_per_unit_image = size / 2.0

        # Background: a desaturated tint, a linear gradient and a coarse colour texture, all laid
        # out on a _LOWFREQ grid and bilinearly upsampled in one go.
        tint = _hsv_to_rgb(p[_P_BG_HUE], 0.05 + 0.3 * p[_P_BG_SAT], 0.15 + 0.45 * p[_P_BG_VAL])
        angle = p[_P_GRAD_DIR] * (2.0 * math.pi)
        knots = torch.linspace(-1.0, 1.0, _LOWFREQ)
        ramp = torch.cos(angle).view(-1, 1, 1) * knots.view(1, 1, -1)
        ramp = ramp + torch.sin(angle).view(-1, 1, 1) * knots.view(1, -1, 1)
        shading = 1.0 + (0.35 * p[_P_GRAD_AMP]).view(-1, 1, 1, 1) * ramp.unsqueeze(1)
        coarse = tint.view(batch, 3, 1, 1) * shading
        coarse += 0.25 * (draws[:, _P_TEXTURE:_P_COUNT].view(batch, 3, _LOWFREQ, _LOWFREQ) - 0.5)
        image = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=True)

        # Distractors: small discs of any colour, smaller than the smallest shape.
        for c in range(_CLUTTER):
            x, y, r, h, s, v, a = (p[_P_CLUTTER + 7 * c + j] for j in range(7))
            cx, cy, radius = (2.0 * x - 1.0), (2.0 * y - 1.0), 0.05 + 0.12 * r
            dist = torch.hypot(self._xs - cx.view(-1, 1, 1), self._ys - cy.view(-1, 1, 1))
            dist.sub_(radius.view(-1, 1, 1))
            alpha = _coverage(dist, pixels_per_unit_image).mul_((0.3 + 0.5 * a).view(-1, 1, 1)).unsqueeze(1)
            colour = _hsv_to_rgb(h, 0.3 + 0.7 * s, 0.3 + 0.7 * v).view(batch, 3, 1, 1)
            image.lerp_(colour.expand_as(image), alpha)

        # The class shape, in its own frame: centre, tilt, size and a little anisotropy.
        radius = 0.3 + 0.25 * p[_P_RADIUS]
        cx = (2.0 * p[_P_CX] - 1.0) * (1.0 - radius) * 0.9
        cy = (2.0 * p[_P_CY] - 1.0) * (1.0 - radius) * 0.9
        tilt = (p[_P_ROT] - 0.5) * 0.6
        stretch = 1.0 + 0.25 * (p[_P_ASPECT] - 0.5)
        dx, dy = self._xs - cx.view(-1, 1, 1), self._ys - cy.view(-1, 1, 1)
        cos, sin = torch.cos(tilt).view(-1, 1, 1), torch.sin(tilt).view(-1, 1, 1)
        u = (cos * dx + sin * dy).div_((radius * stretch).view(-1, 1, 1))
        v = (cos * dy - sin * dx).div_((radius / stretch).view(-1, 1, 1))
        pixels_per_unit = (radius * pixels_per_unit_image).view(-1, 1, 1)
        coverage = torch.empty(batch, size, size)
        shapes = labels % len(_SHAPES)
        for shape in shapes.unique().tolist():
            rows = (shapes == shape).nonzero().squeeze(1)
            dist = _shape_distance(shape, u[rows], v[rows])
            coverage[rows] = _coverage(dist, pixels_per_unit[rows])
        band = 1.0 / self.num_classes
        hue = labels.float() * band + (p[_P_HUE] - 0.5) * (0.6 * band)
        colour = _hsv_to_rgb(hue % 1.0, 0.6 + 0.4 * p[_P_SAT], 0.55 + 0.45 * p[_P_VAL])
        image.lerp_(colour.view(batch, 3, 1, 1).expand_as(image), coverage.unsqueeze(1))

        image.add_(noise.mul_((0.02 + 0.1 * p[_P_NOISE]).view(-1, 1, 1, 1))).clamp_(0.0, 1.0)
        return _normalise(image), labels


# --------------------------------------------------------------------------------------------------
# ImageFolder


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _subfolders(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise InputError(f"cannot list data folder {root}: {exc.strerror or exc}") from None


def _images_under(folder: Path) -> list[Path]:
    """Every image file below ``folder`` (recursively, hidden entries skipped), in sorted order."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath, f) for f in sorted(filenames) if _is_image(f))
    return found


def _load_image(path: Path, image_size: int) -> torch.Tensor:
    """Read ``path`` as RGB, scale its shorter side to ``image_size``, centre-crop; ``3xSxS`` in [0, 1]."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.draft("RGB", (image_size, image_size))  # JPEG: decode at a reduced scale when possible
            img = img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(
            f"cannot read image {path}: {reason}; expected a readable PNG/JPEG/BMP/WebP file"
        ) from None
    width, height = img.size
    scale = image_size / min(width, height)
    new_w, new_h = max(image_size, round(width * scale)), max(image_size, round(height * scale))
    if (new_w, new_h) != (width, height):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - image_size) // 2, (new_h - image_size) // 2
    img = img.crop((left, top, left + image_size, top + image_size))
    array = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


class ImageFolderDataset(Dataset):
    """Images in ``root/<class>/...`` (sorted class folders -> labels 0..n-1), resized and centre-cropped.

    Only the file list is built up front; an unreadable image raises :class:`InputError` naming it
    when it is fetched, so a large tree starts training at once.
    """

    def __init__(self, root: str | os.PathLike[str], image_size: int) -> None:
        self.root = Path(root)
        self.image_size = _check_size(image_size)
        folders = _subfolders(self.root)
        per_class = [(folder.name, _images_under(folder)) for folder in folders]
        if not any(files for _, files in per_class):
            raise InputError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders of {self.root}; "
                "expected root/<class>/<image> files"
            )
        empty = [name for name, files in per_class if not files]
        if empty:
            raise InputError(
                f"class folder(s) {', '.join(repr(n) for n in empty)} in {self.root} hold no images; "
                "remove them or add images"
            )
        if len(per_class) < 2:
            raise InputError(
                f"{self.root} has only one class folder ({per_class[0][0]!r}); "
                "training needs at least two, one folder per class"
            )
        self.classes: list[str] = [name for name, _ in per_class]
        self.num_classes = len(self.classes)
        self.class_to_idx = {name: k for k, name in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = [
            (path, label) for label, (_, files) in enumerate(per_class) for path in files
        ]
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        return _normalise(_load_image(path, self.image_size)), label


# --------------------------------------------------------------------------------------------------
# CIFAR-10 python batches

_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TRAIN = tuple(f"data_batch_{k}" for k in range(1, 6))
_CIFAR_TEST = "test_batch"
_CIFAR_META = "batches.meta"
_CIFAR_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR_PIXELS = 3 * 32 * 32

# What a CIFAR batch may reference: numpy's array reconstruction, nothing that could run other code.
_PICKLE_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 spell bytes
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that loads numpy arrays and plain containers only (pickles can otherwise run code)."""

    def find_class(self, module: str, name: str):  # type: ignore[no-untyped-def]
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = "numpy._core" + module[len("numpy.core") :]  # pre-2.0 numpy pickles
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _BatchUnpickler(fh, encoding="bytes").load()
    except OSError as exc:
        raise InputError(f"cannot read CIFAR-10 file {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # any unpickling failure means the file is not a CIFAR batch
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(
            f"corrupt CIFAR-10 file {path} ({reason}); "
            "expected a python-version batch from cifar-10-python.tar.gz"
        ) from None
    if not isinstance(obj, dict):
        raise InputError(f"corrupt CIFAR-10 file {path}: holds a {type(obj).__name__}, expected a dict")
    return obj


def _field(batch: dict, key: str, path: Path) -> object:
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise InputError(f"corrupt CIFAR-10 file {path}: no '{key}' entry")


def _read_cifar_batch(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    data, labels = _field(batch, "data", path), _field(batch, "labels", path)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _CIFAR_PIXELS
    ):
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise InputError(f"corrupt CIFAR-10 file {path}: data is {desc}, expected uint8 Nx{_CIFAR_PIXELS}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise InputError(f"corrupt CIFAR-10 file {path}: labels are not integers") from None
    if labels.shape != (data.shape[0],):
        raise InputError(
            f"corrupt CIFAR-10 file {path}: {labels.size} labels for {data.shape[0]} images, "
            "expected one each"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise InputError(
            f"corrupt CIFAR-10 file {path}: labels span {labels.min()}..{labels.max()}, "
            f"expected 0..{num_classes - 1}"
        )
    return data, labels


def _cifar_folder(path: Path) -> Path | None:
    """The folder holding CIFAR-10 batches at or directly under ``path``, or None."""
    for folder in (path, path / _CIFAR_DIR):
        if folder.is_dir() and any((folder / f).is_file() for f in (*_CIFAR_TRAIN, _CIFAR_TEST, _CIFAR_META)):
            return folder
    return None


class Cifar10Batches(Dataset):
    """CIFAR-10 from its python batches (``data_batch_1..5`` or ``test_batch``), upsampled to ``image_size``.

    All images are held as one uint8 tensor (150 MB for the training set) and resized per fetch.
    """

    def __init__(self, folder: str | os.PathLike[str], image_size: int, *, train: bool = True) -> None:
        self.folder = Path(folder)
        self.image_size = _check_size(image_size)
        self.train = train
        meta_path = self.folder / _CIFAR_META
        if meta_path.is_file():
            names = _field(_unpickle(meta_path), "label_names", meta_path)
            if not isinstance(names, list) or len(names) < 2:
                raise InputError(
                    f"corrupt CIFAR-10 file {meta_path}: label_names should list the class names"
                )
            self.classes = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]
        else:
            self.classes = list(_CIFAR_NAMES)
        self.num_classes = len(self.classes)
        wanted = _CIFAR_TRAIN if train else (_CIFAR_TEST,)
        missing = [name for name in wanted if not (self.folder / name).is_file()]
        if missing:
            raise InputError(
                f"CIFAR-10 folder {self.folder} lacks {', '.join(missing)}; "
                f"expected data_batch_1..5 and test_batch from cifar-10-python.tar.gz"
            )
        parts = [_read_cifar_batch(self.folder / name, self.num_classes) for name in wanted]
        data = np.concatenate([d for d, _ in parts])
        self.data = torch.from_numpy(data).view(-1, 3, 32, 32)
        self.targets: list[int] = np.concatenate([labels for _, labels in parts]).tolist()
        if not self.targets:
            raise InputError(f"CIFAR-10 folder {self.folder} holds no images in {', '.join(wanted)}")

    def __len__(self) -> int:
        return len(self.targets)

    def _render(self, pixels: torch.Tensor) -> torch.Tensor:
        images = pixels.float().div_(255.0)
        if self.image_size != 32:
            images = F.interpolate(
                images,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=self.image_size < 32,
            ).clamp_(0.0, 1.0)
        return _normalise(images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self._render(self.data[i].unsqueeze(0))[0], self.targets[i]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """Batched fetch used by DataLoader: one interpolate call for the whole batch."""
        images = self._render(self.data[torch.as_tensor(list(indices), dtype=torch.long)])
        return list(zip(images.unbind(0), (self.targets[i] for i in indices), strict=True))


# --------------------------------------------------------------------------------------------------
# Entry points


def _split_folder(root: Path, train: bool) -> Path:
    """For a ``root/train`` + ``root/val|test`` layout, the folder of the requested split; else ``root``."""
    if not (root / "train").is_dir() or not _subfolders(root / "train"):
        return root
    if train:
        return root / "train"
    for name in ("val", "validation", "test"):
        if (root / name).is_dir():
            return root / name
    raise InputError(f"{root} has a train/ split but no val/ or test/ folder to evaluate on")


def make_dataset(spec: str, image_size: int, *, train: bool = True, seed: int = 0) -> Dataset:
    """'synthetic', an ImageFolder tree (root/class_x/*.png|jpg...) or a CIFAR-10 python-batches folder.

    ``train`` picks the split: CIFAR's data_batch_* vs test_batch, an ImageFolder's train/ vs val/
    (when it has that layout), and a separate, shorter stream of synthetic images.
    """
    if spec == "synthetic":
        if train:
            return SyntheticShapes(image_size, seed=seed)
        return SyntheticShapes(image_size, length=2_000, seed=seed ^ 0x7E57)  # disjoint from training images
    _check_size(image_size)
    path = Path(os.path.expanduser(str(spec)))
    if not path.exists():
        raise InputError(f"data path {spec!r} does not exist; {_SPEC_HELP}")
    if not path.is_dir():
        hint = (
            " (extract cifar-10-python.tar.gz first)"
            if path.name.endswith((".tar.gz", ".tgz", ".tar"))
            else ""
        )
        raise InputError(f"data path {spec!r} is a file{hint}; {_SPEC_HELP}")
    cifar = _cifar_folder(path)
    if cifar is not None:
        return Cifar10Batches(cifar, image_size, train=train)
    folder = _split_folder(path, train)
    if not _subfolders(folder):
        loose = any(_is_image(p.name) for p in folder.iterdir() if p.is_file())
        what = "holds images but no class subfolders" if loose else "has no subfolders"
        raise InputError(f"data folder {folder} {what}; {_SPEC_HELP}")
    return ImageFolderDataset(folder, image_size)


def make_loader(
    dataset: Dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0, num_workers: int = 0
) -> DataLoader:
    """A DataLoader whose shuffle order depends only on ``seed``.

    When shuffling (training) and the dataset holds at least one full batch, the ragged last batch
    is dropped: a batch of one breaks BatchNorm in training mode.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch size must be an integer >= 1, got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise InputError(f"number of loader workers must be an integer >= 0, got {num_workers!r}")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
        num_workers=num_workers,
        drop_last=shuffle and len(dataset) >= batch_size,  # type: ignore[arg-type]
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )
