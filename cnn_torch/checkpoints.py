"""Self-describing checkpoints, loaded only with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and builtins: the ``state_dict`` plus what it
takes to rebuild the model and use it (model name and constructor arguments, input
shape, class names, pixel scaling, the L2 factor of Keras's ``kernel_regularizer`` the model
carries, ``kernel_l2``), the epoch and History, library versions, and for
resumable ``last.pt`` files the optimizer state, every random-number state and, with early
stopping, its state (patience count, best value, best weights).
Nothing in it is a pickled object, so loading it can never run code.
"""

from __future__ import annotations

import importlib.metadata
import os
import pickle
import platform
import random
import warnings
from pathlib import Path

import torch
from torch import nn

from cnn_torch.errors import UserError
from cnn_torch.history import History
from cnn_torch.models import build_model
from cnn_torch.platform.fileio import atomic_write

FORMAT = "cnn-torch-checkpoint"
FORMAT_VERSION = 1
# How pixels become model inputs: the lesson's ``/ 255.0``, nothing else.
NORMALISATION = {"scale": 1 / 255.0, "mean": None, "std": None}


def _package_version(name: str) -> str | None:
    """Read from the installed metadata: importing torchvision just for this costs seconds."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str]:

    # str(): torch.__version__ is a TorchVersion, which weights_only=True refuses to unpickle
    return {
        "torch": str(torch.__version__),
        "torchvision": _package_version("torchvision"),
        "python": platform.python_version(),
    }


def rng_state() -> dict:
    """Every random-number state a run draws from, as tensors and builtins."""
    state = {"torch": torch.get_rng_state(), "python": _python_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        name, keys, pos, has_gauss, gauss = np.random.get_state()
        state["numpy"] = [name, torch.from_numpy(keys.astype("int64")), pos, has_gauss, gauss]
    except ImportError:  # pragma: no cover - numpy comes with pandas
        pass
    return state


def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, keys.numpy().astype("uint32"), pos, has_gauss, gauss))


def make_checkpoint(
    model: nn.Module,
    *,
    class_names: list[str],
    epoch: int,
    history: History,
    optimizer: torch.optim.Optimizer | None = None,
    seed: int | None = None,
    resumable: bool = False,
    early_stopping: dict | None = None,
) -> dict:
    """The checkpoint dict; ``epoch`` is the number of finished epochs. ``early_stopping``:
    ``EarlyStopping.state_dict()``, kept in a resumable checkpoint."""
    checkpoint = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_name": model.model_name,
        "model_kwargs": dict(model.model_kwargs),
        "input_shape": list(model.input_shape),
        "class_names": list(class_names),
        "normalisation": dict(NORMALISATION),
        "epoch": epoch,
        "history": history.to_dict(),
        "seed": seed,
        "versions": versions(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        # Keras's model.save keeps each layer's kernel_regularizer: evaluate adds its penalty again
        "kernel_l2": float(getattr(model, "kernel_l2", 0.0)),
    }
    if resumable:
        checkpoint["optimizer"] = {"name": type(optimizer).__name__, "state_dict": optimizer.state_dict()}
        checkpoint["rng"] = rng_state()
        if early_stopping is not None:
            checkpoint["early_stopping"] = early_stopping
    return checkpoint


def save_checkpoint(path: str | os.PathLike, checkpoint: dict) -> Path:
    """Write atomically: a crash mid-write leaves the previous file intact."""
    path = Path(path)
    with atomic_write(path, "wb") as f:
        torch.save(checkpoint, f)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load with ``weights_only=True``; every failure is one line that names the fix."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a folder: pass the model.pt, best.pt or last.pt inside it")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist: pass the model.pt, best.pt or last.pt of a run")
    try:
        with warnings.catch_warnings():  # a plain pickle file draws a protocol warning before the refusal
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights_only" in str(error) or "Unsupported" in str(error):
            raise UserError(
                f"checkpoint {path} holds Python objects that could run code when loaded;"
                " refused (only weights_only-safe cnn-torch checkpoints are loaded)"
            ) from None
        reason = (str(error).strip().splitlines() or ["unreadable pickle"])[0][:80]
        raise UserError(f"checkpoint {path} is corrupt ({reason}): use another checkpoint of the run") from None
    except Exception as error:  # torch's readers fail on garbage with anything: IndexError, KeyError, ...
        text = str(error).strip()
        reason = text.splitlines()[0][:80] if text and not isinstance(error, LookupError) else type(error).__name__
        raise UserError(
            f"checkpoint {path} is truncated or not a checkpoint ({reason}): use another checkpoint of the run"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise UserError(
            f"{path} is not a cnn-torch checkpoint: pass a model.pt, best.pt or last.pt written by cnn-torch"
        )
    if checkpoint.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"checkpoint {path} has format version {checkpoint.get('format_version')!r}; this cnn-torch"
            f" reads version {FORMAT_VERSION}: use the cnn-torch version that wrote it"
        )
    return checkpoint


def model_from_checkpoint(checkpoint: dict) -> nn.Module:
    """Rebuild the model from the checkpoint alone and load its weights."""
    kwargs = dict(checkpoint["model_kwargs"])
    pretrained = kwargs.get("weights")
    if pretrained is not None:  # the state_dict holds the pretrained base too: no download to rebuild it
        kwargs["weights"] = None
    model = build_model(checkpoint["model_name"], **kwargs)
    if pretrained is not None:
        model.model_kwargs["weights"] = pretrained  # what the model is, for the checkpoints it writes
    load_weights(model, checkpoint)
    if checkpoint.get("kernel_l2"):  # absent from checkpoints written before it was kept
        model.kernel_l2 = float(checkpoint["kernel_l2"])
    return model


def load_weights(model: nn.Module, checkpoint: dict) -> None:
    if checkpoint["model_name"] != getattr(model, "model_name", None):
        raise UserError(
            f"the checkpoint holds a {checkpoint['model_name']} but the model is a"
            f" {getattr(model, 'model_name', type(model).__name__)}: pass --model {checkpoint['model_name']}"
        )
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        # the first line only says "Error(s) in loading state_dict"; the second names the layer
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = lines[1 if len(lines) > 1 else 0][:200]
        raise UserError(
            f"the checkpoint's weights do not fit this model ({reason}): build it with the same arguments"
        ) from None


# --------------------------------------------------------------------------- Keras's model.save / load_model


def save_model(
    model: nn.Module, path: str | os.PathLike, class_names: list[str], history: History | None = None
) -> Path:
    """Keras's ``model.save('model_intro.keras')``: the weights and what rebuilds the model
    (its name and arguments), plus the class names and, if given, the History, in one
    checkpoint file (the same format as a run's ``model.pt``). The folder is created if
    needed, as the lesson's ``os.makedirs("models", exist_ok=True)`` does."""
    if not hasattr(model, "model_name"):
        raise UserError("save_model saves the lesson's models (cnn_torch.models); for another model save its"
                        " state_dict with torch.save(model.state_dict(), path)")  # fmt: skip
    history = history if history is not None else getattr(model, "history", None) or History()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = make_checkpoint(model, class_names=class_names, epoch=len(history.epoch), history=history)
    return save_checkpoint(path, checkpoint)


def load_model(path: str | os.PathLike) -> nn.Module:
    """Keras's ``keras.models.load_model(path)``: the model rebuilt from a checkpoint alone,
    with its weights, in eval mode, and its training History as ``model.history`` (as ``fit``
    leaves it), so saving it again keeps the history. ``load_checkpoint(path)["class_names"]``
    has its classes."""
    checkpoint = load_checkpoint(path)
    model = model_from_checkpoint(checkpoint)
    model.history = History.from_dict(checkpoint["history"])
    model.eval()
    return model
