"""Keras ``evaluate`` and ``predict``: eval mode, no gradients, never shuffled.

Both move the model to the device they are given (and leave it there, as ``fit`` does), and
put it back in the mode it was in (training or eval) when they end, even by an error.
A model trained with L2 carries its factor (``model.kernel_l2``, set by ``L2Regularized``), and
``evaluate`` adds the penalty to the loss it reports, as Keras's does for a model whose layers
have ``kernel_regularizer=L2(l2)``.
"""

from __future__ import annotations

import torch
from torch import nn

from cnn_torch.keras_rules.regularizers import L2Regularized, regularized_kernels
from cnn_torch.machinery.checks import check_images, check_labels
from cnn_torch.machinery.progress import EpochProgress, resolve_verbose
from cnn_torch.platform import distributed
from cnn_torch.platform.device import as_float, autocast, check_precision, resolve_device


def count_correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Keras's ``metrics=['accuracy']``: predictions whose argmax is the label's class. One-hot
    labels compare with their own argmax (Keras then resolves 'accuracy' to categorical accuracy)."""
    true_classes = labels.argmax(dim=1) if labels.ndim == 2 else labels
    return (logits.argmax(dim=1) == true_classes).sum()


def with_model_penalty(model: nn.Module, loss_fn) -> nn.Module:
    """``loss_fn`` with the L2 penalty the model carries (``model.kernel_l2``) added, unless it
    adds one already: Keras's ``evaluate`` reports the compiled loss plus every layer's
    ``kernel_regularizer`` penalty, whatever loss it is given."""
    l2 = getattr(model, "kernel_l2", 0.0)
    if isinstance(loss_fn, nn.Module) and any(isinstance(m, L2Regularized) for m in loss_fn.modules()):
        return loss_fn  # the run's own L2Regularized (under torchrun inside RankShareLoss): counted once
    if not l2 or not regularized_kernels(model):  # Keras: a frozen layer's penalty is not counted either
        return loss_fn
    return L2Regularized(loss_fn, model, l2)


def model_on(model: nn.Module, device) -> torch.device:
    """The device evaluate and predict run on: ``device`` (the model moved there, as ``fit``
    does: a CPU model given CUDA images would fail inside torch), else the model's own."""
    if device is None:
        return next(model.parameters()).device
    device = resolve_device(device)
    model.to(device)
    return device


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
    ``loss_fn`` (default ``CrossEntropyLoss``) gets the model's L2 penalty added when the model
    carries one (``model.kernel_l2``), as Keras's loss includes its layers' regularizers.
    ``device``: the model is moved there and stays (default: where the model is).
    """
    verbose = resolve_verbose(verbose) if distributed.is_main_process() else 0  # [torchrun] rank 0 prints
    images, labels = check_images(images, "images", warn=False), check_labels(labels, len(images), "labels")
    loss_fn = with_model_penalty(model, loss_fn or nn.CrossEntropyLoss())
    device = model_on(model, device)
    was_training = model.training
    model.eval()  # Keras: evaluation runs in inference mode (dropout off)
    try:
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = torch.zeros((), dtype=torch.int64, device=device)
        indices = distributed.local_share(torch.arange(len(images)))  # [torchrun] this rank's slice
        progress = EpochProgress(verbose, 0, 1, max(1, -(-len(indices) // batch_size)))  # Keras: one epoch, no header
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
    finally:
        model.train(was_training)  # an error mid-way leaves the model as it was given, too
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
    precision: str = "fp32",
) -> torch.Tensor:
    """The model's outputs (logits) for every image, concatenated, on the CPU, in float32 (Keras ``predict``).

    Float images of 0-255 pixels (``img_to_array``'s) get a warning naming the ``/ 255.0``.
    ``verbose`` takes Keras's values and prints nothing (there is no number to show).
    ``precision``: ``"bf16"`` runs the forward pass under bf16 autocast, as ``fit`` and
    ``evaluate`` do with it. ``device``: the model is moved there and stays (default: where the model is).
    """
    resolve_verbose(verbose)
    why = "predict uses them as given, and a model trained on the lesson's / 255.0 images sees nonsense"
    # stacklevel 4: check_images, predict, torch.no_grad's wrapper, then the learner's line
    images = check_images(images, "images", why=why, stacklevel=4)
    device = model_on(model, device)
    check_precision(device, precision)  # an unknown one refused; emulated bf16 warned about (stacklevel 4 too)
    was_training = model.training
    model.eval()
    try:
        with autocast(device, precision):
            outputs = [model(as_float(batch.to(device))).float().cpu() for batch in images.split(batch_size)]
    finally:
        model.train(was_training)  # an error mid-way leaves the model as it was given, too
    return torch.cat(outputs)


def probabilities(logits) -> torch.Tensor:
    """Softmax of the logits (a tensor or a NumPy array): what the lesson's Keras model
    (softmax last layer) outputs."""
    return torch.softmax(torch.as_tensor(logits).float(), dim=1)
