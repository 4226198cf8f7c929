"""The lesson's data: CIFAR-10, a folder of images, or a generated offline data set.

Every loader returns a :class:`LessonData`. Images stay ``uint8`` in NCHW layout in memory
(CIFAR-10's 50,000 training images take 150 MB as uint8 and 600 MB as float32); the training
loop converts one batch at a time with :func:`to_float`, which is the lesson's ``/ 255.0``.

Sources:

- :func:`load_cifar10`: ``keras.datasets.cifar10.load_data()``, through torchvision.
- :func:`load_image_folder`: ``DIR/train/<class>/<image>`` (and ``DIR/test`` or ``DIR/val``),
  read the way ``keras.utils.image_dataset_from_directory`` reads it. Decoded images are
  cached, so a second run starts in about a second.
- :func:`make_shapes` (``cnn_torch/shapes.py``): ten classes of shapes in cluttered, CIFAR-like
  scenes, generated from a seed. It needs no download, so the lesson runs offline.

:func:`split_validation` is Keras's ``validation_split`` rule and :func:`limit_per_class` takes
a small, balanced subset for quick runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from cnn_torch.errors import UserError
from cnn_torch.fileio import atomic_write
from cnn_torch.shapes import DEFAULT_TRAIN_SIZE as DEFAULT_SHAPES_SIZE
from cnn_torch.shapes import SHAPE_CLASSES as SHAPE_CLASSES  # re-exported: cnn_torch.data.SHAPE_CLASSES
from cnn_torch.shapes import make_shapes

DATASETS = ("cifar10", "folder", "shapes")

# keras.utils.image_dataset_from_directory's accepted extensions (ALLOWLIST_FORMATS).
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_JPEG_EXTENSIONS = (".jpeg", ".jpg")


# Bump when the cache file's layout or the decoding changes, so old caches are not reused.
_CACHE_VERSION = 1
# Files read and decoded at a time: bounds the memory held by undecoded bytes.
_DECODE_CHUNK = 4096


@dataclass(frozen=True)
class LessonData:
    """Images and labels of one data set, as every loader returns them.

    Images are ``uint8`` tensors of shape (N, 3, H, W), contiguous; labels are ``int64`` (N,).
    ``test_images`` and ``test_labels`` are None when the source has no test split.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor | None
    test_labels: torch.Tensor | None
    class_names: list[str]
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the images."""
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1]: the lesson's ``train_images / 255.0``."""
    if images.dtype != torch.uint8:
        raise TypeError(f"to_float expects uint8 images, got {images.dtype}")
    return images.to(torch.float32).div_(255.0)


# --------------------------------------------------------------------------- CIFAR-10


def load_cifar10(data_dir: str | os.PathLike = "data", download: bool = True) -> LessonData:
    """CIFAR-10's 50,000 training and 10,000 test images, as ``keras.datasets.cifar10`` gives them.

    Reads (or downloads into) ``data_dir/cifar-10-batches-py`` with torchvision. When the
    download fails, a ``data_dir`` that did not exist before is removed again.
    """
    import shutil

    import torchvision  # imported here: the other sources do not need the datasets module

    existed = Path(data_dir).exists()
    try:
        train = torchvision.datasets.CIFAR10(root=str(data_dir), train=True, download=download)
        test = torchvision.datasets.CIFAR10(root=str(data_dir), train=False, download=download)
    except (OSError, RuntimeError, tarfile.TarError) as error:  # URLError is an OSError
        if not existed:  # torchvision made the folder for the download: leave nothing behind
            shutil.rmtree(data_dir, ignore_errors=True)
        raise CifarUnavailable(_cifar10_missing_message(data_dir, download, error), _short_reason(error)) from None
    return LessonData(
        train_images=_nhwc_to_nchw(train.data),
        train_labels=torch.tensor(train.targets, dtype=torch.int64),
        test_images=_nhwc_to_nchw(test.data),
        test_labels=torch.tensor(test.targets, dtype=torch.int64),
        class_names=list(train.classes),
        source="cifar10",
    )


class CifarUnavailable(UserError):
    """CIFAR-10 is not on disk and could not be downloaded; ``reason`` says why, in a few words."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def _short_reason(error: Exception) -> str:
    reason = getattr(error, "reason", None) or error  # URLError keeps the cause in .reason
    return " ".join(str(reason).split())[:120] or type(error).__name__


def _cifar10_missing_message(data_dir, download: bool, error: Exception) -> str:
    where = f"{Path(data_dir)}/"
    fixes = (
        "pass --data-dir to a folder holding cifar-10-batches-py/ (or train/<class>/<image> for your own"
        " images), or use --dataset shapes"
    )
    if not download:
        return f"CIFAR-10 is not in {where} (downloading is off): {fixes}"
    reason = _short_reason(error)
    return f"CIFAR-10 is not in {where} and could not be downloaded ({reason}): connect to the internet, {fixes}"


def _nhwc_to_nchw(array) -> torch.Tensor:
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------- image folders


def load_image_folder(data_dir: str | os.PathLike, image_size: tuple[int, int] = (32, 32), seed: int = 0) -> LessonData:
    """Images from ``DIR/train/<class>/*`` and, if present, ``DIR/test`` (or else ``DIR/val``).

    Like ``keras.utils.image_dataset_from_directory``: class names are the sorted subfolder
    names, labels their indices, files with the extensions .bmp .gif .jpeg .jpg .png (any
    case) are images and other files are skipped; subfolders inside a class folder are
    searched too. Grayscale and RGBA images become RGB. Hidden files and folders (a leading
    dot: ``.DS_Store``, ``._x.jpg``, ``.ipynb_checkpoints``) are skipped as well.

    The training images come back in an order shuffled by ``seed``, as Keras shuffles file
    paths (seeded) before taking a validation split. Without it the files would stay sorted by
    class, and a validation split, which takes the *last* fraction, would hold only the last
    classes. The test images keep their sorted order.

    Every image must already be ``image_size`` (height, width); this function does not resize.
    """
    root = Path(data_dir).expanduser()
    train_dir, test_dir = _find_splits(root)
    class_names, train_files, train_labels = _list_split(train_dir)
    test_files, test_labels = [], []
    if test_dir is not None:
        test_classes, test_files, test_labels = _list_split(test_dir)
        _check_same_classes(train_dir, class_names, test_dir, test_classes)

    images = _load_cached_or_decode(root, train_files + test_files, tuple(image_size), class_names)
    n_train = len(train_files)
    # Shuffle the training split only, as Keras does; see the docstring for why.
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))
    train_images = images[:n_train][order].contiguous()
    train_labels_t = torch.tensor(train_labels, dtype=torch.int64)[order]
    test_images = test_labels_t = None
    if test_dir is not None:
        test_images = images[n_train:].clone()  # a view would keep the unshuffled training copy alive
        test_labels_t = torch.tensor(test_labels, dtype=torch.int64)
    return LessonData(
        train_images=train_images,
        train_labels=train_labels_t,
        test_images=test_images,
        test_labels=test_labels_t,
        class_names=class_names,
        source=f"folder:{root.resolve()}",
    )


def _find_splits(root: Path) -> tuple[Path, Path | None]:
    check_data_dir(root)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise UserError(_wrong_folder_message(root))
    for name in ("test", "val"):
        if (root / name).is_dir():
            return train_dir, root / name
    return train_dir, None


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


def _wrong_folder_message(root: Path) -> str:
    """What ``root`` holds instead of train/<class>/ or CIFAR-10, and what to pass instead."""
    entries = [entry for entry in _sorted_entries(root) if not entry.name.startswith(".")]
    folders = [entry for entry in entries if entry.is_dir()]
    holds_images = any(
        any(True for _ in _walk_images(folder.path)) for folder in folders[:3]
    )  # the first few folders are enough to tell
    if folders and holds_images and not (root / "train").exists():
        names = ", ".join(f"{folder.name}/" for folder in folders[:3]) + (", ..." if len(folders) > 3 else "")
        return (
            f"{root} holds class folders ({names}) itself, as a train/ folder does: pass its parent"
            f" (--data-dir {root.parent}) and put the images in {root.parent}/train/<class>/<image>"
        )
    found = ", ".join(entry.name + ("/" if entry.is_dir() else "") for entry in entries[:5]) or "nothing"
    found += ", ..." if len(entries) > 5 else ""
    return (
        f"{root} holds neither train/<class>/<image> nor CIFAR-10's cifar-10-batches-py/ (found: {found}):"
        " point --data-dir at the folder that holds train/, or add --dataset cifar10 to download CIFAR-10 into it"
    )


# One file of the tree: (path, size in bytes, modification time in ns). Paths are plain
# strings: building 50,000 pathlib.Path objects alone took over a second.
_FileEntry = tuple[str, int, int]


def _list_split(split_dir: Path) -> tuple[list[str], list[_FileEntry], list[int]]:
    """Class names (sorted subfolders), the image files in order, and their labels."""
    class_dirs = [entry for entry in _sorted_entries(split_dir) if entry.is_dir() and not entry.name.startswith(".")]
    if not class_dirs:
        raise UserError(f"{split_dir} has no class folders: expected {split_dir}/<class>/<image>, one folder per class")
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


def _check_same_classes(train_dir: Path, train_classes: list[str], test_dir: Path, test_classes: list[str]):
    if train_classes == test_classes:
        return
    missing = sorted(set(train_classes) - set(test_classes))
    extra = sorted(set(test_classes) - set(train_classes))
    details = "; ".join(
        part
        for part in (
            f"{test_dir.name}/ lacks {', '.join(missing)}" if missing else "",
            f"{test_dir.name}/ has extra {', '.join(extra)}" if extra else "",
        )
        if part
    )
    raise UserError(
        f"{test_dir} and {train_dir} must have the same class folders ({details}): rename, add or remove folders"
    )


# --------------------------------------------------------------------------- decode cache


def cache_dir() -> Path:
    """Where decoded image folders are cached: $CNN_TORCH_CACHE, else ~/.cache/cnn_torch."""
    return Path(os.environ.get("CNN_TORCH_CACHE") or Path.home() / ".cache" / "cnn_torch").expanduser()


def _cache_key(root: Path, files: list[_FileEntry], image_size: tuple[int, int]) -> str:
    # Path, size and mtime of every file: editing, adding, removing or renaming any image
    # gives a new key, without reading the image bytes.
    digest = hashlib.sha256(f"cnn_torch-folder-v{_CACHE_VERSION} {image_size[0]}x{image_size[1]}\n".encode())
    prefix = len(str(root)) + 1  # every path starts with root and a separator
    relative = sorted((path[prefix:].replace(os.sep, "/"), size, mtime) for path, size, mtime in files)
    for rel, size, mtime in relative:
        digest.update(f"{rel}\t{size}\t{mtime}\n".encode())
    return digest.hexdigest()


def _load_cached_or_decode(
    root: Path, files: list[_FileEntry], image_size: tuple[int, int], class_names: list[str]
) -> torch.Tensor:
    cache_file = cache_dir() / f"{_cache_key(root, files, image_size)}.pt"
    images = _read_cache(cache_file, len(files), image_size)
    if images is None:
        images = _decode_files([path for path, _, _ in files], image_size)
        _write_cache(cache_file, {"version": _CACHE_VERSION, "class_names": class_names, "images": images})
    return images


def _read_cache(cache_file: Path, count: int, image_size: tuple[int, int]) -> torch.Tensor | None:
    try:
        cached = torch.load(cache_file, weights_only=True)
        images = cached["images"]
    except Exception:  # absent, truncated or from another version: decode again
        return None
    expected = (count, 3, *image_size)
    if not isinstance(images, torch.Tensor) or tuple(images.shape) != expected or images.dtype != torch.uint8:
        return None
    return images


def _write_cache(cache_file: Path, contents: dict) -> None:
    # The cache is an optimisation: a read-only or full disk just means decoding next time.
    with contextlib.suppress(OSError), atomic_write(cache_file, "wb") as f:
        torch.save(contents, f)


# --------------------------------------------------------------------------- decoding


def _decode_files(paths: list[str], image_size: tuple[int, int]) -> torch.Tensor:
    """Decode image files into one (N, 3, H, W) uint8 tensor, a chunk of files at a time."""
    out = torch.empty((len(paths), 3, *image_size), dtype=torch.uint8)
    for start in range(0, len(paths), _DECODE_CHUNK):
        chunk = paths[start : start + _DECODE_CHUNK]
        images = _decode_chunk(chunk)
        for path, image in zip(chunk, images, strict=True):
            if tuple(image.shape[1:]) != tuple(image_size):
                raise UserError(_wrong_size_message(path, image, image_size))
        torch.stack(images, out=out[start : start + len(chunk)])  # one copy, not one per image
    return out


def _decode_chunk(paths: list[str]) -> list[torch.Tensor]:
    data = [_read_bytes(path) for path in paths]
    images: list[torch.Tensor | None] = [None] * len(paths)
    jpegs = [i for i, path in enumerate(paths) if path.lower().endswith(_JPEG_EXTENSIONS)]
    if jpegs:
        from torchvision.io import ImageReadMode, decode_jpeg

        # One call for the whole list: the same libjpeg decoder, without torchvision's
        # per-call overhead (about 2x faster for 32x32 images).
        try:
            with _quiet_torchvision():
                decoded = decode_jpeg([data[i] for i in jpegs], mode=ImageReadMode.RGB)
            for i, image in zip(jpegs, decoded, strict=True):
                images[i] = image
        except Exception:  # a bad file (or a PNG named .jpg) fails the list: go one by one
            pass
    return [
        image if image is not None else _decode_one(path, raw)
        for path, raw, image in zip(paths, data, images, strict=True)
    ]


def _read_bytes(path: str) -> torch.Tensor:
    try:
        with open(path, "rb") as f:
            raw = bytearray(f.read())  # bytearray: torch.frombuffer wants a writable buffer
    except OSError as error:
        raise UserError(
            f"cannot read image {path} ({error.strerror or error}): check its permissions or delete it"
        ) from None
    return torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)


def _decode_one(path: str, raw: torch.Tensor) -> torch.Tensor:
    """One image as (3, H, W) uint8: torchvision first, then PIL (BMP and anything else)."""
    from torchvision.io import ImageReadMode, decode_image

    try:
        with _quiet_torchvision():
            image = decode_image(raw, mode=ImageReadMode.RGB)
        if image.ndim == 4:  # an animated GIF: keep the first frame, as Keras does
            image = image[0]
        if image.dtype == torch.uint16:  # a 16-bit PNG: keep the high byte, as tf.image does
            image = (image.to(torch.int32) >> 8).to(torch.uint8)
        if image.ndim == 3 and image.shape[0] == 3 and image.dtype == torch.uint8:
            return image
    except Exception:  # not a format torchvision reads, or a corrupt file: PIL decides
        pass
    return _decode_with_pil(path, raw)


def _decode_with_pil(path: str, raw: torch.Tensor) -> torch.Tensor:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw.numpy().tobytes())) as pil_image:
            array = np.asarray(pil_image.convert("RGB"))
    except Exception as error:
        reason = " ".join(str(error).split())[:80] or type(error).__name__
        if isinstance(error, UnidentifiedImageError):  # its message names an in-memory BytesIO, not the file
            reason = "not an image format PIL knows"
        raise UserError(
            f"cannot decode image {path} ({reason}): the file is corrupt or not an image; delete or replace it"
        ) from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


@contextlib.contextmanager
def _quiet_torchvision():
    # torchvision 0.29 warns on every decode call that its decoders move to TorchCodec; the
    # learner cannot act on that, so it is not shown.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def _wrong_size_message(path: str, image: torch.Tensor, image_size: tuple[int, int]) -> str:
    height, width = int(image.shape[1]), int(image.shape[2])
    want = f"{image_size[0]}x{image_size[1]}"
    return (
        f"image {path} is {height}x{width} pixels (height x width) but {want} is expected:"
        f" resize the images to {want}, or build the model for {height}x{width} images"
    )


# --------------------------------------------------------------------------- subsets and splits


def limit_per_class(
    images: torch.Tensor, labels: torch.Tensor, limit: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset of ``limit`` samples with the classes balanced, in a seeded random order.

    Each class gets ``limit // num_classes`` samples and the first ``limit % num_classes``
    classes one more (a class with fewer samples gives all it has). With ``limit`` at least
    the number of samples, everything comes back unchanged.
    """
    if limit <= 0:
        raise UserError(f"--limit must be a positive number of images, got {limit}")
    if limit >= len(labels):
        return images, labels
    generator = torch.Generator().manual_seed(seed)
    classes = torch.unique(labels)
    per_class, extra = divmod(limit, len(classes))
    chosen = []
    for i, label in enumerate(classes.tolist()):
        members = torch.nonzero(labels == label).flatten()
        take = per_class + (1 if i < extra else 0)
        chosen.append(members[torch.randperm(len(members), generator=generator)[:take]])
    picked = torch.cat(chosen)
    picked = picked[torch.randperm(len(picked), generator=generator)]
    return images[picked].contiguous(), labels[picked]


def validation_cut(total: int, validation_split: float) -> int:
    """Keras's cut for ``validation_split``: the first ``floor(N * (1 - split))`` samples train."""
    return int(math.floor(total * (1.0 - validation_split)))


def split_validation(
    images: torch.Tensor, labels: torch.Tensor, validation_split: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keras's ``fit(validation_split=...)``: the last fraction of the samples, unshuffled.

    Keras 3 (``train_validation_split``) takes the sample count N, cuts at
    ``floor(N * (1 - validation_split))``, and keeps everything before the cut for training and
    everything after it for validation, in the given order and before any shuffling; a cut
    that leaves either part empty is an error. Returns
    ``(train_images, train_labels, val_images, val_labels)``.
    """
    if not 0.0 < validation_split < 1.0:
        raise UserError(f"--validation-split must be between 0 and 1 (exclusive), got {validation_split}")
    total = len(labels)
    split_at = validation_cut(total, validation_split)
    if split_at == 0 or split_at == total:
        raise UserError(
            f"{total} samples cannot be split with --validation-split {validation_split}:"
            " one part would be empty; use more images or another split"
        )
    return images[:split_at], labels[:split_at], images[split_at:], labels[split_at:]


# --------------------------------------------------------------------------- dispatch


def resolve_dataset(dataset: str | None, data_dir: str | os.PathLike | None) -> str:
    """The data set to load: ``dataset`` if given; else, for a ``data_dir``, what it holds
    ("folder" for train/<class>/, "cifar10" for cifar-10-batches-py/); else "cifar10"."""
    if dataset not in (None, "auto"):
        if dataset not in DATASETS:
            raise UserError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
        if data_dir is not None and dataset != "shapes":
            check_data_dir(data_dir)
        return dataset
    if data_dir is None:
        return "cifar10"
    root = check_data_dir(data_dir)
    train_dir = root / "train"
    if train_dir.is_dir() and any(entry.is_dir() for entry in os.scandir(train_dir)):
        return "folder"
    if (root / "cifar-10-batches-py").is_dir():
        return "cifar10"
    raise UserError(_wrong_folder_message(root))


def load_data(
    dataset: str | None,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    seed: int = 0,
    image_size: tuple[int, int] = (32, 32),
    download: bool = True,
) -> LessonData:
    """Load ``dataset`` ("cifar10", "folder" or "shapes"); ``limit`` caps the training images.

    For "shapes", ``limit`` is the number of training images generated (default ``DEFAULT_SHAPES_SIZE``).
    Elsewhere it takes a class-balanced random subset (seeded by ``seed``) of the training split.
    """
    dataset = resolve_dataset(dataset, data_dir)
    if limit is not None and limit <= 0:
        raise UserError(f"--limit must be a positive number of images, got {limit}")
    image_size = (int(image_size[0]), int(image_size[1]))
    if dataset == "shapes":
        return make_shapes(n_train=limit or DEFAULT_SHAPES_SIZE, seed=seed, image_size=image_size)
    if dataset == "cifar10":
        if image_size != (32, 32):
            raise UserError(f"CIFAR-10 images are 32x32, not {image_size[0]}x{image_size[1]}: use 32x32 for CIFAR-10")
        data = load_cifar10(data_dir if data_dir is not None else "data", download=download)
    else:
        if data_dir is None:
            raise UserError("--dataset folder needs --data-dir: pass the folder that holds train/<class>/<image>")
        data = load_image_folder(data_dir, image_size=image_size, seed=seed)
    if limit is None:
        return data
    train_images, train_labels = limit_per_class(data.train_images, data.train_labels, limit, seed)
    return LessonData(train_images, train_labels, data.test_images, data.test_labels, data.class_names, data.source)


def load_data_or_shapes(
    dataset: str | None, data_dir: str | os.PathLike | None, limit: int | None = None, seed: int = 0
) -> tuple[LessonData, str | None]:
    """``(data, notice)``: the command line's default data, CIFAR-10 as the lesson uses it.

    When no data was asked for by name (no dataset, no data_dir) and CIFAR-10 is neither on
    disk nor downloadable (no network), the built-in shapes data stands in, so the first run
    still trains; ``notice`` then says so in one line. Otherwise ``notice`` is None.
    """
    try:
        return load_data(dataset, data_dir, limit=limit, seed=seed), None
    except CifarUnavailable as error:
        if dataset not in (None, "auto") or data_dir is not None:
            raise  # CIFAR-10 was asked for by name: say why it is not there
        notice = (
            f"CIFAR-10 could not be downloaded ({error.reason}); training on the built-in shapes data"
            " instead; pass --data-dir path/to/images for your own copy"
        )
        return load_data("shapes", limit=limit, seed=seed), notice
