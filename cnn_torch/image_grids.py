"""Look at the data: the lesson's ``plt.imshow`` grids, with class names.

Episodes 01 and 02 show a grid of training images, each titled with its class::

    for i in range(25):
        plt.subplot(5, 5, i + 1)
        plt.imshow(train_images[i])
        plt.title(class_names[train_labels[i]])

and episodes 05 and 06 show test images with the class the model predicted.
:func:`show_images` draws both: give it ``predictions`` and each title reads
"true / predicted", wrong ones in red. Pixels are drawn as squares (``interpolation="nearest"``),
not smoothed, so a 32x32 image looks as coarse as the model sees it.

Both return the matplotlib Figure, which Jupyter shows inline; :func:`save_images` writes
one to a PNG file (``train.py`` writes ``<run>_train_images.png``, ``evaluate.py``
``<run>_<split>_predictions.png``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from cnn_torch.plots import plt, save_figure


def grid_of_axes(count: int, columns: int, cell_size: tuple[float, float], top: float):
    """A figure of ``count`` picture cells, ``columns`` wide (fewer if ``count`` is smaller),
    axes hidden, the unused cells of the last row blank; ``cell_size`` (width, height) and the
    room ``top`` for the title are in inches. Returns ``(fig, the count axes in order)``."""
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(cell_size[0] * columns, cell_size[1] * rows + top), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, list(axes.flat)[:count]


def pick(labels: torch.Tensor, count: int = 25, seed: int = 0) -> torch.Tensor:
    """Indices of ``count`` images in a seeded random order, every class taking turns, so a
    grid of a sorted split (val/ and test/ are sorted by class) shows all of them."""
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(len(labels), generator=generator)
    by_class = [shuffled[labels[shuffled] == label] for label in torch.unique(labels).tolist()]
    taken = []
    for turn in range(max((len(members) for members in by_class), default=0)):
        taken += [members[turn] for members in by_class if turn < len(members)]
        if len(taken) >= count:
            break
    return torch.stack(taken[:count]) if taken else torch.empty(0, dtype=torch.int64)


def show_images(
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    title: str = "",
    predictions: torch.Tensor | None = None,
    columns: int = 5,
):
    """A grid of ``uint8`` (N, C, H, W) images (or floats in [0, 1]), each titled with its
    class; with ``predictions``, "true / predicted" and the wrong ones in red. Returns the Figure."""
    if len(images) == 0:
        raise ValueError("show_images needs at least one image")
    count = len(images)
    fig, cells = grid_of_axes(count, columns, (1.9, 2.0), 0.4)
    for i, ax in enumerate(cells):
        image = images[i].detach().cpu()
        pixels = image.permute(1, 2, 0) if image.dtype == torch.uint8 else image.permute(1, 2, 0).clamp(0, 1)
        cmap = "gray" if pixels.shape[2] == 1 else None
        ax.imshow((pixels.squeeze(2) if cmap else pixels).numpy(), cmap=cmap, interpolation="nearest")
        true_name = class_names[int(labels[i])]
        if predictions is None:
            ax.set_title(true_name, fontsize=9)
        else:
            predicted = class_names[int(predictions[i])]
            wrong = predicted != true_name
            ax.set_title(f"{true_name} / {predicted}" + (" \u2717" if wrong else ""), fontsize=8,
                         color="red" if wrong else "black")  # fmt: skip
    if predictions is not None:
        correct = sum(int(p) == int(t) for p, t in zip(predictions[:count], labels[:count], strict=True))
        title = f"{title}\n" if title else ""
        title += f"true / predicted class; {correct} of {count} right, wrong ones in red"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_images(fig, path: str | os.PathLike) -> Path:
    """Write a grid from :func:`show_images` to ``path`` (PNG, atomically) and close it."""
    return save_figure(fig, Path(path))
