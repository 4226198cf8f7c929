"""Ctrl-C during training: finish the current batch, keep everything, then stop.

The first SIGINT only sets a flag that ``fit`` checks after each batch; a second one
raises ``KeyboardInterrupt`` at once. Outside the main thread (where signal handlers
cannot be installed) Ctrl-C keeps Python's default behaviour.

The debugger (``--break-at``, or a ``breakpoint()`` of your own) follows the same rule:
while ``fit`` runs, ``breakpoint()`` opens pdb without pdb's own Ctrl-C handler, so after
``c`` a Ctrl-C still stops training after the batch instead of dropping into pdb somewhere
inside torch; and ``q`` stops training as Ctrl-C does (:class:`TrainingInterrupted`, with
the finished epochs), so a run quit from the debugger is recorded as interrupted. That pdb
also skips torch's frames and the ``--break-at`` hook's (:mod:`cnn_torch.machinery.break_at`):
it stops on the next line of the lesson's code, and ``n`` and ``s`` step through fit and the
model, not through torch's module machinery.
"""

from __future__ import annotations

import bdb
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

# Modules whose frames fit's pdb passes over: a step never stops inside them, so the --break-at hook's
# breakpoint() stops on fit's line after the loss, and stepping stays in the lesson's code.
PASSED_OVER = ("torch", "torch.*", "cnn_torch.machinery.break_at")


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by ``fit`` after a Ctrl-C, once the batch finished (or after ``q`` in the debugger);
    ``.history`` (also ``model.history``) holds the finished epochs, and ``.epoch`` is the first
    epoch (0-based) that did not finish, where a resume starts. ``partial_epoch``: that epoch had
    begun (its batches are not kept); else the Ctrl-C came while the epoch before it validated,
    and that epoch finished and is logged."""

    def __init__(self, history, epoch: int, *, partial_epoch: bool = False):
        finished = len(history.epoch) if history is not None else epoch
        where = f"during epoch {epoch + 1} (not kept)" if partial_epoch else f"after epoch {epoch}"
        kept = f"its {finished} finished epoch{'s' if finished != 1 else ''}" if finished else "no finished epoch"
        # what a learner types next in the notebook, where fit's return value never arrived
        super().__init__(f"training interrupted {where}; history = model.history has {kept}")
        self.history, self.epoch = history, epoch


@contextlib.contextmanager
def stop_on_sigint(history=None) -> Iterator[list[bool]]:
    """Yield a one-element list that turns ``[True]`` after the first Ctrl-C. Quitting the
    debugger inside the block raises :class:`TrainingInterrupted` with ``history``."""
    requested = [False]
    if threading.current_thread() is not threading.main_thread():
        with _debugger_quit_stops_training(history):
            yield requested
        return

    def handle(signum, frame):
        if requested[0]:
            raise KeyboardInterrupt  # second Ctrl-C: abort now
        requested[0] = True
        print(
            "\nCtrl-C: stopping after this batch (press Ctrl-C again to abort at once)",
            file=sys.stderr,
            flush=True,
        )

    previous = signal.signal(signal.SIGINT, handle)
    previous_hook = sys.breakpointhook
    if previous_hook is sys.__breakpointhook__ and os.environ.get("PYTHONBREAKPOINT", "") in ("", "pdb.set_trace"):
        sys.breakpointhook = _pdb_leaving_ctrl_c_alone  # PYTHONBREAKPOINT (another debugger, or 0) is respected
    try:
        with _debugger_quit_stops_training(history):
            yield requested
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.breakpointhook = previous_hook


@contextlib.contextmanager
def _debugger_quit_stops_training(history) -> Iterator[None]:
    """``q`` in pdb raises ``bdb.BdbQuit`` where the program stands: turn it into the Ctrl-C stop."""
    try:
        yield
    except bdb.BdbQuit:
        epoch = history.epoch[-1] + 1 if history is not None and history.epoch else 0
        print("\nquit the debugger: training stopped", file=sys.stderr, flush=True)
        raise TrainingInterrupted(history, epoch, partial_epoch=True) from None


def _pdb_leaving_ctrl_c_alone(*args, **kwargs) -> None:
    """``breakpoint()`` during ``fit``: Python's pdb, told not to take over Ctrl-C (``nosigint``)
    and to pass over torch's frames and the ``--break-at`` hook's (``skip``)."""
    import pdb

    debugger = pdb.Pdb(nosigint=True, skip=PASSED_OVER)
    debugger.set_trace(sys._getframe(1))  # stop at the caller's next line, as breakpoint() does (or further up)
