"""Keras's ``EarlyStopping`` and ``ModelCheckpoint(save_best_only=True)`` bookkeeping, as
one small object that ``fit`` asks once per epoch. No callback framework.

Semantics (keras/src/callbacks/early_stopping.py, in our words):
- the monitored value improves only if it beats the best so far by more than
  ``|min_delta|`` (strictly); ``val_loss`` and other losses are minimised, accuracies
  maximised;
- every epoch without improvement adds one to ``wait``; training stops when
  ``wait >= patience``, after that epoch is logged;
- with ``restore_best_weights`` the best epoch's weights are put back at the end of
  training, whether or not it stopped early.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from cnn_torch.errors import UserError


def monitor_mode(monitor: str) -> str:
    """Keras ``mode='auto'``: maximise accuracies, minimise everything else."""
    return "max" if "acc" in monitor else "min"


class Improvement:
    """Tracks the best value of one monitored metric (``ModelCheckpoint``'s test)."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0):
        self.monitor, self.mode = monitor, monitor_mode(monitor)
        self.min_delta = abs(min_delta)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None

    def value(self, logs: dict[str, float]) -> float:
        if self.monitor not in logs:
            raise UserError(
                f"cannot monitor {self.monitor!r}: the logs have {sorted(logs)};"
                " pass validation data or monitor one of those"
            )
        return logs[self.monitor]

    def update(self, epoch: int, logs: dict[str, float]) -> bool:
        """True when this epoch strictly beats the best so far (then it becomes the best)."""
        current = self.value(logs)
        if self.mode == "min":
            improved = current < self.best - self.min_delta
        else:
            improved = current > self.best + self.min_delta
        if improved:
            self.best, self.best_epoch = current, epoch
        return improved


class EarlyStopping:
    """``fit(..., early_stopping=EarlyStopping(patience=3))`` stops like Keras's callback."""

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 0,
        min_delta: float = 0.0,
        restore_best_weights: bool = False,
    ):
        self.improvement = Improvement(monitor, min_delta)
        self.patience, self.restore_best_weights = patience, restore_best_weights
        self.wait = 0
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.stopped_epoch: int | None = None

    def update(self, epoch: int, logs: dict[str, float], model: nn.Module) -> bool:
        """Call after each logged epoch; returns True when training should stop."""
        if self.improvement.update(epoch, logs):
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = copy.deepcopy(model.state_dict())
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def finish(self, model: nn.Module) -> None:
        """At the end of training: put the best weights back if asked to."""
        if self.restore_best_weights and self.best_weights is not None:
            model.load_state_dict(self.best_weights)
