"""The offline ``shapes`` data set (cnn_torch/sources/shapes.py) and the lesson it has to teach.

The fast tests pin the generator's contract and a few properties a person would check by
eye. The one ``lesson`` test trains the lesson's default run on the default data set and
asserts the picture CIFAR-10 gives: a modest validation accuracy, below the training
accuracy, and a validation loss that is lowest before the last epoch (overfitting).
"""

from __future__ import annotations

import pytest
import torch

import cnn_torch
from cnn_torch import data
from cnn_torch.errors import UserError
from cnn_torch.models import cifar_model_small
from cnn_torch.sources import shapes
from cnn_torch.sources.shapes import SHAPE_CLASSES, make_shapes


def user_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, "UserError messages are one line"
    return message


# --------------------------------------------------------------------------- the contract


def test_the_data_module_still_offers_the_shapes():
    assert data.make_shapes is make_shapes and data.SHAPE_CLASSES is SHAPE_CLASSES
    assert len(SHAPE_CLASSES) == 10 and len(set(SHAPE_CLASSES)) == 10
    assert shapes.DEFAULT_TRAIN_SIZE == 4000
    lesson = data.load_data("shapes", limit=40, seed=2)
    assert torch.equal(lesson.train_images, make_shapes(40, seed=2).train_images)


def test_types_layout_and_balance():
    lesson = make_shapes(n_train=333, seed=5)
    assert isinstance(lesson, data.LessonData) and lesson.source == "shapes" and lesson.class_names == SHAPE_CLASSES
    assert lesson.class_names is not SHAPE_CLASSES  # a copy: a caller may change its own list
    splits = ((lesson.train_images, lesson.train_labels, 333), (lesson.test_images, lesson.test_labels, 66))
    for images, labels, n in splits:
        assert images.shape == (n, 3, 32, 32) and images.dtype == torch.uint8 and images.is_contiguous()
        assert labels.shape == (n,) and labels.dtype == torch.int64
        counts = torch.bincount(labels, minlength=10)
        assert counts.sum() == n and counts.max() - counts.min() <= 1
    assert lesson.train_labels[:30].tolist() != sorted(lesson.train_labels[:30].tolist())  # shuffled


def test_same_seed_same_bytes_other_seed_other_images():
    first, again, other = make_shapes(300, seed=3), make_shapes(300, seed=3), make_shapes(300, seed=4)
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(first, name), getattr(again, name)), name
    assert not torch.equal(first.train_images, other.train_images)
    assert not torch.equal(first.test_images, other.test_images)


def test_the_test_split_holds_new_images():
    lesson = make_shapes(200, n_test=200, seed=0)
    train = {bytes(image.numpy()) for image in lesson.train_images}
    assert not any(bytes(image.numpy()) in train for image in lesson.test_images)
    assert len(train) == 200  # and no image repeats within a split


def test_sizes_and_errors():
    lesson = make_shapes(n_train=30, n_test=0, image_size=(48, 40))
    assert lesson.train_images.shape == (30, 3, 48, 40) and lesson.image_size == (48, 40)
    assert lesson.test_images is None and lesson.test_labels is None
    assert make_shapes(n_train=12, n_test=7, image_size=(8, 8)).test_images.shape == (7, 3, 8, 8)
    assert make_shapes(n_train=4).test_images is None  # 4 // 5 == 0 test images
    for bad in (0, -3):
        with pytest.raises(UserError) as excinfo:
            make_shapes(n_train=bad)
        assert "--limit" in user_error(excinfo)
    with pytest.raises(UserError) as excinfo:
        make_shapes(n_train=10, image_size=(7, 32))
    assert "at least 8x8" in user_error(excinfo) and "7x32" in user_error(excinfo)


# --------------------------------------------------------------------------- what a person would check


def edge_maps(images: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude summed over the colour channels: where the outlines are, blind to colour."""
    x = images.float() / 255
    dx = (x[..., :, 1:] - x[..., :, :-1])[..., :-1, :]
    dy = (x[..., 1:, :] - x[..., :-1, :])[..., :, :-1]
    return (dx**2 + dy**2).sum(dim=1).sqrt().flatten(1)


def nearest_mean_accuracy(features, labels, test_features, test_labels) -> float:
    """Accuracy of the simplest classifier there is: the class whose mean is nearest."""
    means = torch.stack([features[labels == c].mean(dim=0) for c in range(10)])
    return (torch.cdist(test_features, means).argmin(dim=1) == test_labels).float().mean().item()


@pytest.fixture(scope="module")
def sample():
    return make_shapes(n_train=2000, n_test=1000, seed=11)


def test_the_class_is_in_the_shape_and_colour_is_only_a_hint(sample):
    """Outlines alone (colour-blind edge maps) name the class about half the time; the mean
    colour of an image, the hint CIFAR-10 also has, only about a fifth; chance is a tenth."""
    by_shape = nearest_mean_accuracy(
        edge_maps(sample.train_images), sample.train_labels, edge_maps(sample.test_images), sample.test_labels
    )
    colour = lambda images: images.float().mean(dim=(2, 3)) / 255  # noqa: E731
    by_colour = nearest_mean_accuracy(
        colour(sample.train_images), sample.train_labels, colour(sample.test_images), sample.test_labels
    )
    assert by_shape > 0.35 and 0.12 < by_colour < 0.3 and by_shape > by_colour + 0.15


def test_raw_pixels_do_not_give_the_answer_away(sample):
    flat = lambda images: images.float().flatten(1) / 255  # noqa: E731
    accuracy = nearest_mean_accuracy(
        flat(sample.train_images), sample.train_labels, flat(sample.test_images), sample.test_labels
    )
    assert 0.15 < accuracy < 0.45


def test_images_look_like_pictures_not_noise(sample):
    x = sample.train_images.float()
    neighbours = torch.corrcoef(torch.stack([x[..., :-1].flatten(), x[..., 1:].flatten()]))[0, 1]
    assert neighbours > 0.8  # neighbouring pixels mostly belong to the same surface
    assert x.std(dim=(1, 2, 3)).min() > 5  # no blank images
    assert x.amin() == 0 and x.amax() == 255  # the full range is used (dark and bright lighting)
    # The object sits towards the middle: outlines are denser there than along the border.
    edges = edge_maps(sample.train_images).view(-1, 31, 31)
    assert edges[:, 10:21, 10:21].mean() > 1.15 * edges[:, :4].mean()


# --------------------------------------------------------------------------- the lesson


@pytest.mark.lesson
def test_default_lesson_run_overfits_like_cifar10():
    """``python scripts/train.py --dataset shapes --seed 0``, in-process: cifar_model_small,
    10 epochs, batch 32, Adam (Keras's defaults), validated on the generated test split.
    About 30-60 s on two CPU cores."""
    lesson = data.load_data("shapes", seed=0)
    assert len(lesson.train_labels) == 4000 and len(lesson.test_labels) == 800
    torch.manual_seed(0)  # train.py seeds every RNG before it builds the model
    model = cifar_model_small()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    history = cnn_torch.fit(
        model, torch.nn.CrossEntropyLoss(), optimizer, lesson.train_images, lesson.train_labels,
        epochs=10, batch_size=32, validation_data=(lesson.test_images, lesson.test_labels), seed=0, verbose=0,
        device="cpu",
    )  # fmt: skip
    h = history.history
    summary = {key: [round(value, 3) for value in values] for key, values in h.items()}
    assert 0.55 <= h["val_accuracy"][-1] <= 0.80, summary  # learns, but far from solved
    assert h["accuracy"][-1] > h["val_accuracy"][-1], summary  # better on the images it trained on
    assert min(range(10), key=h["val_loss"].__getitem__) < 9, summary  # val_loss turned up: overfitting
