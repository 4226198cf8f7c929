"""Issue 27, item 3: Keras's spellings get Keras's result, or one line that names the fix.

- A lesson model's ``compile(optimizer=...)``, ``fit``, ``evaluate``, ``predict`` and ``summary``
  answer in one line with the cnn-torch call; a plain ``compile()`` stays torch's.
- ``fit`` takes ``x=``/``y=``, ``callbacks=[...]`` and the splits of ``prepare_datasets``.
- ``fit`` warns once when the labels use fewer classes than the model has outputs.
- ``evaluate`` prints Keras's line by default; ``predict``'s warning points at the caller's line.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from cnn_torch import EarlyStopping, evaluate, fit, predict
from cnn_torch.errors import UserError
from cnn_torch.machinery.checks import ClassCountWarning, InputWarning
from cnn_torch.models import build_model
from cnn_torch.workshop import Split

NUM_CLASSES = 3


def tiny_model(num_classes: int = NUM_CLASSES):
    return build_model("model_intro", num_classes=num_classes, input_shape=(3, 8, 8))


def tiny_data(count: int = 12, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 3, 8, 8), dtype=torch.uint8, generator=generator)
    return images, torch.arange(count) % NUM_CLASSES


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- 1. the model's Keras methods ------------------------------------------------------------------


def test_keras_compile_answers_with_the_fit_call():
    model = tiny_model()
    with pytest.raises(UserError) as error:
        model.compile(optimizer="adam", loss=nn.CrossEntropyLoss(), metrics=["accuracy"])
    assert "fit(model, torch.nn.CrossEntropyLoss(), 'adam', train_images, train_labels" in one_line(error)
    with pytest.raises(UserError):
        model.compile("adam")  # Keras's positional optimizer


def test_plain_compile_is_still_torch_compile(monkeypatch):
    """nn.Module.compile hands its arguments to torch.compile; nothing of that changes."""
    seen = {}
    monkeypatch.setattr(torch, "compile", lambda function, *args, **kwargs: seen.update(kwargs) or function)
    model = tiny_model()
    assert model.compile(mode="reduce-overhead") is None
    assert seen == {"mode": "reduce-overhead"}


MODEL_METHODS = [("fit", "fit(model,"), ("evaluate", "evaluate(model,"), ("predict", "predict(model,"),
                 ("summary", "models.summary(model)")]  # fmt: skip


@pytest.mark.parametrize("method, call", MODEL_METHODS)
def test_keras_model_methods_name_the_function(method, call):
    images, labels = tiny_data()
    with pytest.raises(UserError) as error:
        getattr(tiny_model(), method)(images, labels) if method != "summary" else tiny_model().summary()
    assert call in one_line(error)


# --- 2. Keras's names for fit's arguments ----------------------------------------------------------


def test_x_and_y_train_as_the_positional_images_and_labels():
    images, labels = tiny_data()
    histories = []
    for kwargs in ({"train_images": images, "train_labels": labels}, {"x": images, "y": labels}):
        torch.manual_seed(0)
        model = tiny_model()
        histories.append(fit(model, nn.CrossEntropyLoss(), "adam", epochs=2, seed=1, verbose=0, **kwargs).history)
    assert histories[0] == histories[1]


def test_images_given_twice_get_one_line():
    images, labels = tiny_data()
    with pytest.raises(UserError) as error:
        fit(tiny_model(), nn.CrossEntropyLoss(), "adam", images, labels, x=images, verbose=0)
    assert "given twice" in one_line(error)


def test_callbacks_become_early_stopping_and_the_epoch_hooks_in_order():
    images, labels = tiny_data()
    calls = []
    stopper = EarlyStopping(monitor="loss", patience=0, min_delta=100.0)  # no epoch improves by 100: stops
    history = fit(tiny_model(), nn.CrossEntropyLoss(), "adam", images, labels, epochs=5, verbose=0,
                  on_epoch_end=lambda epoch, logs: calls.append(("hook", epoch)),
                  callbacks=[lambda epoch, logs: calls.append(("first", epoch)), stopper,
                             lambda epoch, logs: calls.append(("second", epoch))])  # fmt: skip
    assert history.epoch == [0, 1]  # Keras: the first epoch sets the best, the second fails to improve
    assert calls == [("hook", 0), ("first", 0), ("second", 0), ("hook", 1), ("first", 1), ("second", 1)]


def test_a_keras_callback_gets_one_line():
    ModelCheckpoint = type("ModelCheckpoint", (), {"__module__": "keras.src.callbacks.model_checkpoint"})
    images, labels = tiny_data()
    with pytest.raises(UserError) as error:
        fit(tiny_model(), nn.CrossEntropyLoss(), "adam", images, labels, callbacks=[ModelCheckpoint()], verbose=0)
    assert "ModelCheckpoint is a Keras callback" in one_line(error)
    with pytest.raises(UserError) as error:
        fit(tiny_model(), nn.CrossEntropyLoss(), "adam", images, labels, callbacks=["stop"], verbose=0)
    assert "not callable" in one_line(error)


def test_validation_freq_other_than_one_gets_one_line():
    images, labels = tiny_data()
    with pytest.raises(UserError) as error:
        fit(tiny_model(), nn.CrossEntropyLoss(), "adam", images, labels, validation_freq=2, verbose=0)
    assert "validation_freq" in one_line(error)


# --- 3. the splits of prepare_datasets ---------------------------------------------------------------


def test_fit_takes_the_lesson_s_datasets():
    images, labels = tiny_data(18)
    train_ds = Split(images[:12], labels[:12], ["a", "b", "c"], "here")
    val_ds = Split(images[12:], labels[12:], ["a", "b", "c"], "here")
    torch.manual_seed(0)
    from_splits = fit(tiny_model(), nn.CrossEntropyLoss(), "adam", x=train_ds, validation_data=val_ds,
                      epochs=2, seed=1, verbose=0)  # fmt: skip
    torch.manual_seed(0)
    from_tensors = fit(tiny_model(), nn.CrossEntropyLoss(), "adam", images[:12], labels[:12],
                       validation_data=(images[12:], labels[12:]), epochs=2, seed=1, verbose=0)  # fmt: skip
    assert from_splits.history == from_tensors.history
    assert "val_loss" in from_splits.history
    with pytest.raises(UserError) as error:
        fit(tiny_model(), nn.CrossEntropyLoss(), "adam", train_ds, labels[:12], verbose=0)
    assert "already holds its labels" in one_line(error)


# --- 4. a model with more outputs than the labels use -------------------------------------------------


def test_fewer_classes_than_outputs_warns_once_at_the_callers_line():
    images, labels = tiny_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tiny_model(num_classes=10), nn.CrossEntropyLoss(), "adam", images, labels, epochs=2, verbose=0)
    class_warnings = [w for w in caught if issubclass(w.category, ClassCountWarning)]
    assert len(class_warnings) == 1
    assert class_warnings[0].filename == __file__
    assert "use 3 classes but the model has 10 outputs" in str(class_warnings[0].message)
    assert "num_classes=3" in str(class_warnings[0].message)


def test_a_class_missing_from_training_but_present_in_validation_is_no_warning():
    images, labels = tiny_data()
    train_labels = labels.clamp(max=1)  # classes 0 and 1 only
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClassCountWarning)
        fit(tiny_model(), nn.CrossEntropyLoss(), "adam", images, train_labels,
            validation_data=(images, labels), verbose=0)  # fmt: skip


# --- 5. evaluate's line and predict's warning -----------------------------------------------------------


def test_evaluate_prints_keras_line_by_default(capsys):
    images, labels = tiny_data(40)
    loss, accuracy = evaluate(tiny_model(), images, labels)  # not a terminal: "auto" is verbose=2
    line = capsys.readouterr().out.strip()
    assert line.startswith("2/2 - ") and "/step - " in line
    assert line.endswith(f"accuracy: {accuracy:.4f} - loss: {loss:.4f}")


def test_evaluate_verbose_1_draws_the_bar_and_0_is_silent(capsys):
    images, labels = tiny_data(40)
    evaluate(tiny_model(), images, labels, verbose=1)
    out = capsys.readouterr().out
    assert "2/2" in out and "━" in out and "accuracy: " in out
    evaluate(tiny_model(), images, labels, verbose=0)
    assert capsys.readouterr().out == ""


def test_fit_validates_silently(capsys):
    images, labels = tiny_data()
    fit(tiny_model(), nn.CrossEntropyLoss(), "adam", images, labels, validation_data=(images, labels), verbose=0)
    assert capsys.readouterr().out == ""


def test_predict_s_warning_points_at_the_caller():
    images, _ = tiny_data()
    with pytest.warns(InputWarning) as caught:
        predict(tiny_model(), images.float())
    assert caught[0].filename == __file__
