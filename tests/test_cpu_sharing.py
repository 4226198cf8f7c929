"""Trainings that share the CPU take turns step by step (cnn_torch/machinery/cpu_sharing.py).

A neighbour may change a run's speed, never its numbers: real processes train alone and two at
once, and their Histories are compared bit for bit; the thread count is recorded at every step
and never changes. Nothing here is timed.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from cnn_torch import fit
from cnn_torch.machinery import cpu_sharing
from cnn_torch.models import cifar_model_small

# One training in its own process: waits at a barrier (until `expected` trainings are ready, so
# that two start together), then prints its History, the thread counts seen at every forward and
# optimizer step, and how many of its turns it had to wait for.
WORKER = r"""
import json, os, sys, time
import torch
from cnn_torch import fit
from cnn_torch.machinery import cpu_sharing
from cnn_torch.models import cifar_model_small

barrier, expected = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(min(2, os.cpu_count() or 1))
turns = []

class Counted(cpu_sharing.Turns):
    def __init__(self, folder):
        super().__init__(folder)
        turns.append(self)

cpu_sharing.Turns = Counted
torch.manual_seed(0)
images = torch.randint(0, 256, (320, 3, 32, 32), dtype=torch.uint8)
labels = torch.randint(0, 10, (320,))
model = cifar_model_small()
optimizer = torch.optim.Adam(model.parameters(), eps=1e-7)
threads = []
model.register_forward_pre_hook(lambda *_: threads.append(torch.get_num_threads()))
optimizer.register_step_post_hook(lambda *_: threads.append(torch.get_num_threads()))
open(os.path.join(barrier, str(os.getpid())), "w").close()
while len(os.listdir(barrier)) < expected:
    time.sleep(0.01)
history = fit(model, torch.nn.CrossEntropyLoss(), optimizer, images, labels, epochs=2, batch_size=32,
              validation_split=0.2, verbose=0, device="cpu", seed=0)
print(json.dumps({"history": {k: [v.hex() for v in vs] for k, vs in history.history.items()},
                  "threads": sorted(set(threads)), "expected_threads": min(2, os.cpu_count() or 1),
                  "waited": sum(t.waited for t in turns), "taken": sum(t.taken for t in turns)}))
"""


def _train(tmp_path, name: str, count: int, env: dict) -> list[dict]:
    barrier = tmp_path / name
    barrier.mkdir()
    command = [sys.executable, "-c", WORKER, str(barrier), str(count)]
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(count)]  # fmt: skip
    results = []
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.mark.subprocess
@pytest.mark.skipif(os.name != "posix", reason="trainings take turns through flock (POSIX)")
def test_a_neighbour_changes_the_speed_never_the_numbers(tmp_path):
    """The same seed alone and beside another training (two real processes started together): the
    same History, bit for bit; the two took turns; the thread count never changed during a run."""
    env = {**os.environ, "CNN_TORCH_RUNNING": str(tmp_path / "running")}
    env.pop("CNN_TORCH_SHARE_CORES", None)  # the default settings
    (alone,) = _train(tmp_path, "alone", 1, env)
    together = _train(tmp_path, "together", 2, env)
    assert alone["waited"] == 0 and alone["taken"] > 0
    for run in together:
        assert run["history"] == alone["history"]  # float.hex: every bit
    for run in (alone, *together):
        assert run["threads"] == [run["expected_threads"]]  # one count, all run long
    assert sum(run["waited"] for run in together) > 0  # they did run at the same time, in turns

@pytest.mark.subprocess
def test_fit_asks_for_the_turn_at_each_step_and_each_validation_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_TORCH_RUNNING", str(tmp_path))
    monkeypatch.delenv("CNN_TORCH_SHARE_CORES", raising=False)
    asked, taken = [], []
    monkeypatch.setattr(cpu_sharing.Turns, "hand_over", lambda self, _hand_over=cpu_sharing.Turns.hand_over: (
        asked.append(self.held), _hand_over(self)))  # fmt: skip
    monkeypatch.setattr(cpu_sharing.Turns, "take", lambda self, _take=cpu_sharing.Turns.take: (
        taken.append(self.held), _take(self)))  # fmt: skip
    model = cifar_model_small()
    optimizer = torch.optim.Adam(model.parameters())
    images = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(100) % 10
    fit(model, torch.nn.CrossEntropyLoss(), optimizer, images, labels, epochs=1, batch_size=20,
        validation_split=0.2, validation_batch_size=10, verbose=0, device="cpu")  # fmt: skip
    assert len(asked) == 4 + 2  # 80 images in steps of 20, then 20 to validate in 10s
    assert taken == [False]  # alone: taken at the first step, kept to the end
    # given back after fit: another process takes the step lock at once
    probe = "import fcntl, os, sys; fcntl.flock(os.open(sys.argv[1], os.O_RDWR), fcntl.LOCK_EX | fcntl.LOCK_NB)"
    subprocess.run([sys.executable, "-c", probe, str(tmp_path / "step.lock")], check=True, timeout=60)


@pytest.mark.skipif(os.name != "posix", reason="trainings take turns through flock (POSIX)")
def test_turns_alternate(tmp_path):
    """Two trainings that ask again right after each turn still take turns (flock alone is not fair)."""
    order, stop = [], threading.Event()

    def train(name: str):
        turns = cpu_sharing.Turns(tmp_path)  # its own open file: flock treats it as another process
        try:
            while not stop.is_set():
                turns.take()
                order.append(name)
                time.sleep(0.01)  # a step: long beside the moment between two (a batch's indexing)
                turns.give_back()
        finally:
            turns.close()

    first = cpu_sharing.Turns(tmp_path)
    first.take()  # the second training starts while the first is in a step
    worker = threading.Thread(target=train, args=("second",))
    worker.start()
    probe = os.open(tmp_path / "waiting.lock", os.O_RDWR)
    while _free(probe):  # until the second one waits
        pass
    os.close(probe)
    try:
        for _ in range(50):
            order.append("first")
            time.sleep(0.01)
            first.give_back()
            first.take()
    finally:
        stop.set()
        first.close()
        worker.join(timeout=60)
    # they alternate (a busy machine may delay a waiter's announcement now and then): none starves
    assert order.count("first") == 50 and order.count("second") >= 40


@pytest.mark.skipif(os.name != "posix", reason="trainings take turns through flock (POSIX)")
def test_hand_over_keeps_the_turn_alone_and_gives_it_to_a_waiter(tmp_path, monkeypatch):
    """fit's hook calls hand_over() at each step's start: alone, the turn is kept; with another
    training waiting, it passes once the turn has lasted TURN_SECONDS, so both go on, a few steps each."""
    monkeypatch.setattr(cpu_sharing, "TURN_SECONDS", 0.03)
    order, stop = [], threading.Event()
    first = cpu_sharing.Turns(tmp_path)
    for _ in range(5):  # alone: one turn, kept
        first.hand_over()
        time.sleep(0.01)
    assert first.taken == 1 and first.waited == 0

    def train(name: str):
        turns = cpu_sharing.Turns(tmp_path)
        try:
            while not stop.is_set():
                turns.hand_over()
                order.append(name)
                time.sleep(0.01)  # a step
        finally:
            turns.close()

    worker = threading.Thread(target=train, args=("second",))
    worker.start()
    try:
        for _ in range(60):
            first.hand_over()
            order.append("first")
            time.sleep(0.01)
    finally:
        stop.set()
        first.close()
        worker.join(timeout=60)
    runs = [len(list(group)) for _, group in itertools.groupby(order)]
    assert order.count("second") >= 30  # neither starves
    assert max(runs[1:-1]) <= 8  # a turn: 0.03 s of 0.01 s steps (and a busy machine's delays), never all


def _free(descriptor: int) -> bool:
    import fcntl

    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(descriptor, fcntl.LOCK_UN)
    return True


def test_off_and_on_gpu_nothing_is_taken(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_TORCH_RUNNING", str(tmp_path))
    model = cifar_model_small()
    with cpu_sharing.sharing_cpu_cores(model, torch.device("meta")) as turns:
        assert turns is None
    monkeypatch.setenv("CNN_TORCH_SHARE_CORES", "0")
    with cpu_sharing.sharing_cpu_cores(model, torch.device("cpu")) as turns:
        assert turns is None
    monkeypatch.delenv("CNN_TORCH_SHARE_CORES")
    with cpu_sharing.sharing_cpu_cores(model, torch.device("cpu")) as turns:
        assert turns is not None and not turns.held


# A fresh process (its own OpenMP threads): a convolution, stop_spinning(), the same convolution.
SPINNING_PROBE = r"""
import json, os, torch
from cnn_torch.machinery import cpu_sharing
torch.set_num_threads(2)
torch.manual_seed(0)
images, kernel = torch.randn(32, 16, 32, 32), torch.randn(32, 16, 3, 3)
threads = lambda: len(os.listdir("/proc/self/task"))
before = torch.nn.functional.conv2d(images, kernel)
running = threads()
cpu_sharing.stop_spinning()
paused = threads()
after = torch.nn.functional.conv2d(images, kernel)
print(json.dumps({"running": running, "paused": paused, "again": threads(), "same": torch.equal(before, after),
                  "num_threads": torch.get_num_threads(), "found": cpu_sharing._openmp_pause() is not None}))
"""


@pytest.mark.subprocess
@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or (os.cpu_count() or 1) < 2, reason="Linux, 2+ cores")
def test_stop_spinning_ends_idle_threads_and_changes_no_number():
    """The threads a training's OpenMP runtime keeps spinning end when it yields its turn; the next
    operation starts as many again and computes the same bits."""
    out = subprocess.run([sys.executable, "-c", SPINNING_PROBE], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "2"}, check=True).stdout  # fmt: skip
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["found"], "no OpenMP runtime with omp_pause_resource_all found in this process"
    assert seen["paused"] == seen["running"] - 1  # the one worker thread of a 2-thread team ended
    assert seen["again"] == seen["running"] and seen["num_threads"] == 2
    assert seen["same"]
