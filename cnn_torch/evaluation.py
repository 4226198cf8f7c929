"""Keras ``evaluate`` and ``predict``: eval mode, no gradients, never shuffled."""

from __future__ import annotations

import torch
from torch import nn

from cnn_torch.machinery.checks import check_images, check_labels
from cnn_torch.machinery.progress import EpochProgress, resolve_verbose
from cnn_torch.platform import distributed
from cnn_torch.platform.device import as_float, autocast, resolve_device


def count_correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Keras's ``metrics=['accuracy']``: predictions whose argmax is the label's class. One-hot
    labels compare with their own argmax (Keras then resolves 'accuracy' to categorical accuracy)."""
    true_classes = labels.argmax(dim=1) if labels.ndim == 2 else labels
    return (logits.argmax(dim=1) == true_classes).sum()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images,
    labels,
    batch_size: int = 32,
    loss_fn: nn.Module | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    verbose: int | str = "auto",
) -> tuple[float, float]:
    """Return ``(loss, accuracy)`` over all samples, like Keras's ``model.evaluate``.

    Both are sample-weighted means (sum of per-batch ``loss * batch_size`` / N), so the
    result does not depend on ``batch_size`` beyond float rounding. Under torchrun
    each rank evaluates its own slice and the sums are all-reduced. ``verbose`` takes
    Keras's values and prints what Keras's ``evaluate`` prints: ``"auto"`` (the default), 1
    or 2 its line ``8/8 ━━━━ 0s 3ms/step - accuracy: 0.5200 - loss: 1.2000`` (1: a bar
    while it runs; 2: without the bar), 0 nothing (``fit`` validates through this, silently).
    """
    verbose = resolve_verbose(verbose) if distributed.is_main_process() else 0  # [torchrun] rank 0 prints
    images, labels = check_images(images, "images", warn=False), check_labels(labels, len(images), "labels")
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()  # Keras: evaluation runs in inference mode (dropout off)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = torch.zeros((), dtype=torch.int64, device=device)
    indices = distributed.local_share(torch.arange(len(images)))  # [torchrun] this rank's slice
    progress = EpochProgress(verbose, 0, 1, max(1, -(-len(indices) // batch_size)))  # Keras: one epoch, so no header
    for step, batch_indices in enumerate(indices.split(batch_size), start=1):
        batch_images = as_float(images[batch_indices].to(device, non_blocking=True))
        batch_labels = labels[batch_indices].to(device, non_blocking=True)
        with autocast(device, precision):
            logits = model(batch_images)
        loss_sum += loss_fn(logits.float(), batch_labels) * len(batch_labels)
        correct += count_correct(logits, batch_labels)
        seen += len(batch_labels)
        if verbose == 1:  # the running means, as Keras's bar shows them (a CPU-GPU sync: only when shown)
            progress.update(step, {"loss": (loss_sum / seen).item(), "accuracy": (correct / seen).item()})
    loss_sum, correct, seen = distributed.all_reduce_sums(loss_sum, correct, seen)
    model.train(was_training)
    loss, accuracy = (loss_sum / seen).item(), (correct / seen).item()
    progress.close({"loss": loss, "accuracy": accuracy})  # Keras's last line (nothing at verbose=0)
    return loss, accuracy


@torch.no_grad()
def predict(
    model: nn.Module,
    images,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    verbose: int | str = 0,
) -> torch.Tensor:
    """The model's outputs (logits) for every image, concatenated, on the CPU (Keras ``predict``).

    Float images of 0-255 pixels (``img_to_array``'s) get a warning naming the ``/ 255.0``.
    ``verbose`` takes Keras's values and prints nothing (there is no number to show).
    """
    resolve_verbose(verbose)
    why = "predict uses them as given, and a model trained on the lesson's / 255.0 images sees nonsense"
    # stacklevel 4: check_images, predict, torch.no_grad's wrapper, then the learner's line
    images = check_images(images, "images", why=why, stacklevel=4)
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs = [model(as_float(batch.to(device))).float().cpu() for batch in images.split(batch_size)]
    model.train(was_training)
    return torch.cat(outputs)


def probabilities(logits) -> torch.Tensor:
    """Softmax of the logits (a tensor or a NumPy array): what the lesson's Keras model
    (softmax last layer) outputs."""
    return torch.softmax(torch.as_tensor(logits).float(), dim=1)
