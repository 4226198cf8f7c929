"""The few lines that make ``fit`` run under ``torchrun`` (DistributedDataParallel).

In one process every function here is the identity, so the loop reads the same.
Under torchrun each rank takes its share of every *global* batch (``--batch-size``
keeps its Keras meaning), the loss is scaled so the averaged gradient equals the
one a single process would compute on the whole batch, and metric *sums* are
all-reduced so History means exactly what it means in one process.
``docs/distributed.md`` explains how to launch it on one or several machines.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

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
    """This rank's contiguous slice of a global batch of indices (all of it in one process).

    Shares differ by at most one sample, and a last batch smaller than the world size
    leaves the last ranks an empty share: they still run forward and backward (DDP needs
    every rank in every gradient all-reduce), with a loss of 0.
    """
    rank, world_size = rank_and_world_size()
    if world_size == 1:
        return global_batch
    return torch.tensor_split(global_batch, world_size)[rank]


def local_shares(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """The epoch's batches of ``batch_size`` indices from ``order`` (the last one partial, as Keras
    keeps it), each as this rank's share (:func:`local_share`); the batches themselves in one process."""
    return [local_share(global_batch) for global_batch in order.split(batch_size)]


def global_batch_loss(local_mean_loss: torch.Tensor, local_size: int, global_size: int) -> torch.Tensor:
    """Scale a rank's mean loss so DDP's gradient *average* equals the whole batch's gradient.

    The whole-batch mean is sum_r(n_r * mean_r) / N; DDP divides the summed gradients by
    the world size W, so each rank back-propagates mean_r * n_r * W / N. With W = 1 this
    is mean_r itself. (An average of per-rank means would overweight a small last shard.)
    """
    _, world_size = rank_and_world_size()
    if world_size == 1:
        return local_mean_loss
    if local_size == 0:  # an empty share: the mean of nothing is NaN, and NaN * 0 is still NaN
        return local_mean_loss.nan_to_num(0.0) * 0.0
    return local_mean_loss * (local_size * world_size / global_size)


class RankShareLoss(torch.nn.Module):
    """[torchrun] The loss a rank trains with: ``loss_fn`` on this rank's share of each global batch.

    Its value is the share's mean loss, what the metrics add up and the NaN check reads; a hook on
    it scales the gradient by ``n_rank * W / N`` (:func:`global_batch_loss`), so that DDP's average
    over the ranks is the whole batch's gradient and the loop still calls ``loss.backward()``. An
    empty share gives a zero loss still joined to the graph: that rank takes part in DDP's gradient
    all-reduce too. The global batch's size ``N`` is not in the share: it comes from the batch
    schedule (full batches, then the last partial one), so each call with gradients on is one
    training batch, in order, as ``fit`` makes them; calls without (``evaluate``) pass through.
    """

    def __init__(self, loss_fn, num_samples: int, batch_size: int):
        super().__init__()
        self.loss_fn, self.num_samples, self.batch_size = loss_fn, num_samples, batch_size
        self.steps, self.batches = -(-num_samples // batch_size), 0
        self.rank, self.world_size = rank_and_world_size()  # fixed for the whole fit

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = self.loss_fn(logits, labels)
        if not torch.is_grad_enabled():
            return loss
        step, self.batches = self.batches % self.steps, self.batches + 1
        global_size = min(self.batch_size, self.num_samples - step * self.batch_size)
        rank, world_size = self.rank, self.world_size
        if len(labels) != global_size // world_size + (rank < global_size % world_size):  # local_share's size
            raise RuntimeError(f"rank {rank}: {len(labels)} samples are not its share of batch {step + 1}")
        if not len(labels):  # the mean of nothing is NaN: a zero loss instead, still joined to the graph
            return logits.sum() * 0.0
        if loss.requires_grad:  # back-propagate as if it were global_batch_loss(loss): the same factor
            loss.register_hook(lambda grad: global_batch_loss(grad, len(labels), global_size))
        return loss


def loss_for_rank(loss_fn, num_samples: int, batch_size: int):
    """``loss_fn`` itself in one process; under torchrun, :class:`RankShareLoss` around it."""
    _, world_size = rank_and_world_size()
    return loss_fn if world_size == 1 else RankShareLoss(loss_fn, num_samples, batch_size)


def all_reduce_sums(*sums: torch.Tensor) -> list[torch.Tensor]:
    """Add up metric sums (loss x samples, correct, seen) across ranks; identity in one process.

    The sums travel as float64, so counts stay exact, and come back in their own dtypes, so
    the division after is the float32 one a single process does: the History then holds
    float32 values (0.11764705926179886 for 2/17, not 0.11764705882352941), as Keras's does.
    """
    _, world_size = rank_and_world_size()
    if world_size == 1:
        return list(sums)
    stacked = torch.stack([s.to(torch.float64) for s in sums])
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    return [total.to(s.dtype) for s, total in zip(sums, stacked.unbind(), strict=True)]


def wrap_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model the training forward pass goes through: DDP under torchrun, else itself.

    Wrapping copies rank 0's parameters and buffers to every rank, so all ranks start
    from the same weights whatever their random state.
    """
    _, world_size = rank_and_world_size()
    if world_size == 1:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def from_rank_0(value: int) -> int:
    """Rank 0's ``value`` on every rank (a random seed, say); ``value`` itself in one process.

    ``broadcast_object_list`` picks the device the backend needs: NCCL cannot send a CPU tensor.
    """
    _, world_size = rank_and_world_size()
    if world_size == 1:
        return value
    message = [value]
    dist.broadcast_object_list(message, src=0)
    return message[0]


@contextlib.contextmanager
def local_main_process_first() -> Iterator[None]:
    """Run the block on each machine's first process (LOCAL_RANK 0) before the others.

    For downloads and caches: one process per machine fetches or decodes the data, the
    others wait and then read what it wrote instead of racing it for the same files.
    If the first process fails inside the block, torchrun stops the waiting ones.
    """
    _, world_size = rank_and_world_size()
    first = int(os.environ.get("LOCAL_RANK", "0")) == 0
    if world_size > 1 and not first:
        dist.barrier()
    yield
    if world_size > 1 and first:
        dist.barrier()


def error_prefix() -> str:
    """``error`` in one process, ``error (rank N)`` under torchrun, so a failing rank names itself.

    Read from torchrun's environment, not from the process group: a rank can fail before joining it.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"error (rank {os.environ.get('RANK', '?')})"
    return "error"


def close() -> None:
    """Leave the process group at the end of a run that finished on every rank (no-op otherwise).

    Not on a failure path: a peer may be waiting in a collective, and torchrun ends the run anyway.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
