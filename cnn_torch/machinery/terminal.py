"""Text sized to where it goes: on a terminal, wrapped at word boundaries to its width, so an
80-column window never cuts a word; so is text for a width the environment names (``COLUMNS=80``,
which a pager or a terminal multiplexer passes on); elsewhere (a log file, a pipe, a notebook) one
line per message, as the epoch lines of ``verbose=2`` are. ``in_jupyter`` tells a notebook apart, where
a figure or a live progress bar can be displayed under the cell.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from typing import TextIO


def fitted(text: str, file: TextIO | None = None, indent: str = "    ") -> str:
    """``text`` wrapped for ``file`` (default: stdout): continuation lines start with ``indent``;
    each of its own lines is wrapped on its own."""
    width = width_for(file)
    if width is None:
        return text
    return "\n".join(textwrap.fill(line, width, subsequent_indent=indent, break_long_words=False,
                                    break_on_hyphens=False) for line in text.split("\n"))  # fmt: skip


def width_for(file: TextIO | None = None) -> int | None:
    """The columns ``file`` (default: stdout) shows: a terminal's width, or ``COLUMNS`` when the
    environment sets it; None for a file, a pipe or a notebook with no width of its own."""
    file = file or sys.stdout
    if not getattr(file, "isatty", lambda: False)() and not os.environ.get("COLUMNS", "").isdigit():
        return None
    return shutil.get_terminal_size().columns


def fitted_path(label: str, path: str, file: TextIO | None = None, indent: str | None = None) -> str:
    """``label`` then ``path`` on one line when it fits ``file``'s width; else broken after a ``/``
    (never inside a name), the rest on lines that start with ``indent`` (default: under the path)."""
    width = width_for(file)
    if width is None or len(label) + len(path) <= width:
        return label + path
    indent = " " * len(label) if indent is None else indent
    lines, line, empty = [], label, label
    for part in [piece + "/" for piece in path.split("/")[:-1]] + [path.split("/")[-1]]:
        if len(line) + len(part) > width and line != empty:
            lines.append(line)
            line = empty = indent
        line += part
    return "\n".join([*lines, line])


def say(text: str, file: TextIO | None = None, indent: str = "    ") -> None:
    """Print :func:`fitted` ``text`` and flush (progress messages should show at once)."""
    print(fitted(text, file, indent), file=file or sys.stdout, flush=True)


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (where IPython can display a figure or a widget under the cell)."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    ipython = shell.get_ipython()
    return ipython is not None and type(ipython).__name__ == "ZMQInteractiveShell"
