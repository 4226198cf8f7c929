"""Several settings of one model side by side: the episode's optimizer challenge, the
learning rate, batch size, dropout and activation experiments of later lesson versions, and
the other cures for overfitting: augmentation and L2 regularisation.

Every setting starts from the SAME initial weights and sees the samples in the SAME order
(``fit``'s ``seed`` fixes the order), so the setting is the only difference between two
curves. Each run is an ordinary ``fit``; nothing here is another training loop::

    settings = grid(optimizer=["sgd", "rmsprop", "adam"])
    results = compare("cifar_model_small", train_images, train_labels, settings, epochs=5,
                      validation_data=(test_images, test_labels), seed=1)
    results.table                       # one row per setting (a pandas DataFrame)
    results.histories["optimizer=sgd"]  # its History, as fit returns it
    results.models[results.best]        # the best setting's model, at its best epoch

``folds=K`` runs K-fold cross-validation on the training data instead, as the lesson's
``GridSearchCV(cv=3)`` does. With ``out_dir`` every run is a run directory (history,
checkpoints, run.json) under one comparison directory, and calling ``compare`` again on
that directory continues where it stopped.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from cnn_torch.checkpoints import load_checkpoint, restore_rng_state, save_checkpoint
from cnn_torch.cli import flags as cli
from cnn_torch.cli import runs
from cnn_torch.errors import UserError
from cnn_torch.history import History, load_history
from cnn_torch.keras_rules import optim
from cnn_torch.keras_rules.augment import normalise_specs
from cnn_torch.keras_rules.regularizers import L2Regularized
from cnn_torch.keras_rules.stopping import Improvement
from cnn_torch.machinery import checks
from cnn_torch.machinery.interrupt import TrainingInterrupted
from cnn_torch.machinery.terminal import fitted_path, say, width_for
from cnn_torch.models import ACTIVATIONS, MODELS, LessonModel, build_model
from cnn_torch.platform import process
from cnn_torch.platform.device import resolve_device
from cnn_torch.platform.fileio import atomic_write, write_json, write_text
from cnn_torch.sources.lesson_data import validation_cut
from cnn_torch.training import NonFiniteLoss, fit

# What a setting may change, in the order settings are named and gridded.
AXES = ("optimizer", "learning_rate", "batch_size", "dropout", "activation", "augment", "l2")
MODEL_AXES = ("dropout", "activation", "augment")  # passed to the model; the rest to compile and fit
# augment's values are strings: "none", or augmentation specs joined by "+", e.g. "flip+rotation=0.2";
# l2: Keras's L2 factor on every kernel, 0 for none
DEFAULTS = {"optimizer": "adam", "learning_rate": None, "batch_size": 32}  # the lesson's; None: Keras's rate
RECORD = "comparison.json"


# --- settings ----------------------------------------------------------------------------


def _check_value(axis: str, value):
    """One setting value, checked now rather than after an hour of training the others."""
    if axis == "optimizer" and value not in optim.KERAS_LEARNING_RATES:
        raise UserError(f"unknown optimizer {value!r}: choose from {', '.join(optim.KERAS_LEARNING_RATES)}")
    if axis == "activation" and value not in ACTIVATIONS:
        raise UserError(f"unknown activation {value!r}: choose from {', '.join(ACTIVATIONS)}")
    if axis == "learning_rate" and value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise UserError(f"learning_rate must be a positive number, got {value!r}: try 0.001")
        return float(value)
    if axis == "batch_size" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UserError(f"batch_size must be a positive integer, got {value!r}: try 32")
    if axis == "dropout":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise UserError(f"dropout must be a rate in [0, 1), got {value!r}: try 0.5")
        return float(value)
    if axis == "l2":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise UserError(f"l2 must be a number >= 0, got {value!r}: try 0.01 (0: no penalty)")
        return float(value)
    if axis == "augment":
        return _augment_value(value)
    return value


def _augment_value(value) -> str:
    """An augment setting as one string: ``"none"``, or its specs joined by ``+`` (``"flip+rotation"``);
    a list of specs is joined, and every spec is checked now."""
    specs = list(value) if isinstance(value, (list, tuple)) else [] if value is None else str(value).split("+")
    specs = [str(spec).strip().lower() for spec in specs if str(spec).strip()]
    if not specs or specs == ["none"]:
        return "none"
    normalise_specs(specs)  # an unknown name or factor: one line naming the choices
    return "+".join(specs)


def check_setting(setting: dict) -> dict:
    """A setting with known axes and valid values (numbers as floats where they are rates)."""
    if not isinstance(setting, dict) or not setting:
        raise UserError(f"a setting is a dict like {{'optimizer': 'sgd'}}, got {setting!r}: build them with grid()")
    unknown = [axis for axis in setting if axis not in AXES]
    if unknown:
        raise UserError(f"unknown setting {unknown[0]!r}: a setting may change {', '.join(AXES)}")
    return {axis: _check_value(axis, setting[axis]) for axis in AXES if axis in setting}


def grid(**axes) -> list[dict]:
    """Every combination of the given values, e.g. ``grid(optimizer=["sgd", "adam"], batch_size=[32, 128])``
    gives four settings. A single value is a one-value axis (fixed, but named in every setting)."""
    if not axes:
        raise UserError(f"grid() needs at least one axis, e.g. grid(optimizer=['sgd', 'adam']): {', '.join(AXES)}")
    unknown = [axis for axis in axes if axis not in AXES]
    if unknown:
        raise UserError(f"unknown setting {unknown[0]!r}: a setting may change {', '.join(AXES)}")
    lists = {}
    for axis in AXES:  # a fixed order, whatever order the keywords came in
        if axis not in axes:
            continue
        values = axes[axis]
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise UserError(f"{axis} has no values: give at least one, e.g. {axis}=[...]")
        values = [_check_value(axis, value) for value in values]
        if len(set(values)) != len(values):
            raise UserError(f"{axis} lists the same value twice ({values}): give each value once")
        lists[axis] = values
    return [dict(zip(lists, combination, strict=True)) for combination in itertools.product(*lists.values())]


def _format(value) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def setting_name(setting: dict) -> str:
    """The setting's label in tables and legends: ``optimizer=sgd, learning_rate=0.1``."""
    return ", ".join(f"{axis}={_format(value)}" for axis, value in setting.items())


def setting_dir_name(setting: dict) -> str:
    """Its run directory's name: ``optimizer-sgd_learning_rate-0.1``."""
    return runs.safe_name("_".join(f"{axis}-{_format(value)}" for axis, value in setting.items()))


# --- cross-validation folds --------------------------------------------------------------


def kfold_indices(labels: torch.Tensor, folds: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(train_indices, val_indices)`` for each of ``folds`` folds, stratified by class and fixed by
    ``seed``: the samples are shuffled once, then dealt to the folds class after class, so every
    fold holds each class and the whole set in nearly equal shares (as scikit-learn's
    ``StratifiedKFold``, which ``GridSearchCV(cv=3)`` uses for a classifier)."""
    labels = torch.as_tensor(labels)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise UserError(f"folds must be an integer of at least 2, got {folds!r}: try folds=3")
    smallest = int(torch.bincount(labels).masked_select(torch.bincount(labels) > 0).min())
    if folds > smallest:
        raise UserError(
            f"{folds} folds need at least {folds} images of every class, but one class has {smallest}:"
            " use fewer folds or more images"
        )
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    by_class = order[torch.argsort(labels[order], stable=True)]  # class by class, shuffled within each
    fold_of = torch.empty(len(labels), dtype=torch.int64)
    fold_of[by_class] = torch.arange(len(labels)) % folds  # dealt like cards: classes and fold sizes even
    everything = torch.arange(len(labels))
    return [(everything[fold_of != k], everything[fold_of == k]) for k in range(folds)]


# --- the results ---------------------------------------------------------------------------


@dataclass
class Comparison:
    """What :func:`compare` returns.

    ``table``: one row per setting. ``histories``: setting name -> History (with folds: the mean
    over the folds, epoch by epoch). ``fold_histories``: setting name -> one History per fold.
    ``models``: setting name -> its model with the weights of its best ``monitor`` epoch
    (not kept with folds). ``best``: the name of the best setting (highest best val_accuracy;
    with folds, highest mean final val_accuracy, as ``GridSearchCV.best_score_``).
    """

    table: pd.DataFrame
    histories: dict[str, History]
    settings: dict[str, dict]
    best: str | None
    models: dict[str, nn.Module] = field(default_factory=dict)
    fold_histories: dict[str, list[History]] = field(default_factory=dict)
    directory: Path | None = None
    figure: Path | None = None  # the comparison's figure, drawn when there is a directory

    @property
    def best_setting(self) -> dict | None:
        return None if self.best is None else self.settings[self.best]

    def best_line(self) -> str:
        """The lesson's ``print("Best: %f using %s" % (grid_result.best_score_, grid_result.best_params_))``."""
        if self.best is None:
            return "Best: none (every setting diverged before its first epoch ended)"
        column = "mean_val_accuracy" if self.fold_histories else "best_val_accuracy"
        score = self.table.set_index("setting").loc[self.best, column]
        return f"Best: {score:.4f} using {self.best_setting}"


# --- one run -------------------------------------------------------------------------------


@dataclass
class _Run:
    """The outcome of one setting (or one fold of it)."""

    history: History
    status: str  # "finished", "diverged" (NaN/inf loss)
    epoch_seconds: list[float]
    model: nn.Module | None = None
    note: str = ""
    resumed: str = ""  # "read back" (finished before), "continued from epoch N", or "" (trained now)


class _EpochEnd:
    """``fit``'s one hook for a comparison run: the run directory's files (the CLI's RunRecorder
    and run.json), each epoch's wall time, and an in-memory copy of the best epoch's weights."""

    def __init__(self, model: nn.Module, history: History, monitor: str, seconds: list[float],
                 recorder=None, record: dict | None = None, run_dir: Path | None = None):
        self.model, self.seconds = model, seconds
        self.recorder, self.record, self.run_dir = recorder, record, run_dir
        self.best = Improvement(monitor)
        self.best_state = None
        for epoch, logs in runs.epoch_logs(history):  # a resumed run: its best so far is in the history
            if monitor in logs:
                self.best.update(epoch, logs)
        self.started = time.perf_counter()

    def __call__(self, epoch: int, logs: dict[str, float]) -> None:
        self.seconds.append(round(time.perf_counter() - self.started, 3))
        improved = self.best.monitor in logs and self.best.update(epoch, logs)
        if improved and self.recorder is None:  # with a run directory, best.pt keeps them
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        if self.recorder is not None:
            self.recorder(epoch, logs)  # history.csv/json, last.pt, best.pt
            runs.write_run_record(self.run_dir, self.record)  # with the epoch's seconds
        self.started = time.perf_counter()


def _copy_parameters(initial: list[torch.Tensor], model: nn.Module, name: str) -> None:
    """Put the comparison's initial weights into ``model``, parameter by parameter, in order:
    Dropout or another activation adds no parameter, so the shapes must match one to one."""
    parameters = list(model.parameters())
    shapes = [tuple(p.shape) for p in parameters]
    if shapes != [tuple(t.shape) for t in initial]:
        raise UserError(
            f"setting {name} changes the model's parameter shapes: compare settings of one architecture"
            " (optimizer, learning_rate, batch_size, dropout, activation, augment, l2)"
        )
    with torch.no_grad():
        for parameter, tensor in zip(parameters, initial, strict=True):
            parameter.copy_(tensor)


def _read_record(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def _model_from_disk(build: Callable[[], nn.Module], run_dir: Path) -> nn.Module | None:
    """A finished run's model, best epoch first (best.pt), else its final weights."""
    for name in ("best.pt", "model.pt", "last.pt"):
        if (run_dir / name).is_file():
            model = build()
            model.load_state_dict(load_checkpoint(run_dir / name)["state_dict"])
            return model.eval()
    return None


def _train_one(
    build: Callable[[], nn.Module],
    initial: list[torch.Tensor],
    setting: dict,
    label: str,
    data: tuple,
    *,
    epochs: int,
    seed: int,
    run_dir: Path | None,
    flags: dict,
    class_names: list[str],
    monitor: str,
    device,
    precision: str,
    fit_verbose: int | str,
) -> _Run:
    """Train one setting (one fold) with ``fit``: from the initial weights, or from its last.pt."""
    train_images, train_labels, validation_data, validation_split = data
    record, resumed = None, None
    if run_dir is not None:
        record = _read_record(run_dir)
        if record.get("status") == "diverged":  # a finished experiment: diverging is its result
            history = load_history(run_dir / "history.json") if (run_dir / "history.json").is_file() else History()
            return _Run(history, "diverged", record.get("epoch_seconds", []), _model_from_disk(build, run_dir),
                        record.get("note", ""), "read back")
        if (run_dir / "last.pt").is_file():
            resumed = load_checkpoint(run_dir / "last.pt")
            if resumed["epoch"] >= epochs:  # finished: read it back, train nothing
                if not (run_dir / "model.pt").is_file():  # stopped between its last epoch and model.pt
                    final = {k: v for k, v in resumed.items() if k not in ("optimizer", "rng")}
                    save_checkpoint(run_dir / "model.pt", final)
                history = History.from_dict(resumed["history"])
                return _Run(history, "finished", record.get("epoch_seconds", []), _model_from_disk(build, run_dir),
                            resumed="read back")

    model = build()
    optimizer_name = setting.get("optimizer", DEFAULTS["optimizer"])
    learning_rate = setting.get("learning_rate", DEFAULTS["learning_rate"])
    batch_size = setting.get("batch_size", DEFAULTS["batch_size"])
    history, initial_epoch = History(), 0
    if resumed is not None:  # continue where it stopped: weights, optimizer, history, random states
        model.load_state_dict(resumed["state_dict"])
        optimizer = optim.make_optimizer(optimizer_name, model.parameters(), learning_rate)
        optimizer.load_state_dict(resumed["optimizer"]["state_dict"])
        history, initial_epoch = History.from_dict(resumed["history"]), resumed["epoch"]
        restore_rng_state(resumed["rng"])
    else:
        _copy_parameters(initial, model, label)  # the same start for every setting
        optimizer = optim.make_optimizer(optimizer_name, model.parameters(), learning_rate)
        process.seed_everything(seed)  # the same dropout masks too, where the setting allows

    seconds: list[float] = []
    recorder = None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        run_flags = {**flags, "optimizer": optimizer_name, "learning_rate": learning_rate, "batch_size": batch_size,
                     **{axis: setting[axis] for axis in (*MODEL_AXES, "l2") if axis in setting}, "epochs": epochs}
        if resumed is not None:
            seconds = list(record.get("epoch_seconds", []))[:initial_epoch]
        record = runs.start_record(run_flags, seed, device)
        record.update(setting=setting, epoch_seconds=seconds)
        recorder = runs.RunRecorder(run_dir, model, optimizer, history, class_names, seed, monitor)
        runs.write_run_record(run_dir, record)
    hook = _EpochEnd(model, history, monitor, seconds, recorder, record, run_dir)

    status, note = "finished", ""
    try:
        loss_fn = nn.CrossEntropyLoss()
        if setting.get("l2"):  # Keras: kernel_regularizer=L2(l2) on every Conv2D and Dense
            loss_fn = L2Regularized(loss_fn, model, setting["l2"])
        fit(model, loss_fn, optimizer, train_images, train_labels, epochs=epochs,
            batch_size=batch_size, validation_data=validation_data, validation_split=validation_split,
            seed=seed, verbose=fit_verbose, device=device, precision=precision,
            initial_epoch=initial_epoch, history=history, on_epoch_end=hook)
    except NonFiniteLoss as error:  # a learning rate too large: that is this experiment's result
        status, note = "diverged", f"NaN/inf loss in epoch {error.epoch + 1}"
        if run_dir is not None:
            runs.write_nan_report(run_dir, error)
    except TrainingInterrupted:
        if record is not None:
            record.update(status="interrupted", ended=dt.datetime.now().isoformat(timespec="seconds"))
            runs.write_run_record(run_dir, record)
        raise

    if record is not None:
        record.update(status=status, note=note, epochs_done=len(history.epoch),
                      ended=dt.datetime.now().isoformat(timespec="seconds"))
        runs.write_run_record(run_dir, record)
        if status == "finished":
            save_checkpoint(run_dir / "model.pt", recorder.checkpoint(len(history.epoch)))
    resumed_words = f"continued from epoch {initial_epoch}" if initial_epoch else ""
    if run_dir is not None:  # the model at its best epoch, which may be before a resume
        return _Run(history, status, seconds, _model_from_disk(build, run_dir), note, resumed_words)
    if hook.best_state is not None:  # the same, kept in memory
        model.load_state_dict(hook.best_state)
    return _Run(history, status, seconds, model.eval(), note)


# --- the comparison --------------------------------------------------------------------------


def _builder(model, train_images: torch.Tensor, num_classes: int,
             options: dict) -> tuple[str, Callable[..., nn.Module]]:  # fmt: skip
    """(model name, a function of the setting's model arguments that builds the model with ``options``)."""
    if isinstance(model, str):
        if model not in MODELS:
            raise UserError(f"unknown model {model!r}: choose one of {', '.join(MODELS)}")
        input_shape = tuple(train_images.shape[1:])
        return model, lambda **kwargs: build_model(model, num_classes=num_classes, input_shape=input_shape,
                                                   **options, **kwargs)  # fmt: skip
    if callable(model):
        return getattr(model, "__name__", type(model).__name__), lambda **kwargs: model(**options, **kwargs)
    raise UserError(f"model must be a model name or a function that builds one, got {type(model).__name__}:"
                    f" pass e.g. 'cifar_model_small'")


def _build(make: Callable[..., nn.Module], setting: dict, label: str, seed: int | None = None) -> nn.Module:
    kwargs = {axis: setting[axis] for axis in MODEL_AXES if axis in setting}
    if "augment" in kwargs:  # every setting's augmentation draws from the comparison's seed
        kwargs["augment"] = None if kwargs["augment"] == "none" else kwargs["augment"].split("+")
        kwargs["augment_seed"] = seed
    try:
        return make(**kwargs)
    except TypeError as error:
        raise UserError(
            f"the model builder cannot take {', '.join(kwargs)} (setting {label}): give it"
            f" {', '.join(f'{k}=...' for k in kwargs)} arguments, or leave those axes out ({error})"
        ) from None


def _load_or_save_initial(directory: Path, reference: nn.Module) -> list[torch.Tensor]:
    """The comparison's initial weights: written once to initial.pt, read back when resuming,
    so a continued comparison starts its remaining settings from exactly the same weights."""
    path = directory / "initial.pt"
    if path.is_file():
        return list(torch.load(path, map_location="cpu", weights_only=True)["parameters"])
    initial = [p.detach().cpu().clone() for p in reference.parameters()]
    with atomic_write(path, "wb") as f:
        torch.save({"parameters": initial}, f)
    return initial


def _open_directory(directory: Path, record: dict) -> dict:
    """Create the comparison directory, or check that it holds this same comparison (to resume it)."""
    path = directory / RECORD
    if path.is_file():
        try:
            kept = json.loads(path.read_text())
        except ValueError:
            raise UserError(f"{path} is not readable: pass a new out_dir") from None
        for key in ("model", "settings", "seed", "folds"):
            if kept.get(key) != record[key]:
                raise UserError(
                    f"{directory} holds another comparison ({key}: {kept.get(key)!r}, not {record[key]!r}):"
                    " pass a new out_dir, or the same settings to continue it"
                )
        record["started"] = kept.get("started", record["started"])
    directory.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    return record


def _mean_history(histories: list[History]) -> History:
    """Epoch-by-epoch mean over the folds, for the epochs every fold finished."""
    epochs = min(len(h.epoch) for h in histories)
    mean = History(params=dict(histories[0].params))
    for row in range(epochs):
        keys = set.intersection(*(set(h.history) for h in histories))
        logs = {key: sum(h.history[key][row] for h in histories) / len(histories) for key in keys}
        mean.append(histories[0].epoch[row], logs)
    return mean


def _last(history: History, key: str) -> float:
    values = history.history.get(key, [])
    return values[-1] if values else math.nan


def _row(name: str, run: _Run) -> dict:
    val_accuracy = run.history.history.get("val_accuracy", [])
    best = max(range(len(val_accuracy)), key=val_accuracy.__getitem__) if val_accuracy else None
    row = {
        "setting": name,
        "best_val_accuracy": val_accuracy[best] if best is not None else math.nan,
        "best_epoch": run.history.epoch[best] + 1 if best is not None else None,
        "final_val_accuracy": _last(run.history, "val_accuracy"),
        "final_accuracy": _last(run.history, "accuracy"),
        "final_val_loss": _last(run.history, "val_loss"),
        "final_loss": _last(run.history, "loss"),
        "seconds_per_epoch": sum(run.epoch_seconds) / len(run.epoch_seconds) if run.epoch_seconds else math.nan,
    }
    if run.status != "finished":
        row["note"] = run.note
    return row


def _fold_row(name: str, fold_runs: list[_Run]) -> dict:
    finals = torch.tensor([_last(run.history, "val_accuracy") for run in fold_runs], dtype=torch.float64)
    seconds = [s for run in fold_runs for s in run.epoch_seconds]
    row = {
        "setting": name,
        "mean_val_accuracy": finals.mean().item(),
        "std_val_accuracy": finals.std(unbiased=False).item(),  # GridSearchCV's std_test_score
        "fold_val_accuracies": " ".join(f"{value:.4f}" for value in finals.tolist()),
        "mean_val_loss": sum(_last(run.history, "val_loss") for run in fold_runs) / len(fold_runs),
        "seconds_per_epoch": sum(seconds) / len(seconds) if seconds else math.nan,
    }
    notes = [f"fold {k + 1}: {run.note}" for k, run in enumerate(fold_runs) if run.status != "finished"]
    if notes:
        row["note"] = "; ".join(notes)
    return row


def _table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    if "note" in table:
        table["note"] = table["note"].fillna("")
    if "best_epoch" in table:
        table["best_epoch"] = table["best_epoch"].astype("Int64")
    return table


def markdown_table(table: pd.DataFrame, digits: int = 4) -> str:
    """The table as GitHub markdown, numbers to ``digits`` places (no extra dependency)."""

    def cell(value) -> str:
        if isinstance(value, float):
            return "nan" if math.isnan(value) else f"{value:.{digits}f}"
        return "" if value is None or value is pd.NA else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _number(value: float, digits: int = 4) -> str:
    """``2.3019``; ``1.35e+30`` for a loss that blew up; ``-`` where a diverged setting has none."""
    if math.isnan(value):
        return "-"
    return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.3g}"


def text_table(results: Comparison, width: int | None = None) -> str:
    """The table for a terminal: the setting's values under their axes' names, then the numbers
    that rank it, aligned (table.csv and table.md keep every column). Where its header would
    not fit ``width`` columns, the first column is headed ``setting`` and a line above, wrapped
    between words, names its axes."""
    settings = list(results.settings.values())
    axes = list(settings[0])
    table = results.table
    folds = "mean_val_accuracy" in table
    columns = {", ".join(axes): [", ".join(_format(s[axis]) for axis in axes) for s in settings]}
    if folds:
        columns["mean val_accuracy"] = [_number(v) for v in table["mean_val_accuracy"]]
        columns["std"] = [_number(v) for v in table["std_val_accuracy"]]
        columns["mean val_loss"] = [_number(v) for v in table["mean_val_loss"]]
    else:
        columns["best val_accuracy"] = [_number(v) for v in table["best_val_accuracy"]]
        columns["epoch"] = ["-" if e is pd.NA or e is None else str(e) for e in table["best_epoch"]]
        columns["final val_loss"] = [_number(v) for v in table["final_val_loss"]]
    columns["s/epoch"] = [_number(v, 1) for v in table["seconds_per_epoch"]]
    names = list(columns)
    headers = [names]
    legend = []

    def widest() -> int:
        return sum(max(*(len(row[i]) for row in headers), *(len(cell) for cell in cells))
                   for i, cells in enumerate(columns.values())) + 2 * (len(columns) - 1)  # fmt: skip

    if width is not None and widest() > width:  # the axes' names on a line of their own
        legend = textwrap.wrap("setting: " + ", ".join(axes), width, subsequent_indent="  ", break_long_words=False,
                               break_on_hyphens=False)  # fmt: skip
        headers = [["setting", *names[1:]]]
    if width is not None and widest() > width:  # two-word headers on two lines: "best" over "val_accuracy"
        split = [name.split(" ", 1) if " " in name else ["", name] for name in headers[0][1:]]
        headers = [["", *(top for top, _ in split)], [headers[0][0], *(bottom for _, bottom in split)]]
    widths = [max(*(len(row[i]) for row in headers), *(len(cell) for cell in cells))
              for i, cells in enumerate(columns.values())]  # fmt: skip
    lines = [*legend]
    for row in [*headers, *zip(*columns.values(), strict=True)]:
        first, *rest = row
        cells = (cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True))
        lines.append("  ".join([first.ljust(widths[0]), *cells]))
    notes = []  # a diverged setting says why
    if "note" in table:
        notes = [f"{name}: {note}" for name, note in zip(table["setting"], table["note"], strict=True) if note]
    return "\n".join(line.rstrip() for line in lines + notes) + "\n"


def _varying(settings: list[dict]) -> str:
    """``optimizer=sgd | rmsprop | adam`` for the axes the comparison changes."""
    parts = []
    for axis in settings[0]:
        values = list(dict.fromkeys(_format(s[axis]) for s in settings))
        parts.append(f"{axis}={' | '.join(values)}")
    return ", ".join(parts)


def _describe(row: dict) -> str:
    """One line per finished setting."""
    if "mean_val_accuracy" in row:
        text = (f"{row['setting']}: val_accuracy {row['mean_val_accuracy']:.4f} (std {row['std_val_accuracy']:.4f})"
                f" over the folds, {row['seconds_per_epoch']:.1f} s/epoch")
    elif row["best_epoch"] is None:  # diverged in its first epoch: no number to show
        text = f"{row['setting']}: no epoch finished"
    else:
        text = (f"{row['setting']}: best val_accuracy {row['best_val_accuracy']:.4f} (epoch {row['best_epoch']}),"
                f" final val_loss {_number(row['final_val_loss'])}, {row['seconds_per_epoch']:.1f} s/epoch")
    return text + (f" - {row['note']}" if row.get("note") else "")


def _announce(model_name: str, settings: list[dict], epochs: int, seed: int, data: str) -> None:
    say(f"Comparing {len(settings)} settings of {model_name} ({_varying(settings)}),"
        f" {cli.counted(epochs, 'epoch')} each, {data}.")
    say(f"Every setting starts from the same initial weights (seed {seed}) and sees the training samples"
        " in the same order, so the setting is the only difference.")


def _data_parts(train_images, train_labels, validation_data, validation_split, splits) -> list[tuple]:
    """What each run of one setting trains and validates on: the data as given, or each fold."""
    if splits is None:
        return [(None, (train_images, train_labels, validation_data, validation_split))]
    return [(k, (train_images[train], train_labels[train], (train_images[val], train_labels[val]), 0.0))
            for k, (train, val) in enumerate(splits)]


def _data_words(train_images, validation_data, validation_split, folds) -> str:
    if folds is not None:
        return f"{folds}-fold cross-validation on {len(train_images):,} training images"
    if validation_data is not None:
        return f"{len(train_images):,} training images, {len(validation_data[0]):,} validation images"
    train_count = validation_cut(len(train_images), validation_split)
    return f"{train_count:,} training images, the last {len(train_images) - train_count:,} validate"


def compare(
    model: str | Callable[..., nn.Module],
    train_images,
    train_labels,
    settings: Sequence[dict],
    *,
    epochs: int = 10,
    validation_data: tuple | None = None,
    validation_split: float = 0.0,
    folds: int | None = None,
    seed: int | None = None,
    out_dir: str | Path | None = None,
    fig_dir: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    monitor: str = "val_accuracy",
    device: str | torch.device = "auto",
    precision: str = "fp32",
    verbose: int = 1,
    flags: dict | None = None,
    model_options: dict | None = None,
) -> Comparison:
    """Train ``model`` once per setting (once per fold with ``folds``) and return a :class:`Comparison`.

    ``model`` is a name from ``cnn_torch.models.MODELS`` or a function that builds a model
    (it gets the setting's ``dropout``/``activation`` as keyword arguments). Settings come from
    :func:`grid`; an axis a setting leaves out keeps the lesson's value (Adam, Keras's learning
    rate, batch 32, the model's own dropout and ReLU). ``seed`` fixes the initial weights, the
    sample order, the folds and the dropout masks (drawn from torch's RNG when None).
    ``out_dir``: one run directory per setting there, and a comparison found there continues;
    its figure goes there too (``comparison.png``), or to ``fig_dir`` (``<out_dir's name>_comparison.png``).
    ``verbose``: 0 silent, 1 one line per setting, 2 also ``fit``'s progress.
    ``flags``: extra entries for the run records (the command line's data flags).
    ``model_options``: what every setting's model is built with besides its setting (``batch_norm=True``).
    """
    # --- check everything before the first run ---
    settings = [check_setting(setting) for setting in settings]
    if not settings:
        raise UserError("there are no settings to compare: build some with grid(optimizer=['sgd', 'adam'])")
    names = [setting_name(setting) for setting in settings]
    if len(set(names)) != len(names):
        raise UserError(f"two settings are the same ({names}): give each setting once")
    checks.check_fit_arguments(epochs, 1, validation_split)
    if monitor not in ("val_accuracy", "val_loss", "accuracy", "loss"):
        raise UserError(f"cannot monitor {monitor!r}: choose val_accuracy, val_loss, accuracy or loss")
    if verbose not in (0, 1, 2):
        raise UserError(f"verbose must be 0, 1 or 2, got {verbose!r}: pass verbose=1")
    train_images = checks.check_images(train_images, "train_images", warn=False)
    train_labels = checks.check_labels(train_labels, len(train_images), "train_labels")
    if folds is not None and (validation_data is not None or validation_split):
        raise UserError("folds=K validates on the training data itself: leave out validation_data and validation_split")
    if validation_data is not None:
        checks.check_validation_data(validation_data)
    if folds is None and validation_data is None and not validation_split:
        raise UserError("a comparison ranks settings on validation data: pass validation_data=(images, labels),"
                        " validation_split=0.2 or folds=3")
    device = resolve_device(device)
    if seed is None:  # drawn from torch's RNG, so torch.manual_seed() before compare() fixes it
        seed = int(torch.randint(2**31 - 1, ()))
    if not class_names:  # the labels' classes: 0 .. the largest label seen (or a one-hot label's width)
        labels = [train_labels] + ([torch.as_tensor(validation_data[1])] if validation_data is not None else [])
        count = max(t.shape[1] if t.ndim == 2 else int(t.max()) + 1 for t in labels)
        class_names = [str(i) for i in range(count)]
    model_name, make = _builder(model, train_images, len(class_names), dict(model_options or {}))
    if folds is not None:
        splits = kfold_indices(train_labels.argmax(dim=1) if train_labels.ndim == 2 else train_labels, folds, seed)
    else:
        splits = None

    # --- the one starting point: every setting begins from these weights ---
    torch.manual_seed(seed)
    reference = _build(make, settings[0], names[0], seed)
    directory = Path(out_dir) if out_dir is not None else None
    if directory is not None:
        if not isinstance(reference, LessonModel):
            raise UserError("out_dir saves checkpoints, which need a model from cnn_torch.models:"
                            " pass a model name, or out_dir=None")
        record = _open_directory(directory, {
            "model": model_name, "settings": json.loads(json.dumps(settings)), "seed": seed, "folds": folds,
            "epochs": epochs, "monitor": monitor, "flags": dict(flags or {}),
            "started": dt.datetime.now().isoformat(timespec="seconds"), "status": "running",
        })
        initial = _load_or_save_initial(directory, reference)
    else:
        initial = [p.detach().clone() for p in reference.parameters()]
    run_flags = {"model": model_name, "seed": seed, "monitor": monitor, "precision": precision,
                 "validation_split": validation_split or None, "folds": folds, **(flags or {})}
    if verbose:
        _announce(model_name, settings, epochs, seed,
                  _data_words(train_images, validation_data, validation_split, folds))

    # --- one fit per setting (per fold) ---
    parts = _data_parts(train_images, train_labels, validation_data, validation_split, splits)
    histories, fold_histories, models, rows = {}, {}, {}, []
    for i, (name, setting) in enumerate(zip(names, settings, strict=True), start=1):
        setting_dir = directory / setting_dir_name(setting) if directory is not None else None
        part_runs = []
        for k, data in parts:
            label = name if k is None else f"{name} (fold {k + 1}/{folds})"
            if verbose == 2:
                say(f"--- [{i}/{len(settings)}] {label}")
            run_dir = setting_dir if setting_dir is None or k is None else setting_dir / f"fold-{k + 1}"
            part_runs.append(_train_one(
                lambda setting=setting, name=name: _build(make, setting, name, seed), initial, setting, label, data,
                epochs=epochs, seed=seed, run_dir=run_dir, flags=run_flags, class_names=list(class_names),
                monitor=monitor, device=device, precision=precision, fit_verbose="auto" if verbose == 2 else 0,
            ))
        if splits is None:
            histories[name] = part_runs[0].history
            models[name] = part_runs[0].model
            rows.append(_row(name, part_runs[0]))
        else:
            fold_histories[name] = [run.history for run in part_runs]
            histories[name] = _mean_history(fold_histories[name])
            rows.append(_fold_row(name, part_runs))
        if verbose:
            resumed = "; ".join(dict.fromkeys(run.resumed for run in part_runs if run.resumed))
            say(f"[{i}/{len(settings)}] {_describe(rows[-1])}" + (f" ({resumed})" if resumed else ""))

    # --- the table, the best setting, the figure ---
    table = _table(rows)
    score = table["mean_val_accuracy" if splits is not None else "best_val_accuracy"]
    best = None if score.isna().all() else names[int(score.fillna(-math.inf).to_numpy().argmax())]
    models = {name: model for name, model in models.items() if model is not None}
    results = Comparison(table, histories, dict(zip(names, settings, strict=True)), best, models, fold_histories,
                         directory)
    if directory is not None:
        write_text(directory / "table.csv", table.to_csv(index=False))
        write_text(directory / "table.md", markdown_table(table) + "\n" + results.best_line() + "\n")
        from cnn_torch.plots import plot_comparison  # here: matplotlib takes a while to import

        title = f"{model_name}: {_varying(settings)}" + (f", mean of {folds} folds" if folds else "")
        results.figure = (directory / "comparison.png" if fig_dir is None
                          else Path(fig_dir) / f"{runs.safe_name(directory.name)}_comparison.png")  # fmt: skip
        plot_comparison(histories, results.figure, title=title)
        record.update(status="finished", ended=dt.datetime.now().isoformat(timespec="seconds"), best=best)
        write_json(directory / RECORD, record)
    return results


# --- the command line (scripts/compare.py) ----------------------------------------------------

# The flags of a comparison that a resumed one takes from its comparison.json.
COMPARISON_FLAGS = (
    "model", "dataset", "data_dir", "validation_split", "limit", "seed", "precision", "monitor", "deterministic",
    "epochs", "folds", "image_size", "classes", "crop_to_aspect_ratio", "pad_to_aspect_ratio", "batch_norm",
    "weights", "fig_dir", "jpeg_decoder",
)


def _axes_from_flags(args) -> dict:
    return {axis: getattr(args, axis) for axis in AXES if getattr(args, axis, None) is not None}


def _resume_flags(args) -> list[dict]:
    """Put a stopped comparison's flags back into ``args`` (all but --epochs when given); its settings."""
    directory = Path(args.resume)
    path = directory / RECORD
    if not path.is_file():
        raise UserError(f"{directory} has no {RECORD}: pass the directory of a comparison (runs/compare-...)")
    given = [f"--{axis.replace('_', '-')}" for axis in _axes_from_flags(args)]
    if given:
        raise UserError(f"--resume continues {directory} with its own settings: leave out {' '.join(given)}")
    try:
        record = json.loads(path.read_text())
        flags, settings = record["flags"], record["settings"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} is not a readable comparison record: start a new comparison") from None
    epochs, fig_dir = args.epochs, args.fig_dir
    for name in COMPARISON_FLAGS:
        if name in flags:
            setattr(args, name, flags[name])
    args.epochs = epochs if epochs is not None else flags.get("epochs", 10)
    args.fig_dir = fig_dir if fig_dir is not None else args.fig_dir  # given anew: the figure goes there this time
    args.out = str(directory)
    return settings


def run_from_flags(args) -> Comparison:
    """``scripts/compare.py``: load the data as ``scripts/train.py`` does, compare the grid of the
    flags given several values, print the table and where the files are."""
    from cnn_torch import data  # here: a bad flag should not wait for torchvision

    settings = _resume_flags(args) if args.resume else None  # a stopped comparison's flags and settings
    cli.check_fit_flags(args)  # every value, in the command line's words (grid() would use the API's)
    cli.check_model_flags(args, comparison=True)
    if settings is None:
        axes = _axes_from_flags(args)
        if not axes:
            raise UserError("nothing to compare: give several values to --optimizer, --learning-rate, --batch-size,"
                            " --dropout, --activation, --augment or --l2, e.g. --optimizer sgd rmsprop adam")
        settings = grid(**axes)
        args.epochs = 10 if args.epochs is None else args.epochs
        if args.out is not None and (Path(args.out) / RECORD).exists():
            raise UserError(f"--out {args.out} already holds a comparison: pass a new --out, or --resume {args.out}")
    cli.check_data_flags(args)
    if args.folds is not None and args.folds < 2:
        raise UserError(f"--folds must be at least 2, got {args.folds}: try --folds 3")
    if args.folds is not None and args.validation_split is not None:
        raise UserError("--folds validates on every fold of the training data: leave out --validation-split")
    cli.check_seed(args.seed)
    cli.check_device(args.device)
    cli.check_monitor(args.monitor)
    cli.check_output_folders(args)  # every folder the comparison writes, before any data is loaded
    _, device, seed = process.start(args.device, args.seed, args.deterministic)

    # the data, as scripts/train.py loads it: val/ validates, else the test split, else the last 20%
    lesson, validation_data, validation_split, _ = cli.load_run_data(args, seed)
    if args.folds is not None:  # K-fold: every fold of the training data validates in turn
        validation_data, validation_split = None, None
    dataset = args.dataset or data.resolve_dataset(None, args.data_dir)
    directory = runs.claim_run_dir(args.out, "compare")  # a new one is made by this process alone
    runs.lock_run_dir(directory)  # and no other process compares in it while this one does
    flags = {name: getattr(args, name) for name in COMPARISON_FLAGS}
    for name in ("data_dir", "fig_dir"):  # absolute: the comparison and its runs work from any folder
        if flags[name] is not None:
            flags[name] = str(Path(flags[name]).resolve())
    flags.update(dataset=dataset, seed=seed, patience=None, min_delta=0.0, restore_best_weights=False)
    try:
        results = compare(
            args.model, lesson.train_images, lesson.train_labels, settings, epochs=args.epochs,
            validation_data=validation_data, validation_split=validation_split or 0.0, folds=args.folds, seed=seed,
            out_dir=directory, fig_dir=args.fig_dir, class_names=lesson.class_names, monitor=args.monitor,
            device=device, precision=args.precision, verbose=0 if args.quiet else 2, flags=flags,
            model_options=cli.model_options(args),
        )
    except TrainingInterrupted:
        print(f"Interrupted: every finished epoch is saved in {directory}.")
        print(f"Continue with: {cli.script_command('compare.py')} --resume {directory}")
        raise
    print()
    print(text_table(results, width_for(sys.stdout)), end="")
    say(results.best_line())
    print(fitted_path("Table:       ", f"{directory / 'table.csv'} and table.md"))
    print(fitted_path("Figure:      ", str(results.figure)))
    print(fitted_path("Runs:        ", f"{directory}/<setting>/ (history, checkpoints, run.json)"))
    return results
