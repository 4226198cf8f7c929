"""Build the 2026 lesson's data folders (cifar10_images_small/) from a CIFAR-10 copy.

    python scripts/lesson_data.py                                   # from data/ (train.py's download)
    python scripts/lesson_data.py --from ../shared/data/cifar10-jpg --to cifar10_images_small

Five classes (airplane, bird, cat, dog, truck) in train/, val/ and test/, 200, 50 and 50
images of each, chosen at random (--seed) and written as PNG files, which are lossless. The
library function is ``cnn_torch.sources.lesson_folders.build_lesson_folders``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cnn_torch.cli import flags as cli
from cnn_torch.errors import UserError
from cnn_torch.sources.lesson_folders import LESSON_FOLDER_NAME, LessonFolders, build_lesson_folders


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # these flags are this command's alone: here, with their checks in check_flags()
    parser.add_argument(
        "--from", dest="source", default="data", metavar="DIR",
        help="the CIFAR-10 copy: a folder holding torchvision's cifar-10-batches-py/, or image files as"
        " DIR/train/<class>/<image> (default: data/, where train.py downloads CIFAR-10)",
    )  # fmt: skip
    parser.add_argument(
        "--to",
        dest="target",
        default=f"data/{LESSON_FOLDER_NAME}",
        metavar="DIR",
        help=f"the new folder; it must not exist, or be empty (default: data/{LESSON_FOLDER_NAME})",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="which images are chosen: the same seed, the same folders (default: 0)"
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    return cli.run_main(lesson_data, parse_args(argv))


def lesson_data(args: argparse.Namespace) -> int:
    check_flags(args)
    started = time.perf_counter()
    try:
        built = build_lesson_folders(args.source, args.target, seed=args.seed)
    except KeyboardInterrupt:  # build_lesson_folders removed its .partial folder: say that nothing is left
        print(f"\ninterrupted: nothing written, {args.target} was not made", file=sys.stderr)
        return 130
    print(report(built, args.seed, time.perf_counter() - started))
    return 0


def check_flags(args: argparse.Namespace) -> None:
    """The flags' values, in the command line's words, before anything is read: the library's
    own checks name paths, not flags."""
    cli.check_seed(args.seed)
    source, target = Path(args.source).expanduser(), Path(args.target).expanduser()
    if not source.exists():
        raise UserError(
            f"--from {args.source} does not exist: pass --from the folder that holds cifar-10-batches-py/"
            " (train.py --dataset cifar10 downloads it into data/) or train/<class>/<image>"
        )
    if target.is_file() or (target.is_dir() and any(target.iterdir())):
        raise UserError(f"--to {args.target} already exists and is not empty: delete it first, or pass a new --to")


def report(built: LessonFolders, seed: int, seconds: float) -> str:
    """What was written, from what, and the command that trains on it; lines within 80 columns."""
    lines = [
        f"From:    {built.source} ({built.source_kind})",
        f"Wrote:   {built.root}/ in {seconds:.1f} s: PNG files (lossless), seed {seed}",
    ]
    earlier: list[str] = []  # the splits drawn before from the same part of the source
    for split, count in built.counts.items():
        where = built.split_sources[split]
        line = f"  {split + '/':<7}{count:>6,} images, {built.per_class[split]:>3} per class, from {where}"
        same = [name + "/" for name in earlier if built.split_sources[name] == where]
        lines.append(line + (f", none in {' or '.join(same)}" if same else ""))
        earlier.append(split)
    lines.append(f"Classes: {' '.join(built.class_names)}")
    lines.append(f"Train:   {train_command()} --data-dir {built.root}")
    return "\n".join(lines)


def train_command() -> str:
    """The training command in the form this one was typed: ``cnn-torch train`` after
    ``cnn-torch lesson-data``, ``python scripts/train.py`` after ``python scripts/lesson_data.py``."""
    typed = cli.script_command("lesson_data.py")
    if typed.endswith(" lesson-data"):
        return typed.removesuffix("lesson-data") + "train"
    return typed.replace("lesson_data.py", "train.py")


if __name__ == "__main__":
    sys.exit(main())
