"""Ctrl-C during training: finish the current batch, keep everything, then stop.

The first SIGINT only sets a flag that ``fit`` checks after each batch; a second one
raises ``KeyboardInterrupt`` at once. Outside the main thread (where signal handlers
cannot be installed) Ctrl-C keeps Python's default behaviour.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by ``fit`` after a Ctrl-C, once the batch finished; ``.history`` holds the
    finished epochs (the partial epoch is not logged)."""

    def __init__(self, history, epoch: int):
        super().__init__(f"training interrupted during epoch {epoch + 1}")
        self.history, self.epoch = history, epoch


@contextlib.contextmanager
def stop_on_sigint() -> Iterator[list[bool]]:
    """Yield a one-element list that turns ``[True]`` after the first Ctrl-C."""
    requested = [False]
    if threading.current_thread() is not threading.main_thread():
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
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)
