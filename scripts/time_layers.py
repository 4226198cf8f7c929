"""Where a training step's time goes, layer by layer: each layer's forward and backward, timed.

    python scripts/time_layers.py --data-dir ../shared/data/cifar10-jpg --limit 4000
    python scripts/time_layers.py --data-dir ../shared/data/cifar10-jpg --precision bf16
    python scripts/time_layers.py --dataset shapes --limit 2000                  # offline

``fit``'s training pass written out (channels-last batches, freed memory kept, Adam as the CLI
makes it, bf16 autocast when asked) over one epoch of ``cifar_model_small``, batch 32. Hooks take
the time before and after each layer's forward (module hooks) and its backward (hooks on the
layer's output's gradient function): wall time, nothing else added. The model runs its layers in
the order ``LessonModel.forward`` runs them (each max-pooling before its ReLU; a hook on a layer
would turn that off, so the timed model lists them in that order). Medians over the steps after
the first five. The rest of a step (the batch, the loss, zero_grad, autograd's own work) is the
step time less the layers and the optimizer.

torch.profiler is not used: on this model it inflates memory-bound operators several times over
(a max-pooling backward's zeroing: 1.1 ms a step under the profiler, 0.2 ms timed directly).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict

import torch
from torch import nn

from cnn_torch import data, models
from cnn_torch.keras_rules import optim
from cnn_torch.keras_rules.layers import running_order
from cnn_torch.platform.device import as_float, autocast, keep_freed_memory


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=None, help="cifar10, folder or shapes (default: what --data-dir holds)")
    parser.add_argument("--data-dir", default=None, help="the images (e.g. a folder of train/<class>/*.jpg)")
    parser.add_argument("--limit", type=int, default=4000, help="training images (default: 4000)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args(argv)

    lesson = data.load_data(data.resolve_dataset(args.dataset, args.data_dir), args.data_dir, limit=args.limit)
    train_images, train_labels = lesson.train_images.float() / 255.0, lesson.train_labels  # the lesson's arrays
    torch.manual_seed(0)
    model = models.cifar_model_small(num_classes=lesson.num_classes, input_shape=tuple(train_images.shape[1:]))
    layers = running_order(list(model))  # before the hooks: a hooked layer runs in the written order
    timed = nn.Sequential(*layers)
    optimizer = optim.make_optimizer("adam", model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    device = torch.device("cpu")
    keep_freed_memory(device)

    seconds, started = defaultdict(list), {}
    for index, layer in enumerate(layers):
        name = f"{index:2d} {type(layer).__name__}"

        def before(module, inputs, name=name):
            started[name] = time.perf_counter()

        def after(module, inputs, output, name=name):
            seconds[("forward", name)].append(time.perf_counter() - started[name])
            if output.grad_fn is not None:  # its backward: from the gradient's arrival to the layer's input gradient
                output.grad_fn.register_prehook(lambda grads: started.__setitem__(("back", name), time.perf_counter()))
                output.grad_fn.register_hook(lambda grads_in, grads_out: seconds[("backward", name)].append(
                    time.perf_counter() - started[("back", name)]))  # fmt: skip

        layer.register_forward_pre_hook(before)
        layer.register_forward_hook(after)

    steps, optimizer_steps = [], []
    order = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(0))
    for batch_indices in order.split(32):
        start = time.perf_counter()
        images, labels = as_float(train_images[batch_indices]), train_labels[batch_indices]
        with autocast(device, args.precision):
            logits = timed(images).float()
        loss = loss_fn(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer_start = time.perf_counter()
        optimizer.step()
        optimizer_steps.append(time.perf_counter() - optimizer_start)
        steps.append(time.perf_counter() - start)

    def median_us(values: list[float]) -> float:
        return statistics.median(values[5:] or values) * 1e6

    rows = [(f"{way} {name}", median_us(values)) for (way, name), values in seconds.items()]
    step, optimizer_us = median_us(steps), median_us(optimizer_steps)
    convolutions = sum(us for label, us in rows if "Conv2d" in label)
    rest = step - sum(us for _, us in rows) - optimizer_us
    print(f"{args.precision}, batch 32, {len(train_labels):,} images, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median microseconds per step:")  # fmt: skip
    for label, us in rows:
        print(f"  {label:<22} {us:8.0f}")
    print(f"  {'optimizer.step()':<22} {optimizer_us:8.0f}")
    print(f"  {'the rest':<22} {rest:8.0f}   (batch, loss, zero_grad, autograd)")
    print(f"  {'step':<22} {step:8.0f}   convolutions {convolutions:.0f} ({convolutions / step:.0%})")
    return 0


if __name__ == "__main__":
    from cnn_torch.cli.flags import run_main

    sys.exit(run_main(lambda _: main(), None))  # a UserError (a bad --limit, say): one error line, no traceback
