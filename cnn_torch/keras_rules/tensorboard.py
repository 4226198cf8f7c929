"""Keras's ``TensorBoard`` callback as ``fit``'s ``on_epoch_end`` hook, written with ``torch.utils.tensorboard``.

The sibling lesson's ``keras.callbacks.TensorBoard(log_dir, histogram_freq=1)`` becomes::

    tensorboard = TensorBoard(log_dir, histogram_freq=1, model=model, optimizer=optimizer)
    history = fit(model, loss_fn, optimizer, train_images, train_labels, ..., on_epoch_end=tensorboard)

and ``tensorboard --logdir LOG_DIR`` shows what Keras's would (keras/src/callbacks/tensorboard.py):

- ``LOG_DIR/train``: ``epoch_loss``, ``epoch_accuracy`` and ``epoch_learning_rate`` at step =
  the epoch (0-based), and every ``histogram_freq`` epochs one histogram per weight, named as
  Keras names them (``conv2d/kernel/histogram``, ``batch_normalization/moving_mean/histogram``,
  ``dense_1/bias/histogram``; the transfer model's base as ``keras.applications.DenseNet121``'s);
- ``LOG_DIR/validation``: the ``val_`` numbers without their prefix (``epoch_loss``,
  ``epoch_accuracy``), and ``evaluation_loss_vs_iterations`` / ``evaluation_accuracy_vs_iterations``
  at step = the optimizer steps taken so far (Keras's ``optimizer.iterations``), counted by an
  optimizer step hook.

Written as TensorFlow 2's ``tf.summary`` writes them, so a script that reads Keras's logs reads
these (``EventAccumulator.Tensors``): every number is a tensor summary that names the TensorBoard
plugin that draws it; a scalar is a float32 tensor (plugin ``scalars``), a histogram a [30, 3]
float64 tensor of (left edge, right edge, count) rows (plugin ``histograms``), bucketed as
``tf.summary.histogram`` buckets.

Not written: Keras's model graph (the ``keras`` tag) and per-batch scalars (``update_freq='batch'``),
which need TensorFlow. The event files are flushed after every epoch, so TensorBoard can watch a run live.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnn_torch.errors import UserError
from cnn_torch.keras_rules.names import keras_weight_names

INSTALL = "pip install tensorboard (or pip install -e '.[tensorboard]')"
BUCKETS = 30  # tf.summary.histogram's default, which Keras's callback keeps

def summary_writer_class():
    """``torch.utils.tensorboard.FileWriter`` (it writes Summary protobufs to an event file), or one
    line saying how to install TensorBoard."""
    try:
        from torch.utils.tensorboard import FileWriter
    except ImportError:  # torch raises it when the tensorboard package is missing
        raise UserError(f"TensorBoard logging needs the tensorboard package: {INSTALL}") from None
    return FileWriter


def histogram_buckets(weight: torch.Tensor, buckets: int = BUCKETS) -> torch.Tensor:
    """``tf.summary.histogram``'s [buckets, 3] float64 table of (left edge, right edge, count) rows:
    equal-width buckets from the smallest value to the largest, the largest counted in the last one."""
    values = weight.detach().cpu().double().flatten()  # on the CPU: float64 is not on every device
    if values.numel() == 0:
        return torch.zeros(buckets, 3, dtype=torch.float64)
    low, high = values.min(), values.max()
    if low == high:  # one value: every edge is it, and the last bucket counts them all
        counts = torch.zeros(buckets, dtype=torch.float64)
        counts[-1] = values.numel()
        edges = high.expand(buckets + 1)
    else:
        width = (high - low) / buckets
        index = ((values - low) / width).floor().long()  # the largest value would start bucket 31: the last
        counts = torch.bincount(index.clamp(0, buckets - 1), minlength=buckets)  # (0: NaN weights, not a crash)
        edges = low + width * torch.arange(buckets + 1, dtype=torch.float64)
        edges[-1] = high  # exactly the largest value, whatever the rounding
    return torch.stack([edges[:-1], edges[1:], counts.double()], dim=1)


def tensor_summary(tag: str, values: np.ndarray, plugin: str):
    """A ``Summary`` protobuf as TensorFlow 2's ``tf.summary`` writes one: the tensor's bytes, and
    the TensorBoard plugin that draws it (``scalars``, ``histograms``) in every record, as TF does."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.compat.proto.types_pb2 import DT_DOUBLE, DT_FLOAT

    dtype = {np.dtype("float32"): DT_FLOAT, np.dtype("float64"): DT_DOUBLE}[values.dtype]
    shape = TensorShapeProto(dim=[TensorShapeProto.Dim(size=size) for size in values.shape])
    content = values.astype(values.dtype.newbyteorder("<")).tobytes()  # TensorFlow's byte order
    tensor = TensorProto(dtype=dtype, tensor_shape=shape, tensor_content=content)
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=plugin))
    return Summary(value=[Summary.Value(tag=tag, tensor=tensor, metadata=metadata)])


def scalar_summary(tag: str, value: float):
    """``tf.summary.scalar``: a float32 number for TensorBoard's Scalars page."""
    return tensor_summary(tag, np.array(value, dtype=np.float32), "scalars")


def histogram_summary(tag: str, weight: torch.Tensor):
    """``tf.summary.histogram``: the weight's [30, 3] buckets for the Histograms and Distributions pages."""
    return tensor_summary(tag, histogram_buckets(weight).numpy(), "histograms")


class TensorBoard:
    """Keras's ``TensorBoard(log_dir, histogram_freq)``: call it after every epoch with ``(epoch, logs)``.

    ``model`` is needed for the weight histograms, ``optimizer`` for the learning rate and the
    step count; ``iterations`` is the number of optimizer steps already taken (a resumed run).
    """

    def __init__(self, log_dir: str | os.PathLike = "logs", histogram_freq: int = 0, *, model: nn.Module,
                 optimizer: torch.optim.Optimizer | None = None, iterations: int = 0):  # fmt: skip
        self.file_writer = summary_writer_class()
        if histogram_freq < 0:
            raise UserError(f"histogram_freq must be 0 (no histograms) or more, got {histogram_freq}: try 1")
        self.log_dir, self.histogram_freq = Path(log_dir), histogram_freq
        self.model, self.optimizer, self.iterations = model, optimizer, iterations
        if optimizer is not None:  # Keras's optimizer.iterations: one more after every step
            optimizer.register_step_post_hook(self.count_step)
        self.writers: dict = {}  # made at the first epoch's end (Keras: lazily), so only rank 0 writes files

    def count_step(self, optimizer, args, kwargs) -> None:
        self.iterations += 1

    def write(self, run: str, summary, step: int) -> None:
        """One summary into the run's event file (``train/`` or ``validation/``), opened when first needed."""
        if run not in self.writers:  # Keras's (TensorFlow 2's) event files end in .v2
            self.writers[run] = self.file_writer(str(self.log_dir / run), filename_suffix=".v2")
        self.writers[run].add_summary(summary, step)

    def __call__(self, epoch: int, logs: dict[str, float]) -> None:
        """Keras's ``on_test_end`` and ``on_epoch_end``: the epoch's numbers, then the weights."""
        train = {key: value for key, value in logs.items() if not key.startswith("val_")}
        validation = {key.removeprefix("val_"): value for key, value in logs.items() if key.startswith("val_")}
        if self.optimizer is not None:
            train["learning_rate"] = self.optimizer.param_groups[0]["lr"]
        for name, value in validation.items():
            self.write("validation", scalar_summary(f"evaluation_{name}_vs_iterations", value), self.iterations)
        for name, value in train.items():
            self.write("train", scalar_summary(f"epoch_{name}", value), epoch)
        for name, value in validation.items():
            self.write("validation", scalar_summary(f"epoch_{name}", value), epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            for name, weight in keras_weight_names(self.model):
                self.write("train", histogram_summary(f"{name}/histogram", weight), epoch)
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
