"""Early stopping and best-checkpoint semantics (Keras's ``EarlyStopping`` and
``ModelCheckpoint(save_best_only=True)``) on scripted validation values, then the same
rules and the checkpoint files checked on real runs of ``scripts/train.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from torch import nn

from cnn_torch import data
from cnn_torch.checkpoints import load_checkpoint, make_checkpoint, model_from_checkpoint, save_checkpoint
from cnn_torch.cli.runs import RunRecorder
from cnn_torch.errors import UserError
from cnn_torch.evaluation import evaluate
from cnn_torch.history import History
from cnn_torch.keras_rules.stopping import EarlyStopping, Improvement
from cnn_torch.models import build_model

ROOT = Path(__file__).resolve().parents[1]


def improvements(improvement: Improvement, values: list[float]) -> list[bool]:
    return [improvement.update(epoch, {improvement.monitor: value}) for epoch, value in enumerate(values)]


def run_scripted(stopper: EarlyStopping, monitor: str, values: list[float]) -> tuple[int | None, int]:
    """Feed ``values`` one epoch at a time, as fit does; the model's weight is the number of the
    epoch that produced it. Returns (epoch it stopped at or None, epoch of the final weights)."""
    model = nn.Linear(1, 1, bias=False)
    stopped_at = None
    for epoch, value in enumerate(values):
        with torch.no_grad():
            model.weight.fill_(epoch)  # "training" epoch e leaves weights that say e
        if stopper.update(epoch, {monitor: value}, model):
            stopped_at = epoch
            break
    stopper.finish(model)  # Keras: on_train_end
    return stopped_at, int(model.weight.item())


# --- the improvement test (ModelCheckpoint's and EarlyStopping's) ---------------------------


def test_an_equal_value_is_not_an_improvement():
    improvement = Improvement("val_loss")
    assert improvements(improvement, [1.0, 1.0, 0.5, 0.5, 0.75]) == [True, False, True, False, False]
    assert (improvement.best, improvement.best_epoch) == (0.5, 2)


def test_accuracies_are_maximised_and_losses_minimised():
    accuracy = Improvement("val_accuracy")
    assert improvements(accuracy, [0.5, 0.5, 0.75, 0.25]) == [True, False, True, False]
    assert (accuracy.best, accuracy.best_epoch) == (0.75, 2)
    assert improvements(Improvement("accuracy"), [0.5, 0.25]) == [True, False]
    assert improvements(Improvement("loss"), [0.5, 0.25]) == [True, True]


@pytest.mark.parametrize("min_delta", [0.25, -0.25])  # Keras uses |min_delta|
def test_min_delta_must_be_beaten_strictly(min_delta):
    # values are exact in binary, so "equal to best - min_delta" really is equal
    assert improvements(Improvement("val_loss", min_delta), [1.0, 0.75, 0.5, 0.25]) == [True, False, True, False]
    assert improvements(Improvement("val_accuracy", min_delta), [0.25, 0.5, 0.75]) == [True, False, True]


def test_monitoring_a_missing_metric_names_the_available_ones():
    with pytest.raises(UserError, match=r"cannot monitor 'val_loss'.*\['accuracy', 'loss'\]"):
        Improvement("val_loss").update(0, {"loss": 1.0, "accuracy": 0.5})


# --- EarlyStopping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, patience, stopped_at",
    [
        ([1.0, 0.9, 0.95, 0.92, 0.91, 0.5], 2, 3),  # two epochs without improvement after epoch 1
        ([1.0, 0.9, 0.95, 0.5], 0, 2),  # patience 0: the first epoch without improvement
        ([1.0, 1.1, 1.2, 0.9, 1.0, 1.0, 1.0, 0.1], 3, 6),  # an improvement resets the count
        ([1.0, 1.0, 1.0, 1.0], 2, 2),  # equal values do not reset it
        ([1.0, 0.9, 0.8, 0.7], 1, None),  # always improving: never stops
    ],
)
def test_patience(values, patience, stopped_at):
    stopper = EarlyStopping("val_loss", patience=patience)
    assert run_scripted(stopper, "val_loss", values)[0] == stopped_at
    assert stopper.stopped_epoch == (stopped_at or 0)  # Keras's stopped_epoch: 0 when it did not stop


def test_min_delta_in_early_stopping():
    # 0.875 and 0.75 are not more than 0.25 below the best (1.0): no improvement, so it stops
    stopper = EarlyStopping("val_loss", patience=2, min_delta=0.25)
    assert run_scripted(stopper, "val_loss", [1.0, 0.875, 0.75, 0.0]) == (2, 2)


@pytest.mark.parametrize("restore, final_weights", [(True, 1), (False, 3)])
def test_best_weights_are_restored_at_the_end_even_without_stopping(restore, final_weights):
    stopper = EarlyStopping("val_loss", patience=10, restore_best_weights=restore)
    assert run_scripted(stopper, "val_loss", [1.0, 0.5, 0.75, 0.8]) == (None, final_weights)


def test_val_accuracy_is_maximised_and_the_first_of_equal_bests_is_restored():
    stopper = EarlyStopping("val_accuracy", patience=2, restore_best_weights=True)
    assert run_scripted(stopper, "val_accuracy", [0.5, 0.7, 0.7, 0.6, 0.9]) == (3, 1)


def test_restored_weights_after_an_early_stop():
    stopper = EarlyStopping("val_loss", patience=1, restore_best_weights=True)
    assert run_scripted(stopper, "val_loss", [1.0, 0.25, 0.5, 0.0]) == (2, 1)


# --- best.pt / last.pt from RunRecorder (the CLI's on_epoch_end) -----------------------------


@pytest.mark.parametrize(
    "monitor, values, best_epoch",
    [
        ("val_loss", [0.9, 0.8, 0.8, 0.85, 0.8], 1),
        ("val_accuracy", [0.3, 0.6, 0.6, 0.5, 0.6], 1),
        ("val_accuracy", [0.3, 0.6, 0.6, 0.5, 0.7], 4),
    ],
)
def test_best_checkpoint_is_saved_on_strict_improvement_only(tmp_path, monitor, values, best_epoch):
    model = build_model("model_intro", num_classes=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    history = History()
    recorder = RunRecorder(tmp_path, model, optimizer, history, ["a", "b", "c"], seed=0, monitor=monitor)
    other = "val_accuracy" if monitor == "val_loss" else "val_loss"
    for epoch, value in enumerate(values):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.fill_(epoch)
        logs = {"loss": 1.0, "accuracy": 0.5, monitor: value, other: 0.5}
        history.append(epoch, logs)  # fit appends to the History before calling the hook
        recorder(epoch, logs)
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == best_epoch + 1  # checkpoints count finished epochs (Keras's {epoch})
    assert best["history"]["epoch"] == list(range(best_epoch + 1))
    assert all(torch.all(tensor == best_epoch) for tensor in best["state_dict"].values())
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == len(values)
    assert {"optimizer", "rng"} <= set(last)  # last.pt is resumable, best.pt is not
    assert "optimizer" not in best
    assert json.loads((tmp_path / "history.json").read_text())["history"][monitor] == values


# --- checkpoint files --------------------------------------------------------------------------


def test_a_checkpoint_rebuilds_the_model_from_the_file_alone(tmp_path):
    torch.manual_seed(0)
    model = build_model("cifar_model_small", num_classes=4, input_shape=(3, 40, 36)).eval()
    images = torch.rand(5, 3, 40, 36)
    with torch.no_grad():
        expected = model(images)
    save_checkpoint(
        tmp_path / "model.pt", make_checkpoint(model, class_names=list("abcd"), epoch=2, history=History(), seed=7)
    )
    del model
    checkpoint = load_checkpoint(tmp_path / "model.pt")
    rebuilt = model_from_checkpoint(checkpoint).eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(images), expected)
    assert checkpoint["input_shape"] == [3, 40, 36]
    assert checkpoint["class_names"] == list("abcd")
    assert checkpoint["normalisation"]["scale"] == pytest.approx(1 / 255)


# --- real runs of scripts/train.py -----------------------------------------------------------


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Two tiny runs of train.py's main(), one per monitor."""
    root = tmp_path_factory.mktemp("cli_runs")
    runs = {}
    for monitor, extra in (("val_loss", []), ("val_accuracy", ["--monitor", "val_accuracy"])):
        out = root / monitor
        result = run_cli("train", "--dataset", "shapes", "--limit", "300", "--epochs", "3", "--seed", "0", "--quiet",
                         "--out", out, "--fig-dir", out, *extra, cwd=root)  # fmt: skip
        assert result.returncode == 0, result.stderr + result.stdout
        runs[monitor] = out
    return runs


@pytest.mark.parametrize("monitor, pick", [("val_loss", min), ("val_accuracy", max)])
def test_cli_best_checkpoint_is_the_best_epoch_of_the_history(cli_runs, monitor, pick):
    run_dir = cli_runs[monitor]
    values = json.loads((run_dir / "history.json").read_text())["history"][monitor]
    best_epoch = pick(range(len(values)), key=values.__getitem__)  # the first best: ties are no improvement
    best = load_checkpoint(run_dir / "best.pt")
    assert best["epoch"] == 1 + best_epoch
    # and its weights are that epoch's: they give the validation loss the history recorded
    lesson = data.load_data("shapes", limit=300, seed=0)  # the run validated on the test split
    val_loss, val_accuracy = evaluate(model_from_checkpoint(best), lesson.test_images, lesson.test_labels)
    history = json.loads((run_dir / "history.json").read_text())["history"]
    assert val_loss == pytest.approx(history["val_loss"][best_epoch], rel=1e-5)
    assert val_accuracy == pytest.approx(history["val_accuracy"][best_epoch])


@pytest.mark.parametrize("name", ["model.pt", "best.pt", "last.pt"])
def test_every_cli_checkpoint_loads_with_weights_only(cli_runs, name):
    for run_dir in cli_runs.values():
        checkpoint = torch.load(run_dir / name, map_location="cpu", weights_only=True)
        assert checkpoint["format"] == "cnn-torch-checkpoint"
        assert checkpoint["epoch"] in ((1, 2, 3) if name == "best.pt" else (3,))
        assert ("optimizer" in checkpoint) == (name == "last.pt")  # only last.pt is resumable


def test_cli_model_pt_holds_the_final_weights(cli_runs):
    run_dir = cli_runs["val_loss"]
    final = load_checkpoint(run_dir / "model.pt")
    last = load_checkpoint(run_dir / "last.pt")
    assert final["epoch"] == last["epoch"] == 3
    for key, tensor in final["state_dict"].items():
        assert torch.equal(tensor, last["state_dict"][key]), key
