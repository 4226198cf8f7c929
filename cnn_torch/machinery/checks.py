"""Catch the classic learner mistakes before the first training step.

Each check raises :class:`UserError` with one line that names the mistake and the fix,
instead of a shape error deep inside a convolution or CUDA's opaque device-side assert.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
from torch import nn

from cnn_torch.errors import UserError


def _is_array(value) -> bool:
    return isinstance(value, torch.Tensor) or _is_numpy(value)


def checked_loss_and_optimizer(model: nn.Module, loss_fn, optimizer) -> tuple:
    """``fit``'s loss and optimizer, with the Keras habits caught before anything runs.

    Keras's ``compile(optimizer='adam')`` takes an optimizer by name: so does ``fit``, with
    Keras's defaults (``cnn_torch.keras_rules.optim.make_optimizer``). A loss class instead of a loss,
    a Keras loss name, Keras's ``fit(x, y)`` argument order, or an optimizer built on another
    model's weights each get one line that names the fix.
    """
    from cnn_torch.keras_rules.optim import KERAS_LEARNING_RATES, make_optimizer

    usage = "fit(model, torch.nn.CrossEntropyLoss(), 'adam', train_images, train_labels, epochs=10)"
    if _is_array(loss_fn):  # Keras: model.fit(train_images, train_labels, ...)
        raise UserError(
            f"fit takes the model, the loss and the optimizer, then the images and labels (Keras's model.fit(x, y)"
            f" has them in compile): call {usage}"
        )
    if isinstance(loss_fn, type):
        name = loss_fn.__name__
        raise UserError(f"the loss is the class {name}, not a loss: pass {name}() (an instance, with the brackets)")
    if isinstance(loss_fn, str):
        raise UserError(
            f"the loss {loss_fn!r} is a Keras name: pass torch.nn.CrossEntropyLoss() (Keras's"
            " SparseCategoricalCrossentropy(from_logits=True), and CategoricalCrossentropy for one-hot labels)"
        )
    if not callable(loss_fn):
        raise UserError(f"the loss must be a function of (logits, labels), got {type(loss_fn).__name__}:"
                        " pass torch.nn.CrossEntropyLoss()")  # fmt: skip
    if isinstance(optimizer, str):  # Keras: compile(optimizer='adam'), any case ('Adam', 'SGD')
        if optimizer.lower() not in KERAS_LEARNING_RATES:
            raise UserError(
                f"unknown optimizer {optimizer!r}: pass {', '.join(map(repr, KERAS_LEARNING_RATES))},"
                " or a torch.optim optimizer built on model.parameters()"
            )
        return loss_fn, make_optimizer(optimizer.lower(), model.parameters())
    if isinstance(optimizer, type):
        raise UserError(
            f"the optimizer is the class {optimizer.__name__}: build it on the model's weights,"
            f" {optimizer.__name__}(model.parameters()), or pass its name ('adam')"
        )
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise UserError(f"the optimizer must be a torch.optim optimizer or a name ('adam', 'sgd', 'rmsprop'),"
                        f" got {type(optimizer).__name__}")  # fmt: skip
    weights = {id(parameter) for parameter in model.parameters()}
    if not any(id(parameter) in weights for group in optimizer.param_groups for parameter in group["params"]):
        raise UserError(
            "the optimizer updates another model's weights (was the model built again after it?):"
            f" build it on this model, {type(optimizer).__name__}(model.parameters()), or pass its name ('adam')"
        )
    return loss_fn, optimizer


def check_fit_arguments(epochs: int, batch_size: int, validation_split: float) -> tuple[int, int]:
    """``(epochs, batch_size)`` as Python ints: NumPy integers are integers too (``np.int64(10)``)."""
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs <= 0:
        raise UserError(f"epochs must be a positive integer, got {epochs!r}: pass e.g. epochs=10")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size <= 0:
        raise UserError(
            f"batch_size must be a positive integer, got {batch_size!r}: pass e.g. batch_size=32"
        )
    if validation_split and not 0.0 < validation_split < 1.0:
        raise UserError(
            f"validation_split must be between 0 and 1 (exclusive), got {validation_split!r}:"
            " pass e.g. 0.2"
        )
    return int(epochs), int(batch_size)


class LossFunction(nn.Module):
    """A loss given as a plain function, ``F.cross_entropy`` say, as a module: PyTorch's forward
    hooks (``--trace``, ``--break-at``) attach to modules only."""

    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.function(logits, labels)


def checked_arguments(model: nn.Module, loss_fn, optimizer, epochs, batch_size) -> tuple:
    """``(loss_fn, optimizer, epochs, batch_size)``: what Keras's ``compile`` and ``fit`` take,
    checked and in the form ``fit`` uses (a loss module, an optimizer from its name, Python integers)."""
    loss_fn, optimizer = checked_loss_and_optimizer(model, loss_fn, optimizer)
    loss_fn = loss_fn if isinstance(loss_fn, nn.Module) else LossFunction(loss_fn)
    return (loss_fn, optimizer, *check_fit_arguments(epochs, batch_size, 0.0))


class InputWarning(UserWarning):
    """Input that trains, as it does in Keras, but is probably a mistake (e.g. 0-255 float pixels)."""


def _is_numpy(array) -> bool:
    return type(array).__module__ == "numpy"


UNSCALED = "fit trains on them as given (as Keras does), but slowly and badly"


def unscaled_pixels(images: torch.Tensor) -> float | None:
    """The largest value of float images that look like 0-255 pixels never divided by 255 (no
    negatives, values above 2), else None. uint8 images are scaled in ``fit``, so never."""
    if images.dtype == torch.uint8 or not images.is_floating_point() or not images.numel():
        return None
    low, high = (value.item() for value in torch.aminmax(images))
    return high if low >= 0.0 and high > 2.0 else None


def check_images(images, name: str = "train_images", warn: bool = True, why: str = UNSCALED,
                 stacklevel: int = 3) -> torch.Tensor:  # fmt: skip
    """Return images as an NCHW tensor: uint8 (scaled by 1/255 per batch) or float32 as given.

    Like Keras, any float values are accepted: [0, 1], standardised (mean/std, about -2..2.5),
    or unscaled 0-255 pixels, which train badly and get a warning naming the fix (``warn``;
    ``why`` says what they do here, ``stacklevel`` points the warning at the learner's line).
    """
    if images is None:
        raise UserError(f"{name} is None: pass the images, as in fit(model, loss_fn, 'adam', images, labels)")
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
                f"{name} has values up to {high:g}, like 0-255 pixels: {why};"
                f" divide by 255.0 as the lesson does ({name} = {name} / 255.0)",
                InputWarning,
                stacklevel=stacklevel,
            )
    return images


def check_labels(labels, num_images: int, name: str = "train_labels") -> torch.Tensor:
    """Return labels as int64 class indices (N,), or float32 one-hot rows (N, num_classes).

    Keras's pairs: class indices go with ``SparseCategoricalCrossentropy`` (here
    ``CrossEntropyLoss`` on indices); one-hot rows with ``CategoricalCrossentropy`` (here
    ``CrossEntropyLoss`` on class probabilities). ``(N, 1)`` columns, as
    ``keras.datasets.cifar10`` returns them, are read as class indices, as Keras reads them.
    """
    if labels is None:
        raise UserError(f"{name} is None: pass one label per image")
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


def is_split(value) -> bool:
    """A split of ``prepare_datasets`` (or anything else that holds ``images`` and ``labels``):
    what the lesson's ``train_ds`` and ``val_ds`` are, whole instead of batched."""
    return hasattr(value, "images") and hasattr(value, "labels") and not _is_array(value)


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


class ClassCountWarning(InputWarning):
    """The labels use fewer classes than the model has outputs: probably a model built for another data set."""


def warn_unused_outputs(train_labels: torch.Tensor, val_labels: torch.Tensor | None, num_classes: int) -> None:
    """Warn (once per ``fit``, at the learner's line) when the class indices of the training and
    validation labels together use fewer classes than the model has outputs. A small training set
    may legitimately miss a class, so it is a warning that says "probably", never an error."""
    if train_labels.ndim == 2:  # one-hot rows: their width was checked against the outputs
        return
    labels = train_labels if val_labels is None or val_labels.ndim == 2 else torch.cat([train_labels, val_labels])
    used = len(torch.unique(labels))
    if used < num_classes:
        warnings.warn(
            f"the labels use {used} classes but the model has {num_classes} outputs, which is probably a mistake:"
            f" build it with num_classes={used} (the classes it never sees are never predicted well)",
            ClassCountWarning,
            stacklevel=4,  # warn_unused_outputs, checked_fit_data, fit, the learner's line
        )


def keras_names(train_images, train_labels, x, y, validation_data, validation_freq) -> tuple:
    """``(train_images, train_labels, validation_data)`` from what Keras's ``fit`` takes too:
    ``x=`` and ``y=`` for the images and labels, and a split of ``prepare_datasets`` (the lesson's
    ``train_ds``, ``val_ds``) for ``x`` or ``validation_data``."""
    if x is not None and train_images is not None or y is not None and train_labels is not None:
        raise UserError("the images (or labels) are given twice, by position and as x= (y=): pass them once")
    train_images, train_labels = x if x is not None else train_images, y if y is not None else train_labels
    if is_split(train_images):
        if train_labels is not None:
            raise UserError("a split already holds its labels: pass fit(model, loss_fn, 'adam', train_ds) alone")
        train_images, train_labels = train_images.images, train_images.labels
    if is_split(validation_data):
        validation_data = (validation_data.images, validation_data.labels)
    if validation_freq != 1:
        raise UserError(f"validation_freq={validation_freq!r} is not taken: fit validates after every epoch,"
                        " as Keras's default validation_freq=1 does; leave it out")  # fmt: skip
    return train_images, train_labels, validation_data


def checked_callbacks(callbacks, early_stopping, on_epoch_end) -> tuple:
    """``(early_stopping, on_epoch_end)`` with Keras's ``callbacks=[...]`` sorted into them: an
    :class:`EarlyStopping` becomes ``early_stopping``; every other callable (``TensorBoard``,
    ``LivePlot``, a function of ``(epoch, logs)``) is called after each epoch, in the list's order,
    after ``on_epoch_end``. Keras's own callback objects get one line that names the fix."""
    from cnn_torch.keras_rules.stopping import EarlyStopping

    if callbacks is None:
        return early_stopping, on_epoch_end
    if not isinstance(callbacks, (list, tuple)):
        callbacks = [callbacks]
    hooks = [on_epoch_end] if on_epoch_end is not None else []
    for callback in callbacks:
        name = type(callback).__name__
        if isinstance(callback, EarlyStopping):
            if early_stopping is not None and early_stopping is not callback:
                raise UserError("two EarlyStopping callbacks: pass one, in callbacks=[...] or as early_stopping=")
            early_stopping = callback
        elif type(callback).__module__.startswith(("keras", "tensorflow")):
            raise UserError(
                f"{name} is a Keras callback: cnn-torch takes EarlyStopping, TensorBoard and LivePlot"
                " (from cnn_torch import ...) or a function on_epoch_end(epoch, logs)"
                + (": save the best model with fit's run directory (train.py) or torch.save in one"
                   if name == "ModelCheckpoint" else "")
            )
        elif callable(callback):
            hooks.append(callback)
        else:
            raise UserError(f"callbacks holds a {name}, which is not callable: pass EarlyStopping, TensorBoard,"
                            " LivePlot or a function on_epoch_end(epoch, logs)")  # fmt: skip
    if len(hooks) <= 1:
        return early_stopping, hooks[0] if hooks else None

    def every_hook(epoch: int, logs: dict) -> None:  # Keras: the callbacks in their list's order
        for hook in hooks:
            hook(epoch, logs)

    return early_stopping, every_hook


def checked_fit_data(model: nn.Module, device: torch.device, epochs, batch_size, train_images, train_labels,
                     validation_data, validation_split: float, precision: str = "fp32", x=None, y=None,
                     validation_freq: int = 1):  # fmt: skip
    """Every check ``fit`` makes before its first step; returns the training and validation
    tensors ``(train_images, train_labels, val_images, val_labels)``, the last two None
    without validation. Keras's rules: ``validation_data`` overrides ``validation_split``,
    which holds out the LAST fraction of the samples, before any shuffling. Keras's names
    (``x=``, ``y=``) and the splits of ``prepare_datasets`` are taken too (:func:`keras_names`)."""
    from cnn_torch.platform.device import as_float, check_precision
    from cnn_torch.sources.lesson_data import split_validation

    train_images, train_labels, validation_data = keras_names(
        train_images, train_labels, x, y, validation_data, validation_freq
    )
    check_fit_arguments(epochs, batch_size, validation_split)
    check_precision(device, precision)
    train_images = check_images(train_images, "train_images", stacklevel=4)
    train_labels = check_labels(train_labels, len(train_images), "train_labels")
    val_images = val_labels = None
    if validation_data is not None:
        check_validation_data(validation_data)
        # one warning is enough: about the validation images only when the training images are scaled
        val_images = check_images(
            validation_data[0], "val_images", warn=unscaled_pixels(train_images) is None, stacklevel=4,
            why="train_images are on the [0, 1] scale, so val_loss and val_accuracy would measure another scale",
        )
        val_labels = check_labels(validation_data[1], len(val_images), "val_labels")
    elif validation_split:
        train_images, train_labels, val_images, val_labels = split_validation(
            train_images, train_labels, validation_split
        )
    num_classes = check_model_outputs(model, as_float(train_images[:2].to(device)))
    check_label_range(train_labels, num_classes, "train_labels")  # on the CPU: CUDA's assert is opaque
    if val_labels is not None:
        check_label_range(val_labels, num_classes, "val_labels")
    warn_unused_outputs(train_labels, val_labels, num_classes)
    return train_images, train_labels, val_images, val_labels
