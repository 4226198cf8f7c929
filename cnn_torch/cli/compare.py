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


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_model_flags(parser, comparison=True)  # what to compare: the flags given several values
    cli.add_fit_flags(parser, comparison=True)
    parser.add_argument(
        "--folds", type=int, default=None,
        help="K-fold cross-validation on the training data (the lesson's GridSearchCV(cv=K))",
    )  # fmt: skip
    cli.add_data_flags(parser)  # the data, the run, the device: as train.py
    cli.add_device_flags(parser)
    cli.add_output_flags(parser, comparison=True)
    cli.add_monitor_flag(parser, comparison=True)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    return cli.run_main(compare_settings, parse_args(argv))


def compare_settings(args: argparse.Namespace) -> int:
    compare.run_from_flags(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
