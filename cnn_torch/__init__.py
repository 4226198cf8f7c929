"""cnn-torch: the Carpentries CNN lesson's Keras ``compile`` / ``fit`` / plot workflow, in PyTorch.

The modules at this level are the lesson; read them in the lesson's order:

1. ``data.py``         load the images (``load_data``), as ``image_dataset_from_directory`` or
                       ``keras.datasets.cifar10.load_data()`` would
2. ``image_grids.py``  look at them: the lesson's ``plt.imshow`` grids
3. ``models.py``       the lesson's Keras CNNs as ``nn.Sequential`` models
4. ``training.py``     ``fit``: Keras's ``model.fit`` written out as one PyTorch loop
5. ``history.py``      the History it returns, as Keras's
6. ``plots.py``        the lesson's loss and accuracy plots (pandas + seaborn)
7. ``evaluation.py``   ``evaluate`` and ``predict``
8. ``metrics.py``      the confusion matrix and per-class accuracy
9. ``checkpoints.py``  save a model and load it again
10. ``visualise.py``   what the network sees: filters, feature maps, attributions
11. ``workshop.py``    the lesson's helper functions, for the episode notebooks

``errors.py`` holds the one exception a learner sees. The rest is in subpackages, each named
for what it holds: ``keras_rules`` (Keras's optimizers, augmentation, L2, callbacks,
TensorBoard), ``sources`` (where the images come from), ``machinery`` (checks, progress,
Ctrl-C, the first-batch trace), ``platform`` (device, torchrun, files), ``cli`` (the command
line and its run folders) and ``parity`` (the proof against Keras, for the tests).
"""

from cnn_torch import models
from cnn_torch.errors import UserError
from cnn_torch.evaluation import evaluate, predict, probabilities
from cnn_torch.history import History
from cnn_torch.keras_rules.stopping import EarlyStopping
from cnn_torch.keras_rules.tensorboard import TensorBoard
from cnn_torch.plots import LivePlot
from cnn_torch.training import fit

__all__ = [
    "EarlyStopping", "History", "LivePlot", "TensorBoard", "UserError", "evaluate", "fit", "models", "predict",
    "probabilities",
]
__version__ = "0.1.0"
