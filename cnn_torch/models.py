"""The lesson's Keras architectures, rebuilt as PyTorch ``nn.Sequential`` models.

Each model lists its layers in the same order as the lesson's Keras code, and
each layer carries a comment with the Keras line it stands for, so ``model[i]``
can be compared with ``keras_model.layers[i]`` by eye. Keras folds
``activation='relu'`` into ``Conv2D``/``Dense``; here the ReLU is its own module.

Differences from Keras, on purpose:

* Images are channels-first, ``(C, H, W)``, as PyTorch expects.
* Models return logits (no softmax); ``nn.CrossEntropyLoss`` applies the softmax.
* Flatten sizes are computed from ``input_shape``, so other image sizes work.

``init="keras"`` (the default) copies Keras's default initialisation:
glorot-uniform weights and zero biases. ``init="torch"`` keeps PyTorch's own.

``activation`` (default ``"relu"``, the lesson's) picks the hidden layers' activation,
as the lesson's ``create_model(activation_function)`` loop does; ``dropout`` sets the
rate of ``model_dropout``'s Dropout (default 0.5) or, for the other models (default 0:
no Dropout layer), adds one before ``Flatten``. Neither changes any parameter shape, so
models that differ only in them can start from the same weights. ``model_kwargs``
records them only when they differ from the defaults, so the lesson's models keep
their plain ``{num_classes, input_shape, init}``.

Two more cures for overfitting from the lesson's list, also off by default:

* ``batch_norm=True`` puts a ``keras.layers.BatchNormalization()`` after every
  convolution's activation (``KerasBatchNorm2d``: Keras's defaults and its moving
  statistics; it adds parameters, so it is an architecture of its own).
* ``augment=["flip", "rotation=0.2", ...]`` puts Keras's augmentation layers first in the
  model, as Keras does (``cnn_torch/keras_rules/augment.py``); ``augment_seed`` seeds them.

Parameter counts are Keras's: ``count_params`` and ``summary`` count BatchNormalization's
moving mean and variance as (non-trainable) weights, as Keras's ``model.summary()`` does.
The transfer-learning model of the sibling lesson is in ``cnn_torch/keras_rules/transfer.py``;
``build_model("densenet121_transfer")`` builds it too.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

import torch
from torch import nn

from cnn_torch.errors import UserError
from cnn_torch.keras_rules.augment import augmentation, normalise_specs

INITS = ("keras", "torch")
# Models built on a pretrained network, in cnn_torch/keras_rules/transfer.py (imported only when asked for).
PRETRAINED_MODELS = ("densenet121_transfer",)

# Keras's activation names -> the PyTorch module. Keras's leaky_relu has negative_slope 0.2
# (torch's default is 0.01); selu needs no arguments in either.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "selu": nn.SELU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
}


class _KerasBatchNorm:
    """``keras.layers.BatchNormalization()``'s training step, shared by the 2-d and 1-d layers.

    Keras's defaults are momentum 0.99 and epsilon 1e-3, and its momentum is the weight of
    the OLD moving average: ``moving = moving * 0.99 + batch * 0.01``. PyTorch's momentum is
    the weight of the new batch (default 0.1, epsilon 1e-5), so Keras's 0.99 is PyTorch's
    0.01. One more difference PyTorch's own layer cannot be told about: PyTorch updates the
    moving variance with the UNBIASED batch variance (divided by n - 1), Keras with the
    biased one (divided by n), the one both use to normalise the batch. After a batch of 32
    (a Dense layer's BatchNormalization) that is a factor 32/31 in every update, which
    inference then sees; so the update is written out here, as Keras writes it.
    """

    def __init__(self, num_features: int, momentum: float = 0.99, epsilon: float = 1e-3) -> None:
        super().__init__(num_features, eps=epsilon, momentum=1.0 - momentum)  # PyTorch's meaning of momentum
        self.keras_momentum = momentum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:  # Keras: training=False normalises with the moving mean and variance
            return super().forward(x)
        # the batch's own mean and biased variance, per channel (every axis but axis 1)
        dims = [d for d in range(x.ndim) if d != 1]
        values = x.float()
        mean, variance = values.mean(dims), values.var(dims, unbiased=False)
        with torch.no_grad():  # Keras: moving = moving * momentum + batch * (1 - momentum)
            m = self.keras_momentum
            self.running_mean.copy_(self.running_mean * m + mean * (1.0 - m))
            self.running_var.copy_(self.running_var * m + variance * (1.0 - m))
            self.num_batches_tracked += 1
        # normalise, scale, shift. Written out rather than torch's fused batch_norm, which on the
        # CPU, for channels-last inputs (what fit hands the model there), loses 200 times more
        # digits than these few operations (measured: 2e-4 against 8e-7 at outputs up to 8)
        shape = [1, -1] + [1] * (x.ndim - 2)
        scale = torch.rsqrt(variance.view(shape) + self.eps) * self.weight.view(shape)
        return ((values - mean.view(shape)) * scale + self.bias.view(shape)).to(x.dtype)


class KerasBatchNorm2d(_KerasBatchNorm, nn.BatchNorm2d):
    """``keras.layers.BatchNormalization()`` after a ``Conv2D``: one mean and variance per channel."""


class KerasBatchNorm1d(_KerasBatchNorm, nn.BatchNorm1d):
    """``keras.layers.BatchNormalization()`` after ``Flatten`` or ``Dense``: one per feature."""


class LessonModel(nn.Sequential):
    """An ``nn.Sequential`` that remembers how it was built.

    ``build_model(model.model_name, **model.model_kwargs)`` rebuilds the same
    architecture, e.g. before loading a checkpoint's weights.
    """

    def __init__(self, name: str, kwargs: dict, layers: Sequence[nn.Module]) -> None:
        super().__init__(*layers)
        self.model_name = name
        self.model_kwargs = kwargs
        self.input_shape = tuple(kwargs["input_shape"])


def _check_args(
    name: str,
    num_classes: int,
    input_shape: Sequence[int],
    init: str,
    dropout: float = 0.0,
    activation: str = "relu",
    default_dropout: float = 0.0,
    batch_norm: bool = False,
    augment: Sequence[str] | None = None,
    augment_seed: int | None = None,
) -> dict:
    """Validate the constructor arguments and return them as ``model_kwargs`` (``dropout``,
    ``activation``, ``batch_norm`` and ``augment`` only when they differ from the defaults)."""
    if activation not in ACTIVATIONS:
        raise UserError(f"unknown activation {activation!r} for {name}: choose one of {', '.join(ACTIVATIONS)}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise UserError(f"dropout {dropout!r} for {name} is not a rate in [0, 1): try 0.5")
    if init not in INITS:
        raise UserError(f"unknown init {init!r}: use 'keras' or 'torch'")
    try:
        shape = [operator.index(n) for n in input_shape]
    except TypeError:
        shape = []
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(
            f"input_shape {input_shape!r} for {name} is not (channels, height, width): "
            "give three positive integers, e.g. (3, 32, 32)"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"num_classes {num_classes!r} for {name} is invalid: give an integer >= 1")
    kwargs = {"num_classes": num_classes, "input_shape": shape, "init": init}
    if dropout != default_dropout:
        kwargs["dropout"] = float(dropout)
    if activation != "relu":
        kwargs["activation"] = activation
    if not isinstance(batch_norm, bool):
        raise UserError(f"batch_norm {batch_norm!r} for {name} is not True or False")
    if batch_norm:
        kwargs["batch_norm"] = True
    specs = normalise_specs(augment)
    if specs:
        if augment_seed is None:  # drawn now and recorded, so a rebuilt model draws the same amounts
            augment_seed = int(torch.randint(2**31 - 1, ()))
        if isinstance(augment_seed, bool) or not isinstance(augment_seed, int):
            raise UserError(f"augment_seed {augment_seed!r} for {name} is not an integer: pass e.g. 1")
        kwargs["augment"], kwargs["augment_seed"] = specs, augment_seed
    return kwargs


def _augmentation_layers(kwargs: dict) -> list[nn.Module]:
    """Keras's ``data_augmentation`` block first in the model, when asked for (``augment``)."""
    return [augmentation(kwargs["augment"], kwargs["augment_seed"])] if "augment" in kwargs else []


def _batch_norm_layers(channels: int, kwargs: dict) -> list[nn.Module]:
    """A ``BatchNormalization()`` after a convolution's activation, when asked for (``batch_norm``)."""
    return [KerasBatchNorm2d(channels)] if kwargs.get("batch_norm") else []


def _dropout_layers(rate: float) -> list[nn.Module]:
    """A Dropout before Flatten when asked for (the lesson's ``create_nn_with_dropout``)."""
    return [nn.Dropout(rate)] if rate > 0 else []


def _out_size(layer: nn.Module, size: int, dim: int) -> int:
    """Height (dim 0) or width (dim 1) after ``layer``; PyTorch's own formula."""
    if not isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
        return size

    def pair(value: int | tuple[int, int]) -> int:
        return value[dim] if isinstance(value, tuple) else value

    kernel, stride = pair(layer.kernel_size), pair(layer.stride)
    padding, dilation = pair(layer.padding), pair(layer.dilation)
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _fits(layers: Sequence[nn.Module], size: int, dim: int) -> bool:
    """Whether every layer gets a positive size along ``dim`` from ``size`` pixels."""
    for layer in layers:
        size = _out_size(layer, size, dim)
        if size <= 0:
            return False
    return True


def _flat_size(name: str, features: Sequence[nn.Module], input_shape: Sequence[int]) -> int:
    """Number of values that ``nn.Flatten`` sees after ``features``; UserError if too small."""
    _, height, width = input_shape
    if not (_fits(features, height, 0) and _fits(features, width, 1)):
        min_h = next(n for n in range(1, 4096) if _fits(features, n, 0))
        min_w = next(n for n in range(1, 4096) if _fits(features, n, 1))
        raise UserError(
            f"input_shape {tuple(input_shape)} is too small for {name}: "
            f"images must be at least {min_h}x{min_w} pixels (height x width)"
        )
    for layer in features:
        height, width = _out_size(layer, height, 0), _out_size(layer, width, 1)
    channels = [m.out_channels for m in features if isinstance(m, nn.Conv2d)][-1]
    return channels * height * width


def _keras_init(model: nn.Module) -> None:
    """Keras defaults: glorot_uniform kernels, zero biases."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _assemble(
    name: str,
    kwargs: dict,
    features: list[nn.Module],
    head: Callable[[int], list[nn.Module]],
) -> LessonModel:
    """Join the conv part and the dense head (built for the computed flatten size)."""
    flat = _flat_size(name, features, kwargs["input_shape"])
    model = LessonModel(name, kwargs, features + head(flat))
    if kwargs["init"] == "keras":
        _keras_init(model)
    return model


def cifar_model_small(
    num_classes: int = 10,
    input_shape: Sequence[int] = (3, 32, 32),
    init: str = "keras",
    dropout: float = 0.0,
    activation: str = "relu",
    batch_norm: bool = False,
    augment: Sequence[str] | None = None,
    augment_seed: int | None = None,
) -> LessonModel:
    """Two conv blocks and a 50-unit dense layer: 114,510 parameters on 3x32x32."""
    kwargs = _check_args("cifar_model_small", num_classes, input_shape, init, dropout, activation,
                         batch_norm=batch_norm, augment=augment, augment_seed=augment_seed)
    channels = kwargs["input_shape"][0]
    act = ACTIVATIONS[activation]
    features = [
        *_augmentation_layers(kwargs),     # keras.Sequential([RandomFlip(...), ...]), only with augment
        nn.Conv2d(channels, 50, 3),        # keras.layers.Conv2D(50, (3, 3), activation='relu')
        act(),                             #   ... its activation='relu'
        *_batch_norm_layers(50, kwargs),   # keras.layers.BatchNormalization(), only with batch_norm
        nn.MaxPool2d(2),                   # keras.layers.MaxPooling2D((2, 2))
        nn.Conv2d(50, 50, 3),              # keras.layers.Conv2D(50, (3, 3), activation='relu')
        act(),                             #   ... its activation='relu'
        *_batch_norm_layers(50, kwargs),   # keras.layers.BatchNormalization(), only with batch_norm
        nn.MaxPool2d(2),                   # keras.layers.MaxPooling2D((2, 2))
        *_dropout_layers(dropout),         # keras.layers.Dropout(dropout), only if dropout > 0
    ]

    def head(flat: int) -> list[nn.Module]:
        return [
            nn.Flatten(),                  # keras.layers.Flatten()
            nn.Linear(flat, 50),           # keras.layers.Dense(50, activation='relu')
            act(),                         #   ... its activation='relu'
            nn.Linear(50, num_classes),    # keras.layers.Dense(10)  (logits)
        ]

    return _assemble("cifar_model_small", kwargs, features, head)


def cifar_model(
    num_classes: int = 10,
    input_shape: Sequence[int] = (3, 32, 32),
    init: str = "keras",
    dropout: float = 0.0,
    activation: str = "relu",
    batch_norm: bool = False,
    augment: Sequence[str] | None = None,
    augment_seed: int | None = None,
) -> LessonModel:
    """The small model plus a third conv layer: 87,060 parameters on 3x32x32."""
    kwargs = _check_args("cifar_model", num_classes, input_shape, init, dropout, activation,
                         batch_norm=batch_norm, augment=augment, augment_seed=augment_seed)
    channels = kwargs["input_shape"][0]
    act = ACTIVATIONS[activation]
    features = [
        *_augmentation_layers(kwargs),     # keras.Sequential([RandomFlip(...), ...]), only with augment
        nn.Conv2d(channels, 50, 3),        # keras.layers.Conv2D(50, (3, 3), activation='relu')
        act(),                             #   ... its activation='relu'
        *_batch_norm_layers(50, kwargs),   # keras.layers.BatchNormalization(), only with batch_norm
        nn.MaxPool2d(2),                   # keras.layers.MaxPooling2D((2, 2))
        nn.Conv2d(50, 50, 3),              # keras.layers.Conv2D(50, (3, 3), activation='relu')
        act(),                             #   ... its activation='relu'
        *_batch_norm_layers(50, kwargs),   # keras.layers.BatchNormalization(), only with batch_norm
        nn.MaxPool2d(2),                   # keras.layers.MaxPooling2D((2, 2))
        nn.Conv2d(50, 50, 3),              # keras.layers.Conv2D(50, (3, 3), activation='relu')
        act(),                             #   ... its activation='relu'
        *_batch_norm_layers(50, kwargs),   # keras.layers.BatchNormalization(), only with batch_norm
        *_dropout_layers(dropout),         # keras.layers.Dropout(dropout), only if dropout > 0
    ]

    def head(flat: int) -> list[nn.Module]:
        return [
            nn.Flatten(),                  # keras.layers.Flatten()
            nn.Linear(flat, 50),           # keras.layers.Dense(50, activation='relu')
            act(),                         #   ... its activation='relu'
            nn.Linear(50, num_classes),    # keras.layers.Dense(10)  (logits)
        ]

    return _assemble("cifar_model", kwargs, features, head)


def model_intro(
    num_classes: int = 5,
    input_shape: Sequence[int] = (3, 32, 32),
    init: str = "keras",
    dropout: float = 0.0,
    activation: str = "relu",
    batch_norm: bool = False,
    augment: Sequence[str] | None = None,
    augment_seed: int | None = None,
) -> LessonModel:
    """The lesson's first model, one conv layer: 18,453 parameters on 3x32x32, 5 classes."""
    kwargs = _check_args("model_intro", num_classes, input_shape, init, dropout, activation,
                         batch_norm=batch_norm, augment=augment, augment_seed=augment_seed)
    channels = kwargs["input_shape"][0]
    act = ACTIVATIONS[activation]
    features = [
        *_augmentation_layers(kwargs),     # keras.Sequential([RandomFlip(...), ...]), only with augment
        nn.Conv2d(channels, 16, 3),        # keras.layers.Conv2D(16, (3, 3), activation='relu')
        act(),                             #   ... its activation='relu'
        *_batch_norm_layers(16, kwargs),   # keras.layers.BatchNormalization(), only with batch_norm
        nn.MaxPool2d(2),                   # keras.layers.MaxPooling2D((2, 2))
        *_dropout_layers(dropout),         # keras.layers.Dropout(dropout), only if dropout > 0
    ]

    def head(flat: int) -> list[nn.Module]:
        return [
            nn.Flatten(),                  # keras.layers.Flatten()
            # keras.layers.Dense(n_classes, activation='softmax'): we return logits
            # instead; nn.CrossEntropyLoss applies the softmax itself.
            nn.Linear(flat, num_classes),
        ]

    return _assemble("model_intro", kwargs, features, head)


def model_dropout(
    num_classes: int = 10,
    input_shape: Sequence[int] = (3, 32, 32),
    init: str = "keras",
    dropout: float = 0.5,
    activation: str = "relu",
    batch_norm: bool = False,
    augment: Sequence[str] | None = None,
    augment_seed: int | None = None,
) -> LessonModel:
    """Three conv layers and dropout before the head: 33,834 parameters on 3x32x32."""
    kwargs = _check_args("model_dropout", num_classes, input_shape, init, dropout, activation, default_dropout=0.5,
                         batch_norm=batch_norm, augment=augment, augment_seed=augment_seed)
    channels = kwargs["input_shape"][0]
    act = ACTIVATIONS[activation]
    features = [
        *_augmentation_layers(kwargs),     # keras.Sequential([RandomFlip(...), ...]), only with augment
        nn.Conv2d(channels, 16, 3),        # keras.layers.Conv2D(16, (3, 3), activation='relu')
        act(),                             #   ... its activation='relu'
        *_batch_norm_layers(16, kwargs),   # keras.layers.BatchNormalization(), only with batch_norm
        nn.MaxPool2d(2),                   # keras.layers.MaxPooling2D((2, 2))
        nn.Conv2d(16, 32, 3),              # keras.layers.Conv2D(32, (3, 3), activation='relu')
        act(),                             #   ... its activation='relu'
        *_batch_norm_layers(32, kwargs),   # keras.layers.BatchNormalization(), only with batch_norm
        nn.MaxPool2d(2),                   # keras.layers.MaxPooling2D((2, 2))
        nn.Conv2d(32, 64, 3),              # keras.layers.Conv2D(64, (3, 3), activation='relu')
        act(),                             #   ... its activation='relu'
        *_batch_norm_layers(64, kwargs),   # keras.layers.BatchNormalization(), only with batch_norm
        nn.Dropout(dropout),               # keras.layers.Dropout(0.5); kept at 0 so layer indices stay put
    ]

    def head(flat: int) -> list[nn.Module]:
        return [
            nn.Flatten(),                  # keras.layers.Flatten()
            nn.Linear(flat, num_classes),  # keras.layers.Dense(10)  (logits)
        ]

    return _assemble("model_dropout", kwargs, features, head)


MODELS: dict[str, Callable[..., LessonModel]] = {
    "cifar_model_small": cifar_model_small,
    "cifar_model": cifar_model,
    "model_intro": model_intro,
    "model_dropout": model_dropout,
}


def model_names() -> list[str]:
    """Every name ``build_model`` takes: the lesson's models, then the pretrained ones."""
    return [*MODELS, *PRETRAINED_MODELS]


def build_model(name: str, **kwargs) -> LessonModel:
    """Build the model called ``name`` (see ``model_names()``) with its constructor's kwargs."""
    if name in PRETRAINED_MODELS:
        from cnn_torch.keras_rules import transfer  # here: torchvision's model zoo is only loaded when asked for

        return transfer.PRETRAINED[name](**kwargs)
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(model_names())}")
    return MODELS[name](**kwargs)


def _keras_weight_count(module: nn.Module, recurse: bool = True) -> tuple[int, int]:
    """``(trainable, non_trainable)`` weights as Keras counts them: parameters, split by
    ``requires_grad`` (Keras: ``trainable=False``), plus the moving mean and variance of every
    batch normalisation, which Keras keeps as non-trainable weights and PyTorch as buffers."""
    trainable = sum(p.numel() for p in module.parameters(recurse) if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters(recurse) if not p.requires_grad)
    norms = module.modules() if recurse else [module]
    moving = sum(m.running_mean.numel() + m.running_var.numel() for m in norms
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None)
    return trainable, frozen + moving


def count_params(model: nn.Module) -> int:
    """Total number of weights, as Keras's ``model.count_params()``: every parameter, plus
    the moving mean and variance of each batch normalisation (Keras's non-trainable weights)."""
    return sum(_keras_weight_count(model))


def trainable_params(model: nn.Module) -> int:
    """The weights training changes (Keras's "Trainable params"): parameters with ``requires_grad``."""
    return _keras_weight_count(model)[0]


def summary(
    model: nn.Module, input_shape: Sequence[int] | None = None, file: TextIO | None = None
) -> None:
    """Print a Keras-style ``model.summary()`` table (to ``file``, default stdout); returns None as Keras does.

    Output shapes come from a forward pass of one zero image (batch shown as
    ``None``), recorded with forward hooks on every leaf module.
    """
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
        if input_shape is None:
            raise UserError("summary needs input_shape for this model: pass e.g. (3, 32, 32)")
    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    shapes: dict[str, str] = {}

    def hook_for(layer_name: str) -> Callable:
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            if isinstance(output, torch.Tensor):
                dims = ["None", *(str(d) for d in output.shape[1:])]
                shapes[layer_name] = "(" + ", ".join(dims) + ")"

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in leaves]
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None else torch.float32
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    except RuntimeError as exc:
        own = getattr(model, "input_shape", None)
        fix = f"leave it out to use the model's own {own}" if own else "pass the model's (C, H, W)"
        raise UserError(f"input_shape {tuple(input_shape)} does not fit this model: {fix}") from exc
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    widths = (29, 26, 10)
    rule, double = "_" * sum(widths), "=" * sum(widths)

    def row(name: str, shape: str, params: str) -> str:
        return f" {name:<{widths[0] - 1}}{shape:<{widths[1]}}{params:>{widths[2]}}".rstrip()

    name = getattr(model, "model_name", type(model).__name__)
    lines = [f'Model: "{name}"', rule, row("Layer (type)", "Output Shape", "Param #"), double]
    for i, (layer_name, layer) in enumerate(leaves):
        params = sum(_keras_weight_count(layer, recurse=False))
        if i:
            lines.append("")
        label = f"{layer_name} ({type(layer).__name__})"
        lines.append(row(label, shapes.get(layer_name, "?"), f"{params:,}"))
    trainable, non_trainable = _keras_weight_count(model)
    total = trainable + non_trainable
    lines += [
        double,
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {non_trainable:,}",
        rule,
    ]
    # Keras's summary() prints and returns None: a notebook then shows the table once
    print("\n".join(lines), file=file if file is not None else sys.stdout)
