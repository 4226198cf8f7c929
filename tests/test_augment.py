"""Augmentation layers against Keras 3's own (torch backend): the same random amounts give the
same images, the amounts are drawn from the same ranges, and the layers act in training mode
only. Then what Keras cannot check: seeding, resuming, and the global random state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnn_torch.errors import UserError
from cnn_torch.evaluation import predict
from cnn_torch.keras_rules import augment
from cnn_torch.models import build_model

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

HEIGHT, WIDTH = 32, 20  # not square: height and width must not be swapped anywhere


def images(n: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(seed))


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).contiguous()


def channels_first(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x)).permute(0, 3, 1, 2)


def resampling_tolerance() -> float:
    """What float32 rounding allows between two resamplings that compute the same input
    coordinates in a different order: a few ulps of a coordinate (which can reach twice the
    image size), times the steepest a bilinear interpolant of values in [0, 1] can be (1 per
    pixel), plus a few ulps of the value itself."""
    coordinate_ulp = float(np.spacing(np.float32(2 * max(HEIGHT, WIDTH))))
    return 4 * coordinate_ulp + 4 * float(np.spacing(np.float32(1.0)))


def amounts_from(transformation: dict, name: str) -> torch.Tensor:
    """Keras's drawn amounts (``get_random_transformation``) in our layer's layout."""
    def tensor(key):
        return torch.as_tensor(np.asarray(transformation[key]))

    if name == "flip":
        return tensor("flips").reshape(-1)
    if name == "rotation":
        return tensor("angle")
    if name == "zoom":
        return torch.cat([tensor("height_zoom"), tensor("width_zoom")], dim=1)
    if name == "translation":
        return tensor("translations")
    return tensor("contrast_factor").reshape(-1)


# (our layer, Keras's layer): the same arguments on both sides
PAIRS = {
    "flip horizontal": ("flip", lambda: augment.RandomFlip("horizontal"),
                        lambda: keras.layers.RandomFlip("horizontal")),
    "flip vertical": ("flip", lambda: augment.RandomFlip("vertical"), lambda: keras.layers.RandomFlip("vertical")),
    "flip both": ("flip", lambda: augment.RandomFlip(), lambda: keras.layers.RandomFlip()),
    "rotation reflect": ("rotation", lambda: augment.RandomRotation(0.3), lambda: keras.layers.RandomRotation(0.3)),
    "rotation nearest": ("rotation", lambda: augment.RandomRotation((-0.1, 0.4), fill_mode="nearest"),
                         lambda: keras.layers.RandomRotation((-0.1, 0.4), fill_mode="nearest")),
    "rotation constant": ("rotation", lambda: augment.RandomRotation(0.3, fill_mode="constant", fill_value=0.25),
                          lambda: keras.layers.RandomRotation(0.3, fill_mode="constant", fill_value=0.25)),
    "zoom both ways": ("zoom", lambda: augment.RandomZoom(0.5), lambda: keras.layers.RandomZoom(0.5)),
    "zoom per axis": ("zoom", lambda: augment.RandomZoom((-0.4, -0.1), (0.2, 0.6), fill_mode="constant"),
                      lambda: keras.layers.RandomZoom((-0.4, -0.1), (0.2, 0.6), fill_mode="constant")),
    "translation": ("translation", lambda: augment.RandomTranslation(0.3, (-0.5, 0.2)),
                    lambda: keras.layers.RandomTranslation(0.3, (-0.5, 0.2))),
    "contrast": ("contrast", lambda: augment.RandomContrast(0.6, value_range=(0, 1)),
                 lambda: keras.layers.RandomContrast(0.6, value_range=(0, 1))),
    "contrast pair": ("contrast", lambda: augment.RandomContrast((0.5, 0.3)),
                      lambda: keras.layers.RandomContrast((0.5, 0.3))),
}


@pytest.mark.parametrize("label", list(PAIRS))
def test_keras_amounts_give_keras_images(label):
    """Keras draws the amounts; our ``transform`` applies them: the images agree to float
    rounding, borders and fill modes included (the meaning of every argument and sign)."""
    name, ours, theirs = PAIRS[label]
    layer, keras_layer = ours(), theirs()
    x = images()
    transformation = keras_layer.get_random_transformation(channels_last(x), training=True)
    expected = channels_first(keras_layer.transform_images(channels_last(x), transformation, training=True))
    got = layer.transform(x, amounts_from(transformation, name))
    assert got.shape == x.shape and got.dtype == torch.float32
    assert not torch.equal(got, x)  # the layer did something
    gap = (got - expected).abs().max().item()
    assert gap <= resampling_tolerance(), f"{label}: {gap:.2e}"


@pytest.mark.parametrize("label", list(PAIRS))
def test_amounts_are_drawn_from_keras_ranges(label):
    """2,000 draws from Keras's layer and 2,000 from ours: both lie in the same [low, high] and
    both reach near its two ends (5% of the width: a miss has probability 0.95**2000)."""
    name, ours, theirs = PAIRS[label]
    layer, keras_layer = ours(), theirs()
    x = torch.zeros(2000, 3, 4, 5)
    keras_amounts = amounts_from(keras_layer.get_random_transformation(channels_last(x), training=True), name)
    our_amounts = layer.draw(x, torch.Generator().manual_seed(0))
    assert our_amounts.shape == keras_amounts.shape
    if name == "flip":  # a fair coin on both sides
        for amounts in (our_amounts, keras_amounts):
            assert amounts.dtype == torch.bool and 0.45 < amounts.float().mean() < 0.55
        return
    for column in range(our_amounts.reshape(2000, -1).shape[1]):
        theirs_column = keras_amounts.reshape(2000, -1)[:, column].double()
        ours_column = our_amounts.reshape(2000, -1)[:, column].double()
        low, high = theirs_column.min().item(), theirs_column.max().item()
        width = high - low
        assert width > 0
        assert ours_column.min() >= low - 0.05 * width and ours_column.max() <= high + 0.05 * width
        assert ours_column.min() <= low + 0.05 * width and ours_column.max() >= high - 0.05 * width


@pytest.mark.parametrize(("layer", "low", "high"), [
    (lambda: augment.RandomRotation(0.1), -36.0, 36.0),  # a fraction of a full turn, in degrees
    (lambda: augment.RandomRotation((-0.1, 0.25)), -36.0, 90.0),
    (lambda: augment.RandomZoom(0.2), 0.8, 1.2),  # 1 + the factor: above 1 zooms out
    (lambda: augment.RandomTranslation(0.0, 0.5), -10.0, 10.0),  # pixels: (x, y), x within +-0.5 * 20, y = 0
    (lambda: augment.RandomContrast(0.2), 1.0, 1.2),  # Keras 3: one number f draws from [1, 1 + f]
    (lambda: augment.RandomContrast((0.2, 0.2)), 0.8, 1.2),
])  # fmt: skip
def test_factor_meanings_by_hand(layer, low, high):
    amounts = layer().draw(torch.zeros(4000, 3, HEIGHT, WIDTH), torch.Generator().manual_seed(1))
    assert amounts.min() >= low and amounts.max() <= high
    assert amounts.min() < low + 0.02 * (high - low) and amounts.max() > high - 0.02 * (high - low)


def test_rotation_is_counter_clockwise_and_zoom_out_shrinks():
    """By hand, on a single bright pixel: a quarter turn (factor 0.25) carries the top-middle
    pixel to the left-middle, and zooming out by 100% (zoom 2) halves its distance to the centre."""
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 0, 4] = 1.0  # top middle
    turned = augment.RandomRotation(0.25, fill_mode="constant").transform(x, torch.tensor([90.0]))
    assert turned[0, 0].argmax().item() == 4 * 9 + 0  # row 4, column 0: the left middle
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 0, 0] = 1.0  # a corner, 4 pixels from the centre along each axis
    zoomed = augment.RandomZoom(1.0, fill_mode="constant").transform(x, torch.tensor([[2.0, 2.0]]))
    assert zoomed[0, 0, 2, 2] > 0.2 and zoomed[0, 0, 0, 0] == 0  # now 2 pixels away


def test_layers_act_in_training_mode_only_as_in_keras():
    """In a model: ``model.train()`` augments, ``model.eval()`` (evaluate, predict) does not; the
    same holds for Keras's layer with ``training=False``."""
    model = build_model("cifar_model_small", input_shape=(3, HEIGHT, WIDTH),
                        augment=["flip", "rotation=0.2", "zoom", "translation", "contrast"], augment_seed=5)
    block, x = model[0], images(8)
    assert isinstance(block, augment.Augmentation) and len(block) == 5
    model.train()
    assert not torch.equal(block(x), x)
    model.eval()
    assert torch.equal(block(x), x)
    # predict (eval mode) sees the images as they are: the model's own layers after the block
    without = torch.nn.Sequential(*list(model)[1:])
    assert torch.equal(predict(model, x), predict(without, x))
    assert {"0.1.seed", "0.1.draws"} <= set(model.state_dict())  # where the sequence stands, for checkpoints
    keras_layer = keras.layers.RandomRotation(0.2)
    np.testing.assert_array_equal(np.asarray(keras_layer(channels_last(x), training=False)), channels_last(x).numpy())


def test_same_seed_same_batches_and_resume_continues_the_sequence():
    """The amounts depend on (seed, batch number) only: two builds with one seed augment alike;
    a state_dict saved after two batches continues with the third batch's amounts."""
    specs = ["flip", "rotation", "zoom", "translation", "contrast"]
    first, second = augment.augmentation(specs, seed=11).train(), augment.augmentation(specs, seed=11).train()
    other = augment.augmentation(specs, seed=12).train()
    batches = [images(16, seed=i) for i in range(4)]
    out_first = [first(b) for b in batches]
    assert all(torch.equal(a, second(b)) for a, b in zip(out_first, batches, strict=True))
    assert not torch.equal(other(batches[0]), out_first[0])
    resumed = augment.augmentation(specs, seed=99).train()
    replay = augment.augmentation(specs, seed=11).train()
    replay(batches[0]), replay(batches[1])
    resumed.load_state_dict(replay.state_dict())  # a checkpoint after two batches
    assert torch.equal(resumed(batches[2]), out_first[2]) and torch.equal(resumed(batches[3]), out_first[3])


def test_augmentation_leaves_the_global_random_state_alone():
    """Dropout draws from torch's global generator; augmentation must not shift it."""
    layers = augment.augmentation(["flip", "rotation", "contrast"], seed=1).train()
    before = torch.get_rng_state()
    layers(images(8))
    assert torch.equal(torch.get_rng_state(), before)


def test_specs_and_argument_errors_name_the_fix():
    assert augment.normalise_specs(["flip", "Rotation=0.2", "zoom"]) == ["flip=horizontal", "rotation=0.2", "zoom=0.1"]
    with pytest.raises(UserError, match="choose from flip, rotation"):
        augment.normalise_specs(["blur"])
    with pytest.raises(UserError, match="must be a number"):
        augment.normalise_specs(["zoom=big"])
    with pytest.raises(UserError, match="twice"):
        augment.normalise_specs(["flip", "flip=vertical"])
    with pytest.raises(UserError, match="'wrap' is not available"):
        augment.RandomRotation(0.1, fill_mode="wrap")
    with pytest.raises(UserError, match="outside"):
        augment.RandomZoom(-1.0)  # Keras: zoom factors lie in (-1, 1]
    with pytest.raises(UserError, match="mode"):
        augment.RandomFlip("diagonal")


def test_keras_twin_of_an_augmented_model_has_the_same_layers():
    from cnn_torch.parity.keras_compat import keras_model_like

    model = build_model("model_intro", augment=["flip=horizontal_and_vertical", "rotation=0.2", "contrast"],
                        augment_seed=3)
    keras_model = keras_model_like(model)
    block = keras_model.layers[0]
    kinds = [type(layer).__name__ for layer in block.layers]
    assert kinds == ["RandomFlip", "RandomRotation", "RandomContrast"]
    assert block.layers[0].mode == "horizontal_and_vertical" and block.layers[1].factor == (-0.2, 0.2)
    assert keras_model.count_params() == sum(p.numel() for p in model.parameters())
