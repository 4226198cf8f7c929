"""``cnn-torch COMMAND ...`` and ``python -m cnn_torch COMMAND ...``: one name for the five scripts.

``cnn-torch train --epochs 2`` runs exactly what ``python scripts/train.py --epochs 2`` runs
(``cnn_torch/cli/train.py``'s ``main``); the same for evaluate, predict, compare and plot-history.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module in cnn_torch.cli, what it does)
COMMANDS = {
    "train": ("train", "train a lesson CNN (the lesson's compile, fit and history plots)"),
    "evaluate": ("evaluate", "a trained run's loss, accuracy and confusion matrix on a split"),
    "predict": ("predict", "a trained run's class for image files"),
    "compare": ("compare", "several settings of one model side by side"),
    "plot-history": ("plot_history", "the loss and accuracy plots of one or more runs"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    head = "usage: cnn-torch COMMAND [flags]  (cnn-torch COMMAND --help lists its flags)"
    return head + "\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        known = ", ".join(COMMANDS)
        print(f"error: unknown command {command!r}: choose one of {known} (cnn-torch train --help)", file=sys.stderr)
        return 2
    module = importlib.import_module(f"cnn_torch.cli.{COMMANDS[command][0]}")
    sys.argv[0] = f"cnn-torch {command}"  # argparse's usage line names the command that was typed
    return module.main(rest)
