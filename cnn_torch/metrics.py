"""The confusion matrix and per-class accuracy of episode 05, computed with torch.

The lesson computes them with scikit-learn and draws the matrix with seaborn:

    conf_matrix = confusion_matrix(true_labels, predicted_labels)   # rows: true label
    sns.heatmap(pd.DataFrame(conf_matrix, index=class_names, columns=class_names), annot=True)

:func:`confusion_matrix` is sklearn's: entry ``[i, j]`` counts the images of class ``i``
predicted as class ``j``, so the diagonal holds the correct predictions. Per-class accuracy
is the diagonal divided by the row sums (sklearn calls it per-class recall).
"""

from __future__ import annotations

import math

import torch

from cnn_torch.errors import UserError
from cnn_torch.evaluation import evaluate, predict


def confusion_matrix(true_labels, predicted_labels, num_classes: int) -> torch.Tensor:
    """An (num_classes, num_classes) int64 matrix: row = true label, column = predicted label."""
    true_labels = torch.as_tensor(true_labels, dtype=torch.int64).reshape(-1).cpu()
    predicted_labels = torch.as_tensor(predicted_labels, dtype=torch.int64).reshape(-1).cpu()
    if len(true_labels) != len(predicted_labels):
        raise UserError(
            f"{len(true_labels)} true labels but {len(predicted_labels)} predictions: pass one prediction per image"
        )
    for name, labels in (("true", true_labels), ("predicted", predicted_labels)):
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise UserError(f"{name} labels must lie in [0, {num_classes}): got {labels.min()}..{labels.max()}")
    # Each (true, predicted) pair gets its own bin: true * num_classes + predicted.
    counts = torch.bincount(true_labels * num_classes + predicted_labels, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def per_class_accuracy(matrix: torch.Tensor) -> list[float]:
    """For each class, the fraction of its images predicted correctly (NaN for a class with none)."""
    correct = matrix.diagonal().tolist()
    totals = matrix.sum(dim=1).tolist()
    return [c / n if n else math.nan for c, n in zip(correct, totals, strict=True)]


def evaluation_report(
    model: torch.nn.Module,
    images,
    labels,
    class_names: list[str],
    batch_size: int = 32,
    device: str | torch.device | None = None,
    loss_fn: torch.nn.Module | None = None,
) -> dict:
    """Episode 05 in one call: Keras ``evaluate``'s loss and accuracy, then ``predict``'s
    most probable class for every image, the confusion matrix and per-class accuracy.
    ``loss_fn``: the run's loss (default ``CrossEntropyLoss``; with L2, ``L2Regularized``).

    Returns plain numbers and lists (JSON-ready); a class without images has accuracy None.
    """
    loss, accuracy = evaluate(model, images, labels, batch_size=batch_size, loss_fn=loss_fn, device=device, verbose=0)
    predicted_labels = predict(model, images, batch_size=batch_size, device=device).argmax(dim=1)
    matrix = confusion_matrix(labels, predicted_labels, len(class_names))
    per_class = per_class_accuracy(matrix)
    return {
        "loss": loss,
        "accuracy": accuracy,
        "num_samples": len(predicted_labels),
        "class_names": list(class_names),
        "per_class": {name: None if math.isnan(a) else a for name, a in zip(class_names, per_class, strict=True)},
        "confusion_matrix": matrix.tolist(),
    }


def format_per_class(matrix: torch.Tensor, class_names: list[str]) -> str:
    """A text table: class, images, correct, accuracy (one row per class)."""
    width = max(len("class"), *(len(name) for name in class_names))
    lines = [f"{'class':<{width}}  {'images':>6}  {'correct':>7}  {'accuracy':>8}"]
    totals, correct = matrix.sum(dim=1).tolist(), matrix.diagonal().tolist()
    for name, n, c, accuracy in zip(class_names, totals, correct, per_class_accuracy(matrix), strict=True):
        shown = "n/a" if math.isnan(accuracy) else f"{accuracy:.4f}"
        lines.append(f"{name:<{width}}  {n:>6}  {c:>7}  {shown:>8}")
    return "\n".join(lines)


def format_confusion_matrix(matrix: torch.Tensor, class_names: list[str]) -> str:
    """The matrix as text, true labels down the side and predicted labels across the top."""
    rows = matrix.tolist()
    corner = "true \\ predicted"
    label_width = max(len(corner), *(len(name) for name in class_names))
    widths = [max(len(name), *(len(str(row[j])) for row in rows)) for j, name in enumerate(class_names)]
    header = f"{corner:<{label_width}}  " + " ".join(
        f"{name:>{w}}" for name, w in zip(class_names, widths, strict=True)
    )
    lines = [header]
    for name, row in zip(class_names, rows, strict=True):
        lines.append(f"{name:<{label_width}}  " + " ".join(f"{n:>{w}}" for n, w in zip(row, widths, strict=True)))
    return "\n".join(lines)
