"""A run killed hard (SIGKILL: a flat battery, the out-of-memory killer) resumes to the run never
stopped, byte for byte, in every configuration whose state lives beyond the weights and the
optimizer: early stopping (its patience count and best weights), augmentation (the layers' draw
counters), batch normalisation (moving statistics), L2, and the frozen DenseNet121 of the
transfer lesson (its reused features).

Each configuration starts two real ``scripts/train.py`` processes side by side: the run never
stopped, and one that is killed with SIGKILL as soon as its second epoch is on disk, then
resumed with ``--resume``. Nothing of the killed process survives but its files: no ``finally``,
no ``close_run``, a ``running`` status in run.json and (until the kernel frees it) its lock.

First, without processes: EarlyStopping's state survives ``last.pt`` at every epoch a run can
be cut at, on scripted values, and through ``fit`` itself on tiny tensors.
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
import torch

from cnn_torch import fit
from cnn_torch.checkpoints import load_checkpoint, model_from_checkpoint
from cnn_torch.cli.runs import RunRecorder, resume_early_stopping
from cnn_torch.errors import UserError
from cnn_torch.history import History
from cnn_torch.keras_rules.stopping import EarlyStopping
from cnn_torch.models import build_model

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "scripts" / "train.py"

RUN = ["--dataset", "shapes", "--limit", "256", "--epochs", "4", "--seed", "3", "--quiet"]
CONFIGS = {
    "plain": [],
    # the unbroken run stops after epoch 3 (val_accuracy 0.157, 0.157: no improvement) and ends with
    # epoch 2's weights; a resume that forgot the patience count would train epoch 4
    "patience": ["--monitor", "val_accuracy", "--patience", "1", "--restore-best-weights"],
    "augment": ["--augment", "flip"],
    "batch_norm": ["--batch-norm"],
    "l2": ["--l2", "0.01"],
}
# The frozen DenseNet121 at 160x160 costs a minute of CPU even for 64 images: slow.
TRANSFER = ["--dataset", "shapes", "--limit", "64", "--batch-size", "16", "--epochs", "4", "--seed", "3", "--quiet",
            "--model", "densenet121_transfer", "--weights", "none", "--patience", "2"]  # fmt: skip

# The default settings: a neighbour changes the speed, never the numbers (trainings take turns,
# each with its own fixed thread count: cnn_torch/machinery/cpu_sharing.py)
ENV = {key: value for key, value in os.environ.items() if key != "CNN_TORCH_SHARE_CORES"}


# --- EarlyStopping's state in last.pt, without processes ------------------------------------------

STOPPERS = {  # each stops inside the values below, the last one after a warm-up and below a baseline
    "patience 1": ({"patience": 1, "restore_best_weights": True}, [0.9, 0.8, 0.85, 0.7, 0.75, 0.6]),
    "patience 2": ({"patience": 2, "restore_best_weights": True}, [0.9, 0.8, 0.85, 0.7, 0.75, 0.8, 0.6]),
    "start_from_epoch": ({"patience": 1, "start_from_epoch": 2, "restore_best_weights": True},
                         [0.5, 0.4, 0.9, 0.8, 0.85, 0.6]),
    "baseline": ({"patience": 2, "baseline": 0.5, "min_delta": 0.01}, [0.9, 0.8, 0.7, 0.705, 0.4]),
}  # fmt: skip


def scripted_run(stopper: EarlyStopping, values: list[float], run_dir: Path, first: int = 0, model=None):
    """What fit and the CLI do with each epoch, on scripted val_loss values: the weights of epoch e
    are all e; the History, then last.pt (RunRecorder, copied aside as last-<e+1>.pt), then the
    EarlyStopping. Returns (the epochs trained, the epoch whose weights the model ends with)."""
    model = model or build_model("model_intro", num_classes=3)
    history = History.from_dict(torch.load(run_dir / "last.pt")["history"]) if first else History()
    recorder = RunRecorder(run_dir, model, torch.optim.SGD(model.parameters()), history, ["a", "b", "c"], seed=0,
                           early_stopping=stopper)  # fmt: skip
    stopper.on_train_begin()  # fit's first step, as Keras's: a resumed stopper keeps its state through it
    for epoch in range(first, len(values)):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.fill_(epoch)
        logs = {"loss": 1.0, "val_loss": values[epoch]}
        history.append(epoch, logs)
        recorder(epoch, logs)
        (run_dir / f"last-{epoch + 1}.pt").write_bytes((run_dir / "last.pt").read_bytes())
        if stopper.update(epoch, logs, model):
            break
    stopper.finish(model)
    return history.epoch, int(next(model.parameters()).flatten()[0])


@pytest.mark.parametrize("name", STOPPERS)
def test_early_stopping_resumed_from_any_epoch_stops_as_the_unbroken_run(name, tmp_path):
    arguments, values = STOPPERS[name]
    unbroken = tmp_path / "unbroken"
    expected_epochs, expected_weights = scripted_run(EarlyStopping(**arguments), values, unbroken)
    assert len(expected_epochs) < len(values)  # it stops inside the values
    for cut in range(1, len(expected_epochs) + 1):  # killed once last.pt holds `cut` epochs
        run_dir = tmp_path / f"cut-{cut}"
        run_dir.mkdir()
        (run_dir / "last.pt").write_bytes((unbroken / f"last-{cut}.pt").read_bytes())
        resumed = load_checkpoint(run_dir / "last.pt")
        model, history = model_from_checkpoint(resumed), History.from_dict(resumed["history"])
        stopper = EarlyStopping(**arguments)
        if cut == len(expected_epochs):  # the unbroken run stopped after this epoch: nothing to train
            with pytest.raises(UserError, match=f"stopped early after epoch {cut} .*nothing to resume"):
                resume_early_stopping(stopper, resumed, history, model, run_dir)
            continue
        resume_early_stopping(stopper, resumed, history, model, run_dir)
        assert scripted_run(stopper, values, run_dir, first=cut, model=model) == (expected_epochs, expected_weights)


def test_a_resumed_early_stopping_keeps_its_state_through_one_fit_only():
    stopper = EarlyStopping(patience=3)
    stopper.load_state_dict({**EarlyStopping().state_dict(), "wait": 2, "best": 0.5, "last_epoch": 4})
    stopper.on_train_begin()  # the fit that continues the run
    assert (stopper.wait, stopper.best, stopper.last_epoch) == (2, 0.5, 4)
    stopper.on_train_begin()  # any later fit starts afresh, as Keras's does
    assert (stopper.wait, stopper.best, stopper.last_epoch) == (0, None, None)


def test_fit_resumed_from_last_pt_with_early_stopping_equals_the_unbroken_fit(tmp_path):
    """Through fit itself: the unbroken fit stops after epoch 3 (val_loss 2.559, 2.407, 2.409); the
    one cut after epoch 2 resumes from last.pt and must stop there too, with epoch 2's weights."""
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    labels, validation = torch.arange(40) % 10, (images[:16], (torch.arange(16) + 3) % 10)

    def run(run_dir: Path, epochs: int, resumed: dict | None = None) -> History:
        torch.manual_seed(0)
        model = model_from_checkpoint(resumed) if resumed else build_model("model_intro", num_classes=10)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
        history, stopper = History(), EarlyStopping(patience=1, restore_best_weights=True)
        if resumed:
            optimizer.load_state_dict(resumed["optimizer"]["state_dict"])
            history = History.from_dict(resumed["history"])
            resume_early_stopping(stopper, resumed, history, model, run_dir)
        recorder = RunRecorder(run_dir, model, optimizer, history, [str(i) for i in range(10)], seed=0,
                               early_stopping=stopper)  # fmt: skip
        fit(model, torch.nn.CrossEntropyLoss(), optimizer, images, labels, epochs=epochs, batch_size=8, seed=0,
            validation_data=validation, verbose=0, initial_epoch=len(history.epoch), history=history,
            early_stopping=stopper, on_epoch_end=recorder)  # fmt: skip
        torch.save(model.state_dict(), run_dir / "final.pt")
        return history

    expected = run(tmp_path / "unbroken", 6)
    assert expected.epoch == [0, 1, 2]  # a resume with a fresh EarlyStopping trains epochs 3 and 4
    run(tmp_path / "cut", 2)
    resumed = run(tmp_path / "cut", 6, load_checkpoint(tmp_path / "cut" / "last.pt"))
    assert resumed.to_dict() == expected.to_dict()
    final, unbroken = torch.load(tmp_path / "cut" / "final.pt"), torch.load(tmp_path / "unbroken" / "final.pt")
    assert all(torch.equal(final[name], tensor) for name, tensor in unbroken.items())


# --- real processes, killed --------------------------------------------------------------------------


def start(argv: list[str], out: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(TRAIN), *argv, "--out", str(out), "--fig-dir", str(out.parent / "fig")],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )  # fmt: skip


def epochs_on_disk(run_dir: Path, wanted: int) -> int:
    """How many epochs ``last.pt`` holds, read once history.json (written just before it, and small)
    holds ``wanted``; both are replaced atomically, never half-written."""
    try:
        logged = len(json.loads((run_dir / "history.json").read_text())["epoch"])
        return logged if logged < wanted else load_checkpoint(run_dir / "last.pt")["epoch"]
    except (OSError, ValueError, UserError):
        return 0


def wait(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=900)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def kill_after_two_epochs(argv: list[str], root: Path) -> dict:
    """Start the unbroken run and the one to kill side by side; SIGKILL the second as soon as its
    last.pt holds 2 epochs, resume it (the unbroken run still beside it), and wait for both."""
    # --break-at 3:1 with a stdin nobody writes to: should the poll come late, the run waits in pdb
    # during epoch 3 instead of finishing (a transfer model's cached epochs take milliseconds). The
    # kill lands wherever the process is; --break-at is a process flag, and the resume drops it.
    unbroken = start(argv, root / "unbroken")
    killed = start([*argv, "--break-at", "3:1"], root / "killed", stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 900
        while epochs_on_disk(root / "killed", 2) < 2:
            assert killed.poll() is None, wait(killed).stderr
            assert time.monotonic() < deadline, "the run never finished epoch 2"
            time.sleep(0.002)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        left = {
            "history": json.loads((root / "killed" / "history.json").read_text()),
            "last_epoch": load_checkpoint(root / "killed" / "last.pt")["epoch"],
            "run.json": json.loads((root / "killed" / "run.json").read_text()),
        }
        resumed = subprocess.run(
            [sys.executable, str(TRAIN), "--resume", str(root / "killed"), "--quiet"],
            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        return {"killed": killed.returncode, "left": left, "resumed": resumed, "unbroken": wait(unbroken)}
    finally:  # no training process left behind by a failed test
        for process in (unbroken, killed):
            if process.poll() is None:
                process.kill()
                process.wait()


def check_equal_to_the_unbroken_run(result: dict, root: Path) -> None:
    assert result["killed"] == -signal.SIGKILL
    assert result["left"]["run.json"]["status"] == "running"  # the dead process could not say otherwise
    assert len(result["left"]["history"]["epoch"]) == result["left"]["last_epoch"] == 2
    assert result["unbroken"].returncode == 0, result["unbroken"].stderr
    assert result["resumed"].returncode == 0, result["resumed"].stderr
    resumed, unbroken = root / "killed", root / "unbroken"
    for name in ("history.csv", "history.json"):  # float repr()s: equal text is bitwise-equal floats
        assert (resumed / name).read_text() == (unbroken / name).read_text(), name
    final, expected = load_checkpoint(resumed / "model.pt"), load_checkpoint(unbroken / "model.pt")
    assert final["epoch"] == expected["epoch"]
    for name, tensor in expected["state_dict"].items():  # moving statistics and draw counters included
        assert torch.equal(final["state_dict"][name], tensor), name
    record = json.loads((resumed / "run.json").read_text())
    assert record["status"] == "finished" and record["epochs_done"] == len(expected["history"]["epoch"])


# plain and patience run by default; the others add only state that lives in the state_dict (draw
# counters, moving statistics) or in the loss, at three processes each: slow
KILLED = [name if name in ("plain", "patience") else pytest.param(name, marks=pytest.mark.slow) for name in CONFIGS]


@pytest.mark.parametrize("config", KILLED)
def test_a_run_killed_after_two_epochs_resumes_to_the_unbroken_run(config, tmp_path, capsys):
    result = kill_after_two_epochs([*RUN, *CONFIGS[config]], tmp_path)
    check_equal_to_the_unbroken_run(result, tmp_path)
    if config == "patience":  # the unbroken run stopped early, inside the 4 epochs: it is over
        assert json.loads((tmp_path / "unbroken" / "history.json").read_text())["epoch"] == [0, 1, 2]
        from cnn_torch.cli.train import main

        capsys.readouterr()
        assert main(["--resume", str(tmp_path / "unbroken"), "--quiet"]) == 2
        refusal = capsys.readouterr().err
        assert "unbroken stopped early after epoch 3 (val_accuracy did not improve for 1 epoch)" in refusal
        assert "there is nothing to resume" in refusal and "Traceback" not in refusal


@pytest.mark.slow
def test_a_killed_transfer_run_resumes_to_the_unbroken_run(tmp_path):
    result = kill_after_two_epochs(TRANSFER, tmp_path)
    check_equal_to_the_unbroken_run(result, tmp_path)
