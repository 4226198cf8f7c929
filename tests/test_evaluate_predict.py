"""Episode 05: the confusion matrix and per-class accuracy, scripts/evaluate.py against a hand
computation, image files read like ``keras.utils.load_img``, and scripts/predict.py."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli_module
from PIL import Image
from torch.nn import functional as F

from cnn_torch import data
from cnn_torch.checkpoints import make_checkpoint, save_checkpoint
from cnn_torch.errors import UserError
from cnn_torch.history import History
from cnn_torch.metrics import (
    confusion_matrix,
    format_confusion_matrix,
    format_per_class,
    per_class_accuracy,
)
from cnn_torch.models import build_model
from cnn_torch.platform.fileio import write_json
from cnn_torch.sources.image_files import load_image, load_images, to_model_input

ROOT = Path(__file__).resolve().parents[1]


evaluate_script = cli_module("evaluate")
predict_script = cli_module("predict")


# --- the confusion matrix and per-class accuracy ------------------------------------------------


def test_confusion_matrix_rows_are_true_labels():
    true_labels = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    predicted = [0, 1, 0, 1, 1, 0, 2, 2, 1]
    expected = [
        [2, 1, 0],  # two 0s right, one 0 taken for a 1
        [0, 2, 0],
        [1, 1, 2],
    ]
    matrix = confusion_matrix(torch.tensor(true_labels), torch.tensor(predicted), num_classes=3)
    assert matrix.dtype == torch.int64
    assert matrix.tolist() == expected
    assert per_class_accuracy(matrix) == [2 / 3, 1.0, 0.5]


def test_a_class_without_images_has_no_accuracy():
    matrix = confusion_matrix([0, 0, 2], [0, 2, 2], num_classes=3)
    assert matrix.tolist() == [[1, 0, 1], [0, 0, 0], [0, 0, 1]]
    accuracy = per_class_accuracy(matrix)
    assert accuracy[0] == 0.5 and math.isnan(accuracy[1]) and accuracy[2] == 1.0
    assert "n/a" in format_per_class(matrix, ["a", "b", "c"]).splitlines()[2]


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(UserError, match="one prediction per image"):
        confusion_matrix([0, 1], [0], num_classes=2)
    with pytest.raises(UserError, match=r"\[0, 2\)"):
        confusion_matrix([0, 2], [0, 1], num_classes=2)


def test_text_tables():
    matrix = torch.tensor([[3, 1], [0, 12]])
    assert format_per_class(matrix, ["cat", "dog"]).splitlines() == [
        "class  images  correct  accuracy",
        "cat         4        3    0.7500",
        "dog        12       12    1.0000",
    ]
    assert format_confusion_matrix(matrix, ["cat", "dog"]).splitlines() == [
        "true \\ predicted  cat dog",
        "cat                 3   1",  # counts right-aligned under their class names
        "dog                 0  12",
    ]


# --- scripts/evaluate.py against a hand computation ----------------------------------------------


def make_run(run_dir: Path, flags: dict | None, seed: int = 3, class_names=None, num_classes: int = 10) -> Path:
    """A run directory with an (untrained) best.pt and, unless flags is None, a run.json."""
    torch.manual_seed(seed)
    model = build_model("cifar_model_small", num_classes=num_classes)
    class_names = class_names or data.SHAPE_CLASSES
    checkpoint = make_checkpoint(model, class_names=class_names, epoch=1, history=History(), seed=seed)
    save_checkpoint(run_dir / "best.pt", checkpoint)
    if flags is not None:
        write_json(run_dir / "run.json", {"seed": seed, "flags": flags})
    return run_dir / "best.pt"


def hand_computation(checkpoint_path: Path, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Everything evaluate.py reports, computed directly: one forward pass over all images."""
    from cnn_torch.checkpoints import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(checkpoint_path)).eval()
    with torch.no_grad():
        logits = model(images.float() / 255.0)
    predicted = logits.argmax(dim=1).tolist()
    num_classes = logits.shape[1]
    matrix = [[0] * num_classes for _ in range(num_classes)]
    for true, guess in zip(labels.tolist(), predicted, strict=True):
        matrix[true][guess] += 1
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        "accuracy": sum(t == p for t, p in zip(labels.tolist(), predicted, strict=True)) / len(labels),
        "confusion_matrix": matrix,
    }


def run_evaluate(capsys, *argv) -> dict:
    assert evaluate_script.main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


SHAPES_FLAGS = {"dataset": "shapes", "data_dir": None, "limit": 50, "validation_split": None}


@pytest.mark.parametrize("batch_size", ["32", "7"])
def test_evaluate_test_split_equals_a_hand_computation(tmp_path, capsys, batch_size):
    checkpoint = make_run(tmp_path / "run", SHAPES_FLAGS)
    report = run_evaluate(
        capsys, "--checkpoint", str(checkpoint), "--fig-dir", str(tmp_path / "fig"), "--batch-size", batch_size
    )
    lesson = data.load_data("shapes", limit=50, seed=3)  # the run's data set, limit and seed
    expected = hand_computation(checkpoint, lesson.test_images, lesson.test_labels)
    assert report["split"] == "test" and report["num_samples"] == 10
    assert report["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert report["accuracy"] == pytest.approx(expected["accuracy"])
    assert report["confusion_matrix"] == expected["confusion_matrix"]
    assert report["class_names"] == data.SHAPE_CLASSES
    for name, row in zip(data.SHAPE_CLASSES, expected["confusion_matrix"], strict=True):
        label = data.SHAPE_CLASSES.index(name)
        assert report["per_class"][name] == (row[label] / sum(row) if sum(row) else None)
    figure = tmp_path / "fig" / "run_test_confusion_matrix.png"  # the split is in the name
    assert report["figure"] == str(figure)
    assert figure.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "flags, expected_split",
    [
        (SHAPES_FLAGS, "test"),  # train.py validated on the test split: so does --split val
        ({**SHAPES_FLAGS, "validation_split": 0.3}, 0.3),  # the run's --validation-split
        (None, 0.2),  # no run.json: Keras's last 20% of the training images, with the checkpoint's seed
    ],
)
def test_evaluate_val_split_is_the_runs_validation_data(tmp_path, capsys, flags, expected_split):
    checkpoint = make_run(tmp_path / "run", flags)
    argv = ["--checkpoint", str(checkpoint), "--split", "val", "--fig-dir", str(tmp_path)]
    if flags is None:
        argv += ["--dataset", "shapes", "--limit", "50"]
    report = run_evaluate(capsys, *argv)
    lesson = data.load_data("shapes", limit=50, seed=3)
    if expected_split == "test":
        images, labels = lesson.test_images, lesson.test_labels
    else:
        *_, images, labels = data.split_validation(lesson.train_images, lesson.train_labels, expected_split)
    expected = hand_computation(checkpoint, images, labels)
    assert report["split"] == "val" and report["num_samples"] == len(labels)
    assert report["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert report["confusion_matrix"] == expected["confusion_matrix"]


def write_image_folder(root: Path, splits=("train",), per_class: int = 5) -> Path:
    rng = np.random.default_rng(0)
    for split in splits:
        for name in ("ant", "bee"):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def test_evaluate_without_a_test_split_evaluates_the_validation_split(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CNN_TORCH_CACHE", str(tmp_path / "cache"))
    tree = write_image_folder(tmp_path / "tree")
    flags = {"dataset": "folder", "data_dir": str(tree), "limit": None, "validation_split": None}
    checkpoint = make_run(tmp_path / "run", flags, class_names=["ant", "bee"], num_classes=2)
    argv = ["--checkpoint", str(checkpoint), "--fig-dir", str(tmp_path)]
    assert evaluate_script.main(argv) == 0
    captured = capsys.readouterr()
    assert "no test split: evaluating the run's validation split" in captured.err
    assert "val split:" in captured.out and (tmp_path / "run_val_confusion_matrix.png").is_file()
    assert evaluate_script.main([*argv, "--split", "test"]) == 2  # asked for by name: one line naming --split val
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "use --split val" in error and len(error.strip().splitlines()) == 1
    report = run_evaluate(capsys, *argv, "--split", "val")  # the last 20% of the 10 training images
    assert report["num_samples"] == 2 and report["class_names"] == ["ant", "bee"]


def test_evaluate_refuses_data_with_other_classes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CNN_TORCH_CACHE", str(tmp_path / "cache"))
    tree = write_image_folder(tmp_path / "tree", splits=("train", "test"))
    checkpoint = make_run(tmp_path / "run", SHAPES_FLAGS)
    assert evaluate_script.main(["--checkpoint", str(checkpoint), "--data-dir", str(tree), "--dataset", "folder"]) == 2
    assert "pass the --dataset and --data-dir the model was trained on" in capsys.readouterr().err


def test_evaluate_missing_checkpoint(tmp_path, capsys):
    assert evaluate_script.main(["--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_evaluate_text_output(tmp_path, capsys):
    checkpoint = make_run(tmp_path / "run", SHAPES_FLAGS)
    assert evaluate_script.main(["--checkpoint", str(checkpoint), "--fig-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "test split: 10 images of shapes" in out
    assert out.count("loss: ") == 1 and "- accuracy: " in out  # Keras's evaluate line
    assert "Per-class accuracy:" in out and "Confusion matrix (rows: true label" in out
    assert all(name in out for name in data.SHAPE_CLASSES)


# --- image files, read like keras.utils.load_img(path, target_size=(32, 32)) --------------------


def bilinear_resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Keras's resize from its definition (``tf.image.resize``, bilinear, no antialiasing), in
    float64: output pixel i samples the source at (i + 0.5) * source_size / target_size - 0.5,
    clamped to the image, mixing the two neighbours by the distance to each."""

    def taps(out_size: int, in_size: int):
        position = np.maximum((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0.0)
        low = np.floor(position).astype(int)
        return low, np.minimum(low + 1, in_size - 1), position - low

    pixels = array.astype(np.float64)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    top, bottom, dy = taps(height, pixels.shape[0])
    left, right, dx = taps(width, pixels.shape[1])
    rows = pixels[top] * (1 - dy)[:, None, None] + pixels[bottom] * dy[:, None, None]
    out = rows[:, left] * (1 - dx)[None, :, None] + rows[:, right] * dx[None, :, None]
    return out[:, :, 0] if array.ndim == 2 else out


def assert_within_rounding(ours: np.ndarray, reference: np.ndarray, name: str = ""):
    """uint8 pixels within rounding (0.5, and float32's error) of the float reference."""
    gap = np.abs(ours.astype(np.float64) - reference).max()
    assert gap <= 0.5 + 1e-3, f"{name}: {gap}"


def write_images(folder: Path) -> dict[str, Path]:
    """PNG, JPEG, BMP, GIF; other sizes, grayscale, RGBA and palette images."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)  # 50 wide, 40 high
    gray = rng.integers(0, 256, (37, 61), dtype=np.uint8)
    images = {
        "wide.png": Image.fromarray(rgb),
        "photo.jpg": Image.fromarray(rgb),
        "gray.png": Image.fromarray(gray),
        "gray.jpeg": Image.fromarray(gray),
        "rgba.png": Image.fromarray(rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)),
        "big.bmp": Image.fromarray(rng.integers(0, 256, (100, 80, 3), dtype=np.uint8)),
        "palette.gif": Image.fromarray(rgb).convert("P"),
        "exact.png": Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)),
    }
    paths = {}
    for name, image in images.items():
        paths[name] = folder / name
        image.save(paths[name])
    return paths


def decoded_rgb(path: Path) -> np.ndarray:
    """The file decoded to RGB as training decodes it: JPEG as TensorFlow decodes it (libjpeg-turbo's
    fast integer DCT, through simplejpeg), everything else by PIL."""
    if path.suffix.lower() in (".jpg", ".jpeg"):  # TensorFlow's decoder: libjpeg-turbo's fast DCT
        import simplejpeg

        return simplejpeg.decode_jpeg(path.read_bytes(), fastdct=True, fastupsample=False)
    with Image.open(path) as source:
        return np.asarray(source.convert("RGB"))


def test_load_image_converts_to_rgb_and_resizes_like_training(tmp_path):
    """predict resizes as training did (bilinear, Keras's image_dataset_from_directory), not
    with load_img's nearest neighbour: the model sees the kind of image it learned from."""
    for name, path in write_images(tmp_path).items():
        image = load_image(path, (32, 32))
        assert image.dtype == torch.uint8 and image.shape == (3, 32, 32), name
        assert_within_rounding(image.permute(1, 2, 0).numpy(), bilinear_resize(decoded_rgb(path), 32, 32), name)
    gray = load_image(tmp_path / "gray.png", (32, 32))
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_load_image_other_target_sizes_and_grayscale_models(tmp_path):
    paths = write_images(tmp_path)
    assert load_image(paths["wide.png"], (20, 64)).shape == (3, 20, 64)  # (height, width), like target_size
    one_channel = load_image(paths["wide.png"], (32, 32), channels=1)
    with Image.open(paths["wide.png"]) as source:
        expected = bilinear_resize(np.asarray(source.convert("L")), 32, 32)
    assert_within_rounding(one_channel[0].numpy(), expected)
    batch = load_images([paths["wide.png"], paths["photo.jpg"]], (32, 32))
    assert batch.shape == (2, 3, 32, 32)


def test_unreadable_files_are_named(tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    truncated = tmp_path / "cut.jpg"
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    for path in (not_an_image, truncated, tmp_path / "missing.png", tmp_path):
        with pytest.raises(UserError, match=f"image {path} "):
            load_image(path, (32, 32))


def test_model_input_is_scaled_like_the_training_data():
    images = torch.tensor([[[[0, 51, 255]]]], dtype=torch.uint8)
    inputs = to_model_input(images, {"scale": 1 / 255.0, "mean": None, "std": None})
    assert inputs.dtype == torch.float32
    assert torch.allclose(inputs, torch.tensor([[[[0.0, 0.2, 1.0]]]]))


# --- scripts/predict.py ------------------------------------------------------------------------


def test_predict_probabilities_equal_a_hand_computation(tmp_path, capsys):
    checkpoint = make_run(tmp_path / "run", SHAPES_FLAGS)
    paths = write_images(tmp_path)
    files = [str(paths[name]) for name in ("wide.png", "photo.jpg", "gray.png")]
    assert predict_script.main(["--checkpoint", str(checkpoint), *files, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    expected = hand_computation_probabilities(checkpoint, files)
    assert [result["file"] for result in results] == files
    for result, row in zip(results, expected, strict=True):
        assert list(result["probabilities"]) == data.SHAPE_CLASSES
        assert list(result["probabilities"].values()) == pytest.approx(row.tolist(), abs=1e-6)
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert result["predicted"] == data.SHAPE_CLASSES[int(row.argmax())]


def hand_computation_probabilities(checkpoint_path: Path, files: list[str]) -> torch.Tensor:
    """The lesson's steps: load the image at 32x32 (resized as training resized), / 255.0, predict, softmax."""
    from cnn_torch.checkpoints import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(checkpoint_path)).eval()
    arrays = []
    for path in files:
        arrays.append(np.round(bilinear_resize(decoded_rgb(Path(path)), 32, 32)))
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        return torch.softmax(model(images), dim=1)


def test_predict_prints_the_top_three(tmp_path, capsys):
    checkpoint = make_run(tmp_path / "run", SHAPES_FLAGS)
    path = str(write_images(tmp_path)["photo.jpg"])
    assert predict_script.main(["--checkpoint", str(checkpoint), path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].startswith(f"{path}: ")
    names = [line.split()[0] for line in lines[1:]]
    probabilities = [float(line.split()[1]) for line in lines[1:]]
    assert lines[0].endswith(names[0]) and probabilities == sorted(probabilities, reverse=True)


def test_predict_names_an_unreadable_file(tmp_path, capsys):
    checkpoint = make_run(tmp_path / "run", SHAPES_FLAGS)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    assert predict_script.main(["--checkpoint", str(checkpoint), str(bad)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: cannot decode image {bad} ")


# --- the real command lines ----------------------------------------------------------------------


@pytest.mark.subprocess
def test_cli_smoke_runs(tmp_path):
    checkpoint = make_run(tmp_path / "run", SHAPES_FLAGS)
    image = str(write_images(tmp_path)["wide.png"])
    python = [sys.executable]
    evaluate = subprocess.run(
        [*python, str(ROOT / "scripts" / "evaluate.py"), "--checkpoint", str(checkpoint), "--json",
         "--fig-dir", str(tmp_path / "fig")],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert evaluate.returncode == 0, evaluate.stderr
    report = json.loads(evaluate.stdout)
    assert {"loss", "accuracy", "per_class", "confusion_matrix", "class_names", "split", "num_samples"} <= set(report)
    assert (tmp_path / "fig" / "run_test_confusion_matrix.png").is_file()
    predict = subprocess.run(
        [*python, str(ROOT / "scripts" / "predict.py"), "--checkpoint", str(checkpoint), image, "--json"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert predict.returncode == 0, predict.stderr
    [result] = json.loads(predict.stdout)
    assert result["file"] == image and result["predicted"] in data.SHAPE_CLASSES


# --- evaluate and predict as Keras's: the model's L2, its mode after an error, precision, device ------


def l2_trained_model(l2=0.01):
    """cifar_model_small trained a few steps with Keras's kernel_regularizer=L2(l2), and its data."""
    from cnn_torch import fit
    from cnn_torch.keras_rules.regularizers import L2Regularized

    torch.manual_seed(0)
    model = build_model("cifar_model_small")
    images = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(24) % 10
    loss_fn = L2Regularized(torch.nn.CrossEntropyLoss(), model, l2)
    history = fit(model, loss_fn, "adam", images, labels, epochs=2, batch_size=8, verbose=0, device="cpu",
                  validation_data=(images[:16], labels[:16]), seed=0)  # fmt: skip
    return model, images, labels, history


def test_evaluate_adds_the_l2_penalty_the_model_carries():
    """Keras's model.evaluate on a model with kernel_regularizer=L2 reports loss + penalty (3.077 =
    2.225 + 0.852 measured); so does evaluate(model, x, y) with the default loss, and it equals
    fit's val_loss for the same data and weights."""
    from cnn_torch.evaluation import evaluate
    from cnn_torch.keras_rules.regularizers import regularized_kernels

    model, images, labels, history = l2_trained_model()
    assert model.kernel_l2 == 0.01
    model.eval()
    with torch.no_grad():
        cross_entropy = F.cross_entropy(model(images[:16].float() / 255.0), labels[:16])
        penalty = 0.01 * sum(torch.sum(kernel**2) for kernel in regularized_kernels(model))
    model.train()
    loss, _ = evaluate(model, images[:16], labels[:16], batch_size=8, verbose=0)
    assert loss == pytest.approx((cross_entropy + penalty).item(), rel=1e-5)
    assert penalty.item() > 0.01 * cross_entropy.item()  # the penalty is no rounding matter
    assert loss == pytest.approx(history.history["val_loss"][-1], rel=1e-5)  # fit's validation: the same
    # an L2Regularized given explicitly is not counted twice
    from cnn_torch.keras_rules.regularizers import L2Regularized

    given = L2Regularized(torch.nn.CrossEntropyLoss(), model, 0.01)
    assert evaluate(model, images[:16], labels[:16], batch_size=8, loss_fn=given, verbose=0)[0] == pytest.approx(loss)


def test_a_checkpoint_keeps_the_models_l2(tmp_path):
    """Keras's model.save / load_model keep the layers' regularizers: the rebuilt model's evaluate
    adds the same penalty."""
    from cnn_torch.checkpoints import load_model, save_model
    from cnn_torch.evaluation import evaluate

    model, images, labels, _ = l2_trained_model()
    path = save_model(model, tmp_path / "model.pt", class_names=[str(i) for i in range(10)])
    loaded = load_model(path)
    assert loaded.kernel_l2 == 0.01
    assert evaluate(loaded, images, labels, verbose=0) == pytest.approx(evaluate(model, images, labels, verbose=0))
    assert not hasattr(build_model("cifar_model_small"), "kernel_l2")  # a model without L2 carries none


class FailsOnSecondBatch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer, self.calls = torch.nn.Linear(3 * 4 * 4, 2), 0

    def forward(self, images):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("the second batch fails")
        return self.layer(images.flatten(1))


def test_evaluate_and_predict_give_the_model_back_in_training_mode_after_an_error():
    from cnn_torch.evaluation import evaluate, predict

    images, labels = torch.rand(6, 3, 4, 4), torch.tensor([0, 1, 0, 1, 0, 1])
    for run in (lambda model: evaluate(model, images, labels, batch_size=3, verbose=0),
                lambda model: predict(model, images, batch_size=3)):  # fmt: skip
        model = FailsOnSecondBatch().train()
        with pytest.raises(RuntimeError, match="second batch"):
            run(model)
        assert model.training


@pytest.mark.filterwarnings("ignore::cnn_torch.platform.device.PrecisionWarning")  # a CPU may emulate bf16
def test_predict_takes_the_precision():
    """bf16 autocast, as fit and evaluate run it: the logits differ from fp32's by bf16's rounding
    only, and come back as float32."""
    from cnn_torch.evaluation import predict

    torch.manual_seed(0)
    model = build_model("cifar_model_small")
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    fp32 = predict(model, images, batch_size=4)
    bf16 = predict(model, images, batch_size=4, precision="bf16")
    assert bf16.dtype == torch.float32 and fp32.dtype == torch.float32
    assert not torch.equal(bf16, fp32)
    torch.testing.assert_close(bf16, fp32, atol=0.05, rtol=0.05)  # bf16 keeps 8 bits of mantissa
    with pytest.raises(UserError, match="unknown precision 'fp16'"):
        predict(model, images, precision="fp16")


def test_evaluate_and_predict_move_the_model_to_the_device_given(monkeypatch):
    """fit moves the model to its device; so do evaluate and predict (a CPU model given CUDA
    batches would stop inside torch). A device this machine lacks: one line naming the fix."""
    from cnn_torch.evaluation import evaluate, predict

    model = build_model("cifar_model_small")
    images, labels = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), torch.tensor([0, 1, 2, 3])
    moved = []
    original_to = torch.nn.Module.to
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: moved.append(a) or original_to(self, *a, **k))
    evaluate(model, images, labels, device="cpu", verbose=0)
    predict(model, images, device="cpu")
    assert moved == [(torch.device("cpu"),)] * 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for run in (lambda: evaluate(model, images, labels, device="cuda"), lambda: predict(model, images, device="cuda")):
        with pytest.raises(UserError, match=r"^device='cuda' was asked for but CUDA is not available: pass device="):
            run()


BF16_FLAGS = {**SHAPES_FLAGS, "precision": "bf16"}


@pytest.mark.parametrize(("flags", "expected"), [(SHAPES_FLAGS, "fp32"), (BF16_FLAGS, "bf16")])
def test_predict_script_predicts_in_the_runs_precision(tmp_path, capsys, monkeypatch, flags, expected):
    checkpoint = make_run(tmp_path / "run", flags)
    path = str(write_images(tmp_path)["photo.jpg"])
    asked = []
    monkeypatch.setattr(predict_script, "predict", lambda *a, precision="fp32", **k: asked.append(precision)
                        or torch.zeros(1, len(data.SHAPE_CLASSES)))  # fmt: skip
    assert predict_script.main(["--checkpoint", str(checkpoint), path, "--json"]) == 0
    assert asked == [expected]
