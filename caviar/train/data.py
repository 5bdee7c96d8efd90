"""Data sets as numpy arrays: fixed-seed train / validation / test splits, standardized with
training statistics. Pure numpy, so the driver builds a data set once and shares it with every
trial through Ray's object store.

Tasks: ``mnist1d`` (generated offline), ``digits`` (scikit-learn's 8x8 digits), ``synthetic``
(a seeded Gaussian-mixture classification problem) and ``file`` (a user's .npz with ``x`` and
``y`` arrays, optionally ``x_test`` and ``y_test``; or a Parquet file with one column per
feature and a label column).
"""

from __future__ import annotations

import functools
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caviar.errors import CaviarError

VAL_FRACTION = 0.2
TEST_FRACTION = 0.2  # held out when a task has no test split of its own

EXAMPLES: dict[str, tuple[int, int | None]] = {
    "mnist1d": (4000, 1000),  # mnist1d's default arguments: 5000 sequences, 20% for testing
    "digits": (1797, None),
    "synthetic": (3000, None),
}
"""Examples of each built-in task, and of its own test split (None: one is held out of the
examples): what validation knows of a task without loading it. tests/test_train.py checks them
against the loaders."""


class DataError(CaviarError, ValueError):
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
        x, y, x_test, y_test = read_file(_data_path(path), label)
        return split(x, y, x_test, y_test, seed, tuple(x.shape[1:]))
    raise DataError(f"unknown task {task!r}")


def examples(task: str, path: str | None = None, label: str = "label") -> tuple[int, int | None]:
    """(examples, examples of the task's own test split or None), without loading the data:
    declared for the built-in tasks (`EXAMPLES`), read from the file's headers for 'file'."""
    if task == "file":
        layout = inspect_file(_data_path(path), label)
        return layout["x"][0][0], layout["x_test"][0][0] if "x_test" in layout else None
    if task not in EXAMPLES:
        raise DataError(f"unknown task {task!r}")
    return EXAMPLES[task]


def split_sizes(examples: int, test_examples: int | None) -> tuple[int, int, int]:
    """(train, validation, test) sizes of a data set of `examples` examples with its own test
    split of `test_examples`; None: the test split is held out of the examples."""
    n_test = int(round(examples * TEST_FRACTION)) if test_examples is None else test_examples
    rest = examples - n_test if test_examples is None else examples
    n_val = int(round(rest * VAL_FRACTION))
    return rest - n_val, n_val, n_test


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
    own_test = None if x_test is None or y_test is None else len(x_test)
    _, n_val, n_test = split_sizes(len(x), own_test)
    order = np.random.default_rng(seed).permutation(len(x))
    if own_test is None:
        x_test, y_test = x[order[:n_test]], y[order[:n_test]]
        order = order[n_test:]
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


def synthetic(
    seed: int, n: int = EXAMPLES["synthetic"][0], features: int = 20, classes: int = 4
) -> tuple:
    """Each class a Gaussian blob in a random low-dimensional subspace, plus noise features."""
    rng = np.random.default_rng(1000 + seed)
    centers = rng.normal(0, 1.5, (classes, features)) * (rng.random(features) < 0.5)
    y = rng.integers(0, classes, n)
    return centers[y] + rng.normal(0, 1.0, (n, features)), y


@functools.cache
def _mnist1d() -> tuple[np.ndarray, ...]:
    """Generated once per process (1-1.6 s of CPU, the same arrays every time), read-only."""
    # make_dataset generates offline; get_dataset would download.
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    arrays = d["x"], d["y"], d["x_test"], d["y_test"]
    for a in arrays:
        a.flags.writeable = False
    return arrays


# --- data files ----------------------------------------------------------------------------

Layout = dict[str, tuple[tuple[int, ...], np.dtype]]
"""A data file's arrays ('x', 'y', and 'x_test', 'y_test' if it has them): shape and dtype."""


def _data_path(path: str | None) -> str:
    if path is None:
        raise DataError(
            "train.data: task 'file' needs train.data, the path of a .npz or .parquet file"
        )
    return path


def inspect_file(path: str, label: str = "label") -> Layout:
    """The arrays of a .npz or .parquet file, checked, from its headers only (a .npz's array
    headers, a .parquet's schema and row count): all that validation reads of the data."""
    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"train.data: no such file {path!r}; give the path of a .npz or .parquet file"
        )
    if p.suffix == ".npz":
        layout = _npz_layout(path)
    elif p.suffix == ".parquet":
        layout = _parquet_layout(path, label)
    else:
        raise DataError(f"train.data: expected a .npz or .parquet file, found {path!r}")
    _check_pair(path, layout, "x", "y")
    if ("x_test" in layout) != ("y_test" in layout):
        raise DataError(
            f"train.data: {path} has only one of 'x_test' and 'y_test'; give both or neither"
        )
    if "x_test" in layout:
        _check_pair(path, layout, "x_test", "y_test")
        if layout["x_test"][0][1:] != layout["x"][0][1:]:
            raise DataError(
                f"train.data: {path}: x_test examples have shape {layout['x_test'][0][1:]} but "
                f"x examples have {layout['x'][0][1:]}; they must match"
            )
    return layout


def read_file(path: str, label: str = "label") -> tuple:
    """(x, y, x_test or None, y_test or None) from a .npz or .parquet file, checked."""
    layout = inspect_file(path, label)
    if Path(path).suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in layout}
    else:
        import pyarrow.parquet as pq

        frame = pq.read_table(path).to_pandas()
        y = frame.pop(label).to_numpy()
        arrays = {"x": frame.to_numpy(dtype=np.float64), "y": y}
    for xn, yn in (("x", "y"), ("x_test", "y_test")):
        if xn in arrays:
            _check_values(path, arrays[xn], arrays[yn], xn, yn)
    return arrays["x"], arrays["y"], arrays.get("x_test"), arrays.get("y_test")


def _npz_layout(path: str) -> Layout:
    # np.load reads a member whole when it is indexed, and a zip member cannot be memory
    # mapped: the headers are read from the members themselves.
    fmt = np.lib.format
    try:
        with zipfile.ZipFile(path) as z:
            members = {name.removesuffix(".npy"): name for name in z.namelist()}
            layout: Layout = {}
            for name in [n for n in ("x", "y", "x_test", "y_test") if n in members]:
                with z.open(members[name]) as m:
                    version = fmt.read_magic(m)
                    read = (
                        fmt.read_array_header_1_0
                        if version == (1, 0)
                        else fmt.read_array_header_2_0
                    )
                    shape, _, dtype = read(m)
                layout[name] = (tuple(shape), dtype)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise DataError(
            f"train.data: {path} is not a readable .npz file ({e}); write it with numpy.savez"
        ) from None
    if not {"x", "y"} <= set(members):
        raise DataError(f"train.data: {path} needs arrays 'x' and 'y', found {sorted(members)}")
    return layout


def _parquet_layout(path: str, label: str) -> Layout:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema, rows = pq.read_schema(path), pq.read_metadata(path).num_rows
    except pa.ArrowException as e:
        raise DataError(f"train.data: {path} is not a readable .parquet file ({e})") from None
    if label not in schema.names:
        raise DataError(
            f"train.data: {path} has no label column {label!r} (columns: "
            f"{', '.join(schema.names[:10])}); set train.label"
        )
    features = [f.type for f in schema if f.name != label]
    numeric = all(
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
        for t in features
    )
    try:
        y_dtype = np.dtype(schema.field(label).type.to_pandas_dtype())
    except NotImplementedError:  # a type pandas has no numpy dtype for
        y_dtype = np.dtype(object)
    return {
        "x": ((rows, len(features)), np.dtype(np.float64 if numeric else object)),
        "y": ((rows,), y_dtype),
    }


def _check_pair(path: str, layout: Layout, xn: str, yn: str) -> None:
    """Examples and their labels, by shape and dtype."""
    (x_shape, x_dtype), (y_shape, y_dtype) = layout[xn], layout[yn]
    if len(x_shape) < 2 or x_shape[0] < 10:
        raise DataError(
            f"train.data: {path}: '{xn}' must be (examples, features...) with at least 10 "
            f"examples, found shape {x_shape}"
        )
    if y_shape != (x_shape[0],):
        raise DataError(
            f"train.data: {path}: '{yn}' must be one label per example, shape ({x_shape[0]},), "
            f"found {y_shape}"
        )
    if not np.issubdtype(y_dtype, np.integer):
        raise _labels_error(path, yn, str(y_dtype))
    if not np.issubdtype(x_dtype, np.number):
        raise _numbers_error(path, xn)


def _check_values(path: str, x: np.ndarray, y: np.ndarray, xn: str, yn: str) -> None:
    """What only the data tells: labels from 0, finite features."""
    # A Parquet integer column with nulls reads as floats.
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise _labels_error(path, yn, f"{y.dtype} values from {y.min()} to {y.max()}")
    if not np.isfinite(x).all():
        raise _numbers_error(path, xn)


def _labels_error(path: str, yn: str, found: str) -> DataError:
    return DataError(
        f"train.data: {path}: '{yn}' must hold integer class labels 0..K-1, found {found}"
    )


def _numbers_error(path: str, xn: str) -> DataError:
    return DataError(f"train.data: {path}: '{xn}' must be finite numbers")
