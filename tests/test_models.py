"""Tests for cnn_torch.models: parameter counts, shapes, init, rebuild, summary."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from cnn_torch.errors import UserError
from cnn_torch.models import (
    MODELS,
    build_model,
    cifar_model,
    cifar_model_small,
    count_params,
    model_dropout,
    model_intro,
    summary,
)

# name -> (total, params of each Conv2d/Linear in order, default num_classes)
EXPECTED = {
    "cifar_model_small": (114_510, [1_400, 22_550, 90_050, 510], 10),
    "cifar_model": (87_060, [1_400, 22_550, 22_550, 40_050, 510], 10),
    "model_intro": (18_453, [448, 18_005], 5),
    "model_dropout": (33_834, [448, 4_640, 18_496, 10_250], 10),
}


def weighted_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_models_registry_order():
    assert list(MODELS) == ["cifar_model_small", "cifar_model", "model_intro", "model_dropout"]
    assert MODELS["cifar_model"] is cifar_model


@pytest.mark.parametrize("name", list(EXPECTED))
def test_param_counts(name):
    total, per_layer, _ = EXPECTED[name]
    model = build_model(name)
    assert count_params(model) == total
    assert [count_params(m) for m in weighted_layers(model)] == per_layer


@pytest.mark.parametrize("name", list(EXPECTED))
@pytest.mark.parametrize("num_classes", [None, 2, 7])
def test_output_shape(name, num_classes):
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    expected = EXPECTED[name][2] if num_classes is None else num_classes
    model = build_model(name, **kwargs).eval()
    with torch.no_grad():
        out = model(torch.rand(4, 3, 32, 32))
    assert out.shape == (4, expected)


def test_models_are_sequential_and_return_logits():
    model = cifar_model_small()
    assert isinstance(model, nn.Sequential)
    assert isinstance(model[0], nn.Conv2d) and isinstance(model[-1], nn.Linear)
    assert not any(isinstance(m, nn.Softmax) for m in model.modules())


def flatten_size(model: nn.Module) -> int:
    return next(m for m in model if isinstance(m, nn.Linear)).in_features


@pytest.mark.parametrize("name", list(EXPECTED))
def test_larger_input_changes_flatten_size(name):
    small, big = build_model(name), build_model(name, input_shape=(3, 64, 64))
    assert flatten_size(big) > flatten_size(small)
    with torch.no_grad():
        assert big.eval()(torch.rand(2, 3, 64, 64)).shape == (2, EXPECTED[name][2])


def test_flatten_sizes_for_64x64():
    assert flatten_size(cifar_model_small()) == 1800
    assert flatten_size(cifar_model_small(input_shape=(3, 64, 64))) == 50 * 14 * 14
    assert flatten_size(cifar_model(input_shape=(3, 64, 64))) == 50 * 12 * 12
    assert flatten_size(model_intro(input_shape=(3, 64, 64))) == 16 * 31 * 31
    assert flatten_size(model_dropout(input_shape=(3, 64, 64))) == 64 * 12 * 12


def test_grayscale_and_non_square_input():
    model = cifar_model(input_shape=(1, 40, 32)).eval()
    assert model[0].in_channels == 1
    with torch.no_grad():
        assert model(torch.rand(3, 1, 40, 32)).shape == (3, 10)


@pytest.mark.parametrize(
    ("name", "minimum"),
    [("cifar_model_small", 10), ("cifar_model", 18), ("model_intro", 4), ("model_dropout", 18)],
)
def test_too_small_input_raises(name, minimum):
    with pytest.raises(UserError, match=f"at least {minimum}x{minimum}"):
        build_model(name, input_shape=(3, minimum - 1, minimum - 1))
    with pytest.raises(UserError, match="too small"):
        build_model(name, input_shape=(3, 64, minimum - 1))
    build_model(name, input_shape=(3, minimum, minimum))  # the minimum itself works


@pytest.mark.parametrize("bad", [(32, 32), (3, 0, 32), (3, 32, 32.5), "abc"])
def test_bad_input_shape_raises(bad):
    with pytest.raises(UserError, match="input_shape"):
        cifar_model_small(input_shape=bad)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_keras_init(name):
    torch.manual_seed(0)
    for layer in weighted_layers(build_model(name)):
        if isinstance(layer, nn.Conv2d):
            k = layer.kernel_size[0] * layer.kernel_size[1]
            fan_in, fan_out = layer.in_channels * k, layer.out_channels * k
        else:
            fan_in, fan_out = layer.in_features, layer.out_features
        bound = math.sqrt(6 / (fan_in + fan_out))
        biggest = layer.weight.abs().max().item()
        assert biggest <= bound + 1e-7
        assert biggest > 0.5 * bound
        assert torch.count_nonzero(layer.bias) == 0


def test_torch_init_keeps_pytorch_default():
    torch.manual_seed(0)
    layers = weighted_layers(cifar_model_small(init="torch"))
    assert all(torch.count_nonzero(layer.bias) > 0 for layer in layers)


def test_unknown_init_raises():
    with pytest.raises(UserError, match="unknown init 'glorot': use 'keras' or 'torch'"):
        cifar_model_small(init="glorot")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_rebuild_from_model_kwargs(name):
    model = build_model(name, num_classes=3, input_shape=(1, 48, 40), init="torch")
    assert model.model_name == name
    assert model.model_kwargs == {"num_classes": 3, "input_shape": [1, 48, 40], "init": "torch"}
    assert model.input_shape == (1, 48, 40)
    rebuilt = build_model(model.model_name, **model.model_kwargs)
    assert count_params(rebuilt) == count_params(model)
    rebuilt.load_state_dict(model.state_dict())  # same architecture, weights load


def test_unknown_model_raises_with_valid_names():
    with pytest.raises(UserError) as excinfo:
        build_model("resnet")
    message = str(excinfo.value)
    assert message.startswith("unknown model 'resnet': choose one of")
    assert all(name in message for name in MODELS)
    assert "\n" not in message


def test_summary():
    model = cifar_model_small()
    out = io.StringIO()
    assert summary(model, file=out) is None  # Keras prints and returns None: a notebook shows it once
    text = out.getvalue()
    assert text.startswith('Model: "cifar_model_small"')
    assert "Total params: 114,510" in text
    assert "Trainable params: 114,510" in text
    assert "Non-trainable params: 0" in text
    conv_rows = [line for line in text.splitlines() if "(Conv2D)" in line]  # Keras's names, as its summary
    assert conv_rows[0].startswith(" conv2d (Conv2D)") and conv_rows[1].startswith(" conv2d_1 (Conv2D)")
    assert "(None, 50, 30, 30)" in conv_rows[0] and "1,400" in conv_rows[0]
    rows = [line.split()[0] for line in text.splitlines()[4:-5] if line]
    assert rows == ["conv2d", "conv2d/activation", "max_pooling2d", "conv2d_1", "conv2d_1/activation",
                    "max_pooling2d_1", "flatten", "dense", "dense/activation", "dense_1"]
    assert max(len(line) for line in text.splitlines()) <= 80
    assert any("(None, 1800)" in line for line in text.splitlines())
    assert model.training  # summary restores the mode


def test_summary_names_batch_norm_and_augmentation_as_keras_within_80_columns():
    out = io.StringIO()
    summary(cifar_model_small(batch_norm=True, augment=["flip", "rotation=0.1"]), file=out)
    lines = out.getvalue().splitlines()
    for label in ("random_flip (RandomFlip)", "random_rotation (RandomRotation)",
                  "batch_normalization (BatchNormalization)", "batch_normalization_1 (BatchNormalization)"):
        assert any(line.startswith(f" {label} ") for line in lines), label
    assert max(len(line) for line in lines) <= 80


def test_summary_64x64_to_stdout(capsys):
    model = model_dropout(input_shape=(3, 64, 64)).train(False)
    summary(model)
    text = capsys.readouterr().out
    assert "(None, 16, 62, 62)" in text and "(None, 9216)" in text
    assert not model.training


def test_summary_wrong_input_shape_raises():
    with pytest.raises(UserError, match="does not fit"):
        summary(cifar_model_small(), input_shape=(3, 64, 64), file=io.StringIO())


def test_summary_plain_module_needs_input_shape():
    plain = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(UserError, match="input_shape"):
        summary(plain, file=io.StringIO())
    out = io.StringIO()
    summary(plain, input_shape=(3, 2, 2), file=out)
    text = out.getvalue()
    assert 'Model: "Sequential"' in text and "(None, 2)" in text and "Total params: 26" in text


def test_dropout_eval_deterministic_train_random():
    torch.manual_seed(0)
    model = model_dropout()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.equal(model(x), model(x))


def keras_equivalent(keras, name):
    """The lesson's Keras model, as a Sequential, for the reference check."""
    layers = keras.layers

    def conv(n):
        return layers.Conv2D(n, (3, 3), activation="relu")

    def pool():
        return layers.MaxPooling2D((2, 2))

    stacks = {
        "cifar_model_small": [conv(50), pool(), conv(50), pool(), layers.Flatten(),
                              layers.Dense(50, activation="relu"), layers.Dense(10)],
        "cifar_model": [conv(50), pool(), conv(50), pool(), conv(50), layers.Flatten(),
                        layers.Dense(50, activation="relu"), layers.Dense(10)],
        "model_intro": [conv(16), pool(), layers.Flatten(), layers.Dense(5, activation="softmax")],
        "model_dropout": [conv(16), pool(), conv(32), pool(), conv(64), layers.Dropout(0.5),
                          layers.Flatten(), layers.Dense(10)],
    }
    return keras.Sequential([keras.Input((32, 32, 3)), *stacks[name]])


def test_param_counts_match_keras():
    keras = pytest.importorskip("keras")
    for name in EXPECTED:
        assert keras_equivalent(keras, name).count_params() == count_params(build_model(name)), name


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_num_classes_raises(bad):
    with pytest.raises(UserError, match="num_classes"):
        cifar_model(num_classes=bad)


def tricky_images() -> torch.Tensor:
    """Images whose pooling windows hold ties, zeros and only negative values, channels-last as fit hands them."""
    images = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    images[0] = 0.0  # every window all zeros
    images[1, :, :8, :8] = -1.0  # windows of equal negative values
    images[2, :, 8:16, 8:16] = 0.5  # windows of equal positive values
    images[3] = -images[3].abs()  # mostly negative
    return images.contiguous(memory_format=torch.channels_last).requires_grad_()


@pytest.mark.parametrize("name", list(EXPECTED))
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_pooling_before_relu_gives_nn_sequentials_numbers_bit_for_bit(name, precision):
    model = build_model(name)
    written_order = nn.Sequential(*model)  # the same layers, run one by one as written
    results = []
    for runner in (model, written_order):
        images = tricky_images()
        torch.manual_seed(0)  # model_dropout's Dropout draws the same mask for both
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = runner(images)
        # a loss whose gradient differs per logit, so every path back is exercised
        weights = torch.linspace(-1, 1, logits.numel()).view_as(logits)
        gradients = torch.autograd.grad((logits.float() * weights).sum(), [images, *model.parameters()])
        results.append((logits, gradients))
    (logits, gradients), (expected_logits, expected_gradients) = results
    assert torch.equal(logits, expected_logits)
    for got, expected in zip(gradients, expected_gradients, strict=True):
        assert torch.equal(got, expected)


def test_pooling_first_only_for_an_unwatched_relu_then_maxpool():
    from cnn_torch.keras_rules.layers import pooling_first_is_exact

    model = cifar_model_small()
    relu, pool = model[1], model[2]
    assert pooling_first_is_exact(relu, pool)
    assert not pooling_first_is_exact(pool, relu)
    assert not pooling_first_is_exact(nn.Sigmoid(), pool)  # only ReLU keeps a window's argmax exact
    assert not pooling_first_is_exact(relu, nn.MaxPool2d(2, padding=1))
    assert not pooling_first_is_exact(relu, nn.MaxPool2d(2, return_indices=True))
    seen = []
    handle = relu.register_forward_hook(lambda module, inputs, output: seen.append(tuple(output.shape)))
    try:
        assert not pooling_first_is_exact(relu, pool)
        model(torch.rand(2, 3, 32, 32))
    finally:
        handle.remove()
    assert seen == [(2, 50, 30, 30)]  # a hook on the ReLU sees the convolution's full output, as written
    global_handle = nn.modules.module.register_module_forward_hook(lambda module, inputs, output: None)
    try:
        assert not pooling_first_is_exact(relu, pool)
    finally:
        global_handle.remove()
    assert pooling_first_is_exact(relu, pool)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fit_gives_the_same_history_as_with_the_layers_run_as_written(precision):
    import types
    import warnings

    from cnn_torch import fit
    from cnn_torch.data import make_shapes

    shapes = make_shapes(96, n_test=0, seed=3)
    images, labels = shapes.train_images, shapes.train_labels
    histories, weights = [], []
    for written_order in (False, True):
        torch.manual_seed(0)
        model = cifar_model_small(num_classes=len(shapes.class_names))
        if written_order:  # nn.Sequential's own forward: each ReLU before its MaxPool2d
            model.forward = types.MethodType(nn.Sequential.forward, model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bf16 emulated on a CPU without it: slow, same numbers either way
            history = fit(model, nn.CrossEntropyLoss(), "adam", images, labels, epochs=2, batch_size=32,
                          validation_split=0.25, seed=0, verbose=0, device="cpu", precision=precision)  # fmt: skip
        histories.append(history.history)
        weights.append([p.detach().clone() for p in model.parameters()])
    assert histories[0] == histories[1]
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))
