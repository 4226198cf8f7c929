"""Train one lesson model under several settings and compare them on one figure and one table.

This file is the command's entry point; its code is ``cnn_torch/cli/compare.py``. Installed, the same
command is ``cnn-torch compare ...`` and ``python -m cnn_torch compare ...``; ``--help`` lists the flags.
"""

import sys

try:
    from cnn_torch.cli.compare import main
except ModuleNotFoundError as error:  # the one line a learner needs, not a traceback
    if error.name not in ("cnn_torch", "torch", "torchvision", "pandas", "seaborn", "tqdm"):
        raise
    sys.exit(f"error: {error.name} is not installed: run  pip install -e .  in the cnn-torch folder first")

if __name__ == "__main__":
    sys.exit(main())
