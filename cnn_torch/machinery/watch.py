"""What ``fit`` does after every batch besides learning, in one call: ``watch.batch_done``.

- Keras's ``TerminateOnNaN``: stop at the first batch whose loss is NaN or inf, keeping the
  History of the finished epochs and that batch's sample indices (:class:`NonFiniteLoss`).
- The progress display (:mod:`cnn_torch.machinery.progress`), fed the running means.
- Ctrl-C: after the first one the batch finishes, then :class:`TrainingInterrupted`; during the
  validation, the epoch is logged first (``watch.epoch_logged``).

The loss and accuracy are read back from the device every few steps, not every step: each
read is a CPU-GPU sync point that would stall the GPU's queue of work.
"""

from __future__ import annotations

import torch

from cnn_torch.errors import UserError
from cnn_torch.machinery.interrupt import TrainingInterrupted
from cnn_torch.machinery.progress import EpochProgress
from cnn_torch.platform import distributed

SYNC_EVERY = 10


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite (Keras: ``TerminateOnNaN``). The History of the
    finished epochs and the offending batch's indices travel with the exception."""

    def __init__(self, epoch: int, step: int, batch_indices: list[int], history):
        super().__init__(
            f"the loss became NaN/inf at epoch {epoch + 1}, batch {step + 1}:"
            " lower the learning rate (e.g. learning_rate=1e-4) or check the data"
        )
        self.epoch, self.step, self.batch_indices, self.history = epoch, step, batch_indices, history


class EpochWatch:
    """One epoch's after-batch duties: NaN/inf check, progress, Ctrl-C; ``epoch_done`` prints the epoch's line."""

    def __init__(self, verbose: int, epoch: int, epochs: int, order: torch.Tensor, batch_size: int, history,
                 stop_requested: list[bool]):  # fmt: skip
        steps = -(-len(order) // batch_size)
        verbose = verbose if distributed.is_main_process() else 0  # [torchrun] only rank 0 prints
        self.progress = EpochProgress(verbose, epoch, epochs, steps)
        self.epoch, self.order, self.batch_size = epoch, order, batch_size
        self.history, self.stop_requested = history, stop_requested
        self.recent_losses: list[torch.Tensor] = []

    def batch_done(self, step: int, loss: torch.Tensor, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int):
        self.recent_losses.append(loss.detach())
        # the first step too: Keras's time per step leaves it out, and the bar shows at once
        if step == 0 or (step + 1) % SYNC_EVERY == 0 or step + 1 == self.progress.steps or self.stop_requested[0]:
            finite = torch.isfinite(torch.stack(self.recent_losses)).tolist()
            if not all(finite):  # Keras: TerminateOnNaN stops at the first batch whose loss is NaN or inf
                bad_step = step + 1 - len(self.recent_losses) + finite.index(False)
                bad_batch = self.order[bad_step * self.batch_size : (bad_step + 1) * self.batch_size]
                self.progress.close(None)  # the error goes below the bar
                raise NonFiniteLoss(self.epoch, bad_step, bad_batch.tolist(), self.history)
            self.recent_losses.clear()
            self.progress.update(step + 1, {"loss": (loss_sum / seen).item(), "accuracy": (correct / seen).item()})
        if self.stop_requested[0]:
            self.progress.close(None)
            raise TrainingInterrupted(self.history, self.epoch, partial_epoch=True)  # the partial epoch is not logged

    def epoch_done(self, logs: dict[str, float]) -> None:
        self.progress.close(logs)

    def epoch_logged(self) -> None:
        """After the epoch is in the History and its hooks ran: a Ctrl-C during the validation stops here."""
        if self.stop_requested[0]:
            raise TrainingInterrupted(self.history, self.epoch + 1)
