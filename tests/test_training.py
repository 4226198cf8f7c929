"""Reference checks for ``fit``: its History equals a hand computation, and its behaviour
matches Keras's (partial last batch, pre-update metrics, eval-mode validation)."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from cnn_torch import EarlyStopping, History, UserError, evaluate, fit, models, predict


def tiny_model(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, num_classes))


def tiny_data(n: int = 10, num_classes: int = 3, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 8, 8, generator=generator)
    labels = torch.randint(0, num_classes, (n,), generator=generator)
    return images, labels


def test_history_equals_a_hand_computation_with_a_partial_last_batch():
    images, labels = tiny_data(10)
    val_images, val_labels = tiny_data(7, seed=2)
    model, reference = tiny_model(), tiny_model()
    loss_fn = nn.CrossEntropyLoss()
    history = fit(
        model, loss_fn, torch.optim.SGD(model.parameters(), lr=0.1), images, labels,
        epochs=2, batch_size=4, validation_data=(val_images, val_labels),
        validation_batch_size=3, shuffle=False, verbose=0,
    )
    # the same thing by hand: batches of 4, 4 and 2 (the partial last batch is kept)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    expected = {"accuracy": [], "loss": [], "val_accuracy": [], "val_loss": []}
    for _ in range(2):
        losses, sizes, correct = [], [], 0
        for start in range(0, 10, 4):
            x, y = images[start : start + 4], labels[start : start + 4]
            logits = reference(x)
            loss = loss_fn(logits, y)
            correct += (logits.argmax(1) == y).sum().item()  # pre-update predictions
            losses.append(loss.item())
            sizes.append(len(y))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        expected["loss"].append(sum(batch_loss * size for batch_loss, size in zip(losses, sizes, strict=True)) / 10)
        expected["accuracy"].append(correct / 10)
        with torch.no_grad():
            val_logits = reference(val_images)
        expected["val_loss"].append(loss_fn(val_logits, val_labels).item())
        expected["val_accuracy"].append((val_logits.argmax(1) == val_labels).float().mean().item())
    assert list(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]  # Keras 3 order
    for key, values in expected.items():
        assert history.history[key] == pytest.approx(values, rel=1e-6), key
    assert history.epoch == [0, 1]
    assert history.params == {"verbose": 0, "epochs": 2, "steps": 3}


def test_no_val_keys_without_validation_data():
    images, labels = tiny_data(8)
    model = tiny_model()
    history = fit(model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1), images, labels, verbose=0)
    assert list(history.history) == ["accuracy", "loss"]


def test_one_batch_can_be_overfit():
    images, labels = tiny_data(8)
    model = tiny_model()
    history = fit(
        model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=0.01), images, labels,
        epochs=60, batch_size=8, verbose=0,
    )
    assert history.history["loss"][-1] < 0.05 < history.history["loss"][0]
    assert history.history["accuracy"][-1] == 1.0


def test_dropout_is_off_during_validation():
    images, labels = tiny_data(16)
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.9), nn.Linear(3 * 8 * 8, 3))
    history = fit(
        model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.0), images, labels,
        epochs=1, validation_data=(images, labels), verbose=0,
    )
    # lr 0: the weights never change, so eval-mode validation must equal a plain eval forward
    model.eval()
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(images), labels).item()
    assert history.history["val_loss"][0] == pytest.approx(expected, rel=1e-6)
    assert history.history["loss"][0] != pytest.approx(expected, rel=1e-3)  # training used dropout


def test_seeded_runs_repeat_exactly_and_seeds_differ():
    images, labels = tiny_data(40)

    def run(seed):
        model = models.model_dropout(num_classes=3, input_shape=(3, 20, 20))
        torch.manual_seed(123)  # the dropout masks come from torch's global RNG
        return fit(
            model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters()),
            nn.functional.interpolate(images, size=20), labels,
            epochs=2, batch_size=8, validation_split=0.25, seed=seed, verbose=0,
        ).history

    torch.manual_seed(0)
    first = run(5)
    torch.manual_seed(0)
    assert run(5) == first
    torch.manual_seed(0)
    assert run(6) != first


def test_uint8_images_are_scaled_like_the_lesson():
    images, labels = tiny_data(12)
    pixels = (images * 255).round().to(torch.uint8)
    results = []
    for data in (pixels, pixels.float() / 255.0):
        model = tiny_model()
        results.append(
            fit(model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1), data, labels,
                epochs=2, batch_size=5, shuffle=False, verbose=0).history
        )
    for key in results[0]:
        assert results[0][key] == pytest.approx(results[1][key], rel=1e-6)


def test_validation_split_takes_the_last_fraction_before_shuffling():
    images, labels = tiny_data(10)
    model = tiny_model()
    history = fit(model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.0), images, labels,
                  validation_split=0.25, verbose=0)
    # floor(10 * 0.75) = 7 training samples, the last 3 validate
    assert history.params["steps"] == 1
    assert history.history["val_loss"][0] == pytest.approx(evaluate(model, images[7:], labels[7:])[0], rel=1e-6)


def test_evaluate_and_predict_equal_a_hand_computation():
    images, labels = tiny_data(11)
    model = tiny_model()
    loss, accuracy = evaluate(model, images, labels, batch_size=4)
    with torch.no_grad():
        logits = model(images)
    assert loss == pytest.approx(nn.functional.cross_entropy(logits, labels).item(), rel=1e-6)
    assert accuracy == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    assert torch.allclose(predict(model, images, batch_size=4), logits, atol=1e-6)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda x, y: (x.permute(0, 2, 3, 1), y), "channels-last"),
        (lambda x, y: (x, nn.functional.one_hot(y, 3) * 2), "not one-hot"),
        (lambda x, y: (x, y + 5), "outside [0, 3)"),
        (lambda x, y: (x, y[:-1]), "one label per image"),
    ],
)
def test_learner_mistakes_get_a_message_naming_the_fix(change, message):
    images, labels = change(*tiny_data(8))
    model = tiny_model()
    with pytest.raises(UserError, match=re.escape(message)):
        fit(model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1), images, labels, verbose=0)


def test_a_model_that_outputs_probabilities_is_caught():
    images, labels = tiny_data(8)
    model = nn.Sequential(tiny_model(), nn.Softmax(dim=1))
    with pytest.raises(UserError, match="pass logits to CrossEntropyLoss"):
        fit(model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1), images, labels, verbose=0)


@pytest.mark.parametrize("kwargs, message", [({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"),
                                              ({"validation_split": 1.5}, "validation_split")])
def test_bad_arguments(kwargs, message):
    images, labels = tiny_data(8)
    model = tiny_model()
    with pytest.raises(UserError, match=message):
        fit(model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters()), images, labels, verbose=0, **kwargs)


def test_early_stopping_stops_and_restores_in_fit():
    images, labels = tiny_data(12)
    model = tiny_model()
    stopper = EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    # a huge learning rate makes val_loss get worse after the first epoch
    history = fit(model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=50.0), images, labels,
                  epochs=10, validation_data=(images, labels), early_stopping=stopper, verbose=0)
    assert len(history.epoch) < 10
    best = min(range(len(history.epoch)), key=lambda e: history.history["val_loss"][e])
    assert evaluate(model, images, labels)[0] == pytest.approx(history.history["val_loss"][best], rel=1e-5)


def test_history_is_a_dataframe_source():
    pd = pytest.importorskip("pandas")
    history = History()
    history.append(0, {"loss": 1.0, "accuracy": 0.5})
    frame = pd.DataFrame.from_dict(history.history)
    assert list(frame.columns) == ["accuracy", "loss"] and frame.shape == (1, 2)
