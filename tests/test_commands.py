"""The command line's three doors and its one set of flags.

``cnn-torch COMMAND``, ``python -m cnn_torch COMMAND`` and ``python scripts/COMMAND.py`` run the
same ``main``; every flag is defined once (``cnn_torch/cli/flags.py``), so a flag that several
scripts take reads the same in each one's ``--help`` and gets the same error line. One subprocess
(``python -m cnn_torch train``); everything else in this process, through ``commands.main`` and
the scripts' ``parse_args`` and ``main``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_torch.cli import commands, compare, evaluate, flags, plot_history, predict, train

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"train": train, "evaluate": evaluate, "predict": predict, "compare": compare}


# --- the commands ----------------------------------------------------------------------------------


def test_help_lists_every_command(capsys):
    assert commands.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cnn-torch COMMAND")
    for name in ("train", "evaluate", "predict", "compare", "plot-history"):
        assert re.search(rf"^  {name} +\S", out, re.M), out


@pytest.mark.parametrize(
    ("typed", "fix"),
    [("trian", "did you mean cnn-torch train?"), ("plot_history", "did you mean cnn-torch plot-history?"),
     ("fit", "choose one of train, evaluate, predict, compare, plot-history")],
)  # fmt: skip
def test_an_unknown_command_is_one_line_naming_the_fix(capsys, typed, fix):
    assert commands.main([typed, "--epochs", "2"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"error: unknown command {typed!r}: {fix}"), captured.err


def test_the_console_script_is_commands_main():
    assert re.search(r'^cnn-torch = "cnn_torch\.cli\.commands:main"', (ROOT / "pyproject.toml").read_text(), re.M)
    main_py = (ROOT / "cnn_torch" / "__main__.py").read_text()
    assert 'main(program="python -m cnn_torch")' in main_py


def test_usage_lines_name_the_command_as_typed(capsys):
    typed = sys.argv[0]
    with pytest.raises(SystemExit) as exit_:
        commands.main(["train", "--epochs", "ten"], program="python -m cnn_torch")
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("usage: python -m cnn_torch train ")
    assert sys.argv[0] == typed  # put back: a test or a notebook calling main() keeps its own


def test_the_hints_name_the_command_as_typed(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(train, "main", lambda argv: seen.append(flags.script_command("train.py")) or 0)
    assert commands.main(["train"]) == 0
    assert commands.main(["train"], program="python -m cnn_torch") == 0
    assert seen == ["cnn-torch train", "python -m cnn_torch train"]
    # the scripts: as typed from the clone's root, else the script's full path
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["scripts/train.py"])
    assert flags.script_command("train.py") == "python scripts/train.py"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(ROOT / "scripts" / "compare.py")])
    assert flags.script_command("compare.py") == f"python {ROOT / 'scripts' / 'compare.py'}"


def test_python_m_cnn_torch_train_trains(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLCONFIGDIR": str(tmp_path / "mpl")}
    result = subprocess.run(
        [sys.executable, "-m", "cnn_torch", "train", "--dataset", "shapes", "--limit", "64", "--epochs", "1",
         "--batch-size", "16", "--seed", "0", "--quiet", "--out", "run", "--fig-dir", "fig"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "history.json").read_text())["epoch"] == [0]
    assert (tmp_path / "run" / "model.pt").is_file() and (tmp_path / "fig" / "run_loss.png").is_file()


# --- one definition per flag -----------------------------------------------------------------------


def help_entries(module, capsys) -> dict[str, str]:
    """``{flag: its --help entry, whitespace collapsed}`` of one script's parser."""
    with pytest.raises(SystemExit):
        module.parse_args(["--help"])
    options = capsys.readouterr().out.split("\noptions:\n", 1)[1].split("\n\n", 1)[0]  # not the epilog
    entries = re.split(r"\n  (?=-)", options)[1:]
    return {entry.split()[0]: " ".join(entry.split()) for entry in entries}


# Flags whose default is the script's own: where its files are (a run's folder, a comparison's), or,
# for evaluate's --limit, the evaluated run's own --limit.
DEFAULT_IS_THE_SCRIPTS = {"--out", "--resume", "--fig-dir", "--monitor", "--augment", "--limit"}


def test_a_flag_reads_the_same_in_every_script_that_takes_it(capsys):
    entries = {name: help_entries(module, capsys) for name, module in SCRIPTS.items()}
    assert len({entries[name]["--device"] for name in SCRIPTS}) == 1  # --device: one text in all four
    assert "--fig-dir" in entries["compare"]
    shared = 0
    for flag, text in entries["train"].items():
        for name in ("evaluate", "predict", "compare"):
            other = entries[name].get(flag)
            if other is None or flag in DEFAULT_IS_THE_SCRIPTS or flag == "-h,":
                continue
            if flags.SEVERAL in other:  # compare.py's settings: several values, then train.py's words
                assert text.endswith(" " + other.split(flags.SEVERAL, 1)[1]), (flag, other, text)
            else:
                assert other == text, (flag, name)
            shared += 1
    assert shared > 25  # data, image, device, fit flags: the comparison is not empty
    assert entries["evaluate"]["--checkpoint"] == entries["predict"]["--checkpoint"]
    assert entries["evaluate"]["--fig-dir"] == entries["predict"]["--fig-dir"]


def test_the_run_s_flags_are_every_flag_but_the_process_s():
    names = set(vars(train.parse_args([])))
    assert set(flags.PROCESS_FLAGS) <= names and set(flags.RESUME_MAY_CHANGE) <= names - set(flags.PROCESS_FLAGS)


def error_line(module, argv, capsys) -> str:
    assert module.main(argv) == 2
    return capsys.readouterr().err.strip()


ARGV = {  # each script's other flags: what it needs to get as far as its checks
    "train": ["--dataset", "shapes"],
    "compare": ["--dataset", "shapes", "--optimizer", "sgd", "adam"],
    "evaluate": ["--checkpoint", "nowhere.pt"],
    "predict": ["--checkpoint", "nowhere.pt", "a.png"],
}


@pytest.mark.parametrize(
    ("flag", "words", "scripts"),
    [(["--batch-size", "0"], "--batch-size must be a positive integer, got 0: try --batch-size 32",
      ("train", "compare", "evaluate")),
     (["--limit", "0"], "--limit must be a positive integer, got 0: try --limit 2000",
      ("train", "compare", "evaluate")),
     (["--image-size", "0", "32"], "--image-size takes two positive numbers, height and width, got 0 32: try 32 32",
      ("train", "compare", "evaluate", "predict")),
     (["--device", "mps"], "--device mps was asked for but MPS is not available: use --device cpu or auto",
      ("train", "compare", "evaluate", "predict"))],
)  # fmt: skip
def test_a_flag_gets_one_error_line_in_every_script(tmp_path, monkeypatch, capsys, flag, words, scripts):
    from cnn_torch.platform.device import unavailable

    if flag[0] == "--device" and not unavailable("mps"):
        pytest.skip("this machine has MPS")
    monkeypatch.chdir(tmp_path)
    for name in scripts:
        assert error_line(SCRIPTS[name], [*ARGV[name], *flag], capsys) == f"error: {words}", name
    assert not any(tmp_path.iterdir())  # refused before anything was written


# --- compare.py takes train.py's flags -------------------------------------------------------------


def test_compare_takes_train_s_flags_that_make_sense_for_it(capsys):
    train_flags, compare_flags = help_entries(train, capsys), help_entries(compare, capsys)
    only_train = {"--patience", "--min-delta", "--restore-best-weights", "--baseline", "--start-from-epoch",
                  "--tensorboard", "--trace", "--break-at"}  # fmt: skip
    assert set(train_flags) - set(compare_flags) == only_train


def test_compare_draws_its_figure_in_fig_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("")
    refused = error_line(compare, ["--dataset", "shapes", "--optimizer", "sgd", "adam", "--fig-dir", "a_file"], capsys)
    assert refused == "error: --fig-dir a_file is a file, not a folder: pass a folder to --fig-dir"
    argv = ["--dataset", "shapes", "--limit", "40", "--epochs", "1", "--batch-size", "20", "--seed", "0", "--quiet",
            "--optimizer", "sgd", "adam", "--out", "c", "--fig-dir", "fig"]  # fmt: skip
    assert compare.main(argv) == 0
    assert f"Figure:      {Path('fig') / 'c_comparison.png'}" in capsys.readouterr().out
    assert (tmp_path / "fig" / "c_comparison.png").is_file() and not (tmp_path / "c" / "comparison.png").exists()
    record = json.loads((tmp_path / "c" / "comparison.json").read_text())
    assert record["flags"]["fig_dir"] == str(tmp_path / "fig")  # a resumed comparison draws there again


def test_plot_history_s_fig_dir_is_the_shared_one(capsys):
    assert help_entries(plot_history, capsys)["--fig-dir"] == help_entries(evaluate, capsys)["--fig-dir"]
