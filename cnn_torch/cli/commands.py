"""``cnn-torch COMMAND ...`` and ``python -m cnn_torch COMMAND ...``: one name for the six scripts.

``cnn-torch train --epochs 2`` runs exactly what ``python scripts/train.py --epochs 2`` runs
(``cnn_torch/cli/train.py``'s ``main``); the same for evaluate, predict, compare and plot-history.
While the command runs, ``sys.argv[0]`` is the command as typed (``cnn-torch train``): argparse
names it in its usage line, and the "Resume with:" hints repeat it (``flags.script_command``).
"""

from __future__ import annotations

import difflib
import importlib
import sys

# command -> (module in cnn_torch.cli, what it does)
COMMANDS = {
    "train": ("train", "train a lesson CNN (the lesson's compile, fit and history plots)"),
    "evaluate": ("evaluate", "a trained run's loss, accuracy and confusion matrix on a split"),
    "predict": ("predict", "a trained run's class for image files"),
    "compare": ("compare", "several settings of one model side by side"),
    "plot-history": ("plot_history", "the loss and accuracy plots of one or more runs"),
    "lesson-data": ("lesson_data", "the lesson's cifar10_images_small/ folders from a CIFAR-10 copy"),
}


def usage(program: str = "cnn-torch") -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    head = f"usage: {program} COMMAND [flags]  ({program} COMMAND --help lists its flags)"
    return head + "\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None, program: str = "cnn-torch") -> int:
    """Run ``argv``'s command; ``program``: how the learner started it (``python -m cnn_torch``
    passes its own name), repeated in the usage lines and hints."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(program))
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command.replace("_", "-"), COMMANDS, n=1)
        fix = f"did you mean {program} {close[0]}?" if close else f"choose one of {', '.join(COMMANDS)}"
        print(f"error: unknown command {command!r}: {fix} ({program} --help lists them)", file=sys.stderr)
        return 2
    module = importlib.import_module(f"cnn_torch.cli.{COMMANDS[command][0]}")
    typed, sys.argv[0] = sys.argv[0], f"{program} {command}"  # the command as typed, for argparse and the hints
    try:
        return module.main(rest)
    finally:
        sys.argv[0] = typed  # called in-process (a test, a notebook): leave sys.argv as it was
