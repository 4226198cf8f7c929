"""Two trainings at once on a small CPU: each one's epoch time against a training alone.

    python scripts/benchmark_sharing.py --images 5000 --repeats 2

A learner runs a notebook and a script, or the test suite beside a run. Each worker here is
such a process: it imports torch first (as a notebook does), then cnn_torch, and times one
epoch of ``fit`` (cifar_model_small, batch 32, Adam) on the same shapes images. The modes run
in turn, ``--repeats`` times over:

- ``alone``: one training; ``together``: two started at the same moment;
- each with cnn-torch's default, trainings taking turns step by step
  (``cnn_torch/machinery/cpu_sharing.py``), and without it (``CNN_TORCH_SHARE_CORES=0``).

Prints one JSON object: the CPU, the median seconds of each mode and the ratios the goal is
stated in (each of two trainings at most 2.2x its time alone; alone no more than 3% slower).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cnn_torch.platform.device import cpu_name

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import sys, time
import torch  # first, as in a notebook that imported torch before cnn_torch
from cnn_torch import fit
from cnn_torch.data import load_data
from cnn_torch.models import cifar_model_small
images = int(sys.argv[1])
lesson = load_data("shapes", limit=images, seed=0)
torch.manual_seed(0)
model = cifar_model_small()
optimizer = torch.optim.Adam(model.parameters(), eps=1e-7)
start = time.perf_counter()
fit(model, torch.nn.CrossEntropyLoss(), optimizer, lesson.train_images, lesson.train_labels,
    epochs=1, batch_size=32, verbose=0, device="cpu", seed=0)
print(time.perf_counter() - start)
"""


def run_workers(count: int, images: int, share: bool) -> list[float]:
    env = {**os.environ, "CNN_TORCH_SHARE_CORES": "1" if share else "0", "PYTHONPATH": str(ROOT)}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(images)], env=env, stdout=subprocess.PIPE,
                                text=True) for _ in range(count)]  # fmt: skip
    outputs = [worker.communicate()[0] for worker in workers]
    if any(worker.returncode for worker in workers):
        raise SystemExit("a worker failed")
    return [float(output.strip().splitlines()[-1]) for output in outputs]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000, help="training images per epoch (default: 5000)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of every mode, in turn (default: 2)")
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for share in (False, True):
            label = "sharing" if share else "no-sharing"
            times.setdefault(f"alone, {label}", []).extend(run_workers(1, args.images, share))
            times.setdefault(f"together, {label}", []).extend(run_workers(2, args.images, share))
            time.sleep(1)
    median = {mode: statistics.median(values) for mode, values in times.items()}
    slowest_together = {label: max(times[f"together, {label}"]) for label in ("sharing", "no-sharing")}
    print(json.dumps({
        "cpu": cpu_name(), "cores": os.cpu_count(), "images": args.images, "repeats": args.repeats,
        "median_seconds": {mode: round(value, 2) for mode, value in median.items()},
        "together_over_alone": {label: round(median[f"together, {label}"] / median["alone, no-sharing"], 2)
                                for label in ("sharing", "no-sharing")},
        "slowest_together_over_alone": {label: round(value / median["alone, no-sharing"], 2)
                                        for label, value in slowest_together.items()},
        "alone_sharing_over_alone_before": round(median["alone, sharing"] / median["alone, no-sharing"], 3),
    }, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
