"""What the test files share: the Keras backend, the scripts' code run in this process, and the
scripts run as a learner runs them.

A script's flag and error checks run through its ``main(argv)`` here (``run_cli``): the same
code as ``python scripts/NAME.py``, without the seconds each new Python spends importing torch.
A test starts a real process (``run_script``) only where a process is the point: signals, two
processes at once, torchrun, a fresh interpreter, the command line's smoke runs. Such a test is
marked ``subprocess`` (pyproject.toml lists the markers), so the quick run can leave it out.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest
import torch

# Keras reads these once, at its first import: before any test file's. The parity checks compare on the CPU.
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("KERAS_TORCH_DEVICE", "cpu")

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"

# the warnings a plain ``python script.py`` does not show (Python's default filters)
HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


@pytest.fixture(scope="session", autouse=True)
def trainings_of_this_session(tmp_path_factory):
    """Trainings elsewhere on the machine (another test worker, a learner's run) would change the
    thread count of a training in this process mid-run (cnn_torch/machinery/cpu_sharing.py), and
    with it the last bits of numbers that tests compare bit for bit: this process and the ones it
    starts announce their trainings in a folder of their own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNN_TORCH_RUNNING", str(tmp_path_factory.mktemp("running")))
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


def run_script(name: str, *argv, cwd: Path = ROOT, env: dict | None = None, stdin: str | None = None,
               timeout: int = 600) -> subprocess.CompletedProcess:  # fmt: skip
    """``python scripts/NAME.py argv`` in a new process, from ``cwd``; ``env`` is added to the environment."""
    return subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), *map(str, argv)], cwd=cwd, env={**os.environ, **(env or {})},
        input=stdin, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
