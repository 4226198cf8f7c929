"""The six episode notebooks (docs/notebooks/episode-0N.ipynb) and their ``# %%`` scripts.

Checked on every run: the committed notebooks hold no outputs, each notebook and its script
(jupytext's py:percent) hold the same cells, and every ``# Keras:`` comment stands above a
PyTorch line, with the lesson's own lines among them.

Marked ``notebooks`` (``pytest -m "not notebooks"`` leaves them out; CI runs them): each
notebook runs top to bottom in a real Jupyter kernel (nbclient, as ``jupyter nbconvert
--execute`` would), offline, in a fresh folder of its own, on its default data (the built-in
shapes). Any cell error fails the test. A last cell reports what the learner got, which is
checked; the figures must be there and the output short (no progress-bar redraws, nothing on
stderr). Each notebook's time is printed.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
jupytext = pytest.importorskip("jupytext")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "docs" / "notebooks"
EPISODES = ["episode-01", "episode-02", "episode-03", "episode-04", "episode-05", "episode-06"]
KERAS_KEYS = ["accuracy", "loss", "val_accuracy", "val_loss"]  # Keras 3 sorts them

# Lines of the lesson (its 2026 episodes, and the 2024 ones where a notebook adds them) that must
# stand as "# Keras:" comments, with the lesson's spacing.
LESSON_LINES = {
    "episode-01": ["train_ds, val_ds, test_ds = icfn.prepare_datasets()", "model_intro = create_model_intro()",
                   "model_intro.compile(optimizer = \"adam\",", "history_intro = model_intro.fit(x = train_ds)",
                   "prediction = model_intro.predict(tf.expand_dims(first_image, axis=0))",
                   "predicted_label = tf.argmax(prediction[0])", "model_intro.save('models/model_intro.keras')"],
    "episode-02": ["train_ds = tf.keras.utils.image_dataset_from_directory(", "class_names = train_ds.class_names",
                   "for images, labels in train_ds.take(1):", "train_images = train_images / 255.0",
                   "keras.utils.to_categorical(train_labels, len(class_names))", "shuffle = False,",
                   "keras.utils.load_img(path=new_img_path, target_size=(32,32))"],
    "episode-03": ["inputs_intro = tf.keras.Input(shape=(32,32,3))",
                   "x_intro = tf.keras.layers.MaxPooling2D(pool_size=(2,2))(x_intro)",
                   "x_intro = tf.keras.layers.Flatten()(x_intro)",
                   "outputs_intro = tf.keras.layers.Dense(units=5, activation='softmax')(x_intro)",
                   "def create_model_intro(input_shape=(32,32,3), num_classes=5):", "model_intro.summary()"],
    "episode-04": ["model_intro.compile(optimizer = 'adam',", "history_intro = model_intro.fit(x = train_ds,",
                   "history_intro_df = pd.DataFrame.from_dict(history_intro.history)",
                   "sns.lineplot(ax=axes[0], data=history_intro_df[['loss', 'val_loss']])",
                   "sns.lineplot(ax=axes[1], data=history_intro_df[['accuracy', 'val_accuracy']])",
                   "model_dropout = create_model_dropout()"],
    "episode-05": ["predictions = model_intro.predict(x = test_ds)",
                   "predicted_labels = tf.argmax(predictions, axis=1)",
                   "test_labels = np.concatenate([y for x, y in test_ds], axis=0)",
                   "conf_matrix = confusion_matrix(y_true=test_labels, y_pred=predicted_labels)",
                   "sns.heatmap(data=conf_matrix, annot=True, fmt='d',",
                   "grid = GridSearchCV(estimator=model, param_grid=param_grid, n_jobs=1, cv=3)",
                   "for dropout_rate in dropout_rates:", "for activation in activations:"],
    "episode-06": ["model_best.save('model_best.keras')",
                   "pretrained_model = keras.models.load_model('model_best.keras')",
                   "result_pretrained = pretrained_model.predict(test_images[0].reshape(1,32,32,3))"],
}  # fmt: skip

# What each notebook's learner has at the end, printed as JSON by a cell appended for the test.
PROBES = {
    "episode-01": "{'keys': sorted(history_intro.history), 'epochs': history_intro.epoch, "
                  "'saved': os.path.exists('models/model_intro.pt'), 'total': float(prediction.sum()), "
                  "'sizes': [len(train_ds), len(val_ds), len(test_ds)]}",
    "episode-02": "{'shape': list(train_images.shape), "
                  "'one_hot_rows': train_labels_one_hot.sum(dim=1).unique().tolist(), "
                  "'per_class': int(images_per_class.sum()), 'sorted': class_names == sorted(class_names), "
                  "'test': len(test_labels), 'small': list(new_img_small.shape)}",
    "episode-03": "{'by_hand': conv_parameters + dense_parameters, "
                  "'torch': sum(p.numel() for p in model_intro.parameters()), "
                  "'output': list(outputs_intro.shape), 'classes': len(class_names)}",
    "episode-04": "{'keys': sorted(history_intro.history), 'dropout_keys': sorted(history_dropout.history), "
                  "'epochs': history_intro.epoch, 'saved': sorted(os.listdir('models'))}",
    "episode-05": "{'accuracy': evaluate(model_intro, test_ds.images, test_ds.labels)[1], "
                  "'by_hand': float((predicted_labels == test_labels).float().mean()), "
                  "'matrix_total': int(conf_matrix.sum()), 'diagonal': int(conf_matrix.trace()), "
                  "'test': len(test_labels), 'best': best, 'saved': sorted(os.listdir('models'))}",
    "episode-06": "{'same': bool(torch.equal(predict(pretrained_model, test_ds.images), "
                  "predict(model_best, test_ds.images))), "
                  "'history_rows': len(history_df), 'csv': os.path.exists('history_best.csv'), "
                  "'ranked_total': float(ranked.sum())}",
}  # fmt: skip
FIGURES = {"episode-01": 2, "episode-02": 4, "episode-03": 2, "episode-04": 2, "episode-05": 8, "episode-06": 1}
TIMES: dict[str, float] = {}


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def stream_lines(cell, name: str = "stdout") -> list[str]:
    """Lines the cell printed on a stream; carriage returns (progress-bar redraws) count as lines."""
    text = "".join(out.get("text", "") for out in cell.get("outputs", [])
                   if out["output_type"] == "stream" and out["name"] == name)  # fmt: skip
    return [line for line in re.split(r"[\r\n]", text) if line.strip()]


# --- the committed files ------------------------------------------------------------------------


@pytest.mark.parametrize("episode", EPISODES)
def test_committed_notebook_has_no_outputs(episode):
    notebook = nbformat.read(NOTEBOOKS / f"{episode}.ipynb", as_version=4)
    nbformat.validate(notebook)
    for cell in code_cells(notebook):
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    assert notebook.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("episode", EPISODES)
def test_notebook_and_script_hold_the_same_cells(episode):
    """The pair is kept in step by jupytext (`jupytext --sync docs/notebooks/*.ipynb`)."""
    notebook = nbformat.read(NOTEBOOKS / f"{episode}.ipynb", as_version=4)
    script = jupytext.read(NOTEBOOKS / f"{episode}.py")
    assert notebook.metadata["jupytext"]["formats"] == script.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    cells = [(cell.cell_type, cell.source) for cell in notebook.cells]
    assert cells == [(cell.cell_type, cell.source) for cell in script.cells]


@pytest.mark.parametrize("episode", EPISODES)
def test_every_keras_line_stands_above_a_pytorch_line(episode):
    notebook = nbformat.read(NOTEBOOKS / f"{episode}.ipynb", as_version=4)
    keras_lines = []
    for cell in code_cells(notebook):
        lines = cell.source.splitlines()
        for i, line in enumerate(lines):
            if line.lstrip().startswith("# Keras:"):
                keras_lines.append(line.split("# Keras:", 1)[1].strip())
                below = [other.strip() for other in lines[i + 1:] if other.strip()]
                assert any(not other.startswith("#") for other in below), (episode, line)
                # a Keras statement over several lines goes on in indented comment lines
                for other in lines[i + 1:]:
                    if not re.match(r"\s*#\s{3,}\S", other):
                        break
                    keras_lines.append(other.strip().lstrip("#").strip())
    for lesson_line in LESSON_LINES[episode]:
        assert any(lesson_line in line for line in keras_lines), (episode, lesson_line)


def test_every_notebook_starts_with_the_settings_cell():
    for episode in EPISODES:
        first_code = code_cells(nbformat.read(NOTEBOOKS / f"{episode}.ipynb", as_version=4))[0].source
        assert first_code.startswith("# Settings") and 'DATASET = "shapes"' in first_code, episode


# --- run in a kernel ----------------------------------------------------------------------------


def execute(episode: str, folder: Path):
    notebook = nbformat.read(NOTEBOOKS / f"{episode}.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(f"import json, os\nprint(json.dumps({PROBES[episode]}))"))
    client = nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})  # fmt: skip
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell and its traceback, on any error
    TIMES[episode] = time.perf_counter() - start
    # the probe's own line, the last on its stdout (evaluate prints Keras's line above it; widgets are no text)
    printed = "".join(out["text"] for out in notebook.cells[-1].outputs if out.get("name") == "stdout")
    return notebook, json.loads(printed.strip().splitlines()[-1])


@pytest.mark.notebooks
@pytest.mark.parametrize("episode", EPISODES)
def test_notebook_runs_in_a_kernel(episode, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNN_TORCH_CACHE", str(tmp_path / "cache"))  # image folders' decode cache: not ~/.cache
    notebook, report = execute(episode, tmp_path)
    with capsys.disabled():
        print(f"\n{episode}: executed in {TIMES[episode]:.1f} s")
    cells = code_cells(notebook)[:-1]

    images = [out for cell in cells for out in cell.outputs
              if out["output_type"] in ("display_data", "execute_result") and "image/png" in out.get("data", {})]
    assert len(images) >= FIGURES[episode]
    for cell in cells:
        assert stream_lines(cell, "stderr") == [], (cell.source[:80], stream_lines(cell, "stderr"))
        if "fit(" in cell.source or "compare(" in cell.source:
            epochs = [int(n) for n in re.findall(r"Epoch \d+/(\d+)", "\n".join(stream_lines(cell)))]
            # Keras's printout: two lines per epoch (its number, then its numbers), or one line per setting
            assert len(stream_lines(cell)) <= max(12, 2 * sum(set(epochs)) + 2), cell.source[:80]
    check_report(episode, report, tmp_path)


def check_report(episode: str, report: dict, folder: Path) -> None:
    """What the learner has at the end of each episode."""
    if episode == "episode-01":
        assert report["keys"] == ["accuracy", "loss"] and report["epochs"] == [0] and report["saved"]
        assert report["total"] == pytest.approx(1.0, abs=1e-5)  # probabilities of one image
        assert report["sizes"] == [1000, 250, 250]
    elif episode == "episode-02":
        assert report["shape"] == [1000, 3, 32, 32] and report["one_hot_rows"] == [1]
        assert report["per_class"] == 1000 and report["sorted"] and report["test"] == 250
        assert report["small"] == [3, 32, 32]
        assert (folder / "data" / "my_image.png").is_file()
    elif episode == "episode-03":
        assert report["by_hand"] == report["torch"] == (3 * 3 * 3 + 1) * 16 + (16 * 15 * 15 + 1) * report["classes"]
        assert report["output"] == [1, report["classes"]]
    elif episode == "episode-04":
        assert report["keys"] == report["dropout_keys"] == KERAS_KEYS
        assert report["epochs"] == list(range(10))
        assert report["saved"] == ["model_dropout.pt", "model_intro.pt"]
    elif episode == "episode-05":
        # evaluate's accuracy is the lesson's accuracy_score, computed on the same order of labels
        assert report["accuracy"] == pytest.approx(report["by_hand"], abs=1e-6)
        assert report["matrix_total"] == report["test"] == 250
        assert report["diagonal"] == round(report["by_hand"] * 250)
        assert report["best"] and "model_best.pt" in report["saved"]
    elif episode == "episode-06":
        assert report["same"] and report["history_rows"] == 10 and report["csv"]
        assert report["ranked_total"] == pytest.approx(1.0, abs=1e-5)
