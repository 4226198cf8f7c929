"""The lesson's two plots, redrawn in place after every epoch while ``fit`` trains.

    history = fit(model, loss_fn, optimizer, train_images, train_labels, epochs=10,
                  validation_data=(val_images, val_labels), on_epoch_end=LivePlot())

In Jupyter the figure (loss and accuracy, training and validation, as ``plot_history``
draws them) appears under the cell after the first epoch and is replaced after each one,
so a learner watches the validation curve turn away from the training curve: overfitting,
as it happens. Anywhere else (a terminal, a script, CI) it draws nothing, so the same
notebook code runs as a script. It uses ``fit``'s one hook, ``on_epoch_end(epoch, logs)``:
nothing in the loop.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from cnn_torch.history import History


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (where IPython can display a figure under the cell)."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    ipython = shell.get_ipython()
    return ipython is not None and type(ipython).__name__ == "ZMQInteractiveShell"


class LivePlot:
    """``on_epoch_end`` for ``fit``: keeps the epochs' logs and redraws the two plots.

    ``then`` is another ``on_epoch_end`` to call as well (e.g. a run's recorder), since
    ``fit`` has one hook. ``display`` is IPython's ``display`` (given in tests); by default
    it is used only in Jupyter.
    """

    def __init__(self, title: str = "", then: Callable[[int, dict], None] | None = None, display=None):
        self.title, self.then = title, then
        self.history = History()
        self._display = display
        self._handle = None

    def __call__(self, epoch: int, logs: dict) -> None:
        self.history.append(epoch, logs)
        if self.then is not None:
            self.then(epoch, logs)
        display = self._display
        if display is None:
            if not in_jupyter():
                return
            from IPython.display import display
        fig = self.figure()
        if self._handle is None:
            self._handle = display(fig, display_id=True)  # the figure, under the cell
        else:
            self._handle.update(fig)  # replaced in place: one figure, not one per epoch
        from cnn_torch.plots import plt

        plt.close(fig)  # shown already; closing keeps Jupyter from drawing it again at the cell's end

    def figure(self):
        """The lesson's loss and accuracy plots of the epochs so far, side by side."""
        from cnn_torch.plots import TRAIN_NOTE, draw_metric, history_frame, plt

        frame = history_frame(self.history)
        fig, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(11, 4))
        draw_metric(loss_ax, frame, "loss")
        draw_metric(accuracy_ax, frame, "accuracy")
        last = self.history.epoch[-1] + 1
        fig.suptitle(f"{self.title + ': ' if self.title else ''}after epoch {last}")
        fig.text(0.5, -0.02, TRAIN_NOTE, ha="center", fontsize=8, color="gray")
        return fig
