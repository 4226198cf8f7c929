"""Evaluate a trained model like episode 05: loss, accuracy, per-class accuracy and a confusion matrix.

    python scripts/evaluate.py --checkpoint runs/<run>/best.pt               # the test split (else the run's val split)
    python scripts/evaluate.py --checkpoint runs/<run>/best.pt --split val   # the run's validation split
    python scripts/evaluate.py --checkpoint runs/<run>/best.pt --json        # one JSON object

The data flags default to the run's own (from run.json next to the checkpoint), so the
model is evaluated on the data it was trained for. The numbers are Keras's
``model.evaluate(test_images, test_labels)``; the matrix is the lesson's
``confusion_matrix(true_labels, predicted_labels)``, drawn as a seaborn heatmap.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from cnn_torch import data, metrics, visualise
from cnn_torch.checkpoints import load_checkpoint, model_from_checkpoint
from cnn_torch.cli import flags as cli
from cnn_torch.cli import runs
from cnn_torch.errors import UserError
from cnn_torch.evaluation import predict
from cnn_torch.image_grids import pick, save_images, show_images
from cnn_torch.platform.device import resolve_device
from cnn_torch.plots import plot_confusion_matrix


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="The data flags default to the run's own (run.json beside the checkpoint), so the model is"
        " evaluated on the data it was trained for.",
    )
    cli.add_checkpoint_flags(parser)
    parser.add_argument(
        "--split", choices=["test", "val"], default=None,
        help="test: the test split (CIFAR-10's, or DIR/test/); val: the run's validation split"
        " (DIR/val/, or what train.py held out; default: test, or val when the data has no test split)",
    )  # fmt: skip
    cli.add_data_flags(parser, validation_split=False)  # the run's validation split is the run's
    cli.add_batch_size_flag(parser)
    cli.add_device_flag(parser)
    cli.add_fig_dir_flag(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    return cli.run_main(evaluate_checkpoint, parse_args(argv))


def evaluate_checkpoint(args: argparse.Namespace) -> int:
    cli.check_data_flags(args)
    cli.check_batch_size(args.batch_size)
    cli.check_device(args.device)
    if args.fig_dir is not None:  # asked for: it must be writable, checked before any work
        cli.check_writable_folder(args.fig_dir, "--fig-dir")
    if args.visualise:
        visualise.require_captum()
    # 1. the model, rebuilt from the checkpoint alone
    checkpoint_path = Path(args.checkpoint)
    checkpoint = load_checkpoint(checkpoint_path)
    run_dir = checkpoint_path.resolve().parent
    fig_dir = Path(args.fig_dir) if args.fig_dir is not None else run_dir / "fig"
    draw = cli.writable(fig_dir)  # a run shared read-only (an instructor's): the numbers still, then a note
    device = resolve_device(args.device)
    model = model_from_checkpoint(checkpoint).to(device)
    class_names = checkpoint["class_names"]

    # 2. the images to evaluate on
    images, labels, source, data_name = load_split(args, checkpoint_path, checkpoint)

    # 3. Keras's model.evaluate, then predict -> confusion matrix and per-class accuracy
    # (a run trained with --l2 reports the loss with its penalty, as Keras's evaluate does: the model
    # carries its l2 from the checkpoint, or from run.json for a checkpoint written before it was kept)
    if not getattr(model, "kernel_l2", 0.0):
        model.kernel_l2 = float(read_run_record(run_dir / "run.json").get("flags", {}).get("l2") or 0.0)
    report = metrics.evaluation_report(model, images, labels, class_names, batch_size=args.batch_size, device=device)
    matrix = torch.tensor(report["confusion_matrix"])
    figure = images_figure = None
    seen = []
    if draw:
        title = (
            f"{checkpoint['model_name']} ({checkpoint_path.name}) on {data_name}, {args.split} split,"
            f" accuracy {report['accuracy']:.3f}"
        )
        figure_path = fig_dir / f"{runs.safe_name(run_dir.name)}_{args.split}_confusion_matrix.png"
        figure = plot_confusion_matrix(matrix, class_names, figure_path, title)
        # episodes 05/06: test images with their true and predicted class, the wrong ones marked
        chosen = pick(labels, 25, seed=0)
        predicted = predict(model, images[chosen], device=device).argmax(dim=1)
        grid = show_images(images[chosen], labels[chosen], class_names, f"{data_name}, {args.split} split", predicted)
        images_figure = save_images(grid, fig_dir / f"{runs.safe_name(run_dir.name)}_{args.split}_predictions.png")
        if args.visualise:  # what the network sees, for the first 8 of those images
            seen = visualise.save_what_it_sees(model, images[chosen[:8]], labels[chosen[:8]], class_names, fig_dir,
                                               f"{runs.safe_name(run_dir.name)}_{args.split}", args.visualise, title)
    report.update(split=args.split, checkpoint=str(checkpoint_path), data=source,
                  figure=figure and str(figure), images_figure=images_figure and str(images_figure),
                  what_it_sees=[str(path) for path in seen])  # fmt: skip
    note = f"note: no figures: {fig_dir} cannot be written (read-only): pass --fig-dir DIR to draw them"

    # 4. show it
    if args.json:
        print(json.dumps(report))
        if not draw:
            print(note, file=sys.stderr)
        return 0
    print(f"{checkpoint_path} ({checkpoint['model_name']}, {checkpoint['epoch']} epoch(s) trained)")
    print(f"{args.split} split: {report['num_samples']} images of {source}")
    print(f"loss: {report['loss']:.4f} - accuracy: {report['accuracy']:.4f}")  # Keras's evaluate line
    print("\nPer-class accuracy:")
    print(metrics.format_per_class(matrix, class_names))
    print("\nConfusion matrix (rows: true label, columns: predicted label):")
    print(metrics.format_confusion_matrix(matrix, class_names))
    if draw:
        print(f"\nFigure:      {figure}")
        print(f"Images:      {images_figure}")
        for path in seen:
            print(f"What it sees: {path}")
    else:  # the results first, then what could not be done
        print(f"\n{note}", file=sys.stderr)
    return 0


def load_split(args: argparse.Namespace, checkpoint_path: Path, checkpoint: dict):
    """``(images, labels, description, data name)`` of the split to evaluate.

    The data set, data folder, --limit and seed are the run's (from run.json beside the
    checkpoint, else the checkpoint's seed) unless given on the command line, so ``val`` is
    exactly the validation data the run's ``fit`` saw: the test split when train.py used it
    for validation, else the last ``validation_split`` (default 0.2) of the training images.
    """
    record = read_run_record(checkpoint_path.parent / "run.json")
    flags = record.get("flags", {})
    dataset = args.dataset or flags.get("dataset")
    data_dir = args.data_dir if args.data_dir is not None else flags.get("data_dir")
    limit = args.limit if args.limit is not None else flags.get("limit")
    seed = record.get("seed", checkpoint.get("seed"))
    _, height, width = checkpoint["input_shape"]
    if args.image_size is not None and tuple(args.image_size) != (height, width):
        raise UserError(
            f"the model takes {height}x{width} images, not {args.image_size[0]}x{args.image_size[1]}:"
            f" drop --image-size (every image is resized to {height}x{width})"
        )
    options = {  # resized and subset as the run's data was (run.json), unless the command line says otherwise
        "image_size": (height, width),
        "class_names": args.classes or flags.get("classes"),
        "crop_to_aspect_ratio": args.crop_to_aspect_ratio or bool(flags.get("crop_to_aspect_ratio")),
        "pad_to_aspect_ratio": args.pad_to_aspect_ratio or bool(flags.get("pad_to_aspect_ratio")),
        "jpeg_decoder": getattr(args, "jpeg_decoder", None) or flags.get("jpeg_decoder") or "keras",
    }
    lesson = data.load_data(dataset, data_dir, limit=limit, seed=seed or 0, **options)
    if lesson.class_names != checkpoint["class_names"]:
        raise UserError(
            f"the checkpoint was trained on the classes {', '.join(checkpoint['class_names'])} but {lesson.source}"
            f" has {', '.join(lesson.class_names)}: pass the --dataset and --data-dir the model was trained on"
        )
    data_name = (record.get("data") or {}).get("name") or lesson.source
    if args.split is None:  # the test split when there is one, else the run's validation split
        args.split = "test" if lesson.test_images is not None else "val"
        if args.split == "val":
            print(f"note: {lesson.source} has no test split: evaluating the run's validation split", file=sys.stderr)
    if args.split == "test":
        if lesson.test_images is None:
            raise UserError(
                f"{lesson.source} has no test split (no test/ folder): use --split val to evaluate"
                " on the run's validation split"
            )
        return lesson.test_images, lesson.test_labels, split_source(lesson, "test"), data_name

    # train.py's rule: validate on val/, else on the test split, when there is one and no --validation-split
    validation_split = flags.get("validation_split")
    if validation_split is None and lesson.val_images is not None:
        return lesson.val_images, lesson.val_labels, split_source(lesson, "val"), data_name
    if record and validation_split is None and lesson.test_images is not None:
        described = f"{split_source(lesson, 'test')} (the test split, which the run validated on)"
        return lesson.test_images, lesson.test_labels, described, data_name
    validation_split = validation_split or 0.2
    # Keras: the LAST fraction of the training images, before any shuffling
    *_, val_images, val_labels = data.split_validation(lesson.train_images, lesson.train_labels, validation_split)
    described = f"{lesson.source} (the last {validation_split:g} of its training images)"
    return val_images, val_labels, described, data_name


def split_source(lesson, split: str) -> str:
    """Where a split came from: its folder for an image folder (DIR/test), else the data set's name."""
    if lesson.source.startswith("folder:") and split in lesson.split_sources:
        return lesson.split_sources[split]
    return lesson.source


def read_run_record(path: Path) -> dict:
    """A run's run.json, or {} when the checkpoint was copied away from its run directory."""
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        reason = " ".join(str(error).split())[:80]
        raise UserError(f"cannot read {path} ({reason}): fix or delete it, or move the checkpoint elsewhere") from None
    return record if isinstance(record, dict) else {}


if __name__ == "__main__":
    sys.exit(main())
