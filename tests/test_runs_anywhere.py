"""Issue 17: no command loses a run or ends in a traceback, wherever and however it starts.

- Runs never overwrite each other: two ``train.py`` started at once in one folder, or given
  the same ``--out``, are two processes here, started together.
- A run works from any folder: trained with a relative ``--data-dir``, evaluated and resumed
  from another folder; ``cd scripts && python train.py`` leaves no ``scripts/runs/``.
- Read-only places and odd paths: one line, before any data is loaded. The read-only folders
  are made by the test (see :func:`read_only`).
- ``--resume`` keeps the run's own settings: a conflicting flag is refused, and without
  ``--epochs`` the run goes on to its own number of epochs, not to 10.

The scripts run in subprocesses, as a learner runs them; checks that stop before any training
call the script's ``main()`` in this process (the same code path, without a torch start).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli_module, run_cli
from PIL import Image

from cnn_torch.checkpoints import load_checkpoint
from cnn_torch.cli import runs

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
TRAIN, EVALUATE, COMPARE, PLOT = (SCRIPTS / f"{name}.py" for name in ("train", "evaluate", "compare", "plot_history"))
TINY = ["--dataset", "shapes", "--limit", "40", "--epochs", "1", "--batch-size", "20", "--seed", "0", "--quiet"]


def env_for(tmp: Path) -> dict:
    # one thread per process (they share the cores); caches in the test's folder
    return {**os.environ, "OMP_NUM_THREADS": "1", "CNN_TORCH_CACHE": str(tmp / "cache"),
            "MPLCONFIGDIR": str(tmp / "mpl")}  # fmt: skip


def run(script: Path, *argv, cwd: Path, stdin: str | None = None, tmp: Path | None = None,
        **options) -> subprocess.CompletedProcess:  # fmt: skip
    """``script argv`` in ``cwd``; its caches go to ``tmp`` (default: the folder above ``cwd``)."""
    return subprocess.run([sys.executable, str(script), *map(str, argv)], cwd=cwd, env=env_for(tmp or cwd.parent),
                          input=stdin, capture_output=True, text=True, timeout=600, **options)  # fmt: skip


def start(script: Path, *argv, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), *map(str, argv)], cwd=cwd, env=env_for(cwd.parent),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def one_error_line(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# --- read-only folders ------------------------------------------------------------------------


def _without_permission_override() -> None:
    """In the child, before exec: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding
    set, so that root, after exec, obeys file permissions like anyone else (prctl PR_CAPBSET_DROP)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def read_only(path: Path) -> dict:
    """Make ``path`` (and everything in it) read-only; return the ``subprocess`` options under
    which a child process really cannot write there.

    chmod is enough for an ordinary user. Tests may run as root, whom chmod does not stop
    (root overrides file permissions); the child then runs without the two capabilities that
    do the overriding. Where that cannot be arranged (not Linux, no CAP_SETPCAP) the test is
    skipped, saying why. Either way the folder is probed first: a child must fail to write it.
    """
    for item in [path, *path.rglob("*")]:
        item.chmod(0o555 if item.is_dir() else 0o444)
    options = {}
    if os.geteuid() == 0:
        if not sys.platform.startswith("linux"):
            pytest.skip("running as root off Linux: no way to make a folder read-only for a child process")
        options["preexec_fn"] = _without_permission_override
    probe = subprocess.run([sys.executable, "-c", f"open({str(path / 'probe')!r}, 'w')"], capture_output=True,
                           text=True, **options)  # fmt: skip
    if probe.returncode == 0:
        (path / "probe").unlink()
        pytest.skip("cannot make a read-only folder here (a child process could still write in it)")
    assert "PermissionError" in probe.stderr, probe.stderr
    return options


def writable_again(path: Path) -> None:
    for item in [path, *path.rglob("*")]:
        item.chmod(0o755 if item.is_dir() else 0o644)


# --- the runs these tests share ---------------------------------------------------------------


def image_folder(root: Path, per_class: int = 10) -> Path:
    """``root/train/{cat,dog}/<i>.png``: a folder with no test split (the last 20% validate)."""
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / "train" / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "train" / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    """``a/images`` (the data), ``a/`` where the run starts, ``b/`` another working folder."""
    root = tmp_path_factory.mktemp("anywhere")
    image_folder(root / "a" / "images")
    (root / "b").mkdir()
    return root


@pytest.fixture(scope="module")
def started(place) -> dict:
    """The runs that start the module, together: two at once with no --out, two at once with one
    --out, and a run from ``a/`` on the relative ``--data-dir images`` stopped from the debugger
    (``q`` at epoch 2) after its first of 2 epochs."""
    together, same_out = place / "together", place / "same_out"
    together.mkdir()
    same_out.mkdir()
    processes = {
        "together_1": start(TRAIN, *TINY, cwd=together),
        "together_2": start(TRAIN, *TINY, cwd=together),
        "same_out_1": start(TRAIN, *TINY, "--out", "run", cwd=same_out),
        "same_out_2": start(TRAIN, *TINY, "--out", "run", cwd=same_out),
    }
    argv = ["--data-dir", "images", "--limit", "16", "--epochs", "2", "--batch-size", "4", "--seed", "0",
            "--optimizer", "Adam", "--dropout", "0.3", "--activation", "tanh", "--out", "run", "--break-at", "2:1"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        stopped = pool.submit(run, TRAIN, *argv, cwd=place / "a", stdin="q\n")
        results = {name: finish(process) for name, process in processes.items()}
        results["stopped"] = stopped.result()
    return results


# --- 1. runs never overwrite each other --------------------------------------------------------


@pytest.mark.subprocess
def test_two_runs_started_together_get_a_directory_each(started, place):
    for name in ("together_1", "together_2"):
        assert started[name].returncode == 0, started[name].stderr
    run_dirs = sorted((place / "together" / "runs").iterdir())
    assert len(run_dirs) == 2, run_dirs
    for run_dir in run_dirs:  # each finished its own run; neither wrote into the other's
        assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
        assert len(json.loads((run_dir / "history.json").read_text())["epoch"]) == 1
        assert (run_dir / "model.pt").is_file()


@pytest.mark.subprocess
def test_the_same_out_at_once_trains_once_and_refuses_the_other(started, place):
    results = sorted((started["same_out_1"], started["same_out_2"]), key=lambda result: result.returncode)
    assert [result.returncode for result in results] == [0, 2], [result.stderr for result in results]
    line = one_error_line(results[1])
    # refused while the other trains (the lock), or after it wrote its first epoch (the check)
    assert "is in use by another training process" in line or "already holds a run" in line, line
    record = json.loads((place / "same_out" / "run" / "run.json").read_text())
    assert record["status"] == "finished" and record["epochs_done"] == 1


def test_a_directory_claimed_in_the_same_second_gets_the_next_number(tmp_path, monkeypatch):
    class Frozen(runs.dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 1, 10, 33, 8)

    monkeypatch.setattr(runs.dt, "datetime", Frozen)
    monkeypatch.chdir(tmp_path)
    claimed = [runs.claim_run_dir(None, "cifar_model_small") for _ in range(3)]
    assert [path.name for path in claimed] == ["cifar_model_small-20261201-103308",
                                               "cifar_model_small-20261201-103308-2",
                                               "cifar_model_small-20261201-103308-3"]  # fmt: skip
    assert all(path.is_dir() for path in claimed)


@pytest.mark.subprocess
def test_a_locked_run_directory_is_refused_in_one_line(tmp_path):
    holder = subprocess.Popen(  # another process holds the lock, as a training process does
        [sys.executable, "-c", "import sys; from pathlib import Path; from cnn_torch.cli import runs;"
         f" runs.lock_run_dir(Path({str(tmp_path)!r})); print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(runs.UserError, match="is in use by another training process: wait for it to end"):
            runs.lock_run_dir(tmp_path)
    finally:
        holder.communicate("")  # closes its stdin: it exits and the lock goes with it
    assert runs.lock_run_dir(tmp_path) is not None or sys.platform == "win32"
    runs.unlock_run_dir(tmp_path)


# --- 2. a run works from any folder -------------------------------------------------------------


@pytest.mark.subprocess
def test_the_run_records_absolute_paths(started, place):
    assert started["stopped"].returncode == 130, started["stopped"].stderr
    flags = json.loads((place / "a" / "run" / "run.json").read_text())["flags"]
    assert flags["data_dir"] == str(place / "a" / "images")  # given as "images", relative to a/
    assert flags["out"] == str(place / "a" / "run")


@pytest.mark.subprocess
def test_evaluate_and_resume_work_from_another_folder(started, place):
    assert started["stopped"].returncode == 130, started["stopped"].stderr
    evaluated = run_cli("evaluate", "--checkpoint", "../a/run/last.pt", "--json", cwd=place / "b")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["num_samples"] == 4  # the last 0.2 of the 16 --limit took
    # without --epochs: on to the run's own 2 epochs (not the default 10), from another folder
    resumed = run_cli("train", "--resume", "../a/run", "--quiet", cwd=place / "b")
    assert resumed.returncode == 0, resumed.stderr
    history = json.loads((place / "a" / "run" / "history.json").read_text())
    assert history["epoch"] == [0, 1]
    assert not (place / "b" / "runs").exists() and not (place / "b" / "fig").exists()


def test_the_clone_s_scripts_folder_never_gets_a_runs_folder(tmp_path):
    result = run_cli("train", *TINY, cwd=SCRIPTS, env={"CNN_TORCH_CACHE": str(tmp_path / "cache")})  # cd scripts
    try:
        assert result.returncode == 0, result.stderr
        assert not (SCRIPTS / "runs").exists()
        history = next(line for line in result.stdout.splitlines() if line.startswith("History:"))
        run_dir = Path(history.split()[1]).parent
        assert run_dir.parent == ROOT / "runs" and (run_dir / "model.pt").is_file()
    finally:
        if "run_dir" in locals() and run_dir.parent == ROOT / "runs":
            shutil.rmtree(run_dir)


def test_runs_go_to_the_clone_s_runs_from_inside_it_and_to_runs_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(SCRIPTS)
    assert runs.runs_root() == ROOT / "runs"
    monkeypatch.chdir(ROOT)
    assert runs.runs_root() == Path("runs")
    monkeypatch.chdir(tmp_path)
    assert runs.runs_root() == Path("runs")


# --- 3. read-only places and odd paths: one line, before any work --------------------------------


@pytest.fixture
def read_only_folder(tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    yield folder
    writable_again(folder)


@pytest.mark.subprocess
def test_train_and_compare_in_a_read_only_folder_say_so_before_any_data(read_only_folder):
    options = read_only(read_only_folder)
    for script, argv in ((TRAIN, TINY), (COMPARE, [*TINY, "--optimizer", "sgd", "adam"])):
        result = run(script, *argv, cwd=read_only_folder, **options)
        one_error_line(result, "cannot write the runs folder runs", "read-only", "--out DIR")
        assert result.stdout == ""  # nothing loaded, nothing printed: the check came first


@pytest.mark.subprocess
def test_an_instructor_s_read_only_run(started, place, tmp_path):
    """A run shared read-only: evaluate.py prints its numbers, then a note; plot_history.py and
    --resume say in one line what to do, before any work."""
    assert started["stopped"].returncode == 130, started["stopped"].stderr
    shared = tmp_path / "shared_run"
    shutil.copytree(place / "a" / "run", shared)
    try:
        options = read_only(shared)
        evaluated = run(EVALUATE, "--checkpoint", shared / "best.pt", cwd=tmp_path, **options)
        assert evaluated.returncode == 0, evaluated.stderr
        assert "loss: " in evaluated.stdout and "accuracy: " in evaluated.stdout and "Traceback" not in evaluated.stderr
        assert evaluated.stderr.strip().splitlines()[-1] == (
            f"note: no figures: {shared / 'fig'} cannot be written (read-only): pass --fig-dir DIR to draw them"
        )
        plotted = run(PLOT, shared, cwd=tmp_path, **options)
        one_error_line(plotted, f"cannot write the figure folder {shared / 'fig'}", "--fig-dir DIR")
        resumed = run(TRAIN, "--resume", shared, "--epochs", "3", cwd=tmp_path, **options)
        one_error_line(resumed, f"cannot write --resume {shared} (read-only)", f"cp -r {shared} NEW")
        assert sorted(path.name for path in shared.iterdir()) == sorted(
            path.name for path in (place / "a" / "run").iterdir()
        )  # nothing written, nothing removed
    finally:
        writable_again(shared)


@pytest.mark.parametrize(
    ("flag", "words"),
    [("--out", "--out {f} is a file, not a folder"), ("--fig-dir", "--fig-dir {f} is a file, not a folder"),
     ("--tensorboard", "--tensorboard {f} is a file, not a folder")],
)  # fmt: skip
def test_an_output_path_naming_a_file_is_refused_before_any_data(tmp_path, monkeypatch, capsys, flag, words):
    (tmp_path / "notes.txt").write_text("a file")
    monkeypatch.chdir(tmp_path)
    # a --data-dir that does not exist: the output check must come first, before the data is looked at
    result = run_cli("train", "--data-dir", "nowhere", flag, "notes.txt")
    one_error_line(result, words.format(f="notes.txt"))
    assert (tmp_path / "notes.txt").read_text() == "a file" and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("argv", "words"),
    [(["--learning-rate", "0"], "--learning-rate must be positive"), (["--seed", "-1"], "--seed must be from 0"),
     (["--dropout", "1"], "--dropout must be a rate"), (["--device", "cuda"], "--device cuda was asked for")],
)  # fmt: skip
def test_pure_flag_checks_come_before_the_data(tmp_path, monkeypatch, capsys, argv, words):
    if argv == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.chdir(tmp_path)
    result = run_cli("train", "--data-dir", "nowhere", *argv)  # the data dir would fail next
    one_error_line(result, words)


# --- 6. flags that mislead -----------------------------------------------------------------------


@pytest.mark.subprocess
def test_resume_refuses_flags_that_disagree_with_the_run(started, place, capsys, monkeypatch):
    assert started["stopped"].returncode == 130, started["stopped"].stderr
    monkeypatch.chdir(place / "b")
    result = run_cli("train", "--resume", "../a/run", "--model", "cifar_model", "--batch-size", "64",
                     "--optimizer", "sgd")  # fmt: skip
    line = one_error_line(result, "--resume ../a/run continues with the run's own settings")
    assert "--model cifar_model_small" in line and "--batch-size 4" in line and "--optimizer adam" in line
    assert "leave out --model, --batch-size, --optimizer" in line
    # the run's own values, given again, are no conflict (Adam in the lesson's spelling too)
    same = run_cli("train", "--resume", "../a/run", "--batch-size", "4", "--optimizer", "Adam", "--epochs", "1")
    assert "continues with the run's own settings" not in same.stderr
    moved = run_cli("train", "--resume", "../a/run", "--out", "elsewhere", "--epochs", "5")
    one_error_line(moved, "continues in ../a/run itself: leave out --out")


@pytest.mark.subprocess
def test_resume_without_epochs_does_not_extend_a_finished_run(started, place, capsys, monkeypatch):
    monkeypatch.chdir(place / "b")  # after test_evaluate_and_resume_work_from_another_folder (module order)
    checkpoint = load_checkpoint(place / "a" / "run" / "last.pt")
    if checkpoint["epoch"] != 2:
        pytest.skip("needs test_evaluate_and_resume_work_from_another_folder to have resumed the run")
    result = run_cli("train", "--resume", "../a/run")
    one_error_line(result, "already finished 2 epochs", "pass --epochs larger than that")


@pytest.mark.subprocess
def test_train_takes_the_lesson_s_spellings_dropout_and_activation(started, place):
    checkpoint = load_checkpoint(place / "a" / "run" / "last.pt")
    assert checkpoint["model_kwargs"]["dropout"] == 0.3 and checkpoint["model_kwargs"]["activation"] == "tanh"
    assert json.loads((place / "a" / "run" / "run.json").read_text())["flags"]["optimizer"] == "adam"


@pytest.mark.subprocess
def test_limit_says_what_it_counts(started, capsys):
    stdout = started["stopped"].stdout
    assert "Data:       images: 12 training images" in stdout, stdout
    assert "Validation: 4 images (the last 0.2 of the 16 images --limit took)" in stdout, stdout
    with pytest.raises(SystemExit):
        cli_module("train").parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "BEFORE the validation cut: with --validation-split 0.2 (or data without a test split) 80%" in help_text


@pytest.mark.parametrize(
    ("argv", "words"),
    [(["--learning-rate", "0.1", "0"], "--learning-rate must be positive, got 0.0"),
     (["--dropout", "0.2", "1.5"], "--dropout must be a rate"), (["--batch-size", "0", "32"], "--batch-size must be"),
     (["--optimizer", "sgd", "--seed", "-3"], "--seed must be from 0"),
     (["--optimizer", "SGD", "adam", "--trace"], "unrecognized arguments: --trace")],
)  # fmt: skip
def test_compare_speaks_the_command_line_s_words(tmp_path, monkeypatch, capsys, argv, words):
    monkeypatch.chdir(tmp_path)
    if "--trace" in argv:  # argparse's own refusal, the Adam spelling passing before it
        with pytest.raises(SystemExit):
            cli_module("compare").main(["--dataset", "shapes", *argv])
        assert words in capsys.readouterr().err
        return
    one_error_line(run_cli("compare", "--data-dir", "nowhere", *argv), words)
