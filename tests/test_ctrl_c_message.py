"""The line a learner reads after Ctrl-C in a notebook (Jupyter's "interrupt the kernel" is a
SIGINT): which epoch it stopped in or after, and how to get the History, since ``fit``'s return
value never arrives. The epochs are counted as the progress bar counts them, from 1."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from cnn_torch import fit
from cnn_torch.history import History
from cnn_torch.machinery.interrupt import TrainingInterrupted
from cnn_torch.models import build_model


@pytest.mark.parametrize(
    "pressed, message, resume_at",
    [
        ("validating", "training interrupted after epoch 6; history = model.history has its 6 finished epochs", 6),
        ("training", "training interrupted during epoch 6 (not kept); history = model.history has its 5 finished"
                     " epochs", 5),
        ("training_1", "training interrupted during epoch 1 (not kept); history = model.history has no finished"
                       " epoch", 0),
    ],
)  # fmt: skip
def test_ctrl_c_names_the_epoch_the_history_holds(pressed, message, resume_at):
    torch.manual_seed(0)
    model = build_model("model_intro", num_classes=10)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(16) % 10
    in_epoch = 0 if pressed == "training_1" else 5  # epoch 6, 0-based: the History holds 5 while it runs

    def press_ctrl_c(module, inputs, output):
        history = getattr(model, "history", None)  # None during fit's checks, which run the model once
        if history is not None and module.training == pressed.startswith("training") and len(history.epoch) == in_epoch:
            hook.remove()  # once: a second Ctrl-C would abort at once
            os.kill(os.getpid(), signal.SIGINT)  # fit's handler takes it, as in a Jupyter kernel

    hook = model.register_forward_hook(press_ctrl_c)
    with pytest.raises(TrainingInterrupted) as excinfo:
        fit(model, torch.nn.CrossEntropyLoss(), "adam", images, labels, epochs=8, batch_size=8, seed=0, verbose=0,
            validation_data=(images[:8], labels[:8]))  # fmt: skip
    assert str(excinfo.value) == message
    assert isinstance(model.history, History) and model.history.epoch == list(range(resume_at))
    assert excinfo.value.history is model.history and excinfo.value.epoch == resume_at
