"""Train one model with our ``fit`` and with Keras's ``model.fit``; measure the gap.

Both start from the same weights (Keras initialises, ``keras_to_torch`` copies), see the
same float32 images in the same order (``shuffle=False``) and validate on the same
samples, so their Histories must agree up to float rounding. ``tests/test_keras_parity.py``
asserts that; ``scripts/parity_table.py`` prints the measured gaps as a table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cnn_torch.history import History
from cnn_torch.keras_compat import import_keras, keras_model_like, keras_to_torch, to_channels_last
from cnn_torch.models import build_model
from cnn_torch.optim import KerasAdam, KerasRMSprop
from cnn_torch.training import fit


@dataclass(frozen=True)
class OptimizerPair:
    """Our optimizer and the Keras optimizer it stands for, both with Keras's default lr."""

    make_ours: Callable[[object], torch.optim.Optimizer]
    keras_name: str  # a class in keras.optimizers
    keras_kwargs: tuple[tuple[str, float], ...]

    def make_keras(self):
        return getattr(import_keras().optimizers, self.keras_name)(**dict(self.keras_kwargs))


OPTIMIZERS: dict[str, OptimizerPair] = {
    "SGD": OptimizerPair(
        lambda params: torch.optim.SGD(params, lr=0.01), "SGD", (("learning_rate", 0.01),)
    ),
    "SGD+momentum": OptimizerPair(
        lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9),
        "SGD", (("learning_rate", 0.01), ("momentum", 0.9)),
    ),
    "Adam (KerasAdam)": OptimizerPair(
        lambda params: KerasAdam(params, learning_rate=0.001), "Adam", (("learning_rate", 0.001),)
    ),
    "RMSprop (KerasRMSprop)": OptimizerPair(
        lambda params: KerasRMSprop(params, learning_rate=0.001), "RMSprop", (("learning_rate", 0.001),)
    ),
    # for reference: torch's own Adam puts epsilon elsewhere, so it drifts a little
    "torch.optim.Adam(eps=1e-7)": OptimizerPair(
        lambda params: torch.optim.Adam(params, lr=0.001, eps=1e-7), "Adam", (("learning_rate", 0.001),)
    ),
}


@dataclass
class ParityData:
    """NCHW float32 images in [0, 1] and int64 labels; ``val_*`` may be ``None``."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor | None
    val_labels: torch.Tensor | None
    num_classes: int


def make_data(
    num_train: int = 72,
    num_val: int = 40,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (3, 24, 24),
    seed: int = 0,
) -> ParityData:
    """Noisy images that carry a faint per-class pattern: learnable, but not in 3 epochs,
    so the accuracies move and argmax ties are rare. The default sizes give partial last
    batches at batch 32 (72 = 32 + 32 + 8, 40 = 32 + 8)."""
    generator = torch.Generator().manual_seed(seed)
    templates = torch.rand(num_classes, *input_shape, generator=generator)
    labels = torch.randint(num_classes, (num_train + num_val,), generator=generator)
    noise = torch.rand(num_train + num_val, *input_shape, generator=generator)
    images = 0.7 * noise + 0.3 * templates[labels]
    val_images, val_labels = (images[num_train:], labels[num_train:]) if num_val else (None, None)
    return ParityData(images[:num_train], labels[:num_train], val_images, val_labels, num_classes)


@dataclass
class KerasRun:
    """What Keras's ``model.fit`` returned, and the weights it started from."""

    history: dict[str, list[float]]
    epoch: list[int]
    params: dict
    initial_state: dict[str, torch.Tensor]  # Keras's initial weights, in our layout
    keras_model: object  # trained


def keras_twin(model_name: str, data: ParityData, seed: int = 0) -> tuple[object, dict[str, torch.Tensor]]:
    """The Keras model of ``model_name`` for ``data``'s images, freshly initialised from
    ``seed``, and the same weights as a state dict for our model."""
    keras = import_keras()
    input_shape = tuple(data.train_images.shape[1:])
    torch_model = build_model(model_name, num_classes=data.num_classes, input_shape=input_shape)
    keras.utils.set_random_seed(seed)  # the Keras initialisers draw from it
    keras_model = keras_model_like(torch_model)
    keras_to_torch(keras_model, torch_model)
    return keras_model, {k: v.clone() for k, v in torch_model.state_dict().items()}


def keras_fit(
    model_name: str,
    keras_optimizer,
    data: ParityData,
    *,
    epochs: int = 3,
    batch_size: int = 32,
    validation_split: float = 0.0,
    seed: int = 0,
) -> KerasRun:
    """Build the Keras twin of ``model_name``, note its initial weights, ``model.fit`` it."""
    keras = import_keras()
    keras_model, initial_state = keras_twin(model_name, data, seed)
    keras_model.compile(
        optimizer=keras_optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    validation_data = None
    if data.val_images is not None and not validation_split:
        validation_data = (to_channels_last(data.val_images), data.val_labels.numpy())
    result = keras_model.fit(
        to_channels_last(data.train_images), data.train_labels.numpy(),
        batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0,
        validation_data=validation_data, validation_split=validation_split,
    )
    return KerasRun(dict(result.history), list(result.epoch), dict(result.params), initial_state, keras_model)


def our_fit(
    model_name: str,
    make_optimizer: Callable[[object], torch.optim.Optimizer],
    data: ParityData,
    initial_state: dict[str, torch.Tensor],
    *,
    epochs: int = 3,
    batch_size: int = 32,
    validation_split: float = 0.0,
) -> tuple[History, nn.Module]:
    """Our ``fit`` from the same initial weights, with every Keras default spelled out."""
    input_shape = tuple(data.train_images.shape[1:])
    model = build_model(model_name, num_classes=data.num_classes, input_shape=input_shape)
    model.load_state_dict(initial_state)
    validation_data = None
    if data.val_images is not None and not validation_split:
        validation_data = (data.val_images, data.val_labels)
    history = fit(
        model, nn.CrossEntropyLoss(), make_optimizer(model.parameters()),
        data.train_images, data.train_labels,
        epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0, device="cpu",
        validation_data=validation_data, validation_split=validation_split,
        validation_batch_size=batch_size,  # Keras: validation_batch_size defaults to batch_size
    )
    return history, model


def history_differences(ours: dict[str, list[float]], theirs: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per key and epoch: relative difference for the losses, absolute for the accuracies."""
    differences = {}
    for key, keras_values in theirs.items():
        pairs = zip(ours[key], keras_values, strict=True)
        if key.endswith("loss"):
            differences[key] = [abs(a - b) / abs(b) for a, b in pairs]
        else:
            differences[key] = [abs(a - b) for a, b in pairs]
    return differences


def epoch_maxima(differences: dict[str, list[float]]) -> list[tuple[float, float]]:
    """Per epoch: (max relative loss difference, max accuracy difference) over the keys."""
    epochs = len(next(iter(differences.values())))
    loss_keys = [k for k in differences if k.endswith("loss")]
    accuracy_keys = [k for k in differences if not k.endswith("loss")]
    return [
        (max(differences[k][e] for k in loss_keys), max(differences[k][e] for k in accuracy_keys))
        for e in range(epochs)
    ]


@dataclass
class Comparison:
    ours: History
    keras: KerasRun
    differences: dict[str, list[float]]  # see history_differences
    torch_model: nn.Module  # trained


def compare(
    model_name: str,
    optimizer_label: str,
    data: ParityData,
    *,
    epochs: int = 3,
    batch_size: int = 32,
    validation_split: float = 0.0,
    seed: int = 0,
    keras_run: KerasRun | None = None,
) -> Comparison:
    """Fit ``model_name`` both ways with ``OPTIMIZERS[optimizer_label]``. Pass ``keras_run``
    to reuse a Keras run made with the same settings (two rows share Keras's Adam)."""
    pair = OPTIMIZERS[optimizer_label]
    if keras_run is None:
        keras_run = keras_fit(
            model_name, pair.make_keras(), data,
            epochs=epochs, batch_size=batch_size, validation_split=validation_split, seed=seed,
        )
    ours, torch_model = our_fit(
        model_name, pair.make_ours, data, keras_run.initial_state,
        epochs=epochs, batch_size=batch_size, validation_split=validation_split,
    )
    return Comparison(ours, keras_run, history_differences(ours.history, keras_run.history), torch_model)


def compare_optimizers(
    model_name: str, optimizer_labels: list[str], data: ParityData, **settings
) -> dict[str, dict[str, list[float]]]:
    """``history_differences`` per optimizer label; each distinct Keras optimizer trains once."""
    keras_runs: dict[tuple, KerasRun] = {}
    results = {}
    for label in optimizer_labels:
        pair = OPTIMIZERS[label]
        key = (pair.keras_name, pair.keras_kwargs)
        comparison = compare(model_name, label, data, keras_run=keras_runs.get(key), **settings)
        keras_runs[key] = comparison.keras
        results[label] = comparison.differences
    return results


def noise_floor(
    model_name: str, optimizer_label: str, data: ParityData, *, epochs: int = 3, batch_size: int = 32, seed: int = 0
) -> dict[str, list[float]]:
    """Our fit against itself, started once more from every initial weight nudged by one
    float32 ulp (up, then down; the larger gap is kept): how far float rounding alone
    carries two runs apart, as ReLU and max-pool choices amplify it."""
    _, initial_state = keras_twin(model_name, data, seed)
    make_optimizer = OPTIMIZERS[optimizer_label].make_ours
    settings = {"epochs": epochs, "batch_size": batch_size}
    reference, _ = our_fit(model_name, make_optimizer, data, initial_state, **settings)
    gaps: dict[str, list[float]] = {}
    for direction in (math.inf, -math.inf):
        nudged = {k: torch.nextafter(v, torch.full_like(v, direction)) for k, v in initial_state.items()}
        history, _ = our_fit(model_name, make_optimizer, data, nudged, **settings)
        for key, values in history_differences(history.history, reference.history).items():
            gaps[key] = [max(pair) for pair in zip(gaps.get(key, values), values, strict=True)]
    return gaps


def markdown_table(results: dict[str, dict[str, list[float]]]) -> str:
    """Rows: optimizers; columns: per epoch, max relative loss gap and max accuracy gap."""
    epochs = len(next(iter(next(iter(results.values())).values())))
    header = ["optimizer"]
    for e in range(1, epochs + 1):
        header += [f"epoch {e} loss (rel.)", f"epoch {e} accuracy"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, differences in results.items():
        cells = [label]
        for loss_gap, accuracy_gap in epoch_maxima(differences):
            cells += [_sci(loss_gap), _sci(accuracy_gap)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _sci(value: float) -> str:
    return "0" if value == 0 else f"{value:.1e}" if math.isfinite(value) else str(value)
