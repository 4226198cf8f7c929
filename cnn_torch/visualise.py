"""What the network sees: its first layer's filters, the feature maps of one image, and the
pixels that drove a prediction.

Keras's lessons show none of these, but each is a few lines of PyTorch:

* **Filters** (:func:`first_layer_filters`, :func:`show_filters`): the first convolution's
  weights are small images themselves (16 filters of 3x3 pixels x RGB in ``model_intro``).
  After training, many look like edge or colour detectors; before training they are noise.
* **Feature maps** (:func:`feature_maps`, :func:`show_feature_maps`): what one image becomes
  after each convolution (with its activation, as Keras's ``Conv2D(activation='relu')``
  outputs it) and each pooling layer, caught with PyTorch forward hooks, the way
  ``models.summary`` catches the output shapes. Layers are named as ``summary`` names them,
  Keras's names (``"conv2d (Conv2D)"``, ``"max_pooling2d (MaxPooling2D)"``), so a map can be found
  in the table and in the lesson.
* **Attribution** (:func:`attribution_maps`, :func:`show_attributions`): which pixels made the
  model choose a class. ``"gradcam"`` is Grad-CAM (Selvaraju et al. 2017): the last
  convolution's maps, each weighted by the mean gradient of the class score over it, summed
  and clipped at zero, then stretched to the image's size; ``"integrated_gradients"``
  (Sundararajan et al. 2017) gives one value per pixel. Both come from Captum, PyTorch's
  interpretability library (``pip install -e ".[explain]"``), not written again here.

Every function takes images as the data holds them (``uint8``, scaled by ``/ 255.0`` here,
as ``fit`` does) or as floats already scaled, and runs the model in eval mode (dropout off)
without changing its weights or its train/eval mode. The ``show_*`` functions return a
matplotlib Figure (Jupyter shows it; ``plots.save_figure`` writes it to a PNG).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from cnn_torch.errors import UserError
from cnn_torch.image_grids import grid_of_axes
from cnn_torch.keras_rules.names import keras_label, keras_layer_names
from cnn_torch.platform.device import as_float
from cnn_torch.plots import plt

# What a convolution's activation can be (models.ACTIVATIONS): the hook goes after it, as
# Keras's Conv2D(activation=...) outputs the activated maps.
ACTIVATION_TYPES = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.SELU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU)
POOLING_TYPES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)
METHODS = ("gradcam", "integrated_gradients")
METHOD_TITLES = {"gradcam": "Grad-CAM", "integrated_gradients": "integrated gradients"}
CAPTUM_MISSING = 'attribution maps need Captum (not installed): pip install -e ".[explain]", or pip install captum'


# --------------------------------------------------------------------------- the layers


def layer_name(name: str, module: nn.Module, model: nn.Module | None = None) -> str:
    """A layer as ``models.summary`` lists it, under Keras's name: ``"conv2d (Conv2D)"`` (``name``
    is the module's path in ``model``; without ``model``, the path itself)."""
    names = keras_layer_names(model) if model is not None else {}
    return keras_label(names.get(name, name), module)


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every layer without sub-layers, in the order ``models.summary`` prints them."""
    return [(name, module) for name, module in model.named_modules() if name and not list(module.children())]


def watched_layers(model: nn.Module, kinds: tuple[str, ...] = ("conv", "pool")) -> list[tuple[str, nn.Module]]:
    """``(label, module)`` for each convolution (kind ``"conv"``) and pooling layer (``"pool"``), in order.

    Labels are Keras's layer names, as ``models.summary`` shows them (``"conv2d (Conv2D)"``,
    ``"max_pooling2d (MaxPooling2D)"``). A convolution followed by its activation is watched
    after the activation: that is Keras's ``Conv2D(activation='relu')``'s output. A convolution
    without one (or followed by a batch normalisation first) is watched itself.
    """
    leaves = _leaves(model)
    names = keras_layer_names(model)
    label = {path: keras_label(names.get(path, path), module) for path, module in leaves}
    watched = []
    for i, (name, module) in enumerate(leaves):
        if isinstance(module, nn.Conv2d) and "conv" in kinds:
            following = leaves[i + 1] if i + 1 < len(leaves) else None
            if following is not None and isinstance(following[1], ACTIVATION_TYPES):
                watched.append((label[name], following[1]))
            else:
                watched.append((label[name], module))
        elif isinstance(module, POOLING_TYPES) and "pool" in kinds:
            watched.append((label[name], module))
    return watched


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    for name, module in _leaves(model):
        if isinstance(module, nn.Conv2d):
            return layer_name(name, module, model), module
    raise UserError(f"{getattr(model, 'model_name', type(model).__name__)} has no Conv2d layer: nothing to show")


def _as_batch(images: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """One image (C, H, W) or a batch (N, C, H, W), uint8 or float, as the model's float input."""
    images = torch.as_tensor(images)
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4:
        raise UserError(f"expected an image (C, H, W) or images (N, C, H, W), got shape {tuple(images.shape)}")
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    return as_float(images.to(device)).contiguous()


class _EvalMode:
    """Eval mode (dropout off, batch normalisation's moving statistics) for the duration,
    then the mode the model had: looking at a model never changes it."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc) -> None:
        self.model.train(self.was_training)


def _image_for_display(image: torch.Tensor) -> torch.Tensor:
    """(C, H, W) uint8 or [0, 1] float -> (H, W, C) float in [0, 1] on the CPU, for imshow."""
    image = image.detach().cpu()
    image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float().clamp(0, 1)
    return image.permute(1, 2, 0)


def _imshow(ax, image: torch.Tensor) -> None:
    pixels = _image_for_display(image)
    if pixels.shape[2] == 1:
        ax.imshow(pixels.squeeze(2).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(pixels.numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


# --------------------------------------------------------------------------- filters


def first_layer_filters(model: nn.Module) -> tuple[str, torch.Tensor]:
    """``(layer label, filters)``: the first convolution's weights, (filters, channels, kh, kw),
    mapped to [0, 1] on one scale for the whole layer, with 0.5 (grey) for a weight of 0: a
    bright colour is a positive weight for that colour, a dark one a negative weight."""
    name, conv = _first_conv(model)
    weights = conv.weight.detach().float().cpu()
    largest = weights.abs().max()
    scaled = weights / (2 * largest) + 0.5 if largest > 0 else torch.full_like(weights, 0.5)
    return name, scaled


def show_filters(model: nn.Module, columns: int = 8, title: str = ""):
    """The first convolution's filters as images (RGB for a colour input, else grey), one per
    cell, numbered as the feature maps' channels are. Returns the Figure."""
    name, filters = first_layer_filters(model)
    count, channels, height, width = filters.shape
    fig, cells = grid_of_axes(count, columns, (1.1, 1.2), 0.9)
    for i, ax in enumerate(cells):
        pixels = filters[i] if channels in (1, 3) else filters[i].mean(dim=0, keepdim=True)
        _imshow(ax, pixels)
        ax.set_title(f"filter {i}", fontsize=7)
    colours = "RGB" if channels == 3 else ("grey" if channels == 1 else f"mean of {channels} channels")
    heading = f'{title}\n' if title else ""
    heading += (f'The {count} filters of layer "{name}", {height}x{width} pixels x {colours}\n'
                "grey: weight 0; bright: positive weight for that colour; dark: negative")  # fmt: skip
    fig.suptitle(heading, fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- feature maps


def feature_maps(model: nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """What one image (C, H, W) becomes after each convolution and pooling layer.

    Returns ``{layer label: maps}``, each ``maps`` of shape (channels, height, width): the
    layer's output for this image, the shape ``models.summary`` prints without the batch
    ``None``. Forward hooks catch them during one forward pass in eval mode and are removed
    after it.
    """
    batch = _as_batch(image, model)
    if len(batch) != 1:
        raise UserError(f"feature_maps takes one image (C, H, W), got {len(batch)}: pass images[0]")
    caught: dict[str, torch.Tensor] = {}

    def catch(label: str):
        def hook(_module, _inputs, output):
            caught[label] = output.detach()[0].cpu()  # later layers may replace the same module's output

        return hook

    handles = [module.register_forward_hook(catch(label)) for label, module in watched_layers(model)]
    try:
        with _EvalMode(model), torch.no_grad():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return caught


def show_feature_maps(
    model: nn.Module,
    image: torch.Tensor,
    class_names: Sequence[str] | None = None,
    label: int | None = None,
    channels: int = 8,
    title: str = "",
):
    """One image beside its feature maps: a row per convolution and pooling layer, showing the
    ``channels`` most active maps of that layer (largest mean value for this image), each
    row on one colour scale (dark: 0 or below; yellow: the row's largest value). The first
    column repeats the image, titled with its class and the model's prediction. Returns the Figure."""
    maps = feature_maps(model, image)
    predicted, probability = _predicted(model, image)
    rows = len(maps)
    columns = 1 + min(channels, max(m.shape[0] for m in maps.values()))
    height = 1.6 * rows + 0.8
    fig, axes = plt.subplots(rows, columns, figsize=(1.35 * columns + 0.4, height), squeeze=False)
    # fixed margins (not tight_layout): each row's heading spans the row, which no automatic layout expects
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=1 - 0.75 / height, hspace=0.45, wspace=0.08)
    image_title = _image_title(class_names, label, predicted, probability)
    for row, (layer, layer_maps) in enumerate(maps.items()):
        for ax in axes[row]:
            ax.axis("off")
        _imshow(axes[row][0], torch.as_tensor(image))
        axes[row][0].axis("on")
        axes[row][0].set_title(image_title if row == 0 else "the image", fontsize=7)
        strongest = layer_maps.flatten(1).mean(dim=1).argsort(descending=True)[: columns - 1]
        low, high = float(layer_maps.min()), float(layer_maps.max())
        for column, channel in enumerate(strongest.tolist(), start=1):
            ax = axes[row][column]
            ax.imshow(layer_maps[channel].numpy(), cmap="viridis", vmin=min(low, 0.0), vmax=max(high, 1e-12),
                      interpolation="nearest")  # fmt: skip
            ax.text(0.5, -0.04, f"channel {channel}", transform=ax.transAxes, fontsize=6, ha="center", va="top")
        shape = " x ".join(str(n) for n in layer_maps.shape)
        shown = f"the {len(strongest)} most active channels" if len(strongest) < layer_maps.shape[0] else "all channels"
        axes[row][1].set_title(f"{layer}: {shape} (channels x height x width); {shown}", loc="left", fontsize=8,
                               fontweight="bold")  # fmt: skip
    heading = f"{title}\n" if title else ""
    heading += f"What {getattr(model, 'model_name', type(model).__name__)} sees: one image after each layer"
    fig.suptitle(heading, fontsize=10)
    return fig


# --------------------------------------------------------------------------- attribution


def _captum_attr():
    try:
        with warnings.catch_warnings():  # its progress bars warn, on import, of a notebook without ipywidgets
            warnings.filterwarnings("ignore", message="IProgress not found")
            import captum.attr
    except ImportError:
        raise UserError(CAPTUM_MISSING) from None
    return captum.attr


def gradcam_layer(model: nn.Module, layer: str | None = None) -> tuple[str, nn.Module]:
    """The layer Grad-CAM looks at, labelled as :func:`watched_layers` labels it: ``layer``
    (one of those labels), else the last convolution, after its activation (the rectified
    maps Grad-CAM's authors use)."""
    convolutions = watched_layers(model, kinds=("conv",))
    if not convolutions:
        raise UserError(f"{getattr(model, 'model_name', type(model).__name__)} has no Conv2d layer for Grad-CAM")
    if layer is None:
        return convolutions[-1]
    found = [(label, module) for label, module in convolutions if label == layer]
    if not found:
        raise UserError(f"no convolution {layer!r} for Grad-CAM: choose one of " + ", ".join(
            repr(label) for label, _ in convolutions))  # fmt: skip
    return found[0]


def attribution_maps(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | Sequence[int] | None = None,
    method: str = "gradcam",
    layer: str | None = None,
) -> torch.Tensor:
    """How much each pixel of each image counted for a class: (N, H, W), on the CPU.

    ``targets`` are the classes to explain, one per image (default: the model's prediction).
    ``"gradcam"`` (non-negative, at the last convolution's resolution, stretched bilinearly
    to the image's) or ``"integrated_gradients"`` (per pixel: the absolute attribution
    summed over the colour channels, from a black image in 32 steps). Larger means the pixel
    pushed the model further towards that class. ``layer`` picks another convolution for
    Grad-CAM (a label of :func:`watched_layers`): an earlier one has finer maps. Uses Captum.
    """
    if method not in METHODS:
        raise UserError(f"unknown attribution method {method!r}: choose one of {', '.join(METHODS)}")
    attr = _captum_attr()
    batch = _as_batch(images, model)
    with _EvalMode(model):
        if targets is None:
            with torch.no_grad():
                targets = model(batch).argmax(dim=1)
        targets = torch.as_tensor(targets, device=batch.device).reshape(-1)
        if len(targets) != len(batch):
            raise UserError(f"{len(targets)} targets for {len(batch)} images: give one class per image")
        if method == "gradcam":
            _, watched = gradcam_layer(model, layer)
            coarse = attr.LayerGradCam(model, watched).attribute(batch, target=targets, relu_attributions=True)
            maps = attr.LayerAttribution.interpolate(coarse, tuple(batch.shape[2:]), "bilinear")
        else:
            pixels = attr.IntegratedGradients(model).attribute(batch, baselines=0.0, target=targets, n_steps=32)
            maps = pixels.abs().sum(dim=1, keepdim=True)
    return maps.detach()[:, 0].cpu()


def show_attributions(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    class_names: Sequence[str],
    method: str = "gradcam",
    title: str = "",
    layer: str | None = None,
):
    """For each image (a column): the image, titled with its true class (when ``labels`` are
    given) and the model's prediction with its probability; below it the attribution map
    for the predicted class (yellow: counted most), then the map over the image. Returns the Figure."""
    batch = torch.as_tensor(images)
    if batch.ndim == 3:
        batch = batch.unsqueeze(0)
    if labels is not None:
        labels = torch.as_tensor(labels).reshape(-1)
    maps = attribution_maps(model, batch, method=method, layer=layer)
    predicted, probability = _predicted(model, batch)
    count = len(batch)
    fig, axes = plt.subplots(3, count, figsize=(1.6 * count + 1.2, 6.2), squeeze=False)
    for i in range(count):
        name = class_names[int(predicted[i])]
        true_name = class_names[int(labels[i])] if labels is not None else None
        wrong = true_name is not None and name != true_name
        _imshow(axes[0][i], batch[i])
        heading = f"true: {true_name}\n" if true_name is not None else ""
        axes[0][i].set_title(f"{heading}predicted: {name}\n{float(probability[i]):.2f}" + (" (wrong)" if wrong else ""),
                             fontsize=8, color="red" if wrong else "black")  # fmt: skip
        peak = float(maps[i].max())
        scaled = (maps[i] / peak if peak > 0 else maps[i]).numpy()
        axes[1][i].imshow(scaled, cmap="inferno", vmin=0, vmax=1, interpolation="nearest")
        _imshow(axes[2][i], batch[i])
        axes[2][i].imshow(scaled, cmap="inferno", vmin=0, vmax=1, alpha=0.55, interpolation="nearest")
        for ax in (axes[1][i], axes[2][i]):
            ax.set_xticks([])
            ax.set_yticks([])
        if peak <= 0:
            axes[1][i].text(0.5, 0.5, "no pixel\ncounted", color="white", fontsize=7, ha="center", va="center",
                            transform=axes[1][i].transAxes)  # fmt: skip
    axes[0][0].set_ylabel("image", fontsize=8)
    axes[1][0].set_ylabel(METHOD_TITLES[method], fontsize=8)
    axes[2][0].set_ylabel("both", fontsize=8)
    where = f' at layer "{gradcam_layer(model, layer)[0]}"' if method == "gradcam" else ", per pixel"
    heading = f"{title}\n" if title else ""
    heading += (f"Which pixels drove each prediction: {METHOD_TITLES[method]}{where}\n"
                "yellow: counted most for the predicted class; black: not at all")  # fmt: skip
    fig.suptitle(heading, fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- helpers


def _predicted(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(classes, probabilities)`` the model predicts for an image or a batch."""
    batch = _as_batch(images, model)
    with _EvalMode(model), torch.no_grad():
        probabilities = torch.softmax(model(batch).float(), dim=1).cpu()
    best = probabilities.max(dim=1)
    return best.indices, best.values


def _image_title(class_names, label, predicted, probability) -> str:
    parts = []
    if class_names is not None and label is not None:
        parts.append(f"true: {class_names[int(label)]}")
    if class_names is not None:
        parts.append(f"predicted: {class_names[int(predicted[0])]} {float(probability[0]):.2f}")
    return "\n".join(parts) or "input"



def require_captum() -> None:
    """Raise the one-line UserError now, before any work, when Captum is not installed."""
    _captum_attr()


def save_what_it_sees(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    class_names: Sequence[str],
    fig_dir: str | Path,
    prefix: str,
    method: str = "gradcam",
    title: str = "",
    filters: bool = True,
) -> list[Path]:
    """Write the pictures of ``scripts/evaluate.py --visualise`` and ``predict.py --visualise``:
    ``<prefix>_filters.png`` (unless ``filters`` is False), ``<prefix>_feature_maps.png`` (of
    the first image) and ``<prefix>_<method>.png`` (every image). Returns their paths."""
    from cnn_torch.plots import save_figure

    fig_dir = Path(fig_dir)
    first_label = labels[0] if labels is not None else None
    written = [save_figure(show_filters(model, title=title), fig_dir / f"{prefix}_filters.png")] if filters else []
    written.append(save_figure(show_feature_maps(model, images[0], class_names, first_label, title=title),
                               fig_dir / f"{prefix}_feature_maps.png"))  # fmt: skip
    written.append(save_figure(show_attributions(model, images, labels, class_names, method, title=title),
                               fig_dir / f"{prefix}_{method}.png"))  # fmt: skip
    return written
