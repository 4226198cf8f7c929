"""A training run's directory: what the CLI writes after every epoch, and how it resumes.

``runs/<model>-<timestamp>/`` holds ``history.csv`` and ``history.json`` (rewritten
atomically after every epoch), ``last.pt`` (resumable: optimizer, RNG and early-stopping states),
``best.pt`` (the best epoch so far, Keras ``ModelCheckpoint(save_best_only=True)``),
``model.pt`` (the final weights) and ``run.json`` (how the run was made).

Runs never overwrite each other: a new directory is claimed with an exclusive ``mkdir``
(two runs started in the same second get ``...-103308`` and ``...-103308-2``), and while a
run trains it holds a lock on its directory, so a second process given the same ``--out``
or ``--resume`` stops with one line instead of writing over it. ``run.json`` records every
path absolute, so ``evaluate.py`` and ``--resume`` work from any folder.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from cnn_torch.checkpoints import make_checkpoint, save_checkpoint, versions
from cnn_torch.cli.flags import (
    PROCESS_FLAGS,
    RESUME_MAY_CHANGE,
    check_break_at,
    check_out_is_new,
    counted,
    early_stopping,
    runs_root,
    script_command,
    tensorboard,
)
from cnn_torch.errors import UserError
from cnn_torch.history import History, save_history
from cnn_torch.keras_rules.stopping import EarlyStopping, Improvement
from cnn_torch.machinery.progress import wrap_parts
from cnn_torch.machinery.terminal import fitted_path, say
from cnn_torch.platform import distributed
from cnn_torch.platform.fileio import write_json
from cnn_torch.sources.lesson_data import validation_cut


def safe_name(text: str) -> str:
    """A file-name-safe version of user text: it can never hold a path separator or '..'."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
    name = re.sub(r"\.{2,}", ".", name).strip("._")  # "a..b" -> "a.b": no '..' anywhere
    return name or "run"


def claim_run_dir(out: str | os.PathLike | None, name: str) -> Path:
    """``--out`` if given (made if missing), else a new ``<runs_root>/<name>-<timestamp>``.

    The new directory is claimed by ``mkdir`` itself, which fails when the directory exists:
    of two runs started in the same second, the second gets ``-2`` (then ``-3``...).
    """
    if out is not None:
        path = Path(out)
        path.mkdir(parents=True, exist_ok=True)
        return path
    base = runs_root() / f"{safe_name(name)}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    for number in itertools.count(1):
        path = base if number == 1 else base.with_name(f"{base.name}-{number}")
        try:
            path.mkdir(parents=True)  # exist_ok=False: the claim is atomic
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")


def lock_run_dir(run_dir: Path) -> int | None:
    """Hold an exclusive lock on ``run_dir`` while this process trains in it; the lock goes
    with the process (released even if it is killed). Returns the open descriptor that holds
    it. Another process that holds it: one line naming the fix. (No lock on Windows.)"""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    key = str(run_dir.resolve())
    if key in _LOCKS:  # this process holds it already (a script's main() called twice, in tests)
        return _LOCKS[key]
    descriptor = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise UserError(
            f"{run_dir} is in use by another training process: wait for it to end, or pass another --out"
        ) from None
    _LOCKS[key] = descriptor
    return descriptor


def unlock_run_dir(run_dir: Path) -> None:
    """Let go of :func:`lock_run_dir`'s lock (the run is over)."""
    descriptor = _LOCKS.pop(str(run_dir.resolve()), None)
    if descriptor is not None:
        os.close(descriptor)  # closing the descriptor releases the flock


_LOCKS: dict[str, int] = {}  # the run directories this process holds, by absolute path


def shown_path(path: Path) -> str:
    """A path as the learner can type it from here: relative below the current folder, else absolute."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) if path.is_absolute() else str(path)
    except ValueError:
        return str(path)


def recorded_flags(args, lesson=None) -> dict:
    """The run's flags for run.json: paths absolute, so the record works from any folder.
    A default CIFAR-10 run records where it read CIFAR-10 from (``data/`` in the folder it started in)."""
    flags = {name: value for name, value in vars(args).items() if name != "given"}
    for name in ("data_dir", "out", "fig_dir", "resume", "tensorboard"):
        if flags.get(name) is not None:
            flags[name] = str(Path(flags[name]).expanduser().resolve())
    if lesson is not None and lesson.source == "cifar10" and flags.get("data_dir") is None:
        flags["data_dir"] = str(Path("data").resolve())  # data.load_data's default folder for CIFAR-10
    return flags


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
    """The CLI's ``on_epoch_end`` hook: after every epoch write the history, ``last.pt`` (with
    the run's ``early_stopping`` state, if any), on strict improvement of ``monitor`` ``best.pt``,
    and with --tensorboard the TensorBoard logs (Keras's ``TensorBoard`` callback,
    :mod:`cnn_torch.keras_rules.tensorboard`). Nothing else."""

    def __init__(self, run_dir: Path, model, optimizer, history: History, class_names, seed, monitor="val_loss",
                 tensorboard=None, early_stopping: EarlyStopping | None = None):  # fmt: skip
        self.run_dir, self.model, self.optimizer = run_dir, model, optimizer
        self.history, self.class_names, self.seed = history, class_names, seed
        self.tensorboard, self.early_stopping = tensorboard, early_stopping
        self.best = Improvement(monitor)
        for epoch, logs in epoch_logs(history):  # a resumed run picks up the best value so far
            if monitor in logs:
                self.best.update(epoch, logs)

    def checkpoint(self, epoch: int, resumable: bool = False) -> dict:
        # fit calls this hook before EarlyStopping judges the epoch: last.pt holds its state up to the
        # epoch before, and the resume judges the last one again (resume_early_stopping)
        stopping = self.early_stopping.state_dict() if self.early_stopping is not None else None
        return make_checkpoint(
            self.model, class_names=self.class_names, epoch=epoch, history=self.history,
            optimizer=self.optimizer, seed=self.seed, resumable=resumable, early_stopping=stopping,
        )

    def __call__(self, epoch: int, logs: dict[str, float]) -> None:
        save_history(self.history, self.run_dir)
        save_checkpoint(self.run_dir / "last.pt", self.checkpoint(epoch + 1, resumable=True))
        if self.best.monitor in logs and self.best.update(epoch, logs):
            save_checkpoint(self.run_dir / "best.pt", self.checkpoint(epoch + 1))
        if self.tensorboard is not None:
            self.tensorboard(epoch, logs)


def epoch_logs(history: History):
    """``(epoch, logs)`` for every epoch of ``history``, as ``fit`` gave them to ``on_epoch_end``."""
    for row, epoch in enumerate(history.epoch):
        yield epoch, {key: values[row] for key, values in history.history.items()}


def resume_early_stopping(stopping: EarlyStopping, resumed: dict, history: History, model, run_dir: Path) -> None:
    """Put back the run's EarlyStopping: its state from last.pt, then the epochs that state has not
    judged (last.pt is written before the epoch is judged), judged now from the History with the
    weights they ended with (last.pt's, which ``model`` holds). A run that stopped early is over."""
    if "early_stopping" in resumed:
        stopping.load_state_dict(resumed["early_stopping"])
    else:  # a last.pt from before cnn-torch kept it: every epoch is judged again (best weights: the last's)
        stopping.load_state_dict(stopping.state_dict())
    for epoch, logs in epoch_logs(history):
        if stopping.last_epoch is None or epoch > stopping.last_epoch:
            stopping.update(epoch, logs, model)
    if stopping.stopped_epoch:  # the unbroken run stopped here: it would not train another epoch
        raise UserError(
            f"{run_dir} stopped early after epoch {stopping.stopped_epoch + 1} ({stopping.monitor} did not improve"
            f" for {counted(stopping.patience, 'epoch')}): there is nothing to resume; to train on, start a new run"
            " with a larger --patience"
        )


def read_run_flags(run_dir: Path) -> dict:
    """The flags a run was started with (its run.json), or {} for a checkpoint kept without one."""
    import json

    try:
        flags = json.loads((Path(run_dir) / "run.json").read_text()).get("flags", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return flags if isinstance(flags, dict) else {}


def load_resume(args) -> dict:
    """Read RUN_DIR/last.pt and put the run's own flags back into ``args``.

    A flag given again with another value is refused (one line), except ``--fig-dir`` and
    ``--data-dir``, where the given value wins and a note says so. Without ``--epochs`` the
    run goes on to the number of epochs it was started with.
    """
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
    # the checkpoint knows what it holds, with or without run.json
    flags = {**flags, "model": checkpoint["model_name"], "seed": checkpoint["seed"]}
    given = getattr(args, "given", set())
    run_flags = [name for name in vars(args) if name not in (*PROCESS_FLAGS, "given")]  # what the run is
    conflicts = [name for name in run_flags if name in given and name in flags and name not in RESUME_MAY_CHANGE
                 and not _same_flag(name, getattr(args, name), flags)]  # fmt: skip
    if conflicts:
        kept = ", ".join(f"{_flag(name)} {_shown(flags[name])}" for name in conflicts)
        raise UserError(
            f"--resume {run_dir} continues with the run's own settings ({kept}): leave out"
            f" {', '.join(_flag(name) for name in conflicts)}, or start a new run with them"
        )
    for name in run_flags:
        if name in RESUME_MAY_CHANGE and name in given:
            if flags.get(name) is not None and Path(getattr(args, name)).resolve() != Path(flags[name]).resolve():
                note = f"the {_flag(name)} given, {getattr(args, name)}, not the run's {flags[name]}"
                print(f"note: --resume uses {note}", file=sys.stderr)
            continue
        if name in flags:
            setattr(args, name, flags[name])
    planned = flags.get("epochs") or checkpoint["history"].get("params", {}).get("epochs")
    if args.epochs is None:
        args.epochs = planned or checkpoint["epoch"]
    if checkpoint["epoch"] >= args.epochs:
        raise UserError(
            f"{run_dir} already finished {counted(checkpoint['epoch'], 'epoch')}: pass --epochs larger than that"
            " to continue"
        )
    if "out" in given and Path(args.out).resolve() != run_dir.resolve():
        raise UserError(
            f"--resume {run_dir} continues in {run_dir} itself: leave out --out (to keep the original,"
            f" copy it first: cp -r {run_dir} NEW, then --resume NEW)"
        )
    return checkpoint


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _shown(value) -> str:
    return "(default)" if value is None else str(value)


def _same_flag(name: str, value, flags: dict) -> bool:
    """Whether a flag given with --resume says what the run's own does (a learning rate left at
    Keras's default is the same as that default written out)."""
    if name == "learning_rate":
        from cnn_torch.keras_rules.optim import KERAS_LEARNING_RATES

        default = KERAS_LEARNING_RATES.get(str(flags.get("optimizer", "adam")).lower())
        return (value if value is not None else default) == (flags[name] if flags[name] is not None else default)
    return value == flags[name]


@dataclass
class Run:
    """An open run directory: where it is, its run.json record, the ``on_epoch_end`` recorder,
    the History ``fit`` continues (empty for a new run) and the EarlyStopping it is given (if any)."""

    run_dir: Path
    record: dict
    recorder: RunRecorder
    history: History
    initial_epoch: int
    rank: int
    early_stopping: EarlyStopping | None = None


def open_run(args, seed: int, device, rank: int, lesson, validation_split, notice, model, optimizer,
             resumed: dict | None) -> Run:  # fmt: skip
    """Before fit: a resumed run's optimizer state, History and RNG states are put back;
    the run directory and run.json are written (rank 0) and the start-of-run lines printed."""
    from cnn_torch.checkpoints import restore_rng_state

    history, initial_epoch, stopping = History(), 0, early_stopping(args)
    if resumed is not None:  # the model was rebuilt from the checkpoint, weights included
        optimizer.load_state_dict(resumed["optimizer"]["state_dict"])
        history, initial_epoch = History.from_dict(resumed["history"]), resumed["epoch"]
        restore_rng_state(resumed["rng"])
        if stopping is not None:  # it goes on counting where the run left off
            resume_early_stopping(stopping, resumed, history, model, Path(args.resume))
    data = describe_data(lesson, validation_split, args.batch_size, notice, args.limit,
                         getattr(args, "jpeg_decoder", None) or "keras")  # fmt: skip
    check_break_at(args.break_at, args.epochs, data["steps_per_epoch"])
    run_dir = Path(args.resume) if args.resume else None
    if rank == 0:  # claim the directory: made by this process, locked while it trains
        run_dir = run_dir or claim_run_dir(args.out, args.model)
        lock_run_dir(run_dir)
        if not args.resume:  # checked again under the lock: another run may have finished in it meanwhile
            check_out_is_new(run_dir)
    run_dir = Path(distributed.from_rank_0(str(run_dir)))  # [torchrun] rank 0's directory on every rank
    record = start_record(recorded_flags(args, lesson), seed, device, data)
    iterations = initial_epoch * data["steps_per_epoch"]  # the optimizer steps a resumed run has taken
    recorder = RunRecorder(run_dir, model, optimizer, history, lesson.class_names, seed, args.monitor,
                           tensorboard(args, model, optimizer, iterations), stopping)  # fmt: skip
    if rank == 0:
        write_run_record(run_dir, record)
        if not args.quiet:
            print_run_start(record, model, optimizer, run_dir)
        if not args.resume:  # episode 02's imshow grid: what the model is about to learn from
            figure = write_train_images(lesson, args, run_dir, record["data"]["name"])
            if not args.quiet:
                print(fitted_path("Images:     ", shown_path(figure)), flush=True)
    return Run(run_dir, record, recorder, history, initial_epoch, rank, stopping)


def write_train_images(lesson, args, run_dir: Path, data_name: str) -> Path:
    """``<run>_train_images.png`` in the run's figure folder: 25 training images with their classes."""
    from cnn_torch.image_grids import pick, save_images, show_images

    chosen = pick(lesson.train_labels, 25, seed=0)
    height, width = lesson.image_size
    fig = show_images(lesson.train_images[chosen], lesson.train_labels[chosen], lesson.class_names,
                      title=f"{data_name}: training images ({height}x{width}) and their classes")  # fmt: skip
    fig_dir = Path(args.fig_dir) if args.fig_dir is not None else run_dir / "fig"
    return save_images(fig, fig_dir / f"{safe_name(run_dir.name)}_train_images.png")


def write_nan_report(run_dir: Path, error) -> Path:
    """Keep the evidence of a NaN/inf loss: which epoch, which batch, which samples."""
    path = run_dir / "nan_batch.json"
    write_json(path, {"epoch": error.epoch + 1, "batch": error.step + 1, "indices": error.batch_indices})
    return path


def report_nan(run: Run, error) -> None:
    """``nan_batch.json`` (rank 0), and the error's one line."""
    if run.rank == 0:
        write_nan_report(run.run_dir, error)
    print(f"{distributed.error_prefix()}: the loss became NaN/inf at epoch {error.epoch + 1}, batch {error.step + 1}:"
          " lower the learning rate (e.g. --learning-rate 1e-4) or check the data", file=sys.stderr)  # fmt: skip


EXIT_CODES = {"finished": 0, "nan": 1, "interrupted": 130}


def close_run(run: Run, status: str, args) -> int:
    """After fit (rank 0): run.json's end, model.pt when finished, the figures, the summary.
    Returns the exit code: 0 finished, 1 NaN/inf loss, 130 Ctrl-C."""
    if run.rank != 0:
        return EXIT_CODES[status]
    history, run_dir = run.history, run.run_dir
    run.record.update(ended=dt.datetime.now().isoformat(timespec="seconds"), status=status,
                      epochs_done=len(history.epoch))  # fmt: skip
    write_run_record(run_dir, run.record)
    # EarlyStopping(restore_best_weights=True) put an earlier epoch's weights back: model.pt says which
    restored = run.early_stopping.restored_epoch if run.early_stopping is not None else None
    if status == "finished":
        weights_epoch = restored + 1 if restored is not None else len(history.epoch) and history.epoch[-1] + 1
        save_checkpoint(run_dir / "model.pt", run.recorder.checkpoint(weights_epoch))
    if run.recorder.tensorboard is not None:
        run.recorder.tensorboard.close()
    unlock_run_dir(run_dir)  # every file of the run is written: another process may resume it now
    from cnn_torch.plots import plot_history  # here: matplotlib takes a while, and a bad flag should not wait

    fig_dir = Path(args.fig_dir) if args.fig_dir is not None else run_dir / "fig"
    title = f"{args.model} on {run.record['data']['name']}"
    figures = plot_history(history, fig_dir, safe_name(run_dir.name), title=title) if history.epoch else []
    print_summary(run_dir, figures, history, status, run.record["data"], restored if status == "finished" else None,
                  args.tensorboard)  # fmt: skip
    return EXIT_CODES[status]


def describe_data(lesson, validation_split: float | None, batch_size: int, notice: str | None,
                  limit: int | None = None, jpeg_decoder: str = "keras") -> dict:  # fmt: skip
    """What the run trains and validates on, for run.json and the start-of-run lines."""
    import math

    from cnn_torch.sources.image_files import jpeg_decoder_in_use

    total = len(lesson.train_labels)
    if validation_split:  # Keras's validation_split: the last fraction of the samples
        train_count = validation_cut(total, validation_split)
        val_count, validation = total - train_count, f"the last {validation_split:g} of the training images"
        if limit is not None:  # --limit counts the images before the cut: say where the rest went
            validation = f"the last {validation_split:g} of the {total:,} images --limit took"
    elif lesson.val_images is not None:  # the 2026 lesson: a val/ folder beside train/
        train_count, val_count = total, len(lesson.val_labels)
        validation = f"the val split: {lesson.split_sources.get('val', 'val/')}"
    else:  # the 2023 lesson validates on the test split
        train_count, val_count = total, len(lesson.test_labels)
        validation = "the test split" + (f": {lesson.split_sources['test']}" if "test" in lesson.split_sources else "")
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
        "splits": dict(lesson.split_sources),  # where train, val and test came from
        "test_images": None if lesson.test_labels is None else len(lesson.test_labels),
        "class_names": list(lesson.class_names),
        # each size that was resized to image_size, with its count: {"64x64": 120, ...}
        "resized_from": {f"{h}x{w}": count for (h, w), count in lesson.resized_from.items()},
        # how a folder's JPEG files were decoded: "keras" (TensorFlow's pixels) or "accurate" (PIL's);
        # the one that ran ("accurate" when simplejpeg is missing); None for arrays (CIFAR-10, shapes)
        "jpeg_decoder": jpeg_decoder_in_use(jpeg_decoder) if lesson.source.startswith("folder:") else None,
    }


def print_run_start(record: dict, model, optimizer: torch.optim.Optimizer, run_dir: Path) -> None:
    """What the run uses, in a few lines (the size of Keras's ``model.summary()`` footer)."""
    from cnn_torch.models import count_params, trainable_params

    data, flags = record["data"], record["flags"]
    height, width = data["image_size"]
    learning_rate = optimizer.param_groups[0]["lr"]
    indent = " " * 12  # a wrapped line continues under the values (at a terminal's width, or COLUMNS)
    say(f"Data:       {data['name']}: {data['train_images']:,} training images, {data['classes']} classes,"
        f" {width}x{height} pixels", indent=indent)
    if data.get("resized_from"):  # what image_dataset_from_directory(image_size=...) did silently
        sizes = sorted(data["resized_from"].items(), key=lambda item: -item[1])
        # run.json keeps height x width; shown as width x height, as every image tool shows a size
        shown = ", ".join("x".join(reversed(size.split("x"))) for size, _ in sizes[:4]) + (
            ", ..." if len(sizes) > 4 else "")  # fmt: skip
        splits = "all splits" if len(data.get("splits") or {}) != 1 else "the training images"
        say(f"Resized:    {counted(sum(data['resized_from'].values()), 'image')} of {splits} from {shown}"
            f" to {width}x{height} (width x height)", indent=indent)
    say(f"Validation: {data['val_images']:,} images ({data['validation']})", indent=indent)
    if data.get("test_images") and "val" in data.get("splits", {}):
        say(f"Test:       {data['test_images']:,} images kept for evaluate.py ({data['splits']['test']})",
            indent=indent)
    total, trainable = count_params(model), trainable_params(model)
    frozen = f" ({trainable:,} trainable)" if trainable != total else ""  # a frozen base, batch norm statistics
    say(f"Model:      {flags['model']}{model_holds(model)}, {total:,} parameters{frozen}", indent=indent)
    l2 = flags.get("l2")  # Keras's kernel_regularizer=L2(l2), added to the loss (regularizers.py)
    loss = "CrossEntropyLoss" + (f" + L2 {l2:g} * sum(kernel**2) of every Conv2D and Dense" if l2 else "")
    say(f"Optimizer:  {type(optimizer).__name__}, learning rate {learning_rate:g}; loss: {loss}", indent=indent)
    say(f"Batches:    {flags['batch_size']} images, {counted(data['steps_per_epoch'], 'step')} per epoch,"
        f" {counted(flags['epochs'], 'epoch')}", indent=indent)
    say(f"Device:     {record['device']}, {flags['precision']}, seed {record['seed']}", indent=indent)
    print(fitted_path("Run:        ", shown_path(run_dir)), flush=True)


def model_holds(model) -> str:
    """What the model holds beyond the lesson's plain architecture, from its ``model_kwargs``:
    ``" + batch normalisation, augmentation: flip, rotation=0.1"`` ("" for the plain model)."""
    kwargs = getattr(model, "model_kwargs", None) or {}
    parts = []
    if kwargs.get("batch_norm"):
        parts.append("batch normalisation")
    if kwargs.get("augment"):
        parts.append("augmentation: " + ", ".join(str(spec) for spec in kwargs["augment"]))
    if kwargs.get("dropout"):
        parts.append(f"dropout {kwargs['dropout']:g}")
    if kwargs.get("activation") not in (None, "relu"):
        parts.append(f"activation {kwargs['activation']}")
    return f" + {', '.join(parts)}" if parts else ""


def print_summary(run_dir: Path, figures: list[Path], history: History, status: str, data: dict | None = None,
                  restored_epoch: int | None = None, tensorboard: str | None = None) -> None:  # fmt: skip
    if status == "interrupted" and history.epoch:
        print(f"Interrupted: {counted(len(history.epoch), 'finished epoch')} kept in {run_dir}.")
        epochs = history.params.get("epochs", "")
        print(f"Resume with: {script_command('train.py')} --resume {run_dir} --epochs {epochs}")
    elif status == "interrupted":
        print("Interrupted during the first epoch: no epoch finished, so there is nothing to resume.")
    if status == "nan":
        print(f"Stopped on a NaN/inf loss; the offending batch is in {run_dir / 'nan_batch.json'}.")
    if history.epoch:
        last = [f"{key}: {values[-1]:.4f}" for key, values in sorted(history.history.items())]
        print(wrap_parts([f"Last epoch ({history.epoch[-1] + 1})", *last], shutil.get_terminal_size().columns))
    if restored_epoch is not None and restored_epoch in history.epoch:  # the weights model.pt holds
        row = history.epoch.index(restored_epoch)
        best = [f"{key}: {values[row]:.4f}" for key, values in sorted(history.history.items())]
        print(wrap_parts([f"Restored epoch ({restored_epoch + 1}), in model.pt", *best],
                         shutil.get_terminal_size().columns))  # fmt: skip
    if data is not None:
        fallback = " (built in: CIFAR-10 could not be downloaded)" if data.get("notice") else ""
        say(f"Data:        {data['name']}{fallback}, {data['train_images']:,} training images,"
            f" {data['val_images']:,} validated ({data['validation']})", indent=" " * 13)
    if history.epoch:  # written after each finished epoch, so absent when none finished
        print(fitted_path("History:     ", f"{run_dir / 'history.csv'} and history.json"))
    for name in ("model.pt", "best.pt", "last.pt"):
        if (run_dir / name).exists():
            print(fitted_path("Checkpoint:  ", str(run_dir / name)))
    for figure in figures:
        print(fitted_path("Figure:      ", str(figure)))
    if tensorboard is not None:
        print(f"TensorBoard: tensorboard --logdir {shown_path(Path(tensorboard))}")
