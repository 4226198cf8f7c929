"""Issue 17, item 4: a learner's Keras habits in the Python API either work as in Keras or get
one line that names the fix, never a traceback from inside torch.
"""

from __future__ import annotations

import re
import signal
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from cnn_torch import evaluate, fit, models, predict, probabilities
from cnn_torch.errors import UserError
from cnn_torch.keras_rules.optim import KERAS_LEARNING_RATES
from cnn_torch.machinery.checks import InputWarning
from cnn_torch.machinery.interrupt import TrainingInterrupted


def lesson_like(n: int = 40):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return images, torch.arange(n) % 10


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return models.cifar_model_small()


QUIET = {"verbose": 0, "seed": 1, "batch_size": 16}


@pytest.mark.parametrize("name", ["adam", "Adam", "SGD", "rmsprop"])
def test_an_optimizer_by_name_is_keras_s_with_its_defaults(name):
    """Keras's compile(optimizer='adam'): the same run as the optimizer the CLI builds by that name."""
    images, labels = lesson_like()
    by_name = fit(small_model(), nn.CrossEntropyLoss(), name, images, labels, epochs=2, **QUIET)
    model = small_model()
    from cnn_torch.keras_rules.optim import make_optimizer

    optimizer = make_optimizer(name.lower(), model.parameters())
    assert optimizer.param_groups[0]["lr"] == KERAS_LEARNING_RATES[name.lower()]
    built = fit(model, nn.CrossEntropyLoss(), optimizer, images, labels, epochs=2, **QUIET)
    assert by_name.history == built.history


def test_numpy_integers_are_integers():
    images, labels = lesson_like()
    history = fit(small_model(), nn.CrossEntropyLoss(), "adam", images, labels, epochs=np.int64(2), verbose=0,
                  seed=1, batch_size=np.int64(16))  # fmt: skip
    reference = fit(small_model(), nn.CrossEntropyLoss(), "adam", images, labels, epochs=2, **QUIET)
    assert history.history == reference.history
    assert type(history.params["epochs"]) is int and history.params["steps"] == 3


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda m, x, y: fit(m, nn.CrossEntropyLoss, "adam", x, y), "pass CrossEntropyLoss() (an instance"),
        (lambda m, x, y: fit(m, x, y, epochs=1), "then the images and labels"),
        (lambda m, x, y: fit(m, x.numpy(), y.numpy(), epochs=1), "fit(model, torch.nn.CrossEntropyLoss(), 'adam',"),
        (lambda m, x, y: fit(m, "sparse_categorical_crossentropy", "adam", x, y), "pass torch.nn.CrossEntropyLoss()"),
        (lambda m, x, y: fit(m, nn.CrossEntropyLoss(), "adamw", x, y), "unknown optimizer 'adamw'"),
        (lambda m, x, y: fit(m, nn.CrossEntropyLoss(), torch.optim.Adam, x, y), "Adam(model.parameters())"),
        (lambda m, x, y: fit(m, nn.CrossEntropyLoss(), torch.optim.Adam(models.cifar_model_small().parameters()),
                             x, y), "updates another model's weights"),
        (lambda m, x, y: fit(m, nn.CrossEntropyLoss(), "adam"), "train_images is None: pass the images"),
        (lambda m, x, y: fit(m, nn.CrossEntropyLoss(), "adam", x, y, epochs=1.5), "epochs must be a positive integer"),
    ],
    ids=["loss_class", "keras_order", "keras_order_numpy", "keras_loss_name", "unknown_optimizer", "optimizer_class",
         "another_model_s_optimizer", "no_images", "float_epochs"],
)  # fmt: skip
def test_keras_habits_get_one_line_naming_the_fix(call, words):
    images, labels = lesson_like()
    with pytest.raises(UserError) as caught:
        call(small_model(), images, labels)
    message = str(caught.value)
    assert words in message and "\n" not in message


def test_api_messages_speak_the_api():
    images, labels = lesson_like()
    model = small_model()
    from cnn_torch.keras_rules.optim import make_optimizer

    with pytest.raises(UserError, match=r"learning_rate must be positive, got 0: pass e\.g\. learning_rate=0\.001"):
        make_optimizer("sgd", model.parameters(), 0)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match=r"device='cuda' was asked for but CUDA is not .*: pass device='cpu'"):
            fit(model, nn.CrossEntropyLoss(), "adam", images, labels, device="cuda", **QUIET)
    from cnn_torch.machinery.watch import NonFiniteLoss

    assert "learning_rate=1e-4" in str(NonFiniteLoss(0, 2, [1, 2], None))


def test_validation_images_on_another_scale_warn_once():
    images, labels = lesson_like()
    with pytest.warns(InputWarning) as caught:
        fit(small_model(), nn.CrossEntropyLoss(), "adam", images.float() / 255.0, labels, epochs=2,
            validation_data=(images.float()[:8], labels[:8]), **QUIET)  # fmt: skip
    assert len(caught) == 1  # not one per epoch
    message = str(caught[0].message)
    assert "val_images has values up to 255" in message and "val_images = val_images / 255.0" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # uint8 training images and [0, 1] validation: the same scale
        fit(small_model(), nn.CrossEntropyLoss(), "adam", images, labels, epochs=1,
            validation_data=(images.float()[:8] / 255.0, labels[:8]), **QUIET)  # fmt: skip


def test_predict_on_unscaled_pixels_warns_and_keras_shaped_calls_work(capsys):
    images, labels = lesson_like()
    model = small_model()
    pixels = images.numpy().astype("float32")  # img_to_array's habit: 0-255 floats
    with pytest.warns(InputWarning, match=r"images = images / 255\.0"):
        predict(model, pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logits = predict(model, pixels / 255.0, verbose=0)
    assert torch.equal(probabilities(logits.numpy()), probabilities(logits))  # a NumPy array too
    loss, accuracy = evaluate(model, images, labels, verbose=0)
    assert capsys.readouterr().out == ""
    assert evaluate(model, images, labels, verbose=1) == (loss, accuracy)
    out = capsys.readouterr().out  # Keras's bar while it runs, then its last line (issue 27)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)  # Keras's bar has its colours
    assert "━" in plain and plain.rstrip().endswith(f" - accuracy: {accuracy:.4f} - loss: {loss:.4f}")
    with pytest.raises(UserError, match="verbose must be 0, 1, 2 or 'auto'"):
        evaluate(model, images, labels, verbose=3)


def test_after_ctrl_c_the_history_is_on_the_model():
    """In a notebook the learner's ``history = fit(...)`` is never assigned when Ctrl-C stops fit;
    ``model.history`` holds it, as Keras keeps it there."""
    images, labels = lesson_like()
    model = small_model()

    def press_ctrl_c(epoch, logs):  # a real SIGINT, as the notebook's interrupt button sends
        signal.raise_signal(signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        history = fit(model, nn.CrossEntropyLoss(), "adam", images, labels, epochs=5, on_epoch_end=press_ctrl_c,
                      validation_split=0.25, **QUIET)  # fmt: skip
    assert "history" not in locals()
    assert model.history.epoch == [0] and sorted(model.history.history) == [
        "accuracy", "loss", "val_accuracy", "val_loss"
    ]
