"""The lesson's pre-defined helpers (its ``icwcnn_functions.py``), for the episode notebooks.

Episode 01 of the 2026 lesson starts with ``train_ds, val_ds, test_ds = icfn.prepare_datasets()``
and episode 02 shows what that function does: three calls of Keras's
``image_dataset_from_directory``, one per folder of ``cifar10_images_small/`` (1,000 training,
250 validation and 250 test images of five CIFAR-10 classes). :func:`prepare_datasets` does
the same for any of the notebooks' data sets, and :func:`write_image_folders` writes the
built-in shapes in the lesson's folder layout, so episode 02 can read image folders offline.

Keras's ``train_ds`` is a ``tf.data.Dataset`` that hands out batches of (images, labels) and
knows its ``class_names``. A :class:`Split` holds a whole split in memory instead, as
``fit``, ``evaluate`` and ``predict`` take it: ``uint8`` images, channels first
(N, 3, height, width), and ``int64`` labels.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from cnn_torch import data
from cnn_torch.errors import UserError

# The lesson's five classes of CIFAR-10, in its order (episode 01's class_names).
CIFAR10_FIVE = ["airplane", "bird", "cat", "dog", "truck"]
# What the notebooks' DATASET setting takes.
NOTEBOOK_DATASETS = ("shapes", "cifar10", "cifar10-5", "folder")


@dataclass(frozen=True)
class Split:
    """One split of a data set (train, val or test), whole: what Keras's ``train_ds`` batches."""

    images: torch.Tensor  # uint8, (N, channels, height, width)
    labels: torch.Tensor  # int64 class indices, (N,)
    class_names: list[str]  # Keras: train_ds.class_names
    source: str  # where the images came from, e.g. "data/shapes_images_small/val"

    def __len__(self) -> int:
        return len(self.labels)


def prepare_datasets(
    dataset: str = "shapes",
    data_dir: str | os.PathLike | None = None,
    limit: int | None = 1250,
    seed: int = 0,
    image_size: tuple[int, int] = (32, 32),
) -> tuple[Split, Split, Split]:
    """``(train_ds, val_ds, test_ds)``, as the lesson's ``icfn.prepare_datasets()``.

    ``dataset``: ``"shapes"`` (built in, offline), ``"cifar10"`` (all ten classes, downloaded
    into ``data_dir``, default ``data/``), ``"cifar10-5"`` (the lesson's five classes of it,
    :data:`CIFAR10_FIVE`) or ``"folder"`` (``data_dir`` holding ``train/<class>/`` and, if there
    are, ``val/`` and ``test/``). ``limit`` caps the training images (class-balanced, seeded;
    for shapes, the number generated). A source without a ``val/`` split gives the last 20%
    of its training images to ``val_ds`` (Keras's ``validation_split=0.2``); one without a
    ``test/`` split (a folder with ``train/`` alone) uses ``val_ds`` as ``test_ds`` too.
    With the default ``limit`` of 1,250, shapes gives the lesson's 1,000 / 250 / 250.
    """
    if dataset not in NOTEBOOK_DATASETS:
        raise UserError(f"unknown DATASET {dataset!r}: choose one of {', '.join(NOTEBOOK_DATASETS)}")
    class_names = CIFAR10_FIVE if dataset == "cifar10-5" else None
    source = "cifar10" if dataset == "cifar10-5" else dataset
    has_val = source == "folder" and data_dir is not None and (Path(data_dir) / "val").is_dir()
    lesson = data.load_data(source, data_dir, limit=limit, seed=seed, image_size=image_size,
                            class_names=class_names, validation_split=None if has_val else 0.2)  # fmt: skip

    def split(name: str, images: torch.Tensor, labels: torch.Tensor) -> Split:
        where = lesson.split_sources.get(name, f"{lesson.source}, {name} split")
        return Split(images, labels, list(lesson.class_names), where)

    train_ds = split("train", lesson.train_images, lesson.train_labels)
    val_ds = split("val", *lesson.validation_data)
    test_ds = split("test", *lesson.test_data) if lesson.test_images is not None else val_ds
    return train_ds, val_ds, test_ds


def write_image_folders(splits: dict[str, Split], root: str | os.PathLike) -> Path:
    """Write each split's images as PNG files in the lesson's layout, ``root/<split>/<class>/<n>.png``.

    ``splits`` maps a folder name ("train", "val", "test") to a :class:`Split`; every split gets
    a folder for every class (the reader expects images in each). PNG is lossless, so reading
    the folders back gives the same pixels. Nothing is written when ``root`` already exists
    (delete it to write it again).
    """
    root = Path(root)
    if root.exists():
        return root
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # what an interrupted write left
    for split_name, split in splits.items():
        for class_name in split.class_names:
            (partial / split_name / class_name).mkdir(parents=True, exist_ok=True)
        for n, (image, label) in enumerate(zip(split.images, split.labels.tolist(), strict=True)):
            _write_png(image, partial / split_name / split.class_names[label] / f"{n:04d}.png")
    partial.rename(root)  # all or nothing: an interrupted write leaves no half-filled root
    return root


def example_image_file(path: str | os.PathLike, shape: str = "star", seed: int = 7,
                       size: tuple[int, int] = (96, 128)) -> Path:  # fmt: skip
    """Write a new picture of a ``shape`` (one of the shapes classes) that no data set holds,
    larger than the training images and not square: a stand-in for "a photo of your own"
    (episodes 02 and 06). Returns the path."""
    from cnn_torch.sources.shapes import SHAPE_CLASSES, make_shapes

    if shape not in SHAPE_CLASSES:
        raise UserError(f"unknown shape {shape!r}: choose one of {', '.join(SHAPE_CLASSES)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    drawn = make_shapes(n_train=len(SHAPE_CLASSES), n_test=0, seed=seed, image_size=size)  # one of each class
    image = drawn.train_images[int(torch.nonzero(drawn.train_labels == SHAPE_CLASSES.index(shape))[0])]
    _write_png(image, path)
    return path


def _write_png(image: torch.Tensor, path: Path) -> None:
    """A ``uint8`` (3, height, width) image as a PNG file (lossless)."""
    from PIL import Image

    Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()).save(path)
