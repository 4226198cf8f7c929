"""Train a lesson CNN like the Carpentries lesson's Keras code, in PyTorch.

    python scripts/train.py                                   # CIFAR-10, cifar_model_small, 10 epochs
    python scripts/train.py --dataset shapes --epochs 2       # the built-in offline data
    python scripts/train.py --data-dir path/to/images         # path/to/images/train/<class>/<image>

The steps below are the lesson's: load the data, build the model, compile (loss and
optimizer), fit, plot the history. The loop itself is ``cnn_torch.training.fit``.
"""

from __future__ import annotations

import argparse
import sys

import torch

from cnn_torch import fit
from cnn_torch.checkpoints import model_from_checkpoint
from cnn_torch.cli import flags as cli
from cnn_torch.cli import runs
from cnn_torch.keras_rules.optim import make_optimizer
from cnn_torch.keras_rules.regularizers import L2Regularized
from cnn_torch.machinery.interrupt import TrainingInterrupted
from cnn_torch.models import build_model
from cnn_torch.platform import distributed, process
from cnn_torch.training import NonFiniteLoss


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_model_flags(parser)
    cli.add_data_flags(parser)
    cli.add_fit_flags(parser)
    cli.add_device_flags(parser)
    cli.add_output_flags(parser)
    cli.add_early_stopping_flags(parser)
    cli.add_tensorboard_flag(parser)
    cli.add_debug_flags(parser)
    args = cli.parse_with_given(parser, argv)  # args.given: what --resume must not silently drop
    if args.epochs is None and args.resume is None:
        args.epochs = 10
    cli.apply_model_defaults(args)  # the transfer model: early stopping on val_accuracy, patience 5
    return args


def main(argv=None) -> int:
    exit_code = cli.run_main(train, parse_args(argv))
    if exit_code == 0:
        distributed.close()  # [torchrun] leave the process group; after a failure torchrun stops the others
    return exit_code


def train(args: argparse.Namespace) -> int:
    resumed = runs.load_resume(args) if args.resume else None  # flags and state of the run to continue
    cli.check_flags(args)
    rank, device, seed = process.start(args.device, args.seed, args.deterministic)  # [torchrun] a device per rank

    # 1. the data: uint8 NCHW images, int64 labels; validation on the test split, as the lesson does
    lesson, validation_data, validation_split, notice = cli.load_run_data(args, seed, rank)

    # 2. the model (Keras: keras.Model(inputs, outputs)); a resumed run rebuilds its own, weights and all
    model = model_from_checkpoint(resumed) if resumed else build_model(
        args.model, num_classes=lesson.num_classes, input_shape=(3, *lesson.image_size),
        **cli.layer_options(args, seed),
    )

    # 3. compile: the loss and the optimizer
    loss_fn = torch.nn.CrossEntropyLoss()  # Keras: SparseCategoricalCrossentropy(from_logits=True)
    if args.l2:  # Keras: kernel_regularizer=L2(l2) on every Conv2D and Dense; the penalty joins the loss
        loss_fn = L2Regularized(loss_fn, model, args.l2)
    optimizer = make_optimizer(args.optimizer, model.parameters(), args.learning_rate)  # Keras: optimizer='adam'

    # 4. fit, in a run directory that keeps the history and the checkpoints after every epoch
    run = runs.open_run(args, seed, device, rank, lesson, validation_split, notice, model, optimizer, resumed)
    status = "finished"
    try:
        fit(
            model,
            loss_fn,
            optimizer,
            lesson.train_images,
            lesson.train_labels,
            epochs=args.epochs,
            batch_size=args.batch_size,
            validation_data=validation_data,
            validation_split=validation_split or 0.0,
            seed=seed,
            verbose=0 if args.quiet else "auto",
            device=device,
            precision=args.precision,
            initial_epoch=run.initial_epoch,
            history=run.history,
            early_stopping=run.early_stopping,
            on_epoch_end=run.recorder,
            trace=args.trace,
            break_at=cli.parse_break_at(args.break_at),
        )
    except TrainingInterrupted:
        status = "interrupted"
    except NonFiniteLoss as error:
        status = "nan"
        runs.report_nan(run, error)  # nan_batch.json and the one error line

    # 5. save and plot what there is: the history of every finished epoch survives
    return runs.close_run(run, status, args)


if __name__ == "__main__":
    sys.exit(main())
