"""``cnn_torch.EarlyStopping`` against the real ``keras.callbacks.EarlyStopping``, decision for decision.

Both are driven the way ``fit`` drives them: ``on_train_begin``, then after every epoch the
epoch's logs (Keras: ``on_epoch_end(epoch, logs)``; ours: ``update(epoch, logs, model)``)
until one asks to stop, then ``on_train_end`` (ours: ``finish``). The model's single weight is
set to the epoch's number before each epoch ends, so the weights left at the end name the
epoch they came from. Compared: the epochs run, ``stopped_epoch``, ``best_epoch``, ``best``,
``wait``, the final weights and every printed message.

The sequences are random but built to hit the edges: plateaus and exact ties, values exactly
``min_delta`` (in float64 and in float32) away from the best and one float32 step either side
of it, accuracies that are fractions c/n of a validation set, baselines equal to a value
of the sequence. Every value is a float32 number, as ``fit``'s logs are. Each setting runs
several sequences through ONE object of each kind, so the reset at the start of every fit
(Keras's ``on_train_begin``) is compared too.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from torch import nn

from cnn_torch import EarlyStopping, fit
from cnn_torch.checkpoints import load_checkpoint
from cnn_torch.errors import UserError

keras = pytest.importorskip("keras")
# Keras's set_weights/get_weights on the torch backend warn about NumPy 2's copy keyword, ~20 times a sequence
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
MONITORS = ("val_loss", "loss", "val_accuracy", "accuracy")
VALIDATION_SIZES = (9, 17, 100, 1000, 10_000)  # accuracies are c / n, computed in float32 as fit does


def f32(value: float) -> float:
    return float(np.float32(value))


# --- the two sides ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    epochs_run: int
    stopped_epoch: int
    best_epoch: int
    best: float | None
    wait: int
    final_weight: float
    printed: str


@pytest.fixture(scope="module")
def keras_model():
    """A built, compiled Keras model with the 'accuracy' metric: Keras's mode='auto' asks it which way is up."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse", metrics=["accuracy"])
    model.evaluate(np.zeros((1, 1)), np.zeros(1), verbose=0)
    return model


def run_keras(callback, model, monitor: str, values: list[float]) -> Outcome:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        callback.set_model(model)
        model.stop_training = False
        callback.on_train_begin()
        epochs_run = 0
        for epoch, value in enumerate(values):
            model.set_weights([np.full((1, 1), epoch, np.float32), np.zeros(1, np.float32)])
            callback.on_epoch_end(epoch, {monitor: value})
            epochs_run += 1
            if model.stop_training:
                break
        callback.on_train_end()
    best = None if callback.best is None else float(callback.best)
    return Outcome(epochs_run, callback.stopped_epoch, callback.best_epoch, best, callback.wait,
                   float(model.get_weights()[0][0, 0]), out.getvalue())  # fmt: skip


def run_ours(stopper: EarlyStopping, model: nn.Linear, monitor: str, values: list[float]) -> Outcome:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        stopper.on_train_begin()  # what fit does before its first epoch
        epochs_run = 0
        for epoch, value in enumerate(values):
            with torch.no_grad():
                model.weight.fill_(epoch)
            epochs_run += 1
            if stopper.update(epoch, {monitor: value}, model):
                break
        stopper.finish(model)
    return Outcome(epochs_run, stopper.stopped_epoch, stopper.best_epoch, stopper.best, stopper.wait,
                   float(model.weight.item()), out.getvalue())  # fmt: skip


# --- random sequences that hit the edges --------------------------------------------------------


def plateau_sequence(rng: np.random.Generator, length: int, accuracy: bool) -> list[float]:
    """A noisy trend with flat stretches, exact repeats of earlier values and sudden jumps."""
    value = rng.uniform(0.05, 0.6) if accuracy else rng.uniform(0.3, 2.5)
    values = []
    for _ in range(length):
        draw = rng.random()
        if values and draw < 0.3:
            value = values[-1]  # a plateau: exactly the same number
        elif values and draw < 0.45:
            value = values[rng.integers(len(values))]  # an exact tie with an earlier epoch
        else:
            step = rng.normal(0.01 if accuracy else -0.02, 0.03)
            value = min(max(value + step, 0.0), 1.0) if accuracy else max(value + step, 1e-4)
        values.append(f32(value))
    return values


def fraction_sequence(rng: np.random.Generator, length: int) -> list[float]:
    """Accuracies c/n on a validation set of n images: one image more or less per epoch, or the same."""
    n = int(rng.choice(VALIDATION_SIZES))
    correct = int(rng.integers(0, n + 1))
    values = []
    for _ in range(length):
        correct = int(np.clip(correct + rng.choice([-2, -1, 0, 0, 1, 1, 2, 3]) * max(1, n // 100), 0, n))
        values.append(float(np.float32(correct) / np.float32(n)))  # torch's (correct / seen).item()
    return values


def boundary_sequence(rng: np.random.Generator, length: int, mode: str, min_delta: float) -> list[float]:
    """Each value exactly |min_delta| better than the last (worked out in float64 or in float32),
    or one float32 step either side of that, or a tie: the cases a float64 comparison gets wrong."""
    direction = -1.0 if mode == "min" else 1.0
    value = f32(rng.uniform(0.2, 1.5))
    values = [value]
    for _ in range(length - 1):
        target = values[-1] + direction * abs(min_delta)
        candidates = [f32(target), float(np.float32(values[-1]) + np.float32(direction * abs(min_delta))),
                      float(np.nextafter(np.float32(target), np.float32(np.inf))),
                      float(np.nextafter(np.float32(target), np.float32(-np.inf))), values[-1]]  # fmt: skip
        values.append(candidates[rng.integers(len(candidates))])
    return values


@dataclass(frozen=True)
class Setting:
    monitor: str
    mode: str
    min_delta: float
    patience: int
    baseline: float | None
    restore_best_weights: bool
    start_from_epoch: int
    verbose: int

    def keras(self):
        return keras.callbacks.EarlyStopping(
            monitor=self.monitor, min_delta=self.min_delta, patience=self.patience, verbose=self.verbose,
            mode=self.mode, baseline=self.baseline, restore_best_weights=self.restore_best_weights,
            start_from_epoch=self.start_from_epoch,
        )  # fmt: skip

    def ours(self) -> EarlyStopping:
        return EarlyStopping(
            monitor=self.monitor, min_delta=self.min_delta, patience=self.patience, verbose=self.verbose,
            mode=self.mode, baseline=self.baseline, restore_best_weights=self.restore_best_weights,
            start_from_epoch=self.start_from_epoch,
        )  # fmt: skip


def random_setting(rng: np.random.Generator, values: list[float]) -> Setting:
    monitor = str(rng.choice(MONITORS))
    n = int(rng.choice(VALIDATION_SIZES))
    min_delta = float(rng.choice([0.0, 0.0, 0.01, -0.01, 0.001, 0.005, 0.1, 1 / n, -1 / n]))
    baseline_choices = [None, None, values[int(rng.integers(len(values)))],
                        f32(values[0] + rng.normal(0, 0.05)), float(rng.uniform(0, 2))]  # fmt: skip
    baseline = baseline_choices[int(rng.integers(len(baseline_choices)))]
    return Setting(
        monitor=monitor, mode=str(rng.choice(["auto", "auto", "min", "max"])), min_delta=min_delta,
        patience=int(rng.choice([0, 1, 2, 3, 5])), baseline=baseline,
        restore_best_weights=bool(rng.random() < 0.5), start_from_epoch=int(rng.choice([0, 0, 0, 1, 2, 4])),
        verbose=int(rng.random() < 0.5),
    )  # fmt: skip


def random_cases(seed: int, count: int):
    """``count`` settings, each with SEQUENCES_PER_SETTING sequences run through one object of each kind."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        length = int(rng.integers(1, 16))
        kind = rng.integers(3)
        accuracy = bool(rng.random() < 0.5)
        first = fraction_sequence(rng, length) if kind == 1 else plateau_sequence(rng, length, accuracy)
        setting = random_setting(rng, first)
        mode = setting.mode if setting.mode != "auto" else ("min" if "loss" in setting.monitor else "max")
        sequences = [first]
        for _ in range(SEQUENCES_PER_SETTING - 1):
            length = int(rng.integers(1, 16))
            kind = rng.integers(3)
            if kind == 0:
                sequences.append(plateau_sequence(rng, length, "accuracy" in setting.monitor))
            elif kind == 1:
                sequences.append(fraction_sequence(rng, length))
            else:
                sequences.append(boundary_sequence(rng, length, mode, setting.min_delta or 0.01))
        yield setting, sequences


SEQUENCES_PER_SETTING = 4


def count_mismatches(keras_model, seed: int, settings: int) -> tuple[int, int, list]:
    """Run ``settings`` random settings (x SEQUENCES_PER_SETTING sequences); returns
    (sequences run, mismatches, the first few mismatches)."""
    model = nn.Linear(1, 1, bias=False)
    runs, mismatches, examples = 0, 0, []
    for setting, sequences in random_cases(seed, settings):
        theirs, ours = setting.keras(), setting.ours()  # one object each for all the sequences: fit after fit
        for values in sequences:
            expected = run_keras(theirs, keras_model, setting.monitor, values)
            got = run_ours(ours, model, setting.monitor, values)
            runs += 1
            if got != expected:
                mismatches += 1
                if len(examples) < 5:
                    examples.append((setting, values, expected, got))
    return runs, mismatches, examples


# --- the differential tests ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_random_sequences_decide_exactly_as_keras(keras_model, seed):
    runs, mismatches, examples = count_mismatches(keras_model, seed, settings=600)
    assert runs == 2400
    assert mismatches == 0, examples


@pytest.mark.parametrize("patience", [0, 1, 3])
@pytest.mark.parametrize("min_delta", [0.01, 0.001, 1 / 17, 1 / 100])
@pytest.mark.parametrize("monitor", MONITORS)
def test_every_value_on_the_min_delta_boundary_as_keras(keras_model, monitor, min_delta, patience):
    """Steps of exactly min_delta, and one float32 step either side: where float64 and float32 disagree."""
    rng = np.random.default_rng([MONITORS.index(monitor), round(min_delta * 1e6), patience])
    mode = "min" if "loss" in monitor else "max"
    setting = Setting(monitor, "auto", min_delta, patience, None, True, 0, 1)
    theirs, ours, model = setting.keras(), setting.ours(), nn.Linear(1, 1, bias=False)
    for _ in range(50):
        values = boundary_sequence(rng, 10, mode, min_delta)
        assert run_ours(ours, model, monitor, values) == run_keras(theirs, keras_model, monitor, values), values


def test_the_issue_s_example_is_no_improvement_in_float32(keras_model):
    # 0.9971708655357361 + 0.01 rounds to the float32 1.0071709156036377: Keras sees no improvement
    values = [1.0071709156036377, 0.9971708655357361, 0.99, 0.985, 0.98, 0.975]
    setting = Setting("val_loss", "auto", 0.01, 0, None, False, 0, 1)
    expected = run_keras(setting.keras(), keras_model, "val_loss", values)
    assert (expected.epochs_run, expected.stopped_epoch, expected.printed) == (2, 1, "Epoch 2: early stopping\n")
    assert run_ours(setting.ours(), nn.Linear(1, 1, bias=False), "val_loss", values) == expected


def test_one_more_correct_image_of_100_with_min_delta_001(keras_model):
    """1/100 is exactly min_delta in float64 but not in float32: half a float32 step decides."""
    model = nn.Linear(1, 1, bias=False)
    for correct in range(1, 100):
        values = [f32(correct / 100), float(np.float32(correct + 1) / np.float32(100))]
        setting = Setting("val_accuracy", "auto", 0.01, 0, None, True, 0, 1)
        assert run_ours(setting.ours(), model, "val_accuracy", values) == run_keras(
            setting.keras(), keras_model, "val_accuracy", values
        ), correct


def test_messages_are_keras_s(keras_model):
    setting = Setting("val_loss", "auto", 0.0, 1, None, True, 0, 1)
    values = [1.0, 0.5, 0.75, 0.8]
    expected = run_keras(setting.keras(), keras_model, "val_loss", values)
    assert expected.printed == "Epoch 3: early stopping\nRestoring model weights from the end of the best epoch: 2.\n"
    assert run_ours(setting.ours(), nn.Linear(1, 1, bias=False), "val_loss", values) == expected


# --- inside fit ------------------------------------------------------------------------------------


def tiny_problem(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(24, 1, 4, 4, generator=generator)
    labels = (images.flatten(1) @ torch.randn(16, 3, generator=generator)).argmax(dim=1)  # a linear rule
    return images, labels


def train(stopper: EarlyStopping, seed: int = 0, learning_rate: float = 5.0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    images, labels = tiny_problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    history = fit(model, nn.CrossEntropyLoss(), optimizer, images, labels, epochs=12, batch_size=8,
                  validation_split=0.25, seed=seed, verbose=0, early_stopping=stopper)  # fmt: skip
    return model, history


def test_one_object_in_two_fits_starts_afresh_each_time():
    """Keras resets EarlyStopping in on_train_begin: the second fit runs as a new object would.
    (Carried over, the first fit's low best loss would stop the second, fresh model at epoch 2.)"""
    shared = EarlyStopping(monitor="loss", patience=1)
    _, first = train(shared, seed=0, learning_rate=0.5)
    assert shared.best == min(first.history["loss"])
    _, second = train(shared, seed=1, learning_rate=0.5)
    fresh = EarlyStopping(monitor="loss", patience=1)
    _, fresh_history = train(fresh, seed=1, learning_rate=0.5)
    assert second.epoch == fresh_history.epoch and len(second.epoch) > 2
    assert max(second.history["loss"][:2]) > min(first.history["loss"])  # what a carried-over best would see
    assert (shared.stopped_epoch, shared.best_epoch, shared.wait, shared.best) == (
        fresh.stopped_epoch, fresh.best_epoch, fresh.wait, fresh.best)  # fmt: skip


def test_restored_weights_are_the_best_epoch_s_and_the_messages_say_which(capsys):
    stopper = EarlyStopping(monitor="val_loss", patience=2, verbose=1, restore_best_weights=True)
    model, history = train(stopper)
    printed = capsys.readouterr().out
    best = min(range(len(history.epoch)), key=history.history["val_loss"].__getitem__)
    assert stopper.best_epoch == stopper.restored_epoch == best
    if stopper.stopped_epoch:
        assert f"Epoch {stopper.stopped_epoch + 1}: early stopping\n" in printed
    assert f"Restoring model weights from the end of the best epoch: {best + 1}.\n" in printed
    images, labels = tiny_problem()
    with torch.no_grad():
        val_loss = nn.functional.cross_entropy(model(images[18:]), labels[18:]).item()
    assert val_loss == pytest.approx(history.history["val_loss"][best], rel=1e-6)


def test_history_params_keep_the_verbose_the_caller_passed():
    stopper = EarlyStopping(monitor="loss", patience=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    images, labels = tiny_problem()
    with contextlib.redirect_stdout(io.StringIO()):
        history = fit(model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1), images, labels,
                      epochs=1, verbose="auto", early_stopping=stopper)  # fmt: skip
    assert history.params == {"verbose": "auto", "epochs": 1, "steps": 1}  # as keras.Model.fit's History


@pytest.mark.parametrize(
    "kwargs, words",
    [({"mode": "maximum"}, "mode must be 'auto', 'min' or 'max'"),
     ({"monitor": "val_f1"}, "pass mode='min' or mode='max'")],
)  # fmt: skip
def test_a_mode_keras_cannot_infer_is_one_line(kwargs, words):
    with pytest.raises(UserError, match=words):
        EarlyStopping(**kwargs)


# --- on the command line -------------------------------------------------------------------------

TRAIN = ["--dataset", "shapes", "--limit", "300", "--seed", "0", "--quiet"]


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Two runs of train.py's main(): one that must stop at epoch 2 (nothing beats epoch 1 by 10), one
    with --baseline and --start-from-epoch whose stop is checked against Keras replaying its history."""
    root = tmp_path_factory.mktemp("cli_stops")
    flags = {
        "min_delta": ["--epochs", "3", "--patience", "0", "--min-delta", "10", "--restore-best-weights"],
        "baseline": ["--epochs", "4", "--patience", "1", "--baseline", "0.5", "--start-from-epoch", "1",
                     "--restore-best-weights", "--monitor", "val_accuracy"],
    }  # fmt: skip
    results = {}
    for name, extra in flags.items():
        result = run_cli("train", *TRAIN, *extra, "--out", root / name, cwd=root)
        assert result.returncode == 0, result.stderr + result.stdout
        results[name] = (root / name, result.stdout)
    return results


def test_cli_says_it_stopped_and_model_pt_holds_the_restored_epoch(cli_runs):
    run_dir, stdout = cli_runs["min_delta"]
    # Keras's messages, printed by the CLI even with --quiet
    assert "Epoch 2: early stopping\nRestoring model weights from the end of the best epoch: 1.\n" in stdout
    assert "Last epoch (2)" in stdout and "Restored epoch (1), in model.pt" in stdout
    history = json.loads((run_dir / "history.json").read_text())["history"]
    assert len(history["val_loss"]) == 2
    assert load_checkpoint(run_dir / "model.pt")["epoch"] == 1
    # evaluate.py reports the weights model.pt holds: epoch 1's, with epoch 1's validation numbers
    result = run_cli("evaluate", "--checkpoint", run_dir / "model.pt")
    assert result.returncode == 0, result.stderr
    assert "(cifar_model_small, 1 epoch(s) trained)" in result.stdout
    loss = float(re.search(r"^loss: (\d+\.\d{4}) - accuracy", result.stdout, re.MULTILINE).group(1))
    assert abs(history["val_loss"][0] - history["val_loss"][1]) > 2e-4  # the two epochs can be told apart
    assert loss == pytest.approx(history["val_loss"][0], abs=6e-5)


def test_cli_baseline_and_start_from_epoch_stop_where_keras_would(cli_runs, keras_model):
    run_dir, stdout = cli_runs["baseline"]
    record = json.loads((run_dir / "run.json").read_text())["flags"]
    assert (record["baseline"], record["start_from_epoch"]) == (0.5, 1)
    values = json.loads((run_dir / "history.json").read_text())["history"]["val_accuracy"]
    callback = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=1, verbose=1, baseline=0.5,
                                             restore_best_weights=True, start_from_epoch=1)  # fmt: skip
    # past the run's last epoch, accuracies of 0 (never better): Keras would stop there at the latest
    expected = run_keras(callback, keras_model, "val_accuracy", values + [0.0] * (4 - len(values)))
    assert expected.epochs_run == len(values)  # Keras, given the same numbers, stops where the run stopped
    assert expected.printed in stdout
    assert load_checkpoint(run_dir / "model.pt")["epoch"] == expected.best_epoch + 1


@pytest.mark.parametrize(
    "flags, words",
    [(["--baseline", "0.5"], "--baseline tunes early stopping, which is off: add --patience N"),
     (["--start-from-epoch", "2", "--baseline", "1"], "--baseline and --start-from-epoch tune early stopping"),
     (["--patience", "2", "--start-from-epoch", "-1"], "--start-from-epoch must be 0 or more")],
)  # fmt: skip
def test_cli_early_stopping_flags_are_checked_before_any_data(tmp_path, flags, words):
    result = run_cli("train", *TRAIN, *flags, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert words in result.stderr and "Data:" not in result.stdout
