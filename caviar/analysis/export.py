"""The best trial and its model: `best`, `export_best` (one file with the weights, the
architecture, the config and the input standardization) and `load_model` (that file back as a
torch module, without the run directory or Ray).

File format version 2 adds ``input_mean`` and ``input_std`` (float32 tensors, one value per
feature, or None); version-1 files, which have neither, are still read.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.fs as pafs

from caviar import objective, results
from caviar.analysis.run import Run
from caviar.analysis.tables import leaderboard, status_counts
from caviar.errors import CaviarError, RunDirError
from caviar.objective import Mode
from caviar.storage import Location

if TYPE_CHECKING:
    import torch

EXPORT_FORMAT = "caviar.model"
EXPORT_VERSION = 2


class ModelFileError(CaviarError):
    """A file given to `load_model` is not a model that `export_best` wrote."""


@dataclass(frozen=True)
class Best:
    """The best trial by the spec's metric and mode: the top of `leaderboard`. In a run of
    several metrics, one trial of the Pareto front, by its last epoch (the values that put it
    there): `metric` is the first metric, and `value` its last value."""

    trial_id: str
    config: dict[str, Any]
    """Every hyperparameter the trial got, fixed ones included."""
    metric: str
    value: float
    """The trial's best value of `metric`."""
    mode: Mode
    test_acc: float | None
    """Test accuracy of its best-validation weights (the built-in train function), or None."""
    status: str
    round: int
    epochs: int
    """Epochs trained."""
    best_epoch: int | None
    """The epoch that reached `value`."""
    checkpoint: str | None
    """Ray's checkpoint directory (holding checkpoint.pkl): the one saved at `best_epoch`
    while Ray still keeps it, else the trial's latest; None if the trial saved none."""
    checkpoint_epoch: int | None


def best(run: Run, trial_id: str | None = None) -> Best:
    """The best trial, or the trial `trial_id` of the leaderboard (one of the Pareto front);
    RunDirError when no trial finished with a metric value."""
    board = leaderboard(run)
    if trial_id is not None:
        board = board[board["trial_id"].astype(str) == trial_id]
        if board.empty:
            raise RunDirError(f"{run.run_dir}: trial {trial_id} is not among the trials that rank")
    if board.empty:
        raise RunDirError(_no_best_message(run))
    row = board.iloc[0]
    trial_id = str(row["trial_id"])
    config = {
        c.removeprefix("param_"): _plain(row[c])
        for c in board.columns
        if c.startswith("param_") and not _is_missing(row[c])
    }
    h = run.history[run.history["trial_id"].astype(str) == trial_id]
    h = h[h[run.metric].notna()]
    several = len(run.metrics) > 1
    best_epoch = None
    if several:
        best_epoch = int(row["epochs"])
    elif len(h):
        i = (objective.sign(run.mode) * h[run.metric]).idxmin()
        best_epoch = int(h.loc[i, "epoch"])
    checkpoint, checkpoint_epoch = _pick_checkpoint(run, trial_id, best_epoch)
    test_acc = row.get("test_acc")
    return Best(
        trial_id=trial_id,
        config=config,
        metric=run.metric,
        value=float(row[run.metric if several else run.best_col]),
        mode=run.mode,
        test_acc=None if _is_missing(test_acc) else float(test_acc),
        status=str(row["status"]),
        round=int(row["round"]),
        epochs=int(row["epochs"]),
        best_epoch=best_epoch,
        checkpoint=checkpoint,
        checkpoint_epoch=checkpoint_epoch,
    )


def _no_best_message(run: Run) -> str:
    counts = status_counts(run)
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no trials"
    msg = f"{run.run_dir}: no best trial: no trial finished with a {run.metric} value ({summary})"
    errors = run.trials.get("error", pd.Series(dtype="string")).dropna().astype(str)
    errors = errors[errors.str.strip() != ""]
    if len(errors):
        last_line = errors.iloc[0].strip().splitlines()[-1]
        msg += f"; the first error: {last_line}; every traceback is in `error` of trials.parquet"
    return msg


def _is_missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False  # a list or array value is not missing


def _plain(value: Any) -> Any:
    """Plain Python values (numpy scalars from Parquet become int, float, bool, str)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _pick_checkpoint(run: Run, trial_id: str, epoch: int | None) -> tuple[str | None, int | None]:
    """The checkpoint saved at `epoch` if Ray still keeps it (it keeps the latest
    `checkpoint.keep`), else the latest one."""
    trial_dir = Location.of(run.run_dir) / results.RAY_DIR / trial_id
    try:
        infos = trial_dir.fs.get_file_info(pafs.FileSelector(trial_dir.path, allow_not_found=True))
    except OSError:
        return None, None
    kept = sorted(
        i.base_name
        for i in infos
        if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")
    )
    if not kept:
        return None, None
    reported, _ = results.read_trial_dir(trial_dir)
    # Ray names the checkpoint each result saved; a replayed epoch names its newer copy.
    epoch_of = {
        r["checkpoint_dir_name"]: int(r["epoch"])
        for r in reported
        if r.get("checkpoint_dir_name") and "epoch" in r
    }
    at_best = [name for name in kept if epoch is not None and epoch_of.get(name) == epoch]
    name = at_best[-1] if at_best else kept[-1]
    return (trial_dir / name).uri, epoch_of.get(name)


def export_best(run: Run, out_dir: str | Path, trial_id: str | None = None) -> Path:
    """Write the best trial's model (or that of `trial_id`, as `best` takes it) to
    ``<out_dir>/<run name>-<trial id>.pt``, one file that `load_model` reads without the run
    directory. Built-in train function only. When the
    checkpoint carries the input standardization (``arch["input_mean"]`` and
    ``arch["input_std"]``, as the built-in train function's do), the file carries it too and
    the loaded model applies it to raw inputs."""
    b = best(run, trial_id)
    if b.checkpoint is None:
        raise RunDirError(
            f"{run.run_dir}: the best trial {b.trial_id} left no checkpoint under "
            f"{results.RAY_DIR}/{b.trial_id}/; a train function saves one by passing "
            "checkpoint= to caviar.report"
        )
    ckpt_file = Location.of(b.checkpoint) / "checkpoint.pkl"
    if not ckpt_file.is_file():
        raise RunDirError(f"{ckpt_file.uri}: missing; the checkpoint directory is incomplete")
    import torch  # unpickling the state dict needs torch imported

    ckpt = pickle.loads(ckpt_file.read_bytes())
    missing = [k for k in ("model", "arch") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        found = sorted(map(str, ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise RunDirError(
            f"{ckpt_file.uri}: no {' or '.join(map(repr, missing))} in this checkpoint (found "
            f"{found}); export rebuilds the built-in train function's networks, whose "
            "checkpoints carry 'model' and 'arch' (a run from a caviar before 'arch' was added "
            "needs to be run again); with your own train function, load checkpoint.pkl with "
            "pickle and rebuild the model yourself"
        )
    arch = dict(ckpt["arch"])
    mean, std = arch.pop("input_mean", None), arch.pop("input_std", None)
    standardized = mean is not None and std is not None
    payload = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "state_dict": ckpt["model"],
        "arch": _plain(arch),
        # torch.load(weights_only=True) reads tensors, not numpy arrays.
        "input_mean": torch.as_tensor(mean, dtype=torch.float32) if standardized else None,
        "input_std": torch.as_tensor(std, dtype=torch.float32) if standardized else None,
        "config": b.config,
        "metric": b.metric,
        "value": b.value,
        "mode": b.mode,
        "test_acc": b.test_acc,
        "trial_id": b.trial_id,
        "epoch": int(ckpt.get("epoch", b.checkpoint_epoch or 0)),
        "best_epoch": b.best_epoch,
        "run_dir": run.run_dir,
        "spec": run.spec,
    }
    path = Path(out_dir) / f"{run.name}-{b.trial_id}.pt"
    tmp = path.with_suffix(".pt.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, tmp)
        tmp.replace(path)
    except OSError as e:
        raise RunDirError(
            f"--export: cannot write {str(path)!r} ({e}); pass a directory you can write to"
        ) from None
    return path


def load_model(path: str | Path) -> torch.nn.Module:
    """The network in a file `export_best` wrote, weights loaded, in eval mode (on the CPU).

    When the file carries the input standardization, the network is preceded by a
    `Standardize` module (an ``nn.Sequential`` of the two), so that it takes raw inputs; a file
    without it (a version-1 file, or a checkpoint that had none) gives the bare network."""
    import torch

    from caviar.analysis.standardize import Standardize
    from caviar.train.models import build

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such file; pass the path `caviar best --export` printed")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or others for non-models
        raise ModelFileError(
            f"{p}: not a model file written by caviar's export_best ({type(e).__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != EXPORT_FORMAT:
        raise ModelFileError(
            f"{p}: not a model file written by caviar's export_best (no format "
            f"{EXPORT_FORMAT!r}); export one with `caviar best RUN_DIR --export DIR`"
        )
    if int(payload.get("format_version", 0)) > EXPORT_VERSION:
        raise ModelFileError(
            f"{p}: written by a newer caviar (format version {payload['format_version']}; this "
            f"caviar reads up to {EXPORT_VERSION}); upgrade caviar"
        )
    arch = payload["arch"]
    # Building initializes weights at random; keep the caller's RNG as it was.
    with torch.random.fork_rng(devices=[]):
        model = build(arch["model"], tuple(arch["shape"]), int(arch["num_classes"]), arch["hp"])
    model.load_state_dict(payload["state_dict"])
    mean, std = payload.get("input_mean"), payload.get("input_std")
    if mean is not None and std is not None:
        model = torch.nn.Sequential(Standardize(mean, std), model)
    return model.eval()
