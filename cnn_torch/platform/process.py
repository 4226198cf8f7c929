"""Process, device and seed: set once at the start of a run, then passed explicitly.

One process: rank 0 on the chosen device. Under torchrun: join the process group and take
this rank's GPU. Every rank uses rank 0's seed.
"""

from __future__ import annotations

import os

import torch

from cnn_torch.errors import UserError
from cnn_torch.platform import distributed


def start(device_name: str, seed: int | None, deterministic: bool = False) -> tuple[int, torch.device, int]:
    """``(rank, device, seed)``: the process joined, the device chosen, every RNG seeded."""
    rank, device = setup_process(device_name)
    seed = choose_seed(seed)
    seed_everything(seed, deterministic=deterministic)
    return rank, device, seed


def choose_seed(seed: int | None) -> int:
    """A given seed, or a fresh random one (recorded in run.json so the run can be repeated).
    Under torchrun every rank must use rank 0's seed."""
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little") % 2**31
    return distributed.from_rank_0(seed)  # [torchrun] a CPU-tensor broadcast would fail under NCCL


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed torch (CPU and CUDA), numpy and Python; optionally deterministic algorithms."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def setup_process(device_name: str) -> tuple[int, torch.device]:
    """One process: (0, the chosen device). Under torchrun: join the process group
    (NCCL on CUDA, gloo on the CPU) and take the GPU of this local rank."""
    from cnn_torch.platform.device import resolve_device

    device = resolve_device(device_name)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, device
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type not in ("cuda", "cpu"):
        raise UserError(f"torchrun runs on CUDA GPUs or CPUs, not {device.type}: pass --device cuda or --device cpu")
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(
                f"local rank {local_rank} has no GPU (this machine has {torch.cuda.device_count()}):"
                " pass --nproc-per-node no larger than the number of GPUs"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # device_id binds NCCL to this rank's GPU (barriers and object broadcasts then use it)
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            device_id=device if device.type == "cuda" else None,
        )
    return dist.get_rank(), device


