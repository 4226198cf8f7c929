"""The lesson's pre-defined helpers (its ``icwcnn_functions.py``), for the episode notebooks.

Episode 01 of the 2026 lesson starts with ``train_ds, val_ds, test_ds = icfn.prepare_datasets()``
and episode 02 shows what that function does: three calls of Keras's
``image_dataset_from_directory``, one per folder of ``cifar10_images_small/`` (1,000 training,
250 validation and 250 test images of five CIFAR-10 classes). :func:`prepare_datasets` does
the same for any of the notebooks' data sets, and :func:`write_image_folders` writes the
built-in shapes in the lesson's folder layout, so episode 02 can read image folders offline.
The lesson's own folders come from any CIFAR-10 copy with ``cnn-torch lesson-data``
(``sources/lesson_folders.py``); ``DATASET = "folder"`` reads them.

Keras's ``train_ds`` is a ``tf.data.Dataset`` that hands out batches of (images, labels) and
knows its ``class_names``. A :class:`Split` holds a whole split in memory instead, as
``fit``, ``evaluate`` and ``predict`` take it: ``uint8`` images, channels first
(N, 3, height, width), and ``int64`` labels.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from cnn_torch import data
from cnn_torch.errors import UserError
from cnn_torch.sources.lesson_data import repeated_classes
from cnn_torch.sources.lesson_folders import LESSON_CLASSES, write_png, write_split_folders

# The lesson's five classes of CIFAR-10, in its order (episode 01's class_names).
CIFAR10_FIVE = list(LESSON_CLASSES)
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
    class_names: list[str] | None = None,
) -> tuple[Split, Split, Split]:
    """``(train_ds, val_ds, test_ds)``, as the lesson's ``icfn.prepare_datasets()``.

    ``dataset``: ``"shapes"`` (built in, offline), ``"cifar10"`` (all ten classes),
    ``"cifar10-5"`` (the lesson's five classes of it, :data:`CIFAR10_FIVE`) or ``"folder"``
    (``data_dir`` holding ``train/<class>/`` and, if there are, ``val/`` and ``test/``). CIFAR-10
    is read from ``data_dir`` (default ``data/``), downloaded into it when it holds no copy: a copy
    is torchvision's ``cifar-10-batches-py/`` or image files in ``train/<class>/``.
    ``class_names`` keeps those classes only, in that order (Keras's ``class_names``; for
    ``"cifar10-5"`` the five by default). ``limit`` caps the training images (class-balanced,
    seeded; for shapes, the number generated). A source without a ``val/`` split gives the last
    20% of its training images to ``val_ds`` (Keras's ``validation_split=0.2``); one without a
    ``test/`` split (a folder with ``train/`` alone) uses ``val_ds`` as ``test_ds`` too.
    With the default ``limit`` of 1,250, shapes gives the lesson's 1,000 / 250 / 250.

    Mistakes in the settings are named as the notebooks' settings cell spells them
    (``DATA_DIR = ...``), checked before anything is read or downloaded.
    """
    check_settings(dataset, data_dir, limit, class_names)
    if class_names is None and dataset == "cifar10-5":
        class_names = CIFAR10_FIVE
    source = "cifar10" if dataset == "cifar10-5" else dataset
    has_val = data_dir is not None and data.reads_image_folder(source, data_dir) and (Path(data_dir) / "val").is_dir()
    try:
        lesson = data.load_data(source, None if source == "shapes" else data_dir, limit=limit, seed=seed,
                                image_size=image_size, class_names=class_names,
                                validation_split=None if has_val else 0.2)  # fmt: skip
    except data.CifarUnavailable as error:  # not on disk, and no network: say it in the settings' words
        where = Path(data_dir) if data_dir is not None else Path("data")
        raise UserError(
            f"CIFAR-10 is not in {where}/ and could not be downloaded ({error.reason}): set DATA_DIR to a folder"
            ' holding cifar-10-batches-py/ or train/<class>/, or DATASET = "shapes" to run offline'
        ) from None

    def split(name: str, images: torch.Tensor, labels: torch.Tensor) -> Split:
        where = lesson.split_sources.get(name, f"{lesson.source}, {name} split")
        return Split(images, labels, list(lesson.class_names), where)

    train_ds = split("train", lesson.train_images, lesson.train_labels)
    val_ds = split("val", *lesson.validation_data)
    test_ds = split("test", *lesson.test_data) if lesson.test_images is not None else val_ds
    return train_ds, val_ds, test_ds


def check_settings(
    dataset: str, data_dir: str | os.PathLike | None, limit: int | None, class_names: list[str] | None = None
) -> None:
    """The notebooks' settings (``DATASET``, ``DATA_DIR``, ``LIMIT``), checked before any data is
    read, each mistake named as the settings cell spells it: the command line's checks name its
    flags (``cli/flags.py``), these name the cell's lines."""
    if dataset not in NOTEBOOK_DATASETS:
        raise UserError(f"unknown DATASET {dataset!r}: choose one of {', '.join(NOTEBOOK_DATASETS)}")
    if limit is not None and limit <= 0:
        raise UserError(f"LIMIT = {limit} is not a number of images: set LIMIT = 1250, or None for all of them")
    repeated = repeated_classes(class_names)
    if repeated:
        raise UserError(f"class_names names {', '.join(repeated)} more than once: name each class once")
    if data_dir is None:
        if dataset == "folder":
            raise UserError('DATASET = "folder" reads DATA_DIR: set DATA_DIR = "path/to/images", the folder'
                            " that holds train/<class>/<image>")  # fmt: skip
        return
    setting, root = f'DATA_DIR = "{data_dir}"', Path(data_dir).expanduser()
    if dataset == "shapes":
        warnings.warn(f'{setting} is not used: DATASET = "shapes" is generated; set DATA_DIR = None, or'
                      ' DATASET = "folder" to read it', stacklevel=3)  # fmt: skip
        return
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise UserError(f"{setting} {what}: set it to the folder that holds train/<class>/ or cifar-10-batches-py/")
    if root.name in ("train", "val", "test") and not (root / "train").is_dir():
        raise UserError(f'{setting} is a {root.name}/ folder: set DATA_DIR = "{root.parent}", the folder that holds it')
    if dataset == "folder" and not data.holds_image_folder(root):
        if (root / "cifar-10-batches-py").is_dir():
            raise UserError(f'{setting} holds CIFAR-10\'s cifar-10-batches-py/, not train/<class>/: set'
                            ' DATASET = "cifar10" or "cifar10-5"')  # fmt: skip
        raise UserError(f"{setting} holds no train/<class>/ folders: set it to the folder that holds train/")


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
    class_names = next(iter(splits.values())).class_names
    chunks = {name: [(split.images, split.labels.tolist(), [f"{n:04d}" for n in range(len(split))])]
              for name, split in splits.items()}  # fmt: skip
    write_split_folders(root, class_names, chunks)  # all or nothing: an interrupted write leaves no root
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
    write_png(image, path)
    return path
