"""The command line's shared parts: the flags the scripts take, their checks, the data a run
loads from them, and the one-line error exit. Each script holds its own argparse and
``main()``; what two scripts both need lives here, once.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from cnn_torch import data, distributed
from cnn_torch.errors import UserError
from cnn_torch.interrupt import TrainingInterrupted
from cnn_torch.models import MODELS
from cnn_torch.optim import KERAS_LEARNING_RATES

# What --monitor can watch: the History's keys (Keras 2+ names).
MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")

# Flags that define a run: a resumed run takes them from its run.json.
RUN_FLAGS = (
    "model", "dataset", "data_dir", "batch_size", "optimizer", "learning_rate", "validation_split",
    "limit", "seed", "precision", "monitor", "patience", "min_delta", "restore_best_weights", "fig_dir",
    "deterministic",
)


def check_flags(args) -> None:
    """The flag values argparse cannot check, each with a message that names the fix."""
    if args.epochs <= 0:
        raise UserError(f"--epochs must be a positive integer, got {args.epochs}: try --epochs 10")
    if args.batch_size <= 0:
        raise UserError(f"--batch-size must be a positive integer, got {args.batch_size}: try --batch-size 32")
    check_data_flags(args)
    if args.patience is not None and args.patience < 0:
        raise UserError(f"--patience must be 0 or more, got {args.patience}: try --patience 3")
    if args.monitor not in MONITORS:
        keras_name = {"val_acc": "val_accuracy", "acc": "accuracy"}.get(args.monitor)
        hint = f" (Keras 1 called {keras_name} {args.monitor})" if keras_name else ""
        raise UserError(
            f"--monitor {args.monitor} is not a metric of the run{hint}: use one of {', '.join(MONITORS)}"
        )
    break_at = parse_break_at(args.break_at)
    if break_at is not None and break_at[0] > args.epochs:
        raise UserError(
            f"--break-at {args.break_at} is past the last epoch ({args.epochs}): pick an epoch from 1 to {args.epochs}"
        )
    if args.resume is None and args.out is not None:  # a new run must not overwrite a finished one
        kept = [name for name in ("history.json", "last.pt") if (Path(args.out) / name).exists()]
        if kept:
            raise UserError(
                f"--out {args.out} already holds a run ({', '.join(kept)}): pass a new --out,"
                f" or --resume {args.out} to continue that run"
            )


def check_break_at(text: str | None, epochs: int, steps: int) -> None:
    """``--break-at`` must name a batch the run will reach (known once the data is loaded)."""
    break_at = parse_break_at(text)
    if break_at is not None and break_at[1] > steps:
        raise UserError(
            f"--break-at {text}: an epoch has only {steps} batches (steps) here: pick a batch from 1 to {steps}"
        )


def parse_break_at(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        epoch, batch = (int(part) for part in text.split(":"))
    except ValueError:
        raise UserError(f"--break-at wants EPOCH:BATCH (1-based), got {text!r}: try --break-at 1:1") from None
    if epoch < 1 or batch < 1:
        raise UserError(f"--break-at counts from 1, got {text!r}: try --break-at 1:1")
    return epoch, batch



def check_data_flags(args) -> None:
    """The data flags every training script takes (``add_data_flags``)."""
    if args.validation_split is not None and not 0 < args.validation_split < 1:
        raise UserError(
            f"--validation-split must be between 0 and 1 (exclusive), got {args.validation_split}: try 0.2"
        )
    if args.limit is not None and args.limit <= 0:
        raise UserError(f"--limit must be a positive integer, got {args.limit}: try --limit 2000")


# --- flags that several scripts take ---------------------------------------------------------


def add_model_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="cifar_model_small", choices=list(MODELS),
        help="the lesson's architecture (default: cifar_model_small)",
    )  # fmt: skip


def add_data_flags(parser: argparse.ArgumentParser, limit_help: str | None = None) -> None:
    """--dataset, --data-dir, --limit and --validation-split, as train.py takes them."""
    parser.add_argument(
        "--dataset", choices=list(data.DATASETS), default=None,
        help="default: what --data-dir holds; without --data-dir, CIFAR-10 (downloaded into data/),"
        " or the built-in shapes when it cannot be downloaded",
    )
    parser.add_argument(
        "--data-dir", default=None, metavar="DIR",
        help="your images as DIR/train/<class>/<image> (and DIR/test/), or a folder holding CIFAR-10's"
        " cifar-10-batches-py/ (default: data/ for CIFAR-10)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N",
        help=limit_help or "train on a class-balanced random subset of N images (default: all;"
        f" for shapes, how many to make: {data.DEFAULT_SHAPES_SIZE})",
    )
    parser.add_argument(
        "--validation-split", type=float, default=None, metavar="FRACTION",
        help="hold out the LAST fraction of the training images, as Keras does"
        " (default: validate on the test split; 0.2 when there is none)",
    )  # fmt: skip


def add_compile_flags(parser: argparse.ArgumentParser) -> None:
    """--optimizer and --learning-rate: the lesson's ``compile(optimizer='adam')``."""
    parser.add_argument(
        "--optimizer", choices=list(KERAS_LEARNING_RATES), default="adam", help="default: adam, as the lesson"
    )
    parser.add_argument(
        "--learning-rate", type=float, default=None,
        help="default: Keras's for the optimizer (adam 0.001, sgd 0.01, rmsprop 0.001)",
    )  # fmt: skip


def add_device_flags(parser: argparse.ArgumentParser) -> None:
    """--seed, --device, --precision and --deterministic."""
    parser.add_argument("--seed", type=int, default=None, help="default: a random seed, recorded in run.json")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda", "mps"], default="auto", help="default: auto (CUDA, MPS, CPU)"
    )
    parser.add_argument(
        "--precision", choices=["fp32", "bf16"], default="fp32",
        help="bf16: autocast, faster on GPUs and CPUs with native bf16 (default: fp32)",
    )  # fmt: skip
    parser.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms(True)")


# --- the data a run trains and validates on ----------------------------------------------------


def load_run_data(args, seed: int, rank: int = 0):
    """Step 1 of a run: ``(lesson, validation_data, validation_split, notice)``.

    The lesson's way: validate on the test split (``validation_data``); without one, or with
    ``--validation-split``, on the last fraction of the training images (default 0.2). With
    no data asked for and no CIFAR-10 to be had, the built-in shapes stand in (``notice``
    says so, and ``args.dataset`` records it for --resume and evaluate.py).
    """
    with distributed.local_main_process_first():  # [torchrun] one download per machine, not a race
        lesson, notice = data.load_data_or_shapes(args.dataset, args.data_dir, limit=args.limit, seed=seed)
    if notice is not None:
        args.dataset = "shapes"
        if rank == 0:
            print(f"notice: {notice}")
    validation_data, validation_split = None, args.validation_split
    if validation_split is None and lesson.test_images is not None:
        validation_data = (lesson.test_images, lesson.test_labels)
    elif validation_split is None:
        validation_split = 0.2
    return lesson, validation_data, validation_split, notice


def early_stopping(args):
    """Keras's ``EarlyStopping`` from --patience, --monitor, --min-delta and --restore-best-weights
    (None without --patience)."""
    from cnn_torch.stopping import EarlyStopping

    if args.patience is None:
        return None
    return EarlyStopping(args.monitor, args.patience, args.min_delta, args.restore_best_weights)


# --- the one-line error exit ---------------------------------------------------------------------


def run_main(work: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a script's work: a learner's mistake (``UserError``) is one ``error:`` line on stderr
    and exit 2, never a traceback; Ctrl-C before training started (or a second one) exits 130."""
    warnings.formatwarning = one_line_warning
    try:
        return work(args)
    except UserError as error:
        print(f"{distributed.error_prefix()}: {error}", file=sys.stderr)  # under torchrun: "error (rank N)"
        return 2
    except TrainingInterrupted:  # a first Ctrl-C: the work saved what it had and said how to go on
        return 130
    except KeyboardInterrupt:
        print("\ninterrupted: stopped at once; the files of every finished epoch are kept", file=sys.stderr)
        return 130


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning on the command line: ``warning: <message>``, one line, without file and line."""
    return f"warning: {message}\n"
