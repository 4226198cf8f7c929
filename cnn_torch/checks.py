"""Catch the classic learner mistakes before the first training step.

Each check raises :class:`UserError` with one line that names the mistake and the fix,
instead of a shape error deep inside a convolution or CUDA's opaque device-side assert.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from cnn_torch.errors import UserError


def check_fit_arguments(epochs: int, batch_size: int, validation_split: float) -> None:
    if not isinstance(epochs, int) or epochs <= 0:
        raise UserError(f"epochs must be a positive integer, got {epochs!r}: pass e.g. epochs=10")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise UserError(
            f"batch_size must be a positive integer, got {batch_size!r}: pass e.g. batch_size=32"
        )
    if validation_split and not 0.0 < validation_split < 1.0:
        raise UserError(
            f"validation_split must be between 0 and 1 (exclusive), got {validation_split!r}:"
            " pass e.g. 0.2"
        )


class InputWarning(UserWarning):
    """Input that trains, as it does in Keras, but is probably a mistake (e.g. 0-255 float pixels)."""


def _is_numpy(array) -> bool:
    return type(array).__module__ == "numpy"


def check_images(images, name: str = "train_images", warn: bool = True) -> torch.Tensor:
    """Return images as an NCHW tensor: uint8 (scaled by 1/255 per batch) or float32 as given.

    Like Keras, any float values are accepted: [0, 1], standardised (mean/std, about -2..2.5),
    or unscaled 0-255 pixels, which train badly and get a warning naming the fix (``warn``).
    """
    numpy_input = _is_numpy(images)
    images = torch.as_tensor(images)
    if images.ndim != 4:
        raise UserError(
            f"{name} has shape {tuple(images.shape)}; expected 4 dimensions (N, C, H, W):"
            " stack the images into one array first"
        )
    channels_first, channels_last = images.shape[1], images.shape[-1]
    if channels_last in (1, 3, 4) and channels_first not in (1, 3, 4):
        fix = f"np.transpose({name}, (0, 3, 1, 2))" if numpy_input else f"{name}.permute(0, 3, 1, 2)"
        raise UserError(
            f"{name} looks channels-last {tuple(images.shape)} (N, H, W, C, the Keras layout);"
            f" PyTorch wants (N, C, H, W): use {fix}"
        )
    if images.dtype == torch.uint8:
        return images  # scaled to [0, 1] per batch inside fit (the lesson's / 255.0)
    if images.is_complex():
        raise UserError(f"{name} has dtype {images.dtype}; use uint8 or float32 images")
    images = images.float()  # Keras also casts integer and float64 arrays to float32
    if images.numel():
        low, high = (value.item() for value in torch.aminmax(images))
        if not (math.isfinite(low) and math.isfinite(high)):
            raise UserError(f"{name} contains NaN or inf values: remove or replace those images first")
        if warn and low >= 0.0 and high > 2.0:  # not standardised (no negatives), not [0, 1]: raw pixels
            warnings.warn(
                f"{name} has values up to {high:g}, like 0-255 pixels: fit trains on them as given (as Keras"
                f" does), but slowly and badly; divide by 255.0 as the lesson does ({name} = {name} / 255.0)",
                InputWarning,
                stacklevel=3,
            )
    return images


def check_labels(labels, num_images: int, name: str = "train_labels") -> torch.Tensor:
    """Return labels as int64 class indices (N,), or float32 one-hot rows (N, num_classes).

    Keras's pairs: class indices go with ``SparseCategoricalCrossentropy`` (here
    ``CrossEntropyLoss`` on indices); one-hot rows with ``CategoricalCrossentropy`` (here
    ``CrossEntropyLoss`` on class probabilities). ``(N, 1)`` columns, as
    ``keras.datasets.cifar10`` returns them, are read as class indices, as Keras reads them.
    """
    labels = torch.as_tensor(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.reshape(-1)
    if labels.ndim == 2:  # one-hot (or soft) targets, one row per image
        labels = labels.float()
        rows_are_probabilities = bool((labels >= 0).all()) and torch.allclose(
            labels.sum(dim=1), torch.ones(len(labels)), atol=1e-3
        )
        if not rows_are_probabilities:
            raise UserError(
                f"{name} has shape {tuple(labels.shape)} but its rows are not one-hot (non-negative,"
                " summing to 1): pass one class index per image, or one-hot rows"
            )
    elif labels.ndim != 1:
        raise UserError(f"{name} has shape {tuple(labels.shape)}; expected (N,) class indices or (N, C) one-hot rows")
    elif labels.is_floating_point():
        if not torch.equal(labels, labels.round()):
            raise UserError(f"{name} are not whole numbers; expected integer class indices")
        labels = labels.long()
    if len(labels) != num_images:
        raise UserError(
            f"{name} has {len(labels)} entries but there are {num_images} images:"
            " pass one label per image"
        )
    return labels if labels.ndim == 2 else labels.long()


def check_validation_data(validation_data) -> None:
    """``validation_data`` must be an ``(images, labels)`` pair of arrays."""
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise UserError("validation_data must be a pair (val_images, val_labels): pass validation_data=(x, y)")
    if validation_data[0] is None or validation_data[1] is None:
        raise UserError(
            "validation_data holds None (this data has no test split): pass validation_split=0.2"
            " instead, which holds out the last 20% of the training images as Keras does"
        )


@torch.no_grad()
def check_model_outputs(model: nn.Module, sample_images: torch.Tensor) -> int:
    """Run one eval-mode forward on a couple of images; return the number of classes.

    Eval mode and no_grad: it draws no random numbers (dropout is off), so it leaves the
    run's reproducibility untouched.
    """
    was_training = model.training
    model.eval()
    try:
        outputs = model(sample_images)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise UserError(
            f"the model cannot take images of shape {tuple(sample_images.shape[1:])} ({first_line}):"
            " build it for this input_shape"
        ) from None
    finally:
        model.train(was_training)
    if outputs.ndim != 2:
        raise UserError(
            f"the model returns shape {tuple(outputs.shape)}; expected (batch, num_classes) logits"
        )
    row_sums = outputs.float().sum(dim=1)
    if outputs.min() >= 0 and torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-4):
        raise UserError(
            "the model outputs probabilities (rows sum to 1): remove the final softmax and"
            " pass logits to CrossEntropyLoss (Keras: from_logits=True)"
        )
    return outputs.shape[1]


def check_label_range(labels: torch.Tensor, num_classes: int, name: str = "train_labels") -> None:
    """Checked on the CPU, before CUDA would stop with an opaque device-side assert."""
    if labels.ndim == 2:  # one-hot rows: one column per class
        if labels.shape[1] != num_classes:
            raise UserError(
                f"{name} has {labels.shape[1]} one-hot columns but the model has {num_classes} outputs:"
                f" build the model with num_classes={labels.shape[1]} or fix the labels"
            )
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise UserError(
            f"{name} contains {bad}, outside [0, {num_classes}) for a model with {num_classes}"
            f" outputs: build the model with num_classes={max(high + 1, num_classes)} or fix the labels"
        )


def checked_fit_data(model: nn.Module, device: torch.device, epochs, batch_size, train_images, train_labels,
                     validation_data, validation_split: float, precision: str = "fp32"):  # fmt: skip
    """Every check ``fit`` makes before its first step; returns the training and validation
    tensors ``(train_images, train_labels, val_images, val_labels)``, the last two None
    without validation. Keras's rules: ``validation_data`` overrides ``validation_split``,
    which holds out the LAST fraction of the samples, before any shuffling."""
    from cnn_torch.device import as_float, check_precision
    from cnn_torch.lesson_data import split_validation

    check_fit_arguments(epochs, batch_size, validation_split)
    check_precision(device, precision)
    train_images = check_images(train_images, "train_images")
    train_labels = check_labels(train_labels, len(train_images), "train_labels")
    val_images = val_labels = None
    if validation_data is not None:
        check_validation_data(validation_data)
        val_images = check_images(validation_data[0], "val_images", warn=False)  # one warning is enough
        val_labels = check_labels(validation_data[1], len(val_images), "val_labels")
    elif validation_split:
        train_images, train_labels, val_images, val_labels = split_validation(
            train_images, train_labels, validation_split
        )
    num_classes = check_model_outputs(model, as_float(train_images[:2].to(device)))
    check_label_range(train_labels, num_classes, "train_labels")  # on the CPU: CUDA's assert is opaque
    if val_labels is not None:
        check_label_range(val_labels, num_classes, "val_labels")
    return train_images, train_labels, val_images, val_labels
