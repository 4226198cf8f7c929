"""What ``fit`` prints, against what Keras 3 prints.

1. Character for character: Keras's own ``ProgbarLogger`` and our ``EpochProgress`` are fed
   the same steps, logs and clock readings (a fake clock in both modules), for verbose 1 and
   2, one epoch and several, 1 to 50,000 steps, times from microseconds to hours, numbers
   that Keras shows in scientific notation. Keras's backspaces are dropped before comparing
   (it sends them before its carriage return; the carriage return alone does the work).
2. A real ``keras.Model.fit`` on the torch backend next to our ``fit``: the same lines with
   the times and the numbers masked.
3. 80 columns: the running bar keeps the running loss in view and never wraps; the epoch's
   line wraps between numbers; through ``scripts/train.py`` on a pseudo-terminal.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_in_terminal
from torch import nn

from cnn_torch import fit
from cnn_torch.machinery import progress
from cnn_torch.machinery.progress import EpochProgress

keras = pytest.importorskip("keras")
keras_progbar = pytest.importorskip("keras.src.utils.progbar")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras on NumPy 2

ROOT = Path(__file__).resolve().parents[1]
ESCAPES = re.compile(r"\x1b\[[0-9;]*m")


class Clock:
    """``time.time()`` for both printers: it says what the test sets."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(keras_progbar, "time", clock)
    monkeypatch.setattr(progress, "time", clock)
    monkeypatch.setenv("COLUMNS", "1000")  # wide: nothing to shrink or wrap, so Keras's exact text
    return clock


def running_logs(rng: np.random.Generator, tiny: bool) -> dict[str, float]:
    loss = float(np.float32(rng.uniform(1e-5, 1e-3) if tiny else rng.uniform(0.01, 3)))
    return {"accuracy": float(np.float32(rng.choice([0.0, 0.001, rng.uniform(0, 1)]))), "loss": loss}


def scenario(seed: int, steps: int, epochs: int, seconds_per_step: float, validation: bool):
    """Per epoch: [(step, clock reading, running logs)] at fit's read-back steps (1, 10, 20, ..., last)
    and the epoch's end (clock, logs)."""
    rng = np.random.default_rng(seed)
    tiny = bool(rng.random() < 0.3)
    plan, now = [], 1_000_000.0
    for _ in range(epochs):
        start, updates, done = now, [], 0
        for step in sorted({1, *range(10, steps + 1, 10), steps}):
            warm_up = 3.0 if step == 1 else 0.0  # the first step is slow (Keras leaves it out of the ms/step)
            now += warm_up + (step - done) * seconds_per_step * rng.uniform(0.5, 1.5)
            updates.append((step, now, running_logs(rng, tiny)))
            done = step
        now += rng.uniform(0, 2)  # validation
        logs = dict(updates[-1][2])
        if validation:
            logs["val_accuracy"] = float(np.float32(rng.uniform(0, 1)))
            logs["val_loss"] = float(np.float32(rng.uniform(0, 4)))
        plan.append((start, updates, now, dict(sorted(logs.items()))))
        now += rng.uniform(0, 0.01)
    return plan


def keras_prints(clock: Clock, plan, steps: int, verbose: int) -> str:
    logger = keras.callbacks.ProgbarLogger()
    logger.set_params({"verbose": verbose, "epochs": len(plan), "steps": steps})
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        logger.on_train_begin()
        for epoch, (start, updates, end, logs) in enumerate(plan):
            clock.now = start
            logger.on_epoch_begin(epoch)
            for step, now, running in updates:
                clock.now = now
                logger.on_train_batch_end(step - 1, running)
            clock.now = end
            logger.on_epoch_end(epoch, logs)
    return out.getvalue().replace("\b", "")


def ours_prints(clock: Clock, plan, steps: int, verbose: int) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for epoch, (start, updates, end, logs) in enumerate(plan):
            clock.now = start
            bar = EpochProgress(verbose, epoch, len(plan), steps)
            for step, now, running in updates:
                clock.now = now
                bar.update(step, running)
            clock.now = end
            bar.close(logs)
    return out.getvalue()


CASES = [  # (steps, epochs, seconds per step)
    (1, 1, 0.02), (1, 3, 2.5), (7, 2, 0.004), (7, 1, 0.0004), (40, 3, 0.05), (1250, 2, 0.012),
    (1250, 10, 0.0), (1563, 2, 1.7), (50_000, 1, 0.09), (50_000, 2, 0.4),
]  # fmt: skip


@pytest.mark.parametrize("verbose", [1, 2])
@pytest.mark.parametrize("steps, epochs, seconds_per_step", CASES)
@pytest.mark.parametrize("validation", [True, False])
def test_the_printout_is_keras_s_character_for_character(clock, verbose, steps, epochs, seconds_per_step, validation):
    plan = scenario(steps * 31 + epochs, steps, epochs, seconds_per_step, validation)
    expected = keras_prints(clock, plan, steps, verbose)
    assert ours_prints(clock, plan, steps, verbose) == expected
    if epochs > 1:
        assert expected.count("Epoch ") == epochs
    else:
        assert "Epoch " not in expected  # Keras leaves it out for a single epoch


def test_the_cases_cover_keras_s_formats(clock):
    """The scenarios above reach every format Keras has: us/ms/s per step, the three ETA forms, e-notation."""
    text = "".join(ours_prints(clock, scenario(steps * 31 + epochs, steps, epochs, seconds, True), steps, verbose)
                   for steps, epochs, seconds in CASES for verbose in (1, 2))  # fmt: skip
    text = ESCAPES.sub("", text)
    for pattern in (r"\d+us/step", r"\d+ms/step", r"\d+s/step", r" \d+s \d", r" \d+:\d\d \d", r" \d+:\d\d:\d\d \d",
                    r": \d\.\d{4}e-0\d", r": 0\.0000e\+00", r"Epoch 2/10"):  # fmt: skip
        assert re.search(pattern, text), pattern


# --- next to a real keras.Model.fit ------------------------------------------------------------------


def masked(text: str) -> list[str]:
    """The lines left on the screen, with times and numbers masked (the models differ)."""
    text = ESCAPES.sub("", text.replace("\b", ""))
    lines = [line.split("\r")[-1].rstrip() for line in text.split("\n")]
    lines = [re.sub(r": \d+\.\d{4}(e[+-]\d\d)?", ": N", line) for line in lines if line]
    return [re.sub(r"\d+(us|ms|s)/step", "T/step", re.sub(r"(?<= )\d+s(?= )", "Ts", line)) for line in lines]


@pytest.mark.parametrize("verbose, epochs", [(2, 3), (2, 1), (1, 2), (1, 1)])
def test_our_fit_prints_the_lines_keras_fit_prints(monkeypatch, verbose, epochs):
    monkeypatch.setenv("COLUMNS", "1000")
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(70, 1, 2, 2, generator=generator)
    labels = torch.arange(70) % 3
    keras.utils.set_random_seed(0)
    keras_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    keras_model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    theirs = io.StringIO()
    with contextlib.redirect_stdout(theirs):
        keras_history = keras_model.fit(images.flatten(1).numpy(), labels.numpy(), epochs=epochs, batch_size=32,
                                        validation_split=0.2, verbose=verbose)  # fmt: skip
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    ours = io.StringIO()
    with contextlib.redirect_stdout(ours):
        history = fit(model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters()), images, labels,
                      epochs=epochs, batch_size=32, validation_split=0.2, verbose=verbose)  # fmt: skip
    assert masked(ours.getvalue()) == masked(theirs.getvalue())
    assert masked(ours.getvalue())[-1].startswith("2/2 ")  # 56 training images: 2 steps
    assert history.params == keras_history.params


# --- 80 columns ----------------------------------------------------------------------------------


def segments(text: str) -> list[str]:
    """Every state of the screen's current line: the text between carriage returns and newlines."""
    return [part.rstrip() for part in re.split(r"[\r\n]", ESCAPES.sub("", text)) if part.strip()]


def running_states(text: str) -> list[str]:
    """The running bar's states: every redraw that a later carriage return overwrote on its line."""
    lines = ESCAPES.sub("", text).replace("\r\n", "\n").split("\n")
    return [part.rstrip() for line in lines for part in line.split("\r")[:-1] if part.strip()]


@pytest.mark.parametrize("columns", [80, 60, 40])
def test_the_running_bar_fits_and_keeps_the_loss_in_view(clock, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    plan = scenario(5, 50_000, 2, 0.4, True)  # the widest count (50000/50000) and ETAs in hours
    text = ours_prints(clock, plan, 50_000, 1)
    running = running_states(text)
    assert len(running) > 10
    for line in running:
        assert len(line) < columns, line  # one column spare: the terminal never wraps a redrawn line
        assert re.search(r"(^| )loss: \d\.\d{4}", line), line
        assert columns < 50 or re.search(r"accuracy: \d\.\d{4}", line), line
    if columns == 80:
        assert all("━" in line and "/step" in line for line in running)  # room for the bar and the times


def test_the_epoch_line_wraps_between_numbers_at_80_columns(clock, monkeypatch):
    plan = scenario(3, 1250, 2, 0.012, True)
    wide = ours_prints(clock, plan, 1250, 1)
    monkeypatch.setenv("COLUMNS", "80")
    narrow = ours_prints(clock, plan, 1250, 1)
    finals = [line for line in ESCAPES.sub("", narrow).split("\n") if line]
    finals = [line.split("\r")[-1].rstrip() for line in finals]
    assert all(len(line) <= 80 for line in finals), finals
    # joined back, the wrapped lines are Keras's one line
    unwrapped = re.sub(r" *\n  ", " - ", ESCAPES.sub("", narrow))  # the spaces blank out the longer running bar
    assert [line.split("\r")[-1].rstrip() for line in unwrapped.split("\n")] == [
        line.split("\r")[-1].rstrip() for line in ESCAPES.sub("", wide).split("\n")
    ]


@pytest.mark.subprocess
def test_train_py_on_an_80_column_terminal(tmp_path):
    output = run_in_terminal([sys.executable, str(ROOT / "scripts" / "train.py"), "--dataset", "shapes", "--limit",
                              "700", "--epochs", "2", "--seed", "0", "--out", str(tmp_path / "run")], cwd=tmp_path)
    states = segments(output.replace("\r\n", "\n"))
    running = running_states(output)
    assert running, states  # the bar was drawn while the epoch ran
    for line in running:
        assert len(line) < 80 and re.search(r"loss: \d\.\d{4}", line), line
    for epoch in (1, 2):
        start = states.index(f"Epoch {epoch}/2")
        end = next(i for i, line in enumerate(states) if i > start and re.match(r"(Epoch|Last epoch)", line))
        epoch_text = " ".join(states[start + 1 : end])
        for key in ("accuracy", "loss", "val_accuracy", "val_loss"):
            assert re.search(rf"(^| ){key}: \d\.\d{{4}}", epoch_text), epoch_text
    numbers = [line for line in states if re.search(r": \d\.\d{4}", line)]
    assert all(len(line) <= 80 for line in numbers), [line for line in numbers if len(line) > 80]
