"""The 2026 lesson's data folders, ``cifar10_images_small/``, built from a CIFAR-10 copy.

The lesson downloads five CIFAR-10 classes (airplane, bird, cat, dog, truck) in ``train/``,
``val/`` and ``test/`` folders: 1,000, 250 and 250 images, 200, 50 and 50 of each class (its
confusion matrix counts 50 test images per class). Offline, a learner has CIFAR-10 itself:
torchvision's ``cifar-10-batches-py/`` or an image-folder copy (``train/<class>/*.jpg``).
:func:`build_lesson_folders` draws the lesson's layout from either:

- a seeded, class-balanced random choice; no image is in two splits. ``test/`` takes the
  source's own test images when it has them (CIFAR-10's ``test_batch``, a ``test/`` folder),
  else training images that ``train/`` and ``val/`` do not hold;
- PNG files, which are lossless: reading one back gives the pixels cnn-torch reads from the
  source, with no second JPEG rounding. Each file keeps its source's name, so an image can be
  traced back (``03127.png``: image 3127 of the training batches; ``0450.png``: ``cat/0450.jpg``);
- all or nothing: the folders are written into ``<name>.partial/`` beside the target and
  renamed when complete, so an interrupted build leaves nothing that looks like the lesson's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from cnn_torch.errors import UserError
from cnn_torch.sources.cifar10 import CifarUnavailable, load_cifar10
from cnn_torch.sources.image_files import decode_files
from cnn_torch.sources.image_folder import _list_split
from cnn_torch.sources.lesson_data import repeated_classes

# The lesson's five classes of CIFAR-10, in its order (episode 01's class_names).
LESSON_CLASSES = ["airplane", "bird", "cat", "dog", "truck"]
# Images of each class in each of the lesson's folders: 1,000 / 250 / 250 in all.
LESSON_PER_CLASS = {"train": 200, "val": 50, "test": 50}
LESSON_FOLDER_NAME = "cifar10_images_small"


@dataclass(frozen=True)
class LessonFolders:
    """What :func:`build_lesson_folders` wrote, for the lines that say so."""

    root: Path  # the folder holding train/, val/ and test/
    source: Path  # the CIFAR-10 copy read
    source_kind: str  # "torchvision's cifar-10-batches-py/" or "image files, train/<class>/"
    class_names: list[str]
    counts: dict[str, int]  # images per split, in total
    per_class: dict[str, int]  # images of each class per split
    split_sources: dict[str, str]  # where in the source each split came from: {"test": "test_batch", ...}


@dataclass(frozen=True)
class _Pool:
    """The images one split of the source offers: a label and a name each, read when chosen."""

    labels: torch.Tensor  # int64 index into the class list; -1 for a class not asked for
    names: list[str]  # the file name each image gets, without ".png"
    read: Callable[[list[int]], list[torch.Tensor]]  # uint8 (3, H, W) images of these indices
    where: str  # the source's own name for it: "train/", "data_batch_1..5"


def build_lesson_folders(
    source: str | os.PathLike,
    target: str | os.PathLike,
    seed: int = 0,
    class_names: list[str] | None = None,
    per_class: dict[str, int] | None = None,
) -> LessonFolders:
    """Write ``target/{train,val,test}/<class>/*.png`` from the CIFAR-10 copy in ``source``.

    ``source`` holds ``cifar-10-batches-py/`` (torchvision's download) or ``train/<class>/``
    (image files; ``test/<class>/`` too, if it has one). ``class_names`` and ``per_class``
    default to the lesson's (:data:`LESSON_CLASSES`, :data:`LESSON_PER_CLASS`); ``seed`` picks
    the images. ``target`` must not exist, or be an empty folder: nothing is overwritten.
    """
    class_names = list(class_names or LESSON_CLASSES)
    if repeated_classes(class_names):
        raise UserError(f"class_names names {', '.join(repeated_classes(class_names))} more than once: name each once")
    per_class = dict(per_class or LESSON_PER_CLASS)
    if sorted(per_class) != ["test", "train", "val"] or min(per_class.values()) < 1:
        raise UserError(f"per_class must give train, val and test a positive count each, got {per_class}")
    target = Path(target).expanduser()
    _check_target(target)
    source, kind, pools = _read_source(Path(source).expanduser(), class_names)
    chosen = _choose(pools, class_names, per_class, torch.Generator().manual_seed(seed))
    write_split_folders(
        target, class_names, {split: _in_chunks(*pool_indices) for split, pool_indices in chosen.items()}
    )
    return LessonFolders(
        root=target, source=source, source_kind=kind, class_names=class_names,
        counts={split: per_class[split] * len(class_names) for split in chosen}, per_class=per_class,
        split_sources={split: pool.where for split, (pool, _) in chosen.items()},
    )  # fmt: skip


# --------------------------------------------------------------------------- the target


def _check_target(target: Path) -> None:
    """Nothing is ever written over: the target is new, or an empty folder (made for it)."""
    if target.is_file():
        raise UserError(f"{target} is a file: name a new folder for the lesson's images")
    if target.is_dir() and any(target.iterdir()):
        raise UserError(f"{target} already exists and is not empty: delete it first, or name a new folder")


def write_split_folders(target: str | os.PathLike, class_names: list[str], splits: dict[str, Iterable]) -> None:
    """Write ``target/<split>/<class>/<name>.png``, all or nothing, in the lesson's layout.

    ``splits`` maps a folder name ("train", "val", "test") to ``(images, labels, names)`` chunks:
    ``uint8`` (3, H, W) images, their labels (indices into ``class_names``) and file names
    without ".png". Every split gets a folder for every class. The files go into
    ``<target>.partial/``, renamed to ``target`` (new, or an empty folder) once all are written.
    """
    target = Path(target)
    partial = target.with_name(target.name + ".partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)  # what an earlier, interrupted write left
        for split, chunks in splits.items():
            for class_name in class_names:
                (partial / split / class_name).mkdir(parents=True)
            for images, labels, names in chunks:
                for image, label, name in zip(images, labels, names, strict=True):
                    write_png(image, partial / split / class_names[label] / f"{name}.png")
        if target.is_dir():
            target.rmdir()  # an empty folder (never a full one: it fails): Windows cannot rename over it
        partial.rename(target)
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise UserError(
            f"cannot write {target} ({error.strerror or error}): name a folder on a disk you can write to"
        ) from None
    except BaseException:  # Ctrl-C, an image that cannot be decoded: no half-written folder stays
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _in_chunks(pool: _Pool, indices: list[int], size: int = 1000):
    """``(images, labels, names)`` of the chosen images, a chunk at a time: bounded memory."""
    for start in range(0, len(indices), size):
        part = indices[start : start + size]
        yield pool.read(part), pool.labels[part].tolist(), [pool.names[i] for i in part]


def write_png(image: torch.Tensor, path: str | os.PathLike) -> None:
    """A ``uint8`` (3, height, width) image as a PNG file: lossless, the same pixels read back."""
    from PIL import Image

    Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()).save(path, format="PNG")


# --------------------------------------------------------------------------- the source


def _read_source(source: Path, class_names: list[str]) -> tuple[Path, str, dict[str, _Pool]]:
    """``(source, kind, pools)``: the CIFAR-10 copy's folder, what it is, and its "train" (and "test") images."""
    if source.name == "cifar-10-batches-py" or (source.name == "train" and not (source / "train").is_dir()):
        source = source.parent  # the batches' or the training images' own folder: its parent holds it
    if not source.is_dir():
        what = "is a file" if source.exists() else "does not exist"
        raise UserError(f"{source} {what}: name the folder that holds cifar-10-batches-py/ or train/<class>/")
    if (source / "cifar-10-batches-py").is_dir():
        return source, "torchvision's cifar-10-batches-py/", _batch_pools(source, class_names)
    if (source / "train").is_dir():
        return source, "image files, train/<class>/", _folder_pools(source, class_names)
    raise UserError(
        f"{source} holds neither cifar-10-batches-py/ (torchvision's CIFAR-10) nor train/<class>/ (image files):"
        " name the folder that holds one"
    )


def _batch_pools(source: Path, class_names: list[str]) -> dict[str, _Pool]:
    """CIFAR-10's pickled batches, read by torchvision as ``load_cifar10`` reads them (no download)."""
    try:
        cifar = load_cifar10(source, download=False)
    except CifarUnavailable as error:  # the folder is there but torchvision cannot read it
        raise UserError(
            f"cannot read CIFAR-10 in {source / 'cifar-10-batches-py'} ({error.reason}): the copy is damaged;"
            " delete that folder and download CIFAR-10 again"
        ) from None
    unknown = [name for name in class_names if name not in cifar.class_names]
    if unknown:
        raise UserError(f"{', '.join(unknown)} not in CIFAR-10's classes: choose from {' '.join(cifar.class_names)}")
    relabel = torch.full((len(cifar.class_names),), -1, dtype=torch.int64)
    for new, name in enumerate(class_names):
        relabel[cifar.class_names.index(name)] = new

    def pool(images: torch.Tensor, labels: torch.Tensor, where: str) -> _Pool:
        digits = len(str(len(labels) - 1))  # 00000..49999: the index in the batches, in order
        names = [f"{i:0{digits}d}" for i in range(len(labels))]
        return _Pool(relabel[labels], names, lambda part: list(images[part]), where)

    return {
        "train": pool(cifar.train_images, cifar.train_labels, "data_batch_1..5"),
        "test": pool(cifar.test_images, cifar.test_labels, "test_batch"),
    }


def _folder_pools(source: Path, class_names: list[str]) -> dict[str, _Pool]:
    """Image files in ``train/<class>/`` (and ``test/<class>/``), listed and decoded as a folder is read."""
    pools = {}
    for split in ("train", "test"):
        if not (source / split).is_dir():
            continue
        _, files, labels = _list_split(source / split, class_names)
        paths = [path for path, _, _ in files]
        names = [
            _file_name(path, source / split / class_names[label]) for path, label in zip(paths, labels, strict=True)
        ]
        pools[split] = _Pool(
            torch.tensor(labels, dtype=torch.int64), names,
            lambda part, paths=paths: decode_files([paths[i] for i in part]), f"{split}/",
        )  # fmt: skip
    return pools


def _file_name(path: str, class_dir: Path) -> str:
    """``cat/0450.jpg`` -> ``0450``; an image in a subfolder, ``cat/a/0450.jpg`` -> ``a-0450``."""
    relative = Path(os.path.relpath(path, class_dir))
    return "-".join([*relative.parent.parts, relative.stem])


# --------------------------------------------------------------------------- the choice


def _choose(pools: dict[str, _Pool], class_names: list[str], per_class: dict[str, int], generator) -> dict:
    """``{split: (pool, indices)}``: for each class, a seeded random choice; no index in two splits.

    ``train/`` and ``val/`` come from the source's training images; ``test/`` from its test
    images when it has them, else from more of its training images.
    """
    draws = {"train": ["train", "val"]}  # pool -> the splits drawn from it, in this order
    if "test" in pools:
        draws["test"] = ["test"]
    else:
        draws["train"].append("test")
    chosen = {}
    for pool_name, splits in draws.items():
        pool = pools[pool_name]
        taken: dict[str, list[int]] = {split: [] for split in splits}
        for label, class_name in enumerate(class_names):
            members = torch.nonzero(pool.labels == label).flatten()
            wanted = sum(per_class[split] for split in splits)
            if len(members) < wanted:
                parts = " + ".join(f"{per_class[split]} {split}/" for split in splits)
                raise UserError(
                    f"the source's {pool.where} holds {len(members)} {class_name} images, fewer than the"
                    f" {wanted} the lesson's folders take ({parts}): use a full copy of CIFAR-10"
                )
            shuffled = members[torch.randperm(len(members), generator=generator)].tolist()
            start = 0
            for split in splits:  # consecutive runs of one shuffled list: no image twice
                taken[split] += shuffled[start : start + per_class[split]]
                start += per_class[split]
        chosen.update({split: (pool, sorted(indices)) for split, indices in taken.items()})
    return {split: chosen[split] for split in per_class}
