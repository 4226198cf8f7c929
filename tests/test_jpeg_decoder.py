"""JPEG files read as Keras reads them: ``image_dataset_from_directory`` decodes them with
TensorFlow's defaults (libjpeg-turbo's fast integer inverse DCT, fancy upsampling), a few levels
from PIL's and torchvision's accurate decoder, which ``jpeg_decoder="accurate"`` keeps.

Every file is written by the test: colour at three chroma subsamplings and odd sizes, grey,
progressive, CMYK with and without Adobe's marker, YCCK, 1x1, a JPEG named .png. Without
TensorFlow the reference is what is known of it: libjpeg-turbo's fast DCT (simplejpeg) and
TensorFlow's CMYK formula (``jpeg_mem.cc``). With ``CNN_TORCH_TF_PYTHON`` naming a Python with
tensorflow and keras, ``tf.io.decode_image`` and ``image_dataset_from_directory`` themselves.
"""

from __future__ import annotations

import argparse
import os
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnn_torch import data
from cnn_torch.cli import flags as cli
from cnn_torch.cli.runs import describe_data
from cnn_torch.errors import UserError
from cnn_torch.sources import image_files, image_folder
from cnn_torch.sources.image_files import decode_image, jpeg_decoder_in_use, load_image, read_bytes, resize
from cnn_torch.sources.image_folder import load_image_folder

simplejpeg = pytest.importorskip("simplejpeg", reason="the keras JPEG decoder needs simplejpeg: pip install simplejpeg")

ROOT = Path(__file__).resolve().parents[1]
SHARED_JPEGS = ROOT.parent / "shared" / "data" / "cifar10-jpg"
TF_PYTHON = os.environ.get("CNN_TORCH_TF_PYTHON")
NEEDS_TF = pytest.mark.skipif(not TF_PYTHON, reason="set CNN_TORCH_TF_PYTHON to a Python with tensorflow and keras")


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CNN_TORCH_CACHE", str(cache))
    return cache


def photo(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Noise over a gradient: enough detail that the two inverse DCTs round apart."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:height, 0:width]
    gradient = ((columns * 7 + rows * 3) % 256)[..., None]
    return ((rng.integers(0, 256, (height, width, channels)) + gradient) // 2).astype(np.uint8)


def without_adobe_marker(raw: bytes) -> bytes:
    """The same JPEG without its APP14 "Adobe" segment (libjpeg's ``saw_Adobe_marker`` false)."""
    kept, i = bytearray(raw[:2]), 2
    while raw[i : i + 2] != b"\xff\xda":  # up to the start of scan, one marker segment at a time
        length = int.from_bytes(raw[i + 2 : i + 4], "big")
        if raw[i : i + 2] != b"\xff\xee":
            kept += raw[i : i + 2 + length]
        i += 2 + length
    return bytes(kept + raw[i:])


def write_jpegs(folder: Path) -> dict[str, Path]:
    """One JPEG of every kind a learner's folder may hold."""
    folder.mkdir(parents=True, exist_ok=True)
    pil_images = {
        "photo.jpg": (Image.fromarray(photo(64, 48)), {"quality": 90}),
        "odd_420.jpg": (Image.fromarray(photo(33, 17, seed=1)), {"quality": 75}),
        "odd_422.jpeg": (Image.fromarray(photo(31, 45, seed=2)), {"quality": 60, "subsampling": 1}),
        "full_444.jpg": (Image.fromarray(photo(20, 24, seed=3)), {"quality": 95, "subsampling": 0}),
        "grey.jpg": (Image.fromarray(photo(29, 37, 1, seed=4)[..., 0], "L"), {"quality": 80}),
        "progressive.jpg": (Image.fromarray(photo(40, 35, seed=5)), {"quality": 75, "progressive": True}),
        "progressive_grey.jpg": (Image.fromarray(photo(17, 23, 1, seed=6)[..., 0], "L"), {"progressive": True}),
        "cmyk.jpg": (Image.fromarray(photo(21, 19, 4, seed=7), "CMYK"), {"quality": 85}),
        "one_pixel.jpg": (Image.fromarray(photo(1, 1, seed=8)), {"quality": 75}),
        "jpeg_named.png": (Image.fromarray(photo(16, 16, seed=9)), {"quality": 75, "format": "JPEG"}),
    }
    paths = {}
    for name, (pil_image, options) in pil_images.items():
        paths[name] = folder / name
        pil_image.save(paths[name], **options)
    paths["cmyk_no_adobe.jpg"] = folder / "cmyk_no_adobe.jpg"
    paths["cmyk_no_adobe.jpg"].write_bytes(without_adobe_marker(paths["cmyk.jpg"].read_bytes()))
    paths["ycck.jpg"] = folder / "ycck.jpg"  # TurboJPEG writes CMYK as YCCK
    paths["ycck.jpg"].write_bytes(simplejpeg.encode_jpeg(photo(23, 31, 4, seed=10), quality=80, colorspace="CMYK"))
    return paths


def is_cmyk(name: str) -> bool:
    return name.startswith(("cmyk", "ycck"))


def fast_dct(path: Path, colorspace: str = "RGB") -> np.ndarray:
    """libjpeg-turbo's fast integer inverse DCT with fancy upsampling: tf.io.decode_jpeg's defaults."""
    return simplejpeg.decode_jpeg(path.read_bytes(), colorspace, fastdct=True, fastupsample=False)


def tensorflow_cmyk_to_rgb(path: Path) -> np.ndarray:
    """TensorFlow's conversion (jpeg_mem.cc) of libjpeg's CMYK, written out: Adobe's CMYK is inverted."""
    cmyk = fast_dct(path, "CMYK").astype(np.int64)
    c, m, y, k = np.moveaxis(cmyk, -1, 0)
    if b"Adobe" in path.read_bytes()[:200]:
        return np.stack([k * c // 255, k * m // 255, k * y // 255], -1).astype(np.uint8)
    return np.stack([(255 - k) * (255 - c) // 255, (255 - k) * (255 - m) // 255, (255 - k) * (255 - y) // 255],
                    -1).astype(np.uint8)  # fmt: skip


def ours(path: Path, mode: str = "RGB", jpeg_decoder: str = "keras") -> np.ndarray:
    image = decode_image(str(path), read_bytes(str(path)), mode, jpeg_decoder)
    return image.permute(1, 2, 0).numpy()


def pil_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as source:
        return np.asarray(source.convert("RGB"))


# --------------------------------------------------------------------------- without TensorFlow


def test_default_is_libjpeg_turbos_fast_dct_and_accurate_is_pils(tmp_path):
    paths = write_jpegs(tmp_path)
    for name, path in paths.items():
        expected = tensorflow_cmyk_to_rgb(path) if is_cmyk(name) else fast_dct(path)
        assert np.array_equal(ours(path), expected), name
        assert ours(path).shape == (*expected.shape[:2], 3), name
        assert np.array_equal(ours(path, jpeg_decoder="accurate"), pil_rgb(path)), name
    # the two decoders differ on a photo, by a few levels: the gap this decoder closes
    gap = np.abs(ours(paths["photo.jpg"]).astype(int) - pil_rgb(paths["photo.jpg"]).astype(int))
    assert 0 < gap.max() <= 16


def test_grey_files_repeat_and_channels_1_reads_libjpegs_grey(tmp_path):
    paths = write_jpegs(tmp_path)
    for name in ("grey.jpg", "progressive_grey.jpg"):
        rgb = ours(paths[name])
        assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    for name, path in paths.items():  # decode_image(channels=1): libjpeg's Y channel, not PIL's RGB-to-L
        if not is_cmyk(name):
            assert np.array_equal(ours(path, "L")[..., 0], fast_dct(path, "GRAY")[..., 0]), name
    assert ours(paths["cmyk.jpg"], "L").shape == (21, 19, 1)  # TensorFlow refuses it; PIL's grey here


def test_truncated_jpeg_is_refused_and_stray_bytes_are_not(tmp_path):
    """As TensorFlow: a truncated file fails; libjpeg's warnings (bytes before a marker) do not."""
    raw = write_jpegs(tmp_path)["photo.jpg"].read_bytes()
    truncated, stray = tmp_path / "truncated.jpg", tmp_path / "stray.jpg"
    truncated.write_bytes(raw[: len(raw) // 2])
    stray.write_bytes(raw[:-2] + b"\x00\x01\x02" + raw[-2:])
    with pytest.raises(UserError, match="truncated.jpg .*delete or replace it"):
        ours(truncated)
    assert np.array_equal(ours(stray), ours(tmp_path / "photo.jpg"))


def test_load_image_reads_as_the_folder_loader_by_default(tmp_path):
    """predict's one-file loader: the same decoder as training by default, resized after it."""
    path = write_jpegs(tmp_path)["photo.jpg"]
    as_keras = resize(torch.from_numpy(fast_dct(path)).permute(2, 0, 1).contiguous(), (32, 32))
    as_pil = resize(torch.from_numpy(pil_rgb(path).copy()).permute(2, 0, 1).contiguous(), (32, 32))
    assert torch.equal(load_image(path, (32, 32)), as_keras)
    assert torch.equal(load_image(path, (32, 32), jpeg_decoder="accurate"), as_pil)
    assert not torch.equal(as_keras, as_pil)
    with pytest.raises(UserError, match="unknown JPEG decoder 'fast'.*keras.*accurate"):
        load_image(path, (32, 32), jpeg_decoder="fast")


def jpeg_tree(root: Path) -> Path:
    for label in ("cat", "dog"):
        for i in range(3):
            path = root / "train" / label / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo(48, 40, seed=10 * i + len(label))).save(path, quality=85)
    return root


def test_cache_key_changes_with_the_decoder(tmp_path, cache_in_tmp, monkeypatch):
    root = jpeg_tree(tmp_path / "tree")
    as_keras = load_image_folder(root)
    as_pil = load_image_folder(root, jpeg_decoder="accurate")
    assert len(list(cache_in_tmp.glob("*.pt"))) == 2  # one cache per decoder
    assert not torch.equal(as_keras.train_images, as_pil.train_images)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(image_folder, "_decode_files", no_decoding)  # each decoder finds its own cache
    assert torch.equal(load_image_folder(root).train_images, as_keras.train_images)
    assert torch.equal(load_image_folder(root, jpeg_decoder="accurate").train_images, as_pil.train_images)
    # load_data passes the argument on
    assert torch.equal(data.load_data("folder", root, jpeg_decoder="accurate").train_images, as_pil.train_images)


@pytest.fixture
def without_simplejpeg(monkeypatch):
    monkeypatch.setitem(sys.modules, "simplejpeg", None)  # `import simplejpeg` raises ImportError
    image_files._simplejpeg.cache_clear()
    yield monkeypatch
    image_files._simplejpeg.cache_clear()


def test_without_simplejpeg_pils_decoder_with_one_warning(tmp_path, cache_in_tmp, without_simplejpeg):
    root = jpeg_tree(tmp_path / "tree")
    first = root / "train" / "cat" / "0.jpg"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback = load_image_folder(root)
        single = load_image(first, (48, 40))
        assert jpeg_decoder_in_use("keras") == "accurate"
    assert len([w for w in caught if "pip install simplejpeg" in str(w.message)]) == 1
    assert np.array_equal(single.permute(1, 2, 0).numpy(), pil_rgb(first))
    # the cache is keyed on the decoder that ran: once simplejpeg is installed, the folder is decoded anew
    without_simplejpeg.setitem(sys.modules, "simplejpeg", simplejpeg)
    image_files._simplejpeg.cache_clear()
    assert not torch.equal(load_image_folder(root).train_images, fallback.train_images)
    assert len(list(cache_in_tmp.glob("*.pt"))) == 2


def test_flag_reaches_load_data_and_run_json(tmp_path):
    parser = argparse.ArgumentParser()
    cli.add_data_flags(parser)
    assert cli.data_options(parser.parse_args([]))["jpeg_decoder"] == "keras"
    args = parser.parse_args(["--jpeg-decoder", "accurate"])
    assert cli.data_options(args)["jpeg_decoder"] == "accurate"
    assert "jpeg_decoder" not in cli.PROCESS_FLAGS  # a run's flag: a resumed run decodes as it started
    args.jpeg_decoder = "fast"  # as from a run.json edited by hand
    with pytest.raises(UserError, match="--jpeg-decoder must be one of keras, accurate"):
        cli.check_data_flags(args)
    with pytest.raises(SystemExit), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parser.parse_args(["--jpeg-decoder", "fast"])

    folder = load_image_folder(jpeg_tree(tmp_path / "tree"))
    for jpeg_decoder in ("keras", "accurate"):
        assert describe_data(folder, 0.2, 2, None, jpeg_decoder=jpeg_decoder)["jpeg_decoder"] == jpeg_decoder
    shapes = data.load_data("shapes", limit=20)
    assert describe_data(shapes, 0.2, 2, None)["jpeg_decoder"] is None  # arrays: no file was decoded


# --------------------------------------------------------------------------- against TensorFlow

# Run by CNN_TORCH_TF_PYTHON: tf.io.decode_image, as image_dataset_from_directory calls it, on every file.
TF_DECODE = """
import sys, numpy as np, tensorflow as tf
out, paths = sys.argv[1], sys.argv[2:]
pixels = {}
for i, path in enumerate(paths):
    raw = tf.io.read_file(path)
    pixels[f"rgb{i}"] = tf.io.decode_image(raw, channels=3, expand_animations=False).numpy()
    try:
        pixels[f"grey{i}"] = tf.io.decode_image(raw, channels=1, expand_animations=False).numpy()
    except tf.errors.InvalidArgumentError:  # CMYK to grey: "Unsupported color conversion request"
        pass
np.savez(out, **pixels)
"""


def tensorflow_decodes(paths: list[Path], out: Path) -> dict[str, np.ndarray]:
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([TF_PYTHON, "-c", TF_DECODE, str(out), *map(str, paths)], capture_output=True, text=True,
                          env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(out) as decoded:
        return {name: decoded[name] for name in decoded.files}


@NEEDS_TF
def test_pixels_equal_tensorflows_decode_image(tmp_path):
    paths = write_jpegs(tmp_path / "files")
    theirs = tensorflow_decodes(list(paths.values()), tmp_path / "tf.npz")
    for i, (name, path) in enumerate(paths.items()):
        assert np.array_equal(ours(path), theirs[f"rgb{i}"]), name
        assert not is_cmyk(name) or f"grey{i}" not in theirs, name
        if f"grey{i}" in theirs:
            assert np.array_equal(ours(path, "L"), theirs[f"grey{i}"]), name


@NEEDS_TF
def test_folder_equals_image_dataset_from_directory(tmp_path):
    """Keras's own loader, resizing 48x40 JPEGs to 32x32: within uint8 rounding by default,
    a few levels apart with the accurate decoder."""
    compare = runpy.run_path(str(ROOT / "scripts" / "loader_gap.py"))  # a measuring script, not a module
    root = jpeg_tree(tmp_path / "tree")
    theirs = compare["keras_pixels"](TF_PYTHON, root / "train", (32, 32), 10**9, False, False)
    as_keras = compare["compare"](theirs, root, (32, 32), False, False, "keras")[".jpg"]
    as_pil = compare["compare"](theirs, root, (32, 32), False, False, "accurate")[".jpg"]
    assert as_keras["files"] == 6 and as_keras["max_gap"] <= 0.5 + 1e-3 and as_keras["same_pixels"] == 1
    assert as_pil["max_gap"] > 1


# --------------------------------------------------------------------------- the shared CIFAR-10 JPEGs


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_JPEGS.is_dir(), reason=f"{SHARED_JPEGS} not found (real CIFAR-10 JPEGs; see README)")
def test_shared_cifar10_jpegs_read_as_keras_reads_them(tmp_path):
    """2,000 of the 50,000 files, 200 evenly spread over each class: libjpeg-turbo's fast DCT
    through the folder loader, every one apart from PIL's pixels; with CNN_TORCH_TF_PYTHON,
    ``image_dataset_from_directory``'s very pixels (scripts/loader_gap.py measures all 50,000)."""
    root = tmp_path / "sample"
    for class_dir in sorted((SHARED_JPEGS / "train").iterdir()):
        files = sorted(class_dir.glob("*.jpg"))
        (root / "train" / class_dir.name).mkdir(parents=True)
        for path in files[:: len(files) // 200][:200]:
            (root / "train" / class_dir.name / path.name).symlink_to(path)
    paths = sorted(str(path) for path in root.glob("train/*/*.jpg"))
    assert len(paths) == 2000
    decoded = image_files.decode_files(paths)
    assert all(np.array_equal(image.permute(1, 2, 0).numpy(), fast_dct(Path(path)))
               for image, path in zip(decoded, paths, strict=True))  # fmt: skip
    accurate = image_files.decode_files(paths, "accurate")
    differs = [not torch.equal(a, b) for a, b in zip(decoded, accurate, strict=True)]
    assert sum(differs) >= 1900  # measured: all 50,000 differ, by at most 5 levels
    if TF_PYTHON:
        compare = runpy.run_path(str(ROOT / "scripts" / "loader_gap.py"))
        report = compare["gaps"](TF_PYTHON, root, (32, 32))[".jpg"]
        assert report == {"files": 2000, "max_gap": 0.0, "mean_gap": 0.0, "same_pixels": 1.0}
