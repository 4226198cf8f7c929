"""Every row of the table in docs/errors.md: bad input gets one line naming the problem and the fix.

CLI rows run ``scripts/train.py`` (and ``scripts/evaluate.py``) from the repository root and
check: a non-zero exit, no Python traceback, one ``error:`` line holding the message's key
words, and nothing written. Every row calls the script's ``main(argv)`` in this process (the
same code, without a torch start per row); a few rows (``SUBPROCESS_ROWS``) run again in real
processes, exactly as a learner runs them, started together from one fixture.
API rows call the function and expect a ``UserError``.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from cnn_torch import fit, models
from cnn_torch.checkpoints import FORMAT, load_checkpoint, load_weights, make_checkpoint, save_checkpoint
from cnn_torch.data import load_image_folder
from cnn_torch.errors import UserError
from cnn_torch.history import History

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "scripts" / "train.py"
EVALUATE = ROOT / "scripts" / "evaluate.py"


class CreatesMarker:
    """A crafted pickle: unpickling it calls ``open(marker, "w")``, creating the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class RunsShellCommand:
    """A crafted pickle: unpickling it calls ``os.system("touch marker")``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def save_image(path: Path, size=(32, 32), mode: str = "RGB", seed: int = 0) -> None:
    """A random image of ``size`` (width, height), saved in ``mode`` (RGB, L = grayscale, RGBA)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)


def image_tree(root: Path, per_class: int = 3) -> Path:
    """``root/train/{cat,dog}/<i>.png``, 32x32 RGB."""
    for label, name in enumerate(("cat", "dog")):
        for i in range(per_class):
            save_image(root / "train" / name / f"{i}.png", seed=10 * label + i)
    return root


def resumable_checkpoint(model_name: str = "cifar_model_small", epoch: int = 1) -> dict:
    model = models.build_model(model_name)
    optimizer = torch.optim.Adam(model.parameters())
    return make_checkpoint(
        model, class_names=[str(i) for i in range(10)], epoch=epoch, history=History(),
        optimizer=optimizer, seed=0, resumable=True,
    )  # fmt: skip


def make_bad_inputs(root: Path) -> None:
    """Every bad input of the table, written under ``root``."""
    (root / "empty").mkdir()
    save_image(root / "no_train" / "cat" / "0.png")  # DIR/<class>/ without the train/ level
    save_image(root / "flat_train" / "train" / "0.png")  # images straight in train/, no class folders
    (root / "a_file").write_text("not a folder")
    (image_tree(root / "empty_class") / "train" / "bird").mkdir()
    (image_tree(root / "corrupt") / "train" / "cat" / "bad.jpg").write_bytes(b"not a jpeg at all")
    save_image(root / "outer" / "inner_data" / "train" / "cat" / "0.png")  # --data-dir one level too high
    tree = image_tree(root / "non_image")
    (tree / "train" / "cat" / "notes.txt").write_text("not an image")
    (tree / "train" / "dog" / "labels.csv").write_text("file,label\n")
    tree = image_tree(root / "gray_rgba")
    save_image(tree / "train" / "cat" / "gray.png", mode="L", seed=7)
    save_image(tree / "train" / "dog" / "rgba.png", mode="RGBA", seed=8)

    # checkpoints: each bad one both as a file (evaluate.py, API) and as a run's last.pt (--resume)
    good = resumable_checkpoint()
    save_checkpoint(root / "good.pt", good)
    raw = (root / "good.pt").read_bytes()
    bad = {
        "truncated": lambda path: path.write_bytes(raw[: len(raw) // 2]),
        "empty_file": lambda path: path.write_bytes(b""),
        "text": lambda path: path.write_text("hello, I am not a checkpoint"),
        "plain_state_dict": lambda path: torch.save(models.cifar_model_small().state_dict(), path),
        "version_99": lambda path: torch.save({**good, "format_version": 99}, path),
        "not_resumable": lambda path: save_checkpoint(path, _weights_only(good)),
        "finished": lambda path: save_checkpoint(path, {**good, "epoch": 2}),
        "crafted_open": lambda path: torch.save({"format": FORMAT, "x": CreatesMarker(root / "OPENED")}, path),
        "crafted_system": lambda path: path.write_bytes(pickle.dumps(RunsShellCommand(root / "SHELL_RAN"))),
    }  # fmt: skip
    for name, write in bad.items():
        write(root / f"{name}.pt")
        (root / "runs" / name).mkdir(parents=True)
        write(root / "runs" / name / "last.pt")
    # a finished run that a new run with --out must not overwrite
    (root / "old_run").mkdir()
    (root / "old_run" / "history.json").write_text('{"history": {"loss": [1.0]}, "epoch": [0]}\n')


def _weights_only(checkpoint: dict) -> dict:
    """A model.pt-style checkpoint: no optimizer or RNG state, so it cannot resume."""
    return {key: value for key, value in checkpoint.items() if key not in ("optimizer", "rng")}


# --- CLI rows: (id, script, arguments, key words of the message) ------------------------------
# "{r}" is the folder of bad inputs. "usage" rows are argparse's: usage lines, then one error line.

TRAIN_ROWS = [
    ("data_dir_missing", ["--dataset", "folder", "--data-dir", "{r}/nowhere"], ["{r}/nowhere", "does not exist"]),
    ("data_dir_is_a_file", ["--dataset", "folder", "--data-dir", "{r}/a_file"], ["is a file", "train/"]),
    ("data_dir_empty", ["--dataset", "folder", "--data-dir", "{r}/empty"], ["holds neither", "found: nothing"]),
    ("no_train_folder", ["--dataset", "folder", "--data-dir", "{r}/no_train"], ["holds class folders (cat/)",
                                                                                 "move them into {r}/no_train/train/"]),
    ("data_dir_one_level_too_high", ["--data-dir", "{r}/outer"], ["holds no train/ itself but inner_data/ does",
                                                                  "pass --data-dir {r}/outer/inner_data"]),
    ("data_dir_missing_no_dataset", ["--data-dir", "{r}/nowhere"], ["{r}/nowhere", "does not exist"]),
    ("data_dir_missing_cifar10", ["--dataset", "cifar10", "--data-dir", "{r}/nowhere"], ["does not exist"]),
    ("data_dir_is_the_train_folder", ["--data-dir", "{r}/gray_rgba/train"], ["holds class folders (cat/, dog/)",
                                                                             "--data-dir {r}/gray_rgba"]),
    ("data_dir_holds_neither", ["--data-dir", "{r}/empty"], ["holds neither", "cifar-10-batches-py",
                                                              "--dataset cifar10"]),
    ("monitor_keras_1_name", ["--dataset", "shapes", "--monitor", "val_acc"], ["Keras 1", "val_accuracy"]),
    ("break_at_past_last_epoch", ["--dataset", "shapes", "--break-at", "3:1"], ["past the last epoch", "1 to 1"]),
    ("break_at_past_last_batch", ["--dataset", "shapes", "--limit", "40", "--break-at", "1:99"], ["only 10 batches",
                                                                                               "1 to 10"]),
    ("no_class_folders", ["--dataset", "folder", "--data-dir", "{r}/flat_train"], ["no class folders", "per class"]),
    ("empty_class_folder", ["--data-dir", "{r}/empty_class"], ["train/bird", "has no images", "remove it"]),
    ("corrupt_image", ["--data-dir", "{r}/corrupt"], ["bad.jpg", "corrupt", "delete or replace"]),
    ("epochs_zero", ["--dataset", "shapes", "--epochs", "0"], ["--epochs", "positive", "--epochs 10"]),
    ("epochs_negative", ["--dataset", "shapes", "--epochs", "-3"], ["--epochs", "positive", "--epochs 10"]),
    ("batch_size_zero", ["--dataset", "shapes", "--batch-size", "0"], ["--batch-size", "positive", "32"]),
    ("batch_size_negative", ["--dataset", "shapes", "--batch-size", "-1"], ["--batch-size", "positive", "32"]),
    ("validation_split_zero", ["--dataset", "shapes", "--validation-split", "0"], ["--validation-split", "0.2"]),
    ("validation_split_one", ["--dataset", "shapes", "--validation-split", "1"], ["--validation-split", "0.2"]),
    ("validation_split_above_one", ["--dataset", "shapes", "--validation-split", "1.5"], ["between 0 and 1"]),
    ("learning_rate_zero", ["--dataset", "shapes", "--learning-rate", "0"], ["--learning-rate", "positive"]),
    ("limit_zero", ["--dataset", "shapes", "--limit", "0"], ["--limit", "positive"]),
    ("device_cuda", ["--dataset", "shapes", "--device", "cuda"], ["CUDA is not available", "--device cpu"]),
    ("device_mps", ["--dataset", "shapes", "--device", "mps"], ["MPS is not available", "--device cpu"]),
    ("out_holds_a_run", ["--dataset", "shapes", "--out", "{r}/old_run"], ["already holds a run", "--resume"]),
    ("resume_missing", ["--resume", "{r}/nowhere"], ["no last.pt", "finished an epoch"]),
    ("resume_truncated", ["--resume", "{r}/runs/truncated"], ["truncated", "another checkpoint"]),
    ("resume_empty_file", ["--resume", "{r}/runs/empty_file"], ["truncated or not a checkpoint"]),
    ("resume_text_file", ["--resume", "{r}/runs/text"], ["truncated or not a checkpoint"]),
    ("resume_other_tool", ["--resume", "{r}/runs/plain_state_dict"], ["not a cnn-torch checkpoint"]),
    ("resume_version_99", ["--resume", "{r}/runs/version_99"], ["format version 99", "reads version 1"]),
    ("resume_not_resumable", ["--resume", "{r}/runs/not_resumable"], ["not resumable", "start a new run"]),
    ("resume_finished", ["--resume", "{r}/runs/finished", "--epochs", "2"], ["already finished 2", "--epochs"]),
    ("resume_crafted_open", ["--resume", "{r}/runs/crafted_open"], ["could run code", "refused"]),
    ("resume_crafted_system", ["--resume", "{r}/runs/crafted_system"], ["could run code", "refused"]),
    ("unknown_model", ["--model", "resnet50"], ["usage", "--model", "invalid choice", "cifar_model_small"]),
    ("unknown_optimizer", ["--optimizer", "adamw"], ["usage", "--optimizer", "invalid choice", "adam"]),
    ("unknown_dataset", ["--dataset", "mnist"], ["usage", "--dataset", "invalid choice", "shapes"]),
    ("epochs_not_a_number", ["--epochs", "ten"], ["usage", "--epochs", "invalid int value"]),
]  # fmt: skip

EVALUATE_ROWS = [
    ("evaluate_missing", ["--checkpoint", "{r}/nowhere.pt"], ["does not exist", "model.pt, best.pt or last.pt"]),
    ("evaluate_run_folder", ["--checkpoint", "{r}/runs/truncated"], ["is a folder", "inside it"]),
    ("evaluate_truncated", ["--checkpoint", "{r}/truncated.pt"], ["truncated", "another checkpoint"]),
    ("evaluate_other_tool", ["--checkpoint", "{r}/plain_state_dict.pt"], ["not a cnn-torch checkpoint"]),
    ("evaluate_version_99", ["--checkpoint", "{r}/version_99.pt"], ["format version 99"]),
    ("evaluate_crafted_open", ["--checkpoint", "{r}/crafted_open.pt"], ["could run code", "refused"]),
    ("evaluate_crafted_system", ["--checkpoint", "{r}/crafted_system.pt"], ["could run code", "refused"]),
    ("evaluate_no_checkpoint_flag", [], ["usage", "--checkpoint", "required"]),
]  # fmt: skip

# Inputs that are not errors (Keras accepts them too): the run trains.
ACCEPTED_ROWS = [
    ("non_image_files_are_skipped", ["--data-dir", "{r}/non_image"]),
    ("grayscale_and_rgba_become_rgb", ["--data-dir", "{r}/gray_rgba"]),
]

ROWS = {row_id: (TRAIN, argv, words) for row_id, argv, words in TRAIN_ROWS}
ROWS |= {row_id: (TRAIN, argv, []) for row_id, argv in ACCEPTED_ROWS}
if EVALUATE.exists():  # written by another worker; its rows join once it is there
    ROWS |= {row_id: (EVALUATE, argv, words) for row_id, argv, words in EVALUATE_ROWS}


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad_inputs")
    make_bad_inputs(root)
    return root


# Rows that run again in a real process, as a learner runs them: a message of the code's
# (train.py, evaluate.py) and one of argparse's, each with nothing else on stderr.
SUBPROCESS_ROWS = ["data_dir_missing", "unknown_model", "evaluate_crafted_system"]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    """Where the rows' runs and figures would go; a refused row must leave nothing here."""
    return tmp_path_factory.mktemp("outputs")


def row_command(row_id: str, bad_inputs: Path, outputs: Path) -> tuple[Path, list[str]]:
    script, argv, _ = ROWS[row_id]
    argv = [arg.format(r=bad_inputs) for arg in argv]
    if script == TRAIN:  # tiny runs whose files go to the test's folder (--out comes first: a row may override it)
        argv = ["--out", str(outputs / row_id), "--fig-dir", str(outputs / "fig"), "--epochs", "1",
                "--batch-size", "4", "--quiet", *argv]  # fmt: skip
    else:
        argv = [*argv, "--fig-dir", str(outputs / "fig")]
    return script, argv


@pytest.fixture(scope="module")
def cli_results(bad_inputs, outputs) -> dict[str, subprocess.CompletedProcess]:
    """Every row once, through the script's ``main(argv)`` in this process."""
    env = {"CNN_TORCH_CACHE": str(outputs / "cache")}
    results = {}
    for row_id in ROWS:
        script, argv = row_command(row_id, bad_inputs, outputs)
        results[row_id] = run_cli(script.stem, *argv, cwd=ROOT, env=env)
    return results


@pytest.fixture(scope="module")
def subprocess_results(bad_inputs, tmp_path_factory) -> tuple[Path, dict[str, subprocess.CompletedProcess]]:
    """The ``SUBPROCESS_ROWS``, each in its own process, started together; their own outputs folder."""
    outputs = tmp_path_factory.mktemp("outputs_subprocess")
    env = {**os.environ, "CNN_TORCH_CACHE": str(outputs / "cache"), "OMP_NUM_THREADS": "1"}
    processes = {}
    for row_id in SUBPROCESS_ROWS:
        script, argv = row_command(row_id, bad_inputs, outputs)
        processes[row_id] = subprocess.Popen([sys.executable, str(script), *argv], cwd=ROOT, env=env,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    results = {}
    for row_id, process in processes.items():
        stdout, stderr = process.communicate(timeout=600)
        results[row_id] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return outputs, results


def error_line(stderr: str, usage: bool) -> str:
    """The one line that carries the message: ``error: ...``, or argparse's ``<prog>: error: ...``."""
    lines = [line for line in stderr.splitlines() if line.startswith("error") or ": error: " in line]
    assert len(lines) == 1, f"expected exactly one error line, got:\n{stderr}"
    if not usage:
        assert lines[0].startswith("error: "), stderr
    return lines[0]


ERROR_ROW_IDS = [row_id for row_id, (_, _, words) in ROWS.items() if words]


def check_refused(result: subprocess.CompletedProcess, row_id: str, bad_inputs: Path, outputs: Path) -> None:
    _, _, words = ROWS[row_id]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    usage = words[0] == "usage"
    line = error_line(result.stderr, usage)
    if usage:
        assert result.stderr.startswith("usage:")  # argparse: usage lines, then the one error line
        words = words[1:]
    else:
        assert result.stderr.strip() == line  # nothing else: no warnings either
    for word in words:
        assert word.format(r=bad_inputs) in line, line
    # nothing written: no run directory, no figures, no folder made for a mistyped --data-dir
    assert not (outputs / row_id).exists()
    assert not (bad_inputs / "nowhere").exists()
    assert not (outputs / "fig").exists() or not any((outputs / "fig").glob(f"{row_id}_*"))


@pytest.mark.parametrize("row_id", ERROR_ROW_IDS)
def test_cli_bad_input_gets_one_line_naming_the_fix(cli_results, bad_inputs, outputs, row_id):
    check_refused(cli_results[row_id], row_id, bad_inputs, outputs)


@pytest.mark.subprocess
@pytest.mark.parametrize("row_id", SUBPROCESS_ROWS)
def test_cli_bad_input_in_a_real_process(subprocess_results, bad_inputs, row_id):
    outputs, results = subprocess_results
    check_refused(results[row_id], row_id, bad_inputs, outputs)
    assert not (bad_inputs / "SHELL_RAN").exists()


def test_a_refused_out_leaves_the_old_run_untouched(cli_results, bad_inputs):
    assert cli_results["out_holds_a_run"].returncode == 2
    assert (bad_inputs / "old_run" / "history.json").read_text() == '{"history": {"loss": [1.0]}, "epoch": [0]}\n'
    assert sorted(path.name for path in (bad_inputs / "old_run").iterdir()) == ["history.json"]


def test_crafted_pickles_never_run(cli_results, bad_inputs):
    for row_id in ("resume_crafted_open", "resume_crafted_system", "evaluate_crafted_open", "evaluate_crafted_system"):
        if row_id in cli_results:
            assert cli_results[row_id].returncode == 2
    assert not (bad_inputs / "OPENED").exists()
    assert not (bad_inputs / "SHELL_RAN").exists()


@pytest.mark.parametrize("row_id", [row_id for row_id, _ in ACCEPTED_ROWS])
def test_cli_accepts_what_keras_accepts(cli_results, outputs, row_id):
    result = cli_results[row_id]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    history = json.loads((outputs / row_id / "history.json").read_text())
    # validation: the last 20% of the images; 4 per batch: 6 images -> 4 + 2, 8 images -> 6 + 2
    images = {"non_image_files_are_skipped": 6, "grayscale_and_rgba_become_rgb": 8}[row_id]
    assert history["params"]["steps"] == -(-int(images * 0.8) // 4)


def test_non_image_files_are_skipped_and_odd_modes_become_rgb(bad_inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_TORCH_CACHE", str(tmp_path / "cache"))
    skipped = load_image_folder(bad_inputs / "non_image")
    assert len(skipped.train_labels) == 6  # notes.txt and labels.csv are not images
    converted = load_image_folder(bad_inputs / "gray_rgba")
    assert converted.train_images.shape == (8, 3, 32, 32)
    gray = np.array(Image.open(bad_inputs / "gray_rgba" / "train" / "cat" / "gray.png"))
    matches = [image for image in converted.train_images if torch.equal(image[0], torch.from_numpy(gray))]
    assert len(matches) == 1 and torch.equal(matches[0][0], matches[0][1]) and torch.equal(matches[0][0], matches[0][2])


# --- API rows ----------------------------------------------------------------------------------


def lesson_batch(n: int = 20):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return images, torch.arange(n) % 10


def fit_once(model=None, images=None, labels=None, validation_data=None):
    model = model or models.cifar_model_small()
    default_images, default_labels = lesson_batch()
    images = default_images if images is None else images
    labels = default_labels if labels is None else labels
    optimizer = torch.optim.Adam(model.parameters())
    return fit(model, torch.nn.CrossEntropyLoss(), optimizer, images, labels, epochs=1, verbose=0,
               validation_data=validation_data)  # fmt: skip


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


IMAGES, LABELS = lesson_batch()
FIT_ROWS = [
    ("channels_last", {"images": IMAGES.permute(0, 2, 3, 1)}, ["channels-last", "permute(0, 3, 1, 2)"]),
    ("channels_last_numpy", {"images": IMAGES.permute(0, 2, 3, 1).numpy()},
     ["channels-last", "np.transpose(train_images, (0, 3, 1, 2))"]),
    ("one_hot_not_probabilities", {"labels": torch.nn.functional.one_hot(LABELS, 10) * 3}, ["not one-hot",
                                                                                          "one class index"]),
    ("one_hot_wrong_width", {"labels": torch.nn.functional.one_hot(LABELS, 12)}, ["12 one-hot columns",
                                                                                "num_classes=12"]),
    ("label_too_large", {"labels": LABELS + 5}, ["contains 14", "outside [0, 10)", "num_classes=15"]),
    ("negative_label", {"labels": LABELS - 1}, ["contains -1", "outside [0, 10)", "fix the labels"]),
    ("images_with_nan", {"images": IMAGES.float().div(255).index_put_((torch.tensor([0]),), torch.tensor(torch.nan))},
     ["NaN or inf", "remove or replace"]),
    ("validation_data_none", {"validation_data": (None, None)}, ["holds None", "validation_split=0.2"]),
    ("softmax_model", {"model": "softmax"}, ["probabilities", "remove the final softmax", "from_logits"]),
]  # fmt: skip


@pytest.mark.parametrize("row_id, change, words", FIT_ROWS, ids=[row[0] for row in FIT_ROWS])
def test_fit_catches_learner_mistakes(row_id, change, words):
    if change.get("model") == "softmax":
        change = {"model": torch.nn.Sequential(models.cifar_model_small(), torch.nn.Softmax(dim=1))}
    with pytest.raises(UserError) as excinfo:
        fit_once(**change)
    message = one_line(excinfo)
    for word in words:
        assert word in message


CHECKPOINT_ROWS = [
    ("missing", "nowhere.pt", ["does not exist"]),
    ("a_folder", "runs", ["is a folder"]),
    ("truncated", "truncated.pt", ["truncated or not a checkpoint", "another checkpoint"]),
    ("empty_file", "empty_file.pt", ["truncated or not a checkpoint"]),
    ("text", "text.pt", ["truncated or not a checkpoint"]),
    ("other_tool", "plain_state_dict.pt", ["not a cnn-torch checkpoint"]),
    ("unknown_version", "version_99.pt", ["format version 99", "the cnn-torch version that wrote it"]),
    ("crafted_open", "crafted_open.pt", ["could run code", "refused"]),
    ("crafted_system", "crafted_system.pt", ["could run code", "refused"]),
]


@pytest.mark.parametrize("row_id, name, words", CHECKPOINT_ROWS, ids=[row[0] for row in CHECKPOINT_ROWS])
def test_load_checkpoint_refuses_bad_files(bad_inputs, row_id, name, words):
    with pytest.raises(UserError) as excinfo:
        load_checkpoint(bad_inputs / name)
    message = one_line(excinfo)
    for word in words:
        assert word in message
    assert not (bad_inputs / "OPENED").exists() and not (bad_inputs / "SHELL_RAN").exists()


def test_a_good_checkpoint_loads(bad_inputs):
    assert load_checkpoint(bad_inputs / "good.pt")["model_name"] == "cifar_model_small"


def test_weights_of_another_model_are_refused(bad_inputs):
    checkpoint = load_checkpoint(bad_inputs / "good.pt")
    with pytest.raises(UserError) as excinfo:
        load_weights(models.model_intro(num_classes=10), checkpoint)
    assert "holds a cifar_model_small but the model is a model_intro" in one_line(excinfo)
    with pytest.raises(UserError) as excinfo:
        load_weights(models.cifar_model_small(num_classes=3), checkpoint)
    message = one_line(excinfo)
    assert "do not fit this model" in message and "size mismatch" in message and "torch.Size([3, 50])" in message
