"""The checks that need a GPU, in one run, on a machine with CUDA:

    python scripts/gpu_check.py --data-dir DIR [--limit 10000] [--json FILE]

1. The CUDA path computes what the CPU path computes: one epoch of ``cifar_model_small`` from the
   same weights and seed on both, with cuDNN's TF32 convolutions on (PyTorch's default, as
   TensorFlow's) and off; their Histories side by side.
2. An epoch's time on the GPU: fp32 and bf16, the lesson's batch of 32 and a batch of 256;
   the median of 3 epochs after an untimed first one.
3. ``evaluate`` and ``predict`` on CUDA give the CPU's numbers and leave the model in train mode.
4. The transfer model's frozen DenseNet121 base: forward images/s at 160x160, batch 32, fp32 and
   bf16 (random base: the speed does not depend on the weights).

``--device cpu`` runs the same on the CPU (a dry run of the script, not a GPU figure).
Prints a table and one verdict line; exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import statistics
import sys
import time

try:
    import torch

    from cnn_torch import data, evaluate, fit, models, predict
    from cnn_torch.keras_rules.transfer import DenseNet121Base
    from cnn_torch.platform.device import autocast
except ModuleNotFoundError as missing:
    raise SystemExit(f"{missing.name} is not installed: run `pip install -e .` in the clone first") from None


def one_epoch(model, images, labels, val, device, precision="fp32", batch_size=32, epochs=1):
    """fit's History and each epoch's seconds (a callback reads the clock at every epoch's end)."""
    ends = [time.perf_counter()]
    history = fit(model, torch.nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), eps=1e-7), images, labels,
                  epochs=epochs, batch_size=batch_size, validation_data=val, seed=0, verbose=0, device=device,
                  precision=precision, on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()))  # fmt: skip
    return history.history, [b - a for a, b in itertools.pairwise(ends)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="an image folder: DIR/train/<class>/<image>")
    parser.add_argument("--limit", type=int, default=10000, help="training images (the last 20%% validate)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available here: run this on a machine with an NVIDIA GPU (or --device cpu)")
    device = torch.device(args.device)
    lesson = data.load_data("folder", data_dir=args.data_dir, limit=args.limit, validation_split=0.2)
    images, labels = lesson.train_images, lesson.train_labels
    val = lesson.validation_data
    report = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
              "train_images": len(images), "val_images": len(val[0])}  # fmt: skip
    failed = []

    # 1. CPU and CUDA from the same weights
    torch.manual_seed(0)
    start = models.cifar_model_small(num_classes=len(lesson.class_names))
    cpu_history, _ = one_epoch(copy.deepcopy(start), images[:2000], labels[:2000], None, "cpu")
    for tf32 in (True, False):
        torch.backends.cudnn.allow_tf32 = tf32
        gpu_history, _ = one_epoch(copy.deepcopy(start), images[:2000], labels[:2000], None, device)
        gap = {key: abs(gpu_history[key][0] - cpu_history[key][0]) for key in cpu_history}
        report[f"cpu_vs_{args.device}_tf32_{tf32}"] = {"cpu": cpu_history, args.device: gpu_history, "gap": gap}
        print(f"one epoch on 2000 images, CPU against {args.device} (cuDNN TF32 {'on' if tf32 else 'off'}): "
              + ", ".join(f"{key} {cpu_history[key][0]:.5f} / {gpu_history[key][0]:.5f}" for key in cpu_history))
        if gap["loss"] > 0.02 * cpu_history["loss"][0]:
            failed.append(f"the {args.device} loss is more than 2% from the CPU's (TF32 {tf32})")
    torch.backends.cudnn.allow_tf32 = True

    # 2. epoch times
    report["epoch_seconds"] = {}
    for precision in ("fp32", "bf16"):
        for batch_size in (32, 256):
            torch.manual_seed(0)
            model = models.cifar_model_small(num_classes=len(lesson.class_names))
            history, seconds = one_epoch(model, images, labels, val, device, precision, batch_size, epochs=4)
            median = statistics.median(seconds[1:])
            report["epoch_seconds"][f"{precision}, batch {batch_size}"] = {
                "first": seconds[0], "median_of_next_3": median, "images_per_second": len(images) / median,
                "val_accuracy": history["val_accuracy"][-1]}  # fmt: skip
            print(f"{precision}, batch {batch_size}: first epoch {seconds[0]:.2f} s, then {median:.2f} s"
                  f" ({len(images) / median:,.0f} train img/s, with validation), val_accuracy"
                  f" {history['val_accuracy'][-1]:.3f} after 4 epochs")

    # 3. evaluate and predict on the device against the CPU
    model.to("cpu").train()
    cpu_loss, cpu_accuracy = evaluate(model, *val, verbose=0, device="cpu")
    cpu_logits = predict(model, val[0][:256], device="cpu")
    gpu_loss, gpu_accuracy = evaluate(model, *val, verbose=0, device=device)
    gpu_logits = predict(model, val[0][:256], device=device)
    report["evaluate"] = {"cpu": [cpu_loss, cpu_accuracy], args.device: [gpu_loss, gpu_accuracy],
                          "predict_max_abs_gap": float((gpu_logits.cpu() - cpu_logits).abs().max())}  # fmt: skip
    print(f"evaluate: CPU loss {cpu_loss:.5f} accuracy {cpu_accuracy:.4f}; {args.device} loss {gpu_loss:.5f}"
          f" accuracy {gpu_accuracy:.4f}; predict's largest logit gap {report['evaluate']['predict_max_abs_gap']:.2e}")
    if not model.training:
        failed.append("evaluate/predict left the model in eval mode")
    if abs(gpu_accuracy - cpu_accuracy) > 2 / len(val[0]):
        failed.append("evaluate's accuracy on the device differs from the CPU's by more than 2 images")

    # 4. the frozen DenseNet121 base
    base = DenseNet121Base(weights=None).to(device).eval().requires_grad_(False)
    batch = torch.rand(32, 3, 32, 32, device=device)
    report["densenet_base_images_per_second"] = {}
    for precision in ("fp32", "bf16"):
        with torch.no_grad(), autocast(device, precision):
            for _ in range(3):
                base(batch)
            if args.device == "cuda":
                torch.cuda.synchronize()
            begin, repeats = time.perf_counter(), 20 if args.device == "cuda" else 2
            for _ in range(repeats):
                base(torch.rand(32, 3, 32, 32, device=device))
            if args.device == "cuda":
                torch.cuda.synchronize()
        rate = repeats * 32 / (time.perf_counter() - begin)
        report["densenet_base_images_per_second"][precision] = rate
        print(f"DenseNet121 base, 160x160, batch 32, {precision}: {rate:,.0f} img/s")

    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=1)
    print("gpu_check: " + ("all checks passed" if not failed else "FAILED: " + "; ".join(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    from cnn_torch.cli.flags import run_main

    sys.exit(run_main(lambda _: main(), None))  # a UserError (a bad --limit, say): one error line, no traceback
