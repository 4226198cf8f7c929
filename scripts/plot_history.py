"""Draw the lesson's history plots again from a finished (or interrupted) run.

This file is the command's entry point; its code is ``cnn_torch/cli/plot_history.py``. Installed, the same
command is ``cnn-torch plot-history ...`` and ``python -m cnn_torch plot-history ...``; ``--help`` lists the flags.
"""

import sys

try:
    from cnn_torch.cli.plot_history import main
except ModuleNotFoundError as error:  # the one line a learner needs, not a traceback
    if error.name not in ("cnn_torch", "torch", "torchvision", "pandas", "seaborn", "tqdm"):
        raise
    sys.exit(f"error: {error.name} is not installed: run  pip install -e .  in the cnn-torch folder first")

if __name__ == "__main__":
    sys.exit(main())
