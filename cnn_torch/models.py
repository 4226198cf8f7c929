"""The lesson's Keras architectures, rebuilt as PyTorch ``nn.Sequential`` models.

Each model lists its layers in the same order as the lesson's Keras code, and
each layer carries a comment with the Keras line it stands for, so ``model[i]``
can be compared with ``keras_model.layers[i]`` by eye. Keras folds
``activation='relu'`` into ``Conv2D``/``Dense``; here the ReLU is its own module.

Differences from Keras, on purpose:

* Images are channels-first, ``(C, H, W)``, as PyTorch expects.
* Models return logits (no softmax); ``nn.CrossEntropyLoss`` applies the softmax.
* The flatten size comes from one zero image of ``input_shape`` run through the conv part,
  so other image sizes work (Keras infers it as it builds).
* A ReLU followed by a MaxPool2d runs as the pooling, then the ReLU (``LessonModel.forward``):
  the outputs and gradients are the same bit for bit, and the ReLU touches a quarter of the
  values. Stepping into ``model(images)`` in a debugger shows it; a hook on either layer turns it off.

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

Keras's layers, its initialisation and the argument check every builder starts with are in
``cnn_torch/keras_rules/layers.py``.
* ``augment=["flip", "rotation=0.2", ...]`` puts Keras's augmentation layers first in the
  model, as Keras does (``cnn_torch/keras_rules/augment.py``); ``augment_seed`` seeds them.

Parameter counts are Keras's: ``count_params`` and ``summary`` count BatchNormalization's
moving mean and variance as (non-trainable) weights, as Keras's ``model.summary()`` does.
The transfer-learning model of the sibling lesson is in ``cnn_torch/keras_rules/transfer.py``;
``build_model("densenet121_transfer")`` builds it too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TextIO

import torch
from torch import nn

from cnn_torch.errors import UserError
from cnn_torch.keras_rules.layers import (
    ACTIVATIONS,
    INITS,
    KerasBatchNorm1d,
    KerasBatchNorm2d,
    LessonModel,
    augmentation_layers,
    check_args,
    keras_init,
)
from cnn_torch.keras_rules.names import keras_label, keras_layer_names

# Keras's layers and the model base live in cnn_torch/keras_rules/layers.py; they are named here
# too, where the lesson's models are: ``from cnn_torch.models import KerasBatchNorm2d, LessonModel``.
__all__ = [
    "ACTIVATIONS", "INITS", "MODELS", "PRETRAINED_MODELS", "KerasBatchNorm1d", "KerasBatchNorm2d", "LessonModel",
    "build_model", "cifar_model", "cifar_model_small", "count_params", "model_dropout", "model_intro",
    "model_names", "summary", "trainable_params",
]  # fmt: skip

# Models built on a pretrained network, in cnn_torch/keras_rules/transfer.py (imported only when asked for).
PRETRAINED_MODELS = ("densenet121_transfer",)


def _batch_norm_layers(channels: int, kwargs: dict) -> list[nn.Module]:
    """A ``BatchNormalization()`` after a convolution's activation, when asked for (``batch_norm``)."""
    return [KerasBatchNorm2d(channels)] if kwargs.get("batch_norm") else []


def _dropout_layers(rate: float) -> list[nn.Module]:
    """A Dropout before Flatten when asked for (the lesson's ``create_nn_with_dropout``)."""
    return [nn.Dropout(rate)] if rate > 0 else []


def _flat_size(name: str, features: Sequence[nn.Module], input_shape: Sequence[int]) -> int:
    """Number of values that ``nn.Flatten`` sees after ``features``: one zero image through them.

    Images too small for the convolutions and poolings raise a UserError that gives the
    smallest size that fits, found by trying sizes with the same dry run.
    """
    channels, height, width = input_shape
    probe = nn.Sequential(*features)

    def values_out(height: int, width: int) -> int:
        """What one ``height`` x ``width`` image becomes; 0 when a layer gets no pixels left."""
        probe.eval()  # inference mode: augmentation and dropout do nothing, BatchNorm's statistics stay put
        try:
            with torch.no_grad():
                return probe(torch.zeros(1, channels, height, width)).numel()
        except RuntimeError:  # torch: "Kernel size can't be greater than actual input size", "Output size is too small"
            return 0
        finally:
            probe.train()

    flat = values_out(height, width)
    if flat == 0:
        side = next(n for n in range(1, 4097) if values_out(n, n))  # a square that fits, then each side alone
        min_height = next(n for n in range(1, side + 1) if values_out(n, side))
        min_width = next(n for n in range(1, side + 1) if values_out(side, n))
        raise UserError(
            f"input_shape {tuple(input_shape)} is too small for {name}: "
            f"images must be at least {min_height}x{min_width} pixels (height x width)"
        )
    return flat


def _assemble(
    name: str,
    kwargs: dict,
    features: list[nn.Module],
    head: Callable[[int], list[nn.Module]],
) -> LessonModel:
    """Join the conv part and the dense head (built for the flatten size a dry run gives)."""
    flat = _flat_size(name, features, kwargs["input_shape"])
    model = LessonModel(name, kwargs, features + head(flat))
    if kwargs["init"] == "keras":
        keras_init(model)
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
    kwargs = check_args(cifar_model_small, locals())  # UserError for a bad argument; kept as model_kwargs
    channels = kwargs["input_shape"][0]
    act = ACTIVATIONS[activation]
    features = [
        *augmentation_layers(kwargs),      # keras.Sequential([RandomFlip(...), ...]), only with augment
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
    kwargs = check_args(cifar_model, locals())  # UserError for a bad argument; kept as model_kwargs
    channels = kwargs["input_shape"][0]
    act = ACTIVATIONS[activation]
    features = [
        *augmentation_layers(kwargs),      # keras.Sequential([RandomFlip(...), ...]), only with augment
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
    kwargs = check_args(model_intro, locals())  # UserError for a bad argument; kept as model_kwargs
    channels = kwargs["input_shape"][0]
    act = ACTIVATIONS[activation]
    features = [
        *augmentation_layers(kwargs),      # keras.Sequential([RandomFlip(...), ...]), only with augment
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
    kwargs = check_args(model_dropout, locals())  # UserError for a bad argument; kept as model_kwargs
    channels = kwargs["input_shape"][0]
    act = ACTIVATIONS[activation]
    features = [
        *augmentation_layers(kwargs),      # keras.Sequential([RandomFlip(...), ...]), only with augment
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

    Layers are named as Keras names them (``conv2d (Conv2D)``, ``max_pooling2d (MaxPooling2D)``;
    a ReLU module is its layer's activation, ``conv2d/activation (ReLU)``). Output shapes come
    from a forward pass of one zero image (batch shown as
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

    names = keras_layer_names(model)  # Keras's names: conv2d (Conv2D), max_pooling2d (MaxPooling2D), ...
    labels = {layer_name: keras_label(names[layer_name], layer) for layer_name, layer in leaves}
    longest = max((len(label) for label in labels.values()), default=0)
    widths = (max(29, longest + 2), 26, 10)
    if sum(widths) > 80:  # an 80-column terminal: the shape column gives way to a long layer name
        widths = (widths[0], max(80 - widths[0] - widths[2], 18), widths[2])
    rule, double = "_" * sum(widths), "=" * sum(widths)

    def row(name: str, shape: str, params: str) -> str:
        return f" {name:<{widths[0] - 1}}{shape:<{widths[1]}}{params:>{widths[2]}}".rstrip()

    name = getattr(model, "model_name", type(model).__name__)
    lines = [f'Model: "{name}"', rule, row("Layer (type)", "Output Shape", "Param #"), double]
    for i, (layer_name, layer) in enumerate(leaves):
        params = sum(_keras_weight_count(layer, recurse=False))
        if i:
            lines.append("")
        label = labels[layer_name]
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
