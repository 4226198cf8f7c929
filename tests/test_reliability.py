"""Nothing is lost: NaN losses, Ctrl-C and crashes keep what is done; resume is exact;
loading is safe; runs record how they were made.

The CLI tests send real signals to real ``scripts/train.py`` processes; the runs they need
start together from one fixture (the machine's cores are shared, and each start is mostly
importing torch); the runs no signal reaches call train.py's ``main()`` in this process.
The API tests do the same things in this process, on tiny data.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import cli_module, run_cli

from cnn_torch import checkpoints as checkpoints_module
from cnn_torch import fit, models
from cnn_torch.checkpoints import load_checkpoint, save_checkpoint
from cnn_torch.cli.runs import RunRecorder, safe_name, write_nan_report
from cnn_torch.history import History
from cnn_torch.machinery.interrupt import TrainingInterrupted, stop_on_sigint
from cnn_torch.platform.fileio import atomic_write, write_json
from cnn_torch.platform.process import seed_everything
from cnn_torch.training import NonFiniteLoss, epoch_order

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "scripts" / "train.py"

# The Ctrl-C runs: model_dropout, so the dropout masks (the RNG state) matter for an exact resume.
CTRL_C_RUN = ["--dataset", "shapes", "--limit", "200", "--batch-size", "16", "--model", "model_dropout",
              "--epochs", "4", "--seed", "11", "--quiet"]  # fmt: skip
DETERMINISTIC_RUN = ["--dataset", "shapes", "--limit", "200", "--model", "model_dropout", "--epochs", "2",
                     "--seed", "5", "--deterministic", "--quiet"]  # fmt: skip
NAN_RUN = ["--dataset", "shapes", "--limit", "200", "--epochs", "2", "--seed", "0", "--quiet",
           "--optimizer", "sgd", "--learning-rate", "1e6"]  # fmt: skip


# The runs share the machine's cores: one thread each, or their thread pools fight for them.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def start(argv: list[str], out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(TRAIN), *argv, "--out", str(out), "--fig-dir", str(out.parent / "fig")],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finished_epochs(run_dir: Path) -> int:
    try:
        return len(json.loads((run_dir / "history.json").read_text())["epoch"])
    except (OSError, ValueError):  # not written yet (it is replaced atomically, never half-written)
        return 0


def wait(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=900)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> dict:
    """Start the Ctrl-C runs at once; Ctrl-C one of them during epoch 3 of 4, then resume it."""
    root = tmp_path_factory.mktemp("reliability")
    runs = {
        "interrupted": start(CTRL_C_RUN, root / "interrupted"),
        "uninterrupted": start(CTRL_C_RUN, root / "uninterrupted"),
    }
    try:
        # Ctrl-C once epoch 2 is on disk: it lands during epoch 3 (or 4, on a slow poll).
        deadline = time.monotonic() + 900
        while finished_epochs(root / "interrupted") < 2:
            assert runs["interrupted"].poll() is None, wait(runs["interrupted"]).stderr
            assert time.monotonic() < deadline, "the run never finished epoch 2"
            time.sleep(0.005)
    except BaseException:
        for process in runs.values():  # no training processes left behind by a failed fixture
            process.kill()
            process.wait()
        raise
    runs["interrupted"].send_signal(signal.SIGINT)
    results = {"interrupted": wait(runs.pop("interrupted"))}
    # what the interrupted run left behind, before the resume adds to it
    results["interrupted_files"] = {
        name: (root / "interrupted" / name).read_text() for name in ("history.json", "run.json")
    } | {
        "last.pt": load_checkpoint(root / "interrupted" / "last.pt"),
        "model.pt": (root / "interrupted" / "model.pt").exists(),
    }
    resumed = subprocess.Popen(
        [sys.executable, str(TRAIN), "--resume", str(root / "interrupted"), "--epochs", "4", "--quiet"],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    results |= {name: wait(process) for name, process in runs.items()}
    results["resumed"] = wait(resumed)
    results["root"] = root
    return results


@pytest.fixture(scope="module")
def in_process_runs(tmp_path_factory) -> dict:
    """The runs no signal reaches, through train.py's ``main()`` in this process."""
    root = tmp_path_factory.mktemp("reliability_in_process")
    results = {"root": root}
    for name, argv in (("deterministic_a", DETERMINISTIC_RUN), ("deterministic_b", DETERMINISTIC_RUN),
                       ("nan", NAN_RUN)):  # fmt: skip
        results[name] = run_cli("train", *argv, "--out", root / name, "--fig-dir", root / "fig", cwd=ROOT)
    return results


# --- Ctrl-C and exact resume ---------------------------------------------------------------------


@pytest.mark.subprocess
def test_ctrl_c_stops_with_130_keeping_the_finished_epochs(cli_runs):
    result, run_dir, files = cli_runs["interrupted"], cli_runs["root"] / "interrupted", cli_runs["interrupted_files"]
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr
    assert "Ctrl-C: stopping after this batch" in result.stderr
    history = json.loads(files["history.json"])
    done = len(history["epoch"])
    assert done in (2, 3)  # the partial epoch is not logged
    assert f"Resume with: python scripts/train.py --resume {run_dir} --epochs 4" in result.stdout
    last = files["last.pt"]
    assert last["epoch"] == done and last["history"]["epoch"] == history["epoch"]
    assert "optimizer" in last and "rng" in last  # resumable
    assert not files["model.pt"]  # the final weights are written only when a run finishes
    record = json.loads(files["run.json"])
    assert record["status"] == "interrupted" and record["epochs_done"] == done


@pytest.mark.subprocess
def test_resume_after_ctrl_c_repeats_the_uninterrupted_run_bit_for_bit(cli_runs):
    resumed, reference = cli_runs["root"] / "interrupted", cli_runs["root"] / "uninterrupted"
    assert cli_runs["uninterrupted"].returncode == 0, cli_runs["uninterrupted"].stderr
    assert cli_runs["resumed"].returncode == 0, cli_runs["resumed"].stderr
    # json floats are repr()s: equal text means bitwise-equal float64 values
    assert (resumed / "history.json").read_text() == (reference / "history.json").read_text()
    assert (resumed / "history.csv").read_text() == (reference / "history.csv").read_text()
    final, expected = load_checkpoint(resumed / "model.pt"), load_checkpoint(reference / "model.pt")
    assert final["epoch"] == expected["epoch"] == 4
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(final["state_dict"][name], tensor), name
    record = json.loads((resumed / "run.json").read_text())
    assert record["status"] == "finished" and record["epochs_done"] == 4
    assert record["flags"]["model"] == "model_dropout" and record["seed"] == 11  # the run's own, from last.pt


def test_fit_raises_keyboard_interrupt_after_saving(tmp_path, capsys):
    """Ctrl-C from inside the loop (the API): fit finishes the epoch's hook, then raises."""
    model, images, labels = small_problem()
    history, optimizer = History(), torch.optim.Adam(model.parameters())
    recorder = RunRecorder(tmp_path, model, optimizer, history, [str(i) for i in range(10)], seed=0)

    def on_epoch_end(epoch, logs):
        recorder(epoch, logs)
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)  # fit's own handler takes it (fit runs in the main thread)

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as excinfo:
        fit(model, torch.nn.CrossEntropyLoss(), optimizer, images, labels, epochs=4, batch_size=8, seed=0,
            verbose=0, history=history, on_epoch_end=on_epoch_end)  # fmt: skip
    assert isinstance(excinfo.value, TrainingInterrupted)
    assert excinfo.value.history is history and history.epoch == [0, 1]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    assert json.loads((tmp_path / "history.json").read_text())["epoch"] == [0, 1]
    assert signal.getsignal(signal.SIGINT) is before  # fit put Python's handler back
    assert "Ctrl-C: stopping after this batch" in capsys.readouterr().err


def test_ctrl_c_mid_epoch_finishes_the_batch_and_drops_the_partial_epoch(tmp_path):
    model, images, labels = small_problem()
    history, optimizer = History(), torch.optim.Adam(model.parameters())
    recorder = RunRecorder(tmp_path, model, optimizer, history, [str(i) for i in range(10)], seed=0)
    steps, training_calls = len(images) // 8, []

    def press_ctrl_c(module, inputs, output):
        if module.training:
            training_calls.append(1)
            if len(training_calls) == steps + 3:  # batch 3 of epoch 2
                os.kill(os.getpid(), signal.SIGINT)

    model.register_forward_hook(press_ctrl_c)
    with pytest.raises(TrainingInterrupted) as excinfo:
        fit(model, torch.nn.CrossEntropyLoss(), optimizer, images, labels, epochs=3, batch_size=8, seed=0,
            verbose=0, history=history, on_epoch_end=recorder)  # fmt: skip
    assert len(training_calls) == steps + 3  # no batch after the one that saw the Ctrl-C
    assert excinfo.value.history.epoch == [0] and excinfo.value.epoch == 1
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


def test_a_second_ctrl_c_aborts_at_once():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as excinfo:
        with stop_on_sigint() as stop_requested:
            os.kill(os.getpid(), signal.SIGINT)
            sleep_until(lambda: stop_requested[0])  # the first one only asks fit to stop
            os.kill(os.getpid(), signal.SIGINT)
            sleep_until(lambda: False)
            pytest.fail("the second Ctrl-C did not abort")
    assert type(excinfo.value) is KeyboardInterrupt  # not a TrainingInterrupted: nothing waits for a batch
    assert signal.getsignal(signal.SIGINT) is before


def test_outside_the_main_thread_ctrl_c_keeps_its_default():
    before, seen = signal.getsignal(signal.SIGINT), {}

    def worker():
        with stop_on_sigint() as stop_requested:
            seen["requested"], seen["handler"] = list(stop_requested), signal.getsignal(signal.SIGINT)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"requested": [False], "handler": before}


def test_ctrl_c_outside_fit_exits_130_without_a_traceback(monkeypatch, capsys):
    train_script = cli_module("train")

    def interrupted(args):
        raise KeyboardInterrupt  # e.g. during data loading, or a second Ctrl-C in the loop

    monkeypatch.setattr(train_script, "train", interrupted)
    assert train_script.main(["--dataset", "shapes"]) == 130
    assert "interrupted" in capsys.readouterr().err


# --- NaN / inf loss --------------------------------------------------------------------------------


def test_nan_loss_in_the_cli_keeps_the_evidence(in_process_runs):
    result, run_dir = in_process_runs["nan"], in_process_runs["root"] / "nan"
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "NaN/inf" in line and "lower the learning rate" in line and "--learning-rate" in line
    report = json.loads((run_dir / "nan_batch.json").read_text())
    # the exact first bad batch: its indices are that batch of the epoch's permutation (200 images)
    start = (report["batch"] - 1) * 32
    assert report["indices"] == epoch_order(200, True, 0, report["epoch"] - 1)[start : start + 32].tolist()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "nan" and record["epochs_done"] == report["epoch"] - 1
    assert not (run_dir / "model.pt").exists()  # no final weights from a diverged model
    assert "nan_batch.json" in result.stdout


def test_nan_loss_stops_at_the_first_bad_batch_and_keeps_the_last_good_epoch(tmp_path):
    n, batch_size, seed = 64, 4, 3  # 16 steps: the bad batch (14) sits inside the window of steps 11-16
    model, images, labels = small_problem(n)
    order = epoch_order(n, True, seed, 1)
    bad_step = 13
    poisoned = int(order[bad_step * batch_size + 1])
    armed = [False]

    def poison(module, inputs, logits):  # from epoch 2 on, one sample's logits become inf -> NaN loss
        if armed[0] and module.training:
            sample_ids = (inputs[0][:, 0, 0, 0] * 255).round().long()
            # added, not substituted, so the NaN gradient reaches the weights as a real blow-up would
            return logits + torch.where((sample_ids == poisoned)[:, None], float("inf"), 0.0)
        return None

    model.register_forward_hook(poison)
    history, optimizer = History(), torch.optim.Adam(model.parameters())
    recorder = RunRecorder(tmp_path, model, optimizer, history, [str(i) for i in range(10)], seed=seed)

    def on_epoch_end(epoch, logs):
        recorder(epoch, logs)
        armed[0] = True

    with pytest.raises(NonFiniteLoss) as excinfo:
        fit(model, torch.nn.CrossEntropyLoss(), optimizer, images, labels, epochs=3, batch_size=batch_size,
            seed=seed, verbose=0, history=history, on_epoch_end=on_epoch_end)  # fmt: skip
    error = excinfo.value
    assert (error.epoch, error.step) == (1, bad_step)
    assert error.batch_indices == order[bad_step * batch_size : (bad_step + 1) * batch_size].tolist()
    assert "lower the learning rate" in str(error)
    assert error.history.epoch == [0]
    # the model is ruined, last.pt is the last good epoch's
    assert not all(torch.isfinite(p).all() for p in model.parameters())
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 1 and all(torch.isfinite(t).all() for t in last["state_dict"].values())
    assert json.loads((tmp_path / "history.json").read_text())["epoch"] == [0]
    report = json.loads(write_nan_report(tmp_path, error).read_text())
    assert report == {"epoch": 2, "batch": bad_step + 1, "indices": error.batch_indices}


# --- crashes mid-write ---------------------------------------------------------------------------


@pytest.mark.parametrize("crash", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_crash_mid_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, crash):
    path = tmp_path / "history.json"
    write_json(path, {"epoch": [0]})
    with pytest.raises(type(crash)):
        with atomic_write(path) as f:
            f.write('{"epoch": [0, 1')
            raise crash
    assert json.loads(path.read_text()) == {"epoch": [0]}
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


def test_a_crash_inside_torch_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    model, _, _ = small_problem()
    checkpoint = checkpoints_module.make_checkpoint(model, class_names=list("abcdefghij"), epoch=1, history=History())
    save_checkpoint(tmp_path / "last.pt", checkpoint)

    def crash_halfway(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoints_module.torch, "save", crash_halfway)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "last.pt", {**checkpoint, "epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_written_files_get_the_usual_permissions(tmp_path):
    write_json(tmp_path / "run.json", {})
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "run.json").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


# --- safe loading and safe names --------------------------------------------------------------------


def test_every_torch_load_in_the_code_is_weights_only():
    sources = [*sorted((ROOT / "cnn_torch").glob("*.py")), *sorted((ROOT / "scripts").glob("*.py"))]
    calls = [
        (path.name, match.group(0))
        for path in sources
        for match in re.finditer(r"torch\.load\((?:[^()]|\([^()]*\))*\)", path.read_text())
    ]
    assert calls, "no torch.load call found: the pattern needs updating"
    for name, call in calls:
        assert "weights_only=True" in call, f"{name}: {call}"


def test_load_checkpoint_asks_torch_for_weights_only(tmp_path, monkeypatch):
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    model, _, _ = small_problem()
    save_checkpoint(
        tmp_path / "m.pt", checkpoints_module.make_checkpoint(model, class_names=[], epoch=0, history=History())
    )
    monkeypatch.setattr(checkpoints_module.torch, "load", spy)
    load_checkpoint(tmp_path / "m.pt")
    assert seen["weights_only"] is True


@pytest.mark.parametrize(
    "text",
    ["../../etc/passwd", "..", ".", "", "/abs/path", "a/../../b", "..\\..\\windows", "run..name", "~/x", "a\0b",
     "名前", " spaced out ", "-rf", ".hidden"],
)  # fmt: skip
def test_safe_name_cannot_leave_its_folder(tmp_path, text):
    name = safe_name(text)
    assert name and re.fullmatch(r"[A-Za-z0-9_.-]+", name)
    assert ".." not in name and not name.startswith(".")
    figure = tmp_path / "fig" / f"{name}_loss.png"  # how plots and evaluate name their files
    assert figure.resolve().parent == (tmp_path / "fig").resolve()


def test_safe_name_keeps_ordinary_names():
    assert safe_name("cifar_model_small-20250101-120000") == "cifar_model_small-20250101-120000"
    assert safe_name("my run (2)") == "my_run_2"


# --- reproducibility ------------------------------------------------------------------------------


def test_deterministic_runs_with_the_same_seed_repeat_exactly(in_process_runs):
    a, b = in_process_runs["root"] / "deterministic_a", in_process_runs["root"] / "deterministic_b"
    for name in ("deterministic_a", "deterministic_b"):
        assert in_process_runs[name].returncode == 0, in_process_runs[name].stderr
    assert (a / "history.json").read_text() == (b / "history.json").read_text()
    record = json.loads((a / "run.json").read_text())
    assert record["flags"]["deterministic"] is True


def test_run_json_records_how_the_run_was_made(in_process_runs):
    run_dir = in_process_runs["root"] / "deterministic_a"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["seed"] == 5
    versions = record["versions"]
    assert (versions["torch"], versions["python"]) == (str(torch.__version__), platform.python_version())
    assert torchvision.__version__.startswith(versions["torchvision"])  # "0.29.1" of "0.29.1+cu130"
    assert record["device"] == "cpu" and record["dtype"] == "float32"
    flags = record["flags"]
    for name in ("model", "dataset", "data_dir", "epochs", "batch_size", "optimizer", "learning_rate",
                 "validation_split", "limit", "seed", "device", "precision", "out", "fig_dir", "deterministic",
                 "resume", "monitor", "patience"):  # fmt: skip
        assert name in flags, name
    assert (flags["model"], flags["epochs"], flags["batch_size"], flags["limit"]) == ("model_dropout", 2, 32, 200)
    commit = record["git_commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)
    started, ended = dt.datetime.fromisoformat(record["started"]), dt.datetime.fromisoformat(record["ended"])
    assert started <= ended
    assert record["status"] == "finished" and record["epochs_done"] == 2


def test_seed_everything_deterministic_turns_on_deterministic_algorithms(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # restored after the test
    was = torch.are_deterministic_algorithms_enabled()
    try:
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(was)


# --- helpers ---------------------------------------------------------------------------------------


def small_problem(n: int = 48):
    """The lesson's small CNN and ``n`` uint8 images whose pixel (0, 0) of channel 0 is their index."""
    torch.manual_seed(0)
    model = models.cifar_model_small()
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    return model, images, torch.arange(n) % 10


def sleep_until(condition, seconds: float = 5.0) -> None:
    """Let a pending signal handler run (it runs between bytecodes of the main thread)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.001)
