"""CIFAR-10 as the lesson loads it: ``keras.datasets.cifar10.load_data()``, through torchvision.

torchvision reads (or downloads into) ``data_dir/cifar-10-batches-py`` the same Python
pickles Keras reads: 50,000 training and 10,000 test images of 32x32, ten classes in
CIFAR-10's order (airplane, automobile, bird, ...).
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import torch

from cnn_torch.errors import UserError
from cnn_torch.sources.lesson_data import LessonData


class CifarUnavailable(UserError):
    """CIFAR-10 is not on disk and could not be downloaded; ``reason`` says why, in a few words."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def load_cifar10(data_dir: str | os.PathLike = "data", download: bool = True) -> LessonData:
    """CIFAR-10's 50,000 training and 10,000 test images, as ``keras.datasets.cifar10`` gives them.

    Reads (or downloads into) ``data_dir/cifar-10-batches-py`` with torchvision. When the
    download fails, a ``data_dir`` that did not exist before is removed again.
    """
    import torchvision  # imported here: the other sources do not need the datasets module

    existed = Path(data_dir).exists()
    try:
        train = torchvision.datasets.CIFAR10(root=str(data_dir), train=True, download=download)
        test = torchvision.datasets.CIFAR10(root=str(data_dir), train=False, download=download)
    except (OSError, RuntimeError, tarfile.TarError) as error:  # URLError is an OSError
        if not existed:  # torchvision made the folder for the download: leave nothing behind
            shutil.rmtree(data_dir, ignore_errors=True)
        raise CifarUnavailable(_missing_message(data_dir, download, error), _short_reason(error)) from None
    batches = Path(data_dir).resolve() / "cifar-10-batches-py"
    return LessonData(
        train_images=_nhwc_to_nchw(train.data),
        train_labels=torch.tensor(train.targets, dtype=torch.int64),
        test_images=_nhwc_to_nchw(test.data),
        test_labels=torch.tensor(test.targets, dtype=torch.int64),
        class_names=list(train.classes),
        source="cifar10",
        split_sources={"train": f"{batches}/data_batch_1..5", "test": f"{batches}/test_batch"},
    )


def _short_reason(error: Exception) -> str:
    reason = getattr(error, "reason", None) or error  # URLError keeps the cause in .reason
    return " ".join(str(reason).split())[:120] or type(error).__name__


def _missing_message(data_dir, download: bool, error: Exception) -> str:
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
