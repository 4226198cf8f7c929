"""What ``fit`` prints: Keras's verbose levels, sized to where the output goes.

- verbose=1: a bar per epoch with the running loss and accuracy (Keras's bar), then, as the
  epoch ends, the epoch's line with every number, wrapped to the terminal's width so that
  nothing is cut on an 80-column terminal.
- verbose=2: one line per epoch, for logs, notebooks, files and clusters.
- verbose=0: silent.
``"auto"`` picks 1 on a terminal and 2 otherwise, so logs are never flooded. Everything
goes to stdout, where Keras prints it (notebooks paint stderr as errors).
"""

from __future__ import annotations

import shutil
import sys
import time

from tqdm import tqdm  # the plain bar: tqdm.auto would want Jupyter widgets (a warning without them)


def resolve_verbose(verbose: int | str) -> int:
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
    return int(verbose)


def format_logs(logs: dict[str, float]) -> str:
    return " - ".join(f"{key}: {value:.4f}" for key, value in sorted(logs.items()))


def wrap_parts(parts: list[str], width: int) -> str:
    """Join ``parts`` with " - " on as few lines as fit in ``width`` columns; a part is never cut."""
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " - " + part
        else:
            lines.append("  " + part)
    return "\n".join(lines)


class EpochProgress:
    """One epoch's progress display. ``update`` is called every few steps, not every step."""

    def __init__(self, verbose: int, epoch: int, epochs: int, steps: int):
        self.verbose, self.steps, self.started = verbose, steps, time.perf_counter()
        self.header = f"Epoch {epoch + 1}/{epochs}"
        self.bar = None
        if verbose == 1:
            # leave=False: the bar gives way to the epoch's line, which holds every number
            self.bar = tqdm(total=steps, desc=self.header, unit="step", leave=False, file=sys.stdout,
                            dynamic_ncols=True)  # fmt: skip

    def update(self, step: int, logs: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix_str(format_logs(logs), refresh=True)

    def close(self, logs: dict[str, float] | None) -> None:
        seconds = time.perf_counter() - self.started
        if self.bar is not None:
            self.bar.close()
        if logs is None or self.verbose == 0:  # interrupted: the bar stays where it stood
            return
        ms_per_step = 1000 * seconds / max(self.steps, 1)
        parts = [self.header, f"{self.steps} steps", f"{seconds:.1f}s", f"{ms_per_step:.0f}ms/step"]
        parts += [f"{key}: {value:.4f}" for key, value in sorted(logs.items())]
        width = shutil.get_terminal_size().columns if self.verbose == 1 else 10_000  # logs: one line
        print(wrap_parts(parts, width), flush=True)
