"""``fit(..., break_at=(epoch, batch))`` (``--break-at``): the debugger after one batch's loss.

Nothing of it stands in ``fit``'s loop: two PyTorch hooks, registered when ``fit`` starts and
removed when it ends, count the training batches and call ``breakpoint()`` right after the
loss of the one asked for, before ``optimizer.zero_grad()``:

    model      forward pre-hook   remembers the training batch's images
    loss_fn    forward hook       counts training batches (the model in training mode, so not
                                  the validation's); at the one asked for, ``breakpoint()``

pdb (``fit``'s, see :mod:`cnn_torch.machinery.interrupt`) skips this module and torch's
frames, so it stops on ``fit``'s next line, ``optimizer.zero_grad()``, with ``images``,
``labels``, ``logits`` and ``loss`` in scope, and ``n`` steps on through the loop. Another
debugger (``PYTHONBREAKPOINT``) stops in :func:`breaking_at`'s hook, where the same names
(and ``epoch``, ``step``, 0-based) hold the same tensors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def breaking_at(break_at: tuple[int, int] | None, model: nn.Module, loss_fn: nn.Module, first_epoch: int,
                steps: int) -> Iterator[None]:  # fmt: skip
    """Call ``breakpoint()`` after the loss of training batch ``break_at = (epoch, batch)``, both
    1-based, counting from batch 1 of ``first_epoch`` (0-based) with ``steps`` batches an epoch."""
    if break_at is None:
        yield
        return
    seen = {"batches": 0}

    def remember_images(module, inputs):
        if module.training:
            seen["images"] = inputs[0]

    def stop_after_loss(module, inputs, loss):
        if not model.training:  # the validation's loss, not a training batch
            return
        epoch, step = divmod(seen["batches"], steps)
        epoch, seen["batches"] = first_epoch + epoch, seen["batches"] + 1
        if (epoch + 1, step + 1) == break_at:
            images, (logits, labels) = seen["images"], inputs  # noqa: F841 (named for the debugger)
            breakpoint()  # --break-at: images, labels, logits and loss are in scope (pdb shows fit's next line)

    handles = [model.register_forward_pre_hook(remember_images), loss_fn.register_forward_hook(stop_after_loss)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
