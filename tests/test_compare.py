"""cnn_torch.cli.comparison and scripts/compare.py: settings side by side, from the same start.

Tiny synthetic images (20x20, four classes told apart by their red channel) keep every
comparison to a second or two; the command-line tests use the offline shapes data.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import run_cli
from torch import nn

from cnn_torch import fit
from cnn_torch.checkpoints import load_checkpoint, model_from_checkpoint
from cnn_torch.cli import comparison as compare_module
from cnn_torch.cli.comparison import compare, grid, kfold_indices, markdown_table, setting_dir_name, setting_name
from cnn_torch.errors import UserError
from cnn_torch.history import History, save_history
from cnn_torch.keras_rules import optim
from cnn_torch.machinery.interrupt import TrainingInterrupted
from cnn_torch.models import ACTIVATIONS, MODELS, build_model, count_params
from cnn_torch.platform import process

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (3, 20, 20)


def tiny_data(n: int = 96, seed: int = 0, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 60, (n, *SHAPE), generator=generator, dtype=torch.uint8)
    images[:, 0] += (labels * 60).view(-1, 1, 1).to(torch.uint8)  # the class is in the red channel
    return images, labels


def run_compare(settings, out_dir=None, *, epochs=2, seed=5, verbose=0, **kwargs):
    """cifar_model_small on the tiny data, validated on 32 other tiny images (unless folds)."""
    train_images, train_labels = tiny_data()
    if "folds" not in kwargs:
        kwargs["validation_data"] = tiny_data(32, seed=1)
    return compare("cifar_model_small", train_images, train_labels, settings, epochs=epochs, seed=seed,
                   verbose=verbose, out_dir=out_dir, **kwargs)


# --- settings --------------------------------------------------------------------------------


def test_grid_is_the_product_in_axis_order():
    settings = grid(batch_size=[8, 32], optimizer=["sgd", "adam"])
    assert settings == [
        {"optimizer": "sgd", "batch_size": 8}, {"optimizer": "sgd", "batch_size": 32},
        {"optimizer": "adam", "batch_size": 8}, {"optimizer": "adam", "batch_size": 32},
    ]
    assert setting_name(settings[1]) == "optimizer=sgd, batch_size=32"
    assert setting_dir_name(settings[1]) == "optimizer-sgd_batch_size-32"
    assert grid(learning_rate=0.1) == [{"learning_rate": 0.1}]  # one value: a one-setting axis
    assert setting_name(grid(learning_rate=[1e-4])[0]) == "learning_rate=0.0001"


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ({}, "needs at least one axis"),
        ({"momentum": [0.9]}, "unknown setting 'momentum'"),
        ({"optimizer": ["adamw"]}, "unknown optimizer 'adamw'"),
        ({"learning_rate": [0.1, -1]}, "learning_rate must be a positive number"),
        ({"batch_size": [0]}, "batch_size must be a positive integer"),
        ({"batch_size": [2.5]}, "batch_size must be a positive integer"),
        ({"dropout": [1.0]}, r"dropout must be a rate in \[0, 1\)"),
        ({"activation": ["gelu"]}, "unknown activation 'gelu'"),
        ({"optimizer": ["sgd", "sgd"]}, "the same value twice"),
        ({"optimizer": []}, "has no values"),
    ],
)
def test_grid_rejects_bad_values_before_training(axes, message):
    with pytest.raises(UserError, match=message) as excinfo:
        grid(**axes)
    assert "\n" not in str(excinfo.value)


# --- the same start, the same order -----------------------------------------------------------


def test_each_setting_equals_a_plain_fit_from_the_same_start():
    results = run_compare(grid(optimizer=["sgd", "adam"]))
    train_images, train_labels = tiny_data()
    for optimizer_name in ("sgd", "adam"):
        torch.manual_seed(5)
        model = build_model("cifar_model_small", num_classes=4, input_shape=SHAPE)
        process.seed_everything(5)
        optimizer = optim.make_optimizer(optimizer_name, model.parameters())
        history = fit(model, nn.CrossEntropyLoss(), optimizer, train_images, train_labels, epochs=2,
                      validation_data=tiny_data(32, seed=1), seed=5, verbose=0)
        assert results.histories[f"optimizer={optimizer_name}"].history == history.history


@pytest.mark.parametrize(
    ("model_name", "axes"),
    [("cifar_model_small", {"activation": list(ACTIVATIONS)}), ("model_dropout", {"dropout": [0.0, 0.3, 0.6]}),
     ("cifar_model_small", {"dropout": [0.0, 0.5], "batch_size": [16, 32]})],
)
def test_every_setting_starts_from_the_same_weights(monkeypatch, model_name, axes):
    starts, real_fit = [], compare_module.fit

    def recording_fit(model, *args, **kwargs):
        starts.append([p.detach().clone() for p in model.parameters()])
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(compare_module, "fit", recording_fit)
    train_images, train_labels = tiny_data()
    settings = grid(**axes)
    compare(model_name, train_images, train_labels, settings, epochs=1, validation_data=tiny_data(32, 1),
            seed=9, verbose=0)
    assert len(starts) == len(settings)
    for start in starts[1:]:
        assert all(torch.equal(a, b) for a, b in zip(starts[0], start, strict=True))


def test_settings_must_keep_the_parameter_shapes():
    def builder(dropout: float = 0.0) -> nn.Module:
        width = 8 if dropout else 4  # a setting that changes the architecture
        return nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(3 * 20 * 20, width), nn.Linear(width, 4))

    train_images, train_labels = tiny_data()
    with pytest.raises(UserError, match="changes the model's parameter shapes"):
        compare(builder, train_images, train_labels, grid(dropout=[0.0, 0.5]), epochs=1,
                validation_split=0.25, seed=1, verbose=0)


def test_a_builder_function_works_in_memory():
    def builder(activation: str = "relu") -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 20 * 20, 8), ACTIVATIONS[activation](), nn.Linear(8, 4))

    train_images, train_labels = tiny_data()
    results = compare(builder, train_images, train_labels, grid(activation=["relu", "tanh"]), epochs=1,
                      validation_split=0.25, seed=1, verbose=0)
    assert list(results.histories) == ["activation=relu", "activation=tanh"]
    assert isinstance(results.models["activation=tanh"][2], nn.Tanh)
    with pytest.raises(UserError, match="need a model from cnn_torch.models"):
        compare(builder, train_images, train_labels, grid(activation=["relu"]), epochs=1,
                validation_split=0.25, seed=1, verbose=0, out_dir="unused")


# --- the table, the best setting, what is printed ---------------------------------------------------


def test_table_best_and_models(capsys):
    results = run_compare(grid(optimizer=["sgd", "adam"]), verbose=1)
    table = results.table
    assert list(table.columns) == ["setting", "best_val_accuracy", "best_epoch", "final_val_accuracy",
                                   "final_accuracy", "final_val_loss", "final_loss", "seconds_per_epoch"]
    assert table["setting"].tolist() == ["optimizer=sgd", "optimizer=adam"]
    for name, row in table.set_index("setting").iterrows():
        values = results.histories[name].history["val_accuracy"]
        assert row["best_val_accuracy"] == max(values)
        assert row["best_epoch"] == values.index(max(values)) + 1
        assert row["final_val_loss"] == results.histories[name].history["val_loss"][-1]
        assert row["seconds_per_epoch"] > 0
    assert results.best == table.loc[table["best_val_accuracy"].idxmax(), "setting"]
    assert re.fullmatch(r"Best: 0\.\d{4} using \{'optimizer': '(sgd|adam)'\}", results.best_line())
    assert not results.models[results.best].training  # ready to predict
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4  # what is compared, the same-start sentence, one line per setting
    assert "same initial weights (seed 5)" in out[1] and "same order" in out[1]
    assert out[2].startswith("[1/2] optimizer=sgd: best val_accuracy")
    markdown = markdown_table(table)
    assert markdown.splitlines()[0].startswith("| setting | best_val_accuracy |")
    assert markdown.count("\n") == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"validation_data": None}, "ranks settings on validation data"),
        ({"folds": 3, "validation_split": 0.2}, "leave out validation_data and validation_split"),
        ({"folds": 30}, "at least 30 images of every class"),
        ({"verbose": 3}, "verbose must be 0, 1 or 2"),
        ({"epochs": 0}, "epochs must be a positive integer"),
    ],
)
def test_bad_arguments_raise_before_training(kwargs, message):
    train_images, train_labels = tiny_data()
    kwargs = {"validation_data": tiny_data(32, 1), "epochs": 1, **kwargs}
    if "folds" in kwargs and "validation_split" not in kwargs:
        kwargs.pop("validation_data")
    with pytest.raises(UserError, match=message):
        compare("cifar_model_small", train_images, train_labels, grid(optimizer=["sgd"]), seed=1, **kwargs)


def test_channels_last_images_get_the_fit_message():
    train_images, train_labels = tiny_data()
    with pytest.raises(UserError, match="channels-last"):
        compare("cifar_model_small", train_images.permute(0, 2, 3, 1), train_labels, grid(optimizer=["sgd"]),
                epochs=1, validation_split=0.2, verbose=0)


def test_a_diverging_learning_rate_is_a_result_not_a_crash(tmp_path):
    results = run_compare(grid(optimizer="sgd", learning_rate=[1e12, 0.01]), tmp_path / "c")
    row = results.table.set_index("setting").loc["optimizer=sgd, learning_rate=1e+12"]
    assert "NaN/inf loss in epoch" in row["note"]
    assert results.best == "optimizer=sgd, learning_rate=0.01"
    run_dir = tmp_path / "c" / "optimizer-sgd_learning_rate-1e_12"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "diverged"
    assert (run_dir / "nan_batch.json").is_file()
    again = run_compare(grid(optimizer="sgd", learning_rate=[1e12, 0.01]), tmp_path / "c")  # not retried
    assert again.table["note"].tolist() == results.table["note"].tolist()


# --- cross-validation ------------------------------------------------------------------------------


def test_kfold_indices_are_stratified_disjoint_and_seeded():
    labels = torch.arange(30) % 3
    splits = kfold_indices(labels, 3, seed=4)
    assert len(splits) == 3
    held_out = torch.cat([val for _, val in splits])
    assert sorted(held_out.tolist()) == list(range(30))  # every sample validates exactly once
    for train, val in splits:
        assert set(train.tolist()).isdisjoint(val.tolist()) and len(train) + len(val) == 30
        counts = torch.bincount(labels[val], minlength=3).tolist()
        assert max(counts) - min(counts) <= 1 and sum(counts) == 10  # each class, and the folds, in even shares
    again = kfold_indices(labels, 3, seed=4)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(splits, again, strict=True))
    other = kfold_indices(labels, 3, seed=5)
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(splits, other, strict=True))
    with pytest.raises(UserError, match="at least 2"):
        kfold_indices(labels, 1, seed=0)


def test_folds_give_mean_and_std_like_grid_search(tmp_path):
    results = run_compare(grid(optimizer=["sgd", "adam"]), tmp_path / "cv", folds=3, epochs=1)
    table = results.table
    assert list(table.columns) == ["setting", "mean_val_accuracy", "std_val_accuracy", "fold_val_accuracies",
                                   "mean_val_loss", "seconds_per_epoch"]
    for name, row in table.set_index("setting").iterrows():
        finals = torch.tensor([h.history["val_accuracy"][-1] for h in results.fold_histories[name]],
                              dtype=torch.float64)
        assert row["mean_val_accuracy"] == pytest.approx(finals.mean().item())
        assert row["std_val_accuracy"] == pytest.approx(finals.std(unbiased=False).item())
        assert len(row["fold_val_accuracies"].split()) == 3
    assert results.best == table.loc[table["mean_val_accuracy"].idxmax(), "setting"]
    assert results.best_line().startswith("Best: ")
    assert (tmp_path / "cv" / "optimizer-adam" / "fold-3" / "history.json").is_file()
    assert "Best: " in (tmp_path / "cv" / "table.md").read_text()
    assert results.models == {}


# --- files and resuming ----------------------------------------------------------------------------


def test_out_dir_holds_one_run_directory_per_setting(tmp_path):
    out = tmp_path / "cmp"
    results = run_compare(grid(activation=["relu", "tanh"]), out)
    for name in ("comparison.json", "table.csv", "table.md", "comparison.png", "initial.pt"):
        assert (out / name).is_file(), name
    assert (out / "comparison.png").stat().st_size > 10_000
    assert pd.read_csv(out / "table.csv")["setting"].tolist() == ["activation=relu", "activation=tanh"]
    for setting in ("activation-relu", "activation-tanh"):
        for name in ("history.csv", "history.json", "last.pt", "best.pt", "model.pt", "run.json"):
            assert (out / setting / name).is_file(), (setting, name)
        record = json.loads((out / setting / "run.json").read_text())
        assert record["status"] == "finished" and record["seed"] == 5 and len(record["epoch_seconds"]) == 2
        assert record["flags"]["optimizer"] == "adam" and record["flags"]["batch_size"] == 32
    # a model built with another activation comes back from its checkpoint as it was built
    rebuilt = model_from_checkpoint(load_checkpoint(out / "activation-tanh" / "best.pt"))
    assert rebuilt.model_kwargs["activation"] == "tanh"
    assert any(isinstance(m, nn.Tanh) for m in rebuilt) and not any(isinstance(m, nn.ReLU) for m in rebuilt)
    assert results.table["setting"].tolist() == ["activation=relu", "activation=tanh"]
    with pytest.raises(UserError, match="holds another comparison"):
        run_compare(grid(activation=["relu", "tanh"]), out, seed=6)


def test_an_interrupted_comparison_resumes_to_the_same_result(tmp_path, monkeypatch):
    settings = grid(optimizer=["sgd", "rmsprop", "adam"])
    straight = run_compare(settings, tmp_path / "straight", epochs=3)

    real_fit, calls, stop_in = compare_module.fit, [], [2]

    def fit_stopped_in_setting_2(*args, on_epoch_end, **kwargs):
        calls.append(kwargs["initial_epoch"])

        def hook(epoch, logs):
            on_epoch_end(epoch, logs)
            if len(calls) == stop_in[0] and epoch == 0:  # Ctrl-C during the second setting, after its epoch 1
                stop_in[0] = None
                raise TrainingInterrupted(kwargs["history"], epoch + 1)

        return real_fit(*args, on_epoch_end=hook, **kwargs)

    monkeypatch.setattr(compare_module, "fit", fit_stopped_in_setting_2)
    with pytest.raises(TrainingInterrupted):
        run_compare(settings, tmp_path / "stopped", epochs=3)
    stopped = tmp_path / "stopped"
    assert json.loads((stopped / "optimizer-rmsprop" / "run.json").read_text())["status"] == "interrupted"
    assert not (stopped / "optimizer-adam").exists()

    calls.clear()
    resumed = run_compare(settings, stopped, epochs=3)
    assert calls == [1, 0]  # sgd skipped, rmsprop continued from epoch 1, adam from the start
    for name in straight.histories:
        assert resumed.histories[name].history == straight.histories[name].history, name
    assert resumed.table.drop(columns="seconds_per_epoch").equals(straight.table.drop(columns="seconds_per_epoch"))
    assert len(json.loads((stopped / "optimizer-rmsprop" / "run.json").read_text())["epoch_seconds"]) == 3

    calls.clear()
    longer = run_compare(settings, stopped, epochs=4)  # more epochs: each setting continues
    assert calls == [3, 3, 3]
    assert all(len(h.epoch) == 4 for h in longer.histories.values())


# --- the figure ------------------------------------------------------------------------------------


def test_overlay_figure_from_histories(tmp_path):
    from cnn_torch.plots import comparison_frame, overlay_histories, plot_comparison

    a, b = History(), History()
    for epoch in range(3):
        a.append(epoch, {"loss": 2 - epoch / 2, "accuracy": 0.3 + epoch / 10, "val_loss": 2.1, "val_accuracy": 0.3})
        b.append(epoch, {"loss": 1.5, "accuracy": 0.5, "val_loss": 1.6 - epoch / 10, "val_accuracy": 0.4})
    frame = comparison_frame({"sgd": a, "adam": b})
    assert len(frame) == 2 * 3 * 4 and set(frame["split"]) == {"train", "val"}
    assert frame["epoch"].min() == 1
    figure = overlay_histories({"sgd": a, "adam": b}, "optimizers")
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == ["sgd", "adam"]
    assert [ax.get_ylabel() for ax in figure.axes] == ["accuracy", "loss"]
    path = plot_comparison({"sgd": a, "adam": b}, tmp_path / "fig" / "c.png", "optimizers")
    assert path.stat().st_size > 10_000


def test_plot_history_script_overlays_several_runs(tmp_path):
    for name, shift in (("run-a", 0.0), ("run-b", 0.1)):
        history = History()
        for epoch in range(2):
            history.append(epoch, {"loss": 1 - shift, "accuracy": 0.5 + shift, "val_loss": 1.2, "val_accuracy": 0.4})
        (tmp_path / name).mkdir()
        save_history(history, tmp_path / name)
    result = run_cli("plot_history", tmp_path / "run-a", tmp_path / "run-b" / "history.json", "--fig-dir",
                     tmp_path / "fig", cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = list((tmp_path / "fig").glob("*comparison*.png"))
    assert len(figures) == 1 and figures[0].stat().st_size > 10_000


# --- the models' dropout and activation arguments -----------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_dropout_and_activation_keep_the_parameter_counts(name):
    plain = count_params(build_model(name))
    for activation in ACTIVATIONS:
        assert count_params(build_model(name, activation=activation)) == plain
    assert count_params(build_model(name, dropout=0.3)) == plain
    default = build_model(name)
    assert set(default.model_kwargs) == {"num_classes", "input_shape", "init"}  # the lesson's models unchanged
    changed = build_model(name, dropout=0.25, activation="selu")
    assert changed.model_kwargs["dropout"] == 0.25 and changed.model_kwargs["activation"] == "selu"
    assert [type(m) for m in changed if isinstance(m, (nn.SELU, nn.ReLU))] and not any(
        isinstance(m, nn.ReLU) for m in changed)
    dropouts = [m for m in changed if isinstance(m, nn.Dropout)]
    assert [m.p for m in dropouts] == [0.25]
    assert isinstance(list(changed)[list(changed).index(dropouts[0]) + 1], nn.Flatten)  # Dropout before Flatten
    rebuilt = build_model(changed.model_name, **changed.model_kwargs)
    rebuilt.load_state_dict(changed.state_dict())


def test_model_argument_defaults_are_the_lessons():
    assert [m.p for m in build_model("model_dropout") if isinstance(m, nn.Dropout)] == [0.5]
    assert not any(isinstance(m, nn.Dropout) for m in build_model("cifar_model_small"))
    assert [m.p for m in build_model("model_dropout", dropout=0.0) if isinstance(m, nn.Dropout)] == [0.0]
    assert build_model("model_dropout", dropout=0.0).model_kwargs["dropout"] == 0.0
    leaky = [m for m in build_model("cifar_model", activation="leaky_relu") if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == 4 and all(m.negative_slope == 0.2 for m in leaky)  # Keras's slope, not torch's 0.01


@pytest.mark.parametrize(("kwargs", "message"), [({"activation": "gelu"}, "unknown activation 'gelu'"),
                                                   ({"dropout": 1.0}, r"not a rate in \[0, 1\)"),
                                                   ({"dropout": -0.1}, r"not a rate in \[0, 1\)"),
                                                   ({"dropout": True}, r"not a rate in \[0, 1\)")])
def test_bad_model_arguments_raise(kwargs, message):
    with pytest.raises(UserError, match=message):
        build_model("cifar_model_small", **kwargs)


# --- the command line --------------------------------------------------------------------------


def compare_cli(*args: str) -> subprocess.CompletedProcess:
    return run_cli("compare", *args, cwd=ROOT)


def test_cli_compares_writes_and_resumes(tmp_path):
    out = tmp_path / "c"
    common = ("--dataset", "shapes", "--limit", "120", "--seed", "3", "--quiet")
    result = compare_cli(*common, "--epochs", "1", "--optimizer", "sgd", "adam", "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    table = lines[lines.index(next(line for line in lines if line.startswith("optimizer "))):][:3]
    assert table[0].split() == ["optimizer", "best", "val_accuracy", "epoch", "final", "val_loss", "s/epoch"]
    assert [line.split()[0] for line in table[1:3]] == ["sgd", "adam"] and all(len(line) <= 80 for line in table)
    assert re.search(r"Best: 0\.\d{4} using \{'optimizer'", result.stdout)
    assert (out / "table.md").read_text().startswith("| setting | best_val_accuracy |")  # every column kept there
    assert (out / "comparison.png").is_file() and (out / "optimizer-adam" / "model.pt").is_file()
    record = json.loads((out / "optimizer-sgd" / "run.json").read_text())
    assert record["flags"]["dataset"] == "shapes" and record["flags"]["limit"] == 120

    again = compare_cli("--resume", str(out), "--epochs", "2", "--quiet")
    assert again.returncode == 0, again.stderr
    assert len(json.loads((out / "optimizer-sgd" / "history.json").read_text())["epoch"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--dataset", "shapes"), "nothing to compare"),
        (("--dataset", "shapes", "--dropout", "1.5"), "dropout must be a rate"),
        (("--dataset", "shapes", "--optimizer", "sgd", "--epochs", "0"), "--epochs must be a positive"),
        (("--dataset", "shapes", "--optimizer", "sgd", "--folds", "1"), "--folds must be at least 2"),
        (("--resume", "nowhere"), "has no comparison.json"),
    ],
)
def test_cli_errors_are_one_line_with_exit_2(args, message):
    result = compare_cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1
