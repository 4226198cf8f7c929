"""A training run's directory: what the CLI writes after every epoch, and how it resumes.

``runs/<model>-<timestamp>/`` holds ``history.csv`` and ``history.json`` (rewritten
atomically after every epoch), ``last.pt`` (resumable: optimizer and RNG states),
``best.pt`` (the best epoch so far, Keras ``ModelCheckpoint(save_best_only=True)``),
``model.pt`` (the final weights) and ``run.json`` (how the run was made).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from pathlib import Path

import torch

from cnn_torch import distributed
from cnn_torch.checkpoints import make_checkpoint, save_checkpoint, versions
from cnn_torch.errors import UserError
from cnn_torch.fileio import write_json
from cnn_torch.history import History, save_history
from cnn_torch.optim import KerasRMSprop
from cnn_torch.progress import wrap_parts
from cnn_torch.stopping import Improvement

# Keras's default learning rate for each optimizer (torch's defaults differ for RMSprop).
KERAS_LEARNING_RATES = {"adam": 0.001, "sgd": 0.01, "rmsprop": 0.001}


def make_optimizer(name: str, parameters, learning_rate: float | None = None) -> torch.optim.Optimizer:
    """``compile(optimizer='adam')`` etc., with Keras's defaults."""
    if name not in KERAS_LEARNING_RATES:
        raise UserError(f"unknown optimizer {name!r}: choose one of {', '.join(KERAS_LEARNING_RATES)}")
    lr = KERAS_LEARNING_RATES[name] if learning_rate is None else learning_rate
    if lr <= 0:
        raise UserError(f"--learning-rate must be positive, got {lr}: try 0.001")
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, eps=1e-7)  # Keras's epsilon; see docs for the rest
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr)
    return KerasRMSprop(parameters, learning_rate=lr)  # torch's RMSprop puts epsilon elsewhere


def safe_name(text: str) -> str:
    """A file-name-safe version of user text: it can never hold a path separator or '..'."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
    name = re.sub(r"\.{2,}", ".", name).strip("._")  # "a..b" -> "a.b": no '..' anywhere
    return name or "run"


def new_run_dir(out: str | os.PathLike | None, model_name: str) -> Path:
    """``--out`` if given, else ``runs/<model>-<timestamp>``."""
    if out is not None:
        return Path(out)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{safe_name(model_name)}-{stamp}"


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def write_run_record(run_dir: Path, record: dict) -> None:
    write_json(run_dir / "run.json", record)


def start_record(flags: dict, seed: int, device: torch.device, data: dict | None = None) -> dict:
    return {
        "seed": seed,
        "data": data,
        "device": str(device),
        "dtype": "bfloat16 autocast" if flags.get("precision") == "bf16" else "float32",
        "versions": versions(),
        "git_commit": git_commit(),
        "flags": flags,
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "ended": None,
        "status": "running",
    }


class RunRecorder:
    """The CLI's ``on_epoch_end`` hook: after every epoch write the history, ``last.pt``
    and, on strict improvement of ``monitor``, ``best.pt``. Nothing else."""

    def __init__(self, run_dir: Path, model, optimizer, history: History, class_names, seed, monitor="val_loss"):
        self.run_dir, self.model, self.optimizer = run_dir, model, optimizer
        self.history, self.class_names, self.seed = history, class_names, seed
        self.best = Improvement(monitor)
        for epoch in history.epoch:  # a resumed run picks up the best value so far
            logs = {key: values[epoch - history.epoch[0]] for key, values in history.history.items()}
            if monitor in logs:
                self.best.update(epoch, logs)

    def checkpoint(self, epoch: int, resumable: bool = False) -> dict:
        return make_checkpoint(
            self.model, class_names=self.class_names, epoch=epoch, history=self.history,
            optimizer=self.optimizer, seed=self.seed, resumable=resumable,
        )

    def __call__(self, epoch: int, logs: dict[str, float]) -> None:
        save_history(self.history, self.run_dir)
        save_checkpoint(self.run_dir / "last.pt", self.checkpoint(epoch + 1, resumable=True))
        if self.best.monitor in logs and self.best.update(epoch, logs):
            save_checkpoint(self.run_dir / "best.pt", self.checkpoint(epoch + 1))


# --- the CLI's set-up steps -------------------------------------------------------------

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
    if args.validation_split is not None and not 0 < args.validation_split < 1:
        raise UserError(
            f"--validation-split must be between 0 and 1 (exclusive), got {args.validation_split}: try 0.2"
        )
    if args.limit is not None and args.limit <= 0:
        raise UserError(f"--limit must be a positive integer, got {args.limit}: try --limit 2000")
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


def choose_seed(seed: int | None) -> int:
    """A given seed, or a fresh random one (recorded in run.json so the run can be repeated).
    Under torchrun every rank must use rank 0's seed."""
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little") % 2**31
    return distributed.from_rank_0(seed)  # [torchrun] a CPU-tensor broadcast would fail under NCCL


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed torch (CPU and CUDA), numpy and Python; optionally deterministic algorithms."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def setup_process(device_name: str) -> tuple[int, torch.device]:
    """One process: (0, the chosen device). Under torchrun: join the process group
    (NCCL on CUDA, gloo on the CPU) and take the GPU of this local rank."""
    from cnn_torch.device import resolve_device

    device = resolve_device(device_name)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, device
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type not in ("cuda", "cpu"):
        raise UserError(f"torchrun runs on CUDA GPUs or CPUs, not {device.type}: pass --device cuda or --device cpu")
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(
                f"local rank {local_rank} has no GPU (this machine has {torch.cuda.device_count()}):"
                " pass --nproc-per-node no larger than the number of GPUs"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # device_id binds NCCL to this rank's GPU (barriers and object broadcasts then use it)
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            device_id=device if device.type == "cuda" else None,
        )
    return dist.get_rank(), device


def load_resume(args) -> dict:
    """Read RUN_DIR/last.pt and put the run's own flags back into ``args`` (all but --epochs)."""
    import json

    from cnn_torch.checkpoints import load_checkpoint

    run_dir = Path(args.resume)
    if not (run_dir / "last.pt").is_file():
        raise UserError(f"{run_dir} has no last.pt to resume from: pass the directory of a run that finished an epoch")
    checkpoint = load_checkpoint(run_dir / "last.pt")
    if "optimizer" not in checkpoint or "rng" not in checkpoint:
        raise UserError(f"{run_dir / 'last.pt'} is not resumable (no optimizer state): start a new run")
    record_path = run_dir / "run.json"
    try:
        flags = json.loads(record_path.read_text())["flags"] if record_path.is_file() else {}
    except (ValueError, KeyError, TypeError):
        raise UserError(
            f"{record_path} is not a readable run record: delete it and pass the run's flags"
            " (--dataset, --batch-size, ...) again with --resume"
        ) from None
    for name in RUN_FLAGS:
        if name in flags:
            setattr(args, name, flags[name])
    args.seed = checkpoint["seed"]
    args.model = checkpoint["model_name"]  # the checkpoint knows what it holds, with or without run.json
    if checkpoint["epoch"] >= args.epochs:
        raise UserError(
            f"{run_dir} already finished {checkpoint['epoch']} epochs: pass --epochs larger than that to continue"
        )
    return checkpoint


def write_nan_report(run_dir: Path, error) -> Path:
    """Keep the evidence of a NaN/inf loss: which epoch, which batch, which samples."""
    path = run_dir / "nan_batch.json"
    write_json(path, {"epoch": error.epoch + 1, "batch": error.step + 1, "indices": error.batch_indices})
    return path


def describe_data(lesson, validation_split: float | None, batch_size: int, notice: str | None) -> dict:
    """What the run trains and validates on, for run.json and the start-of-run lines."""
    import math

    total = len(lesson.train_labels)
    if validation_split:  # Keras's validation_split: the last fraction of the samples
        train_count = math.floor(total * (1 - validation_split))
        val_count, validation = total - train_count, f"the last {validation_split:g} of the training images"
    else:
        train_count, val_count, validation = total, len(lesson.test_labels), "the test split"
    if lesson.source.startswith("folder:"):
        name = Path(lesson.source.removeprefix("folder:")).name
    else:
        name = {"cifar10": "CIFAR-10", "shapes": "shapes"}.get(lesson.source, lesson.source)
    return {
        "name": name,
        "source": lesson.source,
        "notice": notice,  # set when the built-in shapes stood in for CIFAR-10
        "classes": lesson.num_classes,
        "image_size": list(lesson.image_size),
        "train_images": train_count,
        "val_images": val_count,
        "validation": validation,
        "steps_per_epoch": math.ceil(train_count / batch_size),
    }


def print_run_start(record: dict, model, optimizer: torch.optim.Optimizer, run_dir: Path) -> None:
    """What the run uses, in a few lines (the size of Keras's ``model.summary()`` footer)."""
    from cnn_torch.models import count_params

    data, flags = record["data"], record["flags"]
    height, width = data["image_size"]
    learning_rate = optimizer.param_groups[0]["lr"]
    print(f"Data:       {data['name']}: {data['train_images']:,} training images, {data['classes']} classes,"
          f" {height}x{width}")
    print(f"Validation: {data['val_images']:,} images ({data['validation']})")
    print(f"Model:      {flags['model']}, {count_params(model):,} parameters")
    print(f"Optimizer:  {type(optimizer).__name__}, learning rate {learning_rate:g}; loss: CrossEntropyLoss")
    print(f"Batches:    {flags['batch_size']} images, {data['steps_per_epoch']:,} steps per epoch,"
          f" {flags['epochs']} epochs")
    print(f"Device:     {record['device']}, {flags['precision']}, seed {record['seed']}")
    print(f"Run:        {run_dir}", flush=True)


def print_summary(run_dir: Path, figures: list[Path], history: History, status: str, data: dict | None = None) -> None:
    if status == "interrupted" and history.epoch:
        print(f"Interrupted: the {len(history.epoch)} finished epoch(s) are saved in {run_dir}.")
        print(f"Resume with: python scripts/train.py --resume {run_dir} --epochs {history.params.get('epochs', '')}")
    elif status == "interrupted":
        print("Interrupted during the first epoch: no epoch finished, so there is nothing to resume.")
    if status == "nan":
        print(f"Stopped on a NaN/inf loss; the offending batch is in {run_dir / 'nan_batch.json'}.")
    if history.epoch:
        last = [f"{key}: {values[-1]:.4f}" for key, values in sorted(history.history.items())]
        print(wrap_parts([f"Last epoch ({history.epoch[-1] + 1})", *last], shutil.get_terminal_size().columns))
    if data is not None:
        fallback = " (built in: CIFAR-10 could not be downloaded)" if data.get("notice") else ""
        print(f"Data:        {data['name']}{fallback}, {data['train_images']:,} training images,"
              f" {data['val_images']:,} validated ({data['validation']})")
    if history.epoch:  # written after each finished epoch, so absent when none finished
        print(f"History:     {run_dir / 'history.csv'} and history.json")
    for name in ("model.pt", "best.pt", "last.pt"):
        if (run_dir / name).exists():
            print(f"Checkpoint:  {run_dir / name}")
    for figure in figures:
        print(f"Figure:      {figure}")
