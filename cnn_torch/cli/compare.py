"""Train one lesson model under several settings and compare them on one figure and one table.

    python scripts/compare.py --optimizer sgd rmsprop adam --epochs 10            # the optimizer challenge
    python scripts/compare.py --learning-rate 0.1 0.01 0.001 --optimizer sgd
    python scripts/compare.py --batch-size 8 32 128
    python scripts/compare.py --model model_dropout --dropout 0.15 0.3 0.45 0.6 0.75
    python scripts/compare.py --optimizer sgd rmsprop adam --folds 3 --epochs 2    # the lesson's GridSearchCV(cv=3)

Every flag given several values is an axis; the settings are all their combinations. Each
setting starts from the same initial weights and sees the samples in the same order, so
the setting is the only difference. The logic is ``cnn_torch.cli.comparison``.
"""

from __future__ import annotations

import argparse
import sys

from cnn_torch.cli import comparison as compare
from cnn_torch.cli import flags as cli
from cnn_torch.keras_rules import optim
from cnn_torch.models import ACTIVATIONS


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # what to compare: each takes one or more values
    parser.add_argument("--optimizer", nargs="+", type=str.lower, choices=list(optim.KERAS_LEARNING_RATES),
                        default=None, help="optimizers to compare, in any case: SGD, RMSprop, Adam (default: adam)")
    parser.add_argument("--learning-rate", nargs="+", type=float, default=None,
                        help="learning rates to compare (default: Keras's for the optimizer)")
    parser.add_argument("--batch-size", nargs="+", type=int, default=None, help="batch sizes to compare (default: 32)")
    parser.add_argument("--dropout", nargs="+", type=float, default=None,
                        help="dropout rates to compare (default: the model's; adds a Dropout before Flatten)")
    parser.add_argument("--activation", nargs="+", choices=list(ACTIVATIONS), default=None,
                        help="hidden-layer activations to compare (default: relu)")
    parser.add_argument("--augment", nargs="+", default=None, metavar="SPECS",
                        help="augmentations to compare: none, or layers joined by +, e.g. none flip flip+rotation=0.2"
                        " (layers: flip, rotation, zoom, translation, contrast; default: none)")
    parser.add_argument("--l2", nargs="+", type=float, default=None,
                        help="Keras L2 factors to compare, on every Conv2D and Dense kernel, e.g. 0 0.001 0.01"
                        " (default: 0)")
    parser.add_argument("--folds", type=int, default=None,
                        help="K-fold cross-validation on the training data (the lesson's GridSearchCV(cv=K))")
    # the data, the model, the run: as scripts/train.py
    cli.add_model_flag(parser)
    cli.add_data_flags(parser)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per setting (default: 10; resumed: the same)")
    cli.add_device_flags(parser)
    parser.add_argument("--monitor", default="val_accuracy", help="the metric best.pt keeps (default: val_accuracy)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="comparison directory (default: runs/compare-<timestamp>)")
    parser.add_argument("--resume", default=None, metavar="COMPARISON_DIR",
                        help="continue a stopped comparison: finished settings are skipped")
    parser.add_argument("--quiet", action="store_true", help="no progress output, only the table")
    return parser.parse_args(argv)  # fmt: skip


def main(argv=None) -> int:
    return cli.run_main(compare_settings, parse_args(argv))


def compare_settings(args: argparse.Namespace) -> int:
    compare.run_from_flags(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
