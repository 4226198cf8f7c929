"""The speed-ups change no result: ``fit``'s fast path (uint8 on the device, channels-last
batches, reused memory, on-device metrics) gives the History of a plain loop; bf16 trains;
the FLOP count agrees with a hand formula; the benchmark script runs. No timing is asserted:
speed is measured by ``scripts/benchmark.py`` and reported in BENCHMARKS.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from cnn_torch import fit, models
from cnn_torch.data import make_shapes
from cnn_torch.keras_rules import optim
from cnn_torch.platform.device import as_float
from cnn_torch.platform.flops import forward_flops_per_image, training_flops_per_image

ROOT = Path(__file__).resolve().parents[1]


def small_images(n: int, seed: int, size: int = 16, num_classes: int = 10):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, num_classes, (n,), generator=generator)
    return images, labels


def test_as_float_is_the_lessons_division_whatever_the_memory_layout():
    images, _ = small_images(5, seed=0)
    batch = as_float(images)
    assert batch.shape == images.shape and batch.dtype == torch.float32
    assert torch.equal(batch, images.float() / 255.0)
    float_images = images.float() / 255.0
    assert torch.equal(as_float(float_images), float_images)


def test_fast_fit_gives_the_history_of_a_plain_loop():
    images, labels = small_images(70, seed=1)  # 70 = 2 full batches of 32 and a partial one of 6
    val_images, val_labels = small_images(40, seed=2)
    torch.manual_seed(0)
    model = models.cifar_model_small(input_shape=(3, 16, 16))
    reference = models.cifar_model_small(input_shape=(3, 16, 16))
    reference.load_state_dict(model.state_dict())
    loss_fn = nn.CrossEntropyLoss()

    history = fit(
        model,
        loss_fn,
        optim.make_optimizer("adam", model.parameters()),
        images,
        labels,
        epochs=2,
        batch_size=32,
        validation_data=(val_images, val_labels),
        shuffle=False,
        verbose=0,
        device="cpu",
    )

    # the plain computation: contiguous float batches, a .item() every step, one validation batch
    optimizer = optim.make_optimizer("adam", reference.parameters())
    expected = {"accuracy": [], "loss": [], "val_accuracy": [], "val_loss": []}
    for _ in range(2):
        reference.train()
        loss_sum, correct = 0.0, 0
        for start in range(0, len(images), 32):
            x = images[start : start + 32].float() / 255.0
            y = labels[start : start + 32]
            logits = reference(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(dim=1) == y).sum().item()
        expected["loss"].append(loss_sum / len(images))
        expected["accuracy"].append(correct / len(images))
        reference.eval()
        with torch.no_grad():
            val_logits = reference(val_images.float() / 255.0)
        expected["val_loss"].append(loss_fn(val_logits, val_labels).item())
        expected["val_accuracy"].append((val_logits.argmax(dim=1) == val_labels).float().mean().item())

    for key, values in expected.items():
        assert history.history[key] == pytest.approx(values, rel=1e-6), key
    for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_bf16_training_lowers_the_loss():
    shapes = make_shapes(n_train=64, n_test=0, seed=0, image_size=(16, 16))
    torch.manual_seed(0)
    model = models.cifar_model_small(input_shape=(3, 16, 16))
    history = fit(
        model,
        nn.CrossEntropyLoss(),
        optim.make_optimizer("adam", model.parameters(), learning_rate=0.003),
        shapes.train_images,
        shapes.train_labels,
        epochs=6,
        batch_size=16,
        seed=0,
        verbose=0,
        device="cpu",
        precision="bf16",
    )
    losses = history.history["loss"]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] - 0.2, losses  # ln(10) = 2.30 at the start
    assert next(model.parameters()).dtype == torch.float32  # autocast: the weights stay float32


def hand_count_macs(model: nn.Sequential, input_shape) -> list[int]:
    """Multiply-adds of every conv and linear layer, from their shapes alone
    (valid padding and stride 1, as in the lesson's models)."""
    _, height, width = input_shape
    macs = []
    for layer in model:
        if isinstance(layer, nn.Conv2d):
            (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
            assert (sh, sw, ph, pw) == (1, 1, 0, 0)
            height, width = height - kh + 1, width - kw + 1
            macs.append(height * width * layer.out_channels * layer.in_channels * kh * kw)
        elif isinstance(layer, nn.MaxPool2d):
            height, width = height // layer.kernel_size, width // layer.kernel_size
        elif isinstance(layer, nn.Linear):
            macs.append(layer.in_features * layer.out_features)
    return macs


@pytest.mark.parametrize("name", list(models.MODELS))
def test_flop_count_agrees_with_a_hand_formula(name):
    model = models.build_model(name)
    macs = hand_count_macs(model, model.input_shape)
    forward = 2 * sum(macs)  # 2 FLOPs per multiply-add
    # backward: the input gradient and the weight gradient, each as big as the forward pass,
    # except the first layer's input gradient, which nobody needs (the images are data)
    training = forward + 2 * forward - 2 * macs[0]
    assert forward_flops_per_image(model) == pytest.approx(forward)
    assert training_flops_per_image(model) == pytest.approx(training)


def test_cifar_model_small_does_about_28_mflop_per_training_image():
    flops = training_flops_per_image(models.cifar_model_small())
    assert 20e6 < flops < 40e6  # two 3x3 convs of 50 channels on 32x32: tens of MFLOP, not kilo or giga


def test_flop_count_leaves_the_model_as_it_was():
    model = models.cifar_model_small()
    model.eval()
    before = [p.detach().clone() for p in model.parameters()]
    training_flops_per_image(model)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.subprocess
def test_benchmark_script_runs_and_prints_a_table(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "benchmark.py"),
            "--dataset",
            "shapes",
            "--limit",
            "96",
            "--val-size",
            "32",
            "--repeats",
            "1",
            "--systems",
            "cnn-torch,torch-dataloader",
            "--json",
            str(tmp_path / "runs.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "| system | epoch s" in result.stdout
    assert "| cnn-torch |" in result.stdout and "| torch-dataloader |" in result.stdout
    assert "failed" not in result.stdout
    assert (tmp_path / "runs.json").is_file()


def small_benchmark(systems: str) -> subprocess.CompletedProcess:
    """scripts/benchmark.py on 64 shapes images, one round of ``systems``; it must succeed."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--dataset", "shapes", "--limit", "64",
         "--val-size", "32", "--repeats", "1", "--systems", systems],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.subprocess
def test_benchmark_probes_run_and_print_their_table():
    result = small_benchmark("loop-plain,loop-both,val-batch-32")
    assert "| probe |" in result.stdout
    assert all(f"| {name} |" in result.stdout for name in ("loop-plain", "loop-both", "val-batch-32"))
    assert "failed" not in result.stdout


@pytest.mark.subprocess
def test_benchmark_times_fit_with_the_layers_as_written_beside_fit():
    result = small_benchmark("cnn-torch,cnn-torch-written-order")
    # the systems' table (8 columns; the ratio table has fewer): the same numbers either way,
    # so the same validation accuracy
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| cnn-torch")]
    accuracies = {cells[1].strip(): cells[6].strip() for cells in rows if len(cells) == 9}
    assert set(accuracies) == {"cnn-torch", "cnn-torch-written-order"}
    assert accuracies["cnn-torch"] == accuracies["cnn-torch-written-order"]


@pytest.mark.subprocess
def test_time_layers_times_each_layer_in_the_order_fit_runs_them():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "time_layers.py"), "--dataset", "shapes", "--limit", "96"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    forward = [line.split()[2] for line in result.stdout.splitlines() if line.strip().startswith("forward")]
    # each max-pooling before its ReLU, as LessonModel.forward runs them; the dense ReLU stays
    assert forward == ["Conv2d", "MaxPool2d", "ReLU", "Conv2d", "MaxPool2d", "ReLU",
                       "Flatten", "Linear", "ReLU", "Linear"]  # fmt: skip
    backward = [line.split()[2] for line in result.stdout.splitlines() if line.strip().startswith("backward")]
    assert backward == forward[::-1]  # every layer's backward timed, last layer first
    assert "optimizer.step()" in result.stdout and "convolutions" in result.stdout
