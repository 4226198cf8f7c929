"""Time loading an image folder: decoding and resizing every file (an empty cache), then a
second start from the decode cache.

    python scripts/time_loading.py --data-dir path/to/cifar10-jpg --image-size 32 32

Prints one JSON object: files, seconds to decode and resize them, seconds from the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch

from cnn_torch.platform.device import cpu_name
from cnn_torch.sources.image_folder import load_image_folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="a folder holding train/<class>/<image>")
    parser.add_argument("--image-size", type=int, nargs=2, default=(32, 32), metavar=("HEIGHT", "WIDTH"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["CNN_TORCH_CACHE"] = cache  # an empty cache: the first start decodes everything
        start = time.perf_counter()
        data = load_image_folder(args.data_dir, tuple(args.image_size))
        decode_seconds = time.perf_counter() - start
        start = time.perf_counter()
        load_image_folder(args.data_dir, tuple(args.image_size))
        cached_seconds = time.perf_counter() - start
    files = sum(len(x) for x in (data.train_labels, data.val_labels, data.test_labels) if x is not None)
    print(json.dumps({
        "cpu": cpu_name(), "threads": torch.get_num_threads(), "files": files,
        "image_size": list(args.image_size), "resized": sum(data.resized_from.values()),
        "decode_and_resize_s": round(decode_seconds, 2), "from_cache_s": round(cached_seconds, 2),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
