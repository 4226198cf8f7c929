"""The few lines that make ``fit`` run under ``torchrun`` (DistributedDataParallel).

In one process every function here is the identity, so the loop reads the same.
Under torchrun each rank takes its share of every *global* batch (``--batch-size``
keeps its Keras meaning), the loss is scaled so the averaged gradient equals the
one a single process would compute on the whole batch, and metric *sums* are
all-reduced so History means exactly what it means in one process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def rank_and_world_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Only rank 0 prints, draws the progress bar and writes files."""
    return rank_and_world_size()[0] == 0


def local_share(global_batch: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global batch of indices (all of it in one process)."""
    rank, world_size = rank_and_world_size()
    if world_size == 1:
        return global_batch
    return torch.tensor_split(global_batch, world_size)[rank]


def global_batch_loss(local_mean_loss: torch.Tensor, local_size: int, global_size: int) -> torch.Tensor:
    """Scale a rank's mean loss so DDP's gradient *average* equals the whole batch's gradient.

    The whole-batch mean is sum_r(n_r * mean_r) / N; DDP divides the summed gradients by
    the world size W, so each rank back-propagates mean_r * n_r * W / N. With W = 1 this
    is mean_r itself. (An average of per-rank means would overweight a small last shard.)
    """
    _, world_size = rank_and_world_size()
    if world_size == 1:
        return local_mean_loss
    if local_size == 0:  # a last batch smaller than the world size leaves some ranks empty
        return local_mean_loss.nan_to_num(0.0) * 0.0
    return local_mean_loss * (local_size * world_size / global_size)


def all_reduce_sums(*sums: torch.Tensor) -> list[torch.Tensor]:
    """Add up metric sums (loss x samples, correct, seen) across ranks; identity in one process."""
    _, world_size = rank_and_world_size()
    if world_size == 1:
        return list(sums)
    stacked = torch.stack([s.to(torch.float64) for s in sums])
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    return list(stacked.unbind())


def wrap_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model the training forward pass goes through: DDP under torchrun, else itself."""
    _, world_size = rank_and_world_size()
    if world_size == 1:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
