"""Build the 2026 lesson's data folders (cifar10_images_small/) from a CIFAR-10 copy.

This file is the command's entry point; its code is ``cnn_torch/cli/lesson_data.py``. Installed,
the same command is ``cnn-torch lesson-data ...`` and ``python -m cnn_torch lesson-data ...``;
``--help`` lists the flags.
"""

import sys

try:
    from cnn_torch.cli.lesson_data import main
except ModuleNotFoundError as error:  # the one line a learner needs, not a traceback
    if error.name not in ("cnn_torch", "torch", "torchvision", "pandas", "seaborn", "tqdm"):
        raise
    sys.exit(f"error: {error.name} is not installed: run  pip install -e .  in the cnn-torch folder first")

if __name__ == "__main__":
    sys.exit(main())
