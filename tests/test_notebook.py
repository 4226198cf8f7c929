"""docs/notebooks/episode-04.ipynb runs top to bottom in a real Jupyter kernel, offline.

The notebook is executed with nbclient (as ``jupyter nbconvert --execute`` would) on its
default data, the generated ``shapes`` set; any cell error fails the test. Its progress
output must stay a handful of lines per cell, its History must have Keras's keys, and the
committed file must carry no outputs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "episode-04.ipynb"
MAX_STREAM_LINES_PER_CELL = 12  # a line per epoch or per setting, never a progress bar's redraws
KERAS_KEYS = ["accuracy", "loss", "val_accuracy", "val_loss"]  # Keras 3 sorts them


def stream_lines(cell) -> list[str]:
    """Every stdout/stderr line the cell printed; carriage returns (bar redraws) count as lines."""
    text = "".join(output.get("text", "") for output in cell.get("outputs", []) if output["output_type"] == "stream")
    return [line for line in re.split(r"[\r\n]", text) if line.strip()]


def test_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def test_every_keras_line_sits_above_a_pytorch_line():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    keras_lines = [line for cell in notebook.cells if cell.cell_type == "code"
                   for line in cell.source.splitlines() if line.startswith("# Keras:")]
    assert len(keras_lines) >= 10
    joined = "\n".join(keras_lines)
    for lesson_line in ("model.compile(optimizer='adam'", "model.fit(", "GridSearchCV(",
                        "sns.lineplot(data=history_df[['accuracy', 'val_accuracy']])",
                        "sns.lineplot(data=history_df[['loss', 'val_loss']])"):
        assert lesson_line in joined


@pytest.fixture(scope="module")
def executed():
    """The notebook run in a fresh kernel, plus one cell that reports what the learner got."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    probe = nbformat.v4.new_code_cell(
        "import json\n"
        "print(json.dumps({'keys': list(history.history), 'columns': list(history_df.columns),"
        " 'epochs': history.epoch, 'best': results.best, 'cv_best': cv_results.best_line()}))"
    )
    notebook.cells.append(probe)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    return notebook


def test_notebook_runs_and_history_has_keras_keys(executed):
    report = json.loads("".join(executed.cells[-1].outputs[0]["text"]))
    assert report["keys"] == KERAS_KEYS
    assert report["columns"] == KERAS_KEYS
    assert report["epochs"] == list(range(len(report["epochs"]))) and report["epochs"]
    assert report["best"] in {"optimizer=sgd", "optimizer=rmsprop", "optimizer=adam"}
    assert re.fullmatch(r"Best: 0\.\d{4} using \{'optimizer': '(sgd|rmsprop|adam)'\}", report["cv_best"])


def test_progress_output_stays_a_handful_of_lines(executed):
    training = [cell for cell in executed.cells[:-1]
                if cell.cell_type == "code" and ("fit(" in cell.source or "compare(" in cell.source)]
    assert len(training) == 5  # fit, the optimizer challenge, its cross-validation, dropout, activation
    for cell in training:
        lines = stream_lines(cell)
        assert len(lines) <= MAX_STREAM_LINES_PER_CELL, (cell.source[:80], lines)
    fit_cell = next(c for c in executed.cells if c.cell_type == "code" and "history = fit(" in c.source)
    assert 1 <= len(stream_lines(fit_cell)) <= 10  # one line per epoch


def test_notebook_shows_the_lessons_figures(executed):
    images = [output for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs
              if output["output_type"] in ("display_data", "execute_result") and "image/png" in output.get("data", {})]
    assert len(images) >= 4  # the two lineplots, the optimizer overlay, the dropout plot
    errors = [output for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs
              if output["output_type"] == "error"]
    assert errors == []
