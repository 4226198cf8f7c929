"""Trainings that share the CPU take an even share of its cores (cnn_torch/machinery/cpu_sharing.py).

The thread counts are checked, not the time: two real processes announce themselves, and
each sees the other and drops to its share; alone, a training keeps every thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from cnn_torch import fit
from cnn_torch.machinery import cpu_sharing
from cnn_torch.models import cifar_model_small


def test_share_of_threads():
    assert cpu_sharing.share_of_threads(2, 1) == 2
    assert cpu_sharing.share_of_threads(2, 2) == 1
    assert cpu_sharing.share_of_threads(2, 5) == 1  # never zero
    assert cpu_sharing.share_of_threads(16, 3) == 5


def test_stale_announcements_are_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_TORCH_RUNNING", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / dead.stdout.strip()).touch()  # a training that crashed without cleaning up
    (tmp_path / "notes.txt").touch()
    assert cpu_sharing.running_trainings(tmp_path) == 0
    (tmp_path / str(os.getpid())).touch()
    assert cpu_sharing.running_trainings(tmp_path) == 1


def test_fit_takes_its_share_while_another_training_runs_and_all_threads_after(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_TORCH_RUNNING", str(tmp_path))
    monkeypatch.setattr(cpu_sharing, "CHECK_EVERY", 0.0)  # look at every step
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        threads_before = torch.get_num_threads()
        torch.set_num_threads(2)
        seen = []

        def record(*_):
            seen.append(torch.get_num_threads())

        model = cifar_model_small()
        optimizer = torch.optim.Adam(model.parameters())
        optimizer.register_step_post_hook(record)  # after fit's own hook: the count the next step uses
        images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
        labels = torch.arange(64) % 10
        fit(model, torch.nn.CrossEntropyLoss(), optimizer, images, labels, epochs=1, verbose=0, device="cpu")
        assert seen and set(seen) == {2}  # alone: both threads
        (tmp_path / str(other.pid)).touch()  # another training announces itself
        seen.clear()
        fit(model, torch.nn.CrossEntropyLoss(), optimizer, images, labels, epochs=1, verbose=0, device="cpu")
        assert set(seen) == {1}  # two trainings on two threads' worth: one each
        assert torch.get_num_threads() == 2  # given back after fit
        assert sorted(p.name for p in tmp_path.iterdir()) == [str(other.pid)]  # ours is gone
    finally:
        other.kill()
        other.wait()
        torch.set_num_threads(threads_before)


@pytest.mark.subprocess
def test_two_processes_see_each_other(tmp_path):
    """Two real trainings started together: each reports its threads while the other runs."""
    script = (
        "import time, torch\nfrom cnn_torch import fit\nfrom cnn_torch.machinery import cpu_sharing\n"
        "from cnn_torch.models import cifar_model_small\n"
        "cpu_sharing.CHECK_EVERY = 0.0; torch.set_num_threads(2); seen = []\n"
        "model = cifar_model_small(); optimizer = torch.optim.Adam(model.parameters())\n"
        "optimizer.register_step_post_hook(lambda *_: seen.append(torch.get_num_threads()))\n"
        "images = torch.randint(0, 256, (512, 3, 32, 32), dtype=torch.uint8); labels = torch.arange(512) % 10\n"
        "deadline, shared_since = time.monotonic() + 120, None\n"
        "while time.monotonic() < deadline and (shared_since is None or time.monotonic() < shared_since + 5):\n"
        "    fit(model, torch.nn.CrossEntropyLoss(), optimizer, images, labels, epochs=1, verbose=0, device='cpu')\n"
        "    shared_since = shared_since or (time.monotonic() if 1 in seen else None)\n"  # the other must see us too
        "print(min(seen))\n"
    )
    env = {**os.environ, "CNN_TORCH_RUNNING": str(tmp_path)}
    first = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    second = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    outputs = [process.communicate(timeout=300)[0].strip() for process in (first, second)]
    assert outputs == ["1", "1"]


def test_deterministic_runs_keep_their_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_TORCH_RUNNING", str(tmp_path))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (tmp_path / str(other.pid)).touch()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.use_deterministic_algorithms(True)
        optimizer = torch.optim.SGD(cifar_model_small().parameters(), lr=0.1)
        with cpu_sharing.sharing_cpu_cores(optimizer, torch.device("cpu")):
            assert torch.get_num_threads() == 2 and not (tmp_path / str(os.getpid())).exists()
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)
        other.kill()
        other.wait()
