"""Time one epoch of the lesson's training in cnn-torch, in Keras and in a naive PyTorch loop.

    python scripts/benchmark.py --data-dir ../shared/data/cifar10-jpg --repeats 3
    python scripts/benchmark.py --dataset shapes --limit 2000 --repeats 2        # quick, offline
    python scripts/benchmark.py --data-dir ../shared/data/cifar10-jpg --limit 6400 --probes  # each speed-up alone
    python scripts/benchmark.py --data-dir ../shared/data/cifar10-jpg \\
        --keras-python tensorflow=path/to/tf-venv/bin/python                    # Keras+TF from another venv

Every system trains ``cifar_model_small`` for one epoch with Adam at batch size 32 on the
same images, then validates, in its own process (so peak memory is its own). The systems
run in turn, ``--repeats`` times over, so a slow moment of the machine touches them all:

- ``cnn-torch`` and ``cnn-torch-bf16``: ``cnn_torch.fit`` in float32 and with bf16 autocast, fed
  the lesson's float32 ``/ 255.0`` arrays as Keras is; ``cnn-torch-uint8``: fed the uint8 images
  (scaled per batch inside ``fit``).
- ``keras-torch``, ``keras-tensorflow``: the lesson's Keras code (arrays ``/ 255.0``,
  ``compile(optimizer='adam', ...)``, ``fit(..., batch_size=32, validation_data=...)``) on
  each installed Keras backend. ``--keras-python BACKEND=PYTHON`` runs a backend with another
  interpreter (e.g. a venv that has TensorFlow).
- ``torch-dataloader``: the usual tutorial loop, ``DataLoader(TensorDataset(...))`` with
  per-sample collation and a ``loss.item()`` every step.
- ``cnn-torch-written-order``, ``cnn-torch-bf16-written-order`` (not run unless named): ``fit`` with
  the model's layers run as listed, each ReLU before its MaxPool2d (``nn.Sequential``'s forward,
  as before ``LessonModel.forward`` pooled first): the same numbers, to time that shortcut.
- ``cnn-torch-densenet``, ``cnn-torch-densenet-bf16``, ``keras-tensorflow-densenet`` (not run
  unless named): the transfer model's frozen DenseNet121 base (``include_top=False,
  pooling='max'``, resized to 160x160 inside), forward only, batch 32, in steady state: images
  per second, the first batch (tracing, kernel choice) left out. Random weights (no download):
  the arithmetic is the ImageNet weights'.

When ``cnn-torch`` and ``keras-tensorflow`` both ran, the report ends with the row for
BENCHMARKS.md's table of CPU kinds: the CPU (model name, family and model number, vector
instruction sets), both systems' epoch times and their ratio (with ``cnn-torch-bf16`` and the
DenseNet base when they ran too).

``--probes`` times the pieces of ``fit``'s fast path one at a time instead: its training pass
written out with each speed-up on or off (plain NCHW batches, glibc's default malloc and the
layers run as written, then reused memory, channels-last batches, pooling before ReLU as
``LessonModel.forward`` does, memory and layout together, with fused or foreach Adam, and all
of them: fit's; then fit's in bf16 autocast and under ``torch.compile``, named only), and ``evaluate``
at several validation batch sizes. That is where BENCHMARKS.md's per-optimisation gains come from.

The images are decoded once (cnn_torch's cache) and handed to the systems as ``.npy`` files.
The FLOP limit is a large float32 matrix product timed in the same run. The CPU is the
device (CUDA is hidden), so the systems compare on the same hardware.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ("cnn-torch", "cnn-torch-uint8", "cnn-torch-bf16", "keras-torch", "keras-tensorflow", "torch-dataloader")
# the frozen DenseNet121 base's forward throughput (issue #28): only when named in --systems
DENSENET_SYSTEMS = ("cnn-torch-densenet", "cnn-torch-densenet-bf16", "keras-tensorflow-densenet")
# fit with the model's layers run as written, ReLU before MaxPool2d (the version before pooling-first): only when named
WRITTEN_ORDER_SYSTEMS = ("cnn-torch-written-order", "cnn-torch-bf16-written-order")
KERAS_BACKENDS = {"keras-torch": "torch", "keras-tensorflow": "tensorflow", "keras-tensorflow-densenet": "tensorflow"}
DENSENET_BATCHES = 4  # timed batches of 32 per run, after one untimed
# --probes: fit's training pass with each speed-up on or off:
# (reuse memory, channels-last, Adam option, pooling before ReLU as LessonModel.forward runs it)
LOOP_PROBES = {
    "loop-plain": (False, False, None, False),
    "loop-reuse-memory": (True, False, None, False),
    "loop-channels-last": (False, True, None, False),
    "loop-pooling-first": (False, False, None, True),
    "loop-both": (True, True, None, False),
    "loop-both-fused-adam": (True, True, "fused", False),
    "loop-both-foreach-adam": (True, True, "foreach", False),
    "loop-all": (True, True, None, True),  # what fit runs
}
# fit's pass (loop-all) in bf16 autocast and under torch.compile (compiled in the untimed warm-up): only when named
NAMED_PROBES = tuple(f"loop-all{suffix}" for suffix in ("-bf16", "-compiled", "-bf16-compiled"))
LOOP_PROBES.update(dict.fromkeys(NAMED_PROBES, LOOP_PROBES["loop-all"]))
VAL_PROBES = {"val-batch-32": 32, "val-batch-128": 128, "val-batch-256": 256, "val-batch-1024": 1024}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--dataset",
        choices=["cifar10", "folder", "shapes"],
        default=None,
        help="default: folder if --data-dir holds train/<class>/ folders, else cifar10",
    )
    parser.add_argument("--data-dir", default=None, help="image-folder tree (train/<class>/...) or CIFAR-10 folder")
    parser.add_argument("--limit", type=int, default=None, help="training images (default: all; shapes: 3000)")
    parser.add_argument(
        "--val-size", type=int, default=10000, help="validation images: the test split, else the last N training images"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run; the table shows seconds per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every system, alternating")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {', '.join(SYSTEMS)}")
    parser.add_argument(
        "--keras-python",
        action="append",
        default=[],
        metavar="BACKEND=PYTHON",
        help="interpreter for a Keras backend, e.g. tensorflow=path/to/tf-venv/bin/python "
        "(default: this one, if it has that backend)",
    )
    parser.add_argument("--probes", action="store_true", help="time each speed-up of fit alone (see above)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of every system: torch.set_num_threads; TensorFlow's intra- and inter-op pools")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write every run's raw numbers here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: run one system
    parser.add_argument("--work-dir", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- the parent


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    if args.probes:
        systems = [*(name for name in LOOP_PROBES if name not in NAMED_PROBES), *VAL_PROBES]
    args.probes = all(name in LOOP_PROBES or name in VAL_PROBES for name in systems)  # --systems may pick probes
    known = {*SYSTEMS, *DENSENET_SYSTEMS, *WRITTEN_ORDER_SYSTEMS, *LOOP_PROBES, *VAL_PROBES}
    unknown = sorted(set(systems) - known)
    if unknown:
        choices = ", ".join(SYSTEMS + DENSENET_SYSTEMS + WRITTEN_ORDER_SYSTEMS)
        print(f"error: unknown system(s) {', '.join(unknown)}: choose from {choices}", file=sys.stderr)
        return 2
    interpreters = keras_interpreters(args.keras_python)
    for name in [s for s in systems if s in KERAS_BACKENDS]:
        if KERAS_BACKENDS[name] not in interpreters:
            print(
                f"note: {name} skipped: no interpreter with keras and {KERAS_BACKENDS[name]} "
                f"(pass --keras-python {KERAS_BACKENDS[name]}=PATH)",
                file=sys.stderr,
            )
            systems.remove(name)

    with tempfile.TemporaryDirectory(prefix="cnn-torch-bench-") as work_dir:
        info = prepare_data(args, Path(work_dir))
        print(
            f"data: {info['train']} training and {info['val']} validation images {info['shape']} "
            f"from {info['source']}; {info['classes']} classes",
            file=sys.stderr,
        )
        runs: dict[str, list[dict]] = {name: [] for name in systems}
        startups: list[dict] = []
        matmul_rates: list[float] = []
        for repeat in range(args.repeats):
            matmul_rates.append(matmul_rate(args.threads))
            for name in systems:
                python = interpreters[KERAS_BACKENDS[name]] if name in KERAS_BACKENDS else sys.executable
                result = run_system(name, python, args, work_dir)
                runs[name].append(result)
                print(f"[{repeat + 1}/{args.repeats}] {name}: " + describe(result), file=sys.stderr)
            if info["source"].startswith("folder:") and not args.probes:
                startups.append(run_system("startup", sys.executable, args, work_dir))

    flops = info["flops_per_image"]
    limit_rate = max(matmul_rates)
    print(
        probe_report(args, info, runs, limit_rate, flops)
        if args.probes
        else report(args, info, runs, startups, limit_rate, flops)
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"info": info, "matmul_flops_per_second": matmul_rates, "runs": runs, "startups": startups}, indent=2
            )
        )
    return 0


def keras_interpreters(pairs: list[str]) -> dict[str, str]:
    """Backend -> interpreter: the given ones, else this interpreter for each backend it can import."""
    chosen = {}
    for pair in pairs:
        backend, _, python = pair.partition("=")
        if backend not in KERAS_BACKENDS.values() or not python:
            raise SystemExit(f"error: --keras-python wants BACKEND=PYTHON, BACKEND torch or tensorflow; got {pair!r}")
        chosen[backend] = python
    for backend in KERAS_BACKENDS.values():
        if backend not in chosen and can_import(sys.executable, ["keras", backend]):
            chosen[backend] = sys.executable
    return chosen


def can_import(python: str, modules: list[str]) -> bool:
    code = "import importlib.util, sys; sys.exit(any(importlib.util.find_spec(m) is None for m in sys.argv[1:]))"
    return subprocess.run([python, "-c", code, *modules], capture_output=True).returncode == 0


def prepare_data(args, work_dir: Path) -> dict:
    """Decode (or read the cache) once and write the arrays every system loads."""
    import numpy as np
    import torch

    from cnn_torch import data, models
    from cnn_torch.platform import flops
    from cnn_torch.platform.device import cpu_name, has_native_bf16

    dataset = data.resolve_dataset(args.dataset, args.data_dir)
    lesson = data.load_data(dataset, args.data_dir, limit=args.limit)
    train_images, train_labels = lesson.train_images, lesson.train_labels
    if lesson.test_images is not None:
        val_images, val_labels = lesson.test_images[: args.val_size], lesson.test_labels[: args.val_size]
    else:  # no test split (the shared CIFAR-10 JPEGs): time validation on the last training images
        val_images, val_labels = train_images[-args.val_size :], train_labels[-args.val_size :]
    for name, array in [
        ("train_images", train_images),
        ("train_labels", train_labels),
        ("val_images", val_images),
        ("val_labels", val_labels),
    ]:
        np.save(work_dir / f"{name}.npy", array.numpy())
    model = models.cifar_model_small(num_classes=lesson.num_classes, input_shape=tuple(train_images.shape[1:]))
    info = {
        "dataset": dataset,
        "data_dir": args.data_dir,
        "limit": args.limit,
        "source": lesson.source,
        "train": len(train_images),
        "val": len(val_images),
        "classes": lesson.num_classes,
        "shape": tuple(train_images.shape[1:]),
        "flops_per_image": flops.training_flops_per_image(model),
        "torch": torch.__version__,
        "cpu": cpu_name(),
        **cpu_family_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "isa": cpu_isa(),
        "native_bf16": has_native_bf16("cpu"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cores": os.cpu_count(),
        "torch_threads": args.threads or torch.get_num_threads(),
    }
    (work_dir / "info.json").write_text(json.dumps(info))
    return info


def matmul_rate(threads: int | None) -> float:
    """The float32 matmul FLOP/s, measured in a fresh process with the torch systems' threads."""
    code = (
        "import sys, torch\n"
        "from cnn_torch.platform.flops import matmul_flops_per_second\n"
        "if int(sys.argv[2]): torch.set_num_threads(int(sys.argv[2]))\n"
        "print(matmul_flops_per_second())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), str(threads or 0)], capture_output=True, text=True, check=True
    )
    return float(out.stdout.split()[-1])


def run_system(name: str, python: str, args, work_dir: str) -> dict:
    command = [
        python,
        str(Path(__file__).resolve()),
        "--worker",
        name,
        "--work-dir",
        work_dir,
        "--batch-size",
        str(args.batch_size),
        "--epochs",
        str(args.epochs),
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.dataset:
        command += ["--dataset", args.dataset]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    if args.limit:
        command += ["--limit", str(args.limit)]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    if name in KERAS_BACKENDS:
        env["KERAS_BACKEND"] = KERAS_BACKENDS[name]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {done.returncode}: " + " | ".join(tail)}
    result = json.loads(lines[-1][len("RESULT ") :])
    result["process_seconds"] = time.perf_counter() - started
    return result


def describe(result: dict) -> str:
    if "error" in result:
        return "FAILED " + result["error"]
    if "base_images_per_second" in result:
        return f"{result['base_images_per_second']:.1f} img/s through the frozen DenseNet121 base"
    if "first_step_seconds" in result:
        return f"{result['first_step_seconds']:.2f} s to the first step"
    if "epoch_seconds" not in result:  # a probe
        rate = result.get("train_images_per_second") or result["val_images_per_second"]
        return f"{rate:.0f} img/s, peak RSS {result['peak_rss_mb']:.0f} MB"
    return (
        f"{result['epoch_seconds']:.1f} s/epoch, {result['train_images_per_second']:.0f} train img/s, "
        f"val_accuracy {result['val_accuracy']:.3f}, peak RSS {result['peak_rss_mb']:.0f} MB"
    )


def report(args, info: dict, runs: dict, startups: list, limit_rate: float, flops: float) -> str:
    """The markdown table: per system, then the ratio of every pair; the DenseNet base's
    throughput; the row for BENCHMARKS.md's table of CPU kinds."""
    ok = {name: [r for r in results if "error" not in r] for name, results in runs.items()}
    ok = {name: results for name, results in ok.items() if results}
    densenet = {name: ok.pop(name) for name in DENSENET_SYSTEMS if name in ok}
    limit_images = limit_rate / flops
    lines = [
        f"Machine: {info['cpu']}{family_model(info)}, {info['cores']} cores, "
        f"torch CPU capability {info['cpu_capability']}, "
        f"ISA {' '.join(info.get('isa', [])) or '?'} (native bf16: {'yes' if info.get('native_bf16') else 'no'}), "
        f"GPU {info.get('gpu') or 'none'}; torch {info['torch']} with {info['torch_threads']} threads; "
        f"Python {platform.python_version()}.",
        f"Workload: one epoch of cifar_model_small, Adam, batch {args.batch_size}, on {info['train']:,} training "
        f"images {tuple(info['shape'])} + validation on {info['val']:,}; {args.repeats} alternating runs per system.",
        f"FLOPs: {flops / 1e6:.1f} MFLOP per training image (FlopCounterMode on a real step); fp32 matmul "
        f"{limit_rate / 1e9:.0f} GFLOP/s -> fp32 limit {limit_images:,.0f} train img/s.",
        "",
        "| system | epoch s (median, min-max) | train img/s | % fp32 FLOP limit | val img/s | val acc | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    medians = {}
    for name, results in ok.items():
        epochs = [r["epoch_seconds"] for r in results]
        medians[name] = statistics.median(epochs)
        train_rate = statistics.median(r["train_images_per_second"] for r in results)
        val_rate = statistics.median(r["val_images_per_second"] for r in results)
        accuracy = statistics.median(r["val_accuracy"] for r in results)
        rss = max(r["peak_rss_mb"] for r in results)
        lines.append(
            f"| {name} | {medians[name]:.1f} ({min(epochs):.1f}-{max(epochs):.1f}) | {train_rate:,.0f} | "
            f"{100 * train_rate / limit_images:.0f}% | {val_rate:,.0f} | {accuracy:.3f} | {rss:,.0f} MB |"
        )
    failed = [name for name in runs if name not in ok and name not in densenet]
    for name in failed:
        lines.append(f"| {name} | failed: {runs[name][0]['error'][:120]} | | | | | |")
    if len(medians) > 1:
        names = list(medians)
        lines += [
            "",
            "Epoch-time ratio, row / column (below 1: the row is faster):",
            "",
            "| | " + " | ".join(names) + " |",
            "|---" * (len(names) + 1) + "|",
        ]
        for row in names:
            cells = [f"{medians[row] / medians[col]:.2f}" for col in names]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    good = [s for s in startups if "error" not in s]
    if good:
        first = statistics.median(s["first_step_seconds"] for s in good)
        imports = statistics.median(s["import_seconds"] for s in good)
        lines += [
            "",
            f"Second start (decoded images cached): first training step {first:.2f} s after launch, "
            f"excluding {imports:.2f} s of imports (median of {len(good)}).",
        ]
    base_rates = {name: statistics.median(r["base_images_per_second"] for r in results)
                  for name, results in densenet.items()}  # fmt: skip
    if base_rates:
        lines += ["", f"The frozen DenseNet121 base, forward at 160x160, batch {args.batch_size}, steady state "
                  f"({DENSENET_BATCHES} batches per run after one untimed, {args.repeats} runs):", "",
                  "| system | images/s (median, min-max) |", "|---|---|"]
        for name, results in densenet.items():
            rates = [r["base_images_per_second"] for r in results]
            lines.append(f"| {name} | {base_rates[name]:.1f} ({min(rates):.1f}-{max(rates):.1f}) |")
    if "cnn-torch" in medians and "keras-tensorflow" in medians:
        lines += ["", "Row for BENCHMARKS.md's table of CPU kinds:", "", *cpu_kind_row(info, medians, base_rates)]
    return "\n".join(lines)


def family_model(info: dict) -> str:
    """`` (family 25, model 17)``: what tells two CPUs of one brand name apart (x86 Linux)."""
    family, model = info.get("cpu_family"), info.get("cpu_model")
    return f" (family {family}, model {model})" if family and model else ""


def cpu_kind_row(info: dict, medians: dict, base_rates: dict) -> list[str]:
    """BENCHMARKS.md's table of CPU kinds: the header and this machine's row."""
    keras = medians["keras-tensorflow"]

    def versus(name: str) -> str:
        return f"{medians[name]:.2f} s ({medians[name] / keras:.2f})" if name in medians else "-"

    def base(name: str) -> str:
        return f"{base_rates[name]:.1f}" if name in base_rates else "-"

    native = "native" if info.get("native_bf16") else "emulated"
    cpu = f"{info['cpu']}{family_model(info)}, {info['cores']} cores"
    return [
        "| CPU | vector ISA | torch | Keras + TF epoch | cnn-torch fp32 (ratio) | cnn-torch bf16 (ratio) "
        "| DenseNet base img/s: fp32, bf16, Keras + TF |",
        "|---|---|---|---|---|---|---|",
        f"| {cpu} | {' '.join(info.get('isa', [])) or '?'} (bf16 {native}) | {info['torch']}, "
        f"{info['torch_threads']} threads | {keras:.2f} s | {versus('cnn-torch')} | {versus('cnn-torch-bf16')} "
        f"| {base('cnn-torch-densenet')}, {base('cnn-torch-densenet-bf16')}, {base('keras-tensorflow-densenet')} |",
    ]


def probe_report(args, info: dict, runs: dict, limit_rate: float, flops: float) -> str:
    """The --probes tables: training img/s with each speed-up on or off, validation img/s by batch size."""
    ok = {name: [r for r in results if "error" not in r] for name, results in runs.items()}
    limit_images = limit_rate / flops
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, torch CPU capability {info['cpu_capability']}, "
        f"torch {info['torch']} with {info['torch_threads']} threads; {args.repeats} alternating runs per probe.",
        f"Training pass of fit written out, on {info['train']:,} images at batch {args.batch_size} "
        f"(fp32 limit {limit_images:,.0f} img/s); evaluate on {info['val']:,} images.",
        "",
        "| probe | img/s (median, min-max) | vs loop-plain | % fp32 FLOP limit | peak RSS |",
        "|---|---|---|---|---|",
    ]
    plain = statistics.median(
        r["train_images_per_second"] for r in ok.get("loop-plain") or [{"train_images_per_second": 0}]
    )
    for name, results in ok.items():
        if not results:
            lines.append(f"| {name} | failed: {runs[name][0]['error'][:120]} | | | |")
            continue
        key = "train_images_per_second" if name in LOOP_PROBES else "val_images_per_second"
        rates = [r[key] for r in results]
        rate = statistics.median(rates)
        versus = f"{rate / plain:.2f}x" if name in LOOP_PROBES and plain else ""
        percent = f"{100 * rate / limit_images:.0f}%" if name in LOOP_PROBES else ""
        rss = max(r["peak_rss_mb"] for r in results)
        lines.append(
            f"| {name} | {rate:,.0f} ({min(rates):,.0f}-{max(rates):,.0f}) | {versus} | {percent} | {rss:,.0f} MB |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- the workers


def run_worker(args) -> int:
    """One system in this process; prints ``RESULT {json}``."""
    if args.worker == "startup":
        result = worker_startup(args)
    else:
        work_dir = Path(args.work_dir)
        names = ("train_images", "train_labels", "val_images", "val_labels")
        arrays = {name: load_array(work_dir, name) for name in names}
        info = json.loads((work_dir / "info.json").read_text())
        if args.worker in LOOP_PROBES or args.worker in VAL_PROBES:
            result = worker_probe(args, arrays, info)
            scale = 1 if sys.platform == "darwin" else 1024
            result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
            print("RESULT " + json.dumps(result))
            return 0
        if args.worker in DENSENET_SYSTEMS:
            worker = worker_keras_densenet if args.worker in KERAS_BACKENDS else worker_torch_densenet
            result = worker(args, arrays)
            scale = 1 if sys.platform == "darwin" else 1024
            result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
            print("RESULT " + json.dumps(result))
            return 0
        if args.worker in KERAS_BACKENDS:
            result = worker_keras(args, arrays, info)
        elif args.worker == "torch-dataloader":
            result = worker_dataloader(args, arrays, info)
        else:
            precision = "bf16" if "-bf16" in args.worker else "fp32"
            result = worker_cnn_torch(args, arrays, info, precision, uint8=args.worker.endswith("uint8"),
                                      written_order=args.worker in WRITTEN_ORDER_SYSTEMS)  # fmt: skip
        result["train_images_per_second"] = len(arrays["train_labels"]) * args.epochs / result["train_seconds"]
        result["val_images_per_second"] = len(arrays["val_labels"]) * args.epochs / result["val_seconds"]
        result["epoch_seconds"] = result["fit_seconds"] / args.epochs
    # ru_maxrss: kilobytes on Linux, bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    print("RESULT " + json.dumps(result))
    return 0


def cpu_seconds() -> float:
    """This process's CPU time, all threads (the --json records carry it beside the wall time:
    on a machine shared with other work it moves less than the wall time does)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_array(work_dir: Path, name: str):
    import numpy as np

    return np.load(work_dir / f"{name}.npy")


def worker_cnn_torch(args, arrays, info, precision: str, uint8: bool = False, written_order: bool = False) -> dict:
    """cnn_torch.fit, fed the lesson's float32 ``/ 255.0`` arrays (or, ``uint8``, the raw pixels);
    ``written_order``: the model runs nn.Sequential's own forward, its layers as written."""
    import torch

    from cnn_torch import evaluate, fit, models
    from cnn_torch.keras_rules import optim

    if args.threads:
        torch.set_num_threads(args.threads)
    train_images, train_labels, val_images, val_labels = (
        torch.from_numpy(arrays[name]) for name in ("train_images", "train_labels", "val_images", "val_labels")
    )
    if not uint8:  # the lesson's train_images / 255.0, as the Keras systems get it (float32, as Keras casts)
        train_images, val_images = train_images.float() / 255.0, val_images.float() / 255.0
    torch.manual_seed(0)
    model = models.cifar_model_small(num_classes=info["classes"], input_shape=tuple(info["shape"]))
    if written_order:  # ReLU, then MaxPool2d, as listed: the same numbers, the ReLU on four times the values
        model.forward = types.MethodType(torch.nn.Sequential.forward, model)
    optimizer = optim.make_optimizer("adam", model.parameters())
    start, cpu_start = time.perf_counter(), cpu_seconds()
    history = fit(
        model,
        torch.nn.CrossEntropyLoss(),
        optimizer,
        train_images,
        train_labels,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_data=(val_images, val_labels),
        seed=0,
        verbose=0,
        device="cpu",
        precision=precision,
    )
    fit_seconds, fit_cpu_seconds = time.perf_counter() - start, cpu_seconds() - cpu_start
    # fit validates with batches of max(batch_size, 256); time that part again on its own
    start = time.perf_counter()
    evaluate(model, val_images, val_labels, batch_size=max(args.batch_size, 256), precision=precision, verbose=0)
    val_seconds = (time.perf_counter() - start) * args.epochs
    return {
        "fit_seconds": fit_seconds,
        "train_seconds": fit_seconds - val_seconds,
        "val_seconds": val_seconds,
        "val_accuracy": history.history["val_accuracy"][-1],
        "loss": history.history["loss"][-1],
        "fit_cpu_seconds": fit_cpu_seconds,
    }


def worker_probe(args, arrays, info) -> dict:
    """One --probes variant: fit's training pass with the chosen speed-ups, or evaluate at one batch size."""
    import torch

    from cnn_torch import evaluate, models
    from cnn_torch.keras_rules import optim
    from cnn_torch.platform.device import autocast, keep_freed_memory

    if args.threads:
        torch.set_num_threads(args.threads)
    train_images, train_labels, val_images, val_labels = (
        torch.from_numpy(arrays[name]) for name in ("train_images", "train_labels", "val_images", "val_labels")
    )
    torch.manual_seed(0)
    model = models.cifar_model_small(num_classes=info["classes"], input_shape=tuple(info["shape"]))
    if args.worker in VAL_PROBES:  # as fit validates: memory reused, channels-last batches (evaluate's as_float)
        keep_freed_memory()
        batch_size = VAL_PROBES[args.worker]
        probe_images, probe_labels = val_images[: 2 * batch_size], val_labels[: 2 * batch_size]
        evaluate(model, probe_images, probe_labels, batch_size=batch_size, verbose=0)  # warm-up
        start = time.perf_counter()
        evaluate(model, val_images, val_labels, batch_size=batch_size, verbose=0)
        return {"val_images_per_second": len(val_labels) / (time.perf_counter() - start)}

    reuse_memory, channels_last, adam_option, pooling_first = LOOP_PROBES[args.worker]
    forward = model if pooling_first else torch.nn.Sequential(*model)  # the layers one by one, as written
    if args.worker.endswith("-compiled"):
        forward = torch.compile(forward)
    precision = "bf16" if "-bf16" in args.worker else "fp32"
    if reuse_memory:
        keep_freed_memory()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    if adam_option is None:
        optimizer = optim.make_optimizer("adam", model.parameters())
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=0.001, eps=1e-7, **{adam_option: True})
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_pass(order: torch.Tensor) -> None:  # fit's training pass, without its checks and hooks
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.int64)
        for batch_indices in order.split(args.batch_size):
            images = train_images[batch_indices].to(torch.float32, memory_format=layout).div_(255.0)
            labels = train_labels[batch_indices]
            with autocast(torch.device("cpu"), precision):
                logits = forward(images).float()
            loss = loss_fn(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(labels)
            correct += (logits.argmax(dim=1) == labels).sum()
        loss_sum.item()

    order = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(0))
    train_pass(order[: 10 * args.batch_size])  # warm-up: oneDNN picks its kernels (torch.compile compiles)
    start = time.perf_counter()
    train_pass(order)
    return {"train_images_per_second": len(train_labels) / (time.perf_counter() - start)}


def worker_keras(args, arrays, info) -> dict:
    """The lesson's Keras code; KERAS_BACKEND is set by the parent."""
    import keras

    set_keras_threads(keras, args.threads)

    # The lesson: channels-last arrays scaled to [0, 1] (uint8 / 255.0 gives float64 in numpy)
    train_images = arrays["train_images"].transpose(0, 2, 3, 1) / 255.0
    val_images = arrays["val_images"].transpose(0, 2, 3, 1) / 255.0
    train_labels, val_labels = arrays["train_labels"], arrays["val_labels"]

    inputs = keras.Input(shape=train_images.shape[1:])
    x = keras.layers.Conv2D(50, (3, 3), activation="relu")(inputs)
    x = keras.layers.MaxPooling2D((2, 2))(x)
    x = keras.layers.Conv2D(50, (3, 3), activation="relu")(x)
    x = keras.layers.MaxPooling2D((2, 2))(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(50, activation="relu")(x)
    outputs = keras.layers.Dense(info["classes"])(x)
    model = keras.Model(inputs=inputs, outputs=outputs, name="cifar_model_small")
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )

    class ValidationTimer(keras.callbacks.Callback):
        seconds = 0.0

        def on_test_begin(self, logs=None):
            self.started = time.perf_counter()

        def on_test_end(self, logs=None):
            ValidationTimer.seconds += time.perf_counter() - self.started

    start, cpu_start = time.perf_counter(), cpu_seconds()
    history = model.fit(
        train_images,
        train_labels,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_data=(val_images, val_labels),
        verbose=0,
        callbacks=[ValidationTimer()],
    )
    fit_seconds, fit_cpu_seconds = time.perf_counter() - start, cpu_seconds() - cpu_start
    return {
        "fit_seconds": fit_seconds,
        "train_seconds": fit_seconds - ValidationTimer.seconds,
        "val_seconds": ValidationTimer.seconds,
        "val_accuracy": float(history.history["val_accuracy"][-1]),
        "loss": float(history.history["loss"][-1]),
        "fit_cpu_seconds": fit_cpu_seconds,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }


def densenet_batches(arrays, batch_size: int):
    """The lesson's float32 ``/ 255.0`` images, NCHW, in DENSENET_BATCHES + 1 batches (the first untimed)."""
    images = arrays["train_images"][: (DENSENET_BATCHES + 1) * batch_size]
    if len(images) < (DENSENET_BATCHES + 1) * batch_size:
        raise SystemExit(f"the DenseNet systems need {(DENSENET_BATCHES + 1) * batch_size} training images")
    return [images[i : i + batch_size].astype("float32") / 255.0 for i in range(0, len(images), batch_size)]


def worker_torch_densenet(args, arrays) -> dict:
    """``densenet121_transfer``'s frozen base as ``fit`` runs it (eval mode, no gradients), on the
    lesson's NCHW float arrays; ``-bf16``: under ``fit``'s bf16 autocast."""
    import torch

    from cnn_torch.keras_rules.transfer import DenseNet121Base
    from cnn_torch.platform.device import autocast, keep_freed_memory

    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()
    torch.manual_seed(0)
    base = DenseNet121Base(weights=None).eval().requires_grad_(False)
    precision = "bf16" if args.worker.endswith("bf16") else "fp32"
    seconds = []
    for batch in densenet_batches(arrays, args.batch_size):
        images = torch.from_numpy(batch)
        start = time.perf_counter()
        with torch.no_grad(), autocast(torch.device("cpu"), precision):
            base(images)
        seconds.append(time.perf_counter() - start)
    return {"base_images_per_second": DENSENET_BATCHES * args.batch_size / sum(seconds[1:])}


def worker_keras_densenet(args, arrays) -> dict:
    """The lesson's base: ``resize_with_pad`` to 160x160, then ``DenseNet121(include_top=False,
    pooling='max')``, frozen; ``predict_on_batch`` (a traced function after the first call)."""
    import keras
    import tensorflow as tf

    set_keras_threads(keras, args.threads)
    inputs = keras.Input(arrays["train_images"].shape[2:] + arrays["train_images"].shape[1:2])
    upscale = keras.layers.Lambda(lambda x: tf.image.resize_with_pad(x, 160, 160))(inputs)
    base_model = keras.applications.DenseNet121(include_top=False, pooling="max", weights=None,
                                                input_tensor=upscale, input_shape=(160, 160, 3))  # fmt: skip
    base_model.trainable = False
    model = keras.Model(inputs=inputs, outputs=base_model.output)
    seconds = []
    for batch in densenet_batches(arrays, args.batch_size):
        images = batch.transpose(0, 2, 3, 1)  # the lesson's arrays are channels-last
        start = time.perf_counter()
        model.predict_on_batch(images)
        seconds.append(time.perf_counter() - start)
    return {"base_images_per_second": DENSENET_BATCHES * args.batch_size / sum(seconds[1:]),
            "keras": keras.__version__}  # fmt: skip


def set_keras_threads(keras, threads: int | None) -> None:
    """--threads for a Keras system: its backend's thread pools, before its first operation."""
    if not threads:
        return
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    else:
        import torch

        torch.set_num_threads(threads)


def worker_dataloader(args, arrays, info) -> dict:
    """The loop most tutorials show: float tensors, DataLoader with per-sample collation."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from cnn_torch import models

    if args.threads:
        torch.set_num_threads(args.threads)
    train_set = TensorDataset(
        torch.from_numpy(arrays["train_images"]).float() / 255.0, torch.from_numpy(arrays["train_labels"])
    )
    val_set = TensorDataset(
        torch.from_numpy(arrays["val_images"]).float() / 255.0, torch.from_numpy(arrays["val_labels"])
    )
    torch.manual_seed(0)
    model = models.cifar_model_small(num_classes=info["classes"], input_shape=tuple(info["shape"]))
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=args.batch_size)
    start = time.perf_counter()
    val_seconds = 0.0
    for _ in range(args.epochs):
        model.train()
        running_loss = 0.0
        for images, labels in train_loader:
            optimizer.zero_grad()
            loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item() * len(labels)
        val_start = time.perf_counter()
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in val_loader:
                correct += (model(images).argmax(dim=1) == labels).sum().item()
        val_seconds += time.perf_counter() - val_start
    fit_seconds = time.perf_counter() - start
    return {
        "fit_seconds": fit_seconds,
        "train_seconds": fit_seconds - val_seconds,
        "val_seconds": val_seconds,
        "val_accuracy": correct / len(val_set),
        "loss": running_loss / len(train_set),
    }


def worker_startup(args) -> dict:
    """A second start: read the decoded images from the cache, build, and take one training step."""
    started = time.perf_counter()
    import torch
    import torch._dynamo  # noqa: F401  (the first torch.optim optimizer imports it, ~2 s: an import, timed as one)

    from cnn_torch import data, fit, models
    from cnn_torch.keras_rules import optim

    if args.threads:
        torch.set_num_threads(args.threads)
    imported = time.perf_counter()
    lesson = data.load_data(data.resolve_dataset(args.dataset, args.data_dir), args.data_dir, limit=args.limit)
    model = models.cifar_model_small(num_classes=lesson.num_classes, input_shape=tuple(lesson.train_images.shape[1:]))
    optimizer = optim.make_optimizer("adam", model.parameters())
    first = slice(0, args.batch_size)
    fit(
        model,
        torch.nn.CrossEntropyLoss(),
        optimizer,
        lesson.train_images[first],
        lesson.train_labels[first],
        epochs=1,
        batch_size=args.batch_size,
        verbose=0,
        seed=0,
        device="cpu",
    )
    return {"import_seconds": imported - started, "first_step_seconds": time.perf_counter() - imported}


def cpu_family_model() -> dict:
    """``cpu_family`` and ``cpu_model`` from /proc/cpuinfo (x86 Linux; empty elsewhere): one
    brand name ("AMD EPYC") covers CPU generations with different vector units."""
    names = {"cpu family": "cpu_family", "model": "cpu_model"}
    found = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in names:
                found.setdefault(names[key], value)  # the first processor's
    except OSError:
        pass
    return found


def cpu_isa() -> list[str]:
    """The vector and matrix instruction sets that decide torch's CPU kernels (AVX2, AVX-512, AMX, bf16)."""
    import torch

    wanted = ("avx2", "avx512_f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_fp16")
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        found = capabilities()
        return [flag for flag in wanted if found.get(flag)]
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return [flag for flag in wanted if flag.replace("avx512_f", "avx512f") in flags]



if __name__ == "__main__":
    sys.exit(main())
