"""What the dashboard shows, as plain JSON-ready dicts: every sweep under a storage root and one
sweep in detail, live while it runs. No web framework here (`caviar.dashboard.server` serves
it) and no Ray: only the run directories' files.

A running sweep's trials.parquet is rewritten only as trials end (at most every 10 s), so for a
sweep whose driver is alive (or was killed) the trials that trials.parquet does not show as
ended are read from Ray's per-trial ``ray/<trial>/result.json`` and their Ray status from the
newest ``ray/experiment_state-*.json``. Every file read is cached by its modification time and
size, and each sweep's whole answer by the stamps of every file it read, so polling a finished
sweep costs a few ``stat`` calls.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from caviar import objective, results, schedulers
from caviar.catalog import CATALOG_DIR
from caviar.rundir import CLAIM_FILE, _caviar_alive
from caviar.storage import Location

LEADERBOARD_TOP = 20
STARTING_S = 30.0
"""A run directory this young, with no claim and no trials yet, is starting, not failed."""


class NotFound(Exception):
    """No such sweep under the storage root (or a name that could never be one)."""


# --- names -----------------------------------------------------------------------------------


def valid_name(name: str) -> bool:
    """A run directory's name as `caviar run --name` accepts it: one plain path component."""
    return bool(
        name
        and name not in (".", "..")
        and not name.startswith(".")
        and name != CATALOG_DIR
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
        and len(name) <= 255
    )


def run_location(root: Location, name: str) -> Location:
    """`<root>/<name>`, only for a run directory directly under the root (NotFound otherwise)."""
    if not valid_name(name):
        raise NotFound(name)
    loc = root / name
    if root.is_local and os.path.dirname(os.path.realpath(loc.path)) != os.path.realpath(root.path):
        raise NotFound(name)  # a link to a directory elsewhere: nothing outside the root
    if not (loc / results.SPEC_FILE).is_file():
        raise NotFound(name)
    return loc


def sweep_names(root: Location) -> list[str]:
    """The run directories under the root (those with a spec.yaml), newest first by name."""
    try:
        infos = root.fs.get_file_info(pafs.FileSelector(root.path))
    except (FileNotFoundError, OSError):
        return []
    names = [i.base_name for i in infos if i.type == pafs.FileType.Directory]
    return sorted(n for n in names if _is_run(root, n))


def _is_run(root: Location, name: str) -> bool:
    try:
        run_location(root, name)
    except NotFound:
        return False
    return True


# --- cached reads ----------------------------------------------------------------------------


def _stamp(fs: pafs.FileSystem, path: str) -> tuple | None:
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        return None
    return (info.mtime_ns, info.size)


class _Cache:
    """path -> (stamp, value), recomputed when the file's (mtime, size) changes."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str], stamp: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            hit = self._data.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        value = make()
        with self._lock:
            self._data[key] = (stamp, value)
        return value


_CACHE = _Cache()


def _cached_table(loc: Location, name: str) -> tuple[Any, pd.DataFrame | None]:
    path = loc / name
    stamp = _stamp(path.fs, path.path)
    if stamp is None:
        return None, None

    def read() -> pd.DataFrame | None:
        try:
            return pq.read_table(path.path, filesystem=path.fs).to_pandas()
        except (OSError, ValueError):
            return None  # replaced while read: the next poll reads the new one

    return stamp, _CACHE.get(("table", path.uri), stamp, read)


# --- the driver's claim ----------------------------------------------------------------------


def claim(loc: Location) -> dict[str, Any] | None:
    """The run directory's driver claim (`caviar.rundir.claim`): host, pid, job_id where a
    Ray job runs it, and ``alive``: True/False for a driver on this machine, None for one on
    another (which this machine cannot check)."""
    path = loc / CLAIM_FILE
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    out = {"host": raw.get("host"), "pid": raw.get("pid"), "job_id": raw.get("job_id")}
    if out["host"] == platform.node() and isinstance(out["pid"], int):
        out["alive"] = _caviar_alive(out["pid"])
    else:
        out["alive"] = None
    return out


# --- live trials -----------------------------------------------------------------------------


def _list(loc: Location | None) -> list[pafs.FileInfo]:
    if loc is None:
        return []
    try:
        return loc.fs.get_file_info(pafs.FileSelector(loc.path))
    except (FileNotFoundError, OSError):
        return []


def _ray_statuses(infos: list[tuple[Location, pafs.FileInfo]]) -> tuple[Any, dict[str, str]]:
    """trial id -> Ray's status from the newest experiment_state-*.json among `infos`."""
    states = [
        (d, i)
        for d, i in infos
        if i.base_name.startswith("experiment_state-") and i.base_name.endswith(".json")
    ]
    if not states:
        return None, {}
    ray_dir, newest = max(states, key=lambda di: (di[1].mtime_ns, di[1].base_name))
    stamp = (newest.path, newest.mtime_ns, newest.size)

    def read() -> dict[str, str]:
        try:
            with ray_dir.fs.open_input_stream(newest.path) as f:
                state = json.loads(f.readall())
        except (OSError, ValueError):
            return {}
        out = {}
        for entry in state.get("trial_data", []):
            try:
                trial = json.loads(entry[0])
                out[str(trial["trial_id"])] = str(trial["status"])
            except (ValueError, KeyError, TypeError, IndexError):
                continue
        return out

    return stamp, _CACHE.get(("state", ray_dir.uri), stamp, read)


def _trial_stamp(trial_dir: Location) -> tuple:
    result, error = trial_dir / "result.json", trial_dir / "error.txt"
    return (_stamp(result.fs, result.path), _stamp(error.fs, error.path))


def _live_trial(trial_dir: Location, stamp: tuple) -> dict[str, Any]:
    """One trial's reports so far from its result.json (de-duplicated as the tables are) and
    whether it has an error file; cached by the files' stamps."""

    def read() -> dict[str, Any]:
        rows = []
        if stamp[0] is not None:
            try:
                text = (trial_dir / "result.json").read_text()
                rows = results.dedupe(results.parse_results(text))
            except OSError:
                rows = []
        last = rows[-1] if rows else {}
        return {"config": last.get("config") or {}, "rows": rows, "last": last}

    return _CACHE.get(("trial", trial_dir.uri), stamp, read)


# --- one sweep -------------------------------------------------------------------------------


def _spec(loc: Location) -> tuple[Any, dict[str, Any], str]:
    path = loc / results.SPEC_FILE
    stamp = _stamp(path.fs, path.path)

    def read() -> tuple[dict[str, Any], str]:
        from caviar.spec import parse_yaml

        text = path.read_text()
        try:
            raw = parse_yaml(text)
        except Exception:  # a spec this caviar cannot parse is still shown as text
            raw = {}
        return (raw if isinstance(raw, dict) else {}), text

    raw, text = _CACHE.get(("spec", path.uri), stamp, read)
    return stamp, raw, text


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _plain(v: Any) -> Any:
    """A JSON-safe scalar (numpy types unwrapped, NaN/NA as None)."""
    if v is None or v is pd.NA:
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return _finite(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, (str, int, bool)):
        return v
    return str(v)


class Sweep:
    """One run directory's state, merged from its tables and, while it runs, Ray's files."""

    def __init__(self, root: Location, name: str) -> None:
        self.name = name
        self.loc = run_location(root, name)
        self.spec_stamp, self.spec, self.spec_text = _spec(self.loc)
        self.metrics = objective.as_tuple(self.spec.get("metric") or "metric")
        self.modes = objective.as_tuple(self.spec.get("mode") or "max")
        self.metric, self.mode = self.metrics[0], self.modes[0]
        train = self.spec.get("train") or {}
        self.max_epochs = int(train.get("max_epochs") or 0)
        self.num_samples = int((self.spec.get("budget") or {}).get("num_samples") or 0)
        self.claim = claim(self.loc)
        self.trials_stamp, trials = _cached_table(self.loc, results.TRIALS_FILE)
        self.history_stamp, history = _cached_table(self.loc, results.HISTORY_FILE)
        self.audit_stamp, audit = _cached_table(self.loc, results.AUDIT_FILE)
        self.audit = audit
        self.live = self.claim is not None  # a driver holds the claim (or died holding it)
        self.trials, self.history, self.live_stamp = self._merge(trials, history)

    @property
    def status(self) -> str:
        """running, interrupted, failed or finished."""
        c = self.claim
        if c is not None:
            if c["alive"] is None:
                return "running"  # on another machine; its claim is there
            return "running" if c["alive"] else "interrupted"
        t = self.trials
        if t.empty:
            # spec.yaml is written just before the driver takes its claim
            young = time.time() - (self.spec_stamp or (0, 0))[0] / 1e9 < STARTING_S
            return "starting" if young else "failed"
        if (t["status"] == "unfinished").any():
            return "interrupted"
        if not t["status"].isin(objective.HEALTHY).any():
            return "failed"
        return "finished"

    def _merge(
        self, trials: pd.DataFrame | None, history: pd.DataFrame | None
    ) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
        trials = trials if trials is not None else pd.DataFrame(columns=["trial_id", "status"])
        history = history if history is not None else pd.DataFrame(columns=["trial_id", "epoch"])
        if not self.live:
            return trials, history, None
        settled = set(trials.loc[trials["status"] != "unfinished", "trial_id"].astype(str))
        # Each trial's result.json: the driver appends to it as results come (a run directory
        # on object storage has Ray's copies, every few minutes and as trials end).
        ray_dir = self.loc / results.RAY_DIR
        infos = [(ray_dir, i) for i in _list(ray_dir)]
        where: dict[str, Location] = {}
        for d, i in infos:
            if i.type == pafs.FileType.Directory and i.base_name not in settled:
                where[i.base_name] = d / i.base_name
        state_stamp, ray_status = _ray_statuses(infos)
        alive = bool(self.claim and self.claim["alive"] is not False)
        ids = sorted(where)
        stamps = (
            self.trials_stamp,
            self.history_stamp,
            state_stamp,
            alive,
            tuple((t, where[t].uri, _trial_stamp(where[t])) for t in ids),
        )

        def merge() -> tuple[pd.DataFrame, pd.DataFrame]:
            rows, curves = [], []
            for trial_id, _, stamp in stamps[-1]:
                rows_curves = self._live_rows(trial_id, where[trial_id], stamp, ray_status, alive)
                if rows_curves is not None:
                    rows.append(rows_curves[0])
                    curves.extend(rows_curves[1])
            if not rows:
                return trials, history
            live_ids = {r["trial_id"] for r in rows}
            kept = trials[~trials["trial_id"].astype(str).isin(live_ids)]
            merged = pd.concat([kept, pd.DataFrame(rows)], ignore_index=True)
            hist = history[~history["trial_id"].astype(str).isin(live_ids)]
            merged_history = pd.concat([hist, pd.DataFrame(curves)], ignore_index=True)
            return merged, merged_history

        # A poll of a sweep whose files did not change costs the stats above.
        merged, merged_history = _CACHE.get(("merged", self.loc.uri), stamps, merge)
        return merged, merged_history, stamps

    def _live_rows(
        self, trial_id: str, where: Location, stamp: tuple, ray_status: dict, alive: bool
    ) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """A trial's row of the trials table and its history rows, from its Ray files."""
        errored = stamp[1] is not None
        t = _live_trial(where, stamp)
        if not t["rows"] and not errored:
            return None  # not started
        last = t["last"]
        ray = ray_status.get(trial_id)
        if errored and ray in (None, "ERROR"):
            status = "error"
        elif ray == "TERMINATED":
            status = results.trial_status(last, False, self.max_epochs)
        elif ray == "ERROR":
            status = "error"
        elif alive:  # Ray's snapshot may still say PENDING of a trial that reports
            status = "paused" if ray == "PAUSED" else "running"
        else:
            status = "unfinished"
        row = {
            "trial_id": trial_id,
            "status": status,
            "epochs": int(last.get("epoch", 0)) if last else 0,
            **{f"param_{k}": v for k, v in (t["config"] or {}).items()},
            "wall_time_s": last.get("time_total_s") if last else None,
        }
        for m, d in zip(self.metrics, self.modes, strict=True):
            row[m] = _finite(last.get(m)) if last else None
            row[f"best_{m}"] = objective.best((_finite(r.get(m)) for r in t["rows"]), d)
        curves = [
            {"trial_id": trial_id, "epoch": int(r["epoch"]), **{m: r.get(m) for m in self.metrics}}
            for r in t["rows"]
        ]
        return row, curves

    @property
    def stamp(self) -> tuple:
        """Changes whenever anything this sweep's answer depends on changes."""
        c = self.claim
        return (
            self.spec_stamp,
            self.trials_stamp,
            self.history_stamp,
            self.audit_stamp,
            None if c is None else (c["pid"], c["alive"]),
            self.live_stamp,
            # a running (or starting) sweep's duration and ETA move on: recomputed every 2 s
            int(time.time() / 2) if self.status in ("running", "starting") else None,
        )

    # -- pieces of the answer --

    def counts(self) -> dict[str, int]:
        counts = (
            self.trials["status"].astype(str).value_counts().to_dict() if len(self.trials) else {}
        )
        return {k: int(v) for k, v in counts.items()}

    def ranked(self) -> pd.DataFrame:
        """The leaderboard over every trial that ranks; running trials rank as unfinished."""
        t = self.trials
        if t.empty or not all(f"best_{m}" in t or m in t for m in self.metrics):
            return t.iloc[:0]
        shown = t["status"].astype(str)
        ranking = t.assign(status=shown.replace({"running": "unfinished", "paused": "unfinished"}))
        for col in results.ranking_columns(self.metrics):
            if col not in ranking and col != "pareto":
                return t.iloc[:0]
        board = results.leaderboard(ranking, self.metrics, self.modes)
        return board.assign(status=shown.loc[board.index])

    def best(self, board: pd.DataFrame) -> dict[str, Any] | None:
        if board.empty:
            return None
        row = board.iloc[0]
        col = results.ranking_columns(self.metrics)[0]
        col = col if col != "pareto" else self.metric
        return {"trial_id": str(row["trial_id"]), "value": _plain(row.get(col)), "column": col}

    def times(self) -> dict[str, Any]:
        spec_file = self.loc / results.SPEC_FILE
        started = spec_file.fs.get_file_info(spec_file.path).mtime_ns / 1e9
        if self.status == "running":
            end = time.time()
        else:
            ends = [
                i.mtime_ns / 1e9
                for i in spec_file.fs.get_file_info(
                    [(self.loc / f).path for f in (results.TRIALS_FILE, CLAIM_FILE)]
                )
                if i.type == pafs.FileType.File
            ]
            end = max(ends) if ends else started
        return {"started": started, "duration_s": max(0.0, end - started)}

    def summary(self) -> dict[str, Any]:
        board = self.ranked()
        return {
            "name": self.name,
            "status": self.status,
            "counts": self.counts(),
            "trials": len(self.trials),
            "num_samples": self.num_samples,
            "metric": self.metric,
            "mode": self.mode,
            "best": self.best(board),
            **self.times(),
        }

    def leaderboard(self, board: pd.DataFrame, top: int = LEADERBOARD_TOP) -> dict[str, Any]:
        params = [c for c in self.trials.columns if c.startswith("param_")]
        varying = [c for c in params if self.trials[c].astype(str).nunique() > 1] or params
        cols = ["trial_id", "status", "epochs", *results.ranking_columns(self.metrics), *varying]
        head = board.head(top).reindex(columns=cols)
        return {
            "columns": [c.removeprefix("param_") for c in cols],
            "rows": [[_plain(v) for v in row] for row in head.itertuples(index=False)],
        }

    def progress(self) -> dict[str, Any]:
        t = self.trials
        status = t["status"].astype(str) if len(t) else pd.Series(dtype=str)
        running = t[status == "running"]
        ended = status.isin(["completed", "early_stopped", "diverged", "error"])
        done = int(ended.sum())
        out = {
            "done": done,
            "total": self.num_samples,
            "running": [
                {"trial_id": str(r.trial_id), "epoch": int(r.epochs)} for r in running.itertuples()
            ],
            "stopped_early": int((status == "early_stopped").sum()),
            "eta_s": None,
        }
        if self.status == "running" and done:
            elapsed = self.times()["duration_s"]
            out["eta_s"] = elapsed / done * max(0, self.num_samples - done)
        return out

    def curves(self, board: pd.DataFrame) -> dict[str, Any]:
        """Every trial's curve of the first metric, grouped by status into one line each
        (trials separated by nulls: one plotly trace per group draws 1,000 trials fast)."""
        h = self.history
        m = self.metric
        if h.empty or m not in h or "epoch" not in h:
            return {"metric": m, "groups": []}
        status = dict(
            zip(
                self.trials["trial_id"].astype(str), self.trials["status"].astype(str), strict=False
            )
        )
        h = h[["trial_id", "epoch", m]].copy()
        h["trial_id"] = h["trial_id"].astype(str)
        h[m] = pd.to_numeric(h[m], errors="coerce")
        h = h.sort_values(["trial_id", "epoch"], kind="stable")
        h["status"] = h["trial_id"].map(status).fillna("unfinished")
        best_id = str(board.iloc[0]["trial_id"]) if not board.empty else None
        groups = []
        for name, g in h.groupby("status", sort=True):
            ids = g["trial_id"].to_numpy()
            breaks = np.flatnonzero(ids[1:] != ids[:-1]) + 1
            x = np.insert(g["epoch"].to_numpy(dtype=float), breaks, np.nan)
            y = np.insert(g[m].to_numpy(dtype=float), breaks, np.nan)
            text = np.insert(ids.astype(object), breaks, None)
            groups.append(
                {"name": str(name), "x": _floats(x), "y": _floats(y), "text": text.tolist()}
            )
        if best_id is not None:
            b = h[h["trial_id"] == best_id]
            groups.append(
                {
                    "name": f"best ({best_id})",
                    "x": _floats(b["epoch"].to_numpy(dtype=float)),
                    "y": _floats(b[m].to_numpy(dtype=float)),
                    "text": [best_id] * len(b),
                    "best": True,
                }
            )
        return {"metric": m, "groups": groups}

    def stopping(self) -> dict[str, Any]:
        s = self.spec.get("scheduler") or {}
        name = s.get("name", schedulers.DEFAULT)
        rungs: list[float] = []
        try:
            cls = schedulers.SCHEDULERS.get(name, schedulers.FifoOptions)
            from dataclasses import fields

            options = cls(**{f.name: s[f.name] for f in fields(cls) if f.name in s})
            rungs = schedulers.rungs(name, options, self.max_epochs) or []
        except Exception:
            rungs = []
        epochs = pd.to_numeric(self.trials.get("epochs", pd.Series(dtype=float)), errors="coerce")
        marks = [r for r in rungs if r < self.max_epochs] + (
            [self.max_epochs] if self.max_epochs else []
        )
        reached = [{"epoch": _plain(r), "trials": int((epochs >= r).sum())} for r in marks]
        audit = None
        if self.audit is not None and not self.audit.empty:
            a = self.audit
            audit = {
                "columns": list(map(str, a.columns)),
                "rows": [[_plain(v) for v in row] for row in a.itertuples(index=False)],
            }
        return {
            "scheduler": name,
            "rungs": [_plain(r) for r in rungs],
            "reached": reached,
            "audit": audit,
        }

    def effects(self) -> list[dict[str, Any]]:
        """Each searched parameter against the trials' best metric (a scatter per parameter),
        on its domain's scale."""
        from caviar.space import Choice, Numeric, parse_domain

        col = f"best_{self.metric}"
        t = self.trials
        if t.empty or col not in t:
            return []
        ok = t[t["status"].astype(str).isin([*objective.RANKED, "running"])]
        out = []
        for name, raw in (self.spec.get("space") or {}).items():
            pcol = f"param_{name}"
            if pcol not in ok:
                continue
            try:
                domain = parse_domain(raw)
            except Exception:
                continue
            if not isinstance(domain, (Numeric, Choice)):
                continue
            y = pd.to_numeric(ok[col], errors="coerce")
            keep = y.notna()
            values = ok.loc[keep, pcol]
            out.append(
                {
                    "param": name,
                    "log": isinstance(domain, Numeric) and domain.scale == "log",
                    "categorical": isinstance(domain, Choice),
                    "x": [_plain(v) for v in values],
                    "y": _floats(y[keep].to_numpy(dtype=float)),
                    "text": ok.loc[keep, "trial_id"].astype(str).tolist(),
                }
            )
        return out

    def detail(self) -> dict[str, Any]:
        board = self.ranked()
        return {
            **self.summary(),
            "metrics": list(self.metrics),
            "modes": list(self.modes),
            "max_epochs": self.max_epochs,
            "claim": self.claim,
            "progress": self.progress(),
            "leaderboard": self.leaderboard(board),
            "curves": self.curves(board),
            "stopping": self.stopping(),
            "effects": self.effects(),
            "spec": self.spec_text,
        }

    def best_trial(self) -> dict[str, Any] | None:
        """The best trial: its config, value, epochs and curve (for the comparison page)."""
        board = self.ranked()
        if board.empty:
            return None
        row = board.iloc[0]
        tid = str(row["trial_id"])
        h = self.history[self.history["trial_id"].astype(str) == tid].sort_values("epoch")
        m = self.metric
        return {
            "trial_id": tid,
            "status": str(row["status"]),
            "epochs": _plain(row.get("epochs")),
            "value": self.best(board)["value"],
            "config": {
                c.removeprefix("param_"): _plain(row[c])
                for c in board.columns
                if c.startswith("param_")
            },
            "curve": {
                "x": _floats(h["epoch"].to_numpy(dtype=float)),
                "y": _floats(pd.to_numeric(h.get(m), errors="coerce").to_numpy(dtype=float))
                if m in h
                else [],
            },
        }


def _floats(a: np.ndarray) -> list[float | None]:
    """A float array as a JSON list, NaN and inf as null."""
    a = np.asarray(a, dtype=float)
    out = a.tolist()
    bad = np.flatnonzero(~np.isfinite(a))
    for i in bad:
        out[i] = None
    return out


# --- the answers -----------------------------------------------------------------------------

_ANSWERS = _Cache()


def _answer(root: Location, name: str, kind: str, make: Callable[[Sweep], Any]) -> Any:
    sweep = Sweep(root, name)
    return _ANSWERS.get((kind, sweep.loc.uri), sweep.stamp, lambda: make(sweep))


def sweep_detail(root: Location, name: str) -> dict[str, Any]:
    return _answer(root, name, "detail", Sweep.detail)


def sweep_detail_json(root: Location, name: str) -> tuple[str, bytes]:
    """(ETag, JSON) of `sweep_detail`, encoded once per change of the sweep's files."""

    def make(sweep: Sweep) -> tuple[str, bytes]:
        body = to_json(sweep.detail())
        return hashlib.sha1(body).hexdigest()[:16], body

    return _answer(root, name, "detail.json", make)


def sweep_summary(root: Location, name: str) -> dict[str, Any]:
    return _answer(root, name, "summary", Sweep.summary)


def sweeps(root: Location) -> list[dict[str, Any]]:
    out = []
    for name in sweep_names(root):
        try:
            out.append(sweep_summary(root, name))
        except NotFound:
            continue
        except Exception as e:  # one unreadable run directory never hides the others
            out.append({"name": name, "status": "unreadable", "error": f"{type(e).__name__}: {e}"})
    out.sort(key=lambda s: s.get("started") or 0, reverse=True)
    return out


def compare(root: Location, a: str, b: str) -> dict[str, Any]:
    sides = {}
    for key, name in (("a", a), ("b", b)):
        sweep = Sweep(root, name)
        sides[key] = {
            "name": name,
            "status": sweep.status,
            "metric": sweep.metric,
            "mode": sweep.mode,
            "best": _ANSWERS.get(("best", sweep.loc.uri), sweep.stamp, sweep.best_trial),
        }
    return sides


def importance(root: Location, name: str) -> dict[str, Any]:
    """`caviar.analysis.importance` of an ended sweep (a random forest: seconds on 1,000
    trials, so not while it runs); cached until its tables change."""
    sweep = Sweep(root, name)
    if sweep.status in ("running", "starting"):
        return {"importance": None, "reason": "computed once the sweep has ended"}

    def make() -> dict[str, Any]:
        from caviar import analysis
        from caviar.errors import CaviarError

        try:
            imp = analysis.importance(analysis.load(sweep.loc))
        except (CaviarError, ValueError) as e:
            return {"importance": None, "reason": str(e)}
        if imp.empty:
            return {"importance": None, "reason": "fewer than 5 ranked trials, or nothing varies"}
        return {"importance": [{"param": str(k), "value": _plain(v)} for k, v in imp.items()]}

    return _ANSWERS.get(("importance", sweep.loc.uri), sweep.stamp, make)


def to_json(data: Mapping[str, Any] | list[Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False, default=str).encode()
