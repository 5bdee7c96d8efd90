"""Tables of a run: the leaderboard, status counts and outcomes, ASHA's rungs and what stopping
early saved, and hyperparameter importance.

Every table and plot that ranks trials, highlights the best or fits on trials takes the same
ones: those whose status ranks (`caviar.objective.RANKED`: completed, stopped early, and the
unfinished trials of an interrupted sweep) and that have a best metric value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from caviar import objective, results
from caviar.analysis.run import Run
from caviar.analysis.scales import _choice_positions, _unit
from caviar.space import Choice


def leaderboard(run: Run, top: int | None = None) -> pd.DataFrame:
    """The trials that rank (`caviar.objective.RANKED`) by their best metric, best first (as
    `caviar results`)."""
    return results.leaderboard(run.trials, run.metric, run.mode, top)


def status_counts(run: Run) -> pd.Series:
    """Trials per status, every status listed (0 where none)."""
    order = list(objective.STATUSES)
    counts = run.trials["status"].astype(str).value_counts()
    return counts.reindex(order + sorted(set(counts.index) - set(order)), fill_value=0)


def outcomes(run: Run) -> pd.Series:
    """Each trial's outcome, finer than status: early stops are split into those ASHA made
    ("stopped by ASHA") and the others ("stopped early": patience, or the sweep ending)."""
    status = run.trials["status"].astype(str)
    by_asha = run.trials.get("stopped_by_asha", pd.Series(False, index=run.trials.index))
    by_asha = by_asha.fillna(False).astype(bool)
    out = status.map(
        {
            "completed": "completed",
            "early_stopped": "stopped early",
            "diverged": "diverged",
            "error": "error",
        }
    ).fillna(status)
    return out.mask((status == "early_stopped") & by_asha, "stopped by ASHA")


def _ranked(run: Run) -> pd.DataFrame:
    """The trials that rank, in table order (`leaderboard` sorts them)."""
    t = run.trials
    return t[t["status"].isin(objective.RANKED) & t[run.best_col].notna()]


# --- ASHA ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AshaSummary:
    """How many trials reached each rung, and what stopping trials early saved.

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
    epochs_saved_by_asha: int
    seconds_trained: float
    seconds_full: float
    seconds_saved_by_asha: float

    @property
    def epochs_saved(self) -> int:
        return self.epochs_full - self.epochs_trained

    @property
    def seconds_saved(self) -> float:
        return self.seconds_full - self.seconds_trained


def asha_rungs(run: Run) -> list[float]:
    """ASHA's milestones: grace_period * reduction_factor**k up to max_epochs, as Ray Tune
    places them (one bracket); empty when the scheduler is not ASHA."""
    sched = run.scheduler
    if sched["name"] != "asha" or run.max_epochs < 1:
        return []
    grace, factor = float(sched["grace_period"]), float(sched["reduction_factor"])
    return results.asha_rungs(grace, factor, run.max_epochs)


def asha_summary(run: Run) -> AshaSummary:
    t = run.trials[run.trials["epochs"] > 0]
    max_epochs = run.max_epochs
    marks = [r for r in asha_rungs(run) if r < max_epochs] + [max_epochs]
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
    asha = (outcomes(run).reindex(t.index) == "stopped by ASHA").to_numpy()
    return AshaSummary(
        rungs=rungs,
        trials=len(t),
        epochs_trained=int(epochs.sum()),
        epochs_full=int(epochs.sum() + missing.sum()),
        epochs_saved_by_asha=int(missing[asha].sum()),
        seconds_trained=float(np.nansum(seconds)),
        seconds_full=float(np.nansum(seconds) + np.nansum(per_epoch * missing)),
        seconds_saved_by_asha=float(np.nansum((per_epoch * missing)[asha])),
    )


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
    trials it is noisy; a trial ASHA stopped has a lower best metric partly because it trained
    fewer epochs, so the parameters that got trials stopped look important; parameters that
    only matter together share their importance; a narrow searched range shows little effect
    even for a parameter that matters elsewhere. Empty when there are fewer than 5 usable
    trials or nothing searched varies.
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
