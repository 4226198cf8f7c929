"""How far cnn-torch's image-folder pixels are from Keras's ``image_dataset_from_directory``.

    python scripts/loader_gap.py --tf-python path/to/tf-venv/bin/python --data-dir path/to/images

Keras 3 on TensorFlow runs in its own interpreter (``--tf-python``, one with tensorflow and
keras installed), reads ``DIR/train`` with ``image_dataset_from_directory(image_size=...,
shuffle=False)`` and writes its float32 pixels to a file; this script loads the same files
with cnn-torch, once per JPEG decoder (``--jpeg-decoder``, default both), and prints per file
kind the largest and mean absolute gap and the share of files within uint8 rounding (0.5) of
Keras's everywhere: for files not resized, the share with Keras's very pixels. Lossless files
(PNG, BMP) must be within 0.5 (cnn-torch rounds to uint8); JPEG files too with the "keras"
decoder, while PIL's accurate one differs by a few levels. ``--time`` adds each decoder's
seconds per 10,000 files (read and decoded, not resized, no cache).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cnn_torch.cli import flags as cli
from cnn_torch.errors import UserError
from cnn_torch.sources.image_files import JPEG_DECODERS, decode_files, jpeg_decoder_in_use
from cnn_torch.sources.image_folder import _list_split, load_image_folder

# Run by --tf-python: Keras's loader over DIR/train, in its file order, pixels to an .npz.
KERAS_SIDE = """
import sys, numpy as np, keras
directory, height, width, limit, crop, pad, out = sys.argv[1:]
dataset = keras.utils.image_dataset_from_directory(
    directory, image_size=(int(height), int(width)), shuffle=False, batch_size=256,
    crop_to_aspect_ratio=crop == "1", pad_to_aspect_ratio=pad == "1", verbose=False)
images, labels = [], []
for batch_images, batch_labels in dataset:
    images.append(batch_images.numpy()); labels.append(batch_labels.numpy())
    if sum(len(x) for x in images) >= int(limit):
        break
np.savez(out, images=np.concatenate(images)[: int(limit)], labels=np.concatenate(labels)[: int(limit)],
         paths=np.array(dataset.file_paths[: int(limit)]))
"""


def keras_pixels(tf_python: str, train_dir: Path, image_size, limit: int, crop: bool, pad: bool) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "keras.npz"
        command = [tf_python, "-c", KERAS_SIDE, str(train_dir), *map(str, image_size), str(limit),
                   str(int(crop)), str(int(pad)), str(out)]  # fmt: skip
        env = {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        done = subprocess.run(command, capture_output=True, text=True, env={**env, "PATH": "/usr/bin:/bin"})
        if done.returncode != 0:
            raise UserError(f"Keras on TensorFlow failed in {tf_python}: {done.stderr.strip().splitlines()[-1:]}")
        with np.load(out) as keras_side:
            return {name: keras_side[name] for name in ("images", "labels", "paths")}


def gaps(tf_python: str, data_dir: Path, image_size=(32, 32), limit: int = 10**9, crop=False, pad=False,
         jpeg_decoder: str = "keras") -> dict:  # fmt: skip
    """Per file extension: files compared, the largest and the mean absolute pixel gap, and the
    share of files within 0.5 of Keras's pixels everywhere."""
    theirs = keras_pixels(tf_python, data_dir / "train", image_size, limit, crop, pad)
    return compare(theirs, data_dir, image_size, crop, pad, jpeg_decoder)


def compare(theirs: dict, data_dir: Path, image_size, crop: bool, pad: bool, jpeg_decoder: str) -> dict:
    """:func:`gaps` against Keras's pixels already read (``keras_pixels``)."""
    ours = load_image_folder(data_dir, image_size, crop_to_aspect_ratio=crop, pad_to_aspect_ratio=pad,
                             jpeg_decoder=jpeg_decoder)  # fmt: skip
    # our training split is shuffled: put it back in Keras's sorted file order by matching the files
    _, files, _ = _list_split(data_dir / "train", None)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(0))
    position = {files[int(k)][0]: i for i, k in enumerate(order)}
    report: dict[str, dict] = {}
    for path, keras_image in zip(theirs["paths"], theirs["images"], strict=True):
        ours_image = ours.train_images[position[str(path)]].permute(1, 2, 0).numpy().astype(np.float64)
        gap = np.abs(ours_image - keras_image.astype(np.float64))
        kind = Path(str(path)).suffix.lower()
        entry = report.setdefault(kind, {"files": 0, "max": 0.0, "sum": 0.0, "pixels": 0, "same": 0})
        entry["files"] += 1
        entry["max"] = max(entry["max"], float(gap.max()))
        entry["sum"] += float(gap.sum())
        entry["pixels"] += gap.size
        entry["same"] += bool(gap.max() <= 0.5)  # uint8 rounding; 0 where nothing was resized
    return {kind: {"files": e["files"], "max_gap": e["max"], "mean_gap": e["sum"] / e["pixels"],
                   "same_pixels": e["same"] / e["files"]} for kind, e in report.items()}  # fmt: skip


def seconds_per_10000(paths: list[str], jpeg_decoder: str) -> dict:
    """Reading and decoding ``paths`` (no resize, no cache) in seconds per 10,000 files, the best of
    3: wall-clock, and this process's CPU time (which other processes on the machine sway less)."""
    wall = cpu = float("inf")
    for _ in range(3):
        start, start_cpu = time.perf_counter(), time.process_time()
        decode_files(paths, jpeg_decoder)
        wall, cpu = min(wall, time.perf_counter() - start), min(cpu, time.process_time() - start_cpu)
    return {"wall": round(wall * 10_000 / len(paths), 3), "cpu": round(cpu * 10_000 / len(paths), 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tf-python", required=True, help="an interpreter with tensorflow and keras")
    parser.add_argument("--data-dir", required=True, help="a folder holding train/<class>/<image>")
    parser.add_argument("--image-size", type=int, nargs=2, default=(32, 32), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--limit", type=int, default=5000, help="compare the first N files (default: 5000)")
    parser.add_argument("--jpeg-decoder", nargs="+", choices=list(JPEG_DECODERS), default=list(JPEG_DECODERS),
                        help="the decoders to compare (default: both)")
    parser.add_argument("--time", action="store_true", help="also time each decoder on the files compared")
    aspect = parser.add_mutually_exclusive_group()
    aspect.add_argument("--crop-to-aspect-ratio", action="store_true")
    aspect.add_argument("--pad-to-aspect-ratio", action="store_true")
    args = parser.parse_args(argv)

    def work(args) -> int:
        data_dir, image_size = Path(args.data_dir), tuple(args.image_size)
        crop, pad = args.crop_to_aspect_ratio, args.pad_to_aspect_ratio
        theirs = keras_pixels(args.tf_python, data_dir / "train", image_size, args.limit, crop, pad)
        report = {}
        with tempfile.TemporaryDirectory() as cache:
            os.environ["CNN_TORCH_CACHE"] = cache  # decode afresh; leave no cache of the measured folder behind
            for asked in args.jpeg_decoder:
                decoder = jpeg_decoder_in_use(asked)  # "accurate" when simplejpeg is missing
                report[decoder] = compare(theirs, data_dir, image_size, crop, pad, decoder)
                if args.time:
                    paths = [str(path) for path in theirs["paths"]]
                    report[decoder]["decode_s_per_10000_files"] = seconds_per_10000(paths, decoder)
        print(json.dumps(report, indent=1))
        return 0

    return cli.run_main(work, args)


if __name__ == "__main__":
    sys.exit(main())
