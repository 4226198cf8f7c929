"""Transfer learning as the sibling lesson's episode 5 does it: a frozen, pretrained DenseNet121
with a small trainable head (carpentries-lab/deep-learning-intro, "Transfer learning").

The lesson's Keras code, and the module here that stands for each line::

    inputs = keras.Input(train_images.shape[1:])
    upscale = keras.layers.Lambda(                          # ResizeWithPad((160, 160))
        lambda x: tf.image.resize_with_pad(x, 160, 160, method=method))(inputs)
    base_model = keras.applications.DenseNet121(           # DenseNet121Base(weights)
        include_top=False, pooling='max', weights='imagenet', input_tensor=upscale, input_shape=(160, 160, 3))
    base_model.trainable = False                            # requires_grad False, and always in eval mode
    out = keras.layers.Flatten()(base_model.output)         # nn.Flatten()
    out = keras.layers.BatchNormalization()(out)            # KerasBatchNorm1d(1024)
    out = keras.layers.Dense(50, activation='relu')(out)    # nn.Linear(1024, 50), nn.ReLU()
    out = keras.layers.Dropout(0.5)(out)                    # nn.Dropout(0.5)
    out = keras.layers.Dense(10)(out)                       # nn.Linear(50, 10)

Keras's ``trainable = False`` does two things, and so does this model: the base's weights
get no gradient (``requires_grad=False``), and its batch normalisations run in inference
mode even while the head trains (``TransferModel.train()`` puts the base back in eval mode,
so ``fit``'s ``model.train()`` cannot switch them to batch statistics). Trainable weights:
53,808, as in the lesson's summary; 7,093,360 in all, counting the moving statistics.

The lesson feeds the images scaled to [0, 1] (its ``/ 255.0``) without ImageNet's
mean/std normalisation (Keras's ``densenet.preprocess_input``, torchvision's
``weights.transforms()``); so does this model, to stay the lesson's.

Weights: ``weights="imagenet"`` loads torchvision's ImageNet weights for DenseNet121
(``DenseNet121_Weights.IMAGENET1K_V1``), downloaded once into torch's cache
(``torch.hub.get_dir()/checkpoints``); without a network, the error names the file and where
to put it. ``weights=None`` keeps a random base (Keras's ``weights=None``): for tests, and for
the comparison "pretrained versus not".

Speed: the 121-layer base at 160x160 is what costs, about ten thousand times the head. In
Keras every image goes through it in every epoch. Here, without augmentation, each image's
features are computed once and reused in later epochs (``DenseNet121Base.reuse_features``,
the same numbers up to float rounding); with augmentation the images change every epoch, and
every epoch pays the full price. The README gives the measured times.

How the reuse stays correct. The features are looked up by the images' bytes (a hash of each
image as the base receives it), and only on the CPU: on a GPU, reading the bytes would make every
step wait for the GPU, and the base is fast there anyway, so every batch is computed. What the
kept features depend on besides the pixels is checked at each step from metadata alone, and any
change drops them all:

- the base's weights: every parameter's and buffer's ``_version`` counter and data pointer
  (``load_state_dict`` copies in place and so bumps them, and a post hook drops the features
  too; ``.to()`` to another dtype gives new storage; a learner's ``weight.mul_(0)`` bumps them);
  ``_apply`` and that hook list the tensors again, so a swapped one is seen too;
- how they are computed: the batch's dtype, and autocast (bf16 features are not fp32's); and
  the base frozen and in eval mode (unfrozen, nothing is kept).

``fit``'s loop knows nothing of this: the lookup is the base's own business.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from cnn_torch.errors import UserError
from cnn_torch.keras_rules.layers import KerasBatchNorm1d, LessonModel, augmentation_layers, check_args, keras_init
from cnn_torch.platform.tf_resize import resize_with_pad

RESIZE_TO = (160, 160)  # the lesson's: what DenseNet121 was set up for in the episode
WEIGHTS = ("imagenet", None)


class ResizeWithPad(nn.Module):
    """``tf.image.resize_with_pad(x, height, width, method=BILINEAR)``: scale the image to fit
    inside ``size`` keeping its aspect ratio, then pad with zeros to exactly ``size``, the image
    in the middle. A 32x32 image fills 160x160 without padding."""

    def __init__(self, size: Sequence[int] = RESIZE_TO) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return resize_with_pad(images, self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}"


def imagenet_densenet121() -> nn.Module:
    """torchvision's DenseNet121 with its ImageNet weights, downloaded into torch's cache the first
    time; a ``UserError`` naming the file and the folder when that cannot be done."""
    from torchvision.models import DenseNet121_Weights, densenet121

    weights = DenseNet121_Weights.IMAGENET1K_V1
    try:
        return densenet121(weights=weights, progress=True)
    except OSError as error:  # no network (URLError), a proxy, a full disk...
        folder = Path(torch.hub.get_dir()) / "checkpoints"
        reason = str(getattr(error, "reason", error)).splitlines()[0][:80]
        raise UserError(
            f"cannot download DenseNet121's ImageNet weights ({reason}): with a network this happens once;"
            f" offline, put {weights.url.rsplit('/', 1)[-1]} (from {weights.url}) in {folder},"
            " or pass --weights none (weights=None) to train on a random base"
        ) from None


class DenseNet121Base(nn.Sequential):
    """The lesson's ``upscale`` layer and ``keras.applications.DenseNet121(include_top=False,
    pooling='max')``: resizing to 160x160, torchvision's DenseNet121 without its classifier,
    the ReLU Keras ends the network with (torchvision's ``features`` stop at the last batch
    normalisation), and global max pooling: 1,024 numbers per image.

    ``reuse_features=True``: while the base is frozen, an image always gives the same 1,024
    numbers, so on the CPU each image's are computed once and looked up afterwards by its bytes
    (the module's docstring says what drops them); every epoch after the first then costs only
    the head.
    ``densenet121_transfer`` turns it on when there is no augmentation (augmented images are
    new every time). The kept features are not part of the state_dict; a learner who
    unfreezes the base turns the reuse off.
    """

    def __init__(self, weights: str | None = "imagenet", reuse_features: bool = False) -> None:
        from torchvision.models import densenet121

        network = imagenet_densenet121() if weights == "imagenet" else densenet121(weights=None)
        super().__init__(
            ResizeWithPad(RESIZE_TO),  # Lambda(lambda x: tf.image.resize_with_pad(x, 160, 160))
            network.features,          # DenseNet121 without its top (include_top=False)
            nn.ReLU(),                 #   ... the 'relu' layer Keras's DenseNet121 ends with
            nn.AdaptiveMaxPool2d(1),   # pooling='max': GlobalMaxPooling2D
        )
        self.reuse_features = reuse_features
        self._features: dict[bytes, torch.Tensor] = {}  # an image's bytes (hashed) -> its features
        self._computed_with: tuple | None = None  # the weights' versions and the dtype they were computed with
        # its parameters and buffers, listed once: reading their counters then costs 0.15 ms a step, not 1.3
        self._tensors: list[torch.Tensor] | None = None
        self.register_load_state_dict_post_hook(_forget_after_load)  # assign=True swaps the tensors too

    def forget_features(self) -> None:
        """Drop every kept feature (and the list of weights they were computed with)."""
        self._features.clear()
        self._tensors = None

    def _apply(self, fn, recurse=True):
        # .to(), .cuda(), .half() may give the buffers new tensors: list them again. The features kept
        # go only if the weights did change (new storage, seen at the next step): evaluate's
        # model.to(device) on the model's own device changes nothing, and keeps them
        self._tensors = None
        return super()._apply(fn, recurse)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.reuse_features or images.device.type != "cpu":  # on a GPU: computed every time (no sync)
            return self._network(images)
        if self._tensors is None:
            self._tensors = [*self.parameters(), *self.buffers()]
        if self.training or any(t.requires_grad for t in self._tensors):
            self._features.clear()  # unfrozen, or for another mode: computed by other weights, never reused
            return self._network(images)
        # the weights (load_state_dict, an in-place edit) and how the features are computed: any change drops them
        computed_with = ([(t._version, t.data_ptr()) for t in self._tensors], images.dtype,
                         torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))  # fmt: skip
        if computed_with != self._computed_with:
            self._features.clear()
            self._computed_with = computed_with
        keys = [hashlib.blake2b(image.numpy().tobytes(), digest_size=16).digest() for image in images.detach()]
        new = [i for i, key in enumerate(keys) if key not in self._features]
        if new:
            for i, features in zip(new, self._network(images[new]), strict=True):
                self._features[keys[i]] = features
        return torch.stack([self._features[key] for key in keys])

    def _network(self, images: torch.Tensor) -> torch.Tensor:
        # channels-last on the CPU, whatever the caller's layout (fit's batches are, a direct call's or
        # an augmentation layer's output may not be): DenseNet's convolutions, batch norms and
        # concatenations run faster on it (measured on AMD Zen 4: 1.2x at one thread; BENCHMARKS.md)
        if images.device.type == "cpu" and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return super().forward(images)


def _forget_after_load(module: DenseNet121Base, incompatible_keys) -> None:
    """``load_state_dict``'s post hook: the features kept were computed by the weights before."""
    module.forget_features()


class TransferModel(LessonModel):
    """A lesson model whose ``DenseNet121Base`` is frozen: no gradients, and eval mode always."""

    @property
    def base(self) -> DenseNet121Base:
        return next(module for module in self if isinstance(module, DenseNet121Base))

    def train(self, mode: bool = True) -> TransferModel:
        super().train(mode)
        # Keras: a layer with trainable=False runs in inference mode, its BatchNormalization
        # layers included, even inside model.fit
        self.base.eval()
        return self


def densenet121_transfer(
    num_classes: int = 10,
    input_shape: Sequence[int] = (3, 32, 32),
    init: str = "keras",
    weights: str | None = "imagenet",
    augment: Sequence[str] | None = None,
    augment_seed: int | None = None,
) -> TransferModel:
    """The lesson's transfer-learning model: 53,808 trainable weights (10 classes) on a frozen
    DenseNet121 (7,037,504 weights with its moving statistics). ``input_shape`` is the images'
    own shape; they are resized to 160x160 inside the model."""
    if weights not in WEIGHTS:
        raise UserError(f"weights {weights!r} is unknown: use 'imagenet' (the lesson's) or None (a random base)")
    kwargs = check_args(densenet121_transfer, locals())
    if kwargs["input_shape"][0] != 3:
        raise UserError(f"densenet121_transfer takes colour images (3 channels), got {kwargs['input_shape'][0]}:"
                        " convert them to RGB first")
    kwargs["weights"] = weights
    base = DenseNet121Base(weights, reuse_features="augment" not in kwargs)
    layers = [
        *augmentation_layers(kwargs),      # keras.Sequential([RandomFlip(...), ...]), only with augment
        base,                              # resize_with_pad to 160x160, DenseNet121(include_top=False, pooling='max')
        nn.Flatten(),                      # keras.layers.Flatten()
        KerasBatchNorm1d(1024),            # keras.layers.BatchNormalization()
        nn.Linear(1024, 50),               # keras.layers.Dense(50, activation='relu')
        nn.ReLU(),                         #   ... its activation='relu'
        nn.Dropout(0.5),                   # keras.layers.Dropout(0.5)
        nn.Linear(50, num_classes),        # keras.layers.Dense(10)  (logits)
    ]
    model = TransferModel("densenet121_transfer", kwargs, layers)
    if init == "keras":  # Keras's glorot-uniform for the layers it creates: the head, and a base without weights
        keras_init(model if weights is None else nn.Sequential(*layers[-5:]))
    base.requires_grad_(False)  # base_model.trainable = False
    return model.train()


PRETRAINED = {"densenet121_transfer": densenet121_transfer}
__all__ = ["PRETRAINED", "DenseNet121Base", "ResizeWithPad", "TransferModel", "densenet121_transfer"]
