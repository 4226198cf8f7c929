"""Batch normalisation and L2 regularisation against Keras 3 (torch backend).

1. Fit, bit for bit: with our layers computing in Keras's operation order
   (``parity.Setup(arithmetic="keras")``), a lesson model with ``batch_norm=True`` trains to
   the very History and weights (moving mean and variance included) Keras's
   ``BatchNormalization()`` gives; with ``L2Regularized`` the trained weights are equal and
   the reported losses one float32 rounding apart (the penalty's sum runs over the kernel in
   another memory order: same numbers, added in another order).
2. The layer itself: Keras's defaults (momentum 0.99 -> PyTorch 0.01, epsilon 1e-3) and
   Keras's moving variance (the biased batch variance), against a float64 reference; torch's
   own ``nn.BatchNorm2d`` with the same numbers misses it by the n/(n-1) factor.
3. Keras's parameter counts (trainable and non-trainable) and the L2 loss's pieces.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnn_torch.errors import UserError
from cnn_torch.keras_rules.regularizers import L2Regularized, regularized_kernels
from cnn_torch.models import KerasBatchNorm1d, KerasBatchNorm2d, build_model, count_params, trainable_params
from cnn_torch.parity import harness as parity

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

LOSS_RTOL = 1e-6  # where the two sides add the same numbers in another order: float32 rounding, with room


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def lesson_data(num_classes: int = 10) -> parity.ParityData:
    """The parity tests' set-up: 203 training images (partial last batch), 61 validation images."""
    return parity.make_data(203, 61, num_classes, (3, 32, 32))


def weights_equal(comparison: parity.Comparison) -> bool:
    ours = comparison.torch_model.state_dict()
    return all(torch.equal(ours[name], weight) for name, weight in comparison.keras.trained_state.items())


# --- 1. fit against Keras's fit ----------------------------------------------------------------


@pytest.mark.parametrize(("model_name", "model_kwargs", "optimizer"), [
    ("cifar_model_small", {"batch_norm": True}, "Adam (KerasAdam)"),  # BatchNormalization before MaxPooling2D
    ("cifar_model", {"batch_norm": True}, "Adam (KerasAdam)"),  # and one right before Flatten
    ("model_dropout", {"batch_norm": True, "dropout": 0.0}, "SGD"),
])  # fmt: skip
def test_batch_norm_fit_is_keras_fit_bit_for_bit(model_name, model_kwargs, optimizer):
    """Three epochs of seven batches: every History value and every weight, the moving mean
    and variance included, EQUAL Keras's. A wrong momentum, epsilon or variance would show
    in val_loss after the first epoch (inference uses the moving statistics)."""
    setup = parity.Setup(epochs=3, model_kwargs=model_kwargs, arithmetic="keras")
    comparison = parity.compare(model_name, optimizer, lesson_data(), setup)
    moving = [k for k in comparison.keras.trained_state if "running_" in k]
    assert len(moving) == 2 * sum(isinstance(m, KerasBatchNorm2d) for m in comparison.torch_model.modules()) >= 4
    assert comparison.ours.history == comparison.keras.history
    assert weights_equal(comparison)
    assert comparison.weight_change > 1e-3


def test_l2_fit_matches_keras_kernel_regularizer():
    """``kernel_regularizer=L2(0.01)`` on every Conv2D and Dense against ``L2Regularized``: the
    penalty's gradient is elementwise (2 * l2 * w), so the trained weights EQUAL Keras's; the
    reported loss and val_loss include the penalty on both sides, its sum formed over the
    kernel in another memory order: equal to float32 rounding (LOSS_RTOL). Without the
    penalty in the reported loss the gap would be the penalty itself, 0.6 and more here."""
    data = lesson_data()
    setup = parity.Setup(epochs=3, arithmetic="keras", l2=0.01)
    comparison = parity.compare("cifar_model_small", "Adam (KerasAdam)", data, setup)
    assert weights_equal(comparison)
    for key, gaps in comparison.differences.items():
        assert max(gaps) <= (LOSS_RTOL if key.endswith("loss") else 0.0), (key, gaps)
    plain = parity.compare("cifar_model_small", "Adam (KerasAdam)", data, parity.Setup(epochs=1, arithmetic="keras"))
    assert comparison.ours.history["loss"][0] - plain.ours.history["loss"][0] > 0.5  # the penalty is reported


def test_l2_our_model_matches_the_lessons_keras_model_to_rounding():
    """Our model as a user runs it (fused layers, channels-first Flatten, torch's mean) with
    L2: the first epoch agrees to rounding, as without L2 (tests/test_keras_parity.py)."""
    setup = parity.Setup(epochs=1, arithmetic="ours", l2=0.001)
    comparison = parity.compare("cifar_model_small", "SGD", lesson_data(), setup)
    for key, gaps in comparison.differences.items():
        assert gaps[0] <= (LOSS_RTOL if key.endswith("loss") else 0.0), (key, gaps)


# --- 2. the batch-normalisation layer ---------------------------------------------------------


def keras_rule_float64(batches: list[torch.Tensor], dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Keras's moving statistics computed by hand in float64: moving = moving * 0.99 + batch *
    0.01, from mean 0 and variance 1, with the batch's BIASED variance."""
    mean = torch.zeros(batches[0].shape[1], dtype=torch.float64)
    variance = torch.ones_like(mean)
    for batch in batches:
        batch = batch.double()
        mean = mean * 0.99 + batch.mean(dims) * 0.01
        variance = variance * 0.99 + batch.var(dims, unbiased=False) * 0.01
    return mean, variance


@pytest.mark.parametrize(("layer", "shape"), [(KerasBatchNorm2d, (32, 6, 5, 4)), (KerasBatchNorm1d, (32, 50))])
def test_moving_statistics_follow_keras_rule(layer, shape):
    """Ten training batches: our moving mean and variance equal the float64 reference to float32
    rounding (a few ulps per update); torch's nn.BatchNorm with momentum 0.01 and eps 1e-3
    updates the variance with the UNBIASED batch variance and lands a visible distance away."""
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(shape, generator=generator) * 3 + 1 for _ in range(10)]
    dims = tuple(d for d in range(len(shape)) if d != 1)
    ours = layer(shape[1]).train()
    torch_own = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(shape[1], momentum=0.01, eps=1e-3).train()
    assert (ours.momentum, ours.eps, ours.keras_momentum) == pytest.approx((0.01, 1e-3, 0.99))
    for batch in batches:
        out = ours(batch)
        torch_own(batch)
    mean, variance = keras_rule_float64(batches, dims)
    rounding = 10 * 4 * float(np.spacing(np.float32(10.0)))  # ten updates, a few ulps of values up to ~10
    assert (ours.running_mean.double() - mean).abs().max() <= rounding
    assert (ours.running_var.double() - variance).abs().max() <= rounding
    assert (torch_own.running_var.double() - variance).abs().max() > 10 * rounding  # the n/(n-1) factor
    # the output of a training step: the batch normalised by its own (biased) statistics
    expected = (batches[-1].double() - batches[-1].double().mean(dims, keepdim=True)) / torch.sqrt(
        batches[-1].double().var(dims, unbiased=False, keepdim=True) + 1e-3
    )
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_layer_equals_keras_layer(training):
    """Our layer and Keras's ``BatchNormalization()`` with the same weights and moving statistics,
    in inference mode and in one training step (outputs and new moving statistics). Inputs of
    mean 0: Keras's variance (E[x**2] - E[x]**2) then loses nothing to cancellation, so the two
    agree to rounding."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(32, 7, 9, 4, generator=generator)  # NCHW, 7 channels; Keras gets it as NHWC
    ours = KerasBatchNorm2d(7)
    with torch.no_grad():
        for tensor in (ours.weight, ours.bias, ours.running_mean):
            tensor.copy_(torch.randn(7, generator=generator))
        ours.running_var.copy_(torch.rand(7, generator=generator) + 0.5)
    theirs = keras.layers.BatchNormalization()
    theirs.build((None, 9, 4, 7))
    theirs.set_weights([t.detach().numpy() for t in (ours.weight, ours.bias, ours.running_mean, ours.running_var)])
    ours.train(training)
    out = ours(x)
    keras_out = theirs(x.permute(0, 2, 3, 1), training=training)
    np.testing.assert_allclose(out.detach().permute(0, 2, 3, 1).numpy(), np.asarray(keras_out.detach()),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.running_mean.numpy(), theirs.moving_mean.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours.running_var.numpy(), theirs.moving_variance.numpy(), rtol=1e-6, atol=1e-7)


# --- 3. counts and pieces --------------------------------------------------------------------


@pytest.mark.parametrize("model_name", ["cifar_model_small", "cifar_model", "model_intro", "model_dropout"])
def test_batch_norm_models_count_weights_as_keras(model_name):
    """Keras's summary: BatchNormalization holds 4 weights per channel, 2 of them (the moving
    mean and variance) non-trainable; the twin built by keras_model_like counts the same."""
    from cnn_torch.parity.keras_compat import keras_model_like

    model = build_model(model_name, batch_norm=True)
    plain = build_model(model_name)
    channels = [m.num_features for m in model.modules() if isinstance(m, KerasBatchNorm2d)]
    assert len(channels) == sum(isinstance(m, nn.Conv2d) for m in plain.modules())  # one after every convolution
    assert count_params(model) == count_params(plain) + 4 * sum(channels)
    assert trainable_params(model) == count_params(plain) + 2 * sum(channels)
    keras_model = keras_model_like(model)
    assert keras_model.count_params() == count_params(model)
    assert sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights) == trainable_params(model)
    assert model.model_kwargs["batch_norm"] is True and "batch_norm" not in plain.model_kwargs


def test_l2_penalty_covers_kernels_not_biases():
    model = build_model("cifar_model_small")
    loss_fn = L2Regularized(nn.CrossEntropyLoss(), model, 0.01)
    kernels = regularized_kernels(model)
    assert [tuple(k.shape) for k in kernels] == [(50, 3, 3, 3), (50, 50, 3, 3), (50, 1800), (10, 50)]
    logits, labels = torch.randn(4, 10), torch.tensor([0, 1, 2, 3])
    expected = nn.functional.cross_entropy(logits, labels) + 0.01 * sum((k.double() ** 2).sum() for k in kernels)
    assert loss_fn(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    loss_fn(logits, labels).backward()
    torch.testing.assert_close(kernels[0].grad, 2 * 0.01 * kernels[0].detach())  # d/dw of l2 * w**2
    assert all(layer.bias.grad is None for layer in model if isinstance(layer, nn.Linear))
    assert loss_fn.state_dict() == {}  # the loss does not own the model's weights
    with pytest.raises(UserError, match="l2 must be a number >= 0"):
        L2Regularized(nn.CrossEntropyLoss(), model, -0.1)
