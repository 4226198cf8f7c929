"""``torchrun`` on the CPU (gloo): several processes train exactly like one.

First the arithmetic, in one process, by playing each rank in turn: the shares of a
global batch cover it once, and the ranks' scaled losses give the whole batch's gradient.
Then the real thing: ``torchrun`` with two processes must give the History of the
one-process run of the same command (the oracle), only rank 0 may print and write files,
and a rank that fails must end the whole run with a non-zero exit instead of a hang.

The data is chosen to hit the awkward cases: 46 training images in global batches of 15
give batches of 15, 15, 15 and 1. Every full batch splits unevenly (8 + 7 samples), and
the last one leaves rank 1 an empty share; the 9 validation images split 5 + 4.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from cnn_torch.platform import distributed

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "scripts" / "train.py"
FLAGS = [
    "--dataset", "shapes", "--device", "cpu", "--epochs", "2", "--limit", "46", "--batch-size", "15",
    "--optimizer", "sgd", "--seed", "3",
]  # fmt: skip
TIMEOUT = 240  # seconds; a hang fails the test instead of stalling CI

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")


# --- the arithmetic, one rank at a time ---------------------------------------------------


def play_rank(monkeypatch, rank: int, world_size: int) -> None:
    monkeypatch.setattr(distributed, "rank_and_world_size", lambda: (rank, world_size))


@pytest.mark.parametrize(("batch", "world_size"), [(15, 2), (1, 2), (7, 3), (2, 4)])
def test_shares_of_a_global_batch_cover_it_exactly_once(monkeypatch, batch, world_size):
    global_batch = torch.randperm(40)[:batch]
    shares = []
    for rank in range(world_size):
        play_rank(monkeypatch, rank, world_size)
        shares.append(distributed.local_share(global_batch))
    assert torch.equal(torch.cat(shares), global_batch)  # contiguous, in order, nothing twice
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


@pytest.mark.parametrize(("batch", "world_size"), [(15, 2), (1, 2), (7, 3), (2, 4)])
def test_scaled_rank_losses_give_the_whole_batch_gradient(monkeypatch, batch, world_size):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    images, labels = torch.rand(batch, 3, 2, 2), torch.randint(0, 3, (batch,))
    loss_fn = nn.CrossEntropyLoss()
    # one process: the mean loss of the whole batch
    whole = torch.autograd.grad(loss_fn(model(images), labels), list(model.parameters()))
    # W ranks: each back-propagates its scaled share, DDP averages the gradients
    summed = [torch.zeros_like(p) for p in model.parameters()]
    for rank in range(world_size):
        play_rank(monkeypatch, rank, world_size)
        share = distributed.local_share(torch.arange(batch))
        logits = model(images[share])
        loss = loss_fn(logits, labels[share]) if len(share) else logits.sum() * 0.0  # as fit does
        scaled = distributed.global_batch_loss(loss, len(share), batch)
        for total, grad in zip(summed, torch.autograd.grad(scaled, list(model.parameters())), strict=True):
            total += grad
    for expected, total in zip(whole, summed, strict=True):
        torch.testing.assert_close(total / world_size, expected)


def test_one_process_needs_no_process_group(monkeypatch):
    loss_sum, correct = torch.tensor(2.0), torch.tensor(3)
    model = nn.Linear(2, 2)
    assert distributed.rank_and_world_size() == (0, 1)
    assert distributed.all_reduce_sums(loss_sum, correct) == [loss_sum, correct]
    assert distributed.from_rank_0(17) == 17
    assert distributed.wrap_model(model, torch.device("cpu")) is model
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.error_prefix() == "error"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert distributed.error_prefix() == "error (rank 1)"


# --- torchrun, two processes -----------------------------------------------------------------


def torchrun(script: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), *args]


def start(command: list[str], cwd: Path) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks on a small CI machine; same threads for both runs
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, so a timeout can stop torchrun's workers too
    )  # fmt: skip


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    """Wait for ``process``; past TIMEOUT kill its whole process group and fail."""
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"still running after {TIMEOUT} s (a hang?)\nstdout:\n{stdout}\nstderr:\n{stderr}")
    return process.returncode, stdout, stderr


def read_history(run_dir: Path) -> dict:
    return json.loads((run_dir / "history.json").read_text())


@pytest.mark.subprocess
def test_two_ranks_train_like_one_process_and_only_rank_0_writes(tmp_path):
    # both runs at once: the wall time is that of the slower one
    one = start([sys.executable, str(TRAIN), *FLAGS, "--out", "run"], tmp_path / "one")
    two = start(torchrun(TRAIN, *FLAGS), tmp_path / "two")  # no --out: a second writer would make a second run dir
    (code_one, _, err_one), (code_two, out_two, err_two) = finish(one), finish(two)
    assert code_one == 0, err_one
    assert code_two == 0, err_two

    # only rank 0 writes: one run directory, one set of figures, one summary, one progress line per epoch
    run_dirs = list((tmp_path / "two" / "runs").iterdir())
    assert len(run_dirs) == 1, run_dirs
    assert {"history.json", "history.csv", "run.json", "last.pt", "best.pt", "model.pt"} <= {
        path.name for path in run_dirs[0].iterdir()
    }
    # the history's three plots and the training images' grid
    assert len(list((run_dirs[0] / "fig").iterdir())) == len(list((tmp_path / "one" / "run" / "fig").iterdir())) == 4
    assert out_two.count("History:") == 1, out_two
    assert out_two.count("Epoch 1/2") == 1 and out_two.count("Epoch 2/2") == 1, out_two  # on stdout, as Keras

    # the History: same epochs, keys and steps (global batches); values equal up to float rounding
    single, distributed = read_history(tmp_path / "one" / "run"), read_history(run_dirs[0])
    assert distributed["epoch"] == single["epoch"] == [0, 1]
    assert distributed["params"]["steps"] == single["params"]["steps"] == 4  # 15 + 15 + 15 + 1
    assert list(distributed["history"]) == list(single["history"])
    for key, values in single["history"].items():
        tolerance = {"abs": 0.002} if "accuracy" in key else {"rel": 1e-4}
        assert distributed["history"][key] == pytest.approx(values, **tolerance), key
        # float32 numbers, as one process's (and Keras's): 0.11764705926179886 for 2/17, not 0.11764705882352941
        assert torch.tensor(distributed["history"][key]).tolist() == distributed["history"][key], key


@pytest.mark.subprocess
def test_a_failing_rank_ends_the_run_with_an_error_naming_it(tmp_path):
    failing = start(torchrun(ROOT / "tests" / "failing_rank.py", "1", *FLAGS, "--out", "run"), tmp_path)
    code, stdout, stderr = finish(failing)
    assert code != 0
    assert "error (rank 1): a deliberate failure" in stderr, stderr
    assert "History:" not in stdout  # rank 0 never finished
