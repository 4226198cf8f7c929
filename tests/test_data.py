"""Tests for cnn_torch.data: CIFAR-10 files, image folders and their cache, shapes, subsets, splits.

Every file is written by the test into tmp_path; nothing touches the network.
"""

from __future__ import annotations

import os
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnn_torch.data import (
    DATASETS,
    SHAPE_CLASSES,
    LessonData,
    limit_per_class,
    load_cifar10,
    load_data,
    load_image_folder,
    make_shapes,
    resolve_dataset,
    split_validation,
    to_float,
)
from cnn_torch.errors import UserError
from cnn_torch.sources import image_folder

REAL_JPEGS = Path(__file__).parents[1] / ".." / "shared" / "data" / "cifar10-jpg"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    """Every test gets its own empty decode cache, never ~/.cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CNN_TORCH_CACHE", str(cache))
    return cache


def user_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, "UserError messages are one line"
    return message


# --------------------------------------------------------------------------- CIFAR-10


def write_cifar10(root: Path, per_batch: int = 20, seed: int = 0) -> tuple[np.ndarray, list[int], list[str]]:
    """The real cifar-10-batches-py layout: pickled dicts of (N, 3072) uint8 rows, R then G then B planes.

    The real files are Python 2 pickles whose str keys load as str under encoding="latin1"
    (torchvision's choice), so the keys here are str as well.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"class{i}" for i in range(10)]
    rows, labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch_rows = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        batch_labels = rng.integers(0, 10, size=per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": batch_rows, "labels": batch_labels}, f, protocol=2)
        rows.append(batch_rows)
        labels += batch_labels
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch}, f, protocol=2)
    return np.concatenate(rows), labels, names


def skip_md5(monkeypatch):
    """The files are ours, so their MD5s differ from CIFAR-10's: check only that they exist."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def test_load_cifar10_reads_torchvision_batches(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    rows, labels, names = write_cifar10(tmp_path / "data")
    rows[23, 1 * 1024 + 5 * 32 + 7] = 201  # image 23 (batch 2), green, row 5, column 7
    with open(tmp_path / "data" / "cifar-10-batches-py" / "data_batch_2", "wb") as f:
        pickle.dump({"data": rows[20:40], "labels": labels[20:40]}, f, protocol=2)
    skip_md5(monkeypatch)
    monkeypatch.setattr(cifar, "download_and_extract_archive", lambda *a, **k: pytest.fail("tried to download"))

    data = load_cifar10(tmp_path / "data", download=True)

    assert data.train_images.shape == (100, 3, 32, 32) and data.test_images.shape == (20, 3, 32, 32)
    assert data.train_images.dtype == torch.uint8 and data.train_images.is_contiguous()
    assert data.train_labels.dtype == torch.int64 and data.train_labels.tolist() == labels[:100]
    assert data.test_labels.tolist() == labels[100:]
    assert data.train_images[23, 1, 5, 7] == 201
    # NCHW flattened is exactly CIFAR's row layout.
    assert torch.equal(data.train_images.reshape(100, 3072), torch.from_numpy(rows[:100]))
    assert torch.equal(data.test_images.reshape(20, 3072), torch.from_numpy(rows[100:]))
    assert data.class_names == names and data.source == "cifar10"


def test_load_cifar10_without_files_or_network(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(cifar, "download_and_extract_archive", no_network)
    with pytest.raises(UserError) as excinfo:
        load_cifar10(tmp_path / "empty", download=True)
    message = user_error(excinfo)
    assert "could not be downloaded (Name or service not known)" in message
    assert "--data-dir" in message and "--dataset shapes" in message

    with pytest.raises(UserError) as excinfo:
        load_cifar10(tmp_path / "empty", download=False)
    assert "--dataset shapes" in user_error(excinfo)


# --------------------------------------------------------------------------- image folders

CLASS_VALUES = {"ant": 40, "bee": 120, "cat": 200}  # red channel of every image of the class


def save_image(path: Path, value: int, mode: str = "RGB", size: tuple[int, int] = (32, 32), fmt: str | None = None):
    """A flat image whose red channel is ``value`` (height, width = size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = size
    colour = {"RGB": (value, 90, 30), "L": value, "RGBA": (value, 90, 30, 128)}[mode]
    Image.new(mode, (width, height), colour).save(path, format=fmt, quality=95)


def write_tree(root: Path, with_test: bool = True) -> Path:
    """train/ with three classes (created out of order) in PNG, JPEG, BMP, grayscale and RGBA."""
    for name in ["cat", "ant", "bee"]:
        value = CLASS_VALUES[name]
        save_image(root / "train" / name / "a.png", value)
        save_image(root / "train" / name / "b.jpg", value)
        save_image(root / "train" / name / "c.JPEG", value, fmt="JPEG")
        save_image(root / "train" / name / "nested" / "d.png", value)  # Keras walks subfolders too
        (root / "train" / name / "notes.txt").write_text("not an image")
        (root / "train" / name / ".DS_Store").write_bytes(b"\0\1junk")
        if with_test:
            save_image(root / "test" / name / "t1.png", value)
            save_image(root / "test" / name / "t2.jpg", value)
    save_image(root / "train" / "ant" / "gray.png", CLASS_VALUES["ant"], mode="L")
    save_image(root / "train" / "bee" / "alpha.png", CLASS_VALUES["bee"], mode="RGBA")
    save_image(root / "train" / "cat" / "e.BMP", CLASS_VALUES["cat"], fmt="BMP")  # PIL's fallback
    return root


def class_of(image: torch.Tensor) -> int:
    """The class whose red value is nearest the image's (JPEG moves values by a few levels)."""
    red = image[0].float().mean().item()
    return min(range(3), key=lambda k: abs(list(CLASS_VALUES.values())[k] - red))


def test_image_folder_labels_formats_and_order(tmp_path):
    root = write_tree(tmp_path / "tree")
    data = load_image_folder(root, seed=0)

    assert data.class_names == ["ant", "bee", "cat"]
    assert data.train_images.shape == (15, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.train_images.is_contiguous() and data.train_labels.dtype == torch.int64
    assert torch.bincount(data.train_labels).tolist() == [5, 5, 5]
    assert [class_of(image) for image in data.train_images] == data.train_labels.tolist()
    # Shuffled like Keras (so a validation split gets every class), and the same for a seed.
    assert data.train_labels.tolist() != sorted(data.train_labels.tolist())
    again = load_image_folder(root, seed=0)
    assert torch.equal(again.train_images, data.train_images) and torch.equal(again.train_labels, data.train_labels)
    other = load_image_folder(root, seed=1)
    assert other.train_labels.tolist() != data.train_labels.tolist()
    # The test split keeps the sorted order.
    assert data.test_labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert [class_of(image) for image in data.test_images] == data.test_labels.tolist()
    assert data.source == f"folder:{root.resolve()}"


def test_image_folder_pixels_match_pil(tmp_path):
    root = tmp_path / "tree"
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    (root / "train" / "only").mkdir(parents=True)
    Image.fromarray(pixels).save(root / "train" / "only" / "x.png")
    Image.fromarray(pixels).convert("L").save(root / "train" / "only" / "y.png")
    with pytest.warns(UserWarning, match="one class folder .only.: every label is 0"):
        data = load_image_folder(root)
    by_name = {int(image.float().std(dim=0).mean() == 0): image for image in data.train_images}
    assert torch.equal(by_name[0], torch.from_numpy(pixels).permute(2, 0, 1))  # exact, channels first
    gray = torch.from_numpy(np.array(Image.fromarray(pixels).convert("L")))
    assert torch.equal(by_name[1], gray.expand(3, 32, 32))  # grayscale -> three equal channels


def test_image_folder_gif_and_16_bit_png(tmp_path):
    folder = tmp_path / "tree" / "train" / "only"
    folder.mkdir(parents=True)
    first, second = Image.new("RGB", (32, 32), (10, 20, 30)), Image.new("RGB", (32, 32), (200, 210, 220))
    first.save(folder / "anim.gif", save_all=True, append_images=[second])
    Image.fromarray(np.full((32, 32), 0x8000, dtype=np.uint16)).save(folder / "deep.png")
    with pytest.warns(UserWarning, match="one class folder"):
        images = load_image_folder(tmp_path / "tree").train_images
    pixels = sorted(tuple(image[:, 0, 0].tolist()) for image in images)
    assert pixels == [(10, 20, 30), (128, 128, 128)]  # the GIF's first frame; 16 bits scaled to 8


def test_image_folder_val_folder_is_the_validation_split(tmp_path):
    root = write_tree(tmp_path / "tree", with_test=False)
    data = load_image_folder(root)
    assert data.test_images is None and data.val_images is None
    for name, value in CLASS_VALUES.items():
        save_image(root / "val" / name / "v.png", value)
    data = load_image_folder(root)
    assert data.val_labels.tolist() == [0, 1, 2] and data.test_images is None  # val/ is not a test split
    assert data.split_sources == {"train": str((root / "train").resolve()), "val": str((root / "val").resolve())}


def test_image_folder_cache_hit_and_invalidation(tmp_path, monkeypatch, cache_in_tmp):
    root = write_tree(tmp_path / "tree")
    first = load_image_folder(root)
    cached = list(cache_in_tmp.glob("*.pt"))
    assert len(cached) == 1
    contents = torch.load(cached[0], weights_only=True)
    assert contents["class_names"] == ["ant", "bee", "cat"] and contents["images"].shape == (21, 3, 32, 32)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(image_folder, "_decode_files", no_decoding)
    second = load_image_folder(root)
    assert torch.equal(second.train_images, first.train_images)
    assert torch.equal(second.test_images, first.test_images)

    # Rewrite one image (new size and mtime): the cache no longer matches.
    changed = root / "train" / "ant" / "a.png"
    Image.new("RGB", (32, 32), (CLASS_VALUES["ant"], 0, 255)).save(changed, compress_level=0)
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded although"):
        load_image_folder(root)
    monkeypatch.undo()
    monkeypatch.setenv("CNN_TORCH_CACHE", str(cache_in_tmp))
    third = load_image_folder(root)
    assert (third.train_images[:, 2] == 255).any()  # the new blue image is there
    assert len(list(cache_in_tmp.glob("*.pt"))) == 2


def test_image_folder_unwritable_cache_is_skipped(tmp_path, monkeypatch):
    root = write_tree(tmp_path / "tree")
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("CNN_TORCH_CACHE", str(blocker / "cache"))
    assert load_image_folder(root).train_images.shape == (15, 3, 32, 32)


def test_image_folder_missing_dir(tmp_path):
    with pytest.raises(UserError) as excinfo:
        load_image_folder(tmp_path / "nowhere")
    assert f"--data-dir {tmp_path / 'nowhere'} does not exist" in user_error(excinfo)
    assert not (tmp_path / "nowhere").exists()


def test_image_folder_without_train(tmp_path):
    (tmp_path / "tree" / "cats").mkdir(parents=True)
    with pytest.raises(UserError) as excinfo:
        load_image_folder(tmp_path / "tree")
    assert "holds neither train/<class>/<image>" in user_error(excinfo) and "found: cats/" in user_error(excinfo)


def test_image_folder_without_class_folders(tmp_path):
    (tmp_path / "tree" / "train").mkdir(parents=True)
    save_image(tmp_path / "tree" / "train" / "loose.png", 10)
    with pytest.raises(UserError) as excinfo:
        load_image_folder(tmp_path / "tree")
    assert "has no class folders" in user_error(excinfo)


def test_image_folder_empty_class(tmp_path):
    root = write_tree(tmp_path / "tree", with_test=False)
    (root / "train" / "dog").mkdir()
    (root / "train" / "dog" / "readme.txt").write_text("no images here")
    with pytest.raises(UserError) as excinfo:
        load_image_folder(root)
    message = user_error(excinfo)
    assert str(root / "train" / "dog") in message and "has no images" in message


@pytest.mark.parametrize("name", ["broken.png", "broken.jpg", "broken.bmp", "truncated.jpg"])
def test_image_folder_corrupt_image(tmp_path, name):
    root = write_tree(tmp_path / "tree", with_test=False)
    bad = root / "train" / "bee" / name
    if name.startswith("truncated"):
        save_image(bad, 100)
        bad.write_bytes(bad.read_bytes()[:300])
    else:
        bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really an image")
    with pytest.raises(UserError) as excinfo:
        load_image_folder(root)
    message = user_error(excinfo)
    assert str(bad) in message and "delete or replace it" in message


@pytest.mark.parametrize("name", ["big.png", "big.jpg"])
def test_image_folder_other_sizes_are_resized_and_counted(tmp_path, name):
    root = write_tree(tmp_path / "tree", with_test=False)
    save_image(root / "train" / "cat" / name, CLASS_VALUES["cat"], size=(40, 48))
    data = load_image_folder(root)
    assert data.train_images.shape == (16, 3, 32, 32)
    assert data.resized_from == {(40, 48): 1}  # for the start-of-run line: "resized from 40x48"
    assert [class_of(image) for image in data.train_images] == data.train_labels.tolist()


def test_image_folder_other_image_size(tmp_path):
    root = tmp_path / "tree"
    for name, value in CLASS_VALUES.items():
        save_image(root / "train" / name / "a.png", value, size=(40, 48))
    data = load_image_folder(root, image_size=(40, 48))
    assert data.train_images.shape == (3, 3, 40, 48) and data.image_size == (40, 48)


def test_image_folder_test_classes_differ(tmp_path):
    root = write_tree(tmp_path / "tree")
    save_image(root / "test" / "dog" / "d.png", 10)
    with pytest.raises(UserError) as excinfo:
        load_image_folder(root)
    assert "must have the same class folders" in user_error(excinfo) and "dog" in str(excinfo.value)


# --------------------------------------------------------------------------- shapes


def test_shapes_contract_and_balance():
    data = make_shapes(n_train=250, seed=0)
    assert isinstance(data, LessonData) and data.source == "shapes"
    assert data.class_names == SHAPE_CLASSES and len(data.class_names) == 10
    assert data.train_images.shape == (250, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.train_images.is_contiguous() and data.train_labels.dtype == torch.int64
    assert data.test_images.shape == (50, 3, 32, 32) and data.test_labels.shape == (50,)
    assert torch.bincount(data.train_labels, minlength=10).tolist() == [25] * 10
    assert torch.bincount(data.test_labels, minlength=10).tolist() == [5] * 10
    assert data.train_labels[:20].tolist() != sorted(data.train_labels[:20].tolist())
    # Values vary within images and between them.
    assert data.train_images.min() < 30 and data.train_images.max() > 225
    assert data.train_images.float().std(dim=(1, 2, 3)).min() > 5
    assert len(torch.unique(data.train_images.reshape(250, -1), dim=0)) == 250
    counts = torch.bincount(make_shapes(n_train=23, n_test=0).train_labels, minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 23


def test_shapes_seeded():
    first, again, other = make_shapes(100, seed=3), make_shapes(100, seed=3), make_shapes(100, seed=4)
    assert torch.equal(first.train_images, again.train_images) and torch.equal(first.test_images, again.test_images)
    assert torch.equal(first.train_labels, again.train_labels)
    assert not torch.equal(first.train_images, other.train_images)
    assert not torch.equal(first.train_images[:20], first.test_images)  # the test split is new images


def test_shapes_sizes_and_test_split():
    data = make_shapes(n_train=30, n_test=0, image_size=(48, 40))
    assert data.train_images.shape == (30, 3, 48, 40) and data.test_images is None and data.test_labels is None
    assert make_shapes(n_train=30, n_test=7).test_images.shape == (7, 3, 32, 32)
    with pytest.raises(UserError):
        make_shapes(n_train=0)


# --------------------------------------------------------------------------- subsets, splits, dispatch


def numbered(n_per_class: int = 20, num_classes: int = 10):
    """Images whose first pixel is their index, so a subset can be traced back."""
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    images = torch.zeros(len(labels), 3, 4, 4, dtype=torch.int64)
    images[:, 0, 0, 0] = torch.arange(len(labels))
    return images, labels


def test_limit_per_class_balanced_and_seeded():
    images, labels = numbered()
    sub_images, sub_labels = limit_per_class(images, labels, 25, seed=0)
    assert len(sub_labels) == 25
    assert torch.bincount(sub_labels, minlength=10).tolist() == [3] * 5 + [2] * 5
    assert torch.equal(labels[sub_images[:, 0, 0, 0]], sub_labels)  # images travel with their labels
    assert sub_labels.tolist() != sorted(sub_labels.tolist())  # in a random order
    same_images, _ = limit_per_class(images, labels, 25, seed=0)
    other_images, _ = limit_per_class(images, labels, 25, seed=1)
    assert torch.equal(same_images, sub_images) and not torch.equal(other_images, sub_images)
    everything = limit_per_class(images, labels, 10_000, seed=0)
    assert everything[0] is images and everything[1] is labels
    for bad in (0, -5):
        with pytest.raises(UserError) as excinfo:
            limit_per_class(images, labels, bad, seed=0)
        assert "--limit" in user_error(excinfo)


def test_split_validation_keras_rule():
    images, labels = torch.arange(10).reshape(10, 1), torch.arange(10)
    train_images, train_labels, val_images, val_labels = split_validation(images, labels, 0.25)
    assert train_labels.tolist() == list(range(7)) and val_labels.tolist() == [7, 8, 9]  # floor(10 * 0.75) = 7
    assert train_images.flatten().tolist() == list(range(7)) and val_images.flatten().tolist() == [7, 8, 9]
    assert len(split_validation(images, labels, 0.2)[3]) == 2
    for bad in (0, 1, 0.0, 1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(UserError) as excinfo:
            split_validation(images, labels, bad)
        assert "--validation-split must be between 0 and 1 (exclusive)" in user_error(excinfo)
    with pytest.raises(UserError):
        split_validation(images[:1], labels[:1], 0.5)  # nothing would be left to train on


def test_to_float():
    images = torch.tensor([[0, 51, 255]], dtype=torch.uint8)
    floats = to_float(images)
    assert floats.dtype == torch.float32 and torch.allclose(floats, torch.tensor([[0.0, 0.2, 1.0]]))
    assert images.tolist() == [[0, 51, 255]]
    with pytest.raises(TypeError):
        to_float(floats)


def test_resolve_dataset(tmp_path):
    root = write_tree(tmp_path / "tree", with_test=False)
    assert resolve_dataset(None, root) == "folder"
    assert resolve_dataset("auto", root) == "folder"
    with pytest.raises(UserError, match="does not exist"):  # a typo is never a download folder
        resolve_dataset(None, tmp_path / "elsewhere")
    (tmp_path / "downloaded" / "cifar-10-batches-py").mkdir(parents=True)
    assert resolve_dataset(None, tmp_path / "downloaded") == "cifar10"
    assert resolve_dataset(None, None) == "cifar10"
    with pytest.warns(UserWarning, match="is not used: the shapes data is generated"):
        assert resolve_dataset("shapes", root) == "shapes"
    with pytest.raises(UserError) as excinfo:
        resolve_dataset("mnist", None)
    assert all(name in user_error(excinfo) for name in DATASETS)


def test_load_data_dispatch(tmp_path):
    shapes = load_data("shapes", limit=50, seed=1)
    assert shapes.train_images.shape == (50, 3, 32, 32) and shapes.test_images.shape == (10, 3, 32, 32)
    assert len(load_data("shapes").train_labels) == 4000  # cnn_torch.sources.shapes.DEFAULT_TRAIN_SIZE

    root = write_tree(tmp_path / "tree")
    folder = load_data("folder", root, limit=4, seed=0)
    assert len(folder.train_labels) == 4 and sorted(torch.bincount(folder.train_labels).tolist()) == [1, 1, 2]
    assert len(folder.test_labels) == 6  # the limit is for training only
    assert len(load_data(None, root).train_labels) == 15

    for args, text in [
        (("folder", None), "--data-dir"),
        (("shapes", None, 0), "--limit"),
        (("imagenet",), "choose one of"),
    ]:
        with pytest.raises(UserError) as excinfo:
            load_data(*args)
        assert text in user_error(excinfo)


@pytest.mark.slow
def test_real_cifar10_jpegs():
    if not REAL_JPEGS.is_dir():
        pytest.skip("../shared/data/cifar10-jpg not found (real CIFAR-10 JPEGs; see README)")
    data = load_image_folder(REAL_JPEGS)
    assert data.train_images.shape == (50_000, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.class_names == CIFAR_CLASSES
    assert torch.bincount(data.train_labels).tolist() == [5_000] * 10
    assert data.test_images is None
