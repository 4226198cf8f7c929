"""Print how far our ``fit`` lands from Keras's ``model.fit``, per optimizer and epoch.

    python scripts/parity_table.py                      # the test's set-up: 72 + 40 images, 24x24
    python scripts/parity_table.py --num-train 200 --num-val 70 --image-size 32

Both sides start from the same Keras-initialised weights and see the same float32 images
in the same order (``shuffle=False``, batch 32). Each cell is the largest gap over the
History keys of that epoch: relative for ``loss``/``val_loss``, absolute for the
accuracies. The last two rows train our model against itself, started again from every
initial weight nudged by one float32 ulp: the gap that float rounding alone grows into. Needs keras (dev extra).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

import torch  # noqa: E402

from cnn_torch import parity  # noqa: E402
from cnn_torch.models import MODELS  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default="cifar_model_small", choices=list(MODELS))
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--num-train", type=int, default=72, help="training images (72: batches of 32, 32, 8)")
    parser.add_argument("--num-val", type=int, default=40, help="validation images (40: batches of 32, 8)")
    parser.add_argument("--image-size", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on a busy CPU)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "torch")
    os.environ.setdefault("KERAS_TORCH_DEVICE", "cpu")  # a CPU, float32 comparison
    torch.set_num_threads(args.threads)
    data = parity.make_data(args.num_train, args.num_val, args.num_classes,
                            (3, args.image_size, args.image_size), seed=args.seed)
    results = parity.compare_optimizers(args.model, list(parity.OPTIMIZERS), data, epochs=args.epochs, seed=args.seed)
    for label in ("SGD", "Adam (KerasAdam)"):  # the reference rows: ours against ours
        row = f"ours vs ours nudged 1 ulp, {label}"
        results[row] = parity.noise_floor(args.model, label, data, epochs=args.epochs, seed=args.seed)
    print(f"{args.model}, {args.num_train} training and {args.num_val} validation images of"
          f" 3x{args.image_size}x{args.image_size}, batch 32, {args.epochs} epochs, seed {args.seed}:\n")
    print(parity.markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
