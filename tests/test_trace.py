"""``fit(..., trace=True)`` narrates the first batch; ``break_at`` stops inside the loop.

A tiny model on 10 random 12x12 images, batch 4: 3 batches an epoch, the last of 2.
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from torch import nn

from cnn_torch import fit
from cnn_torch.models import model_intro

REPO = Path(__file__).resolve().parents[1]
NUM_IMAGES, BATCH_SIZE, NUM_CLASSES, EPOCHS = 10, 4, 3, 2


def tiny_run():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(NUM_IMAGES, 3, 12, 12, generator=generator)
    labels = torch.randint(NUM_CLASSES, (NUM_IMAGES,), generator=generator)
    torch.manual_seed(0)
    model = model_intro(num_classes=NUM_CLASSES, input_shape=(3, 12, 12))  # params: conv2d/*, dense/*
    return model, images, labels


def run_fit(model, images, labels, **kwargs):
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)  # keeps a step count the trace shows
    return fit(model, nn.CrossEntropyLoss(), optimizer, images, labels, epochs=EPOCHS, batch_size=BATCH_SIZE,
               shuffle=False, verbose=0, device="cpu", **kwargs)


def trace_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("[trace]")]


def test_trace_narrates_the_first_batch_once_in_order(capsys):
    model, images, labels = tiny_run()
    # the first batch's loss and gradients, computed here by hand, for the trace to match
    reference = copy.deepcopy(model).train()
    expected_loss = nn.functional.cross_entropy(reference(images[:BATCH_SIZE]), labels[:BATCH_SIZE])
    expected_loss.backward()
    keras = {"0.weight": "conv2d/kernel", "0.bias": "conv2d/bias", "4.weight": "dense/kernel", "4.bias": "dense/bias"}
    expected_norms = {keras[name]: p.grad.norm().item() for name, p in reference.named_parameters()}

    history = run_fit(model, images, labels, trace=True)
    lines = trace_lines(capsys.readouterr().out)

    expected = [
        r"epoch 1, batch 1/3: indices \[0, 1, 2, 3\] \(4 samples\)$",
        r"batch moved to cpu: images shape \(4, 3, 12, 12\) float32 on cpu,"
        r" labels shape \(4,\) int64 on cpu; pixel range \[\d\.\d+, \d\.\d+\]$",
        r"forward pass in training mode: logits shape \(4, 3\) float32 on cpu; first row \[\S+, \S+, \S+\]$",
        r"loss = CrossEntropyLoss\(logits, labels\) = (?P<loss>\d+\.\d+) \(mean over the batch\)$",
        r"optimizer\.zero_grad\(\)",
        r"loss\.backward\(\): gradient norm per parameter: (?P<norms>.+)$",
        r"optimizer\.step\(\): Adam, learning rate 0\.001, step count 1; parameter change norm: ",
        r"metrics updated from this batch's pre-update predictions; the trace ends here, training continues",
    ]
    assert len(lines) == len(expected), "\n".join(lines)  # once: the first batch of the first epoch only
    matches = []
    for line, pattern in zip(lines, expected, strict=True):
        match = re.match(r"\[trace\] " + pattern, line)
        assert match, f"{line!r} does not match {pattern!r}"
        matches.append(match)

    assert float(matches[3]["loss"]) == pytest.approx(expected_loss.item(), abs=1e-6)
    norms = dict(item.split(" ") for item in matches[5]["norms"].split(", "))
    assert list(norms) == ["conv2d/kernel", "conv2d/bias", "dense/kernel", "dense/bias"]  # the lesson's names
    for name, value in norms.items():
        assert float(value) == pytest.approx(expected_norms[name], rel=1e-3)

    # the trace changed nothing: training went on for every epoch and batch
    assert history.epoch == [0, 1]
    assert all(len(values) == EPOCHS for values in history.history.values())
    assert history.params["steps"] == 3


def test_trace_fits_80_columns_between_words(capsys, monkeypatch):
    """COLUMNS=80 (a terminal's width passed on): every trace line fits, no word is cut."""
    monkeypatch.setenv("COLUMNS", "80")
    model, images, labels = tiny_run()
    run_fit(model, images, labels, trace=True)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(("[trace]", "        "))]
    assert len(lines) > 16 and max(len(line) for line in lines) <= 80, "\n".join(lines)
    joined = " ".join(line.strip() for line in lines)
    assert "conv2d/kernel" in joined and "train_step" in joined
    assert "SparseCategoricalCrossentropy(from_logits=True)" in joined


def test_trace_off_prints_nothing(capsys):
    model, images, labels = tiny_run()
    run_fit(model, images, labels)
    assert trace_lines(capsys.readouterr().out) == []


def test_break_at_stops_once_with_the_batch_in_scope(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setenv("PYTHONBREAKPOINT", "breakpoint_recorder.record")  # read by breakpoint() at each call
    import breakpoint_recorder

    breakpoint_recorder.CALLS.clear()
    model, images, labels = tiny_run()
    history = run_fit(model, images, labels, break_at=(1, 2))  # epoch 1, batch 2 (1-based)

    assert breakpoint_recorder.CALLS == [
        {
            "epoch": 0,  # fit's own counters are 0-based
            "step": 1,
            "shapes": {"images": (4, 3, 12, 12), "labels": (4,), "logits": (4, NUM_CLASSES), "loss": ()},
            "loss_has_graph": True,  # after the forward pass, before backward
        }
    ]
    assert history.epoch == [0, 1]


def test_cli_trace_prints_the_steps(tmp_path):
    result = run_cli("train", "--dataset", "shapes", "--limit", "200", "--epochs", "1", "--trace", "--quiet",
                     "--out", tmp_path / "run", "--fig-dir", tmp_path / "fig", cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = trace_lines(result.stdout)
    assert len(lines) == 8, result.stdout
    assert re.match(r"\[trace\] epoch 1, batch 1/\d+: indices \[.*\]( \.\.\.)? \(32 samples\)$", lines[0])
    assert "images shape (32, 3, 32, 32) float32" in lines[1]
    assert "logits shape (32, 10)" in lines[2]
    assert re.search(r"optimizer\.step\(\): Adam, learning rate 0\.001, step count 1;", lines[6])
    assert (tmp_path / "run" / "history.json").exists()


NUMBER = re.compile(r"-?\d+\.\d+(?:e-?\d+)?|\b\d+\b")


def test_trace_through_hooks_prints_what_the_loop_printed_before():
    """tests/data/trace_before_hooks.txt is the trace as fit printed it when the tracer's calls
    stood in the loop (before issue 14 moved them into hooks): the same lines, words and
    numbers (the numbers within rounding, since another CPU may differ in the last digit)."""
    model, images, labels = tiny_run()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_fit(model, images, labels, trace=True)
    before = (REPO / "tests" / "data" / "trace_before_hooks.txt").read_text().splitlines()
    now = out.getvalue().splitlines()
    assert [NUMBER.sub("#", line) for line in now] == [NUMBER.sub("#", line) for line in before]
    for line_now, line_before in zip(now, before, strict=True):
        numbers_now = [float(n) for n in NUMBER.findall(line_now)]
        assert numbers_now == pytest.approx([float(n) for n in NUMBER.findall(line_before)], rel=2e-3, abs=2e-3)


def test_fit_has_no_trace_lines_and_stays_one_screen():
    import ast

    source = (REPO / "cnn_torch" / "training.py").read_text()
    fit_def = next(node for node in ast.parse(source).body if getattr(node, "name", None) == "fit")
    body = source.splitlines()[fit_def.body[1].lineno - 1 : fit_def.end_lineno]  # after the docstring
    code = [line for line in body if line.strip() and not line.strip().startswith("#")]
    # 60 when issue 14 moved the trace into hooks; since then one line each for Keras's compile-by-name
    # check (issue 17) and EarlyStopping's reset at the start of fit, and two for the latter's if
    assert len(code) <= 63, len(code)
    assert not [line for line in code if "tracer" in line or "trace." in line]


def test_the_trace_leaves_no_hook_behind_and_other_step_hooks_still_run(capsys):
    """The trace's hooks remove themselves, the step post-hook only at the next forward pass:
    another step post-hook registered after it (as cnn_torch.machinery.cpu_sharing's is) runs every step."""
    model, images, labels = tiny_run()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    later_hook_calls = []

    def register_a_later_step_hook(module, inputs):  # at the first forward pass: after the trace's hooks
        if not later_hook_calls:
            later_hook_calls.append("registered")
            optimizer.register_step_post_hook(lambda *args: later_hook_calls.append("step"))

    handle = model.register_forward_pre_hook(register_a_later_step_hook)
    fit(model, nn.CrossEntropyLoss(), optimizer, images, labels, epochs=EPOCHS, batch_size=BATCH_SIZE,
        shuffle=False, verbose=0, device="cpu", trace=True)  # fmt: skip
    handle.remove()
    assert later_hook_calls.count("step") == EPOCHS * 3  # 3 batches an epoch
    assert not model._forward_pre_hooks and not model._forward_hooks
    left = [hook.__name__ for hook in (*optimizer._optimizer_step_pre_hooks.values(),
                                       *optimizer._optimizer_step_post_hooks.values())]  # fmt: skip
    assert "narrate_backward" not in left and "narrate_step" not in left, left
