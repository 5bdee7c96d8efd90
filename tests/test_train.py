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
    for a, b in zip(straight[2:], resumed):
        assert a["val_loss"] == b["val_loss"] and a["train_loss"] == b["train_loss"]


def test_huge_learning_rate_diverges(digits):
    results = run(digits, {"max_epochs": 10, "optimizer": "sgd", "lr": 1e6, "momentum": 0.99}).results
    assert results[-1]["diverged"] is True
    assert len(results) < 10
