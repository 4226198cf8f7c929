"""Keras's ``EarlyStopping`` and ``ModelCheckpoint(save_best_only=True)`` rules, as two small
objects asked once per epoch. No callback framework.

The rules (keras/src/callbacks/monitor_callback.py and early_stopping.py, in our words):

- Direction: ``mode='min'`` or ``'max'``; ``'auto'`` minimises ``loss``/``val_loss`` and
  maximises ``accuracy``/``val_accuracy`` (Keras asks the metric which way is up).
- Improvement: the value beats the reference by more than ``|min_delta|``. Keras compares
  in float32: ``value - min_delta`` is worked out in Python (float64), then both sides are
  rounded to float32 before ``<`` or ``>``. So with ``min_delta=0.01`` a loss going from
  1.0071709 to 0.9971709 is *no* improvement: 0.9971709 + 0.01 rounds to the same float32.
- ``EarlyStopping``, after each epoch: skip the epochs before ``start_from_epoch``; count
  the epoch in ``wait``; on an improvement keep it as the best (and its weights) and, if it
  also beats ``baseline``, set ``wait`` back to 0; without one, stop once
  ``wait >= patience`` (never on epoch 0). At the end of training put the best weights back
  (``restore_best_weights``), whether it stopped early or not. Everything is reset when a
  new ``fit`` starts (Keras's ``on_train_begin``), so one object serves several fits.

Resuming (ours: Keras's ``fit(initial_epoch=...)`` starts its EarlyStopping afresh):
``state_dict()`` goes into a run's ``last.pt`` and ``load_state_dict`` puts it back, so the
fit that continues the run goes on counting where the unbroken run would have.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from cnn_torch.errors import UserError
from cnn_torch.platform import distributed


def keras_mode(monitor: str, mode: str = "auto") -> str:
    """'min' or 'max': ``mode`` itself, or for 'auto' the direction Keras infers from the name."""
    if mode not in ("auto", "min", "max"):
        raise UserError(f"mode must be 'auto', 'min' or 'max', got {mode!r}: try mode='auto'")
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    if name == "loss":
        return "min"
    if name == "accuracy":  # Keras: the accuracy metric's direction is "up"
        return "max"
    raise UserError(
        f"mode='auto' cannot tell whether {monitor!r} should go up or down: pass mode='min' or mode='max'"
    )


def as_float32(value: float) -> float:
    """``value`` rounded to the nearest float32, as Keras's ``ops.less``/``ops.greater`` see it."""
    return torch.tensor(value, dtype=torch.float32).item()


def is_improvement(value: float, reference: float | None, mode: str, min_delta: float) -> bool:
    """Keras's ``MonitorCallback._is_improvement``: beats ``reference`` by more than ``|min_delta|``
    (always true when there is no reference yet), compared in float32."""
    if reference is None:
        return True
    if mode == "min":
        return as_float32(value + abs(min_delta)) < as_float32(reference)
    return as_float32(value - abs(min_delta)) > as_float32(reference)


def monitored_value(monitor: str, logs: dict[str, float]) -> float:
    if monitor not in logs:
        raise UserError(
            f"cannot monitor {monitor!r}: the logs have {sorted(logs)}; pass validation data or monitor one of those"
        )
    return logs[monitor]


class Improvement:
    """The best value of one monitored metric so far (``ModelCheckpoint(save_best_only=True)``'s test)."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, mode: str = "auto"):
        self.monitor, self.mode, self.min_delta = monitor, keras_mode(monitor, mode), abs(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None

    def update(self, epoch: int, logs: dict[str, float]) -> bool:
        """True when this epoch beats the best so far (then it becomes the best)."""
        current = monitored_value(self.monitor, logs)
        improved = is_improvement(current, self.best, self.mode, self.min_delta)
        if improved:
            self.best, self.best_epoch = current, epoch
        return improved


class EarlyStopping:
    """``fit(..., early_stopping=EarlyStopping(patience=3))`` stops like ``keras.callbacks.EarlyStopping``.

    Same arguments, order and defaults as Keras's. ``verbose=1`` prints Keras's two messages
    at the end of training ("Epoch N: early stopping", "Restoring model weights from the
    end of the best epoch: N."). After ``fit``: ``stopped_epoch`` (0-based; 0 when it did
    not stop), ``best_epoch``, ``best``, ``wait``, as on Keras's object, and ``restored_epoch``
    (the 0-based epoch whose weights the model now holds, or None when none were put back).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ):
        self.monitor, self.mode, self.min_delta = monitor, keras_mode(monitor, mode), abs(min_delta)
        self.patience, self.verbose, self.baseline = patience, verbose, baseline
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch
        self.continues_a_run = False
        self.on_train_begin()

    def on_train_begin(self) -> None:
        """Forget the previous fit (Keras's ``on_train_begin``); ``fit`` calls it before the first epoch.
        Once after ``load_state_dict`` it forgets nothing: that fit continues the run."""
        if self.continues_a_run:
            self.continues_a_run = False
            return
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best: float | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.restored_epoch: int | None = None
        self.last_epoch: int | None = None  # the last epoch judged (0-based): a resume judges the ones after it

    STATE = ("wait", "stopped_epoch", "best_epoch", "best", "best_weights", "last_epoch")

    def state_dict(self) -> dict:
        """Everything ``update`` has learnt so far, as tensors and builtins (``last.pt`` keeps it)."""
        return {name: getattr(self, name) for name in self.STATE}

    def load_state_dict(self, state: dict) -> None:
        """Go on from ``state_dict()``'s state: the next ``on_train_begin`` (the resumed fit's) keeps it."""
        self.continues_a_run = False
        self.on_train_begin()
        for name in self.STATE:
            setattr(self, name, state[name])
        self.continues_a_run = True

    def update(self, epoch: int, logs: dict[str, float], model: nn.Module) -> bool:
        """Keras's ``on_epoch_end``, after the epoch is logged: returns True when training should stop."""
        current = monitored_value(self.monitor, logs)
        self.last_epoch = epoch
        if epoch < self.start_from_epoch:  # the warm-up: not watched at all
            return False
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = copy.deepcopy(model.state_dict()), epoch  # the first watched epoch
        self.wait += 1
        if is_improvement(current, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = copy.deepcopy(model.state_dict())
            if self.baseline is None or is_improvement(current, self.baseline, self.mode, self.min_delta):
                self.wait = 0  # only an epoch that also beats the baseline restarts the count
            return False
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            return True
        return False

    def finish(self, model: nn.Module) -> None:
        """Keras's ``on_train_end``: say so if it stopped, and put the best weights back if asked to."""
        speak = self.verbose > 0 and distributed.is_main_process()  # [torchrun] rank 0 speaks for all
        if self.stopped_epoch > 0 and speak:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping", flush=True)
        if self.restore_best_weights and self.best_weights is not None:
            if speak:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.", flush=True)
            model.load_state_dict(self.best_weights)
            self.restored_epoch = self.best_epoch
