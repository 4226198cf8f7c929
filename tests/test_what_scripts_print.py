"""What the scripts print and write, as a learner reads it: predict.py's predictions before its
figures (and a note, not an error, on a run shared read-only), one figure per image even where
two files share a name, the start lines saying what the model holds and which sizes were resized,
and every line within 80 columns (COLUMNS=80) or wrapped between words."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_runs_anywhere import (  # the read-only folder, root included (pytest puts tests/ on sys.path)
    read_only,
    writable_again,
)

from cnn_torch import models
from cnn_torch.checkpoints import save_model
from cnn_torch.cli import predict
from cnn_torch.machinery.terminal import fitted_path

CLASSES = ["cat", "dog", "truck"]


@pytest.fixture
def run_and_images(tmp_path):
    """A small model's checkpoint in run/, and cat/0450.png, dog/0450.png as the lesson's layout has them."""
    torch.manual_seed(0)
    model = models.model_intro(num_classes=len(CLASSES), input_shape=(3, 16, 16))
    save_model(model, tmp_path / "run" / "best.pt", CLASSES)
    files = []
    for i, name in enumerate(("cat", "dog")):
        (tmp_path / "test" / name).mkdir(parents=True)
        pixels = torch.full((20, 24, 3), 60 * (i + 1), dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(tmp_path / "test" / name / "0450.png")
        files.append(str(tmp_path / "test" / name / "0450.png"))
    return tmp_path / "run", files


def test_same_named_files_get_their_own_figures_each_announced_once(run_and_images, capsys):
    pytest.importorskip("captum")
    run, files = run_and_images
    assert predict.main(["--checkpoint", str(run / "best.pt"), *files, "--visualise"]) == 0
    out = capsys.readouterr().out
    fig = run / "fig"
    written = sorted(path.name for path in fig.iterdir())
    assert written == sorted(["best_filters.png", "cat_0450_feature_maps.png", "cat_0450_gradcam.png",
                              "dog_0450_feature_maps.png", "dog_0450_gradcam.png"])  # fmt: skip
    announced = [line.removeprefix("What it sees: ") for line in out.splitlines() if line.startswith("What it sees")]
    assert sorted(Path(line).name for line in announced) == written  # each file once
    assert out.index(f"{files[1]}: ") < out.index("What it sees")  # the predictions first


def test_figure_names_are_unique():
    assert predict.figure_names(["a/cat/1.jpg", "a/dog/1.jpg", "b/x.jpg"]) == ["cat_1", "dog_1", "x"]
    assert predict.figure_names(["a/cat/1.jpg", "b/cat/1.jpg"]) == ["cat_1_1", "cat_1_2"]
    assert predict.figure_names(["photo.jpg"]) == ["photo"]


def test_predict_on_a_read_only_run_prints_its_predictions_then_a_note(run_and_images, tmp_path):
    pytest.importorskip("captum")
    run, files = run_and_images
    try:
        options = read_only(run)
        command = [sys.executable, "-m", "cnn_torch.cli.predict", "--checkpoint", str(run / "best.pt"), *files,
                   "--visualise"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env, **options)
        assert result.returncode == 0, result.stderr
        assert f"{files[0]}: " in result.stdout and f"{files[1]}: " in result.stdout
        assert "--fig-dir" not in result.stdout and "error" not in result.stderr
        assert result.stderr.strip().splitlines()[-1] == (
            f"note: no figures: {run / 'fig'} cannot be written (read-only): pass --fig-dir DIR to draw them")
        assert not (run / "fig").exists()
    finally:
        writable_again(run)


def test_a_long_path_breaks_after_a_slash(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    run = "cifar_model_small_2026-12-05_17-30-14_seed1"
    path = f"runs/{run}/fig/{run}_train_images.png"
    lines = fitted_path("Images:     ", path).splitlines()
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines)
    assert lines[0].removeprefix("Images:     ") + lines[1].strip() == path
    assert lines[0].endswith("/") and lines[1].startswith(" " * 12)
    monkeypatch.delenv("COLUMNS")
    assert fitted_path("Images:     ", path) == "Images:     " + path  # a pipe or a log: one line


def test_train_s_lines_say_what_the_model_holds_and_fit_80_columns(tmp_path, monkeypatch, capsys):
    """A learner's run at 80 columns: the start lines name --batch-norm and --augment, say which
    images were resized (width x height, of all splits), and no line is cut inside a word."""
    from test_lesson_folders import write_lesson_tree

    from cnn_torch.cli import train

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("CNN_TORCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # where a learner types the command: paths below it are shown relative
    root = write_lesson_tree(tmp_path / "cifar10_images_small", sizes=((32, 32), (48, 40)))
    out_dir = Path("runs") / "cifar_model_small_with_batch_norm_and_augmentation_2026-12-05_seed1"
    argv = ["--data-dir", str(root), "--model", "cifar_model_small", "--batch-norm", "--augment", "flip",
            "rotation=0.1", "--epochs", "1", "--seed", "1", "--out", str(out_dir)]  # fmt: skip
    assert train.main(argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    # within 80 columns, or one word (a path part) too long to break anywhere
    too_long = [line for line in lines if len(line) > 80 and " " in line.strip()]
    assert not too_long, "\n".join(too_long)
    joined = " ".join(out.split())
    assert "Resized: 30 images of all splits from 40x48 to 32x32 (width x height)" in joined
    assert "Model: cifar_model_small + batch normalisation, augmentation: flip=horizontal, rotation=0.1," in joined
    figures = [line for line in lines if line.startswith("Figure:")]
    assert figures and all(line.endswith("/") for line in figures)  # the path breaks after a folder
    images = next(i for i, line in enumerate(lines) if line.startswith("Images:"))
    shown = [lines[images].removeprefix("Images:")]
    shown += [line for line in itertools.takewhile(lambda line: line.startswith(" " * 12), lines[images + 1:])]
    assert "".join(part.strip() for part in shown) == str(out_dir / "fig" / f"{out_dir.name}_train_images.png")


def test_compare_s_table_fits_80_columns(tmp_path, monkeypatch, capsys):
    """Seven axes: the table's first column is headed "setting", its axes named on a line above,
    the two-word headers on two lines; the settings' lines wrap between words."""
    from cnn_torch.cli import compare

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("CNN_TORCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    argv = ["--dataset", "shapes", "--limit", "40", "--epochs", "1", "--batch-size", "20", "--seed", "0",
            "--optimizer", "sgd", "adam", "--learning-rate", "0.01", "--dropout", "0.1", "--activation", "tanh",
            "--l2", "0.001", "--augment", "flip", "--out", "c"]  # fmt: skip
    assert compare.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
    assert "setting: optimizer, learning_rate, batch_size, dropout, activation, augment, l2" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith("setting  "))
    assert lines[header - 1].split() == ["best", "final"] and lines[header].split()[1:] == [
        "val_accuracy", "epoch", "val_loss", "s/epoch"]
    assert lines[header + 1].startswith("sgd, 0.01, 20, 0.1, tanh, flip, 0.001")
