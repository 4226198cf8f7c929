"""The names Keras gives a model's layers and weights, for every place a learner compares with the lesson.

Keras names each layer after its kind, numbered per kind in the order the layers were made:
``conv2d``, ``max_pooling2d``, ``conv2d_1``, ``max_pooling2d_1``, ``flatten``, ``dense``,
``dense_1``; its weights are ``conv2d/kernel``, ``conv2d/bias``, ``batch_normalization/gamma``, ...
``models.summary``, ``fit(..., trace=True)``, the ``visualise`` figures and TensorBoard's
histograms all use these names. Keras folds ``activation='relu'`` into ``Conv2D``/``Dense``;
here the activation is its own module, named after the layer it belongs to
(``conv2d/activation``). A layer Keras has no name for keeps its PyTorch name.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from cnn_torch.keras_rules import augment

# torch module -> Keras's layer name and its weights' names (parameters, then buffers), in Keras's order.
# Looked up along the module's classes, so KerasBatchNorm2d (an nn.BatchNorm2d) is a batch_normalization.
KERAS_LAYERS: dict[type, tuple[str, dict[str, str]]] = {
    nn.Conv2d: ("conv2d", {"weight": "kernel", "bias": "bias"}),
    nn.Linear: ("dense", {"weight": "kernel", "bias": "bias"}),
}
BATCH_NORM = ("batch_normalization", {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
                                      "running_var": "moving_variance"})  # fmt: skip
KERAS_LAYERS.update({nn.BatchNorm1d: BATCH_NORM, nn.BatchNorm2d: BATCH_NORM})

# torch module -> Keras's layer class, as Keras's summary shows it: "conv2d (Conv2D)"
KERAS_CLASSES: dict[type, str] = {
    nn.Conv2d: "Conv2D", nn.Linear: "Dense", nn.BatchNorm1d: "BatchNormalization",
    nn.BatchNorm2d: "BatchNormalization", nn.MaxPool2d: "MaxPooling2D", nn.AvgPool2d: "AveragePooling2D",
    nn.AdaptiveAvgPool2d: "GlobalAveragePooling2D", nn.AdaptiveMaxPool2d: "GlobalMaxPooling2D",
    nn.Flatten: "Flatten", nn.Dropout: "Dropout", augment.RandomFlip: "RandomFlip",
    augment.RandomRotation: "RandomRotation", augment.RandomZoom: "RandomZoom",
    augment.RandomTranslation: "RandomTranslation", augment.RandomContrast: "RandomContrast",
}  # fmt: skip
ACTIVATIONS = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.SELU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Softmax)


def keras_layer(module: nn.Module) -> tuple[str | None, dict[str, str]]:
    """Keras's layer kind and weight names for ``module`` (its own class or the nearest parent in
    ``KERAS_LAYERS``), or ``(None, {})`` for a module Keras has no name for."""
    known = [cls for cls in type(module).__mro__ if cls in KERAS_LAYERS]
    return KERAS_LAYERS[known[0]] if known else (None, {})


def keras_class(module: nn.Module) -> str | None:
    """Keras's class for ``module`` (``"Conv2D"``), or None."""
    known = [cls for cls in type(module).__mro__ if cls in KERAS_CLASSES]
    return KERAS_CLASSES[known[0]] if known else None


def _snake(class_name: str) -> str:
    """Keras's default layer name for a class: ``MaxPooling2D`` -> ``max_pooling2d``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower().replace("2_d", "2d")


def keras_densenet_name(path: str) -> str | None:
    """The name ``keras.applications.DenseNet121`` gives the layer at ``path`` in torchvision's
    ``densenet121().features`` (``denseblock1.denselayer2.conv1`` -> ``conv2_block2_1_conv``)."""
    first = {"conv0": "conv1_conv", "norm0": "conv1_bn", "norm5": "bn"}
    if path in first:
        return first[path]
    kind = {"norm": "bn", "conv": "conv"}
    if match := re.fullmatch(r"denseblock(\d+)\.denselayer(\d+)\.(norm|conv)([12])", path):
        block, layer, module, number = match.groups()
        # torchvision's norm1, conv1, norm2, conv2 are Keras's _0_bn, _1_conv, _1_bn, _2_conv
        position = int(number) - (module == "norm")
        return f"conv{int(block) + 1}_block{layer}_{position}_{kind[module]}"
    if match := re.fullmatch(r"transition(\d+)\.(norm|conv)", path):
        return f"pool{int(match[1]) + 1}_{kind[match[2]]}"
    return None


def keras_layer_names(model: nn.Module) -> dict[str, str]:
    """``{module path: Keras's name}`` for every layer without sub-layers, in model order:
    ``{"0": "conv2d", "1": "conv2d/activation", "2": "max_pooling2d", ...}``. A DenseNet121's
    layers get ``keras.applications``' names; a module Keras has no name for keeps its path."""
    densenets = [name for name, module in model.named_modules() if hasattr(module, "denseblock1")]
    names: dict[str, str] = {}
    counts: dict[str, int] = {}
    owner = None  # the last conv2d or dense: an activation right after it is its activation
    for path, module in model.named_modules():
        if list(module.children()):
            continue
        inside = [path.removeprefix(f"{name}.") for name in densenets if path.startswith(f"{name}.")]
        layer = keras_densenet_name(inside[0]) if inside else None
        kind = keras_layer(module)[0] or (_snake(keras_class(module)) if keras_class(module) else None)
        if layer is None and isinstance(module, ACTIVATIONS) and owner is not None:
            layer = f"{owner}/activation"
        elif layer is None and kind is not None:  # Keras: conv2d, conv2d_1, ... in the order they were made
            layer = kind if kind not in counts else f"{kind}_{counts[kind]}"
            counts[kind] = counts.get(kind, 0) + 1
        names[path] = layer or path or type(module).__name__
        owner = layer if kind in ("conv2d", "dense") else None
    return names


def keras_label(name: str, module: nn.Module) -> str:
    """A layer as Keras's summary lists it: ``"conv2d (Conv2D)"`` (PyTorch's class where Keras has none)."""
    return f"{name} ({keras_class(module) or type(module).__name__})"


def keras_weight_names(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """``[("conv2d/kernel", tensor), ("conv2d/bias", tensor), ("conv2d_1/kernel", ...), ...]``: every
    floating-point weight of ``model`` under the name Keras gives it (layers named as
    :func:`keras_layer_names` names them; a module Keras has no name for keeps its PyTorch name)."""
    layers = keras_layer_names(model)
    named = []
    for module_name, module in model.named_modules():
        weights = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        weights = [(name, tensor) for name, tensor in weights if tensor.is_floating_point()]
        if not weights:
            continue
        kind, renames = keras_layer(module)
        if kind is None or module_name not in layers:
            named += [(f"{module_name}/{name}" if module_name else name, tensor) for name, tensor in weights]
            continue
        named += [(f"{layers[module_name]}/{renames.get(name, name)}", tensor) for name, tensor in weights]
    return named


def keras_parameter_names(model: nn.Module) -> dict[str, str]:
    """``{PyTorch parameter name: Keras's name}``: ``{"0.weight": "conv2d/kernel", ...}``."""
    by_tensor = {id(tensor): name for name, tensor in keras_weight_names(model)}
    return {name: by_tensor.get(id(tensor), name) for name, tensor in model.named_parameters()}
