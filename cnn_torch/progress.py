"""What ``fit`` prints: Keras's verbose levels, sized to where the output goes.

- verbose=1: a tqdm bar per epoch with the running loss and accuracy (Keras's bar).
- verbose=2: one line per epoch, for logs, notebooks saved to files and clusters.
- verbose=0: silent.
``"auto"`` picks 1 on a terminal and 2 otherwise, so logs are never flooded.
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm


def resolve_verbose(verbose: int | str) -> int:
    if verbose == "auto":
        return 1 if sys.stderr.isatty() else 2
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
    return int(verbose)


def format_logs(logs: dict[str, float]) -> str:
    return " - ".join(f"{key}: {value:.4f}" for key, value in sorted(logs.items()))


class EpochProgress:
    """One epoch's progress display. ``update`` is called every few steps, not every step."""

    def __init__(self, verbose: int, epoch: int, epochs: int, steps: int):
        self.verbose, self.steps, self.started = verbose, steps, time.perf_counter()
        self.header = f"Epoch {epoch + 1}/{epochs}"
        self.bar = None
        if verbose == 1:
            self.bar = tqdm(total=steps, desc=self.header, unit="step", leave=True, file=sys.stderr)

    def update(self, step: int, logs: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix_str(format_logs(logs), refresh=True)

    def close(self, logs: dict[str, float] | None) -> None:
        seconds = time.perf_counter() - self.started
        if logs is None:  # interrupted: close the bar where it stands
            if self.bar is not None:
                self.bar.close()
            return
        if self.bar is not None:
            self.bar.update(self.steps - self.bar.n)
            self.bar.set_postfix_str(format_logs(logs), refresh=True)
            self.bar.close()
        elif self.verbose == 2:
            ms_per_step = 1000 * seconds / max(self.steps, 1)
            print(
                f"{self.header} - {self.steps} steps - {seconds:.1f}s - {ms_per_step:.0f}ms/step"
                f" - {format_logs(logs)}",
                file=sys.stderr,
                flush=True,
            )
