"""Two trainings on one small CPU take turns, step by step, instead of fighting over the cores.

PyTorch runs each CPU operation on ``torch.get_num_threads()`` threads (one per core). Between
operations its OpenMP threads spin, waiting for the next one, rather than sleep: alone, that
is what makes small operations fast. When a second training (a notebook beside a script, the
test suite beside a run) wants the same cores, each process's spinning threads take the cores
the other needs, and both slow down far more than sharing fairly would (measured on a 2-core
AMD EPYC: 5.3x each instead of 2x; docs/speed.md, "Two trainings at once").

So CPU trainings take turns. A machine-wide lock (``flock`` on a file in a per-user folder) is
the turn: a training takes it at the start of a step (a forward pre-hook on the model: nothing in
``fit``'s loop) and keeps it, step after step, while no other training waits. When another waits
and the turn has lasted ``TURN_SECONDS`` (a few steps), the next step's start hands it over. Three
things make a hand-over cheap, each measured on a 2-core AMD EPYC (docs/speed.md):

- the turn covers whole steps and what lies between them (the metrics, the next batch's
  gathering), so nothing of the waiting training runs beside the other's step;
- the training that gives the turn, and the one that finds it taken, first ends its idle OpenMP
  threads (``omp_pause_resource_all``, OpenMP 5): after an operation an OpenMP thread spins a
  while before it sleeps (GNU libgomp: 300,000 turns of a loop, milliseconds), and a spinning
  thread takes a core the running step's threads wait for. Without it each of two trainings
  took 4-5x its time alone, turns or not. (``OMP_WAIT_POLICY=PASSIVE`` would keep threads from
  spinning too, but only if set before torch is imported, and it slows a training alone.)
- when its turn comes, a training starts its threads again on the cores its main thread is not
  on (:func:`start_threads_apart`): the kernel puts a new thread on its creator's core and moves
  it only milliseconds later, while a step's threads wait for each other after every operation.
  Without it one turn in five took 3x as long.

The thread count is never changed: another thread count splits a sum in another order, so a run
whose threads changed because a neighbour ran would differ from the same seed run alone in the
last float bits. Taking turns changes only when a step runs, never what it computes, so a run's
History is the same with or without a neighbour.

``flock`` is not fair: a process that gives the lock back and asks again a few microseconds later
could take it again before the waiting one wakes. A waiter therefore holds a shared lock on a
second file while it waits, and the one that gave the step lock back waits (briefly: until the
waiter has woken and taken it) while that file is held, so turns alternate. Locks held by a process
that dies are released by the kernel: a killed training never blocks another.

``CNN_TORCH_SHARE_CORES=0`` turns it off (benchmarks); distributed runs (torchrun) never take turns,
their ranks wait for each other already.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import tempfile
import time
from pathlib import Path

import torch

from cnn_torch.platform import distributed

# a turn lasts at least this long (then ends at the next step's start if another training waits): a
# hand-over costs about a millisecond (threads ended, started again, cold caches), a step of the
# lesson's model 10-15 ms on 2 cores
TURN_SECONDS = 0.04

try:
    import fcntl
except ImportError:  # Windows: no flock; trainings there do not take turns
    fcntl = None


def running_folder() -> Path:
    """Where CPU trainings of this user find the lock they take turns with."""
    return Path(os.environ.get("CNN_TORCH_RUNNING") or Path(tempfile.gettempdir()) / f"cnn_torch-running-{_user()}")


class Turns:
    """One training's side of the machine-wide turn: ``take()`` before a step, ``give_back()`` after it."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self._step = os.open(folder / "step.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._waiting = os.open(folder / "waiting.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self.held = False
        self.since = 0.0  # when this turn began (time.monotonic)
        self.taken = self.waited = 0  # how many turns, and how many of them after waiting for another

    def take(self) -> None:
        if self.held:
            return
        try:
            fcntl.flock(self._step, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another training is in its step: say so, then wait for it
            stop_spinning()
            fcntl.flock(self._waiting, fcntl.LOCK_SH)
            try:
                fcntl.flock(self._step, fcntl.LOCK_EX)
            finally:
                fcntl.flock(self._waiting, fcntl.LOCK_UN)
            self.waited += 1
            start_threads_apart()
        self.held = True
        self.taken += 1
        self.since = time.monotonic()

    def hand_over(self) -> None:
        """At the start of a step: take the turn if not held; if held and another training waits,
        give it the turn and wait for ours again; if none waits, keep it (alone, the only cost:
        two system calls a step)."""
        if not self.held:
            return self.take()
        if time.monotonic() - self.since < TURN_SECONDS:  # a turn is a few steps: each hand-over costs
            return
        try:
            fcntl.flock(self._waiting, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another training waits: its turn, then ours again
            stop_spinning()  # before it wakes: our threads must be gone when its step starts
            self.give_back()
            self.take()
            return
        fcntl.flock(self._waiting, fcntl.LOCK_UN)

    def give_back(self) -> None:
        if not self.held:
            return
        fcntl.flock(self._step, fcntl.LOCK_UN)
        self.held = False
        try:  # nobody waits: go on at once (alone, this is the only cost: two system calls)
            fcntl.flock(self._waiting, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # someone waits: let it take the step before asking again
            fcntl.flock(self._waiting, fcntl.LOCK_EX)
        fcntl.flock(self._waiting, fcntl.LOCK_UN)

    def close(self) -> None:
        self.give_back()
        os.close(self._step)
        os.close(self._waiting)


@contextlib.contextmanager
def sharing_cpu_cores(model: torch.nn.Module, device: torch.device):
    """While ``fit`` trains on the CPU: take the machine-wide turn at the start of each training step
    and validation batch (a forward pre-hook on the model), and hand it over there when another
    training waits, so trainings beside it alternate a few steps at a time. The thread count is
    left as it is. Yields the :class:`Turns` (``None`` when not sharing)."""
    if (device.type != "cpu" or fcntl is None or os.environ.get("CNN_TORCH_SHARE_CORES") == "0"
            or distributed.rank_and_world_size()[1] > 1):  # fmt: skip
        yield None
        return
    try:
        turns = Turns(running_folder())
    except OSError:  # a read-only temp folder: train as before, without taking turns
        yield None
        return

    def before_forward(module, args):  # a training step or a validation batch begins
        turns.hand_over()

    handles = [model.register_forward_pre_hook(before_forward)]
    try:
        yield turns
    finally:
        for handle in handles:
            handle.remove()
        turns.close()


def start_threads_apart() -> None:
    """Start this process's OpenMP threads now, each on a core other than the one this thread runs
    on. A new thread starts on its creator's core, and the kernel moves it to a free one only
    milliseconds later; meanwhile a step's threads, which wait for each other after every
    operation, share one core (measured on the 2-core AMD EPYC: one turn in five took 3x as long).
    The threads end at the next turn's end (:func:`stop_spinning`), and their placement with them."""
    if not hasattr(os, "sched_setaffinity") or not os.path.isdir("/proc/self/task"):
        return
    cores = os.sched_getaffinity(0)
    threads = torch.get_num_threads()
    if len(cores) < 2 or threads < 2:
        return
    before = set(os.listdir("/proc/self/task"))
    torch.ones(32768 * threads).mul_(2)  # one block of work per thread (PyTorch's grain): all of them start
    with open("/proc/thread-self/stat") as stat:
        core = int(stat.read().rsplit(")", 1)[1].split()[36])  # the core this thread last ran on
    for thread in set(os.listdir("/proc/self/task")) - before:
        with contextlib.suppress(OSError):  # it ended meanwhile, or the cores are not ours to choose
            os.sched_setaffinity(int(thread), (cores - {core}) or cores)


def stop_spinning() -> None:
    """End this process's idle OpenMP threads now, so that they do not spin on the cores the
    other training's step needs. The next operation starts them again (tens of microseconds),
    as many as before: the thread count, and so every sum's order, stays the same."""
    pause = _openmp_pause()
    if pause is not None:
        pause(1)  # omp_pause_soft: the runtime's threads end; its settings stay


@functools.lru_cache(maxsize=1)
def _openmp_pause():
    """OpenMP 5's ``omp_pause_resource_all`` of the OpenMP runtime torch loaded (GNU libgomp in
    Linux wheels, LLVM's libomp or Intel's libiomp5 elsewhere), or None where there is none."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if re.search(r"/lib(gomp|omp|iomp5)[.-]", line)})
    except OSError:  # no /proc (macOS): no pausing; turns are still taken
        return None
    for path in paths:
        try:
            pause = ctypes.CDLL(path).omp_pause_resource_all
        except (OSError, AttributeError):  # an OpenMP runtime older than OpenMP 5
            continue
        pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
        return pause
    return None


def _user() -> str:
    try:
        return str(os.getuid())
    except AttributeError:  # Windows
        return os.environ.get("USERNAME", "user")
