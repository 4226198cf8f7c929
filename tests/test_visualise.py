"""What the network sees (cnn_torch/visualise.py): filters, hook-captured feature maps and
attribution maps, checked against computations by hand; the notebooks' helpers
(cnn_torch/workshop.py); save_model / load_model; the --visualise flag of the scripts."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from conftest import cli_module
from torch import nn

from cnn_torch import fit, models, workshop
from cnn_torch.checkpoints import load_checkpoint, load_model, save_model
from cnn_torch.errors import UserError
from cnn_torch.visualise import (
    CAPTUM_MISSING,
    attribution_maps,
    feature_maps,
    first_layer_filters,
    gradcam_layer,
    show_attributions,
    show_feature_maps,
    show_filters,
    watched_layers,
)

ROOT = Path(__file__).resolve().parents[1]
LESSON_MODELS = ["model_intro", "cifar_model_small", "cifar_model", "model_dropout"]


def images(count: int, seed: int = 0, size: tuple[int, int] = (32, 32)) -> torch.Tensor:
    return torch.randint(0, 256, (count, 3, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def summary_rows(model: nn.Module) -> dict[str, str]:
    """``{"conv2d (Conv2D)": "(None, 16, 30, 30)", ...}`` from the printed ``models.summary``."""
    out = io.StringIO()
    models.summary(model, file=out)
    return dict(re.findall(r"^ (\S+ \(\w+\))\s+(\(None[^)]*\))", out.getvalue(), flags=re.M))


def shape_text(shape) -> str:
    return "(None, " + ", ".join(str(n) for n in shape) + ")"


# --- feature maps -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LESSON_MODELS)
def test_feature_maps_have_the_summarys_layer_names_and_output_shapes(name):
    torch.manual_seed(0)
    model = models.build_model(name)
    rows = summary_rows(model)
    maps = feature_maps(model, images(1)[0])
    convolutions = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    poolings = sum(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert len(maps) == convolutions + poolings
    for label, caught in maps.items():
        assert label in rows, (label, rows)  # "conv2d (Conv2D)": Keras's name, its activation's output is the map
        assert shape_text(caught.shape) == rows[label], label


def test_feature_maps_are_the_layers_outputs_computed_by_hand():
    torch.manual_seed(1)
    model = models.cifar_model_small()
    image = images(1, seed=2)[0]
    maps = feature_maps(model, image)
    x = image.float().unsqueeze(0) / 255.0
    conv1 = torch.relu(model[0](x))
    pool1 = F.max_pool2d(conv1, 2)
    conv2 = torch.relu(model[3](pool1))
    pool2 = F.max_pool2d(conv2, 2)
    expected = {"conv2d (Conv2D)": conv1, "max_pooling2d (MaxPooling2D)": pool1, "conv2d_1 (Conv2D)": conv2,
                "max_pooling2d_1 (MaxPooling2D)": pool2}  # fmt: skip
    assert list(maps) == list(expected)
    for label, value in expected.items():
        # same operations on the same numbers; only the memory layout (channels-last on the CPU) may
        # change the order of the convolution's sums, a few float32 roundings
        torch.testing.assert_close(maps[label], value[0].detach(), rtol=1e-5, atol=1e-6)


def test_looking_leaves_the_model_as_it_was():
    model = models.model_dropout()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    maps = feature_maps(model, images(1)[0])
    first = feature_maps(model, images(1)[0])
    assert model.training, "the model's train mode must come back"
    assert all(not m._forward_hooks for m in model.modules()), "every hook must be removed"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for label in maps:  # eval mode inside: dropout off, so the same image gives the same maps
        assert torch.equal(maps[label], first[label])


def test_a_convolution_without_an_activation_is_watched_itself():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 15 * 15, 2))  # fmt: skip
    assert [label for label, _ in watched_layers(model)] == ["conv2d (Conv2D)", "max_pooling2d (MaxPooling2D)"]
    maps = feature_maps(model, images(1)[0])
    assert maps["conv2d (Conv2D)"].shape == (4, 30, 30) and maps["max_pooling2d (MaxPooling2D)"].shape == (4, 15, 15)


def test_feature_maps_take_one_image():
    with pytest.raises(UserError, match="one image"):
        feature_maps(models.model_intro(), images(2))


# --- filters ------------------------------------------------------------------------------------


def test_first_layer_filters_on_one_scale_with_grey_for_zero():
    torch.manual_seed(3)
    model = models.model_intro()
    with torch.no_grad():
        model[0].weight[5] = 0.0  # filter 5: all zero
    name, filters = first_layer_filters(model)
    weights = model[0].weight.detach()
    assert name == "conv2d (Conv2D)" and filters.shape == (16, 3, 3, 3)
    assert torch.all(filters[5] == 0.5)
    largest = weights.abs().max()
    torch.testing.assert_close(filters, weights / (2 * largest) + 0.5)
    assert filters.min() >= 0 and filters.max() <= 1 and {0.0, 1.0} & {filters.min().item(), filters.max().item()}


@pytest.mark.parametrize("name, count", [("model_intro", 16), ("cifar_model_small", 50)])
def test_show_filters_draws_one_image_per_filter(name, count):
    figure = show_filters(models.build_model(name), columns=8)
    drawn = [ax for ax in figure.axes if ax.get_images()]
    assert len(drawn) == count
    assert len(figure.axes) == 8 * -(-count // 8)  # full rows of 8
    assert drawn[0].get_images()[0].get_array().shape == (3, 3, 3)  # 3x3 pixels, RGB
    assert f"The {count} filters" in figure._suptitle.get_text() and "conv2d (Conv2D)" in figure._suptitle.get_text()
    matplotlib.pyplot.close(figure)


def test_show_feature_maps_labels_every_row_with_the_summarys_names():
    model = models.cifar_model_small()
    figure = show_feature_maps(model, images(1)[0], [f"class {i}" for i in range(10)], label=3, channels=8)
    titles = [ax.get_title(loc="left") for ax in figure.axes if ax.get_title(loc="left")]
    assert [t.split(":")[0] for t in titles] == list(feature_maps(model, images(1)[0]))
    assert "50 x 30 x 30" in titles[0] and "the 8 most active channels" in titles[0]
    first_title = figure.axes[0].get_title()
    assert "true: class 3" in first_title and "predicted: class" in first_title
    assert len([ax for ax in figure.axes if ax.get_images()]) == 4 * 9  # each row: the image and 8 maps
    matplotlib.pyplot.close(figure)


# --- attribution --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    """cifar_model_small after one epoch on 96 shapes images: weights a few steps from their start."""
    torch.manual_seed(4)
    train_ds, _, test_ds = workshop.prepare_datasets("shapes", limit=120, seed=4)
    model = models.cifar_model_small()
    fit(model, nn.CrossEntropyLoss(), "adam", train_ds.images, train_ds.labels, epochs=1, seed=4, verbose=0)
    return model, test_ds


def gradcam_by_hand(model: nn.Module, batch: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Grad-CAM as its paper writes it: the last convolution's rectified maps A_k, weighted by
    the spatial mean of d(score of the target class)/dA_k, summed over k, clipped at zero, then
    stretched to the image's size (bilinear)."""
    caught = {}
    _, layer = gradcam_layer(model)
    handle = layer.register_forward_hook(lambda module, inputs, output: caught.update(maps=output))
    model.eval()
    scores = model(batch.float() / 255.0)
    handle.remove()
    maps = caught["maps"]
    gradients = torch.autograd.grad(scores.gather(1, targets[:, None]).sum(), maps)[0]
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * maps).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size=batch.shape[2:], mode="bilinear", align_corners=False)[:, 0].detach()


def test_gradcam_equals_the_papers_formula(trained):
    pytest.importorskip("captum")
    model, test_ds = trained
    batch = test_ds.images[:6]
    predicted = model.eval()(batch.float() / 255.0).argmax(dim=1)
    maps = attribution_maps(model, batch)  # default: explain the predicted class
    assert maps.shape == (6, 32, 32) and maps.min() >= 0 and maps.amax(dim=(1, 2)).gt(0).any()
    # same products and sums, summed in another order by Captum: float32 rounding only
    torch.testing.assert_close(maps, gradcam_by_hand(model, batch, predicted), rtol=1e-4, atol=1e-6)
    other = (predicted + 1) % 10  # another class is explained by another map
    assert not torch.allclose(attribution_maps(model, batch, other), maps)


def test_integrated_gradients_per_pixel(trained):
    pytest.importorskip("captum")
    model, test_ds = trained
    maps = attribution_maps(model, test_ds.images[:3], method="integrated_gradients")
    assert maps.shape == (3, 32, 32) and maps.min() >= 0 and maps.sum() > 0
    black = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)  # the baseline itself: nothing to attribute
    assert attribution_maps(model, black, method="integrated_gradients").abs().max() == 0


def test_show_attributions_labels_each_image(trained):
    pytest.importorskip("captum")
    model, test_ds = trained
    names = test_ds.class_names
    figure = show_attributions(model, test_ds.images[:4], test_ds.labels[:4], names)
    assert len(figure.axes) == 3 * 4
    for i in range(4):
        title = figure.axes[i].get_title()
        assert f"true: {names[test_ds.labels[i]]}" in title and "predicted: " in title
    assert 'Grad-CAM at layer "conv2d_1 (Conv2D)"' in figure._suptitle.get_text()
    matplotlib.pyplot.close(figure)


def test_unknown_method_and_missing_captum_are_one_line(monkeypatch):
    model = models.model_intro()
    with pytest.raises(UserError, match="choose one of gradcam, integrated_gradients"):
        attribution_maps(model, images(1), method="saliency")
    monkeypatch.setitem(sys.modules, "captum", None)  # as if not installed: importing it fails
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(UserError) as error:
        attribution_maps(model, images(1))
    assert str(error.value) == CAPTUM_MISSING and "\n" not in CAPTUM_MISSING and "pip install" in CAPTUM_MISSING


# --- the notebooks' helpers and save_model/load_model ---------------------------------------------


def test_prepare_datasets_gives_the_lessons_three_splits():
    train_ds, val_ds, test_ds = workshop.prepare_datasets("shapes", limit=1250, seed=1)
    assert (len(train_ds), len(val_ds), len(test_ds)) == (1000, 250, 250)  # the lesson's 1,000 / 250 / 250
    assert train_ds.images.dtype == torch.uint8 and train_ds.images.shape[1:] == (3, 32, 32)
    assert train_ds.class_names == val_ds.class_names == test_ds.class_names and len(train_ds.class_names) == 10
    with pytest.raises(UserError, match="unknown DATASET"):
        workshop.prepare_datasets("mnist")


def test_image_folders_read_back_the_same_pixels(tmp_path):
    from cnn_torch import data

    splits = dict(zip(["train", "val", "test"], workshop.prepare_datasets("shapes", limit=300, seed=2), strict=True))
    root = workshop.write_image_folders(splits, tmp_path / "images")
    monkey_cache = tmp_path / "cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNN_TORCH_CACHE", str(monkey_cache))
        read = data.load_data("folder", root, seed=2)
    for name, split in splits.items():
        images_read, labels_read = read.split(name)
        # PNG is lossless: every image comes back, with its class (by name: folders sort the classes)
        written = sorted((split.class_names[int(label)], image.flatten().tolist())
                         for image, label in zip(split.images, split.labels, strict=True))  # fmt: skip
        found = sorted((read.class_names[int(label)], image.flatten().tolist())
                       for image, label in zip(images_read, labels_read, strict=True))  # fmt: skip
        assert written == found, name
    assert workshop.write_image_folders(splits, root) == root  # written once
    assert not (tmp_path / "images.partial").exists()


def test_example_image_is_a_new_picture_of_its_shape(tmp_path):
    from PIL import Image

    path = workshop.example_image_file(tmp_path / "mine.png", shape="star", size=(96, 128))
    assert Image.open(path).size == (128, 96)
    with pytest.raises(UserError, match="unknown shape"):
        workshop.example_image_file(tmp_path / "x.png", shape="dog")


def test_save_model_and_load_model_round_trip(tmp_path, trained):
    model, test_ds = trained
    path = save_model(model, tmp_path / "models" / "best.pt", test_ds.class_names)  # the folder is created
    loaded = load_model(path)
    assert not loaded.training and loaded.model_name == "cifar_model_small"
    with torch.no_grad():
        assert torch.equal(loaded(test_ds.images[:4].float() / 255), model.eval()(test_ds.images[:4].float() / 255))
    assert loaded.history.history == model.history.history and load_checkpoint(path)["epoch"] == 1
    assert load_checkpoint(path)["class_names"] == test_ds.class_names
    save_model(loaded, tmp_path / "again.pt", test_ds.class_names)  # a loaded model keeps its history
    assert load_checkpoint(tmp_path / "again.pt")["history"] == load_checkpoint(path)["history"]
    with pytest.raises(UserError, match="state_dict"):
        save_model(nn.Linear(2, 2), tmp_path / "plain.pt", ["a", "b"])


# --- the scripts' --visualise -------------------------------------------------------------------


def test_evaluate_and_predict_draw_what_the_network_sees(tmp_path, capsys, trained):
    pytest.importorskip("captum")
    from PIL import Image

    from cnn_torch.platform.fileio import write_json

    model, test_ds = trained
    run = tmp_path / "run"
    save_model(model, run / "best.pt", test_ds.class_names)
    write_json(run / "run.json", {"seed": 4, "flags": {"dataset": "shapes", "limit": 120}})
    assert cli_module("evaluate").main(["--checkpoint", str(run / "best.pt"), "--json", "--visualise"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [Path(p).name for p in report["what_it_sees"]] == ["run_test_filters.png", "run_test_feature_maps.png",
                                                             "run_test_gradcam.png"]  # fmt: skip
    assert all(Path(p).stat().st_size > 1000 for p in report["what_it_sees"])

    photo = tmp_path / "photo.png"
    Image.fromarray(test_ds.images[0].permute(1, 2, 0).numpy()).save(photo)
    argv = ["--checkpoint", str(run / "best.pt"), str(photo), "--json", "--visualise", "integrated_gradients",
            "--fig-dir", str(tmp_path / "seen")]  # fmt: skip
    assert cli_module("predict").main(argv) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert [Path(p).name for p in result["what_it_sees"]] == ["best_filters.png", "photo_feature_maps.png",
                                                             "photo_integrated_gradients.png"]  # fmt: skip
    assert all(Path(p).parent == tmp_path / "seen" and Path(p).is_file() for p in result["what_it_sees"])


def test_gradcam_at_an_earlier_convolution(trained):
    pytest.importorskip("captum")
    model, test_ds = trained
    batch = test_ds.images[:2]
    targets = torch.tensor([1, 2])
    first = "conv2d (Conv2D)"
    maps = attribution_maps(model, batch, targets, layer=first)
    caught = {}
    handle = model[1].register_forward_hook(lambda module, inputs, output: caught.update(maps=output))
    scores = model.eval()(batch.float() / 255.0)
    handle.remove()
    gradients = torch.autograd.grad(scores.gather(1, targets[:, None]).sum(), caught["maps"])[0]
    by_hand = torch.relu((gradients.mean(dim=(2, 3), keepdim=True) * caught["maps"]).sum(dim=1, keepdim=True))
    by_hand = F.interpolate(by_hand, size=(32, 32), mode="bilinear", align_corners=False)[:, 0].detach()
    torch.testing.assert_close(maps, by_hand, rtol=1e-4, atol=1e-6)
    refused = r"no convolution 'max_pooling2d \(MaxPooling2D\)' for Grad-CAM: choose one of 'conv2d \(Conv2D\)"
    with pytest.raises(UserError, match=refused):
        attribution_maps(model, batch, layer="max_pooling2d (MaxPooling2D)")
