"""What ``fit`` prints: Keras 3's lines, character for character, sized to the terminal.

Keras prints ``Epoch 1/10`` as an epoch starts (not when ``epochs=1``), then, by verbose level:

- verbose=1, a bar redrawn in place while the epoch runs, with the running means::

       120/1250 ━━━━━━━━━━━━━━━━━━━━ 1:02 12ms/step - accuracy: 0.3221 - loss: 1.8530

  and, as the epoch ends, the full bar with the elapsed time and every number (one line in
  Keras; here wrapped between two numbers when the terminal is narrower, 80 columns below)::

      1250/1250 ━━━━━━━━━━━━━━━━━━━━ 15s 12ms/step - accuracy: 0.4738 - loss: 1.4651
        val_accuracy: 0.5507 - val_loss: 1.2736

- verbose=2, only the end-of-epoch line: ``1250/1250 - 15s - 12ms/step - accuracy: 0.4738 - ...``.
- verbose=0: nothing.

(keras/src/utils/progbar.py and callbacks/progbar_logger.py, in our words.) Two things are
ours: the running bar shrinks (then drops its bar, its time per step, its ETA) so that it
fits the terminal and the running loss stays in view, and the end-of-epoch line at
verbose=1 wraps between numbers instead of being cut mid-number at 80 columns.

In Jupyter, where Keras redraws its bar under the cell, verbose=1 draws tqdm's live bar
(``tqdm.auto`` picks its notebook widget there; ipywidgets draws it) with Keras's running
numbers beside it; as the epoch ends the bar goes and Keras's end-of-epoch line stays, on one
line, so a saved notebook holds two lines per epoch and no redraws. Without ipywidgets there
is no live bar in a notebook.

``"auto"`` picks 1 on a terminal and in a notebook with the live bar, and 2 elsewhere (Keras
picks 1), so logs and files get one line per epoch, not every redraw of a bar. Everything goes
to stdout, where Keras prints it (notebooks paint stderr as errors).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import time

from cnn_torch.errors import UserError
from cnn_torch.machinery.terminal import in_jupyter, width_for

BAR_WIDTH = 20  # Keras's
MIN_BAR_WIDTH = 5  # narrower than this, the bar goes and the numbers keep their room
REDRAW_INTERVAL = 0.05  # seconds: Keras redraws the bar at most this often
# Keras's styles: bold step count and time, green for the done part of the bar, white for the rest
BOLD, GREEN, WHITE, RESET = "\x1b[1m", "\x1b[32m", "\x1b[37m", "\x1b[0m"
ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def widgets_installed() -> bool:
    """Whether ipywidgets, which draws tqdm's notebook bar, can be imported."""
    return importlib.util.find_spec("ipywidgets") is not None


def notebook_bar():
    """tqdm's live bar class in a Jupyter notebook that can draw it, else None (the text bar's places)."""
    if not (in_jupyter() and widgets_installed()):
        return None
    from tqdm.auto import tqdm  # in Jupyter: tqdm.notebook's widget

    return tqdm


def resolve_verbose(verbose: int | str) -> int:
    """The level to print at: 0, 1 or 2 as given; ``"auto"``, 1 on a terminal and in a notebook
    with the live bar, 2 elsewhere."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() or notebook_bar() is not None else 2
    if verbose not in (0, 1, 2):
        raise UserError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}: try verbose='auto'")
    return int(verbose)


def format_value(value: float, verbose: int = 1) -> str:
    """A number as Keras's bar shows it: 4 decimals, or scientific notation at 0.001 and below
    (verbose=1 looks at the absolute value, verbose=2 at the value itself)."""
    large = abs(value) > 1e-3 if verbose == 1 else value > 1e-3
    return f"{value:.4f}" if large else f"{value:.4e}"


def format_logs(logs: dict[str, float], verbose: int = 1) -> list[str]:
    """``["accuracy: 0.4738", "loss: 1.4651", ...]``, sorted by key as Keras 3 keeps its logs."""
    return [f"{key}: {format_value(value, verbose)}" for key, value in sorted(logs.items())]


def format_step_time(seconds: float) -> str:
    """Keras's time per step: ``2s/step``, ``12ms/step`` or ``850us/step``."""
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def format_eta(seconds: float) -> str:
    """Keras's time left: ``42s``, ``1:02`` or ``1:02:03``, in whole seconds cut down (not rounded)."""
    if seconds > 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds > 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(seconds)}s"


def visible_length(text: str) -> int:
    return len(ESCAPE.sub("", text))


def wrap_parts(parts: list[str], width: int) -> str:
    """Join ``parts`` with " - " on as few lines as fit in ``width`` columns; a part is never cut.
    Continuation lines are indented by two spaces; colour codes take no room."""
    lines = [parts[0]]
    for part in parts[1:]:
        if visible_length(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " - " + part
        else:
            lines.append("  " + part)
    return "\n".join(lines)


def terminal_width() -> int:
    return shutil.get_terminal_size().columns


class EpochProgress:
    """One epoch's lines. ``update(step, logs)`` feeds the running means (every few steps and
    after the first one); ``close(logs)`` prints the epoch's line, or ``close(None)`` ends
    an interrupted bar."""

    def __init__(self, verbose: int, epoch: int, epochs: int, steps: int):
        self.verbose, self.steps = verbose, steps
        self.started = time.time()  # Keras: the bar is made as the epoch begins
        self.after_first_step: float | None = None
        self.last_drawn, self.drawn_width = 0.0, 0
        self.count_digits = len(str(steps))
        if verbose and epochs > 1:  # Keras leaves the header out when there is one epoch
            print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        live_bar = notebook_bar() if verbose == 1 else None
        # Jupyter: tqdm's widget, gone at the epoch's end, where Keras's last line takes its place
        self.live = live_bar(total=steps, unit="step", leave=False) if live_bar is not None else None

    def seconds_per_step(self, step: int, now: float) -> float:
        """Keras's estimate: the first step (warm-up, compilation) is left out once there are more."""
        if step == 1:
            self.after_first_step = now
        if self.after_first_step is not None and step > 1:
            return (now - self.after_first_step) / (step - 1)
        return (now - self.started) / step

    def update(self, step: int, logs: dict[str, float]) -> None:
        if self.verbose != 1:  # Keras's verbose=2 bar sees only the end of the epoch
            return
        now = time.time()
        per_step = self.seconds_per_step(step, now)
        if self.live is not None:  # tqdm redraws when it is time to
            self.live.set_postfix_str(" - ".join(format_logs(logs)), refresh=False)
            self.live.update(step - self.live.n)
            return
        if now - self.last_drawn < REDRAW_INTERVAL:
            return
        self.last_drawn = now
        eta = format_eta(per_step * (self.steps - step))
        self.draw(self.running_line(step, eta, format_step_time(per_step), format_logs(logs), terminal_width() - 1))

    def count(self, step: int) -> str:
        return f"{step:>{self.count_digits}}/{self.steps}"

    def bar(self, step: int, width: int) -> str:
        done = int(width * step / self.steps)
        return (f"{GREEN}{'━' * done}{RESET}" if done > 0 else "") + f"{WHITE}{'━' * (width - done)}{RESET}"

    def running_line(self, step: int, eta: str, per_step: str, numbers: list[str], width: int) -> str:
        """Keras's running bar, made to fit ``width`` columns: the bar narrows, then the bar, the
        time per step, the time left and the numbers other than the loss go, in that order."""
        count = f"{BOLD}{self.count(step)}{RESET}"
        times = [f" {BOLD}{eta}{RESET}", f" {per_step}"]
        loss_only = [number for number in numbers if number.startswith("loss: ")]
        for kept_times, kept_numbers in ((2, numbers), (1, numbers), (0, numbers), (0, loss_only)):
            tail = "".join(times[:kept_times]) + "".join(f" - {number}" for number in kept_numbers)
            room = width - visible_length(count) - 1 - visible_length(tail)
            if kept_times == 2 and room >= MIN_BAR_WIDTH:
                return f"{count} {self.bar(step, min(BAR_WIDTH, room))}{tail}"
            if visible_length(count + tail) <= width:
                return count + tail
        return ESCAPE.sub("", count + tail)[:width]  # a window too narrow even for that: as much as fits

    def draw(self, text: str, end: str = "") -> None:
        """Redraw the bar in place: back to the line's start, then blank out what is left of the last one."""
        first, _, rest = text.partition("\n")
        width = visible_length(first)
        padding = " " * max(self.drawn_width - width, 0)
        sys.stdout.write("\r" + first + padding + ("\n" + rest if rest else "") + end)
        sys.stdout.flush()
        self.drawn_width = width

    def close(self, logs: dict[str, float] | None) -> None:
        now = time.time()
        if self.live is not None:
            if logs is not None:
                self.live.update(self.steps - self.live.n)  # full: tqdm would mark a short bar as failed
            self.live.leave = logs is None  # interrupted: the bar stays where it stood
            self.live.close()
        if self.verbose == 1 and logs is None:  # interrupted: the bar stays where it stood, the next line below it
            if self.drawn_width:
                print(flush=True)
            return
        if self.verbose == 0 or logs is None:
            return
        per_step = format_step_time(self.seconds_per_step(self.steps, now))
        elapsed = f"{now - self.started:.0f}s"
        if self.verbose == 2:  # one line per epoch, as Keras's; at a width the environment names, wrapped between parts
            parts, width = [self.count(self.steps), elapsed, per_step, *format_logs(logs, 2)], width_for(sys.stdout)
            print(" - ".join(parts) if width is None else wrap_parts(parts, width), flush=True)
            return
        count = f"{BOLD}{self.count(self.steps)}{RESET}"
        head = f"{count} {self.bar(self.steps, BAR_WIDTH)} {BOLD}{elapsed}{RESET} {per_step}"
        if self.live is not None:  # under the notebook's bar: Keras's line, whole, as Keras prints it there
            print(" - ".join([head, *format_logs(logs)]), flush=True)
            return
        self.draw(wrap_parts([head, *format_logs(logs)], terminal_width()), end="\n")
