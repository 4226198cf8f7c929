"""Train a lesson CNN like the Carpentries lesson's Keras code, in PyTorch.

    python scripts/train.py                                   # CIFAR-10, cifar_model_small, 10 epochs
    python scripts/train.py --dataset shapes --epochs 2       # the built-in offline data
    python scripts/train.py --data-dir path/to/images         # path/to/images/train/<class>/<image>

The steps below are the lesson's: load the data, build the model, compile (loss and
optimizer), fit, plot the history. The loop itself is ``cnn_torch.training.fit``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

import torch  # noqa: E402

from cnn_torch import data, distributed, fit, runs  # noqa: E402
from cnn_torch.checkpoints import load_weights, restore_rng_state, save_checkpoint  # noqa: E402
from cnn_torch.errors import UserError  # noqa: E402
from cnn_torch.history import History  # noqa: E402
from cnn_torch.interrupt import TrainingInterrupted  # noqa: E402
from cnn_torch.models import MODELS, build_model  # noqa: E402
from cnn_torch.stopping import EarlyStopping  # noqa: E402
from cnn_torch.training import NonFiniteLoss  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="cifar_model_small", choices=list(MODELS),
        help="the lesson's architecture (default: cifar_model_small)",
    )
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
    parser.add_argument("--epochs", type=int, default=10, help="passes over the training images (default: 10)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per training step (default: 32)")
    parser.add_argument(
        "--optimizer", choices=list(runs.KERAS_LEARNING_RATES), default="adam", help="default: adam, as the lesson"
    )
    parser.add_argument(
        "--learning-rate", type=float, default=None,
        help="default: Keras's for the optimizer (adam 0.001, sgd 0.01, rmsprop 0.001)",
    )
    parser.add_argument(
        "--validation-split", type=float, default=None, metavar="FRACTION",
        help="hold out the LAST fraction of the training images, as Keras does"
        " (default: validate on the test split; 0.2 when there is none)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N",
        help="train on a class-balanced random subset of N images (default: all; shapes: how many to make)",
    )
    parser.add_argument("--seed", type=int, default=None, help="default: a random seed, recorded in run.json")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda", "mps"], default="auto", help="default: auto (CUDA, MPS, CPU)"
    )
    parser.add_argument(
        "--precision", choices=["fp32", "bf16"], default="fp32",
        help="bf16: autocast, faster on GPUs and CPUs with native bf16 (default: fp32)",
    )
    parser.add_argument(
        "--out", default=None, metavar="RUN_DIR", help="run directory (default: runs/<model>-<timestamp>)"
    )
    parser.add_argument("--fig-dir", default=None, metavar="DIR", help="where the plots go (default: RUN_DIR/fig)")
    parser.add_argument(
        "--monitor", default="val_loss", metavar="METRIC",
        help="metric for best.pt and early stopping: val_loss, val_accuracy, loss or accuracy (default: val_loss)",
    )
    parser.add_argument(
        "--patience", type=int, default=None, metavar="EPOCHS",
        help="stop after this many epochs without improvement (default: no early stopping)",
    )
    parser.add_argument(
        "--min-delta", type=float, default=0.0,
        help="early stopping: smallest change that counts as an improvement (default: 0)",
    )
    parser.add_argument(
        "--restore-best-weights", action="store_true", help="early stopping: end with the best epoch's weights"
    )
    parser.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run from its last.pt up to --epochs")
    parser.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms(True)")
    parser.add_argument("--trace", action="store_true", help="narrate every step of the first batch")
    parser.add_argument(
        "--break-at", default=None, metavar="EPOCH:BATCH", help="breakpoint() after that batch's forward pass (1-based)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output (verbose=0)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        exit_code = train(args)
    except UserError as error:
        print(f"{distributed.error_prefix()}: {error}", file=sys.stderr)  # under torchrun: "error (rank N)"
        return 2
    except KeyboardInterrupt:  # Ctrl-C before training started, or a second Ctrl-C: stop at once
        print("\ninterrupted: stopped at once; the files of every finished epoch are kept", file=sys.stderr)
        return 130
    if exit_code == 0:
        distributed.close()  # [torchrun] leave the process group; after a failure torchrun stops the others
    return exit_code


def train(args: argparse.Namespace) -> int:
    resumed = runs.load_resume(args) if args.resume else None  # flags and state of the run to continue
    runs.check_flags(args)
    rank, device = runs.setup_process(args.device)  # one device per torchrun rank; rank 0 in one process
    seed = runs.choose_seed(args.seed)
    runs.seed_everything(seed, deterministic=args.deterministic)

    # 1. the data: uint8 NCHW images, int64 labels, class names
    with distributed.local_main_process_first():  # [torchrun] one download per machine, not a race
        lesson_data, notice = data.load_data_or_shapes(args.dataset, args.data_dir, limit=args.limit, seed=seed)
    if notice is not None:
        args.dataset = "shapes"  # recorded in run.json, so --resume and evaluate.py use the same data
        if rank == 0:
            print(f"notice: {notice}")
    train_images, train_labels = lesson_data.train_images, lesson_data.train_labels
    # Keras: validation_data = the test split, as the lesson does; else --validation-split (default 0.2)
    validation_data, validation_split = None, args.validation_split
    if validation_split is None and lesson_data.test_images is not None:
        validation_data = (lesson_data.test_images, lesson_data.test_labels)
    elif validation_split is None:
        validation_split = 0.2
    data_record = runs.describe_data(lesson_data, validation_split, args.batch_size, notice)
    runs.check_break_at(args.break_at, args.epochs, data_record["steps_per_epoch"])

    # 2. the model (Keras: keras.Model(inputs, outputs)); 3. compile: loss and optimizer
    input_shape = (3, *train_images.shape[2:])
    model = build_model(args.model, num_classes=len(lesson_data.class_names), input_shape=input_shape)
    loss_fn = torch.nn.CrossEntropyLoss()  # Keras: SparseCategoricalCrossentropy(from_logits=True)
    optimizer = runs.make_optimizer(args.optimizer, model.parameters(), args.learning_rate)
    history, initial_epoch = History(), 0
    if resumed is not None:
        load_weights(model, resumed)
        optimizer.load_state_dict(resumed["optimizer"]["state_dict"])
        history, initial_epoch = History.from_dict(resumed["history"]), resumed["epoch"]
        restore_rng_state(resumed["rng"])

    run_dir = Path(args.resume) if args.resume else runs.new_run_dir(args.out, args.model)
    run_name = runs.safe_name(run_dir.name)
    record = runs.start_record(vars(args), seed, device, data_record)
    recorder = runs.RunRecorder(run_dir, model, optimizer, history, lesson_data.class_names, seed, args.monitor)
    early_stopping = None
    if args.patience is not None:
        early_stopping = EarlyStopping(args.monitor, args.patience, args.min_delta, args.restore_best_weights)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        runs.write_run_record(run_dir, record)
        if not args.quiet:
            runs.print_run_start(record, model, optimizer, run_dir)

    # 4. fit: the loop is cnn_torch/training.py
    status, exit_code = "finished", 0
    try:
        fit(
            model,
            loss_fn,
            optimizer,
            train_images,
            train_labels,
            epochs=args.epochs,
            batch_size=args.batch_size,
            validation_data=validation_data,
            validation_split=validation_split or 0.0,
            seed=seed,
            verbose=0 if args.quiet else "auto",
            device=device,
            precision=args.precision,
            initial_epoch=initial_epoch,
            history=history,
            early_stopping=early_stopping,
            on_epoch_end=recorder,
            trace=args.trace,
            break_at=runs.parse_break_at(args.break_at),
        )
    except TrainingInterrupted:
        status, exit_code = "interrupted", 130
    except NonFiniteLoss as error:
        status, exit_code = "nan", 1
        if rank == 0:
            runs.write_nan_report(run_dir, error)
        print(f"{distributed.error_prefix()}: {error}", file=sys.stderr)
    if rank != 0:
        return exit_code

    # 5. save and plot what there is: the history of every finished epoch survives
    record.update(ended=dt.datetime.now().isoformat(timespec="seconds"), status=status, epochs_done=len(history.epoch))
    runs.write_run_record(run_dir, record)
    if status == "finished":
        save_checkpoint(run_dir / "model.pt", recorder.checkpoint(len(history.epoch) and history.epoch[-1] + 1))
    from cnn_torch.plots import plot_history  # here: matplotlib takes a while, and a bad flag should not wait

    fig_dir = Path(args.fig_dir) if args.fig_dir is not None else run_dir / "fig"
    title = f"{args.model} on {data_record['name']}"
    figures = plot_history(history, fig_dir, run_name, title=title) if history.epoch else []
    runs.print_summary(run_dir, figures, history, status, data_record)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
