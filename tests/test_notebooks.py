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
MAX_STREAM_LINES_PER_CELL = 12  # Keras's two lines per epoch, or one per setting, never a progress bar's redraws
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
        " 'epochs': history.epoch, 'best': results.best, 'cv_best': cv_results.best_line(),"
        " 'plotted_epochs': [int(e) for e in history_df.index], 'dropout': loss_df.to_dict(orient='list')}))"
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
    # the lesson's plots number the epochs as fit printed them: "Epoch 1/6" is epoch 1 on the x axis
    assert report["plotted_epochs"] == [epoch + 1 for epoch in report["epochs"]]


def test_the_dropout_text_says_what_its_plot_shows(executed):
    """The text: these short runs do not overfit (training accuracy has not pulled ahead), and
    val_loss rises with the dropout rate. The plot is val_loss against the rate, as the lesson's."""
    dropout = json.loads("".join(executed.cells[-1].outputs[0]["text"]))["dropout"]
    text = next(cell.source for cell in executed.cells if cell.cell_type == "markdown" and "**Dropout**" in cell.source)
    assert "`val_loss` rises with the rate here" in text and "has not pulled ahead" in text
    assert dropout["val_loss"][-1] > dropout["val_loss"][0]  # 0.75 against 0.15
    assert all(gap < 0.05 for gap in dropout["train_minus_val_accuracy"])
    plot_cell = next(cell.source for cell in executed.cells if cell.cell_type == "code" and "loss_df = " in cell.source)
    assert 'sns.lineplot(data=loss_df, x="dropout_rate", y="val_loss"' in plot_cell


def test_the_install_line_is_the_readme_s():
    readme = (NOTEBOOK.parents[2] / "README.md").read_text()
    line = re.search(r'pip install -e "\.\[notebook\]" && jupyter lab docs/notebooks/episode-04\.ipynb', readme)
    assert line, "the README's notebook install line changed"
    assert line.group(0) in nbformat.read(NOTEBOOK, as_version=4).cells[0].source


def test_progress_output_stays_a_handful_of_lines(executed):
    training = [cell for cell in executed.cells[:-1]
                if cell.cell_type == "code" and ("fit(" in cell.source or "compare(" in cell.source)]
    assert len(training) == 5  # fit, the optimizer challenge, its cross-validation, dropout, activation
    for cell in training:
        lines = stream_lines(cell)
        assert len(lines) <= MAX_STREAM_LINES_PER_CELL, (cell.source[:80], lines)
    fit_cell = next(c for c in executed.cells if c.cell_type == "code" and "history = fit(" in c.source)
    assert 1 <= len(stream_lines(fit_cell)) <= 12  # two lines per epoch, as Keras: "Epoch 1/6" and the numbers


def test_notebook_shows_the_lessons_figures(executed):
    images = [output for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs
              if output["output_type"] in ("display_data", "execute_result") and "image/png" in output.get("data", {})]
    assert len(images) >= 4  # the two lineplots, the optimizer overlay, the dropout plot
    errors = [output for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs
              if output["output_type"] == "error"]
    assert errors == []
