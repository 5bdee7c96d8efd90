"""A finished sweep, read back from its run directory: tables, plots and the best model.

    from caviar import analysis

    run = analysis.load("caviar_runs/quickstart-20261123-170612")   # a path or a URI
    analysis.leaderboard(run, top=10)        # healthy trials, best first (as `caviar results`)
    analysis.plot_learning_curves(run)       # every plot returns a matplotlib Figure
    analysis.importance(run)                 # pandas Series, most important parameter first
    best = analysis.best(run)                # trial id, config, metric value, test_acc, checkpoint
    path = analysis.export_best(run, "models")   # one file: weights, architecture, config

Loading an exported model for inference (caviar and torch installed; no run directory, no Ray):

    from caviar.analysis import load_model
    model = load_model("models/quickstart-1a2b3c4d.pt")   # torch.nn.Module, in eval mode
    with torch.no_grad():
        predicted = model(x).argmax(1)

``x`` is a float32 tensor of shape (n, *shape) preprocessed as in training: the built-in tasks
standardize every feature with the training split's mean and standard deviation, so
``caviar.train.data.load(task, seed)`` gives splits ready to feed. The file is a plain
``torch.save`` dict: ``state_dict``, ``arch`` (what `caviar.train.models.build` takes),
``config``, ``metric``, ``value``, ``mode``, ``test_acc``, ``trial_id``, ``epoch``, ``spec``;
read it with ``torch.load(path, weights_only=True)``.

Everything here reads the Parquet tables and ``spec.yaml`` only, except `best` and
`export_best`, which also look into Ray's trial directory for checkpoints. Plots never raise
for lack of data: they return a Figure that says "no data" and why. Figures are built with
``matplotlib.figure.Figure``, not pyplot, so no backend is chosen or changed and no figure is
kept alive by pyplot; in Jupyter run ``%matplotlib inline`` once and a returned Figure shows.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from caviar import objective, results
from caviar.errors import CaviarError, RunDirError
from caviar.space import Choice, Domain, Fixed, Float, Int, parse_domain
from caviar.spec import parse_yaml
from caviar.storage import Location

if TYPE_CHECKING:
    import torch
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

HEALTHY = ("completed", "early_stopped")
OUTCOME_COLORS = {
    "completed": "#1f77b4",
    "stopped by ASHA": "#9a9a9a",
    "stopped early": "#9467bd",
    "diverged": "#d62728",
    "error": "#000000",
    "unfinished": "#2ca02c",
}
EXPORT_FORMAT = "caviar.model"
EXPORT_VERSION = 1
_REGION_COLUMNS = ["round", "param", "kind", "low", "high", "values"]


class ModelFileError(CaviarError):
    """A file given to `load_model` is not a model that `export_best` wrote."""


# --- loading ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Run:
    """One run directory's results. ``regions`` is empty unless the searcher was
    coarse_to_fine; ``spec`` is the resolved spec as written to spec.yaml."""

    run_dir: str
    trials: pd.DataFrame
    history: pd.DataFrame
    regions: pd.DataFrame
    spec: dict[str, Any]
    metric: str
    mode: str
    space: dict[str, Domain] = field(repr=False)
    """Every parameter's domain from spec.yaml, fixed ones included, in spec order."""

    @property
    def best_col(self) -> str:
        return f"best_{self.metric}"

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
    metric, mode = spec.get("metric"), spec.get("mode")
    if not metric or mode not in ("min", "max"):
        raise RunDirError(
            f"{loc.uri}: spec.yaml needs metric and mode (min or max), found metric={metric!r} "
            f"and mode={mode!r}"
        )
    space = {}
    for name, raw in (spec.get("space") or {}).items():
        try:
            space[name] = parse_domain(raw)
        except ValueError:
            space[name] = Fixed(raw)  # a form this version does not know: shown, not scaled
    return Run(
        loc.uri,
        _normalize_trials(trials, metric),
        _normalize_history(history, metric),
        regions,
        spec,
        metric,
        mode,
        space,
    )


def _no_results_message(loc: Location) -> str:
    if not loc.exists():
        return f"{loc.uri}: no such directory; pass the run directory that `caviar run` printed"
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


def _normalize_trials(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The columns every function here relies on, present with a usable type even in a sweep
    whose trials all failed (the metric columns are then all null)."""
    trials = trials.copy()
    for col, dtype in (("trial_id", "string"), ("status", "string"), ("round", "int64")):
        if col not in trials:
            trials[col] = pd.Series(dtype=dtype, index=trials.index)
    if "epochs" not in trials:
        trials["epochs"] = pd.Series(0, dtype="int64", index=trials.index)
    for col in (metric, f"best_{metric}", "test_acc", "wall_time_s"):
        if col in trials or col in (metric, f"best_{metric}"):
            trials[col] = pd.to_numeric(trials.get(col), errors="coerce").astype("float64")
    return trials


def _normalize_history(history: pd.DataFrame, metric: str) -> pd.DataFrame:
    history = history.copy()
    if "trial_id" not in history:
        history["trial_id"] = pd.Series(dtype="string", index=history.index)
    if "epoch" not in history:
        history["epoch"] = pd.Series(dtype="int64", index=history.index)
    if metric not in history:
        history[metric] = np.nan
    history[metric] = pd.to_numeric(history[metric], errors="coerce").astype("float64")
    return history


# --- tables ----------------------------------------------------------------------------------


def leaderboard(run: Run, top: int | None = None) -> pd.DataFrame:
    """Healthy trials (completed or stopped early) ranked by their best metric, best first."""
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


def _healthy(run: Run) -> pd.DataFrame:
    t = run.trials
    return t[t["status"].isin(HEALTHY) & t[run.best_col].notna()]


def _better_first(run: Run, values: pd.Series) -> pd.Series:
    return values.sort_values(ascending=run.mode == "min")


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
    sched = run.spec.get("scheduler") or {}
    if sched.get("name") != "asha" or run.max_epochs < 1:
        return []
    grace, factor = float(sched.get("grace_period", 1)), float(sched.get("reduction_factor", 4))
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

    Method: a scikit-learn ``RandomForestRegressor`` (200 trees) is fitted on the completed and
    early-stopped trials, one feature per searched parameter (log10 of the value for log
    domains, log10(1 - value) for one_minus_log ones, the index in the list for choices),
    predicting ``best_<metric>``; a parameter's importance is its permutation importance: the
    mean drop in the forest's R^2 when that feature's values are shuffled (``n_repeats``
    times). Sum-to-one is not implied; values near 0 (or below) mean "no detectable effect".

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
            x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            scale = getattr(domain, "scale", "linear")
            with np.errstate(divide="ignore", invalid="ignore"):
                if scale == "log":
                    x = np.log10(x)
                elif scale == "one_minus_log":
                    x = np.log10(1.0 - x)
            cols[name] = x
    x = pd.DataFrame(cols, index=trials.index)
    return x.loc[:, x.nunique() > 1]


def _importance_frame(run: Run, n_repeats: int = 10, seed: int = 0) -> pd.DataFrame:
    empty = pd.DataFrame(columns=["importance", "std"], dtype="float64")
    healthy = _healthy(run)
    if len(healthy) < 5:
        return empty
    x = _feature_matrix(run, healthy)
    x = x.replace([np.inf, -np.inf], np.nan).fillna(x.median())
    y = healthy[run.best_col].to_numpy(dtype=float)
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


# --- plots -----------------------------------------------------------------------------------


def _figure(nrows: int = 1, ncols: int = 1, width: float = 7.0, height: float = 4.2) -> tuple:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _no_data(title: str, why: str) -> Figure:
    fig, axes = _figure(height=3.0)
    ax = axes[0, 0]
    ax.text(0.5, 0.5, f"no data\n{why}", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_axis_off()
    return fig


def _grid(n: int, ncols: int = 3, cell: tuple[float, float] = (3.4, 2.9)) -> tuple:
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = _figure(nrows, ncols, cell[0] * ncols, cell[1] * nrows + 0.6)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_axis_off()
    return fig, flat[:n]


def _choice_positions(domain: Choice, values: pd.Series) -> np.ndarray:
    index = {_key(v): i for i, v in enumerate(domain.values)}
    return np.array([index.get(_key(v), np.nan) for v in values], dtype=float)


def _key(value: Any) -> Any:
    # Parquet gives numpy scalars back; choices in spec.yaml are plain Python values.
    value = value.item() if isinstance(value, np.generic) else value
    return (type(value) is bool, value)


def _positions(domain: Domain, values: pd.Series) -> np.ndarray:
    if isinstance(domain, Choice):
        return _choice_positions(domain, values)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)


def _one_minus_log(x: Any) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.log10(np.clip(1.0 - np.asarray(x, dtype=float), 1e-12, None))


def _one_minus_log_inv(y: Any) -> Any:
    return 1.0 - 10.0 ** (-np.asarray(y, dtype=float))


def _set_scale(ax: Axes, domain: Domain, axis: str = "x") -> None:
    """The axis on the domain's scale: log for log domains, 1 - value on a log scale for
    one_minus_log ones, one tick per value for choices."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    set_scale = ax.set_xscale if axis == "x" else ax.set_yscale
    ax_obj = ax.xaxis if axis == "x" else ax.yaxis
    if isinstance(domain, Choice):
        ax_obj.set_major_locator(FixedLocator(range(len(domain.values))))
        ax_obj.set_ticklabels([str(v) for v in domain.values])
        (ax.set_xlim if axis == "x" else ax.set_ylim)(-0.5, len(domain.values) - 0.5)
        return
    scale = getattr(domain, "scale", "linear")
    if scale == "log":
        set_scale("log")
        low, high = getattr(domain, "low", 1.0), getattr(domain, "high", 10.0)
        if low > 0 and high / low < 300:
            # Under ~2 decades matplotlib labels minor ticks too, and they collide.
            ax_obj.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax_obj.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax_obj.set_minor_formatter(NullFormatter())
    elif scale == "one_minus_log":
        set_scale("function", functions=(_one_minus_log, _one_minus_log_inv))
        ticks = [1 - 10.0**-k for k in range(0, 8)]
        low, high = getattr(domain, "low", 0.0), getattr(domain, "high", 0.999)
        inside = [v for v in ticks if low <= v <= high] or [low, high]
        ax_obj.set_major_locator(FixedLocator(sorted({low, *inside, high})))
        ax_obj.set_ticklabels([f"{v:.4g}" for v in sorted({low, *inside, high})])


def _scale_note(domain: Domain) -> str:
    scale = getattr(domain, "scale", "linear")
    return {"log": " (log)", "one_minus_log": " (log of 1 - x)"}.get(scale, "")


def _jitter(n: int, width: float = 0.12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-width, width, n)


def _outcome_legend(fig: Figure, present: Sequence[str], counts: pd.Series | None = None) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D(
            [],
            [],
            color=OUTCOME_COLORS.get(o, "#555555"),
            marker="o",
            linestyle="-",
            label=f"{o} ({counts[o]})" if counts is not None else o,
        )
        for o in OUTCOME_COLORS
        if o in present
    ]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)


def plot_learning_curves(run: Run, metric: str | None = None) -> Figure:
    """The metric against epoch for every trial, coloured by outcome; the best trial in black,
    ASHA's rungs as dotted lines."""
    from matplotlib.ticker import MaxNLocator

    metric = metric or run.metric
    title = f"{metric} by epoch"
    h = run.history
    if metric not in h or h[metric].notna().sum() == 0:
        return _no_data(title, f"no trial reported {metric}")
    outcome = dict(zip(run.trials["trial_id"].astype(str), outcomes(run), strict=True))
    board = leaderboard(run, top=1)
    best_id = str(board["trial_id"].iloc[0]) if len(board) else None
    fig, axes = _figure(width=7.5, height=4.6)
    ax = axes[0, 0]
    order = {"stopped by ASHA": 0, "stopped early": 1, "diverged": 2, "completed": 3}
    groups = sorted(
        h.sort_values("epoch").groupby(h["trial_id"].astype(str)),
        key=lambda g: order.get(outcome.get(g[0], ""), 0),
    )
    for trial_id, g in groups:
        o = outcome.get(trial_id, "completed")
        ax.plot(
            g["epoch"],
            g[metric],
            color=OUTCOME_COLORS.get(o, "#555555"),
            alpha=0.5 if o == "stopped by ASHA" else 0.8,
            linewidth=1.0,
            marker="o" if len(g) == 1 else None,
            markersize=3,
        )
    if best_id is not None and best_id in h["trial_id"].astype(str).values:
        g = h[h["trial_id"].astype(str) == best_id].sort_values("epoch")
        ax.plot(g["epoch"], g[metric], color="black", linewidth=2.2, label=f"best: {best_id}")
        ax.legend(loc="best", frameon=False)
    for rung in asha_rungs(run):
        if rung < run.max_epochs:
            ax.axvline(rung, color="#bbbbbb", linestyle=":", linewidth=1, zorder=0)
    ax.set_xlabel("epoch" + (" (dotted: ASHA rungs)" if asha_rungs(run) else ""))
    ax.set_ylabel(metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{title}, {h['trial_id'].nunique()} trials ({run.mode} is better)")
    counts = outcomes(run).value_counts()
    present = [o for o in counts.index if o in set(outcome[t] for t, _ in groups if t in outcome)]
    _outcome_legend(fig, present, counts)
    return fig


def plot_param_effects(run: Run) -> Figure:
    """The best metric of each healthy trial against each searched hyperparameter, on the
    parameter's scale (log axes for log domains, one column per value for choices)."""
    title = f"{run.best_col} by hyperparameter"
    healthy = _healthy(run)
    names = run.searched
    if healthy.empty or not names:
        why = "no healthy trial" if healthy.empty else "no searched hyperparameter"
        return _no_data(title, why)
    fig, axes = _grid(len(names))
    outcome = outcomes(run).reindex(healthy.index)
    best_idx = _better_first(run, healthy[run.best_col]).index[0]
    for ax, name in zip(axes, names, strict=True):
        domain = run.space[name]
        x = _positions(domain, healthy[f"param_{name}"])
        if isinstance(domain, Choice):
            x = x + _jitter(len(x))
        colors = [OUTCOME_COLORS.get(o, "#555555") for o in outcome]
        ax.scatter(x, healthy[run.best_col], c=colors, s=18, alpha=0.8, edgecolors="none")
        i = healthy.index.get_loc(best_idx)
        ax.scatter([x[i]], [healthy[run.best_col].iloc[i]], marker="*", s=140, c="black")
        _set_scale(ax, domain)
        ax.set_xlabel(name + _scale_note(domain))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(run.best_col)
    fig.suptitle(f"{title} (star: best trial)")
    _outcome_legend(fig, list(outcome.unique()), outcome.value_counts())
    return fig


def plot_parallel_coordinates(run: Run) -> Figure:
    """One line per healthy trial through every searched hyperparameter (each axis spans its
    domain, on its scale) to the best metric; brighter is better."""
    from matplotlib import colormaps
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    title = "parallel coordinates"
    healthy = _healthy(run)
    names = run.searched
    if healthy.empty or not names:
        why = "no healthy trial" if healthy.empty else "no searched hyperparameter"
        return _no_data(title, why)
    cols = []
    for name in names:
        domain = run.space[name]
        cols.append([_unit(domain, v) for v in healthy[f"param_{name}"]])
    y = healthy[run.best_col].to_numpy(dtype=float)
    lo, hi = float(np.min(y)), float(np.max(y))
    cols.append(list((y - lo) / (hi - lo)) if hi > lo else [0.5] * len(y))
    data = np.array(cols, dtype=float).T  # trials x axes
    norm = Normalize(lo, hi if hi > lo else lo + 1e-12)
    cmap = colormaps["viridis" if run.mode == "max" else "viridis_r"]
    order = np.argsort(y if run.mode == "max" else -y)  # the best drawn last, on top
    xs = np.arange(data.shape[1])
    segments = [np.column_stack([xs, row]) for row in data[order]]
    fig, axes = _figure(width=max(6.0, 1.4 * len(xs) + 2), height=4.6)
    ax = axes[0, 0]
    ax.add_collection(
        LineCollection(segments, colors=cmap(norm(y[order])), linewidths=1.4, alpha=0.85)
    )
    for i in xs:
        ax.axvline(i, color="#444444", linewidth=0.8)
    labels = [*names, run.best_col]
    for i, name in enumerate(names):
        low, high = _domain_ends(run.space[name])
        ax.text(i, -0.04, low, ha="center", va="top", fontsize=8)
        ax.text(i, 1.04, high, ha="center", va="bottom", fontsize=8)
    ax.text(xs[-1], -0.04, f"{lo:.4g}", ha="center", va="top", fontsize=8)
    ax.text(xs[-1], 1.04, f"{hi:.4g}", ha="center", va="bottom", fontsize=8)
    ax.set_xlim(-0.3, xs[-1] + 0.3)
    ax.set_ylim(-0.15, 1.15)
    ax.set_xticks(xs, [n + _scale_note(run.space.get(n, Fixed(None))) for n in labels])
    ax.tick_params(axis="x", labelrotation=20)
    ax.set_yticks([])
    for side in ("left", "right", "top", "bottom"):
        ax.spines[side].set_visible(False)
    from matplotlib.cm import ScalarMappable

    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label=run.best_col, shrink=0.8)
    ax.set_title(f"{title}: {len(healthy)} healthy trials")
    return fig


def _unit(domain: Domain, value: Any) -> float:
    """The value's place in its domain, 0 to 1 on the domain's own scale."""
    try:
        value = value.item() if isinstance(value, np.generic) else value
        if isinstance(domain, Choice):
            return float(_choice_positions(domain, pd.Series([value]))[0] + 0.5) / len(
                domain.values
            )
        u = domain.to_unit(value)
        return float(min(max(u, 0.0), 1.0))
    except (ValueError, TypeError, ZeroDivisionError):
        return math.nan


def _domain_ends(domain: Domain) -> tuple[str, str]:
    if isinstance(domain, Choice):
        return str(domain.values[0]), str(domain.values[-1])
    if isinstance(domain, (Float, Int)):
        return f"{domain.low:.3g}", f"{domain.high:.3g}"
    return "", ""


def plot_importance(run: Run) -> Figure:
    """Permutation importance of each searched hyperparameter for the best metric (a random
    forest fitted on the healthy trials; see `importance`), with its spread over shuffles."""
    title = "hyperparameter importance"
    frame = _importance_frame(run)
    if frame.empty:
        return _no_data(title, "needs at least 5 healthy trials and a searched parameter")
    fig, axes = _figure(width=6.5, height=0.5 * len(frame) + 1.8)
    ax = axes[0, 0]
    frame = frame.iloc[::-1]
    ax.barh(frame.index, frame["importance"], xerr=frame["std"], color="#1f77b4", alpha=0.85)
    ax.axvline(0, color="#444444", linewidth=0.8)
    ax.set_xlabel(f"drop in R^2 of a random forest predicting {run.best_col} when shuffled")
    ax.set_title(f"{title} ({len(_healthy(run))} trials; permutation importance)")
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_rung_survival(run: Run) -> Figure:
    """Left: how many trials reached each ASHA rung. Right: epochs and (estimated) time
    trained, against every trial running to max_epochs."""
    from matplotlib.ticker import MaxNLocator

    title = "ASHA: trials reaching each rung"
    summary = asha_summary(run)
    if summary.trials == 0:
        return _no_data(title, "no trial trained an epoch")
    fig, axes = _figure(1, 2, width=10.0, height=4.0)
    left, right = axes[0]
    rungs = asha_rungs(run)
    if rungs:
        labels = [f"{r:g}" for r in summary.rungs["epoch"]]
        bars = left.bar(labels, summary.rungs["trials"], color="#1f77b4", alpha=0.85)
        left.bar_label(bars, padding=2)
        left.set_xlabel("epoch (the last is max_epochs)")
        left.set_ylabel("trials that trained this far")
        left.set_ylim(0, summary.trials * 1.15)
        left.yaxis.set_major_locator(MaxNLocator(integer=True))
        left.set_title(title)
    else:
        sched = (run.spec.get("scheduler") or {}).get("name", "?")
        left.text(
            0.5,
            0.5,
            f"no ASHA in this run (scheduler: {sched})",
            ha="center",
            va="center",
            transform=left.transAxes,
        )
        left.set_axis_off()
    cats = ["epochs", "time"]
    trained = [summary.epochs_trained, summary.seconds_trained]
    full = [summary.epochs_full, summary.seconds_full]
    share = [100 * a / b if b else 0.0 for a, b in zip(trained, full, strict=True)]
    bars = right.barh(cats, [100] * 2, color="#dddddd", label="every trial to max_epochs")
    right.barh(cats, share, color="#1f77b4", alpha=0.85, label="trained")
    notes = [
        f"{summary.epochs_trained:,} of {summary.epochs_full:,} epochs",
        f"{_duration(summary.seconds_trained)} of ~{_duration(summary.seconds_full)}",
    ]
    for bar, note, s in zip(bars, notes, share, strict=True):
        right.text(
            2,
            bar.get_y() + bar.get_height() / 2,
            f"{note}: {100 - s:.0f}% saved",
            va="center",
            fontsize=9,
        )
    right.set_xlim(0, 100)
    right.set_xlabel("% of running every trial to max_epochs")
    right.set_title("what stopping early saved")
    right.legend(loc="lower right", frameon=False, fontsize=8, bbox_to_anchor=(1.0, -0.35))
    return fig


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def plot_regions(run: Run) -> Figure:
    """Coarse-to-fine: each round's interval for every parameter, on the parameter's scale,
    with that round's trials as points coloured by their best metric."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    title = "coarse-to-fine regions by round"
    regions = run.regions
    if regions.empty:
        searcher = (run.spec.get("searcher") or {}).get("name", "?")
        return _no_data(
            title, f"this run has no regions (searcher: {searcher}); coarse_to_fine writes them"
        )
    params = [p for p in dict.fromkeys(regions["param"]) if (regions["param"] == p).any()]
    params = [p for p in params if not (regions[regions["param"] == p]["kind"] == "value").all()]
    if not params:
        return _no_data(title, "every parameter is fixed")
    rounds = sorted(int(r) for r in regions["round"].unique())
    fig, axes = _grid(len(params), cell=(3.6, 0.55 * len(rounds) + 1.9))
    t = run.trials
    y_all = t[run.best_col]
    finite = y_all[np.isfinite(y_all)]
    norm = Normalize(finite.min(), finite.max()) if len(finite) else Normalize(0, 1)
    cmap = colormaps["viridis" if run.mode == "max" else "viridis_r"]
    for ax, param in zip(axes, params, strict=True):
        rows = regions[regions["param"] == param].set_index("round")
        domain = run.space.get(param) or _domain_from_region(rows.iloc[0])
        for r in rounds:
            if r not in rows.index:
                continue
            row = rows.loc[r]
            if row["kind"] == "choice" or isinstance(domain, Choice):
                allowed = _region_values(row)
                xs = (
                    _choice_positions(domain, pd.Series(allowed))
                    if isinstance(domain, Choice)
                    else np.arange(len(allowed), dtype=float)
                )
                ax.scatter(xs, [r] * len(xs), marker="s", s=260, color="#1f77b4", alpha=0.18)
            elif row["kind"] == "value":
                value = _region_values(row)[0]
                ax.scatter([value], [r], marker="|", s=300, color="#1f77b4")
            else:
                ax.hlines(r, row["low"], row["high"], linewidth=10, color="#1f77b4", alpha=0.25)
                ax.plot([row["low"], row["high"]], [r, r], "|", color="#1f77b4", markersize=14)
            in_round = t[t["round"] == r]
            col = f"param_{param}"
            if col in in_round and len(in_round):
                x = _positions(domain, in_round[col])
                x = x + (_jitter(len(x)) if isinstance(domain, Choice) else 0.0)
                y = r + _jitter(len(x), 0.15, seed=r)
                vals = in_round[run.best_col].to_numpy(dtype=float)
                ok = np.isfinite(vals)
                ax.scatter(x[ok], y[ok], c=cmap(norm(vals[ok])), s=16, edgecolors="none")
                ax.scatter(x[~ok], y[~ok], c="#d62728", marker="x", s=16, linewidths=1)
        _set_scale(ax, domain)
        ax.set_yticks(rounds, [f"round {r}" for r in rounds])
        ax.set_ylim(rounds[-1] + 0.6, rounds[0] - 0.6)
        ax.set_xlabel(param + _scale_note(domain))
        ax.grid(axis="x", alpha=0.3)
    fig.colorbar(ScalarMappable(norm, cmap), ax=axes, label=run.best_col, shrink=0.7)
    fig.suptitle(f"{title} (bands: each round's region; points: its trials)")
    return fig


def _domain_from_region(row: pd.Series) -> Domain:
    if row["kind"] in ("choice", "value"):
        values = _region_values(row)
        return Choice(tuple(values)) if row["kind"] == "choice" else Fixed(values[0])
    try:
        return parse_domain({row["kind"]: [row["low"], row["high"]]})
    except ValueError:
        return Float(float(row["low"]), float(row["high"]))


def _region_values(row: pd.Series) -> list[Any]:
    import json

    raw = row.get("values")
    return json.loads(raw) if isinstance(raw, str) else []


def plot_metric_by_round(run: Run) -> Figure:
    """The best metric of every healthy trial by round, with each round's median."""
    title = f"{run.best_col} by round"
    healthy = _healthy(run)
    if healthy.empty:
        return _no_data(title, "no healthy trial")
    rounds = sorted(int(r) for r in healthy["round"].unique())
    fig, axes = _figure(width=max(4.5, 1.3 * len(rounds) + 2.5), height=4.0)
    ax = axes[0, 0]
    outcome = outcomes(run).reindex(healthy.index)
    x = healthy["round"].to_numpy(dtype=float) + _jitter(len(healthy))
    colors = [OUTCOME_COLORS.get(o, "#555555") for o in outcome]
    ax.scatter(x, healthy[run.best_col], c=colors, s=20, alpha=0.8, edgecolors="none")
    med = healthy.groupby("round")[run.best_col].median()
    best = healthy.groupby("round")[run.best_col].agg(run.mode)
    ax.hlines(med.values, med.index - 0.3, med.index + 0.3, color="black", label="median")
    ax.plot(best.index, best.values, "k*", markersize=10, label=f"round's {run.mode}")
    ax.set_xticks(rounds, [f"round {r}" for r in rounds])
    ax.set_ylabel(run.best_col)
    ax.legend(frameon=False, loc="best")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title)
    _outcome_legend(fig, list(outcome.unique()), outcome.value_counts())
    return fig


def plot_lr_batch_interaction(run: Run, x: str = "lr", y: str = "batch_size") -> Figure:
    """The best metric over learning rate x batch size: left, every healthy trial placed by
    both and coloured by the metric; right, the metric against learning rate, one series per
    batch size. `x` and `y` name any other two searched parameters."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    title = f"{x} x {y}"
    missing = [p for p in (x, y) if p not in run.searched]
    if missing:
        searched = ", ".join(run.searched) or "nothing"
        return _no_data(title, f"needs {x} and {y} both searched; this run searched {searched}")
    healthy = _healthy(run)
    if healthy.empty:
        return _no_data(title, "no healthy trial")
    dx, dy = run.space[x], run.space[y]
    px, py = _positions(dx, healthy[f"param_{x}"]), _positions(dy, healthy[f"param_{y}"])
    metric = healthy[run.best_col].to_numpy(dtype=float)
    fig, axes = _figure(1, 2, width=10.5, height=4.2)
    left, right = axes[0]
    cmap = colormaps["viridis" if run.mode == "max" else "viridis_r"]
    norm = Normalize(metric.min(), max(metric.max(), metric.min() + 1e-12))
    order = np.argsort(metric if run.mode == "max" else -metric)
    jy = _jitter(len(py), 0.1) if isinstance(dy, Choice) else 0.0
    left.scatter(px[order], (py + jy)[order], c=cmap(norm(metric[order])), s=36, edgecolors="none")
    _set_scale(left, dx, "x")
    _set_scale(left, dy, "y")
    left.set_xlabel(x + _scale_note(dx))
    left.set_ylabel(y + _scale_note(dy))
    left.grid(alpha=0.3)
    fig.colorbar(ScalarMappable(norm, cmap), ax=left, label=run.best_col)
    left.set_title(f"{title}: {len(healthy)} trials")
    if isinstance(dy, Choice):
        palette = colormaps["tab10"]
        for i, value in enumerate(dy.values):
            sel = py == i
            if not sel.any():
                continue
            k = np.argsort(px[sel])
            right.plot(
                px[sel][k],
                metric[sel][k],
                "o",
                color=palette(i % 10),
                label=str(value),
                markersize=5,
                alpha=0.85,
            )
        right.legend(title=y, frameon=False, fontsize=8)
    else:
        right.scatter(px, metric, c=py, cmap="plasma", s=24)
    _set_scale(right, dx, "x")
    right.set_xlabel(x + _scale_note(dx))
    right.set_ylabel(run.best_col)
    right.grid(alpha=0.3)
    right.set_title(f"{run.best_col} against {x}, by {y}")
    return fig


PLOTS = (
    plot_learning_curves,
    plot_param_effects,
    plot_parallel_coordinates,
    plot_importance,
    plot_rung_survival,
    plot_regions,
    plot_metric_by_round,
    plot_lr_batch_interaction,
)
"""Every plot, in the order the report shows them."""


# --- the best trial and its model ------------------------------------------------------------


@dataclass(frozen=True)
class Best:
    """The best healthy trial by the spec's metric and mode."""

    trial_id: str
    config: dict[str, Any]
    """Every hyperparameter the trial got, fixed ones included."""
    metric: str
    value: float
    """The trial's best value of `metric`."""
    mode: str
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


def best(run: Run) -> Best:
    """The best trial; RunDirError when no trial finished with a metric value."""
    board = leaderboard(run, top=1)
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
    best_epoch = None
    if len(h):
        i = h[run.metric].idxmax() if run.mode == "max" else h[run.metric].idxmin()
        best_epoch = int(h.loc[i, "epoch"])
    checkpoint, checkpoint_epoch = _pick_checkpoint(run, trial_id, best_epoch)
    test_acc = row.get("test_acc")
    return Best(
        trial_id=trial_id,
        config=config,
        metric=run.metric,
        value=float(row[run.best_col]),
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


def export_best(run: Run, out_dir: str | Path) -> Path:
    """Write the best trial's model to ``<out_dir>/<run name>-<trial id>.pt``, one file that
    `load_model` reads without the run directory. Built-in train function only."""
    b = best(run)
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
    payload = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "state_dict": ckpt["model"],
        "arch": _plain(dict(ckpt["arch"])),
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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{run.name}-{b.trial_id}.pt"
    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_model(path: str | Path) -> torch.nn.Module:
    """The network in a file `export_best` wrote, weights loaded, in eval mode (on the CPU)."""
    import torch

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
    return model.eval()
