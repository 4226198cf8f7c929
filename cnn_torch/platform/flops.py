"""How much arithmetic a training step does, and how much the machine can do.

``training_flops_per_image`` counts the floating-point operations of one real training
step (forward, loss, backward) with PyTorch's own ``FlopCounterMode``: 2 per multiply-add
of every convolution and matrix product, forward and backward, nothing for ReLU, pooling,
biases or the optimizer (they are memory-bound and small). The first convolution's
backward pass has no input gradient to compute (the images need none), so a training
step is a little under 3x the forward pass: about 28 MFLOP per image for
``cifar_model_small``.

``matmul_flops_per_second`` times a large float32 matrix product: the practical ceiling
of the machine's arithmetic, against which a training speed is a percentage.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def training_flops_per_image(model: nn.Module, input_shape: Sequence[int] | None = None, batch_size: int = 2) -> float:
    """FLOPs of one training step (forward + loss + backward) per image.

    Runs one step on a batch of random images, on the model's device, and leaves the model's
    gradients and mode as they were (no optimizer step, so the weights do not change).
    """
    if input_shape is None:
        input_shape = model.input_shape  # a LessonModel knows its input shape
    first = next(model.parameters())
    images = torch.rand(batch_size, *input_shape, device=first.device, dtype=first.dtype)
    saved_grads = [p.grad for p in model.parameters()]
    was_training = model.training
    model.train()
    try:
        with FlopCounterMode(display=False) as counter:
            logits = model(images)
            loss = nn.functional.cross_entropy(logits, torch.zeros(batch_size, dtype=torch.long, device=first.device))
            loss.backward()
    finally:
        model.train(was_training)
        for parameter, grad in zip(model.parameters(), saved_grads, strict=True):
            parameter.grad = grad
    return counter.get_total_flops() / batch_size


def forward_flops_per_image(model: nn.Module, input_shape: Sequence[int] | None = None, batch_size: int = 2) -> float:
    """FLOPs of one forward pass (inference) per image."""
    if input_shape is None:
        input_shape = model.input_shape
    first = next(model.parameters())
    images = torch.rand(batch_size, *input_shape, device=first.device, dtype=first.dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images)
    return counter.get_total_flops() / batch_size


def matmul_flops_per_second(size: int = 2048, dtype: torch.dtype = torch.float32, seconds: float = 1.0) -> float:
    """The best rate (FLOP/s) of ``size x size`` matrix products over about ``seconds``, on the CPU
    with torch's current thread count. The best, not the mean: other work on the machine
    only ever slows a product down."""
    a = torch.rand(size, size, dtype=dtype)
    b = torch.rand(size, size, dtype=dtype)
    torch.mm(a, b)  # warm up: the first call allocates and picks its kernel
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
        if time.perf_counter() > deadline:
            break
    return 2 * size**3 / best
