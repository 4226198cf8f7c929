"""What Keras's layers do that PyTorch's do not, and what every lesson model shares.

- ``KerasBatchNorm2d`` / ``KerasBatchNorm1d``: ``keras.layers.BatchNormalization()``, with
  Keras's defaults and Keras's update of the moving statistics.
- ``keras_init``: Keras's default initialisation, glorot-uniform kernels and zero biases.
- ``ACTIVATIONS``: Keras's activation names as PyTorch modules.
- ``LessonModel`` and ``check_args``: the ``nn.Sequential`` that remembers how it was built
  (and runs a ReLU after the max-pooling it precedes: the same numbers, less work),
  and the one check of the arguments every model builder takes (``models.py`` and
  ``transfer.py`` build with them).
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.modules import module as torch_module  # where torch keeps the hooks registered for every module

from cnn_torch.errors import UserError
from cnn_torch.keras_rules.augment import augmentation, normalise_specs

INITS = ("keras", "torch")

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


def keras_init(model: nn.Module) -> None:
    """Keras defaults: glorot_uniform kernels, zero biases."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


# What Keras's model.compile takes; torch's nn.Module.compile takes none of these
KERAS_COMPILE_KEYWORDS = {"optimizer", "loss", "metrics", "loss_weights", "weighted_metrics", "run_eagerly",
                          "steps_per_execution", "jit_compile", "auto_scale_loss"}  # fmt: skip
FIT_CALL = ("history = fit(model, torch.nn.CrossEntropyLoss(), 'adam', train_images, train_labels, epochs=10)"
            " (from cnn_torch import fit)")  # fmt: skip


def has_hooks(module: nn.Module) -> bool:
    """Whether a hook would see ``module`` run: one of its own, or one registered for every module."""
    own = (module._forward_pre_hooks, module._forward_hooks, module._backward_pre_hooks, module._backward_hooks)
    everyone = (torch_module._global_forward_pre_hooks, torch_module._global_forward_hooks,
                torch_module._global_backward_pre_hooks, torch_module._global_backward_hooks)  # fmt: skip
    return any(own) or any(everyone)


def pooling_first_is_exact(first: nn.Module, second: nn.Module) -> bool:
    """Whether ``first`` then ``second`` is a ReLU then an unpadded MaxPool2d that no hook watches:
    then pooling first gives the same outputs and gradients (``LessonModel.forward``)."""
    if type(first) is not nn.ReLU or type(second) is not nn.MaxPool2d or second.return_indices:
        return False
    if second.padding not in (0, (0, 0)):  # a padded window: its edge is kept out of the shortcut
        return False
    return not (has_hooks(first) or has_hooks(second))


def running_order(layers: Sequence[nn.Module]) -> list[nn.Module]:
    """``layers`` in the order ``LessonModel.forward`` runs them: each ReLU after the MaxPool2d it
    precedes, where :func:`pooling_first_is_exact` says that changes no number."""
    order, i = [], 0
    while i < len(layers):
        if i + 1 < len(layers) and pooling_first_is_exact(layers[i], layers[i + 1]):
            order += [layers[i + 1], layers[i]]  # MaxPool2d, then ReLU: the same numbers as ReLU, then MaxPool2d
            i += 2
        else:
            order.append(layers[i])
            i += 1
    return order


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

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The layers in turn, as ``nn.Sequential`` runs them, with one shortcut that changes no number.

        A ReLU followed by a MaxPool2d runs as the pooling, then the ReLU. The largest of a window's
        ReLU'd values is the ReLU of its largest value (ReLU keeps the order of values), and the
        gradient reaches the same pixel, or, where the window's largest value is <= 0, no pixel;
        so outputs and gradients are bit for bit ``nn.Sequential``'s, while the ReLU and its
        gradient touch a quarter of the values (on an AMD Zen 4 CPU, 2-10% off an epoch: BENCHMARKS.md).
        Layers with a hook of their own (feature maps, ``summary``) run in the written order, so
        each hook sees the tensor it expects.
        """
        x = images
        for layer in running_order(list(self)):
            x = layer(x)
        return x

    # Keras's model methods: cnn-torch keeps the loop outside the model, so each answers in one line
    # with the cnn-torch call; compile() without Keras's keywords stays torch's nn.Module.compile.
    def compile(self, *args, **kwargs):
        """torch's ``nn.Module.compile``; Keras's ``compile(optimizer=, loss=, metrics=)`` gets the fit call."""
        keras_optimizer = bool(args) and isinstance(args[0], (str, torch.optim.Optimizer))  # compile('adam', ...)
        if keras_optimizer or KERAS_COMPILE_KEYWORDS & set(kwargs):
            raise UserError(
                "cnn-torch has no compile step: the loss and the optimizer go to fit,"
                f" {FIT_CALL} (accuracy is always measured)"
            )
        return super().compile(*args, **kwargs)

    def fit(self, *args, **kwargs):
        raise UserError(f"cnn-torch keeps the loop outside the model: {FIT_CALL}")

    def evaluate(self, *args, **kwargs):
        raise UserError(
            "cnn-torch keeps evaluate outside the model: test_loss, test_accuracy = evaluate(model, test_images,"
            " test_labels) (from cnn_torch import evaluate)"
        )

    def predict(self, *args, **kwargs):
        raise UserError("cnn-torch keeps predict outside the model: logits = predict(model, images)"
                        " (from cnn_torch import predict)")  # fmt: skip

    def summary(self, *args, **kwargs):
        raise UserError("cnn-torch prints the table with a function: models.summary(model)"
                        " (from cnn_torch import models)")  # fmt: skip


def check_args(builder: Callable[..., LessonModel], arguments: dict) -> dict:
    """Check the arguments a model builder was called with and return them as ``model_kwargs``.

    ``arguments`` is the builder's ``locals()``, taken as its first line: its parameters and
    their values. Always kept: ``num_classes``, ``input_shape`` (as a list) and ``init``; the
    rest (``dropout``, ``activation``, ``batch_norm``, ``augment``) only when they differ from
    the builder's own defaults, so the lesson's models keep their plain kwargs. With
    ``augment``, an ``augment_seed`` left out is drawn now and recorded, so a rebuilt model
    draws the same amounts. A bad value raises a UserError that names the builder and the fix.
    """
    name = builder.__name__
    defaults = {key: parameter.default for key, parameter in inspect.signature(builder).parameters.items()}
    num_classes, input_shape, init = arguments["num_classes"], arguments["input_shape"], arguments["init"]
    dropout, activation = arguments.get("dropout", 0.0), arguments.get("activation", "relu")
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
    if dropout != defaults.get("dropout", 0.0):
        kwargs["dropout"] = float(dropout)
    if activation != defaults.get("activation", "relu"):
        kwargs["activation"] = activation
    batch_norm = arguments.get("batch_norm", False)
    if not isinstance(batch_norm, bool):
        raise UserError(f"batch_norm {batch_norm!r} for {name} is not True or False")
    if batch_norm:
        kwargs["batch_norm"] = True
    specs = normalise_specs(arguments.get("augment"))
    if specs:
        augment_seed = arguments.get("augment_seed")
        if augment_seed is None:  # drawn now and recorded, so a rebuilt model draws the same amounts
            augment_seed = int(torch.randint(2**31 - 1, ()))
        if isinstance(augment_seed, bool) or not isinstance(augment_seed, int):
            raise UserError(f"augment_seed {augment_seed!r} for {name} is not an integer: pass e.g. 1")
        kwargs["augment"], kwargs["augment_seed"] = specs, augment_seed
    return kwargs


def augmentation_layers(kwargs: dict) -> list[nn.Module]:
    """Keras's ``data_augmentation`` block first in the model, when asked for (``augment`` in ``model_kwargs``)."""
    return [augmentation(kwargs["augment"], kwargs["augment_seed"])] if "augment" in kwargs else []
