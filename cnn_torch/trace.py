"""``fit(..., trace=True)``: narrate the first batch of the first epoch, step by step.

Each line says what just happened in the PyTorch loop and which part of Keras's
``fit`` / ``train_step`` does the same thing, so a learner can read the loop happen.
After the first batch the tracer falls silent and training goes on normally.
"""

from __future__ import annotations

import sys

import torch
from torch import nn


def _fmt(tensor: torch.Tensor) -> str:
    return f"shape {tuple(tensor.shape)} {str(tensor.dtype).replace('torch.', '')} on {tensor.device}"


class Tracer:
    def __init__(self, enabled: bool, file=None):
        self.active = enabled
        self.file = file or sys.stdout
        self._before_step: dict[str, torch.Tensor] = {}

    def say(self, what: str, keras: str) -> None:
        print(f"[trace] {what}\n        Keras: {keras}", file=self.file, flush=True)

    def batch(self, epoch: int, step: int, steps: int, batch_indices: torch.Tensor) -> None:
        if not self.active:
            return
        shown = batch_indices[:8].tolist()
        self.say(
            f"epoch {epoch + 1}, batch {step + 1}/{steps}: indices {shown}"
            f"{' ...' if len(batch_indices) > 8 else ''} ({len(batch_indices)} samples)",
            "the epoch iterator yields the next slice of this epoch's order (a fresh permutation when shuffle=True)",
        )

    def moved(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if self.active:
            self.say(
                f"batch moved to {images.device}: images {_fmt(images)}, labels {_fmt(labels)};"
                f" pixel range [{images.min().item():.3f}, {images.max().item():.3f}]",
                "the data adapter turns the batch into float32 tensors on the device",
            )

    def forward(self, logits: torch.Tensor, loss: torch.Tensor) -> None:
        if not self.active:
            return
        first_row = ", ".join(f"{v:.3f}" for v in logits[0].detach().float().tolist())
        self.say(
            f"forward pass in training mode: logits {_fmt(logits)}; first row [{first_row}]",
            "y_pred = self(x, training=True) inside train_step",
        )
        self.say(
            f"loss = CrossEntropyLoss(logits, labels) = {loss.item():.6f} (mean over the batch)",
            "loss = self.compute_loss(x, y, y_pred), SparseCategoricalCrossentropy(from_logits=True)",
        )

    def zero_grad(self) -> None:
        if self.active:
            self.say("optimizer.zero_grad(): gradients of the last step cleared", "self.zero_grad()")

    def backward(self, model: nn.Module) -> None:
        if not self.active:
            return
        norms = ", ".join(
            f"{name} {p.grad.norm().item():.4g}" for name, p in model.named_parameters() if p.grad is not None
        )
        self.say(f"loss.backward(): gradient norm per parameter: {norms}", "loss.backward()")
        self._before_step = {name: p.detach().clone() for name, p in model.named_parameters()}

    def step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if not self.active:
            return
        changes = ", ".join(
            f"{name} {(p.detach() - self._before_step[name]).norm().item():.4g}"
            for name, p in model.named_parameters()
        )
        # SGD without momentum keeps no state, so the step count is read where there is one
        first_param = optimizer.param_groups[0]["params"][0]
        step = optimizer.state.get(first_param, {}).get("step", "not kept by this optimizer")
        step = int(step) if isinstance(step, torch.Tensor) else step
        self.say(
            f"optimizer.step(): {type(optimizer).__name__}, learning rate"
            f" {optimizer.param_groups[0]['lr']:g}, step count {step}; parameter change norm: {changes}",
            "self.optimizer.apply(gradients, trainable_weights)",
        )
        self.say(
            "metrics updated from this batch's pre-update predictions; the trace ends here,"
            " training continues",
            "self._loss_tracker / compiled metrics update_state(y, y_pred)",
        )
        self.active = False
