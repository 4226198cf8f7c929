"""Train one model with our ``fit`` and with Keras's ``model.fit``; measure the gap.

Both start from the same weights (Keras initialises, ``keras_to_torch`` copies), see the
same float32 images in the same order (``shuffle=False``) and validate on the same
samples at the same batch size. ``Setup.arithmetic`` picks what else is held equal:

* ``"keras"``: our Linear and Conv2d layers and our loss compute in Keras's operation
  order (``KerasOrderLinear``, ``KerasOrderConv2d``, ``KerasOrderCrossEntropy``) and the
  Keras twin flattens in our order. Both sides then run the very same float32 operations,
  and History and trained weights come out EQUAL: a test of ``fit`` and the optimizers
  and of nothing else.
* ``"ours"``: our models and ``nn.CrossEntropyLoss`` as a user runs them, against the
  lesson's Keras model: the same functions, rounded differently from the first step. A
  max-pool window whose two largest values lie within that rounding can later choose the
  other one, and Adam or RMSprop make a full step of the difference, so these gaps are
  measured (``noise_floor`` shows rounding alone does the same), not held to rounding.

``tests/test_keras_parity.py`` asserts; ``scripts/parity_table.py`` prints the measured
gaps as tables (docs/parity-table.md).

Keras runs in this process on its torch backend. Keras on TensorFlow, the lesson's own
stack, runs in another interpreter (TensorFlow stays out of this project's environment):
``tensorflow_fits`` hands it the model, weights and data in a ``.npz`` file and runs
``cnn_torch/parity/keras_worker.py`` there.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnn_torch.history import History
from cnn_torch.keras_rules.optim import KerasAdam, KerasRMSprop, KerasSGD
from cnn_torch.keras_rules.regularizers import L2Regularized
from cnn_torch.models import KerasBatchNorm1d, KerasBatchNorm2d, build_model
from cnn_torch.parity.keras_compat import import_keras, keras_model_like, keras_to_torch, to_channels_last
from cnn_torch.training import fit

WORKER = Path(__file__).with_name("keras_worker.py")


class Float64StepSizeAdam(KerasAdam):
    """Issue #11's ``KerasAdam``, kept for contrast: Keras's equations, but the step size
    computed in Python's float64 and rounded to float32 only when it meets ``m``."""

    @staticmethod
    def _step_size(group: dict, step: int, param: torch.Tensor) -> float:
        return group["lr"] * math.sqrt(1 - group["beta_2"] ** step) / (1 - group["beta_1"] ** step)


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
    "SGD+momentum (KerasSGD)": OptimizerPair(
        lambda params: KerasSGD(params, learning_rate=0.01, momentum=0.9),
        "SGD", (("learning_rate", 0.01), ("momentum", 0.9)),
    ),
    "Adam (KerasAdam)": OptimizerPair(
        lambda params: KerasAdam(params, learning_rate=0.001), "Adam", (("learning_rate", 0.001),)
    ),
    "RMSprop (KerasRMSprop)": OptimizerPair(
        lambda params: KerasRMSprop(params, learning_rate=0.001), "RMSprop", (("learning_rate", 0.001),)
    ),
    # for contrast: Keras's Adam with its step size in float64, and torch's own Adam
    "Adam, alpha in float64 (issue #11)": OptimizerPair(
        lambda params: Float64StepSizeAdam(params, learning_rate=0.001), "Adam", (("learning_rate", 0.001),)
    ),
    "torch.optim.Adam(eps=1e-7)": OptimizerPair(
        lambda params: torch.optim.Adam(params, lr=0.001, eps=1e-7), "Adam", (("learning_rate", 0.001),)
    ),
}


@dataclass
class ParityData:
    """NCHW float32 images in [0, 1]; labels are int64 class indices, or float32 one-hot
    rows (then Keras trains with ``CategoricalCrossentropy``). ``val_*`` may be ``None``."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor | None
    val_labels: torch.Tensor | None
    num_classes: int

    @property
    def one_hot(self) -> bool:
        return self.train_labels.ndim == 2


def make_data(
    num_train: int = 203,
    num_val: int = 61,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (3, 32, 32),
    seed: int = 0,
) -> ParityData:
    """Noisy images that carry a faint per-class pattern: learnable, but not in 3 epochs,
    so the accuracies move and argmax ties are rare. The default sizes are the lesson's
    CIFAR-10 image shape and give partial last batches at batch 32
    (203 = 6 * 32 + 11, 61 = 32 + 29)."""
    generator = torch.Generator().manual_seed(seed)
    templates = torch.rand(num_classes, *input_shape, generator=generator)
    labels = torch.randint(num_classes, (num_train + num_val,), generator=generator)
    noise = torch.rand(num_train + num_val, *input_shape, generator=generator)
    images = 0.7 * noise + 0.3 * templates[labels]
    val_images, val_labels = (images[num_train:], labels[num_train:]) if num_val else (None, None)
    return ParityData(images[:num_train], labels[:num_train], val_images, val_labels, num_classes)


def as_one_hot(data: ParityData) -> ParityData:
    """The same data with float32 one-hot labels (Keras: ``keras.utils.to_categorical``)."""

    def encode(labels):
        return None if labels is None else nn.functional.one_hot(labels, data.num_classes).float()

    return replace(data, train_labels=encode(data.train_labels), val_labels=encode(data.val_labels))


class KerasOrderLinear(nn.Linear):
    """``nn.Linear`` computing as ``keras.layers.Dense`` does on the torch backend: a matmul
    with the ``(in, out)`` kernel, then the bias added. ``nn.Linear`` fuses both into one
    ``addmm`` on the transposed weight, which rounds differently."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.weight.T.contiguous()  # Keras's (in, out) kernel, laid out as Keras stores it
        return torch.matmul(x, kernel) + self.bias


class KerasOrderConv2d(nn.Conv2d):
    """``nn.Conv2d`` computing as ``keras.layers.Conv2D`` does on the torch backend: the
    convolution of a channels-last input in memory, then the bias added. Fused, the bias's
    gradient is summed in another order; the CPU's convolution rounds differently for inputs
    laid out otherwise (after a batch normalisation, which hands on a channels-first copy)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)  # Keras: _maybe_convert_to_channels_last
        return self._conv_forward(x, self.weight, None) + self.bias.view(1, -1, 1, 1)


class KerasOrderCrossEntropy(nn.CrossEntropyLoss):
    """``nn.CrossEntropyLoss`` reduced as Keras reduces a batch: the per-sample losses
    summed, then divided by the batch size. torch's mean adds them up in another order:
    the same loss and the same gradient, but a reported value one rounding apart."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_sample = nn.functional.cross_entropy(logits, target, reduction="none")
        return per_sample.sum() / len(target)


class _KerasOrderBatchNorm:
    """``KerasBatchNorm2d``/``1d`` computing as ``keras.layers.BatchNormalization`` does on the torch
    backend: channels last, the variance as ``E[x**2] - E[x]**2``, then ``(x - mean) * (rsqrt(var +
    eps) * gamma) + beta``. torch's fused batch norm gives the same function, rounded otherwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = x.permute(0, 2, 3, 1) if x.ndim == 4 else x  # Keras's layout, the same memory
        axes = tuple(range(channels_last.ndim - 1))
        if self.training:
            mean = torch.mean(channels_last, dim=axes)
            variance = torch.mean(torch.square(channels_last), dim=axes) - torch.square(mean)
            with torch.no_grad():
                momentum = self.keras_momentum
                self.running_mean.copy_(self.running_mean * momentum + mean * (1.0 - momentum))
                self.running_var.copy_(self.running_var * momentum + variance * (1.0 - momentum))
        else:
            mean, variance = self.running_mean, self.running_var
        out = channels_last.subtract(mean).mul_(variance.add(self.eps).rsqrt_().mul(self.weight)).add_(self.bias)
        # Keras's next layer (pooling, convolution, Permute + Flatten) copies its input into a
        # contiguous channels-first tensor; so does this, and the gradient comes back through
        # the same copy in the same memory order, to be summed in Keras's order
        return out.permute(0, 3, 1, 2).contiguous() if x.ndim == 4 else out


class KerasOrderBatchNorm2d(_KerasOrderBatchNorm, KerasBatchNorm2d):
    pass


class KerasOrderBatchNorm1d(_KerasOrderBatchNorm, KerasBatchNorm1d):
    pass


def keras_arithmetic(model: nn.Module) -> nn.Module:
    """Make ``model``'s Linear, Conv2d and batch-norm layers compute in Keras's operation
    order, in place: same parameters, same outputs up to float rounding, but now the same
    rounding as Keras, so that a comparison of ``fit`` sees no other difference."""
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = KerasOrderLinear
        elif type(module) is nn.Conv2d and module.padding_mode == "zeros":
            module.__class__ = KerasOrderConv2d
        elif type(module) is KerasBatchNorm2d:
            module.__class__ = KerasOrderBatchNorm2d
        elif type(module) is KerasBatchNorm1d:
            module.__class__ = KerasOrderBatchNorm1d
    return model


ARITHMETIC = ("keras", "ours")


@dataclass(frozen=True)
class Setup:
    """How both sides train: Keras's defaults where the lesson keeps them, ``shuffle=False``."""

    epochs: int = 3
    batch_size: int = 32
    validation_split: float = 0.0  # 0: validate on ``data.val_*`` (if any)
    seed: int = 0  # seeds Keras's initialisers: the shared initial weights
    model_kwargs: dict = field(default_factory=dict)  # e.g. {"dropout": 0.0}
    # "keras": our layers and loss compute in Keras's operation order and the Keras twin
    # flattens in ours, so the two sides round alike: a bit-for-bit comparison of fit itself.
    # "ours": our models and nn.CrossEntropyLoss as a user runs them, the lesson's Keras model.
    arithmetic: str = "keras"
    # the loss our fit gets: "keras" (KerasOrderCrossEntropy) or "torch" (nn.CrossEntropyLoss);
    # None: the one that goes with ``arithmetic``
    loss: str | None = None
    # > 0: Keras's kernel_regularizer=L2(l2) on every Conv2D and Dense; ours: regularizers.L2Regularized
    l2: float = 0.0

    def __post_init__(self):
        if self.arithmetic not in ARITHMETIC:
            raise ValueError(f"arithmetic={self.arithmetic!r}: use one of {', '.join(ARITHMETIC)}")
        if self.loss not in (None, "keras", "torch"):
            raise ValueError(f"loss={self.loss!r}: use 'keras', 'torch' or None")

    def loss_fn(self) -> nn.Module:
        loss = self.loss or ("keras" if self.arithmetic == "keras" else "torch")
        return KerasOrderCrossEntropy() if loss == "keras" else nn.CrossEntropyLoss()

    @property
    def flatten(self) -> str:
        """How the Keras twin flattens (``keras_compat.keras_model_like``)."""
        return "channels_first" if self.arithmetic == "keras" else "channels_last"


@dataclass
class KerasRun:
    """What Keras's ``model.fit`` returned, the weights it started from and those it ended
    with (both in our layout)."""

    history: dict[str, list[float]]
    epoch: list[int]
    params: dict
    initial_state: dict[str, torch.Tensor]
    trained_state: dict[str, torch.Tensor]
    keras_model: object | None = None  # trained; only for Keras in this process (torch backend)
    versions: dict[str, str] = field(default_factory=dict)


def _build(model_name: str, data: ParityData, setup: Setup) -> nn.Module:
    input_shape = tuple(data.train_images.shape[1:])
    model = build_model(model_name, num_classes=data.num_classes, input_shape=input_shape, **setup.model_kwargs)
    return keras_arithmetic(model) if setup.arithmetic == "keras" else model


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def keras_twin(model_name: str, data: ParityData, setup: Setup = Setup()) -> tuple[object, dict[str, torch.Tensor]]:
    """The Keras model of ``model_name`` for ``data``'s images, freshly initialised from
    ``setup.seed``, and the same weights as a state dict for our model."""
    keras = import_keras()
    torch_model = _build(model_name, data, setup)
    keras.utils.set_random_seed(setup.seed)  # the Keras initialisers draw from it
    keras_model = keras_model_like(torch_model, flatten=setup.flatten, l2=setup.l2)
    keras_to_torch(keras_model, torch_model)
    return keras_model, _state(torch_model)


def _keras_weights_as_ours(keras_model, model_name: str, data: ParityData, setup: Setup) -> dict:
    """Keras's weights in our layout; batch norm's step counter (not a Keras weight) left out."""
    torch_model = _build(model_name, data, setup)
    keras_to_torch(keras_model, torch_model)
    return {k: v for k, v in _state(torch_model).items() if not k.endswith("num_batches_tracked")}


def _keras_loss_name(data: ParityData) -> str:
    return "CategoricalCrossentropy" if data.one_hot else "SparseCategoricalCrossentropy"


def keras_fit(
    model_name: str, keras_optimizer, data: ParityData, setup: Setup = Setup(),
    validation_batch_size: int | None = None,
) -> KerasRun:
    """Build the Keras twin of ``model_name``, note its initial weights, ``model.fit`` it
    (Keras on its torch backend, in this process). ``validation_batch_size=None`` is
    Keras's default: the training batch size."""
    keras = import_keras()
    keras_model, initial_state = keras_twin(model_name, data, setup)
    loss = getattr(keras.losses, _keras_loss_name(data))(from_logits=True)
    keras_model.compile(optimizer=keras_optimizer, loss=loss, metrics=["accuracy"])
    validation_data = None
    if data.val_images is not None and not setup.validation_split:
        validation_data = (to_channels_last(data.val_images), data.val_labels.numpy())
    result = keras_model.fit(
        to_channels_last(data.train_images), data.train_labels.numpy(),
        batch_size=setup.batch_size, epochs=setup.epochs, shuffle=False, verbose=0,
        validation_data=validation_data, validation_split=setup.validation_split,
        validation_batch_size=validation_batch_size,
    )
    trained_state = _keras_weights_as_ours(keras_model, model_name, data, setup)
    versions = {"keras": keras.__version__, "backend": "torch", "torch": torch.__version__}
    return KerasRun(dict(result.history), list(result.epoch), dict(result.params), initial_state, trained_state,
                    keras_model, versions)


def tensorflow_fits(
    python: str,
    model_name: str,
    optimizer_labels: list[str],
    data: ParityData,
    setup: Setup = Setup(),
    threads: int = 1,
    timeout: float = 1800,
) -> dict[str, KerasRun]:
    """Keras on TensorFlow, run by ``python`` (an interpreter that has tensorflow and keras):
    one ``model.fit`` per optimizer label, all from the weights ``keras_twin`` draws here,
    with Keras's default validation batch (the training batch size)."""
    if setup.validation_split:
        raise ValueError("tensorflow_fits takes the validation images from data.val_*, not validation_split")
    keras_model, initial_state = keras_twin(model_name, data, setup)
    runs = [{"optimizer": OPTIMIZERS[label].keras_name, "optimizer_kwargs": dict(OPTIMIZERS[label].keras_kwargs),
             "loss": _keras_loss_name(data)} for label in optimizer_labels]
    initial_weights = [np.asarray(w) for w in keras_model.get_weights()]
    spec = {
        "backend": "tensorflow", "model_json": keras_model.to_json(), "num_weights": len(initial_weights),
        "batch_size": setup.batch_size, "epochs": setup.epochs, "threads": threads, "runs": runs,
    }
    arrays = {f"weights_{i}": w for i, w in enumerate(initial_weights)}
    arrays.update(x_train=to_channels_last(data.train_images), y_train=data.train_labels.numpy())
    if data.val_images is not None:
        arrays.update(x_val=to_channels_last(data.val_images), y_val=data.val_labels.numpy())
    # the other interpreter must not see this venv; TensorFlow, quiet and on the CPU
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    environment.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    with tempfile.TemporaryDirectory(prefix="cnn-torch-parity-") as tmp:
        job, result = Path(tmp, "job.npz"), Path(tmp, "result.npz")
        np.savez(job, spec=np.array(json.dumps(spec)), **arrays)
        done = subprocess.run([python, str(WORKER), str(job), str(result)], capture_output=True, text=True,
                              timeout=timeout, env=environment)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            raise RuntimeError(f"Keras on TensorFlow ({python}) failed with exit {done.returncode}:\n{tail}")
        with np.load(result) as out:
            report = json.loads(str(out["spec"]))
            weights = [[out[f"run{i}_weights_{k}"] for k in range(len(initial_weights))] for i in range(len(runs))]
    keras_runs = {}
    for label, run, trained in zip(optimizer_labels, report["runs"], weights, strict=True):
        keras_model.set_weights(trained)
        trained_state = _keras_weights_as_ours(keras_model, model_name, data, setup)
        keras_runs[label] = KerasRun(run["history"], run["epoch"], run["params"], initial_state, trained_state,
                                     None, report["versions"])
    return keras_runs


def our_fit(
    model_name: str,
    make_optimizer: Callable[[object], torch.optim.Optimizer],
    data: ParityData,
    initial_state: dict[str, torch.Tensor],
    setup: Setup = Setup(),
    validation_batch_size: int | str | None = "batch_size",
) -> tuple[History, nn.Module]:
    """Our ``fit`` from the same initial weights, with every Keras default spelled out.

    ``validation_batch_size="batch_size"`` validates at the training batch size, as Keras
    does by default: the same batches, so the same float32 sums. ``None`` keeps ``fit``'s
    own default, a larger and faster batch: the same mean up to rounding.
    """
    model = _build(model_name, data, setup)
    model.load_state_dict(initial_state)
    validation_data = None
    if data.val_images is not None and not setup.validation_split:
        validation_data = (data.val_images, data.val_labels)
    if validation_batch_size == "batch_size":
        validation_batch_size = setup.batch_size
    loss_fn = setup.loss_fn()
    if setup.l2:  # Keras: the penalties join the loss it minimises and reports
        loss_fn = L2Regularized(loss_fn, model, setup.l2)
    history = fit(
        model, loss_fn, make_optimizer(model.parameters()),
        data.train_images, data.train_labels,
        epochs=setup.epochs, batch_size=setup.batch_size, shuffle=False, verbose=0, device="cpu",
        validation_data=validation_data, validation_split=setup.validation_split,
        validation_batch_size=validation_batch_size,
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


def weight_difference(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> float:
    """The largest absolute difference between two state dicts, over every weight (batch norm's
    step counter is no weight: Keras has none)."""
    keys = [k for k in theirs if not k.endswith("num_batches_tracked")]
    return max((ours[k].float() - theirs[k].float()).abs().max().item() for k in keys)


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
    weight_gap: float  # max |our trained weight - Keras's|
    weight_change: float  # max |Keras's trained weight - initial weight|: how far training moved them

    @property
    def max_loss_gap(self) -> float:
        return max(loss for loss, _ in epoch_maxima(self.differences))

    @property
    def max_accuracy_gap(self) -> float:
        return max(accuracy for _, accuracy in epoch_maxima(self.differences))


def _comparison(ours: History, torch_model: nn.Module, keras_run: KerasRun) -> Comparison:
    return Comparison(
        ours, keras_run, history_differences(ours.history, keras_run.history), torch_model,
        weight_difference(_state(torch_model), keras_run.trained_state),
        weight_difference(keras_run.trained_state, keras_run.initial_state),
    )


def compare(
    model_name: str,
    optimizer_label: str,
    data: ParityData,
    setup: Setup = Setup(),
    *,
    validation_batch_size: int | str | None = "batch_size",
    keras_run: KerasRun | None = None,
) -> Comparison:
    """Fit ``model_name`` both ways with ``OPTIMIZERS[optimizer_label]``, Keras on its torch
    backend. Pass ``keras_run`` to reuse a Keras run made with the same settings (two rows
    share Keras's Adam). ``validation_batch_size`` is ours (see ``our_fit``); Keras keeps
    its default, the training batch size."""
    pair = OPTIMIZERS[optimizer_label]
    if keras_run is None:
        keras_run = keras_fit(model_name, pair.make_keras(), data, setup)
    ours, torch_model = our_fit(model_name, pair.make_ours, data, keras_run.initial_state, setup,
                                validation_batch_size=validation_batch_size)
    return _comparison(ours, torch_model, keras_run)


def compare_optimizers(
    model_name: str,
    optimizer_labels: list[str],
    data: ParityData,
    setup: Setup = Setup(),
    *,
    tensorflow_python: str | None = None,
) -> dict[str, Comparison]:
    """One ``Comparison`` per optimizer label. Keras on its torch backend by default, each
    distinct Keras optimizer trained once; with ``tensorflow_python``, Keras on TensorFlow
    run by that interpreter (all optimizers in one subprocess)."""
    if tensorflow_python:
        keras_runs = tensorflow_fits(tensorflow_python, model_name, optimizer_labels, data, setup)
        return {label: compare(model_name, label, data, setup, keras_run=keras_runs[label])
                for label in optimizer_labels}
    shared: dict[tuple, KerasRun] = {}
    results = {}
    for label in optimizer_labels:
        pair = OPTIMIZERS[label]
        key = (pair.keras_name, pair.keras_kwargs)
        results[label] = compare(model_name, label, data, setup, keras_run=shared.get(key))
        shared[key] = results[label].keras
    return results


@dataclass
class NoiseFloor:
    differences: dict[str, list[float]]  # as history_differences, the larger of the two nudges
    weight_gap: float


def noise_floor(model_name: str, optimizer_label: str, data: ParityData, setup: Setup = Setup()) -> NoiseFloor:
    """Our fit against itself, started once more from every initial weight nudged by one
    float32 ulp (up, then down; the larger gap is kept): how far float rounding alone
    carries two runs apart, as ReLU and max-pool choices amplify it."""
    _, initial_state = keras_twin(model_name, data, setup)
    make_optimizer = OPTIMIZERS[optimizer_label].make_ours
    reference, reference_model = our_fit(model_name, make_optimizer, data, initial_state, setup)
    gaps: dict[str, list[float]] = {}
    weight_gap = 0.0
    for direction in (math.inf, -math.inf):
        nudged = {k: torch.nextafter(v, torch.full_like(v, direction)) if v.is_floating_point() else v
                  for k, v in initial_state.items()}  # batch norm's step counter is an integer
        history, model = our_fit(model_name, make_optimizer, data, nudged, setup)
        for key, values in history_differences(history.history, reference.history).items():
            gaps[key] = [max(pair) for pair in zip(gaps.get(key, values), values, strict=True)]
        weight_gap = max(weight_gap, weight_difference(_state(model), _state(reference_model)))
    return NoiseFloor(gaps, weight_gap)


def markdown_table(rows: dict[str, tuple[dict[str, list[float]], float]]) -> str:
    """Rows: label -> (history differences, trained-weight gap). Columns: per epoch, the
    largest relative loss gap and accuracy gap; then the largest trained-weight gap."""
    epochs = len(next(iter(next(iter(rows.values()))[0].values())))
    header = ["optimizer"]
    for e in range(1, epochs + 1):
        header += [f"epoch {e} loss (rel.)", f"epoch {e} accuracy"]
    header.append("trained weights (max abs)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, (differences, weight_gap) in rows.items():
        cells = [label]
        for loss_gap, accuracy_gap in epoch_maxima(differences):
            cells += [_sci(loss_gap), _sci(accuracy_gap)]
        cells.append(_sci(weight_gap))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _sci(value: float) -> str:
    return "0" if value == 0 else f"{value:.1e}" if math.isfinite(value) else str(value)
