"""Keras's L2 weight regularisation, as a loss that adds the penalty.

In Keras a layer asks for it::

    keras.layers.Conv2D(50, (3, 3), activation='relu', kernel_regularizer=keras.regularizers.L2(0.01))

and every such layer then adds ``0.01 * sum(kernel ** 2)`` (its kernel, never its bias) to
the loss that training minimises. Keras also REPORTS that total: the History's ``loss`` and
``val_loss`` include the penalties, batch by batch, as they stand at that batch.

Here the penalty joins the loss function instead of the layers, so ``fit``'s loop stays the
lesson's (``loss = loss_fn(logits, labels)``, then ``backward``)::

    loss_fn = L2Regularized(nn.CrossEntropyLoss(), model, l2=0.01)  # Keras: L2(0.01) on every Conv2D and Dense

and since ``fit`` and ``evaluate`` report what ``loss_fn`` returns, ``loss`` and ``val_loss``
include the penalty exactly where Keras's do. As a Keras model carries its layers' regularizers,
the model carries the factor too: ``L2Regularized`` sets ``model.kernel_l2 = l2`` (a plain float,
0.0 or absent for none), so ``evaluate(model, x, y)`` with the default loss still adds the
penalty, and checkpoints keep it (``checkpoints.make_checkpoint``, ``model_from_checkpoint``).
The sum is formed as Keras forms it: the compiled loss and each layer's penalty, stacked and
summed in one go.

Not the same as PyTorch's ``weight_decay``: ``torch.optim.SGD(..., weight_decay=wd)`` adds
``wd * w`` to every parameter's gradient, biases included (for plain SGD that is L2 with
``l2 = wd / 2`` on all parameters); Adam's ``weight_decay`` goes through Adam's scaling like a
gradient; ``AdamW`` (and Keras's own optimizer argument ``weight_decay``) shrinks the weights
directly, apart from the gradient ("decoupled"). None of them shows in the reported loss.
docs/keras-to-pytorch.md has the side-by-side.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cnn_torch.errors import UserError


def regularized_kernels(model: nn.Module) -> list[nn.Parameter]:
    """The kernels Keras's ``kernel_regularizer`` covers: the weight of every Conv2d and Linear
    that trains (a frozen layer, ``trainable=False`` in Keras, adds no penalty that could move it)."""
    return [m.weight for m in model.modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.requires_grad]


class L2Regularized(nn.Module):
    """``loss_fn(logits, labels) + l2 * sum(kernel ** 2)`` over the model's Conv2d and Linear kernels:
    ``kernel_regularizer=keras.regularizers.L2(l2)`` on every Conv2D and Dense layer."""

    def __init__(self, loss_fn: nn.Module, model: nn.Module, l2: float) -> None:
        super().__init__()
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not math.isfinite(l2) or l2 < 0:
            raise UserError(f"l2 must be a number >= 0, got {l2!r}: try 0.01 (Keras's L2 default is 0.01)")
        self.loss_fn = loss_fn
        self.l2 = float(l2)
        # a plain list, not registered as submodules or parameters: the loss does not own the
        # weights (its state_dict stays empty), it reads them at each call as they are then
        self.kernels = regularized_kernels(model)
        if not self.kernels:
            raise UserError("the model has no trainable Conv2d or Linear kernel for L2 to regularise")
        # Keras: the regularizer belongs to the model's layers, so evaluate counts it whatever loss it gets.
        # A plain float attribute: no submodule, nothing in the state_dict (checkpoints write it apart)
        model.kernel_l2 = self.l2

    def penalties(self) -> list[torch.Tensor]:
        """Each kernel's ``l2 * sum(kernel ** 2)``, as Keras's ``L2`` regularizer computes it."""
        return [self.l2 * torch.sum(torch.square(kernel)) for kernel in self.kernels]

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # Keras: total loss = sum([compiled loss, penalty of layer 1, penalty of layer 2, ...])
        return torch.stack([self.loss_fn(logits, labels), *self.penalties()]).sum()

    def extra_repr(self) -> str:
        return f"l2={self.l2:g}, kernels={len(self.kernels)}"
