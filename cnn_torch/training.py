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

from cnn_torch.evaluation import count_correct, evaluate
from cnn_torch.history import History
from cnn_torch.keras_rules.stopping import EarlyStopping
from cnn_torch.machinery.checks import checked_arguments, checked_callbacks, checked_fit_data
from cnn_torch.machinery.progress import resolve_verbose
from cnn_torch.machinery.session import training_session
from cnn_torch.machinery.watch import EpochWatch, NonFiniteLoss
from cnn_torch.platform import distributed
from cnn_torch.platform.device import as_float, in_precision, resolve_device

__all__ = ["NonFiniteLoss", "epoch_order", "fit"]  # NonFiniteLoss: raised by fit (from watch.py)


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
    optimizer: torch.optim.Optimizer | str,
    train_images=None,
    train_labels=None,
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
    x=None,
    y=None,
    callbacks: list | None = None,
    validation_freq: int = 1,
) -> History:
    """Train ``model`` like ``model.fit(train_images, train_labels, ...)`` and return a History
    (also kept as ``model.history``, as Keras keeps it, for when Ctrl-C stops ``fit``).

    Images are NCHW: uint8 (scaled by 1/255 per batch, the lesson's ``/ 255.0``) or float
    (used as given). Labels are class indices (Keras: SparseCategoricalCrossentropy) or
    one-hot rows (Keras: CategoricalCrossentropy); ``CrossEntropyLoss`` takes both.
    ``epochs`` counts from 0 like Keras, so a resumed run passes ``initial_epoch`` and the
    History so far. ``on_epoch_end(epoch, logs)`` is the one
    hook (the CLI writes files there). ``break_at=(epoch, batch)``, both 1-based, opens the
    debugger after that batch's loss, on the line ``optimizer.zero_grad()``.

    Keras's spellings work too: ``x=`` and ``y=`` for the images and labels, a split of
    ``prepare_datasets`` for them (``fit(model, loss_fn, 'adam', train_ds, validation_data=val_ds)``),
    and ``callbacks=[...]`` holding EarlyStopping, TensorBoard, LivePlot or functions of (epoch, logs).
    """
    # --- check the inputs before the first step (each mistake gets a message naming the fix) ---
    # Keras: compile(optimizer='adam') takes an optimizer by name, and NumPy integers are integers
    loss_fn, optimizer, epochs, batch_size = checked_arguments(model, loss_fn, optimizer, epochs, batch_size)
    # Keras: callbacks=[EarlyStopping(...), TensorBoard(...), ...] (here: early_stopping, then on_epoch_end)
    early_stopping, on_epoch_end = checked_callbacks(callbacks, early_stopping, on_epoch_end)
    device = resolve_device(device)
    model.to(device)
    # Keras: validation_data overrides validation_split, which holds out the LAST fraction
    # of the samples, taken before any shuffling. Keras: fit(x=..., y=...), or fit(x=train_ds, validation_data=val_ds)
    train_images, train_labels, val_images, val_labels = checked_fit_data(model, device, epochs, batch_size,
        train_images, train_labels, validation_data, validation_split, precision, x, y, validation_freq)  # fmt: skip

    # --- set up (Keras: the start of fit) ---
    # The whole data set (uint8 for image files: 150 MB for CIFAR-10) moves to the device
    # once; batches are then gathered there by index, with no per-batch copy or collation.
    train_images, train_labels = train_images.to(device), train_labels.to(device)
    # no seed given: one drawn from torch's global RNG, so torch.manual_seed() fixes it ([torchrun] rank 0's)
    seed = distributed.from_rank_0(int(torch.randint(2**31 - 1, ()))) if seed is None else seed
    steps = math.ceil(len(train_images) / batch_size)  # Keras: the last partial batch is kept
    history = model.history = history if history is not None else History()  # Keras keeps it on the model too
    history.params = {"verbose": verbose, "epochs": epochs, "steps": steps}  # Keras's params ('auto' stays 'auto')
    if early_stopping is not None:
        early_stopping.on_train_begin()  # Keras: its state is reset at the start of every fit
    # The model's training forward pass: under autocast for bf16; [torchrun] in DDP. [torchrun] The loss
    # back-propagates this rank's share as part of the global batch. In one fp32 process, model and loss_fn.
    training_model = distributed.wrap_model(in_precision(model, device, precision), device)
    loss_fn = distributed.loss_for_rank(loss_fn, len(train_images), batch_size)

    # Around the loop, not in it: Ctrl-C finishes the batch then stops; the debugger (--break-at's hook on
    # the loss, pdb's q); --trace narrates the first batch through hooks; CPU trainings take turns, a few steps each;
    # malloc keeps freed memory (machinery/session.py)
    first_batch = epoch_order(len(train_images), shuffle, seed, initial_epoch)[:batch_size] if trace else None
    with training_session(model, loss_fn, optimizer, device, initial_epoch, steps, break_at, first_batch) as ctrl_c:
        for epoch in range(initial_epoch, epochs):
            # --- train ---
            model.train()  # Keras: training=True, so dropout is on
            # Keras: metrics are reset at the start of every epoch (the loss sum, the correct count, the samples)
            loss_sum, correct, seen = torch.zeros((), device=device), torch.tensor(0, device=device), 0
            # Keras: shuffle=True draws one full permutation of the sample indices per epoch
            order = epoch_order(len(train_images), shuffle, seed, epoch).to(device)
            watch = EpochWatch(resolve_verbose(verbose), epoch, epochs, order, batch_size, history, ctrl_c)
            # Keras: batches of batch_size in that order ([torchrun] each rank takes its share of every batch)
            for step, batch_indices in enumerate(distributed.local_shares(order, batch_size)):
                # the lesson's / 255.0, per batch
                images, labels = as_float(train_images[batch_indices]), train_labels[batch_indices]

                # --- one step: what Keras's train_step does with the batch ---
                logits = training_model(images)  # Keras: y_pred = model(x, training=True)
                loss = loss_fn(logits, labels)  # Keras: compute_loss(x, y, y_pred), on the logits
                # --break-at stops here: a hook on the loss calls breakpoint() (machinery/break_at.py)
                optimizer.zero_grad()  # Keras: self.zero_grad()
                loss.backward()  # Keras: the gradients of the loss with respect to the trainable weights
                optimizer.step()  # Keras: optimizer.apply(gradients, trainable_weights)

                # Keras: the epoch's metrics come from each batch's pre-update, training-mode
                # predictions, as batch-size weighted running means
                loss_sum += loss.detach() * len(labels)
                correct += count_correct(logits, labels)
                seen += len(labels)
                watch.batch_done(step, loss, loss_sum, correct, seen)  # NaN check, progress, Ctrl-C

            # Keras: the epoch's logs are the running means over all of its batches
            # [torchrun] the sums are added up across ranks first
            loss_sum, correct, seen = distributed.all_reduce_sums(loss_sum, correct, torch.tensor(seen, device=device))
            logs = {"loss": (loss_sum / seen).item(), "accuracy": (correct / seen).item()}

            # --- validate: Keras evaluates after the epoch, in eval mode, without gradients ---
            # (a validation batch larger than Keras's gives the same weighted means, up to rounding, faster)
            if val_images is not None:
                logs["val_loss"], logs["val_accuracy"] = evaluate(model, val_images, val_labels,
                                                                  validation_batch_size or max(batch_size, 256),
                                                                  loss_fn, device, precision, verbose=0)  # fmt: skip
            watch.epoch_done(logs)  # Keras prints the epoch's line with the val_ numbers

            # --- end of epoch: Keras's History callback, then the user's hook, then EarlyStopping ---
            history.append(epoch, logs)
            if on_epoch_end is not None and distributed.is_main_process():  # [torchrun] rank 0 writes
                on_epoch_end(epoch, logs)
            if early_stopping is not None and early_stopping.update(epoch, logs, model):
                break
            watch.epoch_logged()  # a Ctrl-C during the validation stops here: the epoch is kept

    if early_stopping is not None:
        early_stopping.finish(model)  # Keras: restore_best_weights acts at the end of training
    return history
