"""Run Keras's ``model.fit`` in another Python (Keras on TensorFlow); ``cnn_torch.parity.harness`` drives it.

    /path/to/tf-python cnn_torch/parity/keras_worker.py job.npz result.npz

TensorFlow never goes into this project's environment, so the Keras-on-TensorFlow side of
the parity measurement runs in a separate interpreter. This file is that side: it imports
neither torch nor cnn_torch, only keras and numpy. ``job.npz`` holds

* ``spec``: JSON with the model (Keras's own ``model.to_json()``), the Keras backend, the
  batch size, the epochs and a list of runs, each an optimizer (class name and keyword
  arguments) and a loss (``SparseCategoricalCrossentropy`` or ``CategoricalCrossentropy``,
  both ``from_logits=True``);
* ``weights_0`` ... ``weights_<k>``: the initial weights, in ``model.get_weights()`` order;
* ``x_train``, ``y_train``, ``x_val``, ``y_val``: channels-last float32 images and labels.

Every run starts from the same initial weights, trains with ``shuffle=False`` and returns
its History and trained weights in ``result.npz`` (``spec`` there: JSON with the histories
and the versions; ``run<i>_weights_<k>``: the weights).
"""

from __future__ import annotations

import json
import os
import sys

# Run as a script, Python puts this file's folder first on sys.path: it holds no module named
# like one of the standard library's or TensorFlow's (the reason trace.py became first_batch_trace.py).


def main(job_path: str, result_path: str) -> int:
    import numpy as np

    with np.load(job_path) as job:
        arrays = {name: job[name] for name in job.files}
    spec = json.loads(str(arrays["spec"]))
    os.environ["KERAS_BACKEND"] = spec["backend"]  # before keras is imported
    import keras

    if spec["backend"] == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
        tf.config.threading.set_inter_op_parallelism_threads(spec["threads"])
        versions = {"tensorflow": tf.__version__}
    else:
        versions = {}
    versions.update(keras=keras.__version__, numpy=np.__version__, backend=spec["backend"])

    initial = [arrays[f"weights_{i}"] for i in range(spec["num_weights"])]
    validation_data = (arrays["x_val"], arrays["y_val"]) if "x_val" in arrays else None
    results: dict[str, object] = {"versions": versions, "runs": []}
    out_arrays = {}
    for i, run in enumerate(spec["runs"]):
        model = keras.models.model_from_json(spec["model_json"])
        model.set_weights(initial)
        optimizer = getattr(keras.optimizers, run["optimizer"])(**run["optimizer_kwargs"])
        loss = getattr(keras.losses, run["loss"])(from_logits=True)
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
        history = model.fit(
            arrays["x_train"], arrays["y_train"],
            batch_size=spec["batch_size"], epochs=spec["epochs"], shuffle=False, verbose=0,
            validation_data=validation_data,  # validated at batch_size, Keras's default
        )
        results["runs"].append({
            "history": {key: [float(v) for v in values] for key, values in history.history.items()},
            "epoch": list(history.epoch),
            "params": dict(history.params),
        })
        for k, weight in enumerate(model.get_weights()):
            out_arrays[f"run{i}_weights_{k}"] = np.asarray(weight)
    np.savez(result_path, spec=np.array(json.dumps(results)), **out_arrays)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} job.npz result.npz")
    sys.exit(main(sys.argv[1], sys.argv[2]))
