"""Train one lesson model under several settings and compare them on one figure and one table.

    python scripts/compare.py --optimizer sgd rmsprop adam --epochs 10            # the optimizer challenge
    python scripts/compare.py --learning-rate 0.1 0.01 0.001 --optimizer sgd
    python scripts/compare.py --batch-size 8 32 128
    python scripts/compare.py --model model_dropout --dropout 0.15 0.3 0.45 0.6 0.75
    python scripts/compare.py --optimizer sgd rmsprop adam --folds 3 --epochs 2    # the lesson's GridSearchCV(cv=3)

Every flag given several values is an axis; the settings are all their combinations. Each
setting starts from the same initial weights and sees the samples in the same order, so
the setting is the only difference. The logic is ``cnn_torch.compare``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from cnn_torch import compare, optim  # noqa: E402
from cnn_torch.errors import UserError  # noqa: E402
from cnn_torch.interrupt import TrainingInterrupted  # noqa: E402
from cnn_torch.models import ACTIVATIONS, MODELS  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    # what to compare: each takes one or more values
    parser.add_argument("--optimizer", nargs="+", choices=list(optim.KERAS_LEARNING_RATES), default=None,
                        help="optimizers to compare (default: adam)")
    parser.add_argument("--learning-rate", nargs="+", type=float, default=None,
                        help="learning rates to compare (default: Keras's for the optimizer)")
    parser.add_argument("--batch-size", nargs="+", type=int, default=None, help="batch sizes to compare (default: 32)")
    parser.add_argument("--dropout", nargs="+", type=float, default=None,
                        help="dropout rates to compare (default: the model's; adds a Dropout before Flatten)")
    parser.add_argument("--activation", nargs="+", choices=list(ACTIVATIONS), default=None,
                        help="hidden-layer activations to compare (default: relu)")
    parser.add_argument("--folds", type=int, default=None,
                        help="K-fold cross-validation on the training data (the lesson's GridSearchCV(cv=K))")
    # the data, the model, the run: as scripts/train.py
    parser.add_argument("--model", default="cifar_model_small", choices=list(MODELS), help="the lesson's architecture")
    parser.add_argument("--dataset", choices=["cifar10", "folder", "shapes"], default=None,
                        help="default: folder if --data-dir holds train/<class>/ folders, else cifar10")
    parser.add_argument("--data-dir", default=None,
                        help="CIFAR-10 download folder (default data/) or an image-folder tree")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per setting (default 10; resumed: the same)")
    parser.add_argument("--validation-split", type=float, default=None,
                        help="hold out the LAST fraction of the training data; default: the test split, else 0.2")
    parser.add_argument("--limit", type=int, default=None, help="a class-balanced random subset of N training images")
    parser.add_argument("--seed", type=int, default=None, help="default: a random seed, recorded in comparison.json")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--monitor", default="val_accuracy", help="the metric best.pt keeps")
    parser.add_argument("--out", default=None, help="comparison directory (default runs/compare-<timestamp>)")
    parser.add_argument("--resume", default=None, metavar="COMPARISON_DIR",
                        help="continue a stopped comparison: finished settings are skipped")
    parser.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms(True)")
    parser.add_argument("--quiet", action="store_true", help="no progress output, only the table")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        compare.run_from_flags(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingInterrupted:
        return 130
    except KeyboardInterrupt:  # before training started, or a second Ctrl-C
        print("\ninterrupted: stopped at once; every finished epoch is kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
