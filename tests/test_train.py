"""The built-in train function, run in-process (no Ray)."""

import functools

import pytest

from caviar import session
from caviar.train.data import load
from caviar.train.loop import train


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def run(data, config, checkpoint=None):
    fn = functools.partial(train, data=data, model="mlp")
    s = session.Session("val_acc", checkpoint=checkpoint)
    return session.run(fn, config, s)


def test_data_split_is_fixed_and_standardized(digits):
    again = load("digits")
    assert (digits.x_val == again.x_val).all()
    assert abs(digits.x_train.mean()) < 1e-3
    assert len(digits.x_train) + len(digits.x_val) + len(digits.x_test) == 1797


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_learns_digits(digits, optimizer):
    config = {"max_epochs": 5, "optimizer": optimizer, "lr": 0.05 if optimizer == "sgd" else 3e-3}
    results = run(digits, config).results
    assert [r["epoch"] for r in results] == [1, 2, 3, 4, 5]
    assert results[-1]["val_acc"] > 0.85
    assert set(results[-1]) >= {"train_loss", "val_loss", "val_acc", "lr", "samples_per_s"}


def test_resume_from_checkpoint_gives_the_same_numbers(digits):
    config = {"max_epochs": 4, "dropout": 0.2, "batch_size": 32}
    straight = run(digits, config).results
    first_half = run(digits, {**config, "max_epochs": 2})
    resumed = run(digits, config, checkpoint=first_half.get_checkpoint()).results
    assert [r["epoch"] for r in resumed] == [3, 4]
    for a, b in zip(straight[2:], resumed, strict=True):
        assert a["val_loss"] == b["val_loss"] and a["train_loss"] == b["train_loss"]


def test_huge_learning_rate_diverges(digits):
    results = run(
        digits, {"max_epochs": 10, "optimizer": "sgd", "lr": 1e6, "momentum": 0.99}
    ).results
    assert results[-1]["diverged"] is True
    assert len(results) < 10


@pytest.fixture(scope="module")
def synthetic():
    return load("synthetic")


KNOBS = [
    {"optimizer": "sgd", "momentum": 0.9, "nesterov": True},
    {"optimizer": "adam", "beta1": 0.8, "beta2": 0.99, "eps": 1e-6},
    {"optimizer": "adamw", "weight_decay": 0.01},
    {"schedule": "step", "step_epochs": 1, "gamma": 0.5},
    {"schedule": "cosine", "warmup_epochs": 0.5},
    {"schedule": "plateau", "plateau_patience": 0},
    {"schedule": "onecycle"},
    {"lr_scaling": "linear", "base_batch_size": 32},
    {"lr_scaling": "sqrt", "base_batch_size": 256},
    {"batch_norm": True, "activation": "gelu", "init": "kaiming"},
    {"activation": "tanh", "init": "xavier", "dropout": 0.3},
    {"activation": "leaky_relu", "init": "kaiming", "depth": 3},
    {"label_smoothing": 0.1},
    {"mixup_alpha": 0.4},
    {"clip_norm": 1.0},
    {"clip_value": 0.1},
    {"accumulate": 3},
    {"precision": "bf16"},
    {"patience": 1},
]


@pytest.mark.parametrize("knob", KNOBS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_each_knob_builds_and_trains(synthetic, knob):
    results = run(synthetic, {"max_epochs": 2, "hidden": 32, **knob}).results
    assert results[-1]["train_loss"] < 2.0 and not results[-1]["diverged"]
    assert 0 < results[-1]["test_acc"] <= 1


@pytest.mark.parametrize("shape, task", [((40,), "mnist1d"), ((8, 8), "digits")])
def test_cnn_on_sequences_and_images(digits, shape, task):
    import numpy as np

    from caviar.train.data import split

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, *shape))
    y = (x.reshape(200, -1).mean(1) > 0).astype(int)
    data = split(x, y, None, None, 0, shape)
    fn = functools.partial(train, data=data, model="cnn")
    config = {"max_epochs": 2, "channels": 8, "depth": 3, "batch_norm": True, "pool": "avg"}
    results = session.run(fn, config, session.Session("val_acc")).results
    assert len(results) == 2 and results[-1]["val_acc"] > 0


def test_schedule_shapes():
    from caviar.train import DEFAULTS
    from caviar.train.optim import Schedule

    hp = {**DEFAULTS, "lr": 1.0, "max_epochs": 10}
    cosine = Schedule({**hp, "schedule": "cosine", "warmup_epochs": 1}, 10)
    assert cosine.lr(0) == pytest.approx(0.1) and cosine.lr(9) == pytest.approx(1.0)
    assert cosine.lr(55) == pytest.approx(0.5, abs=0.02) and cosine.lr(99) < 0.01
    step = Schedule({**hp, "schedule": "step", "step_epochs": 3, "gamma": 0.1}, 10)
    assert [step.lr(s) for s in (0, 29, 30, 60)] == pytest.approx([1, 1, 0.1, 0.01])
    one = Schedule({**hp, "schedule": "onecycle"}, 10)
    assert (
        one.lr(0) == pytest.approx(0.04) and one.lr(30) == pytest.approx(1.0) and one.lr(99) < 1e-3
    )
    plateau = Schedule({**hp, "schedule": "plateau", "plateau_patience": 1, "gamma": 0.5}, 10)
    for loss in (1.0, 1.0, 1.0):
        plateau.end_epoch(loss)
    assert plateau.lr(0) == 0.5
    scaled = Schedule({**hp, "lr_scaling": "sqrt", "batch_size": 256, "base_batch_size": 64}, 10)
    assert scaled.lr(0) == pytest.approx(2.0)


def test_early_stopping_with_patience(synthetic):
    results = run(synthetic, {"max_epochs": 30, "patience": 2, "lr": 0.05}).results
    assert len(results) < 30
    best = max(r["val_acc"] for r in results)
    assert all(r["val_acc"] <= best for r in results[-2:])


def test_lr_find_suggests_a_learning_rate_inside_the_tested_range():
    from caviar.train.lr_find import lr_find

    result = lr_find(load("mnist1d"), "mlp", {"optimizer": "adamw", "hidden": 128})
    assert 1e-7 < result.low < result.suggestion < result.high < 1.0
    assert 1e-4 <= result.suggestion <= 0.1  # where AdamW MLPs train on mnist1d
    assert min(result.losses) < result.losses[0]
    assert result.spec_line().startswith("lr: {loguniform: [")
