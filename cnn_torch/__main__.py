"""``python -m cnn_torch train ...``: the command line (``cnn_torch/cli/commands.py``)."""

import sys

from cnn_torch.cli.commands import main

sys.exit(main(program="python -m cnn_torch"))
