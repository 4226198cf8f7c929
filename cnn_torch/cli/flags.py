"""The command line's flags: each defined once, in the group that owns it, with its check beside it.

A script composes the groups it takes (``train.py`` nearly all of them; ``compare.py`` the same,
the settings it compares taking several values; ``evaluate.py`` and ``predict.py`` the data,
device and checkpoint ones), so a flag has one spelling, one default, one help text and one
error message wherever it appears. Also here: the data a run loads from its flags, the command
as the learner typed it (for the "Resume with:" hints), and the one-line error exit.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from cnn_torch import data
from cnn_torch.errors import UserError
from cnn_torch.keras_rules.optim import KERAS_LEARNING_RATES
from cnn_torch.machinery.interrupt import TrainingInterrupted
from cnn_torch.models import ACTIVATIONS, PRETRAINED_MODELS, model_names
from cnn_torch.platform import distributed
from cnn_torch.sources.image_files import JPEG_DECODERS

# The lesson models' input (height, width): images are resized to it unless --image-size says otherwise.
DEFAULT_IMAGE_SIZE = (32, 32)

# What --monitor can watch: the History's keys (Keras 2+ names).
MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")

# The flags that say how this process trains, not what the run is: --resume takes every other
# flag back from the run's run.json (a flag added later is a run's flag unless it is named here).
PROCESS_FLAGS = ("epochs", "out", "resume", "device", "trace", "break_at", "quiet")
# Of the run's flags, the ones a resumed run may be given anew: the given value wins (figures elsewhere, data moved).
RESUME_MAY_CHANGE = ("fig_dir", "data_dir", "tensorboard")

# The clone this package was imported from (the folder holding cnn_torch/ and scripts/).
CLONE = Path(__file__).resolve().parents[2]

# How a flag train.py takes once begins its help in compare.py, where each of its values is a setting.
SEVERAL = "one setting per value: "


# --- the data: train, compare, evaluate (the run's by default), predict (the image flags) -------


def add_data_flags(parser: argparse.ArgumentParser, validation_split: bool = True) -> None:
    """--dataset, --data-dir, --limit, --validation-split (train and compare), --jpeg-decoder and the image flags."""
    parser.add_argument(
        "--dataset", choices=list(data.DATASETS), default=None,
        help="default: what --data-dir holds; without --data-dir, CIFAR-10 (downloaded into data/),"
        " or the built-in shapes when it cannot be downloaded",
    )  # fmt: skip
    parser.add_argument(
        "--data-dir", default=None, metavar="DIR",
        help="your images as DIR/train/<class>/<image> (and DIR/test/), or a folder holding CIFAR-10's"
        " cifar-10-batches-py/ (default: data/ for CIFAR-10)",
    )  # fmt: skip
    limit = "take a class-balanced random N of the training images, BEFORE the validation cut"
    if validation_split:  # train, compare
        limit += (": with --validation-split 0.2 (or data without a test split) 80%% of them train"
                  f" (default: all; for shapes, how many to make: {data.DEFAULT_SHAPES_SIZE})")
    else:  # evaluate: the run's data
        limit += " (default: the run's own --limit, so that --split val is the run's validation data)"
    parser.add_argument("--limit", type=int, default=None, metavar="N", help=limit)
    if validation_split:
        parser.add_argument(
            "--validation-split", type=float, default=None, metavar="FRACTION",
            help="hold out the LAST fraction of the training images, as Keras does"
            " (default: validate on DIR/val/, else the test split; 0.2 when there is neither)",
        )  # fmt: skip
    parser.add_argument(
        "--jpeg-decoder", choices=list(JPEG_DECODERS), default=None,
        help="how a folder's JPEG files are decoded: keras, TensorFlow's fast decoder, Keras's own pixels;"
        " accurate, PIL's and torchvision's, up to a few levels apart (default: keras; evaluate.py: the run's)",
    )  # fmt: skip
    add_image_flags(parser)


def add_image_flags(parser: argparse.ArgumentParser, classes: bool = True) -> None:
    """--image-size, --classes and the aspect-ratio flags: image_dataset_from_directory's options
    (predict.py takes no --classes: the checkpoint names its classes)."""
    parser.add_argument(
        "--image-size", type=int, nargs=2, default=None, metavar=("HEIGHT", "WIDTH"),
        help="resize every image to HEIGHT x WIDTH (bilinear, as Keras's image_size); train and compare build"
        " the model for it (default: the model's input size, 32 32)",
    )  # fmt: skip
    if classes:
        parser.add_argument(
            "--classes", nargs="+", default=None, metavar="NAME",
            help="these classes only, numbered in this order (Keras's class_names),"
            " e.g. --classes airplane bird cat dog truck (default: all)",
        )  # fmt: skip
    aspect = parser.add_mutually_exclusive_group()
    aspect.add_argument(
        "--crop-to-aspect-ratio", action="store_true",
        help="resize without stretching: cut the largest centred box of the target's shape first",
    )  # fmt: skip
    aspect.add_argument(
        "--pad-to-aspect-ratio", action="store_true",
        help="resize without stretching: fit the whole image and pad the rest with black",
    )  # fmt: skip


def check_data_flags(args) -> None:
    """The data flags (:func:`add_data_flags`), whichever of them the script takes."""
    validation_split = getattr(args, "validation_split", None)
    if validation_split is not None and not 0 < validation_split < 1:
        raise UserError(f"--validation-split must be between 0 and 1 (exclusive), got {validation_split}: try 0.2")
    if getattr(args, "limit", None) is not None and args.limit <= 0:
        raise UserError(f"--limit must be a positive integer, got {args.limit}: try --limit 2000")
    if getattr(args, "image_size", None) is not None and min(args.image_size) < 1:
        height, width = args.image_size
        raise UserError(f"--image-size takes two positive numbers, height and width, got {height} {width}: try 32 32")
    if getattr(args, "crop_to_aspect_ratio", False) and getattr(args, "pad_to_aspect_ratio", False):
        raise UserError("--crop-to-aspect-ratio and --pad-to-aspect-ratio cannot both be given: choose one, as Keras")
    if getattr(args, "jpeg_decoder", None) not in (None, *JPEG_DECODERS):  # a run.json edited by hand, an API caller
        raise UserError(f"--jpeg-decoder must be one of {', '.join(JPEG_DECODERS)}, got {args.jpeg_decoder!r}:"
                        " try --jpeg-decoder keras")  # fmt: skip


def data_options(args) -> dict:
    """``data.load_data``'s keyword arguments from the image flags (absent flags: Keras's defaults)."""
    return {
        "image_size": tuple(getattr(args, "image_size", None) or DEFAULT_IMAGE_SIZE),
        "class_names": getattr(args, "classes", None),
        "crop_to_aspect_ratio": getattr(args, "crop_to_aspect_ratio", False),
        "pad_to_aspect_ratio": getattr(args, "pad_to_aspect_ratio", False),
        "jpeg_decoder": getattr(args, "jpeg_decoder", None) or "keras",
    }


def load_run_data(args, seed: int, rank: int = 0):
    """Step 1 of a run: ``(lesson, validation_data, validation_split, notice)``.

    The lessons' way: validate on DIR/val/ (2026), else on the test split (2023); without
    either, or with ``--validation-split``, on the last fraction of the training images
    (default 0.2), as Keras's ``validation_split`` does. With
    no data asked for and no CIFAR-10 to be had, the built-in shapes stand in (``notice``
    says so, and ``args.dataset`` records it for --resume and evaluate.py).
    """
    with distributed.local_main_process_first():  # [torchrun] one download per machine, not a race
        lesson, notice = data.load_data_or_shapes(
            args.dataset, args.data_dir, limit=args.limit, seed=seed, **data_options(args)
        )
    if notice is not None:
        args.dataset = "shapes"
        if rank == 0:
            print(f"notice: {notice}")
    validation_data, validation_split = None, args.validation_split
    if validation_split is None:  # the 2026 lesson's val/ folder, else the 2023 lesson's test split
        validation_data = lesson.split("val") or lesson.split("test")
    if validation_split is None and validation_data is None:
        validation_split = 0.2
    return lesson, validation_data, validation_split, notice


# --- the model: train and compare (--dropout, --activation, --augment, --l2: compare's settings) -


def add_model_flags(parser: argparse.ArgumentParser, comparison: bool = False) -> None:
    """--model; --dropout and --activation (the lesson's ``create_nn_with_dropout(rate)`` and
    ``create_nn(activation)``); --augment, --batch-norm and --l2 (the cures episode 04 lists);
    --weights (the transfer model's base). ``comparison``: compare.py's, where --dropout,
    --activation, --augment and --l2 take several values, each a setting."""
    parser.add_argument(
        "--model", default="cifar_model_small", choices=model_names(),
        help="the lesson's architecture (default: cifar_model_small)",
    )  # fmt: skip
    _setting_flag(
        parser, "--dropout", comparison, type=float, metavar="RATE",
        help="dropout rate: model_dropout's Dropout, or one added before Flatten in the other models"
        " (default: model_dropout 0.5, the others none)",
    )  # fmt: skip
    _setting_flag(
        parser, "--activation", comparison, type=str.lower, choices=list(ACTIVATIONS),
        help="the hidden layers' activation (default: relu)",
    )  # fmt: skip
    layers = "flip (horizontal), rotation (0.1 of a turn), zoom (0.1), translation (0.1), contrast (0.2)"
    parser.add_argument(  # train.py: one list of layers; compare.py: several lists, each joined by +
        "--augment", nargs="+", default=None, metavar="SPECS" if comparison else "NAME[=FACTOR]",
        help=f"{SEVERAL}none, or Keras's augmentation layers joined by +, e.g. --augment none flip"
        f" flip+rotation=0.2 (layers: {layers})" if comparison else f"Keras's augmentation layers, first in the model:"
        f" {layers}; e.g. --augment flip rotation=0.2",
    )  # fmt: skip
    parser.add_argument(
        "--batch-norm", action="store_true",
        help="a BatchNormalization (Keras's defaults) after every convolution of the lesson's models",
    )  # fmt: skip
    _setting_flag(
        parser, "--l2", comparison, type=float, metavar="L2",
        help="Keras's kernel_regularizer=L2(L2) on every Conv2D and Dense: L2 * sum(kernel**2) joins the loss"
        " (and the reported loss, as in Keras); not torch's weight_decay",
    )  # fmt: skip
    parser.add_argument(
        "--weights", choices=["imagenet", "none"], default=None,
        help="densenet121_transfer's base: imagenet (default, downloaded once) or none (random)",
    )  # fmt: skip


def _setting_flag(parser: argparse.ArgumentParser, flag: str, several: bool, default=None, **options) -> None:
    """A flag train.py takes once and compare.py several times, each value a setting to compare
    (none given: every setting keeps ``default``, the lesson's)."""
    if several:
        options.update(nargs="+", help=SEVERAL + options["help"])
        default = None
    parser.add_argument(flag, default=default, **options)


def _each(value) -> list:
    """A flag's values: compare.py's list, train.py's one value, or none."""
    return [] if value is None else value if isinstance(value, list) else [value]


def check_model_flags(args, comparison: bool = False) -> None:
    """--dropout, --augment and --l2 (each value: compare.py's too), and which models take which flags."""
    from cnn_torch.keras_rules.augment import normalise_specs

    for rate in _each(args.dropout):
        check_dropout(rate)
    if not comparison:  # compare.py's --augment values are settings, checked as such (comparison.grid)
        normalise_specs(args.augment)  # an unknown name or factor: one line naming the choices
    for l2 in _each(args.l2):
        check_l2(l2)
    check_overfitting_flags(args)


def check_dropout(rate: float | None) -> None:
    if rate is not None and not 0 <= rate < 1:
        raise UserError(f"--dropout must be a rate from 0 up to (not including) 1, got {rate}: try 0.5")


def check_l2(l2: float | None) -> None:
    if l2 is not None and not l2 >= 0:  # "not >=": NaN is refused too
        raise UserError(f"--l2 must be 0 or more, got {l2}: try --l2 0.01 (Keras's L2 default)")


def check_overfitting_flags(args) -> None:
    """--batch-norm, --weights, --dropout and --activation: which models take them."""
    pretrained = args.model in PRETRAINED_MODELS
    if pretrained and getattr(args, "batch_norm", False):
        raise UserError(f"--batch-norm adds BatchNormalization to the lesson's models; {args.model} has its own:"
                        " leave out --batch-norm")  # fmt: skip
    if pretrained and any(getattr(args, name, None) is not None for name in ("dropout", "activation")):
        raise UserError(f"{args.model} keeps the lesson's head (Dropout(0.5), relu):"
                        " leave out --dropout and --activation")  # fmt: skip
    if not pretrained and getattr(args, "weights", None) is not None:
        raise UserError(f"--weights picks the pretrained base of {', '.join(PRETRAINED_MODELS)}; {args.model}"
                        " starts from Keras's initialisation: leave out --weights")  # fmt: skip


def apply_model_defaults(args) -> None:
    """The fit settings the lesson uses with a model, where the command line leaves them out: the
    transfer-learning episode stops early on val_accuracy with a patience of 5."""
    given = getattr(args, "given", set())
    if args.model in PRETRAINED_MODELS:
        if "monitor" not in given:
            args.monitor = "val_accuracy"
        if "patience" not in given:
            args.patience = 5


def layer_options(args, seed: int | None = None) -> dict:
    """``build_model``'s keyword arguments from --dropout, --activation, --augment (seeded by the
    run's ``seed``), --batch-norm and --weights: only those given."""
    options = {name: getattr(args, name) for name in ("dropout", "activation") if getattr(args, name, None) is not None}
    if getattr(args, "augment", None):
        options.update(augment=args.augment, augment_seed=seed)
    return options | model_options(args)


def model_options(args) -> dict:
    """``build_model``'s keyword arguments from --batch-norm and --weights, the model flags that are
    never compared (a comparison's settings keep the parameter shapes): only those given."""
    options = {"batch_norm": True} if getattr(args, "batch_norm", False) else {}
    if getattr(args, "weights", None) is not None:
        options["weights"] = None if args.weights == "none" else args.weights
    return options


# --- compile and fit: train and compare (--optimizer, --learning-rate, --batch-size: compare's settings) --


def add_fit_flags(parser: argparse.ArgumentParser, comparison: bool = False) -> None:
    """--epochs and --batch-size, --optimizer and --learning-rate (the lesson's ``compile(optimizer='adam')``).
    ``comparison``: compare.py's, where all but --epochs take several values."""
    parser.add_argument(
        "--epochs", type=int, default=None,
        help="passes over the training images, per setting in compare (default: 10; resumed: the run's own)",
    )  # fmt: skip
    add_batch_size_flag(parser, comparison)
    _setting_flag(
        parser, "--optimizer", comparison, default="adam", type=str.lower, choices=list(KERAS_LEARNING_RATES),
        help="Keras's optimizer, in any case: Adam, SGD, RMSprop (default: adam, as the lesson)",
    )  # fmt: skip
    _setting_flag(
        parser, "--learning-rate", comparison, type=float,
        help="the optimizer's step size (default: Keras's for the optimizer: adam 0.001, sgd 0.01, rmsprop 0.001)",
    )  # fmt: skip


def add_batch_size_flag(parser: argparse.ArgumentParser, comparison: bool = False) -> None:
    """--batch-size: train and compare (their fit), evaluate (its evaluate: the results do not change)."""
    _setting_flag(parser, "--batch-size", comparison, default=32, type=int,
                  help="images per step (default: 32, as Keras's fit and evaluate)")  # fmt: skip


def check_fit_flags(args) -> None:
    """--epochs (once set), each --learning-rate and --batch-size (compare.py's too)."""
    check_epochs(args.epochs)
    for learning_rate in _each(args.learning_rate):
        check_learning_rate(learning_rate)
    for batch_size in _each(args.batch_size):
        check_batch_size(batch_size)


def check_epochs(epochs: int | None) -> None:
    if epochs is not None and epochs <= 0:
        raise UserError(f"--epochs must be a positive integer, got {epochs}: try --epochs 10")


def check_batch_size(batch_size: int) -> None:
    if batch_size <= 0:
        raise UserError(f"--batch-size must be a positive integer, got {batch_size}: try --batch-size 32")


def check_learning_rate(learning_rate: float | None) -> None:
    if learning_rate is not None and not learning_rate > 0:  # "not >": NaN is refused too
        raise UserError(f"--learning-rate must be positive, got {learning_rate}: try 0.001")


# --- best.pt and early stopping: train (compare: --monitor) ------------------------------------


def add_monitor_flag(parser: argparse.ArgumentParser, comparison: bool = False) -> None:
    """--monitor: the metric best.pt keeps and early stopping watches (compare.py: val_accuracy by
    default, the metric it ranks the settings by)."""
    watches, default = (" keeps", "val_accuracy") if comparison else (" keeps and early stopping watches", "val_loss")
    lesson = "" if comparison else "; densenet121_transfer: val_accuracy, as the lesson"
    parser.add_argument(
        "--monitor", default=default, metavar="METRIC",
        help=f"the metric best.pt{watches}: {', '.join(MONITORS)} (default: {default}{lesson})",
    )  # fmt: skip


def add_early_stopping_flags(parser: argparse.ArgumentParser) -> None:
    """--monitor and Keras's ``EarlyStopping``: --patience, --min-delta, --restore-best-weights,
    --baseline, --start-from-epoch."""
    add_monitor_flag(parser)
    parser.add_argument(
        "--patience", type=int, default=None, metavar="EPOCHS",
        help="stop after this many epochs without improvement"
        " (default: no early stopping; densenet121_transfer: 5, as the lesson)",
    )  # fmt: skip
    parser.add_argument(
        "--min-delta", type=float, default=0.0,
        help="early stopping: smallest change that counts as an improvement (default: 0)",
    )  # fmt: skip
    parser.add_argument(
        "--restore-best-weights", action="store_true", help="early stopping: end with the best epoch's weights"
    )  # fmt: skip
    parser.add_argument(
        "--baseline", type=float, default=None,
        help="early stopping: a value the metric must beat, or the patience runs out (default: none)",
    )  # fmt: skip
    parser.add_argument(
        "--start-from-epoch", type=int, default=0, metavar="EPOCHS",
        help="early stopping: epochs of warm-up before it starts watching (default: 0)",
    )  # fmt: skip


def check_monitor(monitor: str) -> None:
    if monitor not in MONITORS:
        keras_name = {"val_acc": "val_accuracy", "acc": "accuracy"}.get(monitor)
        hint = f" (Keras 1 called {keras_name} {monitor})" if keras_name else ""
        raise UserError(f"--monitor {monitor} is not a metric of the run{hint}: use one of {', '.join(MONITORS)}")


def check_early_stopping_flags(args) -> None:
    """--monitor; --baseline and --start-from-epoch tune early stopping, which --patience turns on."""
    if args.patience is not None and args.patience < 0:
        raise UserError(f"--patience must be 0 or more, got {args.patience}: try --patience 3")
    if args.start_from_epoch < 0:
        raise UserError(f"--start-from-epoch must be 0 or more, got {args.start_from_epoch}: try --start-from-epoch 2")
    tuned = [flag for flag, given in (("--baseline", args.baseline is not None),
                                      ("--start-from-epoch", args.start_from_epoch > 0)) if given]  # fmt: skip
    if tuned and args.patience is None:
        verb = "tunes" if len(tuned) == 1 else "tune"
        raise UserError(f"{' and '.join(tuned)} {verb} early stopping, which is off: add --patience N (e.g. 3)")
    check_monitor(args.monitor)


def early_stopping(args):
    """Keras's ``EarlyStopping`` from --patience, --monitor, --min-delta, --baseline, --start-from-epoch
    and --restore-best-weights (None without --patience). It always says when it stops and
    which epoch's weights it puts back (Keras's ``verbose=1`` messages)."""
    from cnn_torch.keras_rules.stopping import EarlyStopping

    if args.patience is None:
        return None
    return EarlyStopping(
        monitor=args.monitor, min_delta=args.min_delta, patience=args.patience, verbose=1, baseline=args.baseline,
        restore_best_weights=args.restore_best_weights, start_from_epoch=args.start_from_epoch,
    )  # fmt: skip


# --- the device: every script that runs a model ------------------------------------------------


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """--device: train, compare, evaluate, predict."""
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda", "mps"], default="auto", help="default: auto (CUDA, MPS, CPU)"
    )


def add_device_flags(parser: argparse.ArgumentParser) -> None:
    """--seed, --device, --precision and --deterministic: how a training run computes (train, compare)."""
    parser.add_argument("--seed", type=int, default=None, help="default: a random seed, recorded in run.json")
    add_device_flag(parser)
    parser.add_argument(
        "--precision", choices=["fp32", "bf16"], default="fp32",
        help="bf16: autocast, faster on GPUs and CPUs with native bf16 (default: fp32)",
    )  # fmt: skip
    parser.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms(True)")


def check_device(name: str) -> None:
    """``--device cuda`` on a machine without CUDA (or mps without MPS), in the command line's words."""
    from cnn_torch.platform.device import unavailable

    missing = unavailable(name.split(":")[0])
    if missing:
        raise UserError(f"--device {name} was asked for but {missing} is not available: use --device cpu or auto")


def check_seed(seed: int | None) -> None:
    if seed is not None and not 0 <= seed < 2**32:  # NumPy's seeds: 0 to 2**32 - 1
        raise UserError(f"--seed must be from 0 to 4294967295, got {seed}: try --seed 1")


# --- where a run goes: train and compare (--fig-dir: every script that draws) ------------------


def add_output_flags(parser: argparse.ArgumentParser, comparison: bool = False) -> None:
    """--out, --resume, --fig-dir and --quiet: a run's folder (compare.py: a comparison's)."""
    what, name, folder = ("comparison", "compare", "DIR") if comparison else ("run", "<model>", "RUN_DIR")
    parser.add_argument(
        "--out", default=None, metavar=folder, help=f"the {what}'s folder (default: runs/{name}-<timestamp>)"
    )
    parser.add_argument(
        "--resume", default=None, metavar=folder,
        help=f"continue a stopped {what} in its folder, with its own flags, up to --epochs (default: its own)"
        + ("; finished settings are kept" if comparison else ""),
    )  # fmt: skip
    add_fig_dir_flag(parser, "the comparison's folder" if comparison else "RUN_DIR/fig")
    parser.add_argument("--quiet", action="store_true", help="no progress output, only the results (verbose=0)")


def add_fig_dir_flag(parser: argparse.ArgumentParser, default: str = "the run's fig/") -> None:
    """--fig-dir: where the figures go, checked writable before any work (``check_writable_folder``)."""
    parser.add_argument("--fig-dir", default=None, metavar="DIR", help=f"where the figures go (default: {default})")


def add_tensorboard_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tensorboard", default=None, metavar="LOG_DIR",
        help="write TensorBoard logs there, as Keras's TensorBoard(LOG_DIR, histogram_freq=1);"
        " view them with: tensorboard --logdir LOG_DIR",
    )  # fmt: skip


def check_tensorboard_flag(args) -> None:
    """--tensorboard needs the tensorboard package and a folder it can write."""
    if args.tensorboard is not None:
        from cnn_torch.keras_rules.tensorboard import summary_writer_class

        summary_writer_class()  # installed, or one line saying how to install it
        check_writable_folder(args.tensorboard, "--tensorboard")


def tensorboard(args, model, optimizer, iterations: int):
    """Keras's ``TensorBoard(log_dir, histogram_freq=1)`` from --tensorboard DIR (None without it);
    ``iterations``: the optimizer steps a resumed run has already taken."""
    from cnn_torch.keras_rules.tensorboard import TensorBoard

    if args.tensorboard is None:
        return None
    return TensorBoard(args.tensorboard, histogram_freq=1, model=model, optimizer=optimizer, iterations=iterations)


def runs_root() -> Path:
    """Where runs go without ``--out``: ``runs/`` in the current folder, except inside the
    clone (in ``scripts/``, say), where it is the clone's own ``runs/``: never among the code."""
    here = Path.cwd().resolve()
    if here != CLONE and (CLONE / "scripts").is_dir() and here.is_relative_to(CLONE):
        return CLONE / "runs"
    return Path("runs")


def check_out_is_new(out: str | os.PathLike) -> None:
    """A new run must not write over a run that finished an epoch (``--resume`` continues one)."""
    kept = [name for name in ("history.json", "last.pt") if (Path(out) / name).exists()]
    if kept:
        raise UserError(
            f"--out {out} already holds a run ({', '.join(kept)}): pass a new --out,"
            f" or --resume {out} to continue that run"
        )


def check_output_folders(args) -> None:
    """Every folder the run will write: the run's (or comparison's) folder and the figures', before the first step."""
    if args.resume is not None:
        fix = f"copy it to a folder you can write (cp -r {args.resume} NEW) and --resume NEW"
        check_writable_folder(args.resume, "--resume", fix)
    elif args.out is not None:
        check_writable_folder(args.out, "--out")
    else:
        check_writable_folder(runs_root(), "runs folder", "pass --out DIR in a folder you can write")
    if args.fig_dir is not None:
        check_writable_folder(args.fig_dir, "--fig-dir")


def check_writable_folder(path: str | os.PathLike, flag: str, fix: str | None = None) -> None:
    """``path`` is a folder this process can write into, or can make: else one line naming ``flag``.

    Checked before the data is loaded: a read-only working folder, a run shared read-only, or
    ``--fig-dir`` naming a file would otherwise fail after the whole training.
    """
    path = Path(path)
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:  # the deepest part that exists
        existing = existing.parent
    named = f"{flag} {path}" if flag.startswith("--") else f"the {flag} {path}"
    if not existing.is_dir():
        where = "is a file" if existing == path.absolute() else f"is inside {existing}, which is a file"
        raise UserError(f"{named} {where}, not a folder: {fix or f'pass a folder to {flag}'}")
    if not os.access(existing, os.W_OK | os.X_OK):
        reason = "read-only" if existing == path.absolute() else f"{existing} is read-only"
        raise UserError(f"cannot write {named} ({reason}): {fix or f'pass a {flag} you can write to'}")


def writable(path: str | os.PathLike) -> bool:
    """Whether :func:`check_writable_folder` would pass."""
    try:
        check_writable_folder(path, "folder")
    except UserError:
        return False
    return True


# --- debugging: train ----------------------------------------------------------------------------


def add_debug_flags(parser: argparse.ArgumentParser) -> None:
    """--trace and --break-at."""
    parser.add_argument("--trace", action="store_true", help="narrate every step of the first batch")
    parser.add_argument(
        "--break-at", default=None, metavar="EPOCH:BATCH", help="breakpoint() after that batch's forward pass (1-based)"
    )


def check_break_at(text: str | None, epochs: int, steps: int | None = None) -> None:
    """``--break-at`` must name an epoch the run will reach, and (once the data is loaded and
    ``steps`` known) a batch of it."""
    break_at = parse_break_at(text)
    if break_at is not None and break_at[0] > epochs:
        raise UserError(f"--break-at {text} is past the last epoch ({epochs}): pick an epoch from 1 to {epochs}")
    if break_at is not None and steps is not None and break_at[1] > steps:
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


# --- a trained model: evaluate and predict ---------------------------------------------------------


def add_checkpoint_flags(parser: argparse.ArgumentParser) -> None:
    """--checkpoint, --json and --visualise."""
    from cnn_torch.visualise import METHODS  # evaluate.py and predict.py import it anyway; train.py need not

    parser.add_argument("--checkpoint", required=True, help="a run's best.pt, model.pt or last.pt (required)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of text")
    parser.add_argument(
        "--visualise", nargs="?", const="gradcam", default=None, choices=METHODS, metavar="METHOD",
        help="also draw what the network sees: its first layer's filters, feature maps, and which pixels drove"
        " its predictions (METHOD: gradcam, the default, or integrated_gradients; needs captum)",
    )  # fmt: skip


# --- train.py's checks, all of them, before any data is loaded ---------------------------------


def check_flags(args) -> None:
    """The flag values argparse cannot check, each with a message that names the fix; all of
    them before any data is loaded or downloaded, and before anything is written."""
    check_fit_flags(args)
    check_data_flags(args)
    check_seed(args.seed)
    check_device(args.device)
    check_model_flags(args)
    check_early_stopping_flags(args)
    check_break_at(args.break_at, args.epochs)
    if args.resume is None and args.out is not None:  # a new run must not overwrite a finished one
        check_out_is_new(args.out)
    check_tensorboard_flag(args)
    check_output_folders(args)


# --- what the command line said, and text for it ---------------------------------------------


def parse_with_given(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, plus ``args.given``: the flags the command line named.

    A default value cannot tell (``--optimizer adam`` is the default's value), so the line is
    parsed a second time into a namespace that already holds every name: argparse then sets
    only the flags it meets.
    """
    args = parser.parse_args(argv)
    unset = object()
    probe = parser.parse_args(argv, namespace=argparse.Namespace(**{name: unset for name in vars(args)}))
    args.given = {name for name, value in vars(probe).items() if value is not unset}
    return args


def script_command(script: str) -> str:
    """The command that runs ``script`` (``train.py``), as the learner typed it, for the hints that
    say how to go on: ``cnn-torch train`` or ``python -m cnn_torch train`` (``sys.argv[0]``, as
    ``commands.py`` sets it), else ``python scripts/train.py`` from the clone's root and the
    script's full path from anywhere else."""
    typed = sys.argv[0] if sys.argv else ""
    if typed.endswith(" " + Path(script).stem.replace("_", "-")):  # commands.py's "<program> <command>"
        return typed
    path = Path(typed).resolve() if Path(typed).name == script else CLONE / "scripts" / script
    return f"python scripts/{script}" if (Path("scripts") / script).resolve() == path else f"python {path}"


def counted(number: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``, ``1,600 images``."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


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
