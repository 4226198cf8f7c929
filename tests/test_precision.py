"""``precision="bf16"``: autocast where the hardware has native bf16, a warning where it would be emulated."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from cnn_torch import fit, models
from cnn_torch.platform import device as device_module


def tiny_fit(precision: str):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(24) % 10
    model = models.cifar_model_small()
    return fit(model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters()), images, labels, epochs=2,
               batch_size=8, validation_split=0.25, verbose=0, seed=0, precision=precision, device="cpu")  # fmt: skip


def test_bf16_without_native_support_warns_once_and_still_trains(monkeypatch):
    monkeypatch.setattr(device_module, "has_native_bf16", lambda device_type: False)
    with pytest.warns(device_module.PrecisionWarning, match="without native bf16.*use fp32") as caught:
        history = tiny_fit("bf16")
    assert len([w for w in caught if w.category is device_module.PrecisionWarning]) == 1  # not one per batch
    assert len(history.history["loss"]) == 2


def test_bf16_with_native_support_does_not_warn(monkeypatch):
    monkeypatch.setattr(device_module, "has_native_bf16", lambda device_type: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", device_module.PrecisionWarning)
        tiny_fit("bf16")


def test_native_bf16_matches_the_cpu_flags():
    flags = open("/proc/cpuinfo").read().split() if __import__("os").path.exists("/proc/cpuinfo") else None
    if flags is None:
        pytest.skip("no /proc/cpuinfo to compare with")
    device_module.has_native_bf16.cache_clear()
    assert device_module.has_native_bf16("cpu") == ("amx_bf16" in flags or "avx512_bf16" in flags)
