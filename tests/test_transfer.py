"""The sibling lesson's transfer-learning model (cnn_torch/keras_rules/transfer.py): Keras's counts, the
frozen base's inference mode, resize_with_pad, the weights download's failure, reused features.
All with ``weights=None``: the tests need no network."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from torch import nn

from cnn_torch import fit
from cnn_torch.cli import flags as cli
from cnn_torch.errors import UserError
from cnn_torch.evaluation import predict
from cnn_torch.keras_rules import transfer
from cnn_torch.models import build_model, count_params, trainable_params

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("densenet121_transfer", weights=None)


def test_counts_are_the_lessons_and_keras(model):
    """The lesson's summary: 7,093,360 parameters, 53,808 trainable. Keras's own model, built
    from the lesson's code on Keras 3 (without its ImageNet weights), counts the same."""
    keras = pytest.importorskip("keras")
    assert (count_params(model), trainable_params(model)) == (7_093_360, 53_808)
    inputs = keras.Input((32, 32, 3))
    upscale = keras.layers.Resizing(160, 160, pad_to_aspect_ratio=True)(inputs)  # resize_with_pad's stand-in
    base_model = keras.applications.DenseNet121(include_top=False, pooling="max", weights=None,
                                                input_tensor=upscale, input_shape=(160, 160, 3))
    base_model.trainable = False
    out = keras.layers.Flatten()(base_model.output)
    out = keras.layers.BatchNormalization()(out)
    out = keras.layers.Dense(50, activation="relu")(out)
    out = keras.layers.Dropout(0.5)(out)
    out = keras.layers.Dense(10)(out)
    keras_model = keras.models.Model(inputs=inputs, outputs=out)
    keras_trainable = sum(int(w.numpy().size) for w in keras_model.trainable_weights)
    assert (keras_model.count_params(), keras_trainable) == (count_params(model), trainable_params(model))
    assert count_params(model.base) == base_model.count_params() == 7_037_504  # the base alone


def batch_norm_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k}


def test_fit_trains_the_head_and_leaves_the_base_as_it_was():
    """Keras's trainable=False: in fit, the base's weights get no update AND its batch
    normalisations keep their moving statistics (inference mode); the head's weights and its
    own BatchNormalization's statistics move."""
    torch.manual_seed(1)
    model = build_model("densenet121_transfer", weights=None, num_classes=3)
    base_before = {k: v.clone() for k, v in model.base.state_dict().items()}
    head = nn.Sequential(*list(model)[1:])
    head_before = {k: v.clone() for k, v in head.state_dict().items()}
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(8) % 3
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad])
    fit(model, nn.CrossEntropyLoss(), optimizer, images, labels, epochs=1, batch_size=4, verbose=0, device="cpu")
    assert model.training and not model.base.training
    assert not any(m.training for m in model.base.modules())
    assert all(torch.equal(v, base_before[k]) for k, v in model.base.state_dict().items())
    head_after = head.state_dict()
    assert not torch.equal(head_after["2.weight"], head_before["2.weight"])  # Dense(50)
    assert not torch.equal(head_after["1.running_var"], head_before["1.running_var"])  # the head's BN trains
    assert all(p.grad is None for p in model.base.parameters())


def test_eval_and_train_switch_the_head_only(model):
    dropout = model[-2]
    assert isinstance(dropout, nn.Dropout) and dropout.p == 0.5
    model.eval()
    assert not model.training and not dropout.training
    model.train()
    assert dropout.training and not model.base.training  # fit's model.train() leaves the base in eval


def test_resize_with_pad_is_tensorflows():
    """tf.image.resize_with_pad: keep the aspect ratio, fit inside 160x160, zeros around, the
    image in the middle. A 16x32 image of ones becomes 80x160 of ones with 40 zero rows above
    and below; 30x50 becomes 96x160 with 32 rows above. A square image is plain bilinear
    (half-pixel centres, no antialiasing: TensorFlow's default resize)."""
    resize = transfer.ResizeWithPad((160, 160))
    out = resize(torch.ones(2, 3, 16, 32))
    assert out.shape == (2, 3, 160, 160)
    # ones, to float32 rounding: on one thread torch's bilinear kernel may give 1 - 2**-23
    torch.testing.assert_close(out[:, :, 40:120], torch.ones(2, 3, 80, 160), rtol=0, atol=2**-23)
    assert out[:, :, :40].abs().sum() == 0 and out[:, :, 120:].abs().sum() == 0
    out = resize(torch.ones(1, 1, 30, 50))
    rows = out[0, 0, :, 80] > 0
    assert rows.sum() == 96 and rows.nonzero().min() == 32
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = nn.functional.interpolate(x, size=(160, 160), mode="bilinear", align_corners=False, antialias=False)
    torch.testing.assert_close(resize(x), expected)
    # by hand: upsampling 2 -> 4 with half-pixel centres puts 3/4 and 1/4 weights on the neighbours
    rows = transfer.ResizeWithPad((2, 4))(torch.tensor([[[[0.0, 4.0]]]]))  # 1x2 -> 2x4, no padding
    torch.testing.assert_close(rows, torch.tensor([[[[0.0, 1.0, 3.0, 4.0], [0.0, 1.0, 3.0, 4.0]]]]))
    padded = transfer.ResizeWithPad((1, 4))(torch.tensor([[[[2.0, 4.0]]]]))  # already fits: centred, zeros beside
    torch.testing.assert_close(padded, torch.tensor([[[[0.0, 2.0, 4.0, 0.0]]]]))


def test_missing_network_names_the_file_and_the_fix(monkeypatch):
    import torchvision.models

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models, "densenet121", offline)
    with pytest.raises(UserError, match=r"densenet121-a639ec97\.pth.*checkpoints.*--weights none") as error:
        build_model("densenet121_transfer")
    assert "\n" not in str(error.value)


def test_weights_come_from_torchvisions_weights_api(monkeypatch):
    """The download path itself (run offline here): torchvision's DenseNet121_Weights.IMAGENET1K_V1."""
    import torchvision.models

    asked = {}

    def fake(weights=None, progress=True):
        asked["weights"] = weights
        return torchvision.models.DenseNet(32, (6, 12, 24, 16), 64)  # densenet121's shape, random

    monkeypatch.setattr(torchvision.models, "densenet121", fake)
    model = build_model("densenet121_transfer")
    assert asked["weights"] is torchvision.models.DenseNet121_Weights.IMAGENET1K_V1
    assert model.model_kwargs["weights"] == "imagenet"


def test_features_are_computed_once_per_image_without_augmentation():
    """Frozen and unaugmented: the second pass over the same images runs no DenseNet layer and
    gives the same outputs; with augmentation, or an unfrozen base, nothing is reused."""
    torch.manual_seed(2)
    model = build_model("densenet121_transfer", weights=None).eval()
    calls = []
    model.base[1].register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    first = predict(model, images, batch_size=4)
    second = predict(model, images, batch_size=4)  # the same batches: the head rounds alike
    assert calls == [4, 2] and torch.equal(first, second)
    model.base.requires_grad_(True)  # a learner unfreezes the base: features change with training
    predict(model, images[:2])
    assert calls == [4, 2, 2]
    augmented = build_model("densenet121_transfer", weights=None, augment=["flip"], augment_seed=0)
    assert augmented.base.reuse_features is False


def test_checkpoint_round_trip_rebuilds_the_same_model(model):
    rebuilt = build_model(model.model_name, **model.model_kwargs)
    rebuilt.load_state_dict(model.state_dict())
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(predict(rebuilt, images), predict(model, images))


def test_command_line_takes_the_lessons_early_stopping():
    from cnn_torch.cli import train as train_script

    args = train_script.parse_args(["--model", "densenet121_transfer", "--weights", "none"])
    assert (args.monitor, args.patience, args.weights) == ("val_accuracy", 5, "none")
    assert cli.layer_options(args, seed=1) == {"weights": None}
    args = train_script.parse_args(["--model", "densenet121_transfer", "--monitor", "val_loss", "--patience", "2"])
    assert (args.monitor, args.patience) == ("val_loss", 2)
    assert train_script.parse_args([]).monitor == "val_loss"
    with pytest.raises(UserError, match="leave out --batch-norm"):
        cli.check_overfitting_flags(train_script.parse_args(["--model", "densenet121_transfer", "--batch-norm"]))
    with pytest.raises(UserError, match="leave out --weights"):
        cli.check_overfitting_flags(train_script.parse_args(["--weights", "none"]))


def test_a_checkpoint_rebuilds_without_downloading(model, monkeypatch):
    """Resume, evaluate.py and predict.py rebuild the model from its checkpoint, whose state_dict
    already holds the pretrained base: no download, offline too; the rebuilt model still says
    it is the ImageNet one."""
    import torchvision.models

    from cnn_torch.checkpoints import make_checkpoint, model_from_checkpoint
    from cnn_torch.history import History

    model.model_kwargs["weights"] = "imagenet"  # as a model built with weights="imagenet" records it
    checkpoint = make_checkpoint(model, class_names=[str(i) for i in range(10)], epoch=1, history=History())
    model.model_kwargs["weights"] = None

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models, "densenet121", lambda weights=None, progress=True: (
        offline() if weights is not None else torchvision.models.DenseNet(32, (6, 12, 24, 16), 64)))
    rebuilt = model_from_checkpoint(checkpoint)
    assert rebuilt.model_kwargs["weights"] == "imagenet"
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(predict(rebuilt, images), predict(model, images))


# --- the kept features: looked up by where the batch came from, dropped when what they depend on changes ---


def densenet_calls(model) -> list[int]:
    """The batch sizes DenseNet's layers run on, from now on."""
    calls: list[int] = []
    model.base[1].register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    return calls


def test_kept_features_are_the_features_computed_without_them():
    """The same batches give identical outputs with and without the reuse, first pass and second."""
    torch.manual_seed(5)
    model = build_model("densenet121_transfer", weights=None).eval()
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    calls = densenet_calls(model)
    first, second = predict(model, images, batch_size=4), predict(model, images, batch_size=4)
    assert calls == [4, 2]  # the second pass ran no DenseNet layer
    model.base.reuse_features = False
    without = predict(model, images, batch_size=4)
    assert torch.equal(first, without) and torch.equal(second, without)


def test_load_state_dict_drops_the_kept_features():
    """Other weights loaded after an epoch (a checkpoint, EarlyStopping's best weights): the outputs
    are the new weights', not features kept from the old ones."""
    torch.manual_seed(6)
    model, other = (build_model("densenet121_transfer", weights=None, num_classes=3) for _ in range(2))
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    labels = torch.arange(6) % 3
    fit(model, nn.CrossEntropyLoss(), "adam", images, labels, epochs=1, batch_size=3, verbose=0, device="cpu",
        validation_data=(images, labels))  # fmt: skip
    model.load_state_dict(other.state_dict())
    torch.testing.assert_close(predict(model, images), predict(other, images), rtol=0, atol=0)


def test_edited_weights_or_images_drop_the_kept_features():
    """An in-place edit of a base weight, or of the images, is seen from the version counters."""
    torch.manual_seed(7)
    model = build_model("densenet121_transfer", weights=None).eval()
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    calls = densenet_calls(model)
    predict(model, images)
    with torch.no_grad():
        model.base[1].conv0.weight.mul_(0.5)  # a learner's edit of the frozen base
    after_edit = predict(model, images)
    images[0] = 1.0 - images[0]  # the pixels change in place
    after_new_pixels = predict(model, images)
    assert calls == [4, 4, 1]  # all four again with the new weights; then only the edited image
    model.base.reuse_features = False
    # the same numbers up to float rounding: the edited image's features came from a batch of one
    torch.testing.assert_close(after_new_pixels, predict(model, images))
    assert not torch.equal(after_edit, after_new_pixels)
    model.base.reuse_features = True
    predict(model, images, device="cpu")  # evaluate and predict call model.to(device): where it is, a no-op
    assert calls == [4, 4, 1, 4] and len(model.base._features) == 5  # kept while reuse_features was off
    model.base.double()  # weights in new storage: the float32 features go at the next step
    with torch.no_grad():
        model.base(images[:2].double())
    assert calls == [4, 4, 1, 4, 2] and len(model.base._features) == 2


def test_off_the_cpu_nothing_is_kept_and_no_pixel_is_read(monkeypatch):
    """On another device (a GPU; here the meta device) every batch is computed: looking features up
    by their bytes would copy each batch to the CPU, a wait for the GPU at every step."""
    base = build_model("densenet121_transfer", weights=None).base.to("meta")

    def refused(*args, **kwargs):
        raise AssertionError("the base read the batch's pixels")

    monkeypatch.setattr(transfer.hashlib, "blake2b", refused)
    for name in ("cpu", "item", "tolist", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, refused)
    with torch.no_grad():
        features = base(torch.empty(3, 3, 32, 32, device="meta"))
    assert features.shape == (3, 1024, 1, 1) and base._features == {}


def test_fit_computes_each_images_features_once():
    """Without augmentation, fit's later epochs (training and validation) run no DenseNet layer."""
    torch.manual_seed(9)
    model = build_model("densenet121_transfer", weights=None, num_classes=3)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    val_images = images.flip(0).contiguous()
    calls = densenet_calls(model)
    fit(model, nn.CrossEntropyLoss(), "adam", images, torch.arange(6) % 3, epochs=3, batch_size=4, verbose=0,
        device="cpu", validation_data=(val_images, torch.arange(6) % 3))  # fmt: skip
    # fit's check of the model's output shape on 2 images, then the first epoch's batches: each of the 6
    # images once (the validation images are the same pictures in another order); the later epochs: none
    assert sum(calls) == 6 and len(model.base._features) == 6
