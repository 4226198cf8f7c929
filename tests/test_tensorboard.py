"""Keras's ``TensorBoard`` callback through ``fit``'s ``on_epoch_end``: the event files are read back
with TensorBoard's own reader and checked against the History, the optimizer and the weights;
the histogram names against the names Keras gives the lesson's (functional) models' weights;
the command line's ``--tensorboard``; and the one line when TensorBoard is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from torch import nn

from cnn_torch import TensorBoard, fit
from cnn_torch.errors import UserError
from cnn_torch.keras_rules.tensorboard import keras_weight_names
from cnn_torch.models import build_model

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
ROOT = Path(__file__).resolve().parents[1]


def read_events(run_dir: Path):
    reader = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0})
    reader.Reload()
    return reader


def scalars(reader, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in reader.Scalars(tag)]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Three epochs of cifar_model_small on 40 images, histograms every second epoch."""
    log_dir = tmp_path_factory.mktemp("logs")
    torch.manual_seed(0)
    model = build_model("cifar_model_small", num_classes=4)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(40) % 4
    optimizer = torch.optim.Adam(model.parameters(), lr=0.002)
    with TensorBoard(log_dir, histogram_freq=2, model=model, optimizer=optimizer) as tensorboard:
        history = fit(model, nn.CrossEntropyLoss(), optimizer, images, labels, epochs=3, batch_size=16,
                      validation_split=0.25, seed=0, verbose=0, on_epoch_end=tensorboard)  # fmt: skip
    return log_dir, model, history


def test_keras_s_layout_train_and_validation_runs(logged):
    log_dir, _, _ = logged
    assert sorted(path.name for path in log_dir.iterdir()) == ["train", "validation"]
    for run in ("train", "validation"):
        assert [path.name.startswith("events.out.tfevents.") for path in (log_dir / run).iterdir()] == [True]


def test_epoch_scalars_are_the_history(logged):
    log_dir, _, history = logged
    train, validation = read_events(log_dir / "train"), read_events(log_dir / "validation")
    assert sorted(train.Tags()["scalars"]) == ["epoch_accuracy", "epoch_learning_rate", "epoch_loss"]
    assert sorted(validation.Tags()["scalars"]) == [
        "epoch_accuracy", "epoch_loss", "evaluation_accuracy_vs_iterations", "evaluation_loss_vs_iterations",
    ]  # fmt: skip
    for key in ("loss", "accuracy"):  # float32 events hold the History's float32 numbers exactly
        assert scalars(train, f"epoch_{key}") == list(enumerate(history.history[key]))
        assert scalars(validation, f"epoch_{key}") == list(enumerate(history.history[f"val_{key}"]))
    assert scalars(train, "epoch_learning_rate") == [(epoch, np.float32(0.002)) for epoch in range(3)]
    steps = history.params["steps"]  # 30 training images in batches of 16: 2 optimizer steps per epoch
    assert steps == 2
    assert [step for step, _ in scalars(validation, "evaluation_loss_vs_iterations")] == [2, 4, 6]
    assert [value for _, value in scalars(validation, "evaluation_loss_vs_iterations")] == history.history["val_loss"]


def test_weight_histograms_every_histogram_freq_epochs(logged):
    log_dir, model, _ = logged
    train = read_events(log_dir / "train")
    names = [name for name, _ in keras_weight_names(model)]
    assert sorted(train.Tags()["histograms"]) == sorted(f"{name}/histogram" for name in names)
    for name, weight in keras_weight_names(model):
        events = train.Histograms(f"{name}/histogram")
        assert [event.step for event in events] == [0, 2]  # epochs 0 and 2 of 0, 1, 2
        last = events[-1].histogram_value  # epoch 2's: the weights the model ends with
        assert last.num == weight.numel()
        assert (last.min, last.max) == (weight.min().item(), weight.max().item())
        assert last.sum == pytest.approx(weight.double().sum().item(), rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("name", ["cifar_model_small", "cifar_model", "model_dropout", "model_intro"])
def test_histogram_names_are_keras_s(name):
    """The names Keras gives the weights of the lesson's functional model, ``keras.Model(inputs, outputs)``."""
    keras = pytest.importorskip("keras")
    from cnn_torch.parity.keras_compat import keras_model_like

    model = build_model(name, num_classes=10)
    sequential = keras_model_like(model)
    keras.backend.clear_session()  # Keras numbers its layers per session: conv2d, conv2d_1, ...
    inputs = keras.Input(sequential.input_shape[1:])
    outputs = inputs
    for layer in sequential.layers:
        config = {key: value for key, value in layer.get_config().items() if key != "name"}
        outputs = type(layer).from_config(config)(outputs)
    functional = keras.Model(inputs=inputs, outputs=outputs, name=name)
    keras_names = [weight.path for layer in functional.layers for weight in layer.weights]
    assert [name for name, _ in keras_weight_names(model)] == keras_names


def test_a_resumed_run_counts_the_steps_it_had_taken(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    images, labels = torch.rand(12, 1, 2, 2), torch.arange(12) % 2
    with TensorBoard(tmp_path, model=model, optimizer=optimizer, iterations=100) as tensorboard:
        fit(model, nn.CrossEntropyLoss(), optimizer, images, labels, epochs=1, batch_size=4,
            validation_data=(images, labels), verbose=0, on_epoch_end=tensorboard)  # fmt: skip
    validation = read_events(tmp_path / "validation")
    assert [step for step, _ in scalars(validation, "evaluation_accuracy_vs_iterations")] == [103]
    assert read_events(tmp_path / "train").Tags()["histograms"] == []  # histogram_freq=0, Keras's default: none


def test_without_the_package_one_line_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(UserError, match=r"needs the tensorboard package: pip install tensorboard"):
        TensorBoard("logs", model=nn.Linear(1, 1))


def test_cli_without_the_package_stops_before_any_data(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    result = run_cli("train", "--dataset", "shapes", "--tensorboard", "tb", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: TensorBoard logging needs the tensorboard package: pip install tensorboard")
    assert result.stderr.count("\n") == 1 and "Data:" not in result.stdout
    assert not (tmp_path / "runs").exists() and not (tmp_path / "tb").exists()
