"""Issue 25, item 5: the small defects, each pinned where it was fixed.

- Keras's layers and the model base live in ``keras_rules/layers.py``, still importable from
  ``cnn_torch.models``; the flatten size comes from a dry run that changes nothing.
- ``plots.py`` leaves matplotlib's backend to matplotlib.
- One ``resize_with_pad`` (TensorFlow's float32 arithmetic) for the folder loader and the transfer model.
- One division by 255 (``as_float``) behind ``to_float`` and ``to_model_input``.
- Decoding through PIL: no deprecated decoder, no warning hidden, none raised.
- In Jupyter, ``fit`` draws tqdm's live bar and leaves Keras's end-of-epoch line.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnn_torch.keras_rules import layers
from cnn_torch.keras_rules.transfer import ResizeWithPad
from cnn_torch.machinery import progress
from cnn_torch.machinery.progress import EpochProgress, resolve_verbose
from cnn_torch.models import build_model
from cnn_torch.platform.device import as_float
from cnn_torch.platform.tf_resize import resize_with_pad
from cnn_torch.sources.image_files import load_image, resize, to_model_input
from cnn_torch.sources.lesson_data import to_float

ROOT = Path(__file__).resolve().parents[1]
ESCAPES = re.compile(r"\x1b\[[0-9;]*m")


# --- keras_rules/layers.py and the dry run ---------------------------------------------------------


def test_keras_layers_are_still_importable_from_models():
    from cnn_torch import models

    for name in ("KerasBatchNorm1d", "KerasBatchNorm2d", "LessonModel", "ACTIVATIONS", "INITS"):
        assert getattr(models, name) is getattr(layers, name)


def test_the_dry_run_leaves_the_new_model_as_built():
    model = build_model("cifar_model_small", batch_norm=True, augment=["flip"], augment_seed=3)
    assert all(module.training for module in model.modules())  # the dry run's eval() is undone
    norms = [m for m in model.modules() if isinstance(m, layers.KerasBatchNorm2d)]
    assert norms and all(int(m.num_batches_tracked) == 0 for m in norms)
    assert all(torch.equal(m.running_mean, torch.zeros_like(m.running_mean)) for m in norms)
    assert int(model[0][0].draws) == 0  # the augmentation drew nothing


def test_too_small_names_each_side():
    with pytest.raises(Exception, match=r"at least 10x10 pixels \(height x width\)"):
        build_model("cifar_model_small", input_shape=(3, 64, 9))


# --- plots.py: the backend is matplotlib's choice ---------------------------------------------------


def test_importing_plots_chooses_no_backend():
    """A terminal IPython's plt.show() needs the backend matplotlib picks; only Agg was forced before."""
    env = {**os.environ, "MPLBACKEND": "template", "PYTHONPATH": str(ROOT)}
    code = "import cnn_torch.plots, matplotlib; print(matplotlib.get_backend())"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "template"


# --- one resize_with_pad ----------------------------------------------------------------------------


def test_the_loader_and_the_transfer_model_pad_alike():
    images = torch.randint(0, 256, (2, 3, 29, 47), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    loaded = resize(images, (40, 40), pad_to_aspect_ratio=True)
    in_model = ResizeWithPad((40, 40))(images.float())
    assert torch.equal(loaded, in_model.round().clamp(0, 255).to(torch.uint8))


def test_resize_with_pad_does_tensorflow_s_float32_arithmetic():
    """58x36 into 224x224: in float64 58 / (58 / 224) is 223.99999999999997 and floors to 223 rows,
    leaving a black row; TensorFlow's float32 gives 224, the image's full height."""
    resized = resize_with_pad(torch.ones(1, 58, 36), (224, 224))
    rows = resized[0].amax(dim=1) > 0
    assert bool(rows.all())
    columns = (resized[0].amax(dim=0) > 0).nonzero().flatten()
    assert (int(columns[0]), len(columns)) == (42, 139)  # floor(36 / ratio) = 139 wide, floor((224 - 139.03) / 2) = 42


# --- one division by 255 ----------------------------------------------------------------------------


def test_one_division_by_255():
    images = torch.randint(0, 256, (4, 3, 5, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    expected = as_float(images)
    floats = to_float(images)
    assert torch.equal(floats, expected) and floats.is_contiguous()
    lesson = {"scale": 1 / 255.0, "mean": None, "std": None}
    assert torch.equal(to_model_input(images, lesson), expected)
    given = expected.clone()
    to_model_input(given, {"scale": 1 / 255.0, "mean": [0.5, 0.5, 0.5], "std": [2.0, 2.0, 2.0]})
    assert torch.equal(given, expected)  # the caller's tensor is not changed in place


# --- decoding: no deprecated decoder, no hidden warning ---------------------------------------------


def test_decoding_warns_of_nothing(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=90)
    palette = Image.fromarray(rgb).convert("P")
    palette.save(tmp_path / "alpha.png", transparency=bytes(range(256)))  # PIL warns on a direct RGB conversion
    Image.fromarray(np.full((8, 8), 0xAB00, dtype=np.uint16)).save(tmp_path / "deep.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torchvision's decoders warned of their deprecation on every call
        photo = load_image(tmp_path / "photo.jpg", (12, 10), jpeg_decoder="accurate")
        load_image(tmp_path / "photo.jpg", (12, 10))  # the default, TensorFlow's decoder, warns of nothing either
        alpha = load_image(tmp_path / "alpha.png", (12, 10))
        deep = load_image(tmp_path / "deep.png", (8, 8), channels=1)
    with Image.open(tmp_path / "photo.jpg") as source:
        assert np.array_equal(photo.permute(1, 2, 0).numpy(), np.asarray(source.convert("RGB")))
    assert np.array_equal(alpha.permute(1, 2, 0).numpy(), np.asarray(palette.convert("RGB")))
    assert deep.unique().tolist() == [0xAB]  # 16 bits to 8: the high byte, as TensorFlow


# --- the notebook's live bar ------------------------------------------------------------------------


class FakeBar:
    """tqdm's notebook bar, as far as EpochProgress uses it."""

    made: list[FakeBar] = []

    def __init__(self, total: int, unit: str, leave: bool) -> None:
        self.total, self.unit, self.leave = total, unit, leave
        self.n, self.postfixes, self.closed = 0, [], False
        FakeBar.made.append(self)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfixes.append(text)

    def update(self, n: int) -> None:
        self.n += n

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def in_a_notebook(monkeypatch):
    """Jupyter with ipywidgets, as EpochProgress sees it."""
    monkeypatch.setattr(progress, "in_jupyter", lambda: True)
    monkeypatch.setattr(progress, "widgets_installed", lambda: True)
    monkeypatch.setenv("COLUMNS", "1000")
    FakeBar.made.clear()


def run_epoch(verbose: int, logs: dict | None = None) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bar = EpochProgress(verbose, epoch=0, epochs=2, steps=25)
        for step in (1, 10, 20, 25):
            bar.update(step, {"loss": 2.0 / step, "accuracy": step / 50})
        bar.close(logs)
    return out.getvalue()


def test_auto_is_the_live_bar_in_a_notebook(in_a_notebook, monkeypatch):
    assert resolve_verbose("auto") == 1
    monkeypatch.setattr(progress, "widgets_installed", lambda: False)
    assert resolve_verbose("auto") == 2  # no ipywidgets: one line per epoch, as before


def test_the_notebook_bar_shows_keras_s_numbers_and_ends_in_keras_s_line(in_a_notebook, monkeypatch):
    logs = {"loss": 0.08, "accuracy": 0.5, "val_loss": 0.1, "val_accuracy": 0.4}
    monkeypatch.setattr(progress, "notebook_bar", lambda: FakeBar)
    printed = run_epoch(1, logs)
    (bar,) = FakeBar.made
    assert (bar.total, bar.n, bar.closed, bar.leave) == (25, 25, True, False)
    assert bar.postfixes[0] == "accuracy: 0.0200 - loss: 2.0000"  # Keras's running numbers, Keras's order
    assert "\r" not in printed  # the notebook keeps lines, not redraws
    header, last = printed.splitlines()
    assert header == "Epoch 1/2"
    # the line the terminal prints at the epoch's end, whole
    monkeypatch.setattr(progress, "notebook_bar", lambda: None)
    terminal_last = run_epoch(1, logs).rsplit("\r", 1)[-1].strip()
    assert re.sub(r"\d+(ms|us|s)\b", "T", last) == re.sub(r"\d+(ms|us|s)\b", "T", terminal_last)
    assert ESCAPES.sub("", last).startswith("25/25 ━━━━━━━━━━━━━━━━━━━━ ")


def test_an_interrupted_notebook_bar_stays(in_a_notebook, monkeypatch):
    monkeypatch.setattr(progress, "notebook_bar", lambda: FakeBar)
    assert run_epoch(1, None) == "Epoch 1/2\n"
    (bar,) = FakeBar.made
    assert bar.closed and bar.leave


def test_the_notebook_bar_is_tqdm_auto(in_a_notebook, capsys):
    """The real tqdm.auto (its console bar here, outside a kernel): the bar is tqdm's, the lines
    go to stdout."""
    from tqdm.auto import tqdm

    assert progress.notebook_bar() is tqdm
    printed = run_epoch(1, {"loss": 0.5, "accuracy": 0.75})
    assert printed.splitlines()[0] == "Epoch 1/2" and len(printed.splitlines()) == 2
    assert "0/25" in capsys.readouterr().err  # tqdm's own bar, on its own stream


def test_fit_in_a_notebook_prints_two_lines_per_epoch(in_a_notebook, monkeypatch):
    from cnn_torch import fit

    monkeypatch.setattr(progress, "notebook_bar", lambda: FakeBar)
    images, labels = torch.rand(40, 1, 2, 2), torch.arange(40) % 2
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        fit(model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters()), images, labels, epochs=2,
            batch_size=8, verbose="auto")  # fmt: skip
    lines = ESCAPES.sub("", out.getvalue()).splitlines()
    assert [line.split(" ")[0] for line in lines] == ["Epoch", "5/5", "Epoch", "5/5"]
    assert [bar.n for bar in FakeBar.made] == [5, 5]
