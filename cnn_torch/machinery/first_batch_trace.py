"""``fit(..., trace=True)``: narrate the first batch of the first epoch, step by step.

Each line says what just happened (weights named as Keras names them:
``conv2d/kernel``) in the PyTorch loop and which part of Keras's
``fit`` / ``train_step`` does the same thing, so a learner can read the loop happen.
Nothing of it stands in ``fit``'s loop: :func:`trace_first_batch` attaches PyTorch's own
hooks before the loop starts, and they remove themselves after the first optimizer step.

    model          forward pre-hook   the batch as the model receives it
    model          forward hook       the logits
    loss_fn        forward hook       the labels and the loss (then prints the batch, the
                                      forward pass and the loss, in the loop's order)
    the loss       tensor hook        backward has started: zero_grad ran before it
    optimizer      step pre-hook      backward has finished: the gradient norms
    optimizer      step post-hook     the update, then every hook is removed
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from cnn_torch.keras_rules.names import keras_parameter_names
from cnn_torch.machinery.terminal import fitted


def _fmt(tensor: torch.Tensor) -> str:
    return f"shape {tuple(tensor.shape)} {str(tensor.dtype).replace('torch.', '')} on {tensor.device}"


def say(what: str, keras: str, file=None) -> None:
    """One step: what happened, then the Keras concept it stands for (wrapped to a terminal's width)."""
    file = file or sys.stdout
    print(fitted(f"[trace] {what}", file, indent=" " * 8), file=file)
    print(fitted(f"        Keras: {keras}", file, indent=" " * 15), file=file, flush=True)


def trace_first_batch(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    steps: int,
    batch_indices: torch.Tensor,
    file=None,
) -> None:
    """Narrate the next training batch (batch 1 of ``epoch``, holding ``batch_indices``) through hooks."""
    seen: dict[str, torch.Tensor] = {}
    handles: list = []
    keras_names = keras_parameter_names(model)  # "0.weight" -> "conv2d/kernel", as the lesson's Keras names it

    def remember_images(module, inputs):
        if "done" in seen:  # the trace has ended: the last two hooks go now (see narrate_step)
            for handle in handles:
                handle.remove()
            return
        if module.training:  # the training forward pass, not a check or an evaluation
            seen["images"] = inputs[0]

    def remember_logits(module, inputs, output):
        if module.training:
            seen["logits"] = output

    def narrate_forward(module, inputs, loss):
        if "logits" not in seen or "loss" in seen:
            return
        seen["loss"] = loss
        images, logits, labels = seen["images"], seen["logits"], inputs[1]
        shown = batch_indices[:8].tolist()
        say(
            f"epoch {epoch + 1}, batch 1/{steps}: indices {shown}"
            f"{' ...' if len(batch_indices) > 8 else ''} ({len(batch_indices)} samples)",
            "the epoch iterator yields the next slice of this epoch's order (a fresh permutation when shuffle=True)",
            file,
        )
        say(
            f"batch moved to {images.device}: images {_fmt(images)}, labels {_fmt(labels)};"
            f" pixel range [{images.min().item():.3f}, {images.max().item():.3f}]",
            "the data adapter turns the batch into float32 tensors on the device",
            file,
        )
        first_row = ", ".join(f"{v:.3f}" for v in logits[0].detach().float().tolist())
        say(
            f"forward pass in training mode: logits {_fmt(logits)}; first row [{first_row}]",
            "y_pred = self(x, training=True) inside train_step",
            file,
        )
        say(
            f"loss = {type(module).__name__}(logits, labels) = {loss.item():.6f} (mean over the batch)",
            "loss = self.compute_loss(x, y, y_pred), SparseCategoricalCrossentropy(from_logits=True)",
            file,
        )
        if loss.requires_grad:
            loss.register_hook(narrate_zero_grad)

    def narrate_zero_grad(grad):  # runs as backward starts, so after optimizer.zero_grad()
        say("optimizer.zero_grad(): gradients of the last step cleared", "self.zero_grad()", file)

    def narrate_backward(optimizer, args, kwargs):  # backward is done when step() is called
        norms = ", ".join(
            f"{keras_names.get(name, name)} {p.grad.norm().item():.4g}"
            for name, p in model.named_parameters() if p.grad is not None
        )
        say(f"loss.backward(): gradient norm per parameter: {norms}", "loss.backward()", file)
        seen["before_step"] = {name: p.detach().clone() for name, p in model.named_parameters()}

    def narrate_step(optimizer, args, kwargs):
        before = seen["before_step"]
        changes = ", ".join(
            f"{keras_names.get(name, name)} {(p.detach() - before[name]).norm().item():.4g}"
            for name, p in model.named_parameters()
        )
        # SGD without momentum keeps no state, so the step count is read where there is one
        first_param = optimizer.param_groups[0]["params"][0]
        step = optimizer.state.get(first_param, {}).get("step", "not kept by this optimizer")
        step = int(step) if isinstance(step, torch.Tensor) else step
        say(
            f"optimizer.step(): {type(optimizer).__name__}, learning rate"
            f" {optimizer.param_groups[0]['lr']:g}, step count {step}; parameter change norm: {changes}",
            "self.optimizer.apply(gradients, trainable_weights)",
            file,
        )
        say(
            "metrics updated from this batch's pre-update predictions; the trace ends here,"
            " training continues",
            "self._loss_tracker / compiled metrics update_state(y, y_pred)",
            file,
        )
        # the trace ends. This hook and remember_images go at the next forward pass: torch is
        # still looping over the optimizer's step hooks (another may follow this one), and
        # removing one in the middle of that loop would break it
        seen["done"] = True
        for handle in handles[1:4]:
            handle.remove()

    handles += [
        model.register_forward_pre_hook(remember_images),
        model.register_forward_hook(remember_logits),
        loss_fn.register_forward_hook(narrate_forward),
        optimizer.register_step_pre_hook(narrate_backward),
        optimizer.register_step_post_hook(narrate_step),
    ]
