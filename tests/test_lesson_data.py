"""The 2026 lesson's data in one command (``lesson-data``), and CIFAR-10's five classes in the notebooks.

The lesson's ``cifar10_images_small/`` is built from the two CIFAR-10 copies cnn-torch reads:
torchvision's pickled batches and an image-folder copy of JPEG files, both written here in their
real formats. Counts, classes, disjoint splits, the seed, lossless files, refusing to overwrite,
all or nothing, and train.py reading the result. No network.
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnn_torch import workshop
from cnn_torch.cli import commands
from cnn_torch.cli import lesson_data as lesson_data_cli
from cnn_torch.data import load_data, load_image_folder
from cnn_torch.errors import UserError
from cnn_torch.sources import lesson_folders
from cnn_torch.sources.image_files import decode_files
from cnn_torch.sources.lesson_folders import LESSON_CLASSES, build_lesson_folders

ROOT = Path(__file__).resolve().parents[1]
SHARED_JPEGS = ROOT.parent / "shared" / "data" / "cifar10-jpg"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SPLITS = ("train", "val", "test")
LESSON_COUNTS = {"train": 1000, "val": 250, "test": 250}
SMALL = {"train": 4, "val": 2, "test": 2}  # per class: for the checks that need no lesson-sized folder


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_TORCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def batches_copy(tmp_path_factory) -> Path:
    """torchvision's ``cifar-10-batches-py``: five data batches and a test batch, pickled dicts of
    (N, 3072) uint8 rows (R, G, B planes) and labels, with CIFAR-10's names in ``batches.meta``;
    300 training and 60 test images of each class."""
    root = tmp_path_factory.mktemp("torchvision")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, size in [(f"data_batch_{i}", 600) for i in range(1, 6)] + [("test_batch", 600)]:
        rows = rng.integers(0, 256, size=(size, 3072), dtype=np.uint8)
        labels = [int(label) for label in rng.permutation(np.arange(size) % 10)]  # balanced, shuffled
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": rows, "labels": labels}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES, "num_cases_per_batch": 600}, f, protocol=2)
    return root


@pytest.fixture(autouse=True)
def own_batches(monkeypatch):
    """The batches are ours, so their MD5s are not CIFAR-10's: torchvision checks only that they exist."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda fpath, md5=None: Path(fpath).is_file())
    monkeypatch.setattr(cifar, "download_and_extract_archive", lambda *a, **k: pytest.fail("tried to download"))


def batch_images(root: Path, names: list[str]) -> tuple[torch.Tensor, list[int]]:
    """The images and labels of these batches, concatenated: index i is image i of the files' order."""
    rows, labels = [], []
    for name in names:
        with open(root / "cifar-10-batches-py" / name, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        rows.append(batch["data"])
        labels += batch["labels"]
    return torch.from_numpy(np.concatenate(rows).reshape(-1, 3, 32, 32)), labels


@pytest.fixture(scope="module")
def jpeg_copy(tmp_path_factory) -> Path:
    """An image-folder copy of CIFAR-10, like ../shared/data/cifar10-jpg: train/<class>/NNNN.jpg only;
    300 JPEGs of each lesson class, 2 of each other class."""
    root = tmp_path_factory.mktemp("jpeg") / "cifar10-jpg"
    rng = np.random.default_rng(1)
    for class_name in CIFAR_CLASSES:
        folder = root / "train" / class_name
        folder.mkdir(parents=True)
        for n in range(300 if class_name in LESSON_CLASSES else 2):
            pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{n:04d}.jpg", quality=75)
    return root


def png_files(root: Path) -> dict[str, dict[str, list[str]]]:
    """``{split: {class: [file names]}}`` of a built folder."""
    return {
        split: {folder.name: sorted(p.name for p in folder.iterdir()) for folder in sorted((root / split).iterdir())}
        for split in SPLITS
    }


def read_png(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


# --------------------------------------------------------------------------- torchvision's batches


def test_from_torchvision_batches_the_lessons_counts_classes_and_pixels(batches_copy, tmp_path):
    built = build_lesson_folders(batches_copy, tmp_path / "cifar10_images_small", seed=3)
    files = png_files(built.root)
    for split, per_class in {"train": 200, "val": 50, "test": 50}.items():
        assert list(files[split]) == LESSON_CLASSES  # five class folders, nothing else
        assert [len(names) for names in files[split].values()] == [per_class] * 5, split
    assert built.counts == LESSON_COUNTS and built.class_names == LESSON_CLASSES
    assert built.split_sources == {"train": "data_batch_1..5", "val": "data_batch_1..5", "test": "test_batch"}

    # each file is named by its index in the batches: train/ and val/ share none; its pixels are that image's
    train_images, train_labels = batch_images(batches_copy, [f"data_batch_{i}" for i in range(1, 6)])
    test_images, test_labels = batch_images(batches_copy, ["test_batch"])
    seen = {split: set() for split in SPLITS}
    for split, (images, labels) in {"train": (train_images, train_labels), "val": (train_images, train_labels),
                                    "test": (test_images, test_labels)}.items():  # fmt: skip
        for class_name, names in files[split].items():
            for name in names:
                index = int(Path(name).stem)
                assert CIFAR_CLASSES[labels[index]] == class_name
                assert torch.equal(read_png(built.root / split / class_name / name), images[index])
                seen[split].add(index)
    assert not seen["train"] & seen["val"]


def test_the_cifar10_batches_folder_itself_is_taken_too(batches_copy, tmp_path):
    built = build_lesson_folders(batches_copy / "cifar-10-batches-py", tmp_path / "small", per_class=SMALL)
    assert built.source == batches_copy and built.counts == {"train": 20, "val": 10, "test": 10}


# --------------------------------------------------------------------------- an image-folder copy


def test_from_an_image_folder_copy_the_lessons_counts_disjoint_and_lossless(jpeg_copy, tmp_path):
    built = build_lesson_folders(jpeg_copy, tmp_path / "cifar10_images_small")
    files = png_files(built.root)
    for split, per_class in {"train": 200, "val": 50, "test": 50}.items():
        assert list(files[split]) == LESSON_CLASSES
        assert [len(names) for names in files[split].values()] == [per_class] * 5, split
    assert built.split_sources == {"train": "train/", "val": "train/", "test": "train/"}  # no test/: from train/
    for class_name in LESSON_CLASSES:  # one source image in one split at most; 0450.png is cat/0450.jpg
        names = [name for split in SPLITS for name in files[split][class_name]]
        assert len(names) == len(set(names)) == 300
    # lossless: each PNG holds the pixels cnn-torch decodes from its JPEG, not a second rounding of them
    for split in SPLITS:
        for class_name, names in files[split].items():
            pngs = [built.root / split / class_name / name for name in names[:10]]
            sources = [str(jpeg_copy / "train" / class_name / f"{Path(name).stem}.jpg") for name in names[:10]]
            for png, decoded in zip(pngs, decode_files(sources), strict=True):
                assert torch.equal(read_png(png), decoded)


def test_a_source_test_folder_gives_test(jpeg_copy, tmp_path):
    source = tmp_path / "with_test"
    for split in ("train", "test"):  # a copy with its own test/: test/ comes from there
        for class_name in LESSON_CLASSES:
            (source / split / class_name).mkdir(parents=True)
            for n in range(6 if split == "train" else 2):
                (source / split / class_name / f"{n}.jpg").write_bytes((jpeg_copy / "train/cat/0000.jpg").read_bytes())
    built = build_lesson_folders(source, tmp_path / "small", per_class=SMALL)
    assert built.split_sources["test"] == "test/" and built.counts["test"] == 10


def test_the_seed_repeats_the_choice_and_another_seed_changes_it(jpeg_copy, tmp_path):
    first = png_files(build_lesson_folders(jpeg_copy, tmp_path / "a", seed=5, per_class=SMALL).root)
    again = png_files(build_lesson_folders(jpeg_copy, tmp_path / "b", seed=5, per_class=SMALL).root)
    other = png_files(build_lesson_folders(jpeg_copy, tmp_path / "c", seed=6, per_class=SMALL).root)
    assert first == again and first != other
    assert all((tmp_path / "a" / png.relative_to(tmp_path / "b")).read_bytes() == png.read_bytes()
               for png in (tmp_path / "b").rglob("*.png"))  # fmt: skip


# --------------------------------------------------------------------------- nothing overwritten, nothing half


def test_a_folder_that_holds_anything_is_refused_and_left_alone(jpeg_copy, tmp_path, capsys):
    target = tmp_path / "cifar10_images_small"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"already exists and is not empty: delete it first, or name a new folder"):
        build_lesson_folders(jpeg_copy, target, per_class=SMALL)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert not (tmp_path / "cifar10_images_small.partial").exists()
    # the command: one line on stderr, exit 2, nothing on stdout
    assert commands.main(["lesson-data", "--from", str(jpeg_copy), "--to", str(target)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"error: --to {target} already exists and is not empty: delete it first, or pass")
    # an empty folder (made for it) is filled
    (target / "notes.txt").unlink()
    assert build_lesson_folders(jpeg_copy, target, per_class=SMALL).counts["train"] == 20


def test_ctrl_c_leaves_no_folder_that_looks_complete(jpeg_copy, tmp_path, monkeypatch, capsys):
    written = []
    real_write = lesson_folders.write_png

    def interrupted_after_30(image, path):
        if len(written) == 30:
            raise KeyboardInterrupt
        real_write(image, path)
        written.append(path)

    monkeypatch.setattr(lesson_folders, "write_png", interrupted_after_30)
    with pytest.raises(KeyboardInterrupt):
        build_lesson_folders(jpeg_copy, tmp_path / "cifar10_images_small", per_class=SMALL)
    assert len(written) == 30
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("cifar10_images_small")]
    # the command: exit 130 and one line that says nothing was written
    written.clear()
    assert commands.main(["lesson-data", "--from", str(jpeg_copy), "--to", str(tmp_path / "small")]) == 130
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == f"interrupted: nothing written, {tmp_path / 'small'} was not made"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("small")]


def test_a_source_that_is_not_cifar10_or_too_small_is_one_line_naming_the_fix(jpeg_copy, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"holds neither cifar-10-batches-py/ .* nor train/<class>/ .*: name the"):
        build_lesson_folders(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(UserError, match=r"does not exist: name the folder that holds cifar-10-batches-py/"):
        build_lesson_folders(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(UserError, match=r"holds 2 automobile images, fewer than the 8 the lesson's folders take"):
        build_lesson_folders(jpeg_copy, tmp_path / "out", class_names=["cat", "automobile"], per_class=SMALL)
    with pytest.raises(UserError, match=r"zebra is not a class in .*train: choose from airplane automobile"):
        build_lesson_folders(jpeg_copy / "train", tmp_path / "out", class_names=["cat", "zebra"])
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


# --------------------------------------------------------------------------- the command, and training on it


def test_the_command_says_what_it_wrote_and_train_reads_it(batches_copy, tmp_path, capsys):
    target = tmp_path / "cifar10_images_small"
    assert commands.main(["lesson-data", "--from", str(batches_copy), "--to", str(target), "--seed", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"From:    {batches_copy} (torchvision's cifar-10-batches-py/)"
    assert out[1].startswith(f"Wrote:   {target}/ in ") and out[1].endswith("PNG files (lossless), seed 1")
    assert out[2:5] == [
        "  train/  1,000 images, 200 per class, from data_batch_1..5",
        "  val/      250 images,  50 per class, from data_batch_1..5, none in train/",
        "  test/     250 images,  50 per class, from test_batch",
    ]
    assert out[5:] == ["Classes: airplane bird cat dog truck", f"Train:   cnn-torch train --data-dir {target}"]

    from cnn_torch.cli import train

    run_dir = tmp_path / "run"
    argv = ["--data-dir", str(target), "--model", "model_intro", "--epochs", "1", "--out", str(run_dir), "--quiet"]
    assert train.main([*argv, "--device", "cpu"]) == 0
    data = json.loads((run_dir / "run.json").read_text())["data"]
    assert data["class_names"] == LESSON_CLASSES
    assert (data["train_images"], data["val_images"], data["test_images"]) == (1000, 250, 250)
    assert data["splits"]["val"] == str((target / "val").resolve())


def test_the_script_and_the_command_name_each_other_s_train(monkeypatch):
    monkeypatch.setattr("sys.argv", ["scripts/lesson_data.py"])
    monkeypatch.chdir(ROOT)
    assert lesson_data_cli.train_command() == "python scripts/train.py"
    monkeypatch.setattr("sys.argv", ["python -m cnn_torch lesson-data"])
    assert lesson_data_cli.train_command() == "python -m cnn_torch train"


# --------------------------------------------------------------------------- the notebooks' settings


def test_cifar10_5_reads_an_image_folder_copy(jpeg_copy):
    train_ds, val_ds, test_ds = workshop.prepare_datasets("cifar10-5", jpeg_copy, limit=100, seed=2)
    assert train_ds.class_names == LESSON_CLASSES
    assert (len(train_ds), len(val_ds)) == (80, 20)  # Keras's validation_split=0.2 of the 100
    assert torch.bincount(torch.cat([train_ds.labels, val_ds.labels]), minlength=5).tolist() == [20] * 5
    assert test_ds is val_ds  # the copy has no test/: as for any folder without one
    # the same from load_data: "cifar10" with an image-folder copy reads the copy
    lesson = load_data("cifar10", jpeg_copy, class_names=LESSON_CLASSES)
    assert lesson.class_names == LESSON_CLASSES and len(lesson.train_labels) == 1500
    assert lesson.source == f"folder:{jpeg_copy.resolve()}"


def test_folder_takes_a_class_list_and_cifar10_5_reads_the_built_folders(jpeg_copy, tmp_path):
    train_ds, _, _ = workshop.prepare_datasets("folder", jpeg_copy, limit=None, class_names=["dog", "cat"])
    assert train_ds.class_names == ["dog", "cat"] and len(train_ds) == 480  # 80% of 600
    built = build_lesson_folders(jpeg_copy, tmp_path / "cifar10_images_small").root
    for dataset in ("folder", "cifar10-5"):
        train_ds, val_ds, test_ds = workshop.prepare_datasets(dataset, built)
        assert (len(train_ds), len(val_ds), len(test_ds)) == (1000, 250, 250)  # its own val/ and test/
        assert val_ds.source == str((built / "val").resolve()) and train_ds.class_names == LESSON_CLASSES
    image = load_image_folder(built).val_images[0]
    assert image.shape == (3, 32, 32)


@pytest.mark.parametrize(
    ("settings", "words"),
    [({"dataset": "folder", "data_dir": None}, 'DATASET = "folder" reads DATA_DIR: set DATA_DIR = "path/to/images"'),
     ({"data_dir": "nowhere"}, 'DATA_DIR = "nowhere" does not exist: set it to the folder'),
     ({"dataset": "folder", "data_dir": "EMPTY"}, "holds no train/<class>/ folders: set it to the folder that holds"),
     ({"dataset": "folder", "data_dir": "BATCHES"}, 'batches-py/, not train/<class>/: set DATASET = "cifar10"'),
     ({"data_dir": "JPEGS/train"}, 'is a train/ folder: set DATA_DIR = "'),
     ({"limit": 0}, "LIMIT = 0 is not a number of images: set LIMIT = 1250, or None"),
     ({"class_names": ["cat", "dog", "cat"]}, "class_names names cat more than once: name each class once")],
)  # fmt: skip
def test_notebook_mistakes_are_named_as_the_settings_cell_spells_them(settings, words, tmp_path, jpeg_copy,
                                                                      batches_copy):  # fmt: skip
    (tmp_path / "EMPTY").mkdir()
    places = {"EMPTY": tmp_path / "EMPTY", "BATCHES": batches_copy, "JPEGS/train": jpeg_copy / "train"}
    if "data_dir" in settings:
        settings = {**settings, "data_dir": places.get(settings["data_dir"], settings["data_dir"])}
    with pytest.raises(UserError) as caught:
        workshop.prepare_datasets(**{"dataset": "cifar10-5", "data_dir": jpeg_copy, **settings})
    message = str(caught.value)
    assert words in message and "--" not in message and "\n" not in message


def test_a_repeated_class_is_refused_by_every_source(jpeg_copy):
    with pytest.raises(UserError, match="names cat more than once"):  # a folder read twice under two labels
        load_data("folder", jpeg_copy, class_names=["cat", "dog", "cat"])


def test_cifar10_out_of_reach_in_a_notebook_names_the_settings(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    def no_network(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(cifar, "download_and_extract_archive", no_network)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as caught:
        workshop.prepare_datasets("cifar10-5", tmp_path / "empty")
    message = str(caught.value)
    assert "could not be downloaded (Name or service not known): set DATA_DIR to a folder" in message
    assert 'DATASET = "shapes"' in message and "--" not in message


def test_a_data_dir_the_shapes_do_not_use_is_a_warning_in_the_settings_words(tmp_path):
    with pytest.warns(UserWarning, match=r'DATA_DIR = ".*" is not used: DATASET = "shapes" is generated'):
        workshop.check_settings("shapes", tmp_path, 50)


# --------------------------------------------------------------------------- the real CIFAR-10 JPEGs


@pytest.mark.slow
def test_the_shared_cifar10_jpegs_give_the_lessons_folders(tmp_path, capsys):
    if not (SHARED_JPEGS / "train").is_dir():
        pytest.skip(f"{SHARED_JPEGS} not found (the real CIFAR-10 JPEGs; see ../shared/data/README.md)")
    target = tmp_path / "cifar10_images_small"
    started = time.perf_counter()
    assert commands.main(["lesson-data", "--from", str(SHARED_JPEGS), "--to", str(target)]) == 0
    assert time.perf_counter() - started < 120
    assert "  test/     250 images,  50 per class, from train/, none in train/ or val/" in capsys.readouterr().out
    lesson = load_image_folder(target)
    assert lesson.class_names == LESSON_CLASSES
    assert [len(lesson.train_labels), len(lesson.val_labels), len(lesson.test_labels)] == [1000, 250, 250]
    assert torch.bincount(lesson.test_labels).tolist() == [50] * 5
    cat = sorted((target / "test" / "cat").iterdir())[0]
    assert torch.equal(read_png(cat), decode_files([str(SHARED_JPEGS / "train" / "cat" / f"{cat.stem}.jpg")])[0])
