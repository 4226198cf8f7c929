"""A folder of images, read as the 2026 lesson reads it with Keras:

    train_ds = keras.utils.image_dataset_from_directory("DIR/train", image_size=(32, 32), ...)
    val_ds = keras.utils.image_dataset_from_directory("DIR/val", image_size=(32, 32), ...)
    test_ds = keras.utils.image_dataset_from_directory("DIR/test", image_size=(32, 32), ...)

``DIR/train/<class>/<image>`` is required; ``DIR/val`` and ``DIR/test`` are used when
present. As in Keras: class names are the sorted subfolder names (or the ``class_names``
given, in their order), labels their indices; files ending in .bmp .gif .jpeg .jpg .png
(any case) are images, other files are skipped, subfolders of a class folder are searched
too; JPEG files are decoded as TensorFlow decodes them, unless ``jpeg_decoder="accurate"``
(``image_files.decode_image``); every image is resized to ``image_size`` (``image_files.resize``).
Hidden files and folders (``.DS_Store``, ``._x.jpg``, ``.ipynb_checkpoints``) are skipped as well.

Decoded images are cached (keyed on every file's path, size and modification time, on the
image size and on the JPEG decoder), so a second run over the 50,000 CIFAR-10 JPEGs starts
in about a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from pathlib import Path

import torch

from cnn_torch.errors import UserError
from cnn_torch.platform.fileio import atomic_write
from cnn_torch.sources.image_files import decode_files, jpeg_decoder_in_use, resize
from cnn_torch.sources.lesson_data import LessonData

# keras.utils.image_dataset_from_directory's accepted extensions (ALLOWLIST_FORMATS).
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
SPLITS = ("train", "val", "test")

# Bump when the cache file's layout or the decoding changes, so old caches are not reused.
_CACHE_VERSION = 3  # 3: JPEG decoded as TensorFlow decodes it by default, the decoder in the key
# Files read and decoded at a time: bounds the memory held by undecoded bytes.
_DECODE_CHUNK = 4096

# One file of the tree: (path, size in bytes, modification time in ns). Paths are plain
# strings: building 50,000 pathlib.Path objects alone took over a second.
_FileEntry = tuple[str, int, int]


def load_image_folder(
    data_dir: str | os.PathLike,
    image_size: tuple[int, int] = (32, 32),
    seed: int = 0,
    class_names: list[str] | None = None,
    crop_to_aspect_ratio: bool = False,
    pad_to_aspect_ratio: bool = False,
    jpeg_decoder: str = "keras",
) -> LessonData:
    """Images from ``DIR/train/<class>/*`` and, when present, ``DIR/val`` and ``DIR/test``.

    JPEG files read as Keras reads them (TensorFlow's decoder) unless ``jpeg_decoder="accurate"``
    (PIL's, a few levels apart): see ``image_files.decode_image``.

    The training images come back in an order shuffled by ``seed``, as Keras shuffles file
    paths (seeded) before taking a validation split. Without it the files would stay sorted by
    class, and a ``validation_split``, which takes the *last* fraction, would hold only the
    last classes. The val and test images keep their sorted order.
    """
    jpeg_decoder = jpeg_decoder_in_use(jpeg_decoder)  # the one that runs: "accurate" without simplejpeg
    root = check_data_dir(data_dir)
    folders = {name: root / name for name in SPLITS if (root / name).is_dir()}
    if "train" not in folders:
        raise UserError(wrong_folder_message(root))
    listed = {name: _list_split(folder, class_names) for name, folder in folders.items()}
    names = listed["train"][0]
    for name in ("val", "test"):
        if name in listed:
            _check_same_classes(folders["train"], names, folders[name], listed[name][0])
    if len(names) == 1:
        warnings.warn(
            f"{folders['train']} has one class folder ({names[0]}): every label is 0 and accuracy is 1.0 from"
            " the start; add a folder per class",
            stacklevel=2,
        )

    files = [entry for name in listed for entry in listed[name][1]]
    how = (tuple(int(n) for n in image_size), bool(crop_to_aspect_ratio), bool(pad_to_aspect_ratio), jpeg_decoder)
    images, sizes = _load_cached_or_decode(root, files, how, names)
    resized_from: dict[tuple[int, int], int] = {}
    for (height, width), count in zip(*torch.unique(sizes, dim=0, return_counts=True), strict=True):
        if (int(height), int(width)) != how[0]:
            resized_from[(int(height), int(width))] = int(count)

    splits, start = {}, 0
    for name, (_, split_files, labels) in listed.items():
        part = slice(start, start + len(split_files))
        splits[name] = (images[part], torch.tensor(labels, dtype=torch.int64))
        start += len(split_files)
    # Shuffle the training split only, as Keras does; see the docstring for why.
    train_images, train_labels = splits.pop("train")
    order = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(seed))
    train_images, train_labels = train_images[order].contiguous(), train_labels[order]
    # .clone(): a view would keep the unshuffled copy of every split alive
    val_images, val_labels = (splits["val"][0].clone(), splits["val"][1]) if "val" in splits else (None, None)
    test_images, test_labels = (splits["test"][0].clone(), splits["test"][1]) if "test" in splits else (None, None)
    return LessonData(
        train_images, train_labels, test_images, test_labels, names, f"folder:{root.resolve()}",
        val_images=val_images, val_labels=val_labels,
        split_sources={name: str(folder.resolve()) for name, folder in folders.items()},
        resized_from=resized_from,
    )  # fmt: skip


# --------------------------------------------------------------------------- the folder tree


def check_data_dir(data_dir: str | os.PathLike) -> Path:
    """``data_dir`` must be an existing folder: a typo must not become a download target."""
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise UserError(
            f"--data-dir {data_dir} does not exist: check the path (it should hold train/<class>/<image>,"
            " or cifar-10-batches-py/)"
        )
    if not root.is_dir():
        raise UserError(f"--data-dir {data_dir} is a file, not a folder: pass the folder that holds train/")
    return root


def wrong_folder_message(root: Path) -> str:
    """What ``root`` holds instead of train/<class>/ or CIFAR-10, and what to pass instead."""
    entries = [entry for entry in _sorted_entries(root) if not entry.name.startswith(".")]
    folders = [entry for entry in entries if entry.is_dir()]
    # one level too high: a folder in it holds train/ (or CIFAR-10's batches)
    inner = [f for f in folders if (Path(f.path) / "train").is_dir() or (Path(f.path) / "cifar-10-batches-py").is_dir()]
    if inner:
        return f"{root} holds no train/ itself but {inner[0].name}/ does: pass --data-dir {inner[0].path}"
    holds_images = any(
        any(True for _ in _walk_images(folder.path)) for folder in folders[:3]
    )  # the first few folders are enough to tell
    if folders and holds_images and not (root / "train").exists():
        names = ", ".join(f"{folder.name}/" for folder in folders[:3]) + (", ..." if len(folders) > 3 else "")
        if root.name in SPLITS:  # the train/ (or val/, test/) folder itself: its parent is the data folder
            return (
                f"{root} holds class folders ({names}) itself, as a train/ folder does:"
                f" pass its parent (--data-dir {root.parent})"
            )
        return (
            f"{root} holds class folders ({names}) itself, as a train/ folder does: move them into"
            f" {root}/train/ (train/<class>/<image>) and pass --data-dir {root}"
        )
    found = ", ".join(entry.name + ("/" if entry.is_dir() else "") for entry in entries[:5]) or "nothing"
    found += ", ..." if len(entries) > 5 else ""
    return (
        f"{root} holds neither train/<class>/<image> nor CIFAR-10's cifar-10-batches-py/ (found: {found}):"
        " point --data-dir at the folder that holds train/, or add --dataset cifar10 to download CIFAR-10 into it"
    )


def _list_split(split_dir: Path, class_names: list[str] | None) -> tuple[list[str], list[_FileEntry], list[int]]:
    """Class names (sorted subfolders, or ``class_names``), the image files in order, and their labels."""
    class_dirs = [entry for entry in _sorted_entries(split_dir) if entry.is_dir() and not entry.name.startswith(".")]
    if not class_dirs:
        raise UserError(f"{split_dir} has no class folders: expected {split_dir}/<class>/<image>, one folder per class")
    if class_names:  # Keras's class_names: a subset of the subfolders, in the order given
        by_name = {entry.name: entry for entry in class_dirs}
        unknown = [name for name in class_names if name not in by_name]
        if unknown:
            raise UserError(
                f"{', '.join(unknown)} {'is not a class' if len(unknown) == 1 else 'are not classes'} in {split_dir}:"
                f" choose from {' '.join(by_name)}"
            )
        class_dirs = [by_name[name] for name in class_names]
    files: list[_FileEntry] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        class_files = list(_walk_images(class_dir.path))
        if not class_files:
            raise UserError(
                f"class folder {class_dir.path} has no images ({' '.join(IMAGE_EXTENSIONS)}):"
                " add images to it or remove it"
            )
        files += class_files
        labels += [label] * len(class_files)
    return [entry.name for entry in class_dirs], files, labels


def _walk_images(folder: str):
    """Image files under ``folder``, recursively, in sorted order, with their size and mtime."""
    for entry in _sorted_entries(folder):
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):  # Keras's os.walk does not follow links either
            yield from _walk_images(entry.path)
        elif entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file():
            stat = entry.stat()
            yield entry.path, stat.st_size, stat.st_mtime_ns


def _sorted_entries(folder: str | Path) -> list[os.DirEntry]:
    """A folder's entries sorted by name, as Keras sorts ``os.listdir``."""
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError as error:
        raise UserError(f"cannot read folder {folder} ({error.strerror or error}): check its permissions") from None


def _check_same_classes(train_dir: Path, train_classes: list[str], other_dir: Path, other_classes: list[str]):
    if train_classes == other_classes:
        return
    missing = sorted(set(train_classes) - set(other_classes))
    extra = sorted(set(other_classes) - set(train_classes))
    details = "; ".join(
        part
        for part in (
            f"{other_dir.name}/ lacks {', '.join(missing)}" if missing else "",
            f"{other_dir.name}/ has extra {', '.join(extra)}" if extra else "",
        )
        if part
    )
    raise UserError(
        f"{other_dir} and {train_dir} must have the same class folders ({details}): rename, add or remove folders"
    )


# --------------------------------------------------------------------------- decode cache


def cache_dir() -> Path:
    """Where decoded image folders are cached: $CNN_TORCH_CACHE, else ~/.cache/cnn_torch."""
    return Path(os.environ.get("CNN_TORCH_CACHE") or Path.home() / ".cache" / "cnn_torch").expanduser()


def _cache_key(root: Path, files: list[_FileEntry], how: tuple) -> str:
    # Path, size and mtime of every file: editing, adding, removing or renaming any image
    # gives a new key, without reading the image bytes. ``how`` is the size, the aspect rule and
    # the JPEG decoder that runs (so installing simplejpeg later does not reuse PIL's pixels).
    (height, width), crop, pad, jpeg_decoder = how
    header = f"cnn_torch-folder-v{_CACHE_VERSION} {height}x{width} crop={crop} pad={pad} jpeg={jpeg_decoder}\n"
    digest = hashlib.sha256(header.encode())
    prefix = len(str(root)) + 1  # every path starts with root and a separator
    for path, size, mtime in files:  # in split order: the cache holds the splits in this order
        digest.update(f"{path[prefix:].replace(os.sep, '/')}\t{size}\t{mtime}\n".encode())
    return digest.hexdigest()


def _load_cached_or_decode(
    root: Path, files: list[_FileEntry], how: tuple, class_names: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, sizes)``: every file decoded and resized, and each file's own (height, width)."""
    cache_file = cache_dir() / f"{_cache_key(root, files, how)}.pt"
    cached = _read_cache(cache_file, len(files), how[0])
    if cached is not None:
        return cached
    images, sizes = _decode_files([path for path, _, _ in files], how)
    _write_cache(cache_file, {"version": _CACHE_VERSION, "class_names": class_names, "images": images, "sizes": sizes})
    return images, sizes


def _read_cache(cache_file: Path, count: int, image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor] | None:
    try:
        cached = torch.load(cache_file, weights_only=True)
        images, sizes = cached["images"], cached["sizes"]
    except Exception:  # absent, truncated or from another version: decode again
        return None
    if not isinstance(images, torch.Tensor) or tuple(images.shape) != (count, 3, *image_size):
        return None
    if images.dtype != torch.uint8 or not isinstance(sizes, torch.Tensor) or tuple(sizes.shape) != (count, 2):
        return None
    return images, sizes


def _write_cache(cache_file: Path, contents: dict) -> None:
    # The cache is an optimisation: a read-only or full disk just means decoding next time.
    with contextlib.suppress(OSError), atomic_write(cache_file, "wb") as f:
        torch.save(contents, f)


def _decode_files(paths: list[str], how: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode and resize image files into one (N, 3, H, W) uint8 tensor, a chunk of files at a time."""
    image_size, crop, pad, jpeg_decoder = how
    out = torch.empty((len(paths), 3, *image_size), dtype=torch.uint8)
    sizes = torch.empty((len(paths), 2), dtype=torch.int32)
    for start in range(0, len(paths), _DECODE_CHUNK):
        decoded = decode_files(paths[start : start + _DECODE_CHUNK], jpeg_decoder)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(decoded):
            by_size.setdefault((int(image.shape[1]), int(image.shape[2])), []).append(i)
        for size, members in by_size.items():  # one resize call per distinct size: the same op, batched
            batch = resize(torch.stack([decoded[i] for i in members]), image_size, crop, pad)
            index = torch.tensor(members) + start
            out[index] = batch
            sizes[index] = torch.tensor(size, dtype=torch.int32)
    return out, sizes
