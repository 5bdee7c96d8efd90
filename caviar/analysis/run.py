"""Loading a run directory: the `Run` object, its tables normalized, and its spec."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from caviar import objective, results, rundir, schedulers
from caviar.errors import RunDirError
from caviar.objective import Mode
from caviar.space import Domain, Fixed, parse_space
from caviar.spec import parse_yaml
from caviar.storage import Location

_REGION_COLUMNS = ["round", "param", "kind", "low", "high", "values"]


@dataclass(frozen=True, eq=False)
class Run:
    """One run directory's results. ``regions`` is empty unless the searcher was
    coarse_to_fine; ``spec`` is the resolved spec as written to spec.yaml. ``metric`` and
    ``mode`` are the first metric's of a sweep of several (``metrics``, ``modes``)."""

    run_dir: str
    trials: pd.DataFrame
    history: pd.DataFrame
    regions: pd.DataFrame
    spec: dict[str, Any]
    metric: str
    mode: Mode
    space: dict[str, Domain] = field(repr=False)
    """Every parameter's domain from spec.yaml, fixed ones included, in spec order."""

    @property
    def best_col(self) -> str:
        return f"best_{self.metric}"

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric the sweep optimized: one, or several (a multi-objective sweep)."""
        return objective.as_tuple(self.spec.get("metric") or self.metric)

    @property
    def modes(self) -> tuple[Mode, ...]:
        return objective.as_tuple(self.spec.get("mode") or self.mode)  # type: ignore[return-value]

    @property
    def searched(self) -> list[str]:
        """Searched (not fixed) parameters that have a ``param_`` column, in spec order."""
        return [
            n
            for n, d in self.space.items()
            if not isinstance(d, Fixed) and f"param_{n}" in self.trials
        ]

    @property
    def max_epochs(self) -> int:
        return int((self.spec.get("train") or {}).get("max_epochs") or 0)

    @property
    def scheduler(self) -> dict[str, Any]:
        """The spec's scheduler section, with its scheduler's option defaults
        (`caviar.schedulers.SCHEDULERS`) for what it leaves out, as the sweep itself read it;
        no section means the default scheduler."""
        given = dict(self.spec.get("scheduler") or {})
        name = given.get("name", schedulers.DEFAULT)
        options = schedulers.SCHEDULERS.get(name, schedulers.FifoOptions)()
        return {"name": name, **asdict(options)} | given

    @property
    def scheduler_options(self) -> Any:
        """`scheduler` as its options dataclass (keys this caviar does not know left out)."""
        section = self.scheduler
        cls = schedulers.SCHEDULERS.get(section["name"], schedulers.FifoOptions)
        return cls(**{f.name: section[f.name] for f in fields(cls)})

    @property
    def name(self) -> str:
        return Location.of(self.run_dir).name


def load(run_dir: str | Path | Location) -> Run:
    """Read a run directory (a local path or a URI such as s3://bucket/runs/name)."""
    loc = run_dir if isinstance(run_dir, Location) else Location.of(run_dir)
    if not (loc / results.TRIALS_FILE).is_file():
        raise RunDirError(_no_results_message(loc))
    for name in (results.TRIALS_FILE, results.HISTORY_FILE, results.REGIONS_FILE):
        if name != results.REGIONS_FILE or (loc / name).is_file():
            results.check_schema(loc / name)
    trials = results.load_trials(loc)
    history = results.load_history(loc)
    regions = (
        pq.read_table((loc / results.REGIONS_FILE).path, filesystem=loc.fs).to_pandas()
        if (loc / results.REGIONS_FILE).is_file()
        else pd.DataFrame(columns=_REGION_COLUMNS)
    )
    spec = read_spec(loc)
    metrics, modes = objective.as_tuple(spec.get("metric")), objective.as_tuple(spec.get("mode"))
    if (
        not all(metrics)
        or len(metrics) != len(modes)
        or not all(mode in get_args(Mode) for mode in modes)
    ):
        raise RunDirError(
            f"{loc.uri}: spec.yaml needs metric and mode (min or max), found "
            f"metric={spec.get('metric')!r} and mode={spec.get('mode')!r}"
        )
    (metric, *_), (mode, *_) = metrics, modes
    parsed, _ = parse_space(spec.get("space") or {})
    space = dict(parsed.domains)
    for name, raw in (spec.get("space") or {}).items():
        space.setdefault(name, Fixed(raw))  # a form this version does not know: shown, not scaled
    return Run(
        loc.uri,
        _normalize_trials(trials, metrics),
        _normalize_history(history, metrics),
        regions,
        spec,
        metric,
        mode,
        space,
    )


def _no_results_message(loc: Location) -> str:
    if not loc.exists():
        return rundir.no_such_directory(loc)
    if (loc / results.SPEC_FILE).is_file():
        return (
            f"{loc.uri}: no results yet (no {results.TRIALS_FILE}): the sweep is still running "
            f"or was interrupted before writing them"
        )
    return (
        f"{loc.uri}: not a caviar run directory (no {results.TRIALS_FILE} or "
        f"{results.SPEC_FILE}); pass the run directory that `caviar run` printed"
    )


def read_spec(loc: Location) -> dict[str, Any]:
    """A run's resolved spec, as plain data."""
    # spec.yaml is written first; the tables carry the same text in their metadata.
    if (loc / results.SPEC_FILE).is_file():
        text = (loc / results.SPEC_FILE).read_text()
    else:
        meta = pq.read_schema((loc / results.TRIALS_FILE).path, filesystem=loc.fs).metadata
        text = (meta or {}).get(b"caviar.spec", b"").decode()
    spec = parse_yaml(text) if text else None
    if not isinstance(spec, dict):
        raise RunDirError(
            f"{loc.uri}: no spec: {results.SPEC_FILE} is missing and the Parquet metadata has "
            "no caviar.spec; copy spec.yaml back from where the sweep ran"
        )
    return spec


def _normalize_trials(trials: pd.DataFrame, metrics: tuple[str, ...]) -> pd.DataFrame:
    """The columns every function here relies on, present with a usable type even in a sweep
    whose trials all failed (the metric columns are then all null)."""
    trials = trials.copy()
    for col, dtype in (("trial_id", "string"), ("status", "string"), ("round", "int64")):
        if col not in trials:
            trials[col] = pd.Series(dtype=dtype, index=trials.index)
    if "epochs" not in trials:
        trials["epochs"] = pd.Series(0, dtype="int64", index=trials.index)
    own = [c for m in metrics for c in (m, f"best_{m}")]
    for col in (*own, "test_acc", "wall_time_s"):
        if col in trials or col in own:
            trials[col] = pd.to_numeric(trials.get(col), errors="coerce").astype("float64")
    return trials


def _normalize_history(history: pd.DataFrame, metrics: tuple[str, ...]) -> pd.DataFrame:
    history = history.copy()
    if "trial_id" not in history:
        history["trial_id"] = pd.Series(dtype="string", index=history.index)
    if "epoch" not in history:
        history["epoch"] = pd.Series(dtype="int64", index=history.index)
    for metric in metrics:
        if metric not in history:
            history[metric] = np.nan
        history[metric] = pd.to_numeric(history[metric], errors="coerce").astype("float64")
    return history
