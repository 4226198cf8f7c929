"""Keras's ``TensorBoard`` callback as ``fit``'s ``on_epoch_end`` hook, written with ``torch.utils.tensorboard``.

The sibling lesson's ``keras.callbacks.TensorBoard(log_dir, histogram_freq=1)`` becomes::

    tensorboard = TensorBoard(log_dir, histogram_freq=1, model=model, optimizer=optimizer)
    history = fit(model, loss_fn, optimizer, train_images, train_labels, ..., on_epoch_end=tensorboard)

and ``tensorboard --logdir LOG_DIR`` shows what Keras's would (keras/src/callbacks/tensorboard.py):

- ``LOG_DIR/train``: ``epoch_loss``, ``epoch_accuracy`` and ``epoch_learning_rate`` at step =
  the epoch (0-based), and every ``histogram_freq`` epochs one histogram per weight, named as
  Keras names them (``conv2d/kernel/histogram``, ``conv2d/bias/histogram``, ``dense_1/kernel/histogram``);
- ``LOG_DIR/validation``: the ``val_`` numbers without their prefix (``epoch_loss``,
  ``epoch_accuracy``), and ``evaluation_loss_vs_iterations`` / ``evaluation_accuracy_vs_iterations``
  at step = the optimizer steps taken so far (Keras's ``optimizer.iterations``), counted by an
  optimizer step hook.

Not written: Keras's model graph and per-batch scalars (``update_freq='batch'``), which need
TensorFlow. The event files are flushed after every epoch, so TensorBoard can watch a run live.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from cnn_torch.errors import UserError

INSTALL = "pip install tensorboard (or pip install -e '.[tensorboard]')"

# torch module -> Keras's layer name and its weights' names (parameters, then buffers), in Keras's order
KERAS_LAYERS: dict[type, tuple[str, dict[str, str]]] = {
    nn.Conv2d: ("conv2d", {"weight": "kernel", "bias": "bias"}),
    nn.Linear: ("dense", {"weight": "kernel", "bias": "bias"}),
}
BATCH_NORM = ("batch_normalization", {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
                                      "running_var": "moving_variance"})  # fmt: skip
KERAS_LAYERS.update({nn.BatchNorm1d: BATCH_NORM, nn.BatchNorm2d: BATCH_NORM})


def summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``, or one line saying how to install TensorBoard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises it when the tensorboard package is missing
        raise UserError(f"TensorBoard logging needs the tensorboard package: {INSTALL}") from None
    return SummaryWriter


def keras_weight_names(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """``[("conv2d/kernel", tensor), ("conv2d/bias", tensor), ("conv2d_1/kernel", ...), ...]``: every
    weight of ``model`` under the name Keras gives it (layers numbered per kind in model order;
    a module Keras has no name for keeps its PyTorch name)."""
    named, counts = [], {}
    for module_name, module in model.named_modules():
        weights = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        weights = [(name, tensor) for name, tensor in weights if tensor.is_floating_point()]
        if not weights:
            continue
        kind, renames = KERAS_LAYERS.get(type(module), (None, {}))
        if kind is None:
            named += [(f"{module_name}/{name}" if module_name else name, tensor) for name, tensor in weights]
            continue
        layer = kind if kind not in counts else f"{kind}_{counts[kind]}"
        counts[kind] = counts.get(kind, 0) + 1
        named += [(f"{layer}/{renames.get(name, name)}", tensor) for name, tensor in weights]
    return named


class TensorBoard:
    """Keras's ``TensorBoard(log_dir, histogram_freq)``: call it after every epoch with ``(epoch, logs)``.

    ``model`` is needed for the weight histograms, ``optimizer`` for the learning rate and the
    step count; ``iterations`` is the number of optimizer steps already taken (a resumed run).
    """

    def __init__(self, log_dir: str | os.PathLike = "logs", histogram_freq: int = 0, *, model: nn.Module,
                 optimizer: torch.optim.Optimizer | None = None, iterations: int = 0):  # fmt: skip
        self.summary_writer = summary_writer_class()
        if histogram_freq < 0:
            raise UserError(f"histogram_freq must be 0 (no histograms) or more, got {histogram_freq}: try 1")
        self.log_dir, self.histogram_freq = Path(log_dir), histogram_freq
        self.model, self.optimizer, self.iterations = model, optimizer, iterations
        if optimizer is not None:  # Keras's optimizer.iterations: one more after every step
            optimizer.register_step_post_hook(self.count_step)
        self.writers: dict = {}  # made at the first epoch's end (Keras: lazily), so only rank 0 writes files

    def count_step(self, optimizer, args, kwargs) -> None:
        self.iterations += 1

    def writer(self, run: str):
        if run not in self.writers:
            self.writers[run] = self.summary_writer(log_dir=str(self.log_dir / run))
        return self.writers[run]

    def __call__(self, epoch: int, logs: dict[str, float]) -> None:
        """Keras's ``on_test_end`` and ``on_epoch_end``: the epoch's numbers, then the weights."""
        train = {key: value for key, value in logs.items() if not key.startswith("val_")}
        validation = {key.removeprefix("val_"): value for key, value in logs.items() if key.startswith("val_")}
        if self.optimizer is not None:
            train["learning_rate"] = self.optimizer.param_groups[0]["lr"]
        for name, value in validation.items():
            self.writer("validation").add_scalar(f"evaluation_{name}_vs_iterations", value, self.iterations)
        for name, value in train.items():
            self.writer("train").add_scalar(f"epoch_{name}", value, epoch)
        for name, value in validation.items():
            self.writer("validation").add_scalar(f"epoch_{name}", value, epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            for name, weight in keras_weight_names(self.model):
                self.writer("train").add_histogram(f"{name}/histogram", weight.detach().float().cpu(), epoch)
        for writer in self.writers.values():
            writer.flush()  # on disk now: TensorBoard can follow the run as it trains

    def close(self) -> None:
        """Close the event files (Keras: at the end of training); a later call opens new ones."""
        for writer in self.writers.values():
            writer.close()
        self.writers = {}

    def __enter__(self) -> TensorBoard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
