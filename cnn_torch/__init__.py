"""cnn-torch: the Carpentries CNN lesson's Keras ``compile`` / ``fit`` / plot workflow, in PyTorch."""

from cnn_torch import models
from cnn_torch.errors import UserError
from cnn_torch.evaluation import evaluate, predict, probabilities
from cnn_torch.history import History
from cnn_torch.stopping import EarlyStopping
from cnn_torch.tensorboard import TensorBoard
from cnn_torch.training import fit

__all__ = [
    "EarlyStopping", "History", "TensorBoard", "UserError", "evaluate", "fit", "models", "predict", "probabilities",
]
__version__ = "0.1.0"
