"""Issue 17, item 7: what the scripts print reads whole on an 80-column terminal.

compare.py's header and per-setting lines and ``--trace``'s lines are wrapped at word
boundaries on a terminal (a pseudo-terminal 80 columns wide here), and its table fits;
in a pipe or a log they stay one line each (tests/test_trace.py reads them that way).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import run_cli, run_in_terminal
from test_learners_path import visible_lines

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


def paragraphs(lines: list[str], starts: tuple[str, ...]) -> list[str]:
    """Each line that starts with one of ``starts``, joined with its indented continuation lines."""
    joined = []
    for line in lines:
        if line.startswith(starts):
            joined.append(line)
        elif joined and line.startswith("    ") and not line.strip().startswith(("Keras:", "[")):
            joined[-1] += " " + line.strip()
        elif joined and line.startswith(" " * 15) and joined[-1].lstrip().startswith("Keras:"):
            joined[-1] += " " + line.strip()
    return [" ".join(text.split()) for text in joined]


@pytest.mark.subprocess
def test_trace_lines_wrap_at_word_boundaries_at_80_columns(tmp_path):
    output = run_in_terminal([sys.executable, str(SCRIPTS / "train.py"), "--dataset", "shapes", "--limit", "64",
                              "--epochs", "1", "--trace", "--quiet", "--seed", "0", "--out", str(tmp_path / "run")],
                             cwd=tmp_path)  # fmt: skip
    lines = visible_lines(output)
    trace = [i for i, line in enumerate(lines) if line.startswith("[trace]")]
    assert len(trace) == 8, output
    block = lines[trace[0] : trace[-1] + 4]
    assert all(len(line) <= 80 for line in block), block
    text = " ".join(" ".join(block).split())
    assert "optimizer.step(): Adam, learning rate 0.001, step count 1;" in text
    assert "loss.backward(): gradient norm per parameter:" in text and text.count("Keras: ") == 8


@pytest.mark.subprocess
def test_compare_lines_and_table_fit_80_columns(tmp_path):
    output = run_in_terminal([sys.executable, str(SCRIPTS / "compare.py"), "--dataset", "shapes", "--limit", "40",
                              "--epochs", "1", "--seed", "0", "--optimizer", "sgd", "adam",
                              "--out", str(tmp_path / "c")], cwd=tmp_path)  # fmt: skip
    lines = visible_lines(output)
    mine = paragraphs(lines, ("Comparing", "Every setting", "[1/2]", "[2/2]", "--- ["))
    assert any(text.startswith("Comparing 2 settings of cifar_model_small (optimizer=sgd | adam), 1 epoch each,")
               for text in mine), mine  # fmt: skip
    assert any(text.endswith("so the setting is the only difference.") for text in mine), mine
    assert any(re.fullmatch(r"\[1/2\] optimizer=sgd: best val_accuracy 0\.\d{4} \(epoch 1\), final val_loss \d\.\d{4},"
                            r" \d+\.\d s/epoch", text) for text in mine), mine  # fmt: skip
    start = next(i for i, line in enumerate(lines) if line.startswith("optimizer "))
    table = lines[start : start + 3]
    assert table[0].split() == ["optimizer", "best", "val_accuracy", "epoch", "final", "val_loss", "s/epoch"]
    ours = [line for line in lines if line.startswith(("Comparing", "Every", "[1/2]", "[2/2]", "--- [", "    "))]
    assert all(len(line) <= 80 for line in ours + table), ours + table


def test_predict_help_has_no_default_none(tmp_path):
    result = run_cli("predict", "--help", cwd=tmp_path, env={"COLUMNS": "80"})
    assert result.returncode == 0
    assert "(default: None)" not in result.stdout and "(required)" in result.stdout


def test_the_readme_names_the_confusion_matrix_file_evaluate_writes():
    readme = (ROOT / "docs" / "python-api.md").read_text()
    assert "fig/<run>_<split>_confusion_matrix.png" in readme and "fig/<run>_confusion_matrix.png" not in readme
    assert '_{args.split}_confusion_matrix.png"' in (ROOT / "cnn_torch" / "cli" / "evaluate.py").read_text()
