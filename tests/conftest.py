"""What the test files share: the Keras backend, the test session's own folder of running
trainings, and the scripts' code run in this process.

A script's flags, errors and tiny runs go through its ``main(argv)`` here (``run_cli``): the same
code as ``python scripts/NAME.py``, without the seconds each new Python spends importing torch.
A test starts a real process only where a process is the point: signals, two processes at once,
torchrun, a terminal, a fresh interpreter, the smoke run of each script. Such a test is marked
``subprocess`` (pyproject.toml lists the markers), so the quick run can leave it out.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import select
import struct
import subprocess
import warnings
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest
import torch

# Keras reads these once, at its first import: before any test file's. The parity checks compare on the CPU.
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("KERAS_TORCH_DEVICE", "cpu")

# the warnings a plain ``python script.py`` does not show (Python's default filters)
HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def pytest_configure(config):
    """Under pytest-xdist: one thread per worker, so the workers share the cores without spinning
    against each other; with one thread each they need not take turns step by step either
    (cnn_torch/machinery/cpu_sharing.py), which would make the workers wait for each other. The tests
    of taking turns set their own environment."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
        os.environ.setdefault("CNN_TORCH_SHARE_CORES", "0")
        # xdist's workers export COLUMNS=80, which cnn-torch takes as the width to wrap text at
        # (cnn_torch/machinery/terminal.py): the tests of wrapping set it themselves
        os.environ.pop("COLUMNS", None)


@pytest.fixture(scope="session", autouse=True)
def trainings_of_this_session(tmp_path_factory):
    """CPU trainings take turns, a step each, under a lock in a shared folder (machinery/cpu_sharing.py;
    the thread count is never changed, so the numbers are the same either way): this session's
    trainings, in this process, in its workers and in the processes they start, take their lock in
    a folder of their own, so they never wait on trainings elsewhere on the machine (a learner's
    run, another test session), only on each other."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "running"  # the workers': one
    folder.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNN_TORCH_RUNNING", str(folder))
        yield


def cli_module(name: str) -> ModuleType:
    """The code of ``scripts/NAME.py``: ``cnn_torch/cli/NAME.py``, with ``parse_args(argv)`` and ``main(argv)``."""
    return importlib.import_module(f"cnn_torch.cli.{name}")


def run_cli(name: str, *argv, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python scripts/NAME.py argv`` in this process: ``main(argv)``'s exit code (argparse's too),
    its stdout and its stderr, with the warnings a plain ``python`` shows appended as the scripts
    print them (``warning: ...``). ``cwd`` and ``env`` (added to the environment) hold for the call;
    what ``main`` changes for the whole process (the warnings' format, deterministic algorithms,
    the thread count) is put back."""
    argv = [str(arg) for arg in argv]
    stdout, stderr = io.StringIO(), io.StringIO()
    before = (os.getcwd(), warnings.formatwarning, torch.are_deterministic_algorithms_enabled(),
              torch.get_num_threads())  # fmt: skip
    try:
        with mock.patch.dict(os.environ, env or {}), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if cwd is not None:
                os.chdir(cwd)
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    code = cli_module(name).main(argv)
                except SystemExit as exit_:  # argparse: --help (0) or a usage error (2)
                    code = exit_.code or 0
    finally:
        os.chdir(before[0])
        warnings.formatwarning = before[1]
        torch.use_deterministic_algorithms(before[2])
        torch.set_num_threads(before[3])
    shown = [caught_ for caught_ in caught if not issubclass(caught_.category, HIDDEN_WARNINGS)]
    errors = stderr.getvalue() + "".join(f"warning: {caught_.message}\n" for caught_ in shown)
    return subprocess.CompletedProcess([name, *argv], code, stdout.getvalue(), errors)


def run_in_terminal(argv: list[str], cwd: Path, columns: int = 80) -> str:
    """Run a command on a pseudo-terminal ``columns`` wide, offline; return what it printed."""
    import fcntl  # POSIX only, as pseudo-terminals are
    import pty
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "xterm", "OMP_NUM_THREADS": "1",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}  # fmt: skip
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 600)
        if not ready:
            process.kill()
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the command ended and closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")
