"""``fit``: what Keras's ``model.fit`` does, written out as one PyTorch loop.

Read it top to bottom: set-up and checks, then for every epoch a training pass over
shuffled batches (forward, loss, zero_grad, backward, step, running metrics), a
validation pass in eval mode, and one History entry. Each step's comment names the
Keras behaviour it reproduces. ``docs/keras-to-pytorch.md`` maps it line by line.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from cnn_torch import distributed
from cnn_torch.checks import (
    check_fit_arguments,
    check_images,
    check_label_range,
    check_labels,
    check_model_outputs,
    check_validation_data,
)
from cnn_torch.data import split_validation
from cnn_torch.device import as_float, autocast, keep_freed_memory, resolve_device
from cnn_torch.errors import UserError
from cnn_torch.evaluation import count_correct, evaluate
from cnn_torch.history import History
from cnn_torch.interrupt import TrainingInterrupted, stop_on_sigint
from cnn_torch.progress import EpochProgress, resolve_verbose
from cnn_torch.stopping import EarlyStopping
from cnn_torch.trace import Tracer

# The loss and accuracy are read back from the device every few steps, not every
# step: each read is a CPU-GPU sync point that would stall the GPU's queue of work.
SYNC_EVERY = 10


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite (Keras: ``TerminateOnNaN``). The History of the
    finished epochs and the offending batch's indices travel with the exception."""

    def __init__(self, epoch: int, step: int, batch_indices: list[int], history: History):
        super().__init__(
            f"the loss became NaN/inf at epoch {epoch + 1}, batch {step + 1}:"
            " lower the learning rate (e.g. --learning-rate 1e-4) or check the data"
        )
        self.epoch, self.step, self.batch_indices, self.history = epoch, step, batch_indices, history


def epoch_order(num_samples: int, shuffle: bool, seed: int, epoch: int) -> torch.Tensor:
    """The order of the training samples in one epoch.

    The permutation depends only on (seed, epoch): a resumed run and every torchrun rank
    draw exactly the same one, without any random-number state to carry around.
    """
    if not shuffle:
        return torch.arange(num_samples)
    generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)
    return torch.randperm(num_samples, generator=generator)


def fit(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_images,
    train_labels,
    *,
    epochs: int = 1,
    batch_size: int = 32,
    validation_data: tuple | None = None,
    validation_split: float = 0.0,
    validation_batch_size: int | None = None,
    shuffle: bool = True,
    seed: int | None = None,
    verbose: int | str = "auto",
    device: str | torch.device = "auto",
    precision: str = "fp32",
    initial_epoch: int = 0,
    history: History | None = None,
    early_stopping: EarlyStopping | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    trace: bool = False,
    break_at: tuple[int, int] | None = None,
) -> History:
    """Train ``model`` like ``model.fit(train_images, train_labels, ...)`` and return a History.

    Images are NCHW: uint8 (scaled by 1/255 per batch, the lesson's ``/ 255.0``) or float
    (used as given). Labels are class indices (Keras: SparseCategoricalCrossentropy) or
    one-hot rows (Keras: CategoricalCrossentropy); ``CrossEntropyLoss`` takes both. ``epochs`` counts from 0 like Keras, so a resumed run passes
    ``initial_epoch`` and the History so far. ``on_epoch_end(epoch, logs)`` is the one
    hook (the CLI writes files there). ``break_at=(epoch, batch)``, both 1-based, calls
    ``breakpoint()`` after that batch's forward pass.
    """
    # --- check the inputs before the first step (each mistake gets a message naming the fix) ---
    check_fit_arguments(epochs, batch_size, validation_split)
    device = resolve_device(device)
    train_images = check_images(train_images, "train_images")
    train_labels = check_labels(train_labels, len(train_images), "train_labels")
    if validation_data is not None:  # Keras: validation_data overrides validation_split
        check_validation_data(validation_data)
        val_images = check_images(validation_data[0], "val_images", warn=False)  # one warning is enough
        val_labels = check_labels(validation_data[1], len(val_images), "val_labels")
    elif validation_split:  # Keras: the LAST fraction of the samples, taken before any shuffling
        train_images, train_labels, val_images, val_labels = split_validation(
            train_images, train_labels, validation_split
        )
    else:
        val_images = val_labels = None
    model.to(device)
    num_classes = check_model_outputs(model, as_float(train_images[:2].to(device)))
    check_label_range(train_labels, num_classes, "train_labels")  # on the CPU: CUDA's assert is opaque
    if val_labels is not None:
        check_label_range(val_labels, num_classes, "val_labels")

    # --- set up (Keras: the start of fit) ---
    # The whole data set (uint8 for image files: 150 MB for CIFAR-10) moves to the device
    # once; batches are then gathered there by index, with no per-batch copy or collation.
    train_images, train_labels = train_images.to(device), train_labels.to(device)
    if device.type == "cpu":
        keep_freed_memory()  # reuse freed activations instead of page-faulting every step (measured: +35%)
    if seed is None:  # drawn from torch's global RNG, so torch.manual_seed() fixes it
        seed = distributed.from_rank_0(int(torch.randint(2**31 - 1, ())))  # [torchrun] one seed for all
    num_samples = len(train_images)
    steps = math.ceil(num_samples / batch_size)  # Keras: the last partial batch is kept
    verbose = resolve_verbose(verbose)
    history = history if history is not None else History()
    history.params = {"verbose": verbose, "epochs": epochs, "steps": steps}
    training_model = distributed.wrap_model(model, device)  # [torchrun] DDP; else the model itself
    tracer = Tracer(enabled=trace)  # trace=True narrates the first batch, then falls silent

    with stop_on_sigint() as stop_requested:  # Ctrl-C: finish the batch, keep what is done
        for epoch in range(initial_epoch, epochs):
            # --- train ---
            model.train()  # Keras: training=True, so dropout is on
            # Keras: metrics are reset at the start of every epoch
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            seen = 0
            recent_losses = []
            progress = EpochProgress(verbose if distributed.is_main_process() else 0, epoch, epochs, steps)
            # Keras: shuffle=True draws one full permutation of the sample indices per epoch
            order = epoch_order(num_samples, shuffle, seed, epoch).to(device)
            for step, global_batch in enumerate(order.split(batch_size)):
                batch_indices = distributed.local_share(global_batch)  # [torchrun] this rank's share
                tracer.batch(epoch, step, steps, batch_indices)
                images = as_float(train_images[batch_indices])  # the lesson's / 255.0, per batch
                labels = train_labels[batch_indices]
                tracer.moved(images, labels)

                # forward: Keras's y_pred = model(x, training=True); loss on the logits
                with autocast(device, precision):
                    logits = training_model(images)
                loss = loss_fn(logits.float(), labels)
                if not len(labels):  # [torchrun] an empty share: a zero loss still joins DDP's all-reduce
                    loss = logits.sum() * 0.0
                tracer.forward(logits, loss)
                if break_at == (epoch + 1, step + 1):
                    breakpoint()  # --break-at: images, labels, logits and loss are in scope

                # backward and update: Keras's train_step
                optimizer.zero_grad()
                tracer.zero_grad()
                distributed.global_batch_loss(loss, len(labels), len(global_batch)).backward()
                tracer.backward(model)
                optimizer.step()
                tracer.step(model, optimizer)

                # Keras: the epoch's metrics come from each batch's pre-update, training-mode
                # predictions, as batch-size weighted running means
                loss_sum += loss.detach() * len(labels)
                correct += count_correct(logits, labels)
                seen += len(labels)
                recent_losses.append(loss.detach())
                if (step + 1) % SYNC_EVERY == 0 or step + 1 == steps or stop_requested[0]:
                    # Keras: TerminateOnNaN stops at the first batch whose loss is NaN or inf
                    finite = torch.isfinite(torch.stack(recent_losses)).tolist()
                    if not all(finite):
                        bad_step = step + 1 - len(recent_losses) + finite.index(False)
                        bad_batch = order[bad_step * batch_size : (bad_step + 1) * batch_size]
                        raise NonFiniteLoss(epoch, bad_step, bad_batch.tolist(), history)
                    recent_losses.clear()
                    progress.update(step + 1, {"loss": (loss_sum / seen).item(), "accuracy": (correct / seen).item()})
                if stop_requested[0]:
                    progress.close(None)
                    raise TrainingInterrupted(history, epoch)  # the partial epoch is not logged

            # Keras: the epoch's logs are the running means over all of its batches
            # [torchrun] the sums are added up across ranks first
            loss_sum, correct, seen = distributed.all_reduce_sums(loss_sum, correct, torch.tensor(seen, device=device))
            logs = {"loss": (loss_sum / seen).item(), "accuracy": (correct / seen).item()}

            # --- validate: Keras evaluates after the epoch, in eval mode, without gradients ---
            if val_images is not None:
                logs["val_loss"], logs["val_accuracy"] = evaluate(
                    model,
                    val_images,
                    val_labels,
                    # a larger batch gives the same weighted mean (up to rounding), much faster
                    batch_size=validation_batch_size or max(batch_size, 256),
                    loss_fn=loss_fn,
                    device=device,
                    precision=precision,
                )
            progress.close(logs)

            # --- end of epoch: Keras's History callback, then the user's hook, then EarlyStopping ---
            history.append(epoch, logs)
            if on_epoch_end is not None and distributed.is_main_process():
                on_epoch_end(epoch, logs)
            if early_stopping is not None and early_stopping.update(epoch, logs, model):
                break
            if stop_requested[0]:
                raise TrainingInterrupted(history, epoch + 1)

    if early_stopping is not None:
        early_stopping.finish(model)  # Keras: restore_best_weights acts at the end of training
    return history
