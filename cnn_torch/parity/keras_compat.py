"""Moving weights between a lesson model and the same architecture built in Keras.

The parity tests build the lesson's model in Keras, copy its freshly initialised weights
into our ``LessonModel`` and train both: from then on any difference comes from the
training loop, not from the starting point. Three layout differences are handled here:

* Conv kernels: Keras stores ``(kh, kw, in, out)`` (HWIO), torch ``(out, in, kh, kw)``.
* Dense kernels: Keras stores ``(in, out)``, torch ``(out, in)``.
* The Dense right after Flatten: Keras flattens a channels-last ``(H, W, C)`` map, we
  flatten a channels-first ``(C, H, W)`` one, so the rows of that kernel come in another
  order. ``C, H, W`` are read off our model with one forward pass, never typed in.

``keras_model_like(model, flatten="channels_first")`` builds a twin that puts
``Permute((3, 1, 2))`` before its Flatten, so it flattens in our order: the same function,
but now the first Dense sums its 1,250 products in the same order as ours, which the
parity tests need (a different order rounds differently, and training can amplify that:
see ``cnn_torch/parity/harness.py``). The copies below recognise that twin and skip the re-ordering.

Batch normalisation copies as Keras's four weights (gamma, beta, moving mean, moving
variance: our weight, bias, running_mean, running_var); augmentation layers become Keras's
own preprocessing layers with the same arguments (they hold no weights).

Keras is a dev/test dependency only, so it is imported inside the functions.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from cnn_torch.errors import UserError
from cnn_torch.keras_rules import augment
from cnn_torch.keras_rules.augment import Augmentation


def import_keras():
    """Import keras on the torch backend, or say how to install it."""
    os.environ.setdefault("KERAS_BACKEND", "torch")  # read once, when keras is first imported
    try:
        import keras
    except ImportError:
        raise UserError("comparing with Keras needs keras: pip install keras (or pip install -e '.[dev]')") from None
    return keras


def to_channels_last(images: torch.Tensor) -> np.ndarray:
    """NCHW torch images -> the NHWC numpy array a Keras model takes."""
    return images.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def _input_shape(torch_model: nn.Module) -> tuple[int, int, int]:
    shape = getattr(torch_model, "input_shape", None)
    if shape is None:
        raise UserError("this model does not record its input_shape: build it with cnn_torch.models")
    return tuple(shape)


def _shapes_entering(torch_model: nn.Module) -> list[tuple[int, ...]]:
    """The per-sample shape entering each layer of our sequential model (one zero image)."""
    parameter = next(torch_model.parameters())
    x = torch.zeros(1, *_input_shape(torch_model), dtype=parameter.dtype, device=parameter.device)
    shapes = []
    was_training = torch_model.training
    torch_model.eval()  # a Dropout in training mode would draw random numbers
    with torch.no_grad():
        for layer in torch_model:
            shapes.append(tuple(x.shape[1:]))
            x = layer(x)
    torch_model.train(was_training)
    return shapes


def _flattens_channels_first(keras_model) -> bool:
    """Whether the Keras model permutes its map to ``(C, H, W)`` right before Flatten."""
    layers = keras_model.layers
    return any(
        type(layer).__name__ == "Flatten" and i > 0 and type(layers[i - 1]).__name__ == "Permute"
        and tuple(layers[i - 1].dims) == (3, 1, 2)
        for i, layer in enumerate(layers)
    )


def _layer_pairs(keras_model, torch_model: nn.Module) -> list[tuple[object, nn.Module, tuple | None]]:
    """(Keras layer, our layer, flattened ``(C, H, W)`` or None) for every layer with weights;
    None also where the Keras model flattens channels-first, as we do."""
    layers = list(torch_model)
    shapes = _shapes_entering(torch_model)
    same_order = _flattens_channels_first(keras_model)
    ours = []
    for i, layer in enumerate(layers):
        if isinstance(layer, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)):
            after_flatten = i > 0 and isinstance(layers[i - 1], nn.Flatten) and not same_order
            ours.append((layer, shapes[i - 1] if after_flatten else None))
    theirs = [layer for layer in keras_model.layers if layer.weights]
    our_kinds = [_KERAS_KINDS[next(kind for kind in _KERAS_KINDS if isinstance(layer, kind))] for layer, _ in ours]
    their_kinds = [type(layer).__name__ for layer in theirs]
    if our_kinds != their_kinds:
        raise UserError(
            f"the Keras model's layers with weights {their_kinds} do not match ours {our_kinds}:"
            " build it with keras_model_like(torch_model)"
        )
    return [(keras_layer, layer, flat) for keras_layer, (layer, flat) in zip(theirs, ours, strict=True)]


_KERAS_KINDS = {nn.Conv2d: "Conv2D", nn.Linear: "Dense", nn.modules.batchnorm._BatchNorm: "BatchNormalization"}


def _is_batch_norm(layer: nn.Module) -> bool:
    return isinstance(layer, nn.modules.batchnorm._BatchNorm)


def _kernel_to_torch(kernel: torch.Tensor, layer: nn.Module, flat: tuple | None) -> torch.Tensor:
    if isinstance(layer, nn.Conv2d):
        return kernel.permute(3, 2, 0, 1)  # HWIO -> OIHW
    if flat is None:
        return kernel.T  # (in, out) -> (out, in)
    channels, height, width = flat
    units = kernel.shape[1]
    # Keras's input rows run over (h, w, c), ours over (c, h, w)
    return kernel.reshape(height, width, channels, units).permute(3, 2, 0, 1).reshape(units, -1)


def _kernel_to_keras(weight: torch.Tensor, layer: nn.Module, flat: tuple | None) -> torch.Tensor:
    """The inverse of ``_kernel_to_torch``."""
    if isinstance(layer, nn.Conv2d):
        return weight.permute(2, 3, 1, 0)  # OIHW -> HWIO
    if flat is None:
        return weight.T
    channels, height, width = flat
    units = weight.shape[0]
    return weight.reshape(units, channels, height, width).permute(2, 3, 1, 0).reshape(-1, units)


def keras_to_torch(keras_model, torch_model: nn.Module) -> nn.Module:
    """Copy every kernel and bias of ``keras_model`` into ``torch_model``, in place; returns it."""
    for keras_layer, layer, flat in _layer_pairs(keras_model, torch_model):
        if _is_batch_norm(layer):  # Keras: [gamma, beta, moving_mean, moving_variance]
            ours = (layer.weight, layer.bias, layer.running_mean, layer.running_var)
            with torch.no_grad():
                for tensor, value in zip(ours, keras_layer.get_weights(), strict=True):
                    tensor.copy_(torch.as_tensor(np.asarray(value)))
            continue
        weight = _kernel_to_torch(torch.as_tensor(np.asarray(keras_layer.kernel.numpy())), layer, flat)
        bias = torch.as_tensor(np.asarray(keras_layer.bias.numpy()))
        if weight.shape != layer.weight.shape or bias.shape != layer.bias.shape:
            raise UserError(
                f"Keras layer {keras_layer.name} holds {tuple(weight.shape)} weights where ours holds"
                f" {tuple(layer.weight.shape)}: build the Keras model with keras_model_like(torch_model)"
            )
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
    return torch_model


def torch_to_keras(torch_model: nn.Module, keras_model):
    """Copy every weight and bias of ``torch_model`` into ``keras_model``, in place; returns it."""
    for keras_layer, layer, flat in _layer_pairs(keras_model, torch_model):
        if _is_batch_norm(layer):
            ours = (layer.weight, layer.bias, layer.running_mean, layer.running_var)
            keras_layer.set_weights([tensor.detach().cpu().numpy() for tensor in ours])
            continue
        kernel = _kernel_to_keras(layer.weight.detach().cpu(), layer, flat).contiguous()
        keras_layer.set_weights([kernel.numpy(), layer.bias.detach().cpu().numpy()])
    return keras_model


def keras_model_like(torch_model: nn.Module, flatten: str = "channels_last", l2: float = 0.0):
    """The ``keras.Sequential`` twin of a lesson model, with fresh Keras-initialised weights.

    A ReLU after a Conv2d/Linear becomes that layer's ``activation='relu'``, as the lesson
    writes it. The last Dense has no softmax: like ours, it returns logits, so compile it
    with ``SparseCategoricalCrossentropy(from_logits=True)``. ``flatten="channels_last"`` is
    the lesson's Flatten; ``"channels_first"`` flattens in our order (see the module doc).
    ``l2`` > 0 gives every Conv2D and Dense ``kernel_regularizer=keras.regularizers.L2(l2)``.
    """
    if flatten not in ("channels_last", "channels_first"):
        raise UserError(f"flatten={flatten!r}: use 'channels_last' (the lesson's) or 'channels_first' (ours)")
    keras = import_keras()
    channels, height, width = _input_shape(torch_model)
    layers = list(torch_model)
    keras_layers = [keras.Input((height, width, channels))]  # Keras images are channels-last
    regularizer = {"kernel_regularizer": keras.regularizers.L2(l2)} if l2 else {}
    for i, layer in enumerate(layers):
        activation = "relu" if i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU) else None
        if isinstance(layer, nn.Conv2d):
            plain = layer.padding == (0, 0) and layer.stride == (1, 1) and layer.dilation == (1, 1)
            if not plain or layer.groups != 1:
                raise UserError(f"layer {i} ({layer}) is not a plain 'valid' Conv2D: keras_model_like cannot copy it")
            keras_layers.append(
                keras.layers.Conv2D(layer.out_channels, layer.kernel_size, activation=activation, **regularizer)
            )
        elif isinstance(layer, nn.Linear):
            keras_layers.append(keras.layers.Dense(layer.out_features, activation=activation, **regularizer))
        elif _is_batch_norm(layer):
            momentum = getattr(layer, "keras_momentum", 1.0 - layer.momentum)  # Keras's meaning of momentum
            keras_layers.append(keras.layers.BatchNormalization(momentum=momentum, epsilon=layer.eps))
        elif isinstance(layer, Augmentation):
            keras_layers.append(keras.Sequential([keras_augmentation_layer(part) for part in layer]))
        elif isinstance(layer, nn.MaxPool2d):
            keras_layers.append(keras.layers.MaxPooling2D(layer.kernel_size, strides=layer.stride))
        elif isinstance(layer, nn.Dropout):
            keras_layers.append(keras.layers.Dropout(layer.p))
        elif isinstance(layer, nn.Flatten):
            if flatten == "channels_first":
                keras_layers.append(keras.layers.Permute((3, 1, 2)))  # (H, W, C) -> (C, H, W), as ours
            keras_layers.append(keras.layers.Flatten())
        elif isinstance(layer, nn.ReLU) and i > 0 and isinstance(layers[i - 1], (nn.Conv2d, nn.Linear)):
            continue  # already the layer before's activation='relu'
        else:
            raise UserError(f"layer {i} ({type(layer).__name__}) has no Keras twin in keras_model_like")
    return keras.Sequential(keras_layers, name=getattr(torch_model, "model_name", "lesson_model"))


def keras_augmentation_layer(layer: nn.Module):
    """The Keras preprocessing layer with the same arguments as one of ``cnn_torch.keras_rules.augment``'s."""
    keras = import_keras()
    seed = int(layer.seed)
    if isinstance(layer, augment.RandomFlip):
        return keras.layers.RandomFlip(layer.mode, seed=seed)
    geometric = {"fill_mode": getattr(layer, "fill_mode", None), "interpolation": getattr(layer, "interpolation", None),
                 "fill_value": getattr(layer, "fill_value", None), "seed": seed}
    if isinstance(layer, augment.RandomRotation):
        return keras.layers.RandomRotation(layer.factor, **geometric)
    if isinstance(layer, augment.RandomZoom):
        return keras.layers.RandomZoom(layer.height_factor, layer.width_factor, **geometric)
    if isinstance(layer, augment.RandomTranslation):
        return keras.layers.RandomTranslation(layer.height_factor, layer.width_factor, **geometric)
    if isinstance(layer, augment.RandomContrast):
        return keras.layers.RandomContrast(layer.factor, value_range=layer.value_range, seed=seed)
    raise UserError(f"{type(layer).__name__} has no Keras twin in keras_augmentation_layer")
