"""Sweep results as two Parquet tables, and the helpers that read them back.

``trials.parquet``: one row per trial. ``history.parquet``: one row per (trial_id, epoch).
Both are built from Ray's per-trial result files, de-duplicated on (trial_id, epoch) because
Ray replays results after a restore (`dedupe`), and written atomically (temporary file, then
rename).
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

from caviar import objective
from caviar.errors import CaviarError, RunDirError
from caviar.objective import Mode, Status
from caviar.session import FINAL
from caviar.storage import Location

Metrics = str | Sequence[str]
"""A sweep's metric: one name, or one per metric of a multi-objective sweep."""
Modes = Mode | Sequence[Mode]

TRIALS_FILE = "trials.parquet"
HISTORY_FILE = "history.parquet"
REGIONS_FILE = "regions.parquet"
AUDIT_FILE = "audit.parquet"
SPEC_FILE = "spec.yaml"
RAY_DIR = "ray"
SCHEMA_VERSION = "1"

# Keys Ray adds to every result, and caviar's marker of a final one: bookkeeping, not metrics.
_RAY_KEYS = objective.RAY_KEYS | {FINAL}


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
    running: bool = False
    """Not ended when the tables were written (a sweep in progress, or interrupted)."""
    rungs: list[float] | None = None
    """This trial's ASHA milestones where they differ from the sweep's (its bracket's)."""


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


_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*): ")


def error_type(text: str | None) -> str | None:
    """The class name of the exception that ended a trial, from its traceback's last
    "Name: message" line (for example ``OutOfMemoryError``); None if there is none."""
    for line in reversed((text or "").splitlines()):
        if m := _EXCEPTION_LINE.match(line):
            return m.group(1)
    return None


def asha_rungs(
    grace_period: float, reduction_factor: float, max_epochs: int, bracket: int = 0
) -> list[float]:
    """ASHA's milestones in epochs for one bracket, lowest first, as Ray Tune's
    ``_Bracket`` places them: grace_period * reduction_factor**(k + bracket)."""
    if reduction_factor <= 1:
        return []
    count = int(math.log(max_epochs / grace_period) / math.log(reduction_factor) - bracket + 1)
    rungs = [float(grace_period) * reduction_factor ** (k + bracket) for k in range(count)]
    return [int(r) if r.is_integer() else r for r in rungs]


def _rung(last: Mapping[str, Any] | None, rungs: list[float]) -> int:
    epochs = int(last["epoch"]) if last else 0
    return sum(epochs >= r for r in rungs) - 1


def dedupe(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per epoch, ordered by epoch. A trial restored from its epoch-k checkpoint
    reports k+1 again: that report supersedes every earlier one at epoch k+1 or later, which
    the run it replaces may have reported past the checkpoint before it died."""
    kept: list[dict[str, Any]] = []
    for r in history:
        if "epoch" not in r:
            continue
        while kept and int(kept[-1]["epoch"]) >= int(r["epoch"]):
            kept.pop()
        kept.append(r)
    return kept


def _trial_row(
    rec: TrialRecord,
    last: Mapping[str, Any] | None,
    best: Mapping[str, float | None],
    max_epochs: int,
    rungs: list[float] | None,
) -> dict[str, Any]:
    """A trial's row in trials.parquet, from its last report and its best value of each of the
    sweep's metrics (`best`: metric -> value)."""
    return {
        "trial_id": rec.trial_id,
        "status": "unfinished"
        if rec.running
        else trial_status(last, rec.error is not None, max_epochs),
        "round": rec.round,
        "epochs": int(last["epoch"]) if last else 0,
        "stopped_by_scheduler": rec.stopped_by_asha,
        "stopped_by_asha": rec.stopped_by_asha,  # the column's name before other schedulers
        "rung": None if (rungs := rec.rungs or rungs) is None else _rung(last, rungs),
        **{f"param_{k}": v for k, v in rec.config.items()},
        **{k: v for m, b in best.items() for k, v in ((m, (last or {}).get(m)), (f"best_{m}", b))},
        "node_id": last.get("node_id") if last else None,
        "node_ip": last.get("node_ip") if last else None,
        "hostname": last.get("hostname") if last else None,
        "gpu_model": last.get("gpu_model") if last else None,
        "wall_time_s": last.get("time_total_s") if last else None,
        # The built-in function's test accuracy of the best-validation checkpoint.
        **({"test_acc": last.get("test_acc")} if last and "test_acc" in last else {}),
        "error": rec.error,
        "error_type": error_type(rec.error),
    }


def _typed(trials: list[dict[str, Any]], history: pd.DataFrame) -> tuple[pd.DataFrame, ...]:
    trials_df = pd.DataFrame(trials)
    if not history.empty:
        history["epoch"] = history["epoch"].astype("int64")
    if not trials_df.empty:
        trials_df = trials_df.astype({"epochs": "int64", "round": "int64"})
        text = ["trial_id", "status", "node_id", "node_ip", "hostname", "gpu_model"]
        text += ["error", "error_type"]
        trials_df[text] = trials_df[text].astype("string")
    return trials_df, history


def build_tables(
    records: Iterable[TrialRecord],
    metric: Metrics,
    mode: Modes,
    max_epochs: int,
    rungs: list[float] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two tables; `metric` and `mode` are one, or one per metric of the sweep. `rungs` are
    ASHA's milestones in epochs (None without ASHA); a trial's `rung` is the index of the
    highest one it reached, -1 if it stopped before the first."""
    trials, history = [], []
    for rec in records:
        rows = dedupe(rec.history)
        best = {
            m: objective.best(
                (float(v) for r in rows if isinstance(v := r.get(m), (int, float))), d
            )
            for m, d in _objectives(metric, mode)
        }
        trials.append(_trial_row(rec, rows[-1] if rows else None, best, max_epochs, rungs))
        history.extend(
            {"trial_id": rec.trial_id, **{k: v for k, v in r.items() if k not in _RAY_KEYS}}
            for r in rows
        )
    return _typed(trials, pd.DataFrame(history, columns=None if history else ["trial_id", "epoch"]))


@dataclass(frozen=True)
class TrialDir:
    """Where a trial's results are, and what the driver knows of it."""

    trial_id: str
    path: Location
    config: Mapping[str, Any] | None
    round: int = 0
    stopped_by_asha: bool = False
    errored: bool | None = None
    """The trial ended in error. None: judge by its error file; but Ray keeps that file when a
    retry from the checkpoint then succeeds, so the driver passes the trial's final state."""
    running: bool = False
    rungs: list[float] | None = None

    def record(self, history: list[dict[str, Any]], error: str | None) -> TrialRecord:
        return TrialRecord(
            self.trial_id,
            self.config or {},
            history,
            error,
            self.round,
            self.stopped_by_asha,
            self.running,
            self.rungs,
        )

    def error_of(self, text: str | None) -> str | None:
        return text if (self.errored if self.errored is not None else text is not None) else None


def collect(
    trials: Sequence[TrialDir],
    metric: Metrics,
    mode: Modes,
    max_epochs: int,
    rungs: list[float] | None = None,
    fast: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two tables from the trials' result files. Trials that never started (no results,
    no error, no config) are left out. The fast path parses every file in one pyarrow call;
    where a value's JSON type changes between reports it cannot, and the per-line path runs."""
    if fast and (tables := _collect_columns(trials, metric, mode, max_epochs, rungs)) is not None:
        return tables
    records = []
    for t in trials:
        history, error = read_trial_dir(t.path)
        error = t.error_of(error)
        if history or error is not None or t.config:
            records.append(t.record(history, error))
    return build_tables(records, metric, mode, max_epochs, rungs)


def _collect_columns(
    trials: Sequence[TrialDir],
    metric: Metrics,
    mode: Modes,
    max_epochs: int,
    rungs: list[float] | None,
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """`collect` in columns: all result.json bytes parsed by one `pyarrow.json.read_json` (C++,
    instead of a `json.loads` per line: 4x faster on 1,000 trials x 50 epochs, see
    benchmarks/RESULTS.md), de-duplicated and ordered in columns. None where it cannot apply."""
    parts, counts, kept, errors = [], [], [], {}
    for t in trials:
        path, error_file = t.path / "result.json", t.path / "error.txt"
        raw = path.read_bytes() if path.exists() else b""
        if raw and not raw.endswith(b"\n"):  # a driver killed mid-write: a partial last line
            head, _, tail = raw.rpartition(b"\n")
            try:
                json.loads(tail)
                raw += b"\n"
            except ValueError:
                raw = head + b"\n" if head else b""
        if b"\n\n" in raw or raw[:1].isspace():  # read_json would stop at a blank line
            raw = b"".join(line + b"\n" for line in raw.split(b"\n") if line.strip())
        error = t.error_of(error_file.read_text() if error_file.exists() else None)
        n = raw.count(b"\n")
        if not n and error is None and not t.config:
            continue  # suggested but never started
        parts.append(raw)
        counts.append(n)
        kept.append(t)
        errors[t.trial_id] = error
    ids = [t.trial_id for t in kept]
    last: dict[str, dict[str, Any]] = {}
    best: dict[str, dict[str, float | None]] = {m: {} for m, _ in _objectives(metric, mode)}
    if not sum(counts):
        history = pd.DataFrame(columns=["trial_id", "epoch"])
    else:
        try:
            table = pj.read_json(pa.BufferReader(b"".join(parts)))
            epoch = table.column("epoch").cast(pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError):
            return None  # a value whose JSON type changes, or no epoch: the per-line path
        if table.num_rows != sum(counts):
            return None
        trial_index = np.repeat(np.arange(len(ids)), counts)
        keys = pd.DataFrame({"t": trial_index, "epoch": epoch.to_pandas()})
        keys = keys[keys["epoch"].notna()]
        # As `dedupe`: a report is kept if every later report of its trial is at a later epoch.
        later = keys.iloc[::-1].groupby("t")["epoch"].cummin().iloc[::-1]
        later = later.groupby(keys["t"]).shift(-1)
        keys = keys[later.isna() | (keys["epoch"] < later)]
        order = keys.sort_values(["t", "epoch"], kind="stable").index.to_numpy()
        rows = table.set_column(table.schema.get_field_index("epoch"), "epoch", epoch).take(order)
        row_trial = trial_index[order]
        names = [c for c in rows.column_names if c not in _RAY_KEYS]
        ids_column = pa.array(np.asarray(ids, dtype=object)[row_trial], pa.string())
        history = rows.select(names).add_column(0, "trial_id", ids_column).to_pandas()
        ends = np.flatnonzero(np.r_[row_trial[1:] != row_trial[:-1], True])
        for t, row in zip(row_trial[ends], rows.take(ends).to_pylist(), strict=True):
            last[ids[t]] = {k: v for k, v in row.items() if v is not None}
        for m, d in _objectives(metric, mode):
            if m in rows.column_names:
                values = pd.to_numeric(rows.column(m).to_pandas(), errors="coerce")
                grouped = values.where(np.isfinite(values)).groupby(row_trial)
                by_trial = grouped.max() if d == "max" else grouped.min()
                best[m] = {ids[t]: None if pd.isna(v) else float(v) for t, v in by_trial.items()}
    rows_out = [
        _trial_row(
            t.record([], errors[t.trial_id]),
            last.get(t.trial_id),
            {m: by_trial.get(t.trial_id) for m, by_trial in best.items()},
            max_epochs,
            rungs,
        )
        for t in kept
    ]
    return _typed(rows_out, history)


def parse_results(text: str) -> list[dict[str, Any]]:
    """The reports in a result.json's text, one JSON object per line; a partial line (a driver
    killed mid-write, or one being written) is left out."""
    results = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            try:
                results.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return results


def read_trial_dir(trial_dir: Location) -> tuple[list[dict[str, Any]], str | None]:
    """A trial's reported results (Ray's result.json) and its error text, if it failed."""
    path = trial_dir / "result.json"
    results = parse_results(path.read_text()) if path.exists() else []
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
    audit: list[dict[str, Any]] | None = None,
) -> None:
    """Write the tables with the resolved spec and `metadata` (versions, hardware, seed) in
    each file's Parquet metadata; `audit`: the stopping audit, one row per rung (caviar's
    scheduler's, `caviar.stopping.Stopping.audit`)."""
    meta = {"caviar.spec": spec_yaml, **(metadata or {})}
    write_parquet(history, run_dir / HISTORY_FILE, meta)
    if regions:
        write_parquet(regions_table(regions), run_dir / REGIONS_FILE, meta)
    if audit:
        write_parquet(pd.DataFrame(audit), run_dir / AUDIT_FILE, meta)
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


def earlier_trials(
    run_dirs: Sequence[str], space: Any, metric: Metrics
) -> tuple[list[tuple[dict[str, Any], Any]], int]:
    """The finished trials of earlier sweeps as (config, `Outcome`) pairs for a searcher's
    warm start, and how many were skipped: those outside `space` (a value no domain of it
    gives, a fixed value that differs, a parameter missing) or not finished."""
    from caviar.searchers.base import Outcome

    metrics = objective.as_tuple(metric)
    metric = metrics[0]

    found, skipped = [], 0
    for run_dir in run_dirs:
        for row in load_trials(run_dir).to_dict("records"):
            given = {name: row.get(f"param_{name}") for name, _ in space}
            config = space.active({k: v for k, v in given.items() if _is_value(v)})
            inside = all(
                name in config and domain.contains(config[name])
                for name, domain in space
                if space.is_active(name, config)
            )
            if not inside or row["status"] not in objective.STATUSES[:4]:
                skipped += 1
                continue
            value, best = row.get(metric), row.get(f"best_{metric}")
            values = [row.get(m) for m in metrics] if len(metrics) > 1 else []
            found.append(
                (
                    config,
                    Outcome(
                        row["status"],
                        None if not _is_value(value) else float(value),
                        None if not _is_value(best) else float(best),
                        int(row["epochs"]),
                        tuple(float(v) if _is_value(v) else None for v in values),
                    ),
                )
            )
    return found, skipped


def _is_value(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x)) and x is not pd.NA


def _objectives(metric: Metrics, mode: Modes) -> list[tuple[str, Mode]]:
    """(metric, mode) of each of a sweep's metrics."""
    return list(zip(objective.as_tuple(metric), objective.as_tuple(mode), strict=True))  # type: ignore[arg-type]


def pareto(trials: pd.DataFrame, metric: Metrics, mode: Modes) -> pd.Series:
    """trials.parquet's ``pareto``: whether a trial that ranks (`objective.RANKED`) is on the
    Pareto front of those trials, by each metric's last value and its mode."""
    objectives = _objectives(metric, mode)
    if trials.empty or any(m not in trials for m, _ in objectives):
        return pd.Series(False, index=trials.index, dtype=bool)
    values = trials[[m for m, _ in objectives]].apply(pd.to_numeric, errors="coerce")
    ranks = trials["status"].isin(objective.RANKED)
    points = [
        tuple(p) if r else None for r, p in zip(ranks, values.itertuples(index=False), strict=True)
    ]
    front = objective.pareto_front(points, [d for _, d in objectives])
    return pd.Series(front, index=trials.index, dtype=bool)


def ranking_columns(metric: Metrics) -> list[str]:
    """The columns `leaderboard` ranks by: ``best_<metric>``; with several metrics, ``pareto``
    and each metric's last value."""
    metrics = objective.as_tuple(metric)
    return [f"best_{metrics[0]}"] if len(metrics) == 1 else ["pareto", *metrics]


def board_columns(board: pd.DataFrame, metric: Metrics) -> list[str]:
    """The columns a leaderboard is shown with (`caviar results`, `caviar.Run` in Jupyter):
    the trial, its ranking values and the parameters that vary among the rows."""
    params = [c for c in board.columns if c.startswith("param_") and board[c].nunique() > 1]
    return ["trial_id", "status", "round", "epochs", *ranking_columns(metric), *params]


def leaderboard(
    trials: pd.DataFrame, metric: Metrics, mode: Modes, top: int | None = None
) -> pd.DataFrame:
    """The trials that rank (`objective.RANKED`) by their best metric, best first, a tie going
    to the better last value. With several metrics, those with a value of each: the Pareto
    front first (the ``pareto`` column, computed when the table has none), each part by the
    first metric's last value. `top`: how many (0 or None: all); pandas would read -k as "all
    but the last k", so a negative one is refused."""
    if top is not None and (
        not isinstance(top, numbers.Integral) or isinstance(top, bool) or top < 0
    ):
        raise CaviarError(
            f"top: expected a whole number >= 0 (0 or None: every trial that ranks), found {top!r}"
        )
    metrics, modes = objective.as_tuple(metric), objective.as_tuple(mode)
    if len(metrics) == 1:
        col = f"best_{metrics[0]}"
        ok = trials[trials["status"].isin(objective.RANKED) & trials[col].notna()]
        # A metric measured in steps (accuracy on a small validation set) ties often; the trial
        # that held its best to the end is the one a user retraining its configuration gets.
        by = [col, metrics[0]] if metrics[0] in ok else [col]
        ranked = ok.sort_values(by, ascending=(modes[0] == "min"), kind="stable")
    else:
        if "pareto" not in trials:
            trials = trials.assign(pareto=pareto(trials, metrics, modes))
        have = trials.reindex(columns=list(metrics)).notna().all(axis=1)
        ok = trials[trials["status"].isin(objective.RANKED) & have]
        ranked = ok.sort_values(
            ["pareto", metrics[0]], ascending=[False, modes[0] == "min"], kind="stable"
        )
    return ranked.head(top) if top else ranked
