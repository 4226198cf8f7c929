"""Catch the classic learner mistakes before the first training step.

Each check raises :class:`UserError` with one line that names the mistake and the fix,
instead of a shape error deep inside a convolution or CUDA's opaque device-side assert.
"""

from __future__ import annotations

import math

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


def check_images(images, name: str = "train_images") -> torch.Tensor:
    """Return images as an NCHW tensor (uint8, or float32 in [0, 1])."""
    images = torch.as_tensor(images)
    if images.ndim != 4:
        raise UserError(
            f"{name} has shape {tuple(images.shape)}; expected 4 dimensions (N, C, H, W):"
            " stack the images into one array first"
        )
    channels_first, channels_last = images.shape[1], images.shape[-1]
    if channels_last in (1, 3, 4) and channels_first not in (1, 3, 4):
        raise UserError(
            f"{name} looks channels-last {tuple(images.shape)} (N, H, W, C, the Keras layout);"
            f" PyTorch wants (N, C, H, W): use {name}.permute(0, 3, 1, 2)"
        )
    if images.dtype == torch.uint8:
        return images  # scaled to [0, 1] per batch inside fit (the lesson's / 255.0)
    if not images.is_floating_point():
        raise UserError(f"{name} has dtype {images.dtype}; use uint8 or float32 images")
    if images.numel() and images.max() > 1.0 + 1e-6:
        raise UserError(
            f"{name} has values up to {images.max().item():.0f}, not in [0, 1]:"
            f" divide by 255.0 as the lesson does ({name} = {name} / 255.0)"
        )
    return images.float()  # Keras also casts float64 arrays to float32


def check_labels(labels, num_images: int, name: str = "train_labels") -> torch.Tensor:
    """Return labels as an int64 vector of class indices."""
    labels = torch.as_tensor(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        raise UserError(
            f"{name} has shape {tuple(labels.shape)}; CrossEntropyLoss wants a vector of class"
            f" indices: use {name}.reshape(-1)"
        )
    if labels.ndim == 2:
        raise UserError(
            f"{name} looks one-hot {tuple(labels.shape)}; CrossEntropyLoss (like Keras's"
            f" SparseCategoricalCrossentropy) wants class indices: use {name}.argmax(1)"
        )
    if labels.ndim != 1:
        raise UserError(f"{name} has shape {tuple(labels.shape)}; expected (N,) class indices")
    if labels.is_floating_point():
        if not torch.equal(labels, labels.round()):
            raise UserError(f"{name} are not whole numbers; expected integer class indices")
        labels = labels.long()
    if len(labels) != num_images:
        raise UserError(
            f"{name} has {len(labels)} entries but there are {num_images} images:"
            " pass one label per image"
        )
    return labels.long()


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
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise UserError(
            f"{name} contains {bad}, outside [0, {num_classes}) for a model with {num_classes}"
            f" outputs: build the model with num_classes={max(high + 1, num_classes)} or fix the labels"
        )


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
    return math.ceil(num_samples / batch_size)
