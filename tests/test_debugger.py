"""Issue 17, item 5: the debugger as a learner uses it, with ``--break-at``.

``q`` at the breakpoint stops training as Ctrl-C does (no ``BdbQuit`` traceback; ``run.json``
says ``interrupted``; a run with a finished epoch resumes). After ``c``, a Ctrl-C still stops
after the batch (the graceful stop) instead of dropping into pdb somewhere inside torch. The
commands reach pdb through stdin, as they would from a keyboard; the Ctrl-C is a real SIGINT.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "scripts" / "train.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
pytestmark = pytest.mark.subprocess
SMALL = ["--dataset", "shapes", "--limit", "64", "--batch-size", "16", "--seed", "0", "--quiet"]


def test_q_at_the_breakpoint_stops_the_run_as_ctrl_c_does_and_it_resumes(tmp_path):
    run_dir = tmp_path / "run"
    quit_ = subprocess.run([sys.executable, str(TRAIN), *SMALL, "--epochs", "2", "--break-at", "2:1", "--out",
                            str(run_dir)], input="p loss\nq\n", capture_output=True, text=True, env=ENV,
                           timeout=600)  # fmt: skip
    assert quit_.returncode == 130, quit_.stderr
    assert "Traceback" not in quit_.stderr and "BdbQuit" not in quit_.stderr
    assert "quit the debugger: training stopped" in quit_.stderr
    assert "grad_fn=<NllLossBackward0>" in quit_.stdout  # p loss, at epoch 2, batch 1
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted" and record["epochs_done"] == 1
    assert f"Resume with: python scripts/train.py --resume {run_dir} --epochs 2" in quit_.stdout.replace(
        f"python {TRAIN}", "python scripts/train.py"
    )
    resumed = subprocess.run([sys.executable, str(TRAIN), "--resume", str(run_dir), "--quiet"], capture_output=True,
                             text=True, env=ENV, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [0, 1]


def test_ctrl_c_after_c_is_the_graceful_stop_not_pdb(tmp_path):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(  # many epochs: the Ctrl-C comes long before the end
        [sys.executable, str(TRAIN), *SMALL, "--epochs", "200", "--break-at", "1:1", "--out", str(run_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        process.stdin.write("c\n")  # continue from the breakpoint; stdin stays open, as a terminal's does
        process.stdin.flush()
        deadline = time.monotonic() + 600
        while not (run_dir / "history.json").exists():  # an epoch after the breakpoint has finished
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no epoch finished"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "Ctrl-C: stopping after this batch" in stderr
    assert "Program interrupted" not in stdout and stdout.count("(Pdb)") == 1  # pdb never came back
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted" and record["epochs_done"] >= 1
