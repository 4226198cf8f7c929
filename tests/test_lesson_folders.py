"""The 2026 lesson's data: train/, val/ and test/ folders, images of any size resized as
Keras's ``image_dataset_from_directory(image_size=...)`` resizes them, class subsets, and
the imshow grids. Every image is written by the test, in real formats; no network.
"""

from __future__ import annotations

import json
import os
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from cnn_torch.data import load_data, load_image_folder, select_classes
from cnn_torch.errors import UserError
from cnn_torch.sources.image_files import load_image, resize

ROOT = Path(__file__).resolve().parents[1]
LESSON_CLASSES = ["airplane", "bird", "cat", "dog", "truck"]  # the 2026 lesson's five


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CNN_TORCH_CACHE", str(cache))
    return cache


def tf_bilinear(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """``tf.image.resize(method="bilinear", antialias=False)`` from its definition, float64:
    output pixel i samples the source at (i + 0.5) * in / out - 0.5, clamped to the image."""

    def taps(out_size: int, in_size: int):
        position = np.maximum((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0.0)
        low = np.floor(position).astype(int)
        return low, np.minimum(low + 1, in_size - 1), position - low

    pixels = array.astype(np.float64)
    top, bottom, dy = taps(height, pixels.shape[0])
    left, right, dx = taps(width, pixels.shape[1])
    rows = pixels[top] * (1 - dy)[:, None, None] + pixels[bottom] * dy[:, None, None]
    return rows[:, left] * (1 - dx)[None, :, None] + rows[:, right] * dx[None, :, None]


def chw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


def hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).numpy()


def within_rounding(ours: torch.Tensor, reference: np.ndarray) -> float:
    """The largest gap between our uint8 pixels and a float reference: 0.5 is uint8 rounding."""
    gap = float(np.abs(hwc(ours).astype(np.float64) - reference).max())
    assert gap <= 0.5 + 1e-3, gap
    return gap


# --------------------------------------------------------------------------- resizing


def test_bilinear_by_hand():
    """A 1x2 row [0, 255] stretched to 1x4 samples at 0, 0.25, 0.75 and 1 (clamped):
    0, 63.75, 191.25, 255, rounded to 0, 64, 191, 255; half-pixel centres, no antialias."""
    row = torch.tensor([0, 255], dtype=torch.uint8).reshape(1, 1, 2).expand(3, 1, 2)
    assert resize(row, (1, 4))[0, 0].tolist() == [0, 64, 191, 255]
    # shrinking 4 -> 2 without antialiasing samples at 0.5 and 2.5: the mean of each pair
    four = torch.tensor([0, 100, 200, 250], dtype=torch.uint8).reshape(1, 1, 4).expand(3, 1, 4)
    assert resize(four, (1, 2))[0, 0].tolist() == [50, 225]
    same = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    assert resize(same, (32, 32)) is same  # already the size: untouched, as Keras leaves it


@pytest.mark.parametrize("source", [(48, 40), (64, 64), (20, 24), (480, 640)])
@pytest.mark.parametrize("target", [(32, 32), (64, 64)])
def test_resize_equals_tf_bilinear_within_rounding(source, target):
    pixels = np.random.default_rng(sum(source)).integers(0, 256, (*source, 3), dtype=np.uint8)
    within_rounding(resize(chw(pixels), target), tf_bilinear(pixels, *target))


def test_resize_equals_keras_ops_resize():
    """The same against Keras 3's own ``ops.image.resize`` (bilinear, antialias=False)."""
    keras = pytest.importorskip("keras")
    pixels = np.random.default_rng(3).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    theirs = keras.ops.convert_to_numpy(keras.ops.image.resize(pixels.astype("float32"), (32, 32)))
    within_rounding(resize(chw(pixels), (32, 32)), theirs.astype(np.float64))
    cropped = keras.ops.convert_to_numpy(keras.preprocessing.image.smart_resize(pixels.astype("float32"), (32, 32)))
    within_rounding(resize(chw(pixels), (32, 32), crop_to_aspect_ratio=True), cropped.astype(np.float64))


def test_crop_to_aspect_ratio_takes_the_centred_box():
    """smart_resize: 48 high x 40 wide to 32x32 cuts the centred 40x40 (rows 4..43), then resizes."""
    pixels = np.random.default_rng(1).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    ours = resize(chw(pixels), (32, 32), crop_to_aspect_ratio=True)
    within_rounding(ours, tf_bilinear(pixels[4:44], 32, 32))


def test_pad_to_aspect_ratio_fits_then_pads_with_black():
    """tf.image.resize_with_pad: 64 high x 32 wide into 32x32 is resized to 32x16 and put in
    the middle (columns 8..23), the rest 0."""
    pixels = np.random.default_rng(2).integers(1, 256, (64, 32, 3), dtype=np.uint8)
    ours = resize(chw(pixels), (32, 32), pad_to_aspect_ratio=True)
    assert ours.shape == (3, 32, 32)
    assert (ours[:, :, :8] == 0).all() and (ours[:, :, 24:] == 0).all()
    within_rounding(ours[:, :, 8:24], tf_bilinear(pixels, 32, 16))
    with pytest.raises(UserError, match="choose one"):
        resize(chw(pixels), (32, 32), crop_to_aspect_ratio=True, pad_to_aspect_ratio=True)


# --------------------------------------------------------------------------- files of every kind


def write_photo_tree(root: Path, rng) -> dict[str, np.ndarray]:
    """train/ with lossless files of several sizes and modes; returns the RGB pixels Keras decodes."""
    expected = {}
    cases = {
        "a.png": ((32, 32), "RGB"), "b.png": ((48, 40), "RGBA"), "c.bmp": ((64, 64), "RGB"),
        "d.png": ((40, 48), "L"), "e.png": ((480, 640), "RGB"),
    }  # fmt: skip
    for name in ("cat", "dog"):
        for file, ((height, width), mode) in cases.items():
            channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
            array = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
            path = root / "train" / name / file
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array.squeeze(2) if channels == 1 else array, mode).save(path)
            # decode_image(channels=3): alpha dropped (not blended), gray repeated
            expected[str(path)] = np.repeat(array, 3, axis=2) if channels == 1 else array[:, :, :3]
    return expected


def test_lossless_files_equal_keras_pixels_within_rounding(tmp_path):
    expected = write_photo_tree(tmp_path / "tree", np.random.default_rng(0))
    for path, pixels in expected.items():
        for size in ((32, 32), (64, 64)):
            within_rounding(load_image(path, size), tf_bilinear(pixels, *size))
    data = load_image_folder(tmp_path / "tree")
    assert data.train_images.shape == (10, 3, 32, 32)
    assert data.resized_from == {(48, 40): 2, (64, 64): 2, (40, 48): 2, (480, 640): 2}
    # the folder loader gives each file the same pixels as the one-file loader
    for image in data.train_images:
        assert any(torch.equal(image, load_image(path, (32, 32))) for path in expected)


def test_jpeg_resized_like_its_decoded_pixels(tmp_path):
    """JPEG decoders differ by a few levels (libjpeg builds, TensorFlow's); the resize itself is
    Keras's: the same bilinear of what libjpeg decoded."""
    from torchvision.io import ImageReadMode, decode_image

    path = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(path, quality=90)
    decoded = hwc(decode_image(str(path), mode=ImageReadMode.RGB))
    within_rounding(load_image(path, (32, 32), jpeg_decoder="accurate"), tf_bilinear(decoded, 32, 32))


# --------------------------------------------------------------------------- three splits


def write_lesson_tree(root: Path, sizes=((32, 32), (64, 64))) -> Path:
    """The 2026 lesson's layout: train/ val/ test/, five classes, images of mixed sizes."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 3), ("test", 2)):
        for label, name in enumerate(LESSON_CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                height, width = sizes[i % len(sizes)]
                array = np.full((height, width, 3), 40 * label + 20, dtype=np.uint8)
                array += rng.integers(0, 10, array.shape, dtype=np.uint8)
                Image.fromarray(array).save(folder / f"{i}.png")
    return root


def test_three_folders_become_three_splits(tmp_path):
    root = write_lesson_tree(tmp_path / "lesson")
    data = load_image_folder(root)
    assert (len(data.train_labels), len(data.val_labels), len(data.test_labels)) == (40, 15, 10)
    assert data.class_names == LESSON_CLASSES
    assert data.val_labels.tolist() == [k for k in range(5) for _ in range(3)]  # sorted, like Keras's listing
    assert set(data.split_sources) == {"train", "val", "test"}
    assert data.split("val")[0] is data.val_images and data.split("test")[1] is data.test_labels
    # only test/: the 2023 episode's layout, test stays test and there is no val split
    only_test = write_lesson_tree(tmp_path / "old")
    for folder in (only_test / "val").iterdir():
        for file in folder.iterdir():
            file.unlink()
        folder.rmdir()
    (only_test / "val").rmdir()
    old = load_image_folder(only_test)
    assert old.val_images is None and len(old.test_labels) == 10


def test_cache_is_keyed_on_the_size(tmp_path, cache_in_tmp):
    root = write_lesson_tree(tmp_path / "lesson")
    small = load_image_folder(root, image_size=(32, 32))
    large = load_image_folder(root, image_size=(64, 64))
    assert large.image_size == (64, 64) and large.resized_from == {(32, 32): 35}  # per class 4 + 2 + 1 of 8 + 3 + 2
    assert len(list(cache_in_tmp.glob("*.pt"))) == 2
    again = load_image_folder(root, image_size=(32, 32))
    assert torch.equal(again.train_images, small.train_images)
    assert len(list(cache_in_tmp.glob("*.pt"))) == 2


# --------------------------------------------------------------------------- class subsets


def test_class_names_select_and_order_like_keras(tmp_path):
    root = write_lesson_tree(tmp_path / "lesson")
    data = load_image_folder(root, class_names=["truck", "cat"])
    assert data.class_names == ["truck", "cat"]
    assert data.val_labels.tolist() == [0, 0, 0, 1, 1, 1]  # truck first: the order given
    red = data.val_images[:, 0].float().mean(dim=(1, 2))
    assert (red[:3] > red[3:]).all()  # trucks (label 4 in the folder: 180) are redder than cats (100)
    with pytest.raises(UserError) as excinfo:
        load_image_folder(root, class_names=["cat", "horse"])
    message = str(excinfo.value)
    assert "\n" not in message and "horse is not a class" in message and "airplane bird cat dog truck" in message


def test_class_subset_of_arrays_and_shapes():
    shapes = load_data("shapes", limit=100, seed=0, class_names=["star", "circle"])
    assert shapes.class_names == ["star", "circle"] and set(shapes.train_labels.tolist()) == {0, 1}
    assert len(shapes.train_labels) == 20  # 100 images of ten classes, two kept
    full = load_data("shapes", limit=100, seed=0)
    star = full.class_names.index("star")
    assert torch.equal(shapes.train_images[shapes.train_labels == 0], full.train_images[full.train_labels == star])
    with pytest.raises(UserError, match="choose from"):
        select_classes(full, ["airplane"])
    with pytest.raises(UserError, match="more than once"):
        select_classes(full, ["star", "star"])


# --------------------------------------------------------------------------- the command line


def test_train_validates_on_val_and_evaluate_defaults_to_test(tmp_path, cache_in_tmp):
    root = write_lesson_tree(tmp_path / "lesson", sizes=((32, 32), (48, 40)))
    run_dir = tmp_path / "run"
    train = run_cli("train", "--data-dir", root, "--epochs", "2", "--out", run_dir, "--seed", "1", cwd=ROOT)
    assert train.returncode == 0, train.stderr
    out = train.stdout
    assert f"the val split: {(root / 'val').resolve()}" in out
    assert f"Test:       10 images kept for evaluate.py ({(root / 'test').resolve()})" in out
    # every other image: per class 4 + 1 + 1, in train, val and test; sizes as width x height
    assert "Resized:    30 images of all splits from 40x48 to 32x32 (width x height)" in out
    record = json.loads((run_dir / "run.json").read_text())
    assert record["data"]["splits"]["val"] == str((root / "val").resolve())
    assert record["data"]["val_images"] == 15 and record["data"]["train_images"] == 40
    assert (run_dir / "fig" / "run_train_images.png").is_file()

    # the History's val_* are the val/ folder's numbers
    from cnn_torch.checkpoints import load_checkpoint, model_from_checkpoint
    from cnn_torch.data import to_float
    from cnn_torch.evaluation import evaluate

    history = json.loads((run_dir / "history.json").read_text())["history"]
    model = model_from_checkpoint(load_checkpoint(run_dir / "model.pt"))
    val = load_image_folder(root)
    loss, accuracy = evaluate(model, to_float(val.val_images), val.val_labels)
    assert loss == pytest.approx(history["val_loss"][-1], rel=1e-5)
    assert accuracy == pytest.approx(history["val_accuracy"][-1])

    evaluated = run_cli("evaluate", "--checkpoint", run_dir / "model.pt", cwd=ROOT)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"test split: 10 images of {(root / 'test').resolve()}" in evaluated.stdout
    assert (run_dir / "fig" / "run_test_predictions.png").is_file()
    on_val = run_cli("evaluate", "--checkpoint", run_dir / "model.pt", "--split", "val", "--json", cwd=ROOT)
    assert json.loads(on_val.stdout)["loss"] == pytest.approx(loss, rel=1e-5)


def test_image_size_builds_the_model_for_it(tmp_path, cache_in_tmp):
    root = write_lesson_tree(tmp_path / "lesson")
    run_dir = tmp_path / "run64"
    flags = ["--epochs", "1", "--out", str(run_dir), "--image-size", "64", "64", "--classes", "cat", "dog", "--quiet"]
    train = run_cli("train", "--data-dir", root, *flags, cwd=ROOT)
    assert train.returncode == 0, train.stderr
    from cnn_torch.checkpoints import load_checkpoint
    from cnn_torch.models import build_model, count_params

    checkpoint = load_checkpoint(run_dir / "model.pt")
    assert tuple(checkpoint["input_shape"]) == (3, 64, 64) and checkpoint["class_names"] == ["cat", "dog"]
    pytest.importorskip("keras")
    from cnn_torch.parity.keras_compat import keras_model_like

    model = build_model("cifar_model_small", num_classes=2, input_shape=(3, 64, 64))
    assert keras_model_like(model).count_params() == count_params(model)  # Keras's summary, at 64x64
    assert count_params(model) != count_params(build_model("cifar_model_small", num_classes=2))

    wrong = run_cli("predict", "--checkpoint", run_dir / "model.pt", "--image-size", "32", "32",
                    root / "test" / "cat" / "0.png", cwd=ROOT)  # fmt: skip
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1 and "the model takes 64x64" in wrong.stderr
    unknown = run_cli("train", "--data-dir", root, "--classes", "cat", "horse", "--out", tmp_path / "never", cwd=ROOT)
    assert unknown.returncode == 2 and "horse is not a class" in unknown.stderr and unknown.stderr.count("\n") == 1
    assert not (tmp_path / "never").exists()


# --------------------------------------------------------------------------- the grids


def test_image_grids_name_the_classes_and_mark_wrong_predictions():
    from cnn_torch.image_grids import pick, show_images

    labels = torch.tensor([0] * 10 + [1] * 10 + [2] * 10)  # sorted, like val/ and test/
    chosen = pick(labels, 6, seed=0)
    assert sorted(labels[chosen].tolist()) == [0, 0, 1, 1, 2, 2]  # every class takes turns
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    names = ["ant", "bee", "cat"]
    fig = show_images(images, labels[chosen], names, "tiny")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [names[k] for k in labels[chosen].tolist()]
    assert fig.axes[0].get_images()[0].get_interpolation() == "nearest"  # pixels stay visible at 32x32
    predicted = labels[chosen].clone()
    predicted[0] = (predicted[0] + 1) % 3
    fig = show_images(images, labels[chosen], names, "tiny", predictions=predicted)
    wrong = [ax for ax in fig.axes if ax.title.get_color() == "red"]
    assert len(wrong) == 1 and wrong[0] is fig.axes[0] and "5 of 6 right" in fig._suptitle.get_text()


# --------------------------------------------------------------------------- the README's snippet


def readme_api_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## The Python API"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("\n```", start)]


@pytest.mark.parametrize("layout", ["shapes", "train val test", "train test", "train only"])
def test_readme_api_snippet_works_for_every_layout(tmp_path, layout):
    """The README's Python snippet, pasted as it stands, on each layout a learner may have;
    only the load line changes (and one epoch instead of ten)."""
    snippet = readme_api_snippet()
    load_line = 'lesson = data.load_data("shapes")'
    assert load_line in snippet and "epochs=10" in snippet
    root = write_lesson_tree(tmp_path / "lesson")
    if layout != "train val test":
        remove = {"train test": ["val"], "train only": ["val", "test"]}.get(layout, [])
        for split in remove:
            for folder in (root / split).iterdir():
                for file in folder.iterdir():
                    file.unlink()
                folder.rmdir()
            (root / split).rmdir()
    load = {
        "shapes": 'lesson = data.load_data("shapes", limit=200)',
        "train val test": f'lesson = data.load_data("folder", data_dir={str(root)!r})',
        "train test": f'lesson = data.load_data("folder", data_dir={str(root)!r})',
        "train only": f'lesson = data.load_data("folder", data_dir={str(root)!r}, validation_split=0.2)',
    }[layout]
    namespace: dict = {}
    exec(snippet.replace(load_line, load).replace("epochs=10", "epochs=1"), namespace)  # noqa: S102
    assert list(namespace["history_df"].columns) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert namespace["class_probabilities"].shape[0] == 5
    if layout == "train only":  # Keras's validation_split: the last 20% of the 40 training images
        assert len(namespace["val_labels"]) == 8 and len(namespace["train_labels"]) == 32
    else:
        with pytest.raises(UserError, match="validation_split=0.2"):  # only train/, and no split asked for
            _ = _train_only(root, tmp_path).validation_data


def _train_only(root: Path, tmp_path: Path):
    """The same images with only train/: no split to validate on until asked for."""
    import shutil

    only = tmp_path / "only"
    shutil.copytree(root / "train", only / "train")
    return load_image_folder(only)


# --------------------------------------------------------------------------- against Keras on TensorFlow


@pytest.mark.skipif(not os.environ.get("CNN_TORCH_TF_PYTHON"),
                    reason="set CNN_TORCH_TF_PYTHON to an interpreter with tensorflow and keras")  # fmt: skip
@pytest.mark.parametrize("aspect", ["stretch", "crop", "pad"])
def test_lossless_pixels_equal_keras_on_tensorflow(tmp_path, aspect):
    """The lesson's own loader, ``image_dataset_from_directory`` on TensorFlow, against ours on
    PNG (RGB, RGBA, grayscale) and BMP files of five sizes: within uint8 rounding (0.5)."""
    gaps = runpy.run_path(str(ROOT / "scripts" / "loader_gap.py"))["gaps"]  # a measuring script, not a module

    write_photo_tree(tmp_path / "tree", np.random.default_rng(4))
    report = gaps(os.environ["CNN_TORCH_TF_PYTHON"], tmp_path / "tree", (32, 32),
                  crop=aspect == "crop", pad=aspect == "pad")  # fmt: skip
    assert set(report) == {".png", ".bmp"} and sum(entry["files"] for entry in report.values()) == 10
    for kind, entry in report.items():
        assert entry["max_gap"] <= 0.5 + 1e-3, (kind, entry)


def test_class_subset_of_cifar10_arrays_and_their_resize(tmp_path, monkeypatch):
    """The 2026 lesson's five classes from a full CIFAR-10 copy (torchvision's real pickles),
    and CIFAR-10 at 64x64 for the sibling lesson: the same resize as a folder gets."""
    from test_data import skip_md5, write_cifar10

    rows, labels, names = write_cifar10(tmp_path / "cifar", per_batch=30)
    skip_md5(monkeypatch)
    subset = load_data("cifar10", tmp_path / "cifar", class_names=["class3", "class1"], download=False)
    assert subset.class_names == ["class3", "class1"]
    train_labels = np.array(labels[:150])
    assert subset.train_labels.tolist() == [0 if k == 3 else 1 for k in train_labels if k in (1, 3)]
    kept = [i for i, k in enumerate(train_labels) if k in (1, 3)]
    assert torch.equal(subset.train_images, torch.from_numpy(rows[kept]).reshape(-1, 3, 32, 32))
    assert len(subset.test_labels) == sum(k in (1, 3) for k in labels[150:])
    large = load_data("cifar10", tmp_path / "cifar", image_size=(64, 64), download=False)
    assert large.image_size == (64, 64) and large.resized_from == {(32, 32): 180}
    first = torch.from_numpy(rows[0]).reshape(3, 32, 32)
    within_rounding(large.train_images[0], tf_bilinear(hwc(first), 64, 64))
