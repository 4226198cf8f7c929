"""Two trainings on one small CPU: share the cores instead of fighting over them.

PyTorch runs each CPU operation on ``torch.get_num_threads()`` threads (one per core). Between
operations its OpenMP threads spin, waiting for the next one, rather than sleep: alone, that
is what makes small operations fast. When a second training (a notebook beside a script, the
test suite beside a run) wants the same cores, each process's spinning threads take the cores
the other needs, and both slow down far more than sharing fairly would (measured on a
2-core machine: 4x each instead of 2x; see BENCHMARKS.md, "Two trainings at once").

``OMP_WAIT_POLICY=PASSIVE`` would stop the spinning, but only if it is set before torch is
imported (a notebook has usually imported torch already), and it slows a run alone. Instead,
each CPU training announces itself in a folder of running trainings, and every second or so
(an optimizer step hook: nothing in ``fit``'s loop) sets its threads to its share of the
cores: all of them alone, ``cores // trainings`` (at least one) when others run. With one
thread per training nothing waits for another thread, so nothing spins.

The thread count decides the order in which a sum is split, so a run whose threads changed
because another training ran beside it differs from the same seed run alone in the last
float bits. ``torch.use_deterministic_algorithms(True)`` (``--deterministic``) turns the
sharing off: such a run keeps its threads, and repeats bit for bit.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import torch

# How often a training looks for the others (seconds): often enough to react within a
# second, rarely enough that the look (one folder listing) costs nothing.
CHECK_EVERY = 1.0


def running_folder() -> Path:
    """Where running CPU trainings announce themselves: one empty file per process."""
    return Path(os.environ.get("CNN_TORCH_RUNNING") or Path(tempfile.gettempdir()) / f"cnn_torch-running-{_user()}")


def running_trainings(folder: Path | None = None) -> int:
    """How many processes are training on the CPU now (this one included), stale files ignored."""
    folder = folder or running_folder()
    count = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.name.isdigit() and _alive(int(entry.name)):
                count += 1
    return count


def share_of_threads(threads_alone: int, trainings: int) -> int:
    """This training's threads: all ``threads_alone`` when it is the only one, else an even share."""
    return max(1, threads_alone // max(1, trainings))


@contextlib.contextmanager
def sharing_cpu_cores(optimizer: torch.optim.Optimizer, device: torch.device):
    """While ``fit`` trains on the CPU: announce this process and keep its thread count at its
    share of the cores (checked from an optimizer step hook). Restores the thread count after."""
    if (device.type != "cpu" or os.name != "posix" or os.environ.get("CNN_TORCH_SHARE_CORES") == "0"
            or torch.are_deterministic_algorithms_enabled()):  # fmt: skip
        # Windows: no cheap way to tell a process is alive; CNN_TORCH_SHARE_CORES=0: benchmarks.
        # Deterministic runs keep their thread count: another count sums in another order.
        yield
        return
    threads_alone = torch.get_num_threads()
    folder = running_folder()
    marker = folder / str(os.getpid())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:  # a read-only temp folder: train as before, without sharing
        yield
        return
    last_check = [0.0]

    def adjust(*_):
        now = time.monotonic()
        if now - last_check[0] >= CHECK_EVERY:
            last_check[0] = now
            wanted = share_of_threads(threads_alone, running_trainings(folder))
            if wanted != torch.get_num_threads():
                torch.set_num_threads(wanted)

    adjust()
    handle = optimizer.register_step_post_hook(adjust)
    try:
        yield
    finally:
        handle.remove()
        with contextlib.suppress(OSError):
            marker.unlink()
        torch.set_num_threads(threads_alone)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # exists, but another user's
        return True
    return True


def _user() -> str:
    try:
        return str(os.getuid())
    except AttributeError:  # Windows
        return os.environ.get("USERNAME", "user")
