"""The lesson's history plots, drawn exactly as it draws them: pandas + seaborn.

The lesson does ``history_df = pd.DataFrame.from_dict(history.history)`` and then
``sns.lineplot(data=history_df[['accuracy', 'val_accuracy']])``; we do the same, with
epochs counted from 1 on the x axis and labelled axes. Files are written atomically.

The backend is matplotlib's own choice: a window where there is a screen (``plt.show()`` in a
terminal IPython), Agg where there is none (CI, clusters, SSH), the inline one in Jupyter.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from cnn_torch.history import History
from cnn_torch.machinery.terminal import in_jupyter
from cnn_torch.platform.fileio import atomic_write

TRAIN_NOTE = "train: running mean over the epoch while the weights change (dropout on, if any); val: after the epoch"


def history_frame(history: History) -> pd.DataFrame:
    """The lesson's ``pd.DataFrame.from_dict(history.history)``, indexed by epoch from 1."""
    frame = pd.DataFrame.from_dict(history.history)
    frame.index = pd.Index([epoch + 1 for epoch in history.epoch], name="epoch")
    return frame


def draw_metric(ax, frame: pd.DataFrame, metric: str) -> None:
    columns = [c for c in (metric, f"val_{metric}") if c in frame]
    sns.lineplot(data=frame[columns], ax=ax, markers=True, dashes=False)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_xticks(list(frame.index)[:: max(1, math.ceil(len(frame) / 10))])  # whole epochs from 1, at most ~10 ticks
    ax.legend(title=None)
    ax.grid(True, alpha=0.3)


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG, atomically (a crash never leaves half a file), and close it."""
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_history(history: History, fig_dir: str | os.PathLike, run_name: str, title: str) -> list[Path]:
    """Write ``<run>_accuracy.png``, ``<run>_loss.png`` and ``<run>_history.png``."""
    frame, fig_dir = history_frame(history), Path(fig_dir)
    paths = []
    for metric in ("accuracy", "loss"):
        fig, ax = plt.subplots(figsize=(6, 4))
        draw_metric(ax, frame, metric)
        ax.set_title(f"{title}: {metric}")
        paths.append(save_figure(fig, fig_dir / f"{run_name}_{metric}.png"))
    fig, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(11, 4))
    draw_metric(loss_ax, frame, "loss")
    draw_metric(accuracy_ax, frame, "accuracy")
    fig.suptitle(title)
    fig.text(0.5, -0.02, TRAIN_NOTE, ha="center", fontsize=8, color="gray")
    paths.append(save_figure(fig, fig_dir / f"{run_name}_history.png"))
    return paths


def plot_confusion_matrix(matrix, class_names: list[str], path: str | os.PathLike, title: str) -> Path:
    """The lesson's ``sns.heatmap(confusion_df, annot=True)``: counts in every cell, true
    labels down the side and predicted labels along the bottom, written atomically.
    ``matrix`` is a tensor, an array or a list of rows, one row per true label."""
    rows = matrix.tolist() if hasattr(matrix, "tolist") else matrix
    counts = pd.DataFrame([[int(n) for n in row] for row in rows], index=class_names, columns=class_names)
    size = 2.5 + 0.55 * len(class_names)  # room for ten CIFAR-10 names and 4-digit counts
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    sns.heatmap(counts, annot=True, fmt="d", cmap="Blues", square=True, ax=ax)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    ax.set_title(title)
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor")
    plt.setp(ax.get_yticklabels(), rotation=0)
    return save_figure(fig, Path(path))


# --- several runs on one figure (scripts/compare.py, scripts/plot_history.py RUN_A RUN_B ...) ---

COMPARISON_NOTE = "solid: validation (val_accuracy, val_loss); light dashed: training (accuracy, loss)"


def comparison_frame(histories: Mapping[str, History]) -> pd.DataFrame:
    """Long format for seaborn: one row per (setting, epoch, metric), with ``split`` train or val."""
    rows = []
    for name, history in histories.items():
        frame = history_frame(history)
        for key in frame:
            metric = key.removeprefix("val_")
            split = "val" if key.startswith("val_") else "train"
            for epoch, value in frame[key].items():
                rows.append({"setting": name, "epoch": epoch, "metric": metric, "split": split, "value": value})
    return pd.DataFrame(rows, columns=["setting", "epoch", "metric", "split", "value"])


def overlay_histories(histories: Mapping[str, History], title: str = ""):
    """One figure, two panels (accuracy, loss): each run's validation curve solid and its
    training curve lighter and dashed, one colour per run, the legend by run. Returns the Figure."""
    if not histories:
        raise ValueError("overlay_histories needs at least one history")
    frame = comparison_frame(histories)
    palette = dict(zip(histories, sns.color_palette(n_colors=len(histories)), strict=True))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        part = frame[frame["metric"] == metric]
        train, val = part[part["split"] == "train"], part[part["split"] == "val"]
        if len(train):
            sns.lineplot(data=train, x="epoch", y="value", hue="setting", palette=palette, ax=ax,
                         alpha=0.35, linestyle="--", legend=False)
        if len(val):
            sns.lineplot(data=val, x="epoch", y="value", hue="setting", palette=palette, ax=ax,
                         marker="o", legend=False)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        epochs = sorted(set(part["epoch"]))
        ax.set_xticks(epochs[:: max(1, math.ceil(len(epochs) / 10))])
        ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=colour, marker="o", label=name) for name, colour in palette.items()]
    axes[0].legend(handles=handles, fontsize=8)  # by run; the line styles are explained below the panels
    fig.suptitle(title)
    fig.text(0.5, -0.02, COMPARISON_NOTE, ha="center", fontsize=8, color="gray")
    return fig


def plot_comparison(histories: Mapping[str, History], path: str | os.PathLike, title: str = "") -> Path:
    """Draw :func:`overlay_histories` and write it to ``path`` (PNG, atomically)."""
    return save_figure(overlay_histories(histories, title), Path(path))


# --- LivePlot: The lesson's two plots, redrawn in place after every epoch while ``fit`` trains.
#
#
#     history = fit(model, loss_fn, optimizer, train_images, train_labels, epochs=10,
#                   validation_data=(val_images, val_labels), on_epoch_end=LivePlot())
#
# In Jupyter the figure (loss and accuracy, training and validation, as ``plot_history``
# draws them) appears under the cell after the first epoch and is replaced after each one,
# so a learner watches the validation curve turn away from the training curve: overfitting,
# as it happens. Anywhere else (a terminal, a script, CI) it draws nothing, so the same
# notebook code runs as a script. It uses ``fit``'s one hook, ``on_epoch_end(epoch, logs)``:
# nothing in the loop.

class LivePlot:
    """``on_epoch_end`` for ``fit``: keeps the epochs' logs and redraws the two plots.

    ``then`` is another ``on_epoch_end`` to call as well (e.g. a run's recorder), since
    ``fit`` has one hook. ``display`` is IPython's ``display`` (given in tests); by default
    it is used only in Jupyter.
    """

    def __init__(self, title: str = "", then: Callable[[int, dict], None] | None = None, display=None):
        self.title, self.then = title, then
        self.history = History()
        self._display = display
        self._handle = None

    def __call__(self, epoch: int, logs: dict) -> None:
        self.history.append(epoch, logs)
        if self.then is not None:
            self.then(epoch, logs)
        display = self._display
        if display is None:
            if not in_jupyter():
                return
            from IPython.display import display
        fig = self.figure()
        if self._handle is None:
            self._handle = display(fig, display_id=True)  # the figure, under the cell
        else:
            self._handle.update(fig)  # replaced in place: one figure, not one per epoch
        plt.close(fig)  # shown already; closing keeps Jupyter from drawing it again at the cell's end

    def figure(self):
        """The lesson's loss and accuracy plots of the epochs so far, side by side."""
        frame = history_frame(self.history)
        fig, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(11, 4))
        draw_metric(loss_ax, frame, "loss")
        draw_metric(accuracy_ax, frame, "accuracy")
        last = self.history.epoch[-1] + 1
        fig.suptitle(f"{self.title + ': ' if self.title else ''}after epoch {last}")
        fig.text(0.5, -0.02, TRAIN_NOTE, ha="center", fontsize=8, color="gray")
        return fig
