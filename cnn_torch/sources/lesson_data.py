"""What every data source returns (:class:`LessonData`) and what is done to it afterwards:
the lesson's ``/ 255.0``, a class subset, a balanced sample, Keras's ``validation_split``.

Nothing here knows where the images came from: CIFAR-10 (``cifar10.py``), an image folder
(``image_folder.py``) and the built-in shapes (``shapes.py``) each build a ``LessonData``
and need none of the others; ``data.py`` picks one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from cnn_torch.errors import UserError
from cnn_torch.platform.device import as_float


@dataclass(frozen=True)
class LessonData:
    """Images and labels of one data set, split as the lesson splits it.

    Images are ``uint8`` tensors of shape (N, 3, H, W), contiguous; labels are ``int64`` (N,).
    The three splits are the 2026 lesson's ``train/``, ``val/`` and ``test/`` folders:
    ``val_*`` is what ``fit`` validates on and ``test_*`` is kept for the end; either is None
    when the source has no such split (CIFAR-10 has a test split and no validation split,
    as ``keras.datasets.cifar10.load_data()`` returns it).
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor | None
    test_labels: torch.Tensor | None
    class_names: list[str]
    source: str
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    # where each split came from, for the start-of-run lines and run.json: {"train": "DIR/train", ...}
    split_sources: dict[str, str] = field(default_factory=dict)
    # the sizes (height, width) that were resized to ``image_size``, with how many images had each
    resized_from: dict[tuple[int, int], int] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the images."""
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])

    @property
    def validation_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """What ``fit(validation_data=...)`` takes: the val split (the 2026 lesson's ``val/``),
        else the test split (the 2023 lesson validates on it)."""
        found = self.split("val") or self.split("test")
        if found is None:
            raise UserError(
                f"{self.source} has no val/ or test/ split to validate on: load it with validation_split=0.2"
                " (Keras's image_dataset_from_directory rule), or add a val/ folder"
            )
        return found

    @property
    def test_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """What ``evaluate`` takes at the end: the test split, else the val split."""
        found = self.split("test") or self.split("val")
        if found is None:
            raise UserError(f"{self.source} has no test/ or val/ split: load it with validation_split=0.2")
        return found

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(images, labels)`` of "train", "val" or "test", or None when there is no such split."""
        images, labels = {
            "train": (self.train_images, self.train_labels),
            "val": (self.val_images, self.val_labels),
            "test": (self.test_images, self.test_labels),
        }[name]
        return None if images is None else (images, labels)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1]: the lesson's ``train_images / 255.0``, as ``fit`` does it
    per batch (``as_float``), in PyTorch's usual memory layout."""
    if images.dtype != torch.uint8:
        raise TypeError(f"to_float expects uint8 images, got {images.dtype}")
    return as_float(images, layout=torch.contiguous_format)


# --------------------------------------------------------------------------- class subsets


def select_classes(data: LessonData, class_names: list[str] | None) -> LessonData:
    """Keras's ``class_names=``: keep only these classes, numbered in the order given.

    ``image_dataset_from_directory(class_names=["airplane", "bird", ...])`` reads only those
    subfolders and labels them 0, 1, ... in the list's order; here the same is done to any
    source, so the 2026 lesson's five CIFAR-10 classes come from a full copy of CIFAR-10.
    """
    if not class_names:
        return data
    class_names = list(class_names)
    unknown = [name for name in class_names if name not in data.class_names]
    if unknown:
        raise UserError(
            f"{', '.join(unknown)} {'is not a class' if len(unknown) == 1 else 'are not classes'} of this data:"
            f" choose from {' '.join(data.class_names)}"
        )
    check_class_names(class_names)
    # old label -> new label, -1 for the classes left out
    relabel = torch.full((data.num_classes,), -1, dtype=torch.int64)
    for new, name in enumerate(class_names):
        relabel[data.class_names.index(name)] = new

    def keep(images, labels):
        if images is None:
            return None, None
        new_labels = relabel[labels]
        chosen = new_labels >= 0
        return images[chosen].contiguous(), new_labels[chosen]

    train_images, train_labels = keep(data.train_images, data.train_labels)
    val_images, val_labels = keep(data.val_images, data.val_labels)
    test_images, test_labels = keep(data.test_images, data.test_labels)
    return replace(
        data, train_images=train_images, train_labels=train_labels, val_images=val_images, val_labels=val_labels,
        test_images=test_images, test_labels=test_labels, class_names=class_names,
    )  # fmt: skip


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


def repeated_classes(class_names: list[str] | None) -> list[str]:
    """The names a class list gives more than once, sorted: each must be named once, or one
    folder would be read under two labels."""
    return sorted({name for name in class_names or [] if class_names.count(name) > 1})


def check_class_names(class_names: list[str] | None) -> None:
    """Refuse a class list that names a class more than once, in one line naming the fix."""
    repeated = repeated_classes(class_names)
    if repeated:
        raise UserError(f"--classes names {', '.join(repeated)} more than once: name each class once")
