"""The lesson's data, from whichever source a learner has: the one call to make.

:func:`load_data` picks a source in ``cnn_torch/sources/`` and returns a :class:`LessonData`
(``sources/lesson_data.py``):

- ``"cifar10"`` (``sources/cifar10.py``): ``keras.datasets.cifar10.load_data()``, through torchvision;
  or, from a ``data_dir`` that holds an image-folder copy of CIFAR-10 (``train/<class>/``), that copy;
- ``"folder"`` (``sources/image_folder.py``): ``DIR/train``, ``DIR/val``, ``DIR/test``, each with a
  folder per class, read as ``keras.utils.image_dataset_from_directory`` reads them;
- ``"shapes"`` (``sources/shapes.py``): ten classes of shapes in cluttered, CIFAR-like scenes,
  generated from a seed, so the lesson runs offline.

The 2026 lesson's ``cifar10_images_small/`` folders are built from any CIFAR-10 copy by
``cnn-torch lesson-data`` (``sources/lesson_folders.py``), and read as a "folder".

Images stay ``uint8`` in NCHW layout in memory (CIFAR-10's 50,000 training images take 150
MB as uint8 and 600 MB as float32); the training loop converts one batch at a time with
``as_float`` (``platform/device.py``), which is the lesson's ``/ 255.0``; :func:`to_float`
does the same to a whole set of images.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path

from cnn_torch.errors import UserError
from cnn_torch.sources.cifar10 import CifarUnavailable, load_cifar10
from cnn_torch.sources.image_files import resize
from cnn_torch.sources.image_folder import (
    IMAGE_EXTENSIONS,
    cache_dir,
    check_data_dir,
    load_image_folder,
    wrong_folder_message,
)
from cnn_torch.sources.lesson_data import (
    LessonData,
    check_class_names,
    limit_per_class,
    select_classes,
    split_validation,
    to_float,
    validation_cut,
)
from cnn_torch.sources.shapes import DEFAULT_TRAIN_SIZE as DEFAULT_SHAPES_SIZE
from cnn_torch.sources.shapes import SHAPE_CLASSES, make_shapes

__all__ = [
    "DATASETS", "DEFAULT_SHAPES_SIZE", "IMAGE_EXTENSIONS", "SHAPE_CLASSES", "CifarUnavailable", "LessonData",
    "cache_dir", "check_data_dir", "holds_image_folder", "limit_per_class", "load_cifar10", "load_data",
    "load_data_or_shapes", "load_image_folder", "make_shapes", "reads_image_folder", "resolve_dataset",
    "select_classes", "split_validation", "to_float", "validation_cut",
]  # fmt: skip

DATASETS = ("cifar10", "folder", "shapes")


def resolve_dataset(dataset: str | None, data_dir: str | os.PathLike | None) -> str:
    """The data set to load: ``dataset`` if given; else, for a ``data_dir``, what it holds
    ("folder" for train/<class>/, "cifar10" for cifar-10-batches-py/); else "cifar10"."""
    if dataset not in (None, "auto"):
        if dataset not in DATASETS:
            raise UserError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
        if data_dir is not None and dataset == "shapes":
            warnings.warn(f"--data-dir {data_dir} is not used: the shapes data is generated; drop --data-dir or"
                          " --dataset shapes", stacklevel=2)  # fmt: skip
        elif data_dir is not None:
            check_data_dir(data_dir)
        return dataset
    if data_dir is None:
        return "cifar10"
    root = check_data_dir(data_dir)
    if holds_image_folder(root):
        return "folder"
    if (root / "cifar-10-batches-py").is_dir():
        return "cifar10"
    raise UserError(wrong_folder_message(root))


def holds_image_folder(data_dir: str | os.PathLike) -> bool:
    """Whether ``data_dir`` holds ``train/<class>/``: image files, as a folder is read."""
    train_dir = Path(data_dir).expanduser() / "train"
    return train_dir.is_dir() and any(entry.is_dir() for entry in os.scandir(train_dir))


def reads_image_folder(dataset: str, data_dir: str | os.PathLike | None) -> bool:
    """Whether :func:`load_data` reads ``dataset`` from image files in ``data_dir/train/<class>/``:
    always for "folder"; for "cifar10", when ``data_dir`` holds such a copy and not torchvision's
    ``cifar-10-batches-py/`` (the original pixels, preferred when both are there)."""
    if dataset == "folder":
        return True
    return (
        dataset == "cifar10" and data_dir is not None and holds_image_folder(data_dir)
        and not (Path(data_dir).expanduser() / "cifar-10-batches-py").is_dir()
    )  # fmt: skip


def load_data(
    dataset: str | None,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    seed: int = 0,
    image_size: tuple[int, int] = (32, 32),
    download: bool = True,
    class_names: list[str] | None = None,
    crop_to_aspect_ratio: bool = False,
    pad_to_aspect_ratio: bool = False,
    validation_split: float | None = None,
    jpeg_decoder: str = "keras",
) -> LessonData:
    """Load ``dataset`` ("cifar10", "folder" or "shapes") at ``image_size`` (height, width).

    ``validation_split`` is ``image_dataset_from_directory(validation_split=..., subset="both")``:
    the last fraction of the (shuffled) training images becomes the val split.

    ``"cifar10"`` reads ``data_dir/cifar-10-batches-py`` (downloading it when absent), or, where
    ``data_dir`` holds an image-folder copy of CIFAR-10 instead (``train/<class>/<image>``), that
    copy. ``class_names`` keeps those classes only, numbered in that order (Keras's
    ``class_names``), whatever the source: the lesson's five come from any copy of CIFAR-10.
    ``limit`` caps the training images: for "shapes" it is the number generated (default
    ``DEFAULT_SHAPES_SIZE``); elsewhere a class-balanced random subset (seeded by ``seed``)
    of the training split, taken after the class subset.

    ``jpeg_decoder``: a folder's JPEG files read as Keras reads them ("keras", TensorFlow's
    decoder) or with PIL's accurate decoder ("accurate"), a few levels apart.
    """
    dataset = resolve_dataset(dataset, data_dir)
    check_class_names(class_names)  # for every source: a folder would be read twice, under two labels
    if limit is not None and limit <= 0:
        raise UserError(f"--limit must be a positive number of images, got {limit}")
    image_size = (int(image_size[0]), int(image_size[1]))
    if min(image_size) < 1:
        raise UserError(f"--image-size must be two positive numbers (height width), got {image_size}")
    if dataset == "shapes":
        data = select_classes(make_shapes(n_train=limit or DEFAULT_SHAPES_SIZE, seed=seed, image_size=image_size),
                              class_names)  # fmt: skip
        limit = None  # for shapes, --limit is how many to make
    elif not reads_image_folder(dataset, data_dir):  # CIFAR-10's batches, through torchvision
        data = load_cifar10(data_dir if data_dir is not None else "data", download=download)
        data = _resized(select_classes(data, class_names), image_size, crop_to_aspect_ratio, pad_to_aspect_ratio)
    else:  # a folder of images: the learner's own, or an image-folder copy of CIFAR-10
        if data_dir is None:
            raise UserError("--dataset folder needs --data-dir: pass the folder that holds train/<class>/<image>")
        data = load_image_folder(data_dir, image_size, seed, class_names, crop_to_aspect_ratio, pad_to_aspect_ratio,
                                 jpeg_decoder)  # fmt: skip
    if limit is not None:
        train_images, train_labels = limit_per_class(data.train_images, data.train_labels, limit, seed)
        data = replace(data, train_images=train_images, train_labels=train_labels)
    if validation_split:  # Keras's rule: the LAST fraction, in the order the images come in
        train_images, train_labels, val_images, val_labels = split_validation(
            data.train_images, data.train_labels, validation_split
        )
        where = f"the last {validation_split:g} of the training images" + (
            f" ({data.split_sources['train']})" if reads_image_folder(dataset, data_dir) else ""
        )
        data = replace(data, train_images=train_images, train_labels=train_labels, val_images=val_images,
                       val_labels=val_labels, split_sources={**data.split_sources, "val": where})  # fmt: skip
    return data


def _resized(data: LessonData, image_size: tuple[int, int], crop: bool, pad: bool) -> LessonData:
    """Arrays of one size (CIFAR-10's 32x32) at another ``image_size``, resized as a folder would be."""
    if data.image_size == image_size:
        return data

    def scaled(images):
        return None if images is None else resize(images, image_size, crop, pad)

    counts = sum(len(images) for images in (data.train_images, data.val_images, data.test_images) if images is not None)
    return replace(data, train_images=scaled(data.train_images), val_images=scaled(data.val_images),
                   test_images=scaled(data.test_images), resized_from={data.image_size: counts})  # fmt: skip


def load_data_or_shapes(
    dataset: str | None,
    data_dir: str | os.PathLike | None,
    limit: int | None = None,
    seed: int = 0,
    **options,
) -> tuple[LessonData, str | None]:
    """``(data, notice)``: the command line's default data, CIFAR-10 as the lesson uses it.

    When no data was asked for by name (no dataset, no data_dir) and CIFAR-10 is neither on
    disk nor downloadable (no network), the built-in shapes data stands in, so the first run
    still trains; ``notice`` then says so in one line. Otherwise ``notice`` is None.
    ``options`` are :func:`load_data`'s (``image_size``, ``class_names``, ...).
    """
    try:
        return load_data(dataset, data_dir, limit=limit, seed=seed, **options), None
    except CifarUnavailable as error:
        if dataset not in (None, "auto") or data_dir is not None:
            raise  # CIFAR-10 was asked for by name: say why it is not there
        notice = (
            f"CIFAR-10 could not be downloaded ({error.reason}); training on the built-in shapes data"
            " instead; pass --data-dir path/to/images for your own copy"
        )
        if options.get("class_names"):  # CIFAR-10's names mean nothing to the shapes
            options = {**options, "class_names": None}
            notice += " (--classes ignored: they name CIFAR-10's classes)"
        return load_data("shapes", limit=limit, seed=seed, **options), notice
