"""Sweep results as two Parquet tables, and the helpers that read them back.

``trials.parquet``: one row per trial. ``history.parquet``: one row per (trial_id, epoch).
Both are built from Ray's per-trial result files, de-duplicated on (trial_id, epoch) because
Ray replays results after a restore, and written atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from caviar.errors import RunDirError
from caviar.searchers.base import Status
from caviar.session import FINAL
from caviar.storage import Location

TRIALS_FILE = "trials.parquet"
HISTORY_FILE = "history.parquet"
REGIONS_FILE = "regions.parquet"
SPEC_FILE = "spec.yaml"
RAY_DIR = "ray"
SCHEMA_VERSION = "1"

# Keys Ray adds to every result; they are bookkeeping, not metrics.
_RAY_KEYS = {
    "timestamp",
    "checkpoint_dir_name",
    "should_checkpoint",
    "done",
    "training_iteration",
    "trial_id",
    "date",
    "time_this_iter_s",
    "pid",
    "hostname",
    "node_ip",
    "time_since_restore",
    "iterations_since_restore",
    "experiment_tag",
    "config",
    "node_id",
    "gpu_model",
    "diverged",
    FINAL,
}


@dataclass(frozen=True)
class TrialRecord:
    """What the driver knows of one finished trial."""

    trial_id: str
    config: Mapping[str, Any]
    history: list[dict[str, Any]]
    """Every result the trial reported, in order, possibly with replayed epochs."""
    error: str | None = None
    round: int = 0
    stopped_by_asha: bool = False


def trial_status(last: Mapping[str, Any] | None, errored: bool, max_epochs: int) -> Status:
    """The one rule for a trial's status, shared by the searcher adapter and the tables.

    A healthy trial completed if it trained all max_epochs or returned a one-shot result;
    otherwise something stopped it early: ASHA, its own patience, or the sweep stopping.
    """
    if errored:
        return "error"
    if last and last.get("diverged"):
        return "diverged"
    if last and (last.get(FINAL) or int(last.get("epoch", 0)) >= max_epochs):
        return "completed"
    return "early_stopped"


def _rung(last: Mapping[str, Any] | None, rungs: list[int]) -> int:
    epochs = int(last["epoch"]) if last else 0
    return sum(epochs >= r for r in rungs) - 1


def _best(values: Iterable[Any], mode: str) -> float | None:
    finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if mode == "max" else min(finite)


def dedupe(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per epoch, the last reported one winning, ordered by epoch."""
    by_epoch = {int(r["epoch"]): r for r in history if "epoch" in r}
    return [by_epoch[e] for e in sorted(by_epoch)]


def build_tables(
    records: Iterable[TrialRecord],
    metric: str,
    mode: str,
    max_epochs: int,
    rungs: list[int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two tables. `rungs` are ASHA's milestones in epochs (None without ASHA); a trial's
    `rung` is the index of the highest one it reached, -1 if it stopped before the first."""
    trials, history = [], []
    for rec in records:
        rows = dedupe(rec.history)
        last = rows[-1] if rows else None
        trial = {
            "trial_id": rec.trial_id,
            "status": trial_status(last, rec.error is not None, max_epochs),
            "round": rec.round,
            "epochs": int(last["epoch"]) if last else 0,
            "stopped_by_asha": rec.stopped_by_asha,
            "rung": None if rungs is None else _rung(last, rungs),
            **{f"param_{k}": v for k, v in rec.config.items()},
            metric: last.get(metric) if last else None,
            f"best_{metric}": _best((r.get(metric) for r in rows), mode),
            "node_id": last.get("node_id") if last else None,
            "node_ip": last.get("node_ip") if last else None,
            "hostname": last.get("hostname") if last else None,
            "gpu_model": last.get("gpu_model") if last else None,
            "wall_time_s": last.get("time_total_s") if last else None,
            # The built-in function's test accuracy of the best-validation checkpoint.
            **({"test_acc": last.get("test_acc")} if last and "test_acc" in last else {}),
            "error": rec.error,
        }
        trials.append(trial)
        history.extend(
            {"trial_id": rec.trial_id, **{k: v for k, v in r.items() if k not in _RAY_KEYS}}
            for r in rows
        )
    trials_df = pd.DataFrame(trials)
    history_df = pd.DataFrame(history, columns=None if history else ["trial_id", "epoch"])
    if not history_df.empty:
        history_df["epoch"] = history_df["epoch"].astype("int64")
    if not trials_df.empty:
        trials_df = trials_df.astype({"epochs": "int64", "round": "int64"})
        text = ["trial_id", "status", "node_id", "node_ip", "hostname", "gpu_model", "error"]
        trials_df[text] = trials_df[text].astype("string")
    return trials_df, history_df


def read_trial_dir(trial_dir: Location) -> tuple[list[dict[str, Any]], str | None]:
    """A trial's reported results (Ray's result.json) and its error text, if it failed."""
    results = []
    path = trial_dir / "result.json"
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line:
                try:
                    results.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a driver killed mid-write leaves a partial last line
    error_file = trial_dir / "error.txt"
    error = error_file.read_text() if error_file.exists() else None
    return results, error


def write_parquet(df: pd.DataFrame, path: Location, metadata: Mapping[str, str]) -> None:
    """Write atomically: a reader sees the previous file or the new one, never a partial one.
    Every file carries caviar's schema version, which readers check."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = {
        **(table.schema.metadata or {}),
        **{k.encode(): v.encode() for k, v in metadata.items()},
        b"caviar.schema_version": SCHEMA_VERSION.encode(),
    }
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(meta), sink)
    path.write_bytes(sink.getvalue().to_pybytes())


def regions_table(regions: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (round, parameter): the domain searched in that round."""
    rows = []
    for region in regions:
        for param, raw in region["space"].items():
            ((kind, args),) = raw.items()
            numeric = kind not in ("choice", "value")
            rows.append(
                {
                    "round": region["round"],
                    "param": param,
                    "kind": kind,
                    "low": float(args[0]) if numeric else None,
                    "high": float(args[1]) if numeric else None,
                    "values": None if numeric else json.dumps(args if kind == "choice" else [args]),
                }
            )
    return pd.DataFrame(rows, columns=["round", "param", "kind", "low", "high", "values"])


def write_results(
    run_dir: Location,
    trials: pd.DataFrame,
    history: pd.DataFrame,
    spec_yaml: str,
    regions: list[dict[str, Any]] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write the tables with the resolved spec and `metadata` (versions, hardware, seed) in
    each file's Parquet metadata."""
    meta = {"caviar.spec": spec_yaml, **(metadata or {})}
    write_parquet(history, run_dir / HISTORY_FILE, meta)
    if regions:
        write_parquet(regions_table(regions), run_dir / REGIONS_FILE, meta)
    write_parquet(trials, run_dir / TRIALS_FILE, meta)


def load_trials(run_dir: str | Path | Location) -> pd.DataFrame:
    return _load(run_dir, TRIALS_FILE)


def load_history(run_dir: str | Path | Location) -> pd.DataFrame:
    return _load(run_dir, HISTORY_FILE)


def _load(run_dir: str | Path | Location, name: str) -> pd.DataFrame:
    loc = run_dir if isinstance(run_dir, Location) else Location.of(run_dir)
    path = loc / name
    if not path.is_file():
        raise RunDirError(
            f"{loc.uri}: no {name} here; pass the run directory that `caviar run` printed"
        )
    check_schema(path)
    table = pq.read_table(path.path, filesystem=loc.fs)
    return table.to_pandas()


def check_schema(path: Location) -> None:
    """Refuse Parquet files caviar did not write, or that a newer caviar wrote."""
    try:
        meta = pq.read_schema(path.path, filesystem=path.fs).metadata or {}
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise RunDirError(f"{path.uri}: not a readable Parquet file ({e})") from None
    raw = meta.get(b"caviar.schema_version")
    if raw is None:
        raise RunDirError(
            f"{path.uri}: not written by caviar (its Parquet metadata has no "
            "caviar.schema_version); pass a run directory that `caviar run` wrote, or read "
            "this file with pandas directly"
        )
    try:
        version = int(raw.decode())
    except ValueError:
        raise RunDirError(
            f"{path.uri}: caviar.schema_version must be an integer, found {raw.decode()!r}"
        ) from None
    if version > int(SCHEMA_VERSION):
        raise RunDirError(
            f"{path.uri}: written by a newer caviar (schema version {version}; this caviar "
            f"reads up to version {SCHEMA_VERSION}); upgrade caviar to read it"
        )


def leaderboard(
    trials: pd.DataFrame, metric: str, mode: str, top: int | None = None
) -> pd.DataFrame:
    """Healthy trials (completed or stopped early) ranked by their best metric, best first."""
    col = f"best_{metric}"
    ok = trials[trials["status"].isin(["completed", "early_stopped"]) & trials[col].notna()]
    ranked = ok.sort_values(col, ascending=(mode == "min"), kind="stable")
    return ranked.head(top) if top else ranked
