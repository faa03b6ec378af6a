"""Image data: CIFAR-10 and CIFAR-100 from their binary archives, ImageNet from a folder, and
the paper's preprocessing (resize to 224 × 224, ViT normalisation) with standard augmentation.

CIFAR's binary archives are read by a small reader (no pickle): each record is a label byte
(CIFAR-100: a coarse and a fine label byte) and 3 × 32 × 32 pixel bytes, channel by channel.
The archives download into the cache on first use, checked against the publisher's md5
(:mod:`agora.data.download`), or are read from ``$AGORA_DATA_DIR/cifar-10-batches-bin/`` and
``$AGORA_DATA_DIR/cifar-100-binary/``. Every file must be whole records with labels of the data
set's classes, and (``verify=True``) hold the publisher's number of records: a file cut short,
even at a record boundary, is an error naming it.

An image folder (``root/<class>/<image>``) takes every visible subfolder as a class: hidden ones
(``.ipynb_checkpoints``, any name starting with ``.``) are ignored, and an empty class folder is
an error, since it would take a label and shift every later class's.

Configs name the tasks as ``agora.data.images:cifar_task`` and
``agora.data.images:imagenet_task``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from agora.data.download import Archive, DataError, Source, locate, read_verified

VIT_MEAN = VIT_STD = (0.5, 0.5, 0.5)  # the paper's ViT checkpoints normalise to [-1, 1]
SPLIT_SEED = 20  # the fixed shuffle that carves validation out of train

CIFAR10 = Source(
    name="CIFAR-10",
    folder="cifar-10-batches-bin",
    files={f"data_batch_{i}.bin": "" for i in range(1, 6)} | {"test_batch.bin": ""},
    archive=Archive(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        size=None,
        md5="c32a1d4ab5d03f1284b67883e8d87530",  # the publisher's (cs.toronto.edu/~kriz/cifar)
        sha256=None,
        folder="cifar-10-batches-bin",
    ),
    aliases=("cifar10",),
)
CIFAR100 = Source(
    name="CIFAR-100",
    folder="cifar-100-binary",
    files={"train.bin": "", "test.bin": ""},
    archive=Archive(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        size=None,
        md5="03b5dce01913d631647c71ecec9e9cb8",
        sha256=None,
        folder="cifar-100-binary",
    ),
    aliases=("cifar100",),
)
CIFARS = {"cifar10": (CIFAR10, 1, 10), "cifar100": (CIFAR100, 2, 100)}  # label bytes, classes
PIXELS = 3 * 32 * 32
# how many records each of the publisher's files holds (cs.toronto.edu/~kriz/cifar)
PUBLISHED_RECORDS = {f"data_batch_{i}.bin": 10000 for i in range(1, 6)} | {
    "test_batch.bin": 10000, "train.bin": 50000, "test.bin": 10000,
}  # fmt: skip


def read_cifar(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    verify: bool = True,
) -> tuple[Tensor, Tensor]:
    """One split of CIFAR-10 or CIFAR-100 as ``uint8`` images ``[N, 3, 32, 32]`` and labels
    ``[N]`` (CIFAR-100's fine labels).

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        split: ``"train"`` or ``"test"``.
        data_dir: see :func:`agora.data.download.locate`. (default: ``None``)
        download: allow downloading into the cache. (default: ``True``)
        verify: require the publisher's number of records in each file (``False`` reads
            generated or edited files of any length). (default: ``True``)

    Raises:
        DataError: a file that is missing or empty, whose size is not a whole number of
            records, that holds a label outside the data set's classes (naming the record), or
            (``verify``) that holds another number of records than the publisher's.
    """
    source, label_bytes, _ = _cifar(name)
    root = locate(source, data_dir, download=download)
    files = {
        "cifar10": {"train": [f"data_batch_{i}.bin" for i in range(1, 6)],
                    "test": ["test_batch.bin"]},
        "cifar100": {"train": ["train.bin"], "test": ["test.bin"]},
    }[name][split]  # fmt: skip
    images, labels = [], []
    for file in files:
        table = _cifar_records(name, root, file, verify)  # [n, label_bytes + PIXELS]
        labels.append(table[:, label_bytes - 1].long())  # the fine label is the last byte
        images.append(table[:, label_bytes:].reshape(-1, 3, 32, 32))
    return torch.cat(images), torch.cat(labels)


def _cifar_records(name: str, root: Path, file: str, verify: bool) -> Tensor:
    """The records of one CIFAR file as a ``uint8 [n, record]`` table, checked whole."""
    source, label_bytes, classes = _cifar(name)
    path, record = root / file, label_bytes + PIXELS
    raw = read_verified(source, root, file)
    fix = f"Replace it with the original (delete {root}/ to re-download it into the cache)"
    if not raw:
        raise DataError(f"{path}: empty (0 bytes), so no {source.name} record. {fix}")
    if len(raw) % record:
        raise DataError(
            f"{path}: {len(raw)} bytes is not a whole number of {record}-byte {source.name} "
            f"records; the file is truncated or not {source.name}'s. {fix}"
        )
    table = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(-1, record)
    published = PUBLISHED_RECORDS[file]
    if verify and len(table) != published:
        raise DataError(
            f"{path}: {len(table)} records, but the published {source.name} {file} holds "
            f"{published}: the file is cut short (at a record boundary) or not the "
            f"publisher's. {fix}, or pass verify=False to read generated or edited files"
        )
    label = table[:, label_bytes - 1]  # [n]
    if (bad := (label >= classes).nonzero()).numel():
        first = bad[0, 0].item()
        raise DataError(
            f"{path}: record {first} (at byte {first * record}) has label {label[first].item()}, "
            f"but {source.name} has classes 0..{classes - 1} ({len(bad)} such records); the "
            f"file is corrupt or not {source.name}'s. {fix}"
        )
    return table


def _cifar(name: str) -> tuple[Source, int, int]:
    if name not in CIFARS:
        raise ValueError(f"unknown CIFAR {name!r}; choose one of {list(CIFARS)}")
    return CIFARS[name]


class Preprocess:
    """The paper's preprocessing: ``uint8 [3, h, w]`` -> ``float [3, size, size]``, resized
    (bilinear) and normalised with the ViT's mean and std; with ``augment``, first the
    standard augmentation (a random crop of the image padded by ``pad`` pixels, and a random
    horizontal flip).

    Example:
        >>> x = Preprocess(size=64)(torch.full((3, 32, 32), 255, dtype=torch.uint8))
        >>> tuple(x.shape), x.max().item()
        ((3, 64, 64), 1.0)
    """

    def __init__(self, size: int = 224, augment: bool = False, pad: int = 4,
                 mean: tuple[float, ...] = VIT_MEAN, std: tuple[float, ...] = VIT_STD) -> None:  # fmt: skip
        self.size, self.augment, self.pad = size, augment, pad
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __call__(self, image: Tensor) -> Tensor:
        x = image.float() / 255  # [3, h, w]
        if self.augment:
            h, w = x.shape[-2:]
            padded = F.pad(x, (self.pad,) * 4, mode="reflect")
            i, j = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
            x = padded[:, i : i + h, j : j + w]
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x[None], size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=True)[0]  # fmt: skip
        return (x - self.mean) / self.std


class ImageDataset(Dataset):
    """Images and labels, preprocessed when read: ``(x [3, S, S], y)`` pairs.

    ``augmented`` is True when each read draws random numbers (augmentation): the frozen-state
    cache then switches itself off, since a cached state would be of another view.
    """

    def __init__(self, images: Any, labels: Tensor, preprocess: Preprocess,
                 read: Any = None) -> None:  # fmt: skip
        self.images, self.labels, self.preprocess = images, labels, preprocess
        self.read = read  # how an entry of ``images`` becomes a uint8 [3, h, w] tensor
        self.augmented = preprocess.augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index] if self.read is None else self.read(self.images[index])
        return self.preprocess(image), self.labels[index]


def cifar_task(
    name: str = "cifar10",
    image_size: int = 224,
    valid_size: int = 5000,
    train_size: int | None = None,
    test_size: int | None = None,
    augment: bool = True,
    data_dir: str | None = None,
    verify: bool = True,
) -> dict[str, ImageDataset]:
    """CIFAR-10 or CIFAR-100: ``{"train", "valid", "test"}``.

    ``valid`` is the first ``valid_size`` training images under a fixed shuffle (the same for
    every run), ``train`` the next ``train_size`` (``None``: the rest), ``test`` the official
    test set (its first ``test_size``). Training images are augmented when ``augment``.
    ``verify=False`` reads files with another number of records than the publisher's
    (generated or edited data; see :func:`read_cifar`).
    """
    images, labels = read_cifar(name, "train", data_dir, verify=verify)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    if not 0 < valid_size < len(labels):
        raise ValueError(f"valid_size must be in 1..{len(labels) - 1}, got {valid_size}")
    valid, train = order[:valid_size], order[valid_size:][:train_size]
    test_images, test_labels = read_cifar(name, "test", data_dir, verify=verify)
    plain, augmented = Preprocess(image_size), Preprocess(image_size, augment=augment)
    return {
        "train": ImageDataset(images[train], labels[train], augmented),
        "valid": ImageDataset(images[valid], labels[valid], plain),
        "test": ImageDataset(test_images[:test_size], test_labels[:test_size], plain),
    }


# -- ImageNet, or any folder of class folders ------------------------------------------------


def read_image(path: str | os.PathLike) -> Tensor:
    """An image file as ``uint8 [3, h, w]`` (RGB).

    Raises:
        DataError: the file is not an image Pillow can read (naming it).
    """
    try:
        from PIL import Image
    except ImportError as error:  # pragma: no cover - Pillow comes with the plot extra
        raise ImportError("Reading image files needs Pillow: pip install pillow") from error
    import numpy as np

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))  # [h, w, 3]
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(
            f"{path}: not a readable image ({error}); replace the file, or remove it"
        ) from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def class_folders(root: str | os.PathLike) -> list[str]:
    """The class folders of ``root``, sorted: every subfolder whose name does not start with
    ``.`` (hidden ones, such as ``.ipynb_checkpoints``, are not classes)."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not _hidden(p))


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


def image_folder(root: str | os.PathLike, preprocess: Preprocess,
                 classes: list[str] | None = None) -> ImageDataset:  # fmt: skip
    """The images of ``root/<class>/*`` (ImageNet's layout), labelled by their class folder's
    index in ``classes`` (default: :func:`class_folders`, which skips hidden folders).

    Hidden files are skipped too. A class folder without an image is an error when the
    classes come from the folders (it would take a label and shift every later class's); with
    ``classes`` given, labels are their positions there and a class may have no image here.

    Raises:
        DataError: no such folder, no image at all, or an empty class folder (naming it).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; expected {root}/<class>/<image> files")
    given = classes is not None
    classes = classes if given else class_folders(root)
    files, labels = [], []
    for index, name in enumerate(classes):
        found = [
            path for path in sorted((root / name).glob("*"))
            if path.suffix.lower() in IMAGE_SUFFIXES and not _hidden(path)
        ]  # fmt: skip
        if not found and not given:
            raise DataError(
                f"{root / name}: a class folder without a .jpeg, .jpg or .png image; it would "
                f"take label {index} and shift the labels of every later class. Add its "
                "images, remove the folder, or pass classes= to fix the labels"
            )
        files += found
        labels += [index] * len(found)
    if not files:
        raise DataError(f"{root}: no .jpeg, .jpg or .png image under {root}/<class>/")
    return ImageDataset(files, torch.tensor(labels), preprocess, read=read_image)


def imagenet_task(
    root: str, image_size: int = 224, valid_size: int = 10000, augment: bool = True
) -> dict[str, ImageDataset]:
    """ImageNet from ``root/train/<wnid>/`` and ``root/val/<wnid>/`` (the official validation
    set, sorted into class folders, as the test split); ``valid`` is ``valid_size`` training
    images under a fixed shuffle."""
    root_path = Path(root)
    train = image_folder(root_path / "train", Preprocess(image_size, augment=augment))
    classes = class_folders(root_path / "train")
    test = image_folder(root_path / "val", Preprocess(image_size), classes)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(SPLIT_SEED))
    valid_index, train_index = order[:valid_size].tolist(), order[valid_size:].tolist()
    files, labels = train.images, train.labels

    def part(index: list[int], preprocess: Preprocess) -> ImageDataset:
        return ImageDataset([files[i] for i in index], labels[index], preprocess, read_image)

    return {
        "train": part(train_index, train.preprocess),
        "valid": part(valid_index, Preprocess(image_size)),
        "test": test,
    }
