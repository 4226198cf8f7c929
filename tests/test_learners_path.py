"""The paths a learner walks, tried the way a learner tries them.

The first command with no network, the one-line messages for mistyped paths, what fit
accepts (as Keras does) and what it warns about, the epoch line on an 80-column terminal,
a notebook, and the pdb recipe of docs/debugging.md driven through stdin.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, run_in_terminal
from torch import nn

from cnn_torch import fit, models
from cnn_torch.errors import UserError
from cnn_torch.machinery.checks import InputWarning

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "scripts" / "train.py"
# No network: every download goes to a proxy that refuses it at once (urllib reads these).
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "OMP_NUM_THREADS": "1"}


def run_script(*argv, cwd: Path, env: dict | None = None, timeout: int = 600, stdin: str | None = None):
    return subprocess.run(
        [sys.executable, *map(str, argv)], cwd=cwd, env={**os.environ, **(env or {})}, input=stdin,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


# --- 1. the first command, offline -------------------------------------------------------------


def test_first_command_offline_trains_on_the_built_in_data_and_says_so(tmp_path):
    result = run_cli("train", "--epochs", "1", "--limit", "100", "--seed", "0", cwd=tmp_path, env=OFFLINE)
    assert result.returncode == 0, result.stderr
    notice = [line for line in result.stdout.splitlines() if line.startswith("notice:")]
    assert len(notice) == 1 and "CIFAR-10 could not be downloaded" in notice[0]
    assert "built-in shapes data" in notice[0] and "--data-dir" in notice[0]
    assert not (tmp_path / "data").exists()  # no empty download folder left behind
    (run_dir,) = (tmp_path / "runs").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["data"]["source"] == "shapes" and "CIFAR-10" in record["data"]["notice"]
    assert record["flags"]["dataset"] == "shapes"  # --resume and evaluate.py read the same data
    assert "Data:        shapes (built in: CIFAR-10 could not be downloaded)" in result.stdout
    # the learner's figures go into the run, not among the repository's own in fig/
    assert sorted(p.name for p in (run_dir / "fig").iterdir()) == [
        f"{run_dir.name}_{kind}.png" for kind in ("accuracy", "history", "loss", "train_images")
    ]


def test_start_of_run_says_what_the_run_uses(tmp_path):
    result = run_cli("train", "--dataset", "shapes", "--limit", "100", "--epochs", "1", "--seed", "5",
                     "--batch-size", "16", cwd=tmp_path, env=OFFLINE)  # fmt: skip
    assert result.returncode == 0, result.stderr
    head = result.stdout.splitlines()[:7]
    assert head[0] == "Data:       shapes: 100 training images, 10 classes, 32x32 pixels"
    assert head[1] == "Validation: 20 images (the test split: generated from seed 5)"
    assert head[2] == "Model:      cifar_model_small, 114,510 parameters"
    assert head[3].startswith("Optimizer:  Adam, learning rate 0.001")
    assert head[4] == "Batches:    16 images, 7 steps per epoch, 1 epoch"
    assert head[5] == "Device:     cpu, fp32, seed 5"
    assert all(len(line) <= 80 for line in head)


# --- 4. what fit accepts, warns about, refuses --------------------------------------------------


def lesson_like(n: int = 48):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return images, torch.arange(n) % 10


def fit_history(images, labels, **kwargs) -> dict:
    torch.manual_seed(0)
    model = models.cifar_model_small()
    optimizer = torch.optim.Adam(model.parameters(), eps=1e-7)
    return fit(model, nn.CrossEntropyLoss(), optimizer, images, labels, epochs=2, batch_size=16, seed=1,
               verbose=0, validation_split=0.25, **kwargs).history  # fmt: skip


def test_one_hot_labels_give_the_class_index_history():
    images, labels = lesson_like()
    by_index = fit_history(images, labels)
    by_one_hot = fit_history(images, nn.functional.one_hot(labels, 10).float())  # Keras: CategoricalCrossentropy
    assert by_one_hot["accuracy"] == by_index["accuracy"] and by_one_hot["val_accuracy"] == by_index["val_accuracy"]
    for key in ("loss", "val_loss"):
        assert by_one_hot[key] == pytest.approx(by_index[key], rel=1e-5)


def test_keras_style_inputs_are_accepted():
    images, labels = lesson_like()
    reference = fit_history(images, labels)
    # numpy arrays and (N, 1) labels, as keras.datasets.cifar10.load_data() returns them
    assert fit_history(images.numpy(), labels.numpy()[:, None]) == reference
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these may warn
        standardised = (images.float() / 255.0 - 0.47) / 0.25  # torchvision Normalize: about -1.9..2.1
        assert standardised.min() < -1.5 and standardised.max() > 1.5
        fit_history(standardised, labels)
        fit_history((images.float() / 255.0).clamp(max=0.9) * 1.0001 / 0.9, labels)  # rounding above 1
        fit_history(images.float() / 255.0, labels)


def test_unscaled_float_pixels_train_with_one_warning_naming_the_fix():
    images, labels = lesson_like()
    with pytest.warns(InputWarning) as caught:
        history = fit_history(images.float(), labels, validation_data=(images.float()[:8], labels[:8]))
    assert len(caught) == 1  # one warning per fit, not one per epoch or split
    message = str(caught[0].message)
    assert "values up to 255" in message and "train_images = train_images / 255.0" in message
    assert len(history["loss"]) == 2


@pytest.mark.parametrize(
    "images, fix",
    [
        (lesson_like()[0].permute(0, 2, 3, 1).numpy(), "np.transpose(train_images, (0, 3, 1, 2))"),
        (lesson_like()[0].permute(0, 2, 3, 1), "train_images.permute(0, 3, 1, 2)"),
    ],
)
def test_channels_last_fix_speaks_the_input_s_language(images, fix):
    with pytest.raises(UserError, match=re.escape(fix)):
        fit_history(images, lesson_like()[1])


def test_validation_data_without_a_test_split_is_named():
    images, labels = lesson_like()
    with pytest.raises(UserError, match=r"holds None .* pass validation_split=0\.2"):
        fit_history(images, labels, validation_data=(None, None))


def test_one_hot_rows_that_are_not_probabilities_are_refused():
    images, labels = lesson_like()
    with pytest.raises(UserError, match="not one-hot"):
        fit_history(images, nn.functional.one_hot(labels, 10).float() * 2)
    with pytest.raises(UserError, match="build the model with num_classes=12"):
        fit_history(images, nn.functional.one_hot(labels, 12).float())


# --- 5. what the learner reads --------------------------------------------------------------------


def visible_lines(output: str) -> list[str]:
    """What stays on the screen: the text after the last carriage return of each line."""
    output = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", output)  # cursor moves and colours
    return [line.split("\r")[-1].rstrip() for line in output.replace("\r\n", "\n").split("\n")]


@pytest.mark.subprocess
def test_the_epoch_line_shows_every_number_at_80_columns(tmp_path):
    output = run_in_terminal([sys.executable, str(TRAIN), "--dataset", "shapes", "--limit", "200", "--epochs", "2",
                              "--seed", "0"], cwd=tmp_path)  # fmt: skip
    lines = visible_lines(output)
    assert all(len(line) <= 80 for line in lines if re.search(r": \d\.\d{4}", line)), lines
    for epoch in (1, 2):  # Keras's "Epoch 1/2" line, then the epoch's line (wrapped between numbers)
        start = lines.index(f"Epoch {epoch}/2")
        epoch_text = " ".join(lines[start + 1 : start + 3])
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert re.search(rf"(^| ){key}: \d\.\d{{4}}", epoch_text), epoch_text


def test_help_has_one_default_per_flag_and_text_for_every_flag(tmp_path):
    result = run_cli("train", "--help", cwd=tmp_path, env={"COLUMNS": "80"})
    assert result.returncode == 0
    text = result.stdout
    assert "(default: None)" not in text and "default data/)" not in text
    options = re.split(r"\n  (?=-)", text.split("options:")[1])[1:]
    for option in options:
        flag = option.split()[0]
        assert len(option.split("\n", 1)) > 1 or "  " in option.strip(), f"{flag} has no help text"
        assert option.count("default") <= 1, f"{flag}: {option}"


# --- 6. the debugger, as docs/debugging.md says it -------------------------------------------------------


def readme_pdb_line() -> int:
    match = re.search(r"b cnn_torch/training\.py:(\d+)", (ROOT / "docs" / "debugging.md").read_text())
    assert match, "docs/debugging.md shows no `b cnn_torch/training.py:<line>`"
    return int(match.group(1))


def test_the_readme_pdb_line_comes_right_after_the_loss():
    """pdb stops BEFORE the line it names: the recipe names the first line after the loss."""
    lines = (ROOT / "cnn_torch" / "training.py").read_text().splitlines()
    line = readme_pdb_line()
    assert "optimizer.zero_grad()" in lines[line - 1], lines[line - 1]
    assert "the line `optimizer.zero_grad()`" in (ROOT / "docs" / "debugging.md").read_text()
    loss_line = next(i for i, text in enumerate(lines, start=1) if "loss = loss_fn(" in text)
    assert loss_line < line and "breakpoint()" in "".join(lines[loss_line : line - 1])  # --break-at's, between


@pytest.mark.subprocess
def test_pdb_recipe_prints_the_loss_in_the_clone_s_training_py(tmp_path):
    """docs/debugging.md's recipe, as written: b LINE, c, p loss (and a look at the images), q."""
    commands = f"b cnn_torch/training.py:{readme_pdb_line()}\nc\np loss\np tuple(images.shape)\nq\n"
    result = run_script("-m", "pdb", "-m", "cnn_torch", "train", "--dataset", "shapes", "--limit", "64",
                        "--epochs", "1", "--quiet", "--out", tmp_path / "run",
                        cwd=ROOT, env=OFFLINE, stdin=commands)  # fmt: skip
    assert "Breakpoint 1 at" in result.stdout and str(ROOT / "cnn_torch" / "training.py") in result.stdout
    assert re.search(r"\(Pdb\) tensor\(\d+\.\d+, grad_fn=<NllLossBackward0>\)", result.stdout), result.stdout
    assert "NameError" not in result.stdout and "(32, 3, 32, 32)" in result.stdout
    assert "not found from sys.path" not in result.stdout
    # q stopped the run as Ctrl-C does: recorded, no traceback
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "interrupted"
    assert "Traceback" not in result.stdout + result.stderr


# --- 7. scripts that read runs ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> Path:
    """A short run on an image folder without a test split (so it validates on the last 20%)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("folder_run")
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / "images" / "train" / name).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / "train" / name / f"{i}.png")
    env = {**OFFLINE, "CNN_TORCH_CACHE": str(root / "cache")}
    result = run_cli("train", "--data-dir", root / "images", "--epochs", "1", "--seed", "0", "--quiet",
                     "--out", root / "run", cwd=root, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return root


def test_evaluate_without_split_uses_the_validation_split_and_says_so(folder_run):
    result = run_cli("evaluate", "--checkpoint", folder_run / "run" / "best.pt",
                     cwd=folder_run, env={"CNN_TORCH_CACHE": str(folder_run / "cache")})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "no test split: evaluating the run's validation split" in result.stderr
    assert "val split: 4 images" in result.stdout
    figure = folder_run / "run" / "fig" / "run_val_confusion_matrix.png"
    assert figure.is_file() and f"Figure:      {figure}" in result.stdout


@pytest.mark.parametrize("form", ["run", "run/history.json", "run/history.csv"])
def test_plot_history_takes_a_run_its_json_or_its_csv(folder_run, tmp_path, form):
    result = run_cli("plot_history", folder_run / form, "--fig-dir", tmp_path, cwd=folder_run)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_accuracy.png", "run_history.png", "run_loss.png"]


def test_plot_history_bad_input_gets_one_line(folder_run, tmp_path):
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    for path, words in ((tmp_path / "nowhere", "does not exist"), (tmp_path / "notes.csv", "not a history"),
                        (tmp_path, "holds no history.json")):  # fmt: skip
        result = run_cli("plot_history", path, cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1 and words in result.stderr, result.stderr


def test_figure_titles_name_the_model_and_the_data(folder_run):
    from cnn_torch.cli import plot_history as script

    assert script.run_title(folder_run / "run") == "cifar_model_small on images"


# --- 5. in Jupyter ------------------------------------------------------------------------------


@pytest.mark.subprocess
def test_in_a_notebook_nothing_is_painted_as_an_error_and_the_summary_shows_once(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    cells = [
        "import torch\nfrom cnn_torch import fit, models",
        "model = models.cifar_model_small()\nmodels.summary(model)",
        "g = torch.Generator().manual_seed(0)\n"
        "images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g)\n"
        "labels = torch.arange(40) % 10\n"
        "history = fit(model, torch.nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters()), images, labels,\n"
        "              epochs=2, validation_split=0.25, seed=0)",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    resources = {"metadata": {"path": str(ROOT)}}
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3", resources=resources).execute()
    outputs = [output for cell in notebook.cells for output in cell.outputs]
    assert not [output for output in outputs if output.get("name") == "stderr"], outputs  # no red boxes
    assert not [output for output in outputs if output["output_type"] == "execute_result"]  # summary returns None
    stdout = "".join(output.get("text", "") for output in outputs if output.get("name") == "stdout")
    assert stdout.count("Total params: 114,510") == 1
    lines = stdout.splitlines()  # Keras's "Epoch 1/2", then "1/1 - 0s - 5ms/step - accuracy: ..."
    epoch_lines = [lines[i + 1] for i, line in enumerate(lines) if line.startswith("Epoch ")]
    # with ipywidgets, tqdm's live bar while the epoch runs, then Keras's verbose=1 line (its colours
    # as Jupyter shows them); without, Keras's one line per epoch
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in epoch_lines]
    assert len(plain) == 2, lines
    keras_line = r"1/1( ━+)? -? ?\d+s -? ?\d+m?s/step - accuracy: .*val_accuracy: "
    assert all(re.match(keras_line, line) for line in plain), plain
