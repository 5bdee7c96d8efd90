"""Built-in data sets as numpy arrays: fixed-seed train / val / test splits, standardized with
training statistics. Pure numpy, so the driver can build a data set once and share it through
Ray's object store."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VAL_FRACTION = 0.2


@dataclass(frozen=True)
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    """Never used to pick trials; only to score a trial's best checkpoint."""
    y_test: np.ndarray
    num_classes: int

    @property
    def num_features(self) -> int:
        return int(np.prod(self.x_train.shape[1:]))


def load(task: str, seed: int = 0) -> Data:
    """The named built-in data set, split with `seed`."""
    if task == "mnist1d":
        x, y, x_test, y_test = _mnist1d()
    elif task == "digits":
        x, y, x_test, y_test = _digits(seed)
    else:
        raise ValueError(f"unknown task {task!r}")
    return split(x, y, x_test, y_test, seed)


def split(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int) -> Data:
    """Hold out VAL_FRACTION of (x, y) for validation and standardize with train statistics."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * VAL_FRACTION))
    val, tr = order[:n_val], order[n_val:]
    mean, std = x[tr].mean(axis=0), x[tr].std(axis=0) + 1e-8

    def norm(a: np.ndarray) -> np.ndarray:
        return ((a - mean) / std).astype(np.float32)

    return Data(
        norm(x[tr]), y[tr].astype(np.int64), norm(x[val]), y[val].astype(np.int64),
        norm(x_test), y_test.astype(np.int64), int(max(y.max(), y_test.max()) + 1),
    )


def _mnist1d() -> tuple[np.ndarray, ...]:
    # make_dataset generates offline; get_dataset would download.
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    return d["x"], d["y"], d["x_test"], d["y_test"]


def _digits(seed: int) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed + 1).permutation(len(x))
    n_test = len(x) // 5
    test, rest = order[:n_test], order[n_test:]
    return x[rest], y[rest], x[test], y[test]
