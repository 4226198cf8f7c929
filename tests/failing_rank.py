"""``scripts/train.py`` with one rank that fails in the middle of training (for test_distributed.py).

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/failing_rank.py RANK [train.py flags]

On rank RANK the loss function raises a UserError on the second training batch, while the
other ranks are already waiting for it in the gradient all-reduce. The loss is swapped in
here, by wrapping the script's ``fit``, so that scripts/train.py needs no test hook.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import torch

from cnn_torch.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
FAIL_AT_CALL = 2  # the second call of the loss is the second training batch (validation comes after the epoch)


def load_train_script():
    return importlib.import_module("cnn_torch.cli.train")


class FailingLoss(torch.nn.CrossEntropyLoss):
    """Cross-entropy that raises the way a real problem would: a UserError, caught by main()."""

    def __init__(self, user_error: type[Exception]):
        super().__init__()
        self.user_error, self.calls = user_error, 0

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == FAIL_AT_CALL:
            raise self.user_error("a deliberate failure in the loss, injected by tests/failing_rank.py")
        return super().forward(logits, labels)


def main() -> int:
    fail_rank, train_argv = int(sys.argv[1]), sys.argv[2:]
    train_script = load_train_script()
    if int(os.environ.get("RANK", "0")) == fail_rank:
        real_fit = train_script.fit

        def fit_with_failing_loss(model, loss_fn, *args, **kwargs):
            return real_fit(model, FailingLoss(UserError), *args, **kwargs)

        train_script.fit = fit_with_failing_loss
    return train_script.main(train_argv)


if __name__ == "__main__":
    sys.exit(main())
