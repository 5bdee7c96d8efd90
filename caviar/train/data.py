"""Data sets as numpy arrays: fixed-seed train / validation / test splits, standardized with
training statistics. Pure numpy, so the driver builds a data set once and shares it with every
trial through Ray's object store.

Tasks: ``mnist1d`` (generated offline), ``digits`` (scikit-learn's 8x8 digits), ``synthetic``
(a seeded Gaussian-mixture classification problem) and ``file`` (a user's .npz with ``x`` and
``y`` arrays, optionally ``x_test`` and ``y_test``; or a Parquet file with one column per
feature and a label column).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

VAL_FRACTION = 0.2
TEST_FRACTION = 0.2  # held out when a task has no test split of its own


class DataError(ValueError):
    """A data file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    """Never used to pick trials; only to score each trial's best checkpoint."""
    y_test: np.ndarray
    num_classes: int
    shape: tuple[int, ...]
    """One example's shape: (40,) for mnist1d sequences, (8, 8) for digits images."""
    mean: np.ndarray
    """Per-feature training mean and standard deviation: every split is (x - mean) / std,
    and an exported model applies them to raw inputs."""
    std: np.ndarray


def load(task: str, seed: int = 0, path: str | None = None, label: str = "label") -> Data:
    """The named data set, split with `seed`."""
    if task == "mnist1d":
        x, y, x_test, y_test = _mnist1d()
        return split(x, y, x_test, y_test, seed, (40,))
    if task == "digits":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        return split(x, y, None, None, seed, (8, 8))
    if task == "synthetic":
        x, y = synthetic(seed)
        return split(x, y, None, None, seed, (x.shape[1],))
    if task == "file":
        if path is None:
            raise DataError(
                "train.data: task 'file' needs train.data, the path of a .npz or .parquet file"
            )
        x, y, x_test, y_test = read_file(path, label)
        return split(x, y, x_test, y_test, seed, tuple(x.shape[1:]))
    raise DataError(f"unknown task {task!r}")


def split(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray | None,
    y_test: np.ndarray | None,
    seed: int,
    shape: tuple[int, ...],
) -> Data:
    """Hold out validation (and, if there is none, test) examples with a fixed seed and
    standardize every feature with training statistics."""
    x = x.reshape(len(x), -1).astype(np.float64)
    order = np.random.default_rng(seed).permutation(len(x))
    if x_test is None or y_test is None:
        n_test = int(round(len(x) * TEST_FRACTION))
        x_test, y_test = x[order[:n_test]], y[order[:n_test]]
        order = order[n_test:]
    n_val = int(round(len(order) * VAL_FRACTION))
    val, tr = order[:n_val], order[n_val:]
    mean, std = x[tr].mean(axis=0), x[tr].std(axis=0) + 1e-8

    def norm(a: np.ndarray) -> np.ndarray:
        return ((a.reshape(len(a), -1) - mean) / std).astype(np.float32)

    labels = np.concatenate([y, y_test]).astype(np.int64)
    return Data(
        norm(x[tr]),
        y[tr].astype(np.int64),
        norm(x[val]),
        y[val].astype(np.int64),
        norm(x_test),
        y_test.astype(np.int64),
        int(labels.max() + 1),
        shape,
        mean.astype(np.float32),
        std.astype(np.float32),
    )


def synthetic(seed: int, n: int = 3000, features: int = 20, classes: int = 4) -> tuple:
    """Each class a Gaussian blob in a random low-dimensional subspace, plus noise features."""
    rng = np.random.default_rng(1000 + seed)
    centers = rng.normal(0, 1.5, (classes, features)) * (rng.random(features) < 0.5)
    y = rng.integers(0, classes, n)
    return centers[y] + rng.normal(0, 1.0, (n, features)), y


def _mnist1d() -> tuple[np.ndarray, ...]:
    # make_dataset generates offline; get_dataset would download.
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    return d["x"], d["y"], d["x_test"], d["y_test"]


def read_file(path: str, label: str = "label") -> tuple:
    """(x, y, x_test or None, y_test or None) from a .npz or .parquet file, checked."""
    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"train.data: no such file {path!r}; give the path of a .npz or .parquet file"
        )
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as f:
            missing = {"x", "y"} - set(f.files)
            if missing:
                raise DataError(
                    f"train.data: {path} needs arrays 'x' and 'y', found {sorted(f.files)}"
                )
            x, y = f["x"], f["y"]
            x_test = f["x_test"] if "x_test" in f.files else None
            y_test = f["y_test"] if "y_test" in f.files else None
    elif p.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(p)
        if label not in table.column_names:
            raise DataError(
                f"train.data: {path} has no label column {label!r} (columns: "
                f"{', '.join(table.column_names[:10])}); set train.label"
            )
        frame = table.to_pandas()
        y = frame.pop(label).to_numpy()
        x, x_test, y_test = frame.to_numpy(dtype=np.float64), None, None
    else:
        raise DataError(f"train.data: expected a .npz or .parquet file, found {path!r}")
    _check_arrays(path, x, y, "x", "y")
    if x_test is not None or y_test is not None:
        if x_test is None or y_test is None:
            raise DataError(
                f"train.data: {path} has only one of 'x_test' and 'y_test'; give both or neither"
            )
        _check_arrays(path, x_test, y_test, "x_test", "y_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(
                f"train.data: {path}: x_test examples have shape {x_test.shape[1:]} but x "
                f"examples have {x.shape[1:]}; they must match"
            )
    return x, y, x_test, y_test


def _check_arrays(path: str, x: np.ndarray, y: np.ndarray, xn: str, yn: str) -> None:
    if x.ndim < 2 or len(x) < 10:
        raise DataError(
            f"train.data: {path}: '{xn}' must be (examples, features...) with at least 10 "
            f"examples, found shape {x.shape}"
        )
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(
            f"train.data: {path}: '{yn}' must be one label per example, shape ({len(x)},), "
            f"found {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise DataError(
            f"train.data: {path}: '{yn}' must hold integer class labels 0..K-1, found "
            f"{y.dtype} values from {y.min()} to {y.max()}"
        )
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise DataError(f"train.data: {path}: '{xn}' must be finite numbers")
