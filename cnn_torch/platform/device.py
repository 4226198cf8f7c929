"""Choosing the device once, and the per-batch conversion the lesson does with ``/ 255.0``."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
import warnings
from pathlib import Path

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
    kind = str(device).split(":")[0]
    missing = unavailable(kind)
    if missing:  # the command line checks --device first, in its own words (cnn_torch.cli.flags)
        raise UserError(f"device={device!r} was asked for but {missing} is not available: pass device='cpu' or 'auto'")
    if kind not in ("cpu", "cuda", "mps"):
        raise UserError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'mps'")
    return torch.device(device)


def unavailable(kind: str) -> str | None:
    """``"CUDA"`` or ``"MPS"`` when that kind of device was asked for and this machine lacks it."""
    if kind == "cuda" and not torch.cuda.is_available():
        return "CUDA"
    if kind == "mps" and not torch.backends.mps.is_available():
        return "MPS"
    return None


def as_float(images: torch.Tensor, layout: torch.memory_format | None = None) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1] (the lesson's ``/ 255.0``); float images keep their values.

    The one place the division is written: ``fit``, ``evaluate`` and ``predict`` call it per
    batch, ``to_float`` and ``to_model_input`` for whole sets. On the CPU a batch (N, C, H, W)
    comes back channels-last in memory (same shape, same values, only the order of the numbers
    in memory differs) unless ``layout`` names another memory format.
    """
    # channels-last on the CPU: oneDNN's convolutions and max-pooling are faster on it (measured:
    # training +20%, validation 2x); not measured on GPUs, so they keep the layout they get
    if layout is None:
        layout = torch.channels_last if images.ndim == 4 and images.device.type == "cpu" else torch.preserve_format
    if images.dtype == torch.uint8:
        return images.to(torch.float32, memory_format=layout).div_(255.0)
    return images.to(memory_format=layout)


def keep_freed_memory(device: torch.device | None = None) -> None:
    """Let glibc's malloc (Linux) keep freed memory for reuse instead of returning it to the kernel.

    Every training step allocates and frees the same few-MB activations. By default glibc hands
    blocks that large back to the kernel at once, and the next step pays thousands of page
    faults to get fresh zeroed pages (measured on CIFAR-10: ~5,000 faults per step, a third of
    the CPU's time). Larger thresholds make it reuse them. A no-op elsewhere, and for a
    ``device`` other than the CPU.
    """
    if not sys.platform.startswith("linux") or (device is not None and device.type != "cpu"):
        return
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return
    mallopt(-3, 64 * 2**20)  # M_MMAP_THRESHOLD: blocks under 64 MiB come from the reusable heap
    mallopt(-1, 128 * 2**20)  # M_TRIM_THRESHOLD: keep up to 128 MiB of free heap instead of trimming it


class PrecisionWarning(UserWarning):
    """``precision="bf16"`` where the hardware only emulates bfloat16 (slow)."""


@functools.cache
def has_native_bf16(device_type: str) -> bool:
    """Whether bfloat16 matmuls and convolutions run natively: on a CPU, AMX-BF16 or AVX512-BF16
    (otherwise oneDNN emulates them, measured 9x slower than float32 on an AVX2 CPU)."""
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return True
    capabilities = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.6
    if capabilities is not None:
        found = capabilities()
        return bool(found.get("amx_bf16") or found.get("avx512_bf16"))
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse an unknown precision; warn (once, before training) where bf16 would be emulated."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: use fp32 or bf16")
    if precision == "bf16" and not has_native_bf16(device.type):
        warnings.warn(
            f"bf16 precision on a {device.type.upper()} without native bf16 (no AMX-BF16 or AVX512-BF16):"
            " PyTorch emulates it, about 9x slower than fp32; use fp32 here",
            PrecisionWarning,
            stacklevel=4,  # the caller of fit
        )


def autocast(device: torch.device, precision: str):
    """bf16 autocast when asked for (matmuls and convs in bfloat16, the rest in float32)."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: use fp32 or bf16")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class AutocastForward(torch.nn.Module):
    """``model``'s forward pass under bf16 autocast, its logits handed back in float32 for the loss."""

    def __init__(self, model: torch.nn.Module, device: torch.device, precision: str):
        super().__init__()
        self.model, self.device, self.precision = model, device, precision

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return self.model(images).float()


def in_precision(model: torch.nn.Module, device: torch.device, precision: str) -> torch.nn.Module:
    """The model the training forward pass goes through: ``model`` itself in fp32, else
    :class:`AutocastForward` around it (its hooks still fire: they are on ``model``)."""
    return model if precision == "fp32" else AutocastForward(model, device, precision)


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), for benchmark records: a speed is a fact about one CPU."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
