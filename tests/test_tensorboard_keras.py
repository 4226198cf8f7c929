"""Our TensorBoard event files against the ones Keras 3 writes itself, on TensorFlow (the lesson's
stack), for the same lesson model (cifar_model_small with batch norm) and the same ``fit``: the same
runs, tags, steps, tensor dtypes and shapes, and plugin in every record; and Keras's own histograms
are what ``histogram_buckets`` makes of Keras's weights. TensorFlow is not in this venv: the tests
run when ``CNN_TORCH_TF_PYTHON`` names a Python with tensorflow and keras (never this venv)."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cnn_torch import TensorBoard, fit
from cnn_torch.keras_rules.tensorboard import histogram_buckets
from cnn_torch.models import build_model

TF_PYTHON = os.environ.get("CNN_TORCH_TF_PYTHON")
SKIP_REASON = (
    "set CNN_TORCH_TF_PYTHON to a Python with tensorflow and keras (never this venv) to compare with Keras's files"
)
pytestmark = pytest.mark.skipif(not TF_PYTHON, reason=SKIP_REASON)
event_file_loader = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader")
from tensorboard.util.tensor_util import make_ndarray  # noqa: E402  (after the skip: tensorboard is optional)

# The lesson's cifar_model_small with a BatchNormalization after each convolution, trained as the
# test below trains ours: 3 epochs, batches of 16, a quarter held out, histograms every 2nd epoch.
KERAS_SCRIPT = """
import os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
import keras, numpy as np
log_dir, weights_file = sys.argv[1:]
keras.utils.set_random_seed(0)
inputs = keras.Input(shape=(32, 32, 3))
x = keras.layers.Conv2D(50, (3, 3), activation="relu")(inputs)
x = keras.layers.BatchNormalization()(x)
x = keras.layers.MaxPooling2D((2, 2))(x)
x = keras.layers.Conv2D(50, (3, 3), activation="relu")(x)
x = keras.layers.BatchNormalization()(x)
x = keras.layers.MaxPooling2D((2, 2))(x)
x = keras.layers.Flatten()(x)
x = keras.layers.Dense(50, activation="relu")(x)
outputs = keras.layers.Dense(4)(x)
model = keras.Model(inputs=inputs, outputs=outputs, name="cifar_model_small")
model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3)).astype("float32") / 255.0
labels = np.arange(40) % 4
model.fit(images, labels, epochs=3, batch_size=16, validation_split=0.25, verbose=0,
          callbacks=[keras.callbacks.TensorBoard(log_dir, histogram_freq=2)])
np.savez(weights_file, **{weight.path: keras.ops.convert_to_numpy(weight)
                          for layer in model.layers for weight in layer.weights})
"""


def records(run_dir: Path) -> list:
    """Every summary record of the run's one event file, as (tag, step, dtype, shape, plugin, content)."""
    [events_file] = run_dir.iterdir()
    assert events_file.name.startswith("events.out.tfevents.") and events_file.name.endswith(".v2")
    found = []
    for event in event_file_loader.EventFileLoader(str(events_file)).Load():
        for value in event.summary.value:
            shape = tuple(dim.size for dim in value.tensor.tensor_shape.dim)
            plugin_data = value.metadata.plugin_data
            found.append((value.tag, event.step, value.tensor.dtype, shape, plugin_data.plugin_name,
                          plugin_data.content))  # fmt: skip
    return found


@pytest.fixture(scope="module")
def both_logs(tmp_path_factory):
    """Keras's logs (and its weights at the end) from TF_PYTHON, then ours."""
    folder = tmp_path_factory.mktemp("tensorboard")
    keras_logs, keras_weights, our_logs = folder / "keras", folder / "keras_weights.npz", folder / "ours"
    on_the_cpu = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([TF_PYTHON, "-c", KERAS_SCRIPT, str(keras_logs), str(keras_weights)],
                            capture_output=True, text=True, timeout=600, env=on_the_cpu)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]

    torch.manual_seed(0)
    model = build_model("cifar_model_small", num_classes=4, batch_norm=True)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(40) % 4
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)  # Keras's optimizer="adam"
    with TensorBoard(our_logs, histogram_freq=2, model=model, optimizer=optimizer) as tensorboard:
        fit(model, nn.CrossEntropyLoss(), optimizer, images, labels, epochs=3, batch_size=16,
            validation_split=0.25, seed=0, verbose=0, on_epoch_end=tensorboard)  # fmt: skip
    return keras_logs, dict(np.load(keras_weights)), our_logs


def test_the_same_records_as_keras_writes(both_logs):
    """Run by run, the same (tag, step, dtype, shape, plugin) records, whatever their order within
    an epoch; Keras's one more is its model graph (the ``keras`` tag), which needs TensorFlow."""
    keras_logs, _, our_logs = both_logs
    assert sorted(path.name for path in keras_logs.iterdir()) == sorted(path.name for path in our_logs.iterdir())
    for run in ("train", "validation"):
        keras_records = [record for record in records(keras_logs / run) if record[0] != "keras"]
        assert Counter(records(our_logs / run)) == Counter(keras_records), run
    graph = [record for record in records(keras_logs / "train") if record[0] == "keras"]
    assert [(tag, plugin) for tag, _, _, _, plugin, _ in graph] == [("keras", "graph_keras_model")]


def test_keras_s_histograms_are_histogram_buckets_of_its_weights(both_logs):
    """Keras's epoch-2 histograms against ``histogram_buckets`` of the weights Keras ended with:
    the same buckets, edges and counts."""
    keras_logs, keras_weights, _ = both_logs
    last = {}
    for event in event_file_loader.EventFileLoader(str(next((keras_logs / "train").iterdir()))).Load():
        for value in event.summary.value:
            if value.tag.endswith("/histogram") and event.step == 2:
                last[value.tag.removesuffix("/histogram")] = make_ndarray(value.tensor)
    assert sorted(last) == sorted(keras_weights)
    for name, weight in keras_weights.items():
        np.testing.assert_array_equal(histogram_buckets(torch.from_numpy(weight)).numpy(), last[name], err_msg=name)
