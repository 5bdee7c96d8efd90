"""Tables of a run: the leaderboard, status counts and outcomes, the scheduler's rungs, what
stopping early saved and caviar's stopping audit, and hyperparameter importance.

Every table and plot that ranks trials, highlights the best or fits on trials takes the same
ones: those whose status ranks (`caviar.objective.RANKED`: completed, stopped early, and the
unfinished trials of an interrupted sweep) and that have a best metric value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from caviar import objective, results, schedulers
from caviar.analysis.run import Run
from caviar.analysis.scales import _choice_positions, _unit
from caviar.space import Choice
from caviar.stopping import StoppingOptions
from caviar.storage import Location

STOPPED_BY_SCHEDULER = "stopped early by the scheduler"
"""The outcome of a trial the sweep's scheduler stopped before max_epochs."""

SCHEDULER_LABELS = {
    "caviar": "caviar's scheduler",
    "asha": "ASHA",
    "hyperband": "HyperBand",
    "median": "the median stopping rule",
    "pbt": "PBT",
    "fifo": "FIFO",
}
"""How texts and plot titles name each scheduler."""


def leaderboard(run: Run, top: int | None = None) -> pd.DataFrame:
    """The trials that rank (`caviar.objective.RANKED`) by their best metric, best first (as
    `caviar results`); with several metrics, the Pareto front first (`results.leaderboard`)."""
    return results.leaderboard(run.trials, run.metrics, run.modes, top)


def pareto_front(run: Run) -> pd.DataFrame:
    """The trials on the Pareto front of a run of several metrics, by the first metric (as
    `caviar best` lists them); empty for a run of one metric."""
    if len(run.metrics) < 2:
        return run.trials.iloc[:0]
    board = leaderboard(run)
    return board[board["pareto"].astype(bool)]


def status_counts(run: Run) -> pd.Series:
    """Trials per status, every status listed (0 where none)."""
    order = list(objective.STATUSES)
    counts = run.trials["status"].astype(str).value_counts()
    return counts.reindex(order + sorted(set(counts.index) - set(order)), fill_value=0)


def outcomes(run: Run) -> pd.Series:
    """Each trial's outcome, finer than status: early stops are split into those the sweep's
    scheduler made ("stopped early by the scheduler") and the others ("stopped early":
    patience, or the sweep ending)."""
    status = run.trials["status"].astype(str)
    out = status.map(
        {
            "completed": "completed",
            "early_stopped": "stopped early",
            "diverged": "diverged",
            "error": "error",
        }
    ).fillna(status)
    return out.mask((status == "early_stopped") & _stopped_by_scheduler(run), STOPPED_BY_SCHEDULER)


def _stopped_by_scheduler(run: Run) -> pd.Series:
    """``stopped_by_scheduler``; runs written before caviar had other schedulers have only
    ``stopped_by_asha``, with the same meaning."""
    t = run.trials
    col = "stopped_by_scheduler" if "stopped_by_scheduler" in t else "stopped_by_asha"
    return t.get(col, pd.Series(False, index=t.index)).fillna(False).astype(bool)


def _ranked(run: Run) -> pd.DataFrame:
    """The trials that rank, in table order (`leaderboard` sorts them)."""
    t = run.trials
    return t[t["status"].isin(objective.RANKED) & t[run.best_col].notna()]


# --- early stopping --------------------------------------------------------------------------


def scheduler_label(run: Run) -> str:
    """The sweep's scheduler as texts name it: "caviar's scheduler", "ASHA", ..."""
    name = str(run.scheduler["name"])
    return SCHEDULER_LABELS.get(name, name)


@dataclass(frozen=True)
class StoppingSummary:
    """How many trials reached each of the scheduler's rungs, and what stopping trials early
    saved.

    ``seconds_full`` is an estimate: each stopped trial's mean epoch time for the epochs it did
    not train."""

    rungs: pd.DataFrame
    """One row per rung: ``epoch`` and ``trials`` (how many trained at least that far). The
    last row is max_epochs (trials that completed)."""
    trials: int
    """Trials that trained at least one epoch."""
    epochs_trained: int
    epochs_full: int
    """Epochs if every trial stopped early had run on to max_epochs."""
    epochs_saved_by_scheduler: int
    seconds_trained: float
    seconds_full: float
    seconds_saved_by_scheduler: float

    @property
    def epochs_saved(self) -> int:
        return self.epochs_full - self.epochs_trained

    @property
    def seconds_saved(self) -> float:
        return self.seconds_full - self.seconds_trained

    # The names from when ASHA was the only scheduler.
    @property
    def epochs_saved_by_asha(self) -> int:
        return self.epochs_saved_by_scheduler

    @property
    def seconds_saved_by_asha(self) -> float:
        return self.seconds_saved_by_scheduler


def scheduler_rungs(run: Run) -> list[float]:
    """The epochs at which the sweep's scheduler may stop trials (`caviar.schedulers.rungs`):
    caviar's rungs (below max_epochs) or ASHA's milestones (one bracket, up to max_epochs, as
    Ray Tune places them); empty for schedulers without rungs."""
    if run.max_epochs < 1:
        return []
    name = str(run.scheduler["name"])
    return schedulers.rungs(name, run.scheduler_options, run.max_epochs) or []


def stopping_summary(run: Run) -> StoppingSummary:
    t = run.trials[run.trials["epochs"] > 0]
    max_epochs = run.max_epochs
    marks = [r for r in scheduler_rungs(run) if r < max_epochs] + [max_epochs]
    rungs = pd.DataFrame(
        {"epoch": marks, "trials": [int((t["epochs"] >= r).sum()) for r in marks]},
        columns=["epoch", "trials"],
    )
    seconds = _trial_seconds(run).reindex(t["trial_id"]).to_numpy(dtype=float)
    epochs = t["epochs"].to_numpy(dtype=float)
    per_epoch = np.divide(seconds, epochs, out=np.zeros_like(seconds), where=epochs > 0)
    # A completed trial ran its full course, even a one-shot objective that reports once.
    completed = (t["status"] == "completed").fillna(False).to_numpy(dtype=bool)
    missing = np.where(completed, 0, np.clip(max_epochs - epochs, 0, None))
    by_scheduler = (outcomes(run).reindex(t.index) == STOPPED_BY_SCHEDULER).to_numpy()
    return StoppingSummary(
        rungs=rungs,
        trials=len(t),
        epochs_trained=int(epochs.sum()),
        epochs_full=int(epochs.sum() + missing.sum()),
        epochs_saved_by_scheduler=int(missing[by_scheduler].sum()),
        seconds_trained=float(np.nansum(seconds)),
        seconds_full=float(np.nansum(seconds) + np.nansum(per_epoch * missing)),
        seconds_saved_by_scheduler=float(np.nansum((per_epoch * missing)[by_scheduler])),
    )


# The names from when ASHA was the only scheduler; notebooks and users call them.
AshaSummary = StoppingSummary
asha_rungs = scheduler_rungs
asha_summary = stopping_summary


# --- caviar's stopping audit -----------------------------------------------------------------

_AUDIT_COUNTS = ("reached", "stopped", "stopped_hopeless", "spared_by_noise", "pairs")
_AUDIT_FLOATS = ("agreement", "reference", "noise")
_AUDIT_COLUMNS = (
    "rung",
    "reached",
    "stopped",
    "stopped_hopeless",
    "spared_by_noise",
    "agreement",
    "ranked_by",
    "pairs",
    "reference",
    "trusted",
    "noise",
    "warning",
)


def audit(run: Run) -> pd.DataFrame | None:
    """caviar's stopping audit (audit.parquet; the columns are `caviar.stopping`'s
    ``Stopping.audit``): one row per rung with the trials that reached it, stopped there (and
    of those, as hopeless) and were spared by the noise band, the rank agreement measured
    with a higher level and whether it was trusted, and a warning where trials were stopped at
    a rung whose agreement later fell below trust. None when the run has none (its scheduler
    is not caviar's)."""
    path = Location.of(run.run_dir) / results.AUDIT_FILE
    if not path.is_file():
        return None
    results.check_schema(path)
    frame = pq.read_table(path.path, filesystem=path.fs).to_pandas()
    for col in _AUDIT_COLUMNS:
        if col not in frame:
            frame[col] = None
    frame["rung"] = pd.to_numeric(frame["rung"], errors="coerce")
    for col in _AUDIT_COUNTS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    for col in _AUDIT_FLOATS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    frame["trusted"] = frame["trusted"].fillna(False).astype(bool)
    frame["warning"] = frame["warning"].astype(object).where(frame["warning"].notna(), None)
    return frame[[*_AUDIT_COLUMNS, *(c for c in frame if c not in _AUDIT_COLUMNS)]]


def audit_warnings(run: Run) -> list[str]:
    """The audit's warnings, each with its rung: "rung 3: 4 trials stopped at a rung whose
    agreement is now 0.61 (< trust 0.8)"; empty without an audit or a warning."""
    frame = audit(run)
    return [] if frame is None else _warnings(frame)


def _warnings(frame: pd.DataFrame) -> list[str]:
    return [f"rung {r:g}: {w}" for r, w in zip(frame["rung"], frame["warning"], strict=True) if w]


def audit_verdict(run: Run) -> str:
    """One sentence: what caviar's rule did over the whole sweep; empty without an audit."""
    frame = audit(run)
    return "" if frame is None else _verdict(run, frame)


def _verdict(run: Run, frame: pd.DataFrame) -> str:
    label, n = scheduler_label(run), len(run.trials)
    trust = getattr(run.scheduler_options, "trust", StoppingOptions.trust)
    stopped = int(frame["stopped"].sum())
    if stopped:
        return (
            f"{label} stopped {stopped} of {n} trials early, at rungs whose rank agreement was "
            f">= {trust:g}"
        )
    if not frame["trusted"].any():
        return (
            f"{label} stopped none of {n} trials early: no rung's rank agreement reached "
            f"{trust:g}, so every rung stayed a grace period"
        )
    return (
        f"{label} stopped none of {n} trials early: at its trusted rungs no trial was below "
        "the cut by more than the metric's noise"
    )


def audit_text(run: Run) -> str:
    """The audit as a short plain-text table for a terminal (rung, reached, stopped, of those
    stopped as hopeless, agreement, what it ranks by, trusted), a line per warning and the
    verdict (`audit_verdict`); empty without an audit."""
    frame = audit(run)
    if frame is None:
        return ""
    cells = [("rung", "reached", "stopped", "hopeless", "agreement", "ranked by", "trusted")]
    for row in frame.itertuples(index=False):
        hopeless = "-" if pd.isna(row.stopped_hopeless) else f"{row.stopped_hopeless}"
        agreement = "-" if pd.isna(row.agreement) else f"{row.agreement:.2f}"
        ranked_by = row.ranked_by if isinstance(row.ranked_by, str) else "-"
        trusted = "yes" if row.trusted else "no"
        cells.append(
            (
                f"{row.rung:g}",
                f"{row.reached}",
                f"{row.stopped}",
                hopeless,
                agreement,
                ranked_by,
                trusted,
            )
        )
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines += [f"warning: {w}" for w in _warnings(frame)]
    return "\n".join([*lines, _verdict(run, frame)])


def _trial_seconds(run: Run) -> pd.Series:
    """Training seconds per trial: the sum of reported epoch_seconds where the train function
    reports them (the built-in one does), else Ray's time_total_s (wall_time_s)."""
    h = run.history
    if "epoch_seconds" in h and h["epoch_seconds"].notna().any():
        return h.groupby(h["trial_id"].astype(str))["epoch_seconds"].sum(min_count=1)
    t = run.trials
    return pd.Series(
        t.get("wall_time_s", pd.Series(np.nan, index=t.index)).to_numpy(dtype=float),
        index=t["trial_id"].astype(str),
    )


# --- importance ------------------------------------------------------------------------------


def importance(run: Run, n_repeats: int = 10, seed: int = 0) -> pd.Series:
    """How much each searched hyperparameter explains the best metric, most important first.

    Method: a scikit-learn ``RandomForestRegressor`` (200 trees) is fitted on the trials that
    rank (completed, stopped early, unfinished), one feature per searched parameter (the
    value's unit coordinate on its domain's own scale, `caviar.space.Numeric.to_unit`: linear
    in log(value) for log domains, in log(1 - value) for one_minus_log ones; the index in the
    list for choices), predicting ``best_<metric>``; a parameter's importance is its
    permutation importance: the mean drop in the forest's R^2 when that feature's values are
    shuffled (``n_repeats`` times). Sum-to-one is not implied; values near 0 (or below) mean
    "no detectable effect".

    Limits: it is measured on the same trials the forest was fitted on (there are too few to
    hold some out), so it describes this sweep rather than predicting; with fewer than ~30
    trials it is noisy; a trial stopped early has a lower best metric partly because it
    trained fewer epochs, so the parameters that got trials stopped look important; parameters
    that only matter together share their importance; a narrow searched range shows little
    effect even for a parameter that matters elsewhere. Empty when there are fewer than 5
    usable trials or nothing searched varies.
    """
    frame = _importance_frame(run, n_repeats, seed)
    return frame["importance"] if not frame.empty else pd.Series(dtype="float64", name="importance")


def _feature_matrix(run: Run, trials: pd.DataFrame) -> pd.DataFrame:
    cols = {}
    for name in run.searched:
        values = trials[f"param_{name}"]
        domain = run.space[name]
        if isinstance(domain, Choice):
            cols[name] = _choice_positions(domain, values)
        else:
            # Not clipped: a widened coarse-to-fine round samples past the user's bounds.
            cols[name] = np.array([_unit(domain, v, clip=False) for v in values], dtype=float)
    x = pd.DataFrame(cols, index=trials.index)
    return x.loc[:, x.nunique() > 1]


def _importance_frame(run: Run, n_repeats: int = 10, seed: int = 0) -> pd.DataFrame:
    empty = pd.DataFrame(columns=["importance", "std"], dtype="float64")
    ranked = _ranked(run)
    if len(ranked) < 5:
        return empty
    x = _feature_matrix(run, ranked)
    x = x.replace([np.inf, -np.inf], np.nan).fillna(x.median())
    y = ranked[run.best_col].to_numpy(dtype=float)
    if x.shape[1] == 0 or np.ptp(y) == 0:
        return empty
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    forest = RandomForestRegressor(n_estimators=200, min_samples_leaf=2, random_state=seed)
    forest.fit(x.to_numpy(), y)
    perm = permutation_importance(
        forest, x.to_numpy(), y, n_repeats=n_repeats, random_state=seed, n_jobs=1
    )
    out = pd.DataFrame(
        {"importance": perm.importances_mean, "std": perm.importances_std}, index=x.columns
    )
    out.index.name = "param"
    return out.sort_values("importance", ascending=False)
