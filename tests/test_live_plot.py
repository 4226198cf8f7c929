"""LivePlot: the lesson's two plots redrawn in place after each epoch, in Jupyter only."""

from __future__ import annotations

import torch

from cnn_torch import fit
from cnn_torch.models import cifar_model_small
from cnn_torch.plots import LivePlot, in_jupyter


class FakeDisplay:
    """IPython's display(obj, display_id=True) and the handle's update(obj), recorded."""

    def __init__(self):
        self.shown, self.updates = [], []

    def __call__(self, fig, display_id=False):
        assert display_id is True
        self.shown.append(fig)
        return self

    def update(self, fig):
        self.updates.append(fig)


def train_three_epochs(on_epoch_end):
    torch.manual_seed(0)
    model = cifar_model_small()
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(40) % 10
    return fit(model, torch.nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters()), images, labels,
               epochs=3, verbose=0, validation_data=(images[:10], labels[:10]), on_epoch_end=on_epoch_end)  # fmt: skip


def test_one_figure_replaced_after_every_epoch():
    display, forwarded = FakeDisplay(), []
    live = LivePlot("tiny", then=lambda epoch, logs: forwarded.append(epoch), display=display)
    history = train_three_epochs(live)
    assert len(display.shown) == 1 and len(display.updates) == 2  # shown once, then replaced in place
    assert forwarded == [0, 1, 2]  # the other hook still runs
    assert live.history.history == history.history
    last = display.updates[-1]
    titles = [ax.get_ylabel() for ax in last.axes]
    assert titles == ["loss", "accuracy"] and "after epoch 3" in last._suptitle.get_text()
    legend = {text.get_text() for ax in last.axes for text in ax.get_legend().get_texts()}
    assert legend == {"loss", "val_loss", "accuracy", "val_accuracy"}
    drawn = [list(line.get_xdata()) for line in last.axes[0].get_lines() if len(line.get_xdata())]
    assert drawn == [[1, 2, 3], [1, 2, 3]]  # loss and val_loss, epochs counted from 1 as fit prints them


def test_nothing_is_drawn_outside_jupyter():
    assert not in_jupyter()
    live = LivePlot()
    train_three_epochs(live)  # no display, no error: a script runs the notebook's code as it is
    assert len(live.history.epoch) == 3
