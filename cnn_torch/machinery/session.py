"""What ``fit`` sets up around its loop, and undoes after it: none of it is a lesson step.

``with training_session(...) as stop_requested:`` is entered once, around the epochs:

- Ctrl-C finishes the batch, then stops, keeping the History (:mod:`.interrupt`); inside the block
  ``breakpoint()`` opens a pdb that leaves Ctrl-C alone, and its ``q`` stops training the same way.
- ``break_at=(epoch, batch)``: the debugger after that batch's loss, through hooks (:mod:`.break_at`).
- ``fit(trace=True)``: the first batch narrated step by step, through hooks (:mod:`.first_batch_trace`).
- CPU: trainings on one machine take turns, a few steps each, each with all its threads (a hook on
  the model, :mod:`.cpu_sharing`; the thread count never changes), and glibc's malloc
  keeps freed activations for the next step (``keep_freed_memory``; a process setting that stays, as
  it helps every later step too).

Everything else is put back when the block ends, however it ends: the SIGINT handler, the
breakpoint hook, the turn, the hooks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from cnn_torch.machinery.break_at import breaking_at
from cnn_torch.machinery.cpu_sharing import sharing_cpu_cores
from cnn_torch.machinery.first_batch_trace import trace_first_batch
from cnn_torch.machinery.interrupt import stop_on_sigint
from cnn_torch.platform import distributed
from cnn_torch.platform.device import keep_freed_memory


@contextlib.contextmanager
def training_session(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                     first_epoch: int = 0, steps: int = 1, break_at: tuple[int, int] | None = None,
                     trace_batch: torch.Tensor | None = None) -> Iterator[list[bool]]:  # fmt: skip
    """Around ``fit``'s loop: yield the Ctrl-C flag (``[True]`` once Ctrl-C was pressed). The History
    so far, ``model.history`` (``fit`` keeps it there, as Keras does), travels with the stop;
    ``break_at``, ``first_epoch`` and ``steps`` place ``--break-at``'s batch;
    ``trace_batch`` (the first batch's indices, when ``fit(trace=True)``) is narrated step by step."""
    if trace_batch is not None:  # hooks on the model, the loss and the optimizer, gone after the first batch
        trace_first_batch(model, loss_fn, optimizer, first_epoch, steps, distributed.local_share(trace_batch))
    keep_freed_memory(device)  # CPU: reuse freed activations instead of page-faulting each step (+35%)
    with (
        stop_on_sigint(model.history) as stop_requested,
        sharing_cpu_cores(model, device),
        breaking_at(break_at, model, loss_fn, first_epoch, steps),
    ):
        yield stop_requested
