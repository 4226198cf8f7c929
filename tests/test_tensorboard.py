"""Keras's ``TensorBoard`` callback through ``fit``'s ``on_epoch_end``: the event files are read back
with TensorBoard's own reader and checked against the History, the optimizer and the weights, as
the tensor summaries Keras (TensorFlow 2) writes: float32 scalars, [30, 3] float64 histograms, each
naming its plugin; the page's own data provider reads them; the histogram names against the names
Keras gives the lesson's (functional) models' weights, batch norm and the transfer model included;
the command line's ``--tensorboard`` with ``--batch-norm``; and the one line when TensorBoard is not
installed. tests/test_tensorboard_keras.py compares with the files Keras itself writes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from torch import nn

from cnn_torch import TensorBoard, fit
from cnn_torch.errors import UserError
from cnn_torch.keras_rules.tensorboard import histogram_buckets, keras_weight_names
from cnn_torch.models import KerasBatchNorm2d, build_model

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
from tensorboard.util.tensor_util import make_ndarray  # noqa: E402  (after the skip: tensorboard is optional)

ROOT = Path(__file__).resolve().parents[1]
BATCH_NORM_NAMES = ["gamma", "beta", "moving_mean", "moving_variance"]


def read_events(run_dir: Path):
    """TensorBoard's reader, keeping every record (by default it samples 10 tensors per tag)."""
    reader = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    reader.Reload()
    return reader


def tensors(reader, tag: str) -> list[tuple[int, np.ndarray]]:
    """``[(step, the tensor as numpy), ...]``: what a script reading Keras's logs does."""
    return [(event.step, make_ndarray(event.tensor_proto)) for event in reader.Tensors(tag)]


def plugin(reader, tag: str) -> str:
    """The TensorBoard dashboard the tag is drawn by (its summary metadata's plugin name)."""
    return reader.SummaryMetadata(tag).plugin_data.plugin_name


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Three epochs of cifar_model_small with batch norm on 40 images, histograms every second epoch."""
    log_dir = tmp_path_factory.mktemp("logs")
    torch.manual_seed(0)
    model = build_model("cifar_model_small", num_classes=4, batch_norm=True)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(40) % 4
    optimizer = torch.optim.Adam(model.parameters(), lr=0.002)
    with TensorBoard(log_dir, histogram_freq=2, model=model, optimizer=optimizer) as tensorboard:
        history = fit(model, nn.CrossEntropyLoss(), optimizer, images, labels, epochs=3, batch_size=16,
                      validation_split=0.25, seed=0, verbose=0, on_epoch_end=tensorboard)  # fmt: skip
    return log_dir, model, history


def test_keras_s_layout_train_and_validation_runs(logged):
    log_dir, _, _ = logged
    assert sorted(path.name for path in log_dir.iterdir()) == ["train", "validation"]
    for run in ("train", "validation"):
        files = [path.name for path in (log_dir / run).iterdir()]
        assert len(files) == 1 and files[0].startswith("events.out.tfevents.") and files[0].endswith(".v2")


def test_epoch_scalars_are_the_history_as_float32_tensors(logged):
    log_dir, _, history = logged
    train, validation = read_events(log_dir / "train"), read_events(log_dir / "validation")
    for reader in (train, validation):  # tensor summaries only, none of the older scalar/histogram records
        assert reader.Tags()["scalars"] == [] and reader.Tags()["histograms"] == []
    train_scalars = [tag for tag in train.Tags()["tensors"] if not tag.endswith("/histogram")]
    assert sorted(train_scalars) == ["epoch_accuracy", "epoch_learning_rate", "epoch_loss"]
    assert sorted(validation.Tags()["tensors"]) == [
        "epoch_accuracy", "epoch_loss", "evaluation_accuracy_vs_iterations", "evaluation_loss_vs_iterations",
    ]  # fmt: skip
    every_scalar = [(train, tag) for tag in train_scalars] + [(validation, tag) for tag in validation.Tags()["tensors"]]
    for reader, tag in every_scalar:
        assert plugin(reader, tag) == "scalars"
        assert {(value.dtype, value.shape) for _, value in tensors(reader, tag)} == {(np.dtype("float32"), ())}

    def values(reader, tag):
        return [(step, value.item()) for step, value in tensors(reader, tag)]

    for key in ("loss", "accuracy"):  # float32 tensors hold the History's float32 numbers exactly
        assert values(train, f"epoch_{key}") == list(enumerate(history.history[key]))
        assert values(validation, f"epoch_{key}") == list(enumerate(history.history[f"val_{key}"]))
    assert values(train, "epoch_learning_rate") == [(epoch, np.float32(0.002)) for epoch in range(3)]
    steps = history.params["steps"]  # 30 training images in batches of 16: 2 optimizer steps per epoch
    assert steps == 2
    evaluation = values(validation, "evaluation_loss_vs_iterations")
    assert evaluation == list(zip([2, 4, 6], history.history["val_loss"], strict=True))


def test_weight_histograms_every_histogram_freq_epochs(logged):
    """Each a [30, 3] float64 tensor of (left edge, right edge, count): the counts add up to the
    weight's size, the edges run from its smallest value to its largest, bucket after bucket."""
    log_dir, model, _ = logged
    train = read_events(log_dir / "train")
    histograms = [tag for tag in train.Tags()["tensors"] if tag.endswith("/histogram")]
    assert sorted(histograms) == sorted(f"{name}/histogram" for name, _ in keras_weight_names(model))
    for name, weight in keras_weight_names(model):
        tag = f"{name}/histogram"
        assert plugin(train, tag) == "histograms"
        events = tensors(train, tag)
        assert [step for step, _ in events] == [0, 2]  # epochs 0 and 2 of 0, 1, 2
        last = events[-1][1]  # epoch 2's: the weights the model ends with
        assert (last.dtype, last.shape) == (np.dtype("float64"), (30, 3))
        left, right, counts = last.T
        assert counts.sum() == weight.numel()
        assert (left[0], right[-1]) == (weight.min().item(), weight.max().item())
        assert (left[1:] == right[:-1]).all() and (left <= right).all()


def test_batch_norm_weights_have_keras_s_names(logged):
    """KerasBatchNorm2d is an nn.BatchNorm2d: Keras's batch_normalization, batch_normalization_1."""
    _, model, _ = logged
    assert sum(isinstance(module, KerasBatchNorm2d) for module in model.modules()) == 2
    assert [name for name, _ in keras_weight_names(model)] == [
        "conv2d/kernel", "conv2d/bias", *(f"batch_normalization/{name}" for name in BATCH_NORM_NAMES),
        "conv2d_1/kernel", "conv2d_1/bias", *(f"batch_normalization_1/{name}" for name in BATCH_NORM_NAMES),
        "dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias",
    ]  # fmt: skip


def test_the_tensorboard_page_reads_them(logged):
    """What the Scalars and Histograms dashboards ask TensorBoard's data provider for."""
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.context import RequestContext

    log_dir, model, history = logged
    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={"scalars": 0, "histograms": 0})
    multiplexer.AddRunsFromDirectory(str(log_dir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(log_dir))
    asked = {"ctx": RequestContext(), "experiment_id": "", "downsample": 100}
    scalars = provider.read_scalars(plugin_name="scalars", **asked)
    assert [point.value for point in scalars["validation"]["epoch_loss"]] == history.history["val_loss"]
    assert sorted(scalars) == ["train", "validation"] and len(scalars["train"]) == 3
    histograms = provider.read_tensors(plugin_name="histograms", **asked)
    assert sorted(histograms) == ["train"]
    assert sorted(histograms["train"]) == sorted(f"{name}/histogram" for name, _ in keras_weight_names(model))
    assert histograms["train"]["batch_normalization_1/moving_variance/histogram"][-1].numpy.shape == (30, 3)


def test_histogram_buckets_by_hand():
    """tf.summary.histogram's buckets: equal widths from min to max, the max in the last bucket;
    one repeated value: all edges that value, all counted last; no values: zeros."""
    buckets = histogram_buckets(torch.tensor([0.0, 1.0, 2.0, 3.0, 0.5]), buckets=3)
    assert buckets.tolist() == [[0.0, 1.0, 2.0], [1.0, 2.0, 1.0], [2.0, 3.0, 2.0]]
    one_value = histogram_buckets(torch.full((2, 2), 0.25), buckets=3)
    assert one_value.tolist() == [[0.25, 0.25, 0.0], [0.25, 0.25, 0.0], [0.25, 0.25, 4.0]]
    assert histogram_buckets(torch.zeros(0)).tolist() == [[0.0, 0.0, 0.0]] * 30
    assert histogram_buckets(torch.rand(7, 5)).dtype == torch.float64
    assert histogram_buckets(torch.tensor([1.0, float("nan")]))[:, 2].sum() == 2  # a diverged run goes on


@pytest.mark.parametrize(("name", "options"), [("cifar_model_small", {}), ("cifar_model", {}), ("model_dropout", {}),
                                               ("model_intro", {}), ("cifar_model_small", {"batch_norm": True}),
                                               ("model_dropout", {"batch_norm": True})])  # fmt: skip
def test_histogram_names_are_keras_s(name, options):
    """The names Keras gives the weights of the lesson's functional model, ``keras.Model(inputs, outputs)``."""
    keras = pytest.importorskip("keras")
    from cnn_torch.parity.keras_compat import keras_model_like

    model = build_model(name, num_classes=10, **options)
    sequential = keras_model_like(model)
    keras.backend.clear_session()  # Keras numbers its layers per session: conv2d, conv2d_1, ...
    inputs = keras.Input(sequential.input_shape[1:])
    outputs = inputs
    for layer in sequential.layers:
        config = {key: value for key, value in layer.get_config().items() if key != "name"}
        outputs = type(layer).from_config(config)(outputs)
    functional = keras.Model(inputs=inputs, outputs=outputs, name=name)
    keras_names = [weight.path for layer in functional.layers for weight in layer.weights]
    assert [name for name, _ in keras_weight_names(model)] == keras_names


def test_transfer_model_names_are_keras_s():
    """The base by keras.applications.DenseNet121's layer names (which take no number), so the
    head is Keras's batch_normalization (a 1-d KerasBatchNorm1d), dense and dense_1. All 612 names
    were checked once against Keras 3.15 on TensorFlow; the ends and a sample are kept here."""
    names = [name for name, _ in keras_weight_names(build_model("densenet121_transfer", weights=None))]
    assert len(names) == len(set(names)) == 612
    assert names[:5] == ["conv1_conv/kernel", *(f"conv1_bn/{name}" for name in BATCH_NORM_NAMES)]
    assert names[5:11] == [*(f"conv2_block1_0_bn/{name}" for name in BATCH_NORM_NAMES), "conv2_block1_1_conv/kernel",
                           "conv2_block1_1_bn/gamma"]  # fmt: skip
    sample = {"conv2_block6_2_conv/kernel", "pool2_bn/moving_mean", "pool4_conv/kernel", "conv5_block16_1_bn/beta"}
    assert sample <= set(names)
    assert names[-12:] == [*(f"bn/{name}" for name in BATCH_NORM_NAMES),
                           *(f"batch_normalization/{name}" for name in BATCH_NORM_NAMES),
                           "dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]  # fmt: skip


def test_a_resumed_run_counts_the_steps_it_had_taken(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    images, labels = torch.rand(12, 1, 2, 2), torch.arange(12) % 2
    with TensorBoard(tmp_path, model=model, optimizer=optimizer, iterations=100) as tensorboard:
        fit(model, nn.CrossEntropyLoss(), optimizer, images, labels, epochs=1, batch_size=4,
            validation_data=(images, labels), verbose=0, on_epoch_end=tensorboard)  # fmt: skip
    validation = read_events(tmp_path / "validation")
    assert [step for step, _ in tensors(validation, "evaluation_accuracy_vs_iterations")] == [103]
    train_tags = read_events(tmp_path / "train").Tags()["tensors"]
    assert not [tag for tag in train_tags if tag.endswith("/histogram")]  # histogram_freq=0, Keras's default: none


def test_cli_batch_norm_histograms_have_keras_s_names(tmp_path, monkeypatch, capsys):
    """``train.py --batch-norm --tensorboard DIR``, in this process: one epoch on 60 shapes."""
    from cnn_torch.cli import train as train_script

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNN_TORCH_RUNNING", str(tmp_path / "running"))  # no other training shares these cores
    argv = ["--dataset", "shapes", "--limit", "60", "--epochs", "1", "--seed", "1", "--batch-norm", "--quiet",
            "--tensorboard", "tb", "--out", "run", "--fig-dir", "fig"]  # fmt: skip
    assert train_script.main(argv) == 0, capsys.readouterr().err
    train = read_events(tmp_path / "tb" / "train")
    histograms = sorted(tag.removesuffix("/histogram") for tag in train.Tags()["tensors"] if tag.endswith("/histogram"))
    assert [name for name in histograms if name.startswith("batch_normalization")] == [
        *(f"batch_normalization/{name}" for name in sorted(BATCH_NORM_NAMES)),
        *(f"batch_normalization_1/{name}" for name in sorted(BATCH_NORM_NAMES)),
    ]
    assert {plugin(train, tag) for tag in train.Tags()["tensors"]} == {"scalars", "histograms"}


def test_without_the_package_one_line_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(UserError, match=r"needs the tensorboard package: pip install tensorboard"):
        TensorBoard("logs", model=nn.Linear(1, 1))


def test_cli_without_the_package_stops_before_any_data(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    result = run_cli("train", "--dataset", "shapes", "--tensorboard", "tb", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: TensorBoard logging needs the tensorboard package: pip install tensorboard")
    assert result.stderr.count("\n") == 1 and "Data:" not in result.stdout
    assert not (tmp_path / "runs").exists() and not (tmp_path / "tb").exists()
