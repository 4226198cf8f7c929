"""Text sized to where it goes: on a terminal, wrapped at word boundaries to its width, so an
80-column window never cuts a word; elsewhere (a log file, a pipe, a notebook) one line per
message, as the epoch lines of ``verbose=2`` are. ``in_jupyter`` tells a notebook apart, where
a figure or a live progress bar can be displayed under the cell.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from typing import TextIO


def fitted(text: str, file: TextIO | None = None, indent: str = "    ") -> str:
    """``text`` wrapped for ``file`` (default: stdout): continuation lines start with ``indent``."""
    file = file or sys.stdout
    if not getattr(file, "isatty", lambda: False)():
        return text
    width = shutil.get_terminal_size().columns
    return textwrap.fill(text, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


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
