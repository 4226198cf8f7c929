"""Classify image files with a trained model, like episode 05's prediction on a new photo.

    python scripts/predict.py --checkpoint runs/<run>/best.pt photo.jpg
    python scripts/predict.py --checkpoint runs/<run>/best.pt a.png b.jpg --json

Each file, of any size, is converted to RGB and resized to the model's input size exactly as
training resized its images (bilinear, as ``image_dataset_from_directory(image_size=...)``;
the lesson's ``keras.utils.load_img(target_size=...)`` would use nearest neighbour, a
blockier image than the model learned from), then scaled like the training data (``/ 255.0``).
With ``--visualise``, the predictions come first, then one line per figure written (the
first layer's filters once, then each image's feature maps and attribution, named after the
file, with its folder where two files share a name: ``cat_0450_gradcam.png``). A run shared
read-only gets its predictions and a note instead of figures.
The model outputs logits; the softmax turns them into the class probabilities the lesson's Keras model prints.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from cnn_torch import visualise
from cnn_torch.checkpoints import load_checkpoint, model_from_checkpoint
from cnn_torch.cli import flags as cli
from cnn_torch.cli import runs
from cnn_torch.errors import UserError
from cnn_torch.evaluation import predict, probabilities
from cnn_torch.machinery.terminal import fitted_path
from cnn_torch.platform.device import PrecisionWarning, resolve_device
from cnn_torch.plots import save_figure
from cnn_torch.sources.image_files import load_images, to_model_input


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_checkpoint_flags(parser)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG, BMP or GIF files of any size")
    parser.add_argument("--top", type=int, default=3, help="the most probable classes to print (default: 3)")
    cli.add_image_flags(parser, classes=False)  # defaults: the model's input size, the run's aspect rule
    cli.add_device_flag(parser)
    cli.add_fig_dir_flag(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    return cli.run_main(predict_files, parse_args(argv))


def predict_files(args: argparse.Namespace) -> int:
    if args.top <= 0:
        raise UserError(f"--top must be a positive integer, got {args.top}: try --top 3")
    cli.check_data_flags(args)  # --image-size
    cli.check_device(args.device)
    fig_dir = Path(args.fig_dir) if args.fig_dir is not None else Path(args.checkpoint).resolve().parent / "fig"
    if args.visualise and args.fig_dir is not None:  # asked for: it must be writable, checked before any work
        cli.check_writable_folder(fig_dir, "--fig-dir")
    if args.visualise:
        visualise.require_captum()
    # 1. the model, rebuilt from the checkpoint alone
    checkpoint = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(checkpoint)
    class_names = checkpoint["class_names"]

    # 2. the images: read and resized as training read its images, then / 255.0
    channels, height, width = checkpoint["input_shape"]
    if args.image_size is not None and tuple(args.image_size) != (height, width):
        raise UserError(
            f"the model takes {height}x{width} images, not {args.image_size[0]}x{args.image_size[1]}:"
            f" drop --image-size (every image is resized to {height}x{width})"
        )
    trained = runs.read_run_flags(Path(args.checkpoint).parent)  # the run's --crop/--pad-to-aspect-ratio
    aspect = {
        name: getattr(args, name) or bool(trained.get(name)) for name in ("crop_to_aspect_ratio", "pad_to_aspect_ratio")
    }
    # JPEG files decoded as the run's were (Keras's decoder unless the run asked for the accurate one)
    jpeg_decoder = getattr(args, "jpeg_decoder", None) or trained.get("jpeg_decoder") or "keras"
    images = load_images(args.images, (height, width), channels, **aspect, jpeg_decoder=jpeg_decoder)
    inputs = to_model_input(images, checkpoint["normalisation"])

    # 3. Keras's model.predict, in the run's precision (run.json; fp32 if it recorded none);
    # softmax turns the logits into probabilities
    precision = trained.get("precision") or "fp32"
    with warnings.catch_warnings():  # a few images: bf16 emulated on this CPU costs little, nothing to fix
        warnings.simplefilter("ignore", PrecisionWarning)
        logits = predict(model, inputs, device=resolve_device(args.device), precision=precision)
    class_probabilities = probabilities(logits)

    results = []
    for path, row in zip(args.images, class_probabilities.tolist(), strict=True):
        by_class = dict(zip(class_names, row, strict=True))
        results.append({"file": str(path), "predicted": max(by_class, key=by_class.get), "probabilities": by_class})
    # 4. what the network sees, when asked: drawn where it can be (a run shared read-only: a note instead)
    draw = bool(args.visualise) and (args.fig_dir is not None or cli.writable(fig_dir))
    note = f"note: no figures: {fig_dir} cannot be written (read-only): pass --fig-dir DIR to draw them"
    if args.json:  # one JSON document: the figures' paths are in it
        draw and draw_what_it_sees(args, model, checkpoint, inputs, results, fig_dir)
        print(json.dumps(results))
    else:  # the predictions first, then each figure once
        for result in results:
            print(f"{result['file']}: {result['predicted']}")
            ranked = sorted(result["probabilities"].items(), key=lambda item: item[1], reverse=True)
            width = max(len(name) for name in class_names)
            for name, probability in ranked[: args.top]:
                print(f"    {name:<{width}}  {probability:.4f}", flush=True)
        for figure in draw_what_it_sees(args, model, checkpoint, inputs, results, fig_dir) if draw else []:
            print(fitted_path("What it sees: ", str(figure)))
    if args.visualise and not draw:
        print(("" if args.json else "\n") + note, file=sys.stderr)
    return 0


def figure_names(files: list[str]) -> list[str]:
    """A name per image file for its figures, unique among ``files``: the file's stem, with its
    folder's name in front where two stems collide (``cat_0450``, ``dog_0450``: the lesson's
    class folders hold same-named files), then a number where even that collides."""
    paths = [Path(file) for file in files]
    stems = [path.stem for path in paths]
    names = [f"{path.parent.name}_{path.stem}" if stems.count(path.stem) > 1 and path.parent.name else path.stem
             for path in paths]  # fmt: skip
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if names.count(name) == 1 else f"{name}_{seen[name]}")
    return unique


def draw_what_it_sees(args, model, checkpoint, inputs, results, fig_dir: Path) -> list[Path]:
    """The first layer's filters once, then each image's feature maps and attribution; each
    result gets its figures' paths (``what_it_sees``). Returns every path written, once each."""
    model_title = f"{checkpoint['model_name']} ({Path(args.checkpoint).name})"
    filters = fig_dir / f"{Path(args.checkpoint).stem}_filters.png"
    save_figure(visualise.show_filters(model, title=model_title), filters)
    written = [filters]
    names = figure_names([result["file"] for result in results])
    for result, image, name in zip(results, inputs, names, strict=True):
        drawn = visualise.save_what_it_sees(model, image.unsqueeze(0), None, checkpoint["class_names"], fig_dir, name,
                                            args.visualise, title=f"{Path(result['file']).name}, {model_title}",
                                            filters=False)  # fmt: skip
        result["what_it_sees"] = [str(path) for path in (filters, *drawn)]
        written += drawn
    return written


if __name__ == "__main__":
    sys.exit(main())
