"""Choosing the device once, and the per-batch conversion the lesson does with ``/ 255.0``."""

from __future__ import annotations

import contextlib

import torch

from cnn_torch.errors import UserError

PRECISIONS = ("fp32", "bf16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA if available, else Apple's MPS, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = device.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device} was asked for but CUDA is not available: use --device cpu or auto")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {device} was asked for but MPS is not available: use --device cpu or auto")
    if kind not in ("cpu", "cuda", "mps"):
        raise UserError(f"unknown device {device!r}: use auto, cpu, cuda or mps")
    return torch.device(device)


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1] (the lesson's ``/ 255.0``); float images pass through."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images


def autocast(device: torch.device, precision: str):
    """bf16 autocast when asked for (matmuls and convs in bfloat16, the rest in float32)."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: use fp32 or bf16")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
