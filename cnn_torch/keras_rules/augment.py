"""Keras's data augmentation layers as PyTorch modules that sit inside the model.

Keras puts augmentation in the model, as its first layers::

    data_augmentation = keras.Sequential([keras.layers.RandomFlip("horizontal"),
                                          keras.layers.RandomRotation(0.1)])
    x = data_augmentation(inputs)

Each layer changes every image of a training batch by its own random amount and does
nothing in inference mode, so ``evaluate`` and ``predict`` see the images as they are. The
modules below do the same: in ``model.train()`` they transform the batch, on the batch's
device; after ``model.eval()`` they return it untouched. ``augmentation(["flip",
"rotation"])`` builds the ``nn.Sequential`` of them that ``build_model(..., augment=...)``
puts first in a lesson model.

Keras's arguments keep Keras's meanings (read from Keras 3's
``keras/src/layers/preprocessing/image_preprocessing/``):

* ``RandomFlip(mode)``: each image is flipped with probability 1/2. In
  ``"horizontal_and_vertical"`` mode ONE draw decides both flips, so an image is either
  flipped both ways (turned by 180 degrees) or not at all.
* ``RandomRotation(factor)``: a fraction of a full turn, ``0.1`` = up to 36 degrees either
  way; positive turns counter-clockwise. ``(-0.1, 0.2)`` gives the two bounds.
* ``RandomZoom(height_factor, width_factor=None)``: positive zooms OUT (the image shrinks),
  negative zooms in; ``0.2`` draws from [-20%, +20%]. Without ``width_factor`` the same draw
  serves both axes (the aspect ratio is kept).
* ``RandomTranslation(height_factor, width_factor)``: fractions of the height and width.
* ``RandomContrast(factor)``: per image and channel, ``(x - mean) * c + mean``, clipped to
  ``value_range`` (Keras's default ``(0, 255)``). Keras 3 draws ``c`` from
  ``[1 - lower, 1 + upper]`` with ``lower = 0`` when ``factor`` is one number: ``0.2``
  draws from [1.0, 1.2] (its docs say [0.8, 1.2]); ``(0.2, 0.2)`` gives [0.8, 1.2]. We do
  what Keras does; ``tests/test_augment.py`` checks the ranges against Keras itself.
* ``fill_mode`` for the geometric layers: ``"reflect"`` (Keras's default, ``d c b a | a b
  c d | d c b a``), ``"nearest"`` or ``"constant"`` (``fill_value``). Keras's ``"wrap"`` has
  no counterpart in ``grid_sample`` and is refused.

How they are computed: the flips are torchvision's (``transforms.v2.functional``). The
geometric layers cannot be: torchvision's ``v2.functional.affine`` applies ONE set of
parameters to a whole batch, fills only with a constant and scales both axes alike, and
calling it once per image costs 52 ms for a batch of 32 on a 2-core CPU (80 s per CIFAR-10
epoch, per layer). So they build Keras's own per-image matrix (output pixel -> input
pixel) and resample the whole batch in one call to ``torch.nn.functional.grid_sample``, the
sampler torchvision's affine runs underneath; its ``"reflection"``, ``"border"`` and
``"zeros"`` padding are Keras's ``reflect``, ``nearest`` and ``constant`` fills. Keras's
per-channel contrast is one line (torchvision's ``adjust_contrast`` blends with the grey
mean instead).

Random numbers: each layer draws from its own generator, seeded from ``(seed, draws)``,
where ``draws`` counts the batches it has transformed. Both are buffers, so they are in the
model's ``state_dict`` and its checkpoints: the same seed gives the same augmented batches,
and a resumed run continues the sequence where it stopped. The draws are made on the CPU
(a few numbers per image) and moved to the batch's device, so the amounts do not depend on
the device either, and torch's global random state (dropout's) is never touched. Under
torchrun every rank draws the same sequence for its own share of the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torchvision.transforms.v2.functional as TF
from torch import nn
from torch.nn import functional as F

from cnn_torch.errors import UserError

FILL_MODES = {"reflect": "reflection", "nearest": "border", "constant": "zeros"}  # Keras -> grid_sample
INTERPOLATIONS = ("bilinear", "nearest")
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


def _bounds(factor, name: str, low: float, high: float, low_open: bool = False) -> tuple[float, float]:
    """Keras's ``factor`` -> ``(lower, upper)``: one number ``f`` means ``(-f, f)``, a pair is sorted."""
    if isinstance(factor, (list, tuple)):
        if len(factor) != 2:
            raise UserError(f"{name} {factor!r} is a number or a pair (lower, upper): try 0.1 or (-0.1, 0.2)")
        values = list(factor)
    else:
        values = [factor]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(f"{name} {factor!r} is not a number or a pair of numbers: try 0.1")
        if value > high or value < low or (low_open and value == low):
            interval = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
            raise UserError(f"{name} {factor!r} is outside {interval}, as Keras requires: try 0.1")
    if len(values) == 2:
        lower, upper = sorted(float(v) for v in values)
        return lower, upper
    return -abs(float(values[0])), abs(float(values[0]))


def _uniform(shape, lower: float, upper: float, generator: torch.Generator) -> torch.Tensor:
    """Keras's ``random.uniform(minval=lower, maxval=upper)``: float32 draws in [lower, upper)."""
    return torch.rand(shape, generator=generator) * (upper - lower) + lower


class RandomLayer(nn.Module):
    """What every augmentation layer shares: a seeded draw per training batch, and the
    identity in eval mode (Keras: ``training=False``).

    Subclasses say how to ``draw`` one batch's random amounts (on the CPU) and how to
    ``transform`` a batch with given amounts; the split is Keras's own
    (``get_random_transformation`` and ``transform_images``), which lets the tests hand
    Keras's draws to our ``transform`` and compare the images.
    """

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        if seed is None:  # Keras: a random seed; ours comes from torch's RNG, so torch.manual_seed fixes it
            seed = int(torch.randint(2**31 - 1, ()))
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise UserError(f"seed {seed!r} is not an integer: pass e.g. seed=1")
        # buffers: saved in the state_dict, so checkpoints carry where the sequence stands
        self.register_buffer("seed", torch.tensor(seed, dtype=torch.int64))
        self.register_buffer("draws", torch.tensor(0, dtype=torch.int64))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.training:  # Keras: in inference mode the layer passes its input through
            return images
        # the same (seed, batch number) always gives the same amounts: no state beyond the count
        generator = torch.Generator().manual_seed((int(self.seed) * 1_000_003 + int(self.draws)) % 2**63)
        self.draws += 1
        amounts = self.draw(images, generator).to(images.device)
        return self.transform(images, amounts)

    def draw(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def transform(self, images: torch.Tensor, amounts: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class RandomFlip(RandomLayer):
    """``keras.layers.RandomFlip(mode)``; ``amounts``: one bool per image, True flips it."""

    def __init__(self, mode: str = "horizontal_and_vertical", seed: int | None = None) -> None:
        if mode not in FLIP_MODES:
            raise UserError(f"RandomFlip mode {mode!r} is unknown: use one of {', '.join(FLIP_MODES)}")
        super().__init__(seed)
        self.mode = mode

    def draw(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(len(images), generator=generator) <= 0.5  # Keras: uniform <= 0.5

    def transform(self, images: torch.Tensor, amounts: torch.Tensor) -> torch.Tensor:
        flip = amounts.view(-1, 1, 1, 1)
        if self.mode in ("horizontal", "horizontal_and_vertical"):
            images = torch.where(flip, TF.horizontal_flip(images), images)
        if self.mode in ("vertical", "horizontal_and_vertical"):  # the same draw as the horizontal flip
            images = torch.where(flip, TF.vertical_flip(images), images)
        return images

    def extra_repr(self) -> str:
        return repr(self.mode)


class _Geometric(RandomLayer):
    """Rotation, zoom and translation: a 2x3 matrix per image, then one resampling of the batch."""

    def __init__(self, fill_mode: str, interpolation: str, seed: int | None, fill_value: float) -> None:
        if fill_mode not in FILL_MODES:
            hint = " (Keras's 'wrap' is not available here)" if fill_mode == "wrap" else ""
            raise UserError(f"fill_mode {fill_mode!r} is unknown{hint}: use 'reflect' (Keras's default),"
                            " 'nearest' or 'constant'")
        if interpolation not in INTERPOLATIONS:
            raise UserError(f"interpolation {interpolation!r} is unknown: use 'bilinear' or 'nearest'")
        super().__init__(seed)
        self.fill_mode, self.interpolation, self.fill_value = fill_mode, interpolation, float(fill_value)

    def matrices(self, images: torch.Tensor, amounts: torch.Tensor) -> torch.Tensor:
        """``(N, 6)``: Keras's ``a0, a1, a2, b0, b1, b2`` for each image."""
        raise NotImplementedError

    def transform(self, images: torch.Tensor, amounts: torch.Tensor) -> torch.Tensor:
        return affine_transform(images, self.matrices(images, amounts), self.interpolation, self.fill_mode,
                                self.fill_value)


def affine_transform(images: torch.Tensor, matrices: torch.Tensor, interpolation: str = "bilinear",
                     fill_mode: str = "reflect", fill_value: float = 0.0) -> torch.Tensor:  # fmt: skip
    """Keras's ``ops.image.affine_transform``, channels-first: output pixel ``(x, y)`` takes the
    input's value at ``(a0 x + a1 y + a2, b0 x + b1 y + b2)``, pixel centres at whole numbers."""
    n, _, height, width = images.shape
    dtype, device = images.dtype, images.device
    ys, xs = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                            torch.arange(width, dtype=dtype, device=device), indexing="ij")
    a0, a1, a2, b0, b1, b2 = (m.to(dtype).view(n, 1, 1) for m in matrices.to(device).unbind(dim=1))
    x_in = a0 * xs + a1 * ys + a2
    y_in = b0 * xs + b1 * ys + b2
    # grid_sample's coordinates run from -1 to 1 over the outer edges of the corner pixels
    grid = torch.stack([(2 * x_in + 1) / width - 1, (2 * y_in + 1) / height - 1], dim=-1)
    # a constant fill k: resample (image - k) with zeros outside, add k back; bilinear weights
    # then blend k in exactly as Keras does at the border
    shift = fill_value if fill_mode == "constant" else 0.0
    out = F.grid_sample(images - shift, grid, mode=interpolation, padding_mode=FILL_MODES[fill_mode],
                        align_corners=False)
    return out + shift if shift else out


class RandomRotation(_Geometric):
    """``keras.layers.RandomRotation(factor)``; ``amounts``: the angle in degrees per image."""

    def __init__(self, factor, fill_mode: str = "reflect", interpolation: str = "bilinear",
                 seed: int | None = None, fill_value: float = 0.0) -> None:  # fmt: skip
        lower, upper = _bounds(factor, "RandomRotation factor", -1.0, 1.0)
        super().__init__(fill_mode, interpolation, seed, fill_value)
        self.factor, self.lower, self.upper = factor, lower, upper

    def draw(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return _uniform(len(images), self.lower * 360.0, self.upper * 360.0, generator)  # a fraction of 360 degrees

    def matrices(self, images: torch.Tensor, amounts: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        angle = torch.deg2rad(amounts.float())
        cos, sin = torch.cos(angle), torch.sin(angle)
        cx, cy = (width - 1) / 2, (height - 1) / 2  # about the image centre
        # the input point for each output point: the output turned back by the angle
        return torch.stack([cos, -sin, cx - cx * cos + cy * sin, sin, cos, cy - cx * sin - cy * cos], dim=1)

    def extra_repr(self) -> str:
        return f"factor={self.factor!r}, fill_mode={self.fill_mode!r}"


class RandomZoom(_Geometric):
    """``keras.layers.RandomZoom(height_factor, width_factor)``; ``amounts``: ``(N, 2)`` zooms
    (height, width), 1 + the drawn factor: above 1 the image shrinks (zoom out)."""

    def __init__(self, height_factor, width_factor=None, fill_mode: str = "reflect", interpolation: str = "bilinear",
                 seed: int | None = None, fill_value: float = 0.0) -> None:  # fmt: skip
        height_bounds = _bounds(height_factor, "RandomZoom height_factor", -1.0, 1.0, low_open=True)
        width_bounds = None if width_factor is None else _bounds(
            width_factor, "RandomZoom width_factor", -1.0, 1.0, low_open=True
        )
        super().__init__(fill_mode, interpolation, seed, fill_value)
        self.height_factor, self.width_factor = height_factor, width_factor
        self.height_bounds, self.width_bounds = height_bounds, width_bounds

    def draw(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        lower, upper = self.height_bounds
        height_zoom = _uniform(len(images), 1.0 + lower, 1.0 + upper, generator)
        if self.width_bounds is None:  # Keras: the height's zoom for both axes
            return torch.stack([height_zoom, height_zoom], dim=1)
        lower, upper = self.width_bounds
        return torch.stack([height_zoom, _uniform(len(images), 1.0 + lower, 1.0 + upper, generator)], dim=1)

    def matrices(self, images: torch.Tensor, amounts: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        zoom_y, zoom_x = amounts.float().unbind(dim=1)
        zero = torch.zeros_like(zoom_x)
        # about the image centre: input = centre + zoom * (output - centre)
        return torch.stack([zoom_x, zero, (width - 1) / 2 * (1 - zoom_x),
                            zero, zoom_y, (height - 1) / 2 * (1 - zoom_y)], dim=1)

    def extra_repr(self) -> str:
        return f"height_factor={self.height_factor!r}, width_factor={self.width_factor!r}, fill_mode={self.fill_mode!r}"


class RandomTranslation(_Geometric):
    """``keras.layers.RandomTranslation(height_factor, width_factor)``; ``amounts``: ``(N, 2)``
    shifts in pixels (x, y) = (width fraction * width, height fraction * height); positive
    moves the image right and down."""

    def __init__(self, height_factor, width_factor, fill_mode: str = "reflect", interpolation: str = "bilinear",
                 seed: int | None = None, fill_value: float = 0.0) -> None:  # fmt: skip
        height_bounds = _bounds(height_factor, "RandomTranslation height_factor", -1.0, 1.0)
        width_bounds = _bounds(width_factor, "RandomTranslation width_factor", -1.0, 1.0)
        super().__init__(fill_mode, interpolation, seed, fill_value)
        self.height_factor, self.width_factor = height_factor, width_factor
        self.height_bounds, self.width_bounds = height_bounds, width_bounds

    def draw(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        height, width = images.shape[-2:]
        dy = _uniform(len(images), *self.height_bounds, generator) * height
        dx = _uniform(len(images), *self.width_bounds, generator) * width
        return torch.stack([dx, dy], dim=1)  # Keras's order: width, then height

    def matrices(self, images: torch.Tensor, amounts: torch.Tensor) -> torch.Tensor:
        dx, dy = amounts.float().unbind(dim=1)
        one, zero = torch.ones_like(dx), torch.zeros_like(dx)
        return torch.stack([one, zero, -dx, zero, one, -dy], dim=1)

    def extra_repr(self) -> str:
        return f"height_factor={self.height_factor!r}, width_factor={self.width_factor!r}, fill_mode={self.fill_mode!r}"


class RandomContrast(RandomLayer):
    """``keras.layers.RandomContrast(factor, value_range=(0, 255))``; ``amounts``: the contrast
    factor per image."""

    def __init__(self, factor, value_range: Sequence[float] = (0, 255), seed: int | None = None) -> None:
        lower, upper = _bounds(factor, "RandomContrast factor", 0.0, 1.0)
        if not isinstance(factor, (list, tuple)):  # Keras 3: one number f gives (max(-f, 0), f) = (0, f)
            lower = 0.0
        if len(value_range) != 2 or not value_range[0] < value_range[1]:
            raise UserError(f"value_range {value_range!r} is not (low, high): use (0, 1) for images scaled to [0, 1]")
        super().__init__(seed)
        self.factor, self.lower, self.upper = factor, lower, upper
        self.value_range = (float(value_range[0]), float(value_range[1]))

    def draw(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return _uniform(len(images), 1.0 - self.lower, 1.0 + self.upper, generator)

    def transform(self, images: torch.Tensor, amounts: torch.Tensor) -> torch.Tensor:
        mean = images.mean(dim=(2, 3), keepdim=True)  # per image and channel, as Keras
        contrasted = (images - mean) * amounts.to(images.dtype).view(-1, 1, 1, 1) + mean
        return contrasted.clamp(*self.value_range)

    def extra_repr(self) -> str:
        return f"factor={self.factor!r}, value_range={self.value_range!r}"


class Augmentation(nn.Sequential):
    """Keras's ``data_augmentation = keras.Sequential([...])``: the augmentation layers in order,
    each with its own seed. ``specs`` records how it was built (see :func:`augmentation`)."""

    def __init__(self, layers: Sequence[RandomLayer], specs: Sequence[str] = ()) -> None:
        super().__init__(*layers)
        self.specs = list(specs)


# --- the names the command line and build_model take --------------------------------------

# name -> (the layer for a factor, the default factor). The defaults are those of TensorFlow's
# "Image classification" tutorial (RandomFlip("horizontal"), RandomRotation(0.1), RandomZoom(0.1)).
# Contrast works on images already scaled to [0, 1] (fit's / 255), hence value_range=(0, 1).
AUGMENTATIONS = {
    "flip": (lambda mode, seed: RandomFlip(mode, seed=seed), "horizontal"),
    "rotation": (lambda factor, seed: RandomRotation(factor, seed=seed), 0.1),
    "zoom": (lambda factor, seed: RandomZoom(factor, seed=seed), 0.1),
    "translation": (lambda factor, seed: RandomTranslation(factor, factor, seed=seed), 0.1),
    "contrast": (lambda factor, seed: RandomContrast(factor, value_range=(0, 1), seed=seed), 0.2),
}


def parse_spec(spec: str) -> tuple[str, str | float]:
    """``"rotation=0.2"`` -> ``("rotation", 0.2)``; ``"flip"`` -> ``("flip", "horizontal")``."""
    name, _, value = str(spec).partition("=")
    name = name.strip().lower()
    if name not in AUGMENTATIONS:
        raise UserError(f"unknown augmentation {spec!r}: choose from {', '.join(AUGMENTATIONS)}"
                        " (with =FACTOR, e.g. rotation=0.2)")
    default = AUGMENTATIONS[name][1]
    if not value:
        return name, default
    if name == "flip":
        return name, value.strip()
    try:
        return name, float(value)
    except ValueError:
        raise UserError(f"augmentation {spec!r}: the factor after = must be a number, e.g. {name}={default}") from None


def normalise_specs(specs: Sequence[str] | str | None) -> list[str]:
    """Each spec written out in full (``"rotation"`` -> ``"rotation=0.1"``), checked, in the given order."""
    if specs is None:
        return []
    if isinstance(specs, str):
        specs = [specs]
    parsed = [parse_spec(spec) for spec in specs]
    names = [name for name, _ in parsed]
    if len(set(names)) != len(names):
        raise UserError(f"augmentation lists a layer twice ({', '.join(names)}): give each once")
    return [f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}" for name, value in parsed]


def augmentation(specs: Sequence[str], seed: int | None = None) -> Augmentation:
    """The ``Augmentation`` for specs like ``["flip", "rotation=0.2"]``. Layer ``i`` gets the seed
    ``seed * 1000 + i`` (the layers must not draw the same numbers); ``seed=None`` draws one."""
    specs = normalise_specs(specs)
    if not specs:
        raise UserError(f"no augmentation given: name at least one of {', '.join(AUGMENTATIONS)}")
    if seed is None:
        seed = int(torch.randint(2**31 - 1, ()))
    layers = []
    for i, spec in enumerate(specs):
        name, value = parse_spec(spec)
        layers.append(AUGMENTATIONS[name][0](value, seed * 1000 + i))
    return Augmentation(layers, specs)
