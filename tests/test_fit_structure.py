"""Issue 25, part 2: ``fit`` reads like the lesson, and what is not a lesson step still works.

- ``fit`` stays about a screen, its batch loop holds the lesson's steps in the lesson's order
  (a literal ``loss.backward()`` among them) and none of torchrun's, Ctrl-C's or the debugger's.
- ``break_at``: a forward hook on the loss; it counts training batches only, from ``initial_epoch``,
  leaves no hook behind, and fit's pdb stops on fit's own line after the loss.
- Under torchrun, :class:`RankShareLoss` keeps each rank's mean loss as the value (what the metrics
  add up) while the ranks' gradients, averaged, are the whole batch's: played one rank at a time.
"""

from __future__ import annotations

import ast
import inspect
import io
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from cnn_torch import fit
from cnn_torch.platform import distributed
from cnn_torch.training import fit as training_fit

TESTS = Path(__file__).resolve().parent
NUM_IMAGES, BATCH_SIZE, NUM_CLASSES = 10, 4, 3  # 3 batches an epoch: 4, 4 and 2


def fit_source() -> tuple[ast.FunctionDef, list[str], int]:
    """fit's syntax tree, its source lines and the file line of the first of them."""
    lines, first_line = inspect.getsourcelines(training_fit)
    return ast.parse("".join(lines)).body[0], lines, first_line


def code_lines() -> list[str]:
    """fit's lines after the docstring that are neither blank nor comments."""
    tree, lines, _ = fit_source()
    body = lines[tree.body[1].lineno - 1 : tree.end_lineno]
    return [line for line in body if line.strip() and not line.strip().startswith("#")]


def batch_loop() -> ast.For:
    tree, _, _ = fit_source()
    loops = [node for node in ast.walk(tree) if isinstance(node, ast.For)]
    return next(loop for loop in loops if ast.unparse(loop.target) == "(step, batch_indices)")


def test_fit_is_about_a_screen():
    # 63 before issue 25; 49 once torchrun's scaling, the process settings, --trace and --break-at left the loop
    assert len(code_lines()) <= 49, len(code_lines())


def test_the_batch_loop_holds_the_lesson_s_steps_in_the_lesson_s_order():
    statements = [ast.unparse(node) for node in batch_loop().body]
    steps = [
        "logits = training_model(images)",  # forward
        "loss = loss_fn(logits, labels)",  # loss
        "optimizer.zero_grad()",
        "loss.backward()",  # literally, as in the lesson's PyTorch
        "optimizer.step()",
        "loss_sum += loss.detach() * len(labels)",  # running metrics
        "correct += count_correct(logits, labels)",
        "seen += len(labels)",
    ]
    assert [statement for statement in statements if statement in steps] == steps
    # after the batches: validation, then the History
    tree, _, _ = fit_source()
    epoch_loop = next(
        node for node in ast.walk(tree) if isinstance(node, ast.For) and ast.unparse(node.target) == "epoch"
    )
    after = [ast.unparse(node) for node in epoch_loop.body]
    after = after[after.index(ast.unparse(batch_loop())) + 1 :]
    validate = next(i for i, text in enumerate(after) if "evaluate(" in text)
    assert validate < after.index("history.append(epoch, logs)")


def test_the_batch_loop_has_no_torchrun_ctrl_c_or_debugger_statement():
    loop = "\n".join(ast.unparse(node) for node in batch_loop().body)
    for name in ("breakpoint", "global_batch_loss", "keep_freed_memory", "stop_on_sigint", "sharing_cpu_cores",
                 "break_at", "ctrl_c", "autocast", "logits.sum()", "distributed."):  # fmt: skip
        assert name not in loop, name
    # what stays of torchrun: the batches are this rank's shares, in the loop's own line
    assert ast.unparse(batch_loop().iter) == "enumerate(distributed.local_shares(order, batch_size))"


# --- --break-at --------------------------------------------------------------------------------


def tiny_data():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(NUM_IMAGES, 3, 8, 8, generator=generator)
    labels = torch.randint(NUM_CLASSES, (NUM_IMAGES,), generator=generator)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(3 * 8 * 8, NUM_CLASSES))
    return model, images, labels


@pytest.fixture
def recorder(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("PYTHONBREAKPOINT", "breakpoint_recorder.record")
    import breakpoint_recorder

    breakpoint_recorder.CALLS.clear()
    return breakpoint_recorder.CALLS


def test_break_at_counts_training_batches_only_from_initial_epoch_and_leaves_no_hook(recorder):
    model, images, labels = tiny_data()
    loss_fn = nn.CrossEntropyLoss()
    # a resumed run (initial_epoch=1) that validates: the validation's loss calls are not batches
    fit(model, loss_fn, "adam", images, labels, epochs=3, batch_size=BATCH_SIZE, validation_data=(images, labels),
        initial_epoch=1, shuffle=False, verbose=0, device="cpu", break_at=(3, 3))  # fmt: skip
    assert recorder == [
        {
            "epoch": 2,
            "step": 2,
            "shapes": {"images": (2, 3, 8, 8), "labels": (2,), "logits": (2, NUM_CLASSES), "loss": ()},
            "loss_has_graph": True,
        }
    ]
    assert not model._forward_pre_hooks and not model._forward_hooks and not loss_fn._forward_hooks


@pytest.mark.parametrize("break_at", [(1, 4), (1, 1), (5, 1)])  # a batch past the epoch's 3, before, after
def test_break_at_outside_this_fit_never_stops(recorder, break_at):
    model, images, labels = tiny_data()
    fit(model, nn.CrossEntropyLoss(), "sgd", images, labels, epochs=3, batch_size=BATCH_SIZE, initial_epoch=1,
        shuffle=False, verbose=0, device="cpu", break_at=break_at)  # fmt: skip
    assert recorder == []


def test_a_plain_function_loss_can_be_broken_at_too(recorder):
    model, images, labels = tiny_data()
    history = fit(model, nn.functional.cross_entropy, "sgd", images, labels, epochs=1, batch_size=BATCH_SIZE,
                  shuffle=False, verbose=0, device="cpu", break_at=(1, 2))  # fmt: skip
    assert [(call["epoch"], call["step"]) for call in recorder] == [(0, 1)]
    assert history.epoch == [0]


def test_fit_s_pdb_stops_on_fit_s_line_after_the_loss(monkeypatch, capsys):
    """The real pdb (fit's own, which leaves Ctrl-C alone) passes over the hook's frame and
    torch's: it stops on ``optimizer.zero_grad()`` in training.py, where ``loss`` is in scope."""
    monkeypatch.delenv("PYTHONBREAKPOINT", raising=False)
    monkeypatch.setattr(sys, "breakpointhook", sys.__breakpointhook__)  # not pytest's: fit installs its own
    monkeypatch.setattr(sys, "stdin", io.StringIO("p loss.grad_fn is not None, tuple(images.shape)\nn\nc\n"))
    model, images, labels = tiny_data()
    fit(model, nn.CrossEntropyLoss(), "sgd", images, labels, epochs=1, batch_size=BATCH_SIZE, shuffle=False,
        verbose=0, device="cpu", break_at=(1, 2))  # fmt: skip
    out = capsys.readouterr().out
    _, lines, first_line = fit_source()
    zero_grad = first_line + next(i for i, line in enumerate(lines) if line.strip().startswith("optimizer.zero_grad"))
    assert f"training.py({zero_grad})fit()" in out, out
    assert "(True, (4, 3, 8, 8))" in out, out
    assert f"training.py({zero_grad + 1})fit()\n-> loss.backward()" in out, out  # n: the next line of fit
    assert sys.breakpointhook is sys.__breakpointhook__  # fit put it back


# --- torchrun's loss, one rank at a time --------------------------------------------------------


def play_rank(monkeypatch, rank: int, world_size: int) -> None:
    monkeypatch.setattr(distributed, "rank_and_world_size", lambda: (rank, world_size))


@pytest.mark.parametrize(("num_samples", "batch_size", "world_size"), [(46, 15, 2), (10, 4, 3), (7, 3, 4)])
def test_rank_losses_keep_the_mean_and_give_the_whole_batch_gradient(monkeypatch, num_samples, batch_size,
                                                                     world_size):  # fmt: skip
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    images, labels = torch.rand(num_samples, 5), torch.randint(0, 3, (num_samples,))
    loss_fn = nn.CrossEntropyLoss()
    rank_losses = []
    for rank in range(world_size):
        play_rank(monkeypatch, rank, world_size)
        rank_losses.append(distributed.loss_for_rank(loss_fn, num_samples, batch_size))
    for _epoch in range(2):  # the schedule repeats every epoch
        for global_batch in torch.arange(num_samples).split(batch_size):
            whole = torch.autograd.grad(loss_fn(model(images[global_batch]), labels[global_batch]), model.weight)[0]
            summed = torch.zeros_like(model.weight)
            for rank in range(world_size):
                play_rank(monkeypatch, rank, world_size)
                share = distributed.local_share(global_batch)
                logits = model(images[share])
                loss = rank_losses[rank](logits, labels[share])
                if len(share):  # the value is the share's own mean loss, exactly
                    assert torch.equal(loss, loss_fn(logits, labels[share]))
                else:  # an empty share: 0, still joined to the graph
                    assert loss.item() == 0.0 and loss.grad_fn is not None
                summed += torch.autograd.grad(loss, model.weight, allow_unused=True)[0]
            torch.testing.assert_close(summed / world_size, whole)  # DDP averages over the ranks


def test_rank_loss_passes_evaluation_through_and_refuses_a_batch_out_of_step(monkeypatch):
    play_rank(monkeypatch, 1, 2)
    loss_fn = nn.CrossEntropyLoss()
    rank_loss = distributed.loss_for_rank(loss_fn, 10, 4)  # global batches 4, 4, 2: rank 1 gets 2, 2, 1
    logits, labels = torch.randn(3, 3, requires_grad=True), torch.tensor([0, 1, 2])
    with torch.no_grad():  # evaluate: any slice, not counted
        assert torch.equal(rank_loss(logits, labels), loss_fn(logits, labels))
    assert rank_loss.batches == 0
    with pytest.raises(RuntimeError, match="not its share of batch 1"):
        rank_loss(logits, labels)  # 3 samples where rank 1's share of batch 1 is 2
    play_rank(monkeypatch, 0, 1)
    assert distributed.loss_for_rank(loss_fn, 10, 4) is loss_fn  # one process: the loss itself
