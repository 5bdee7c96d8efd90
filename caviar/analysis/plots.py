"""Every plot of a run. Each returns a ``matplotlib.figure.Figure`` (built without pyplot, so
no backend is chosen and no figure is kept alive) and never raises for lack of data: it returns
a Figure that says "no data" and why. The plots that mark the best trial or compare trials by
their best metric take the trials that rank, as the leaderboard does (see
`caviar.analysis.tables`); parameters are drawn on their domain's own scale."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from caviar import objective
from caviar.analysis.run import Run
from caviar.analysis.scales import (
    _choice_positions,
    _domain_ends,
    _positions,
    _scale_note,
    _set_scale,
    _unit,
)
from caviar.analysis.tables import (
    STOPPED_BY_SCHEDULER,
    _importance_frame,
    _ranked,
    audit,
    leaderboard,
    outcomes,
    scheduler_label,
    scheduler_rungs,
    stopping_summary,
)
from caviar.space import Choice, Domain, Fixed, Float, parse_domain

if TYPE_CHECKING:
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

OUTCOME_COLORS = {
    "completed": "#1f77b4",
    STOPPED_BY_SCHEDULER: "#9a9a9a",
    "stopped early": "#9467bd",
    "diverged": "#d62728",
    "error": "#000000",
    "unfinished": "#2ca02c",
}


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


def _better_brighter(run: Run) -> Colormap:
    """viridis, reversed when smaller is better: the brighter colour is always the better
    value."""
    from matplotlib import colormaps

    return colormaps["viridis_r" if objective.sign(run.mode) > 0 else "viridis"]


def plot_learning_curves(run: Run, metric: str | None = None) -> Figure:
    """The metric against epoch for every trial, coloured by outcome; the best trial in black,
    the scheduler's rungs (caviar's or ASHA's) as dotted lines."""
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
    order = {STOPPED_BY_SCHEDULER: 0, "stopped early": 1, "diverged": 2, "completed": 3}
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
            alpha=0.5 if o == STOPPED_BY_SCHEDULER else 0.8,
            linewidth=1.0,
            marker="o" if len(g) == 1 else None,
            markersize=3,
        )
    if best_id is not None and best_id in h["trial_id"].astype(str).values:
        g = h[h["trial_id"].astype(str) == best_id].sort_values("epoch")
        ax.plot(g["epoch"], g[metric], color="black", linewidth=2.2, label=f"best: {best_id}")
        ax.legend(loc="best", frameon=False)
    rungs = [r for r in scheduler_rungs(run) if r < run.max_epochs]
    for rung in rungs:
        ax.axvline(rung, color="#bbbbbb", linestyle=":", linewidth=1, zorder=0)
    ax.set_xlabel("epoch" + (f" (dotted: rungs of {scheduler_label(run)})" if rungs else ""))
    ax.set_ylabel(metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{title}, {h['trial_id'].nunique()} trials ({run.mode} is better)")
    counts = outcomes(run).value_counts()
    present = [o for o in counts.index if o in set(outcome[t] for t, _ in groups if t in outcome)]
    _outcome_legend(fig, present, counts)
    return fig


def plot_param_effects(run: Run) -> Figure:
    """The best metric of each trial that ranks against each searched hyperparameter, on the
    parameter's scale (log axes for log domains, one column per value for choices)."""
    title = f"{run.best_col} by hyperparameter"
    ranked = _ranked(run)
    names = run.searched
    if ranked.empty or not names:
        why = "no healthy trial" if ranked.empty else "no searched hyperparameter"
        return _no_data(title, why)
    fig, axes = _grid(len(names))
    outcome = outcomes(run).reindex(ranked.index)
    best_idx = leaderboard(run, top=1).index[0]
    for ax, name in zip(axes, names, strict=True):
        domain = run.space[name]
        x = _positions(domain, ranked[f"param_{name}"])
        if isinstance(domain, Choice):
            x = x + _jitter(len(x))
        colors = [OUTCOME_COLORS.get(o, "#555555") for o in outcome]
        ax.scatter(x, ranked[run.best_col], c=colors, s=18, alpha=0.8, edgecolors="none")
        i = ranked.index.get_loc(best_idx)
        ax.scatter([x[i]], [ranked[run.best_col].iloc[i]], marker="*", s=140, c="black")
        _set_scale(ax, domain)
        ax.set_xlabel(name + _scale_note(domain))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(run.best_col)
    fig.suptitle(f"{title} (star: best trial)")
    _outcome_legend(fig, list(outcome.unique()), outcome.value_counts())
    return fig


def plot_parallel_coordinates(run: Run) -> Figure:
    """One line per trial that ranks through every searched hyperparameter (each axis spans its
    domain, on its scale) to the best metric; brighter is better."""
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    title = "parallel coordinates"
    ranked = _ranked(run)
    names = run.searched
    if ranked.empty or not names:
        why = "no healthy trial" if ranked.empty else "no searched hyperparameter"
        return _no_data(title, why)
    cols = []
    for name in names:
        domain = run.space[name]
        cols.append([_unit(domain, v) for v in ranked[f"param_{name}"]])
    y = ranked[run.best_col].to_numpy(dtype=float)
    lo, hi = float(np.min(y)), float(np.max(y))
    cols.append(list((y - lo) / (hi - lo)) if hi > lo else [0.5] * len(y))
    data = np.array(cols, dtype=float).T  # trials x axes
    norm = Normalize(lo, hi if hi > lo else lo + 1e-12)
    cmap = _better_brighter(run)
    order = np.argsort(-objective.sign(run.mode) * y)  # the best drawn last, on top
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
    ax.set_title(f"{title}: {len(ranked)} trials")
    return fig


def plot_importance(run: Run) -> Figure:
    """Permutation importance of each searched hyperparameter for the best metric (a random
    forest fitted on the trials that rank; see `importance`), with its spread over shuffles."""
    title = "hyperparameter importance"
    frame = _importance_frame(run)
    if frame.empty:
        return _no_data(title, "needs at least 5 ranked trials and a searched parameter")
    fig, axes = _figure(width=6.5, height=0.5 * len(frame) + 1.8)
    ax = axes[0, 0]
    frame = frame.iloc[::-1]
    ax.barh(frame.index, frame["importance"], xerr=frame["std"], color="#1f77b4", alpha=0.85)
    ax.axvline(0, color="#444444", linewidth=0.8)
    ax.set_xlabel(f"drop in R^2 of a random forest predicting {run.best_col} when shuffled")
    ax.set_title(f"{title} ({len(_ranked(run))} trials; permutation importance)")
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_rung_survival(run: Run) -> Figure:
    """Left: how many trials reached each of the scheduler's rungs (caviar's or ASHA's; with
    caviar's stopping audit, the rungs it never trusted to stop trials pale). Right: epochs and
    (estimated) time trained, against every trial running to max_epochs."""
    from matplotlib.ticker import MaxNLocator

    label = scheduler_label(run)
    title = f"{label}: trials reaching each rung"
    summary = stopping_summary(run)
    if summary.trials == 0:
        return _no_data(title, "no trial trained an epoch")
    fig, axes = _figure(1, 2, width=10.0, height=4.0)
    left, right = axes[0]
    if scheduler_rungs(run):
        labels = [f"{r:g}" for r in summary.rungs["epoch"]]
        checked = audit(run)
        untrusted = set() if checked is None else set(checked["rung"][~checked["trusted"]])
        alpha = [0.3 if r in untrusted else 0.85 for r in summary.rungs["epoch"]]
        bars = left.bar(labels, summary.rungs["trials"], color="#1f77b4")
        for bar, a in zip(bars, alpha, strict=True):
            bar.set_alpha(a)
        left.bar_label(bars, padding=2)
        pale = "; pale: not trusted to stop trials" if untrusted else ""
        left.set_xlabel(f"epoch (the last is max_epochs{pale})")
        left.set_ylabel("trials that trained this far")
        left.set_ylim(0, summary.trials * 1.15)
        left.yaxis.set_major_locator(MaxNLocator(integer=True))
        left.set_title(title)
    else:
        sched = run.scheduler["name"]
        left.text(
            0.5,
            0.5,
            f"{label} has no rungs (scheduler: {sched})",
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
    cmap = _better_brighter(run)
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
    """The best metric of every trial that ranks, by round, with each round's median."""
    title = f"{run.best_col} by round"
    ranked = _ranked(run)
    if ranked.empty:
        return _no_data(title, "no healthy trial")
    rounds = sorted(int(r) for r in ranked["round"].unique())
    fig, axes = _figure(width=max(4.5, 1.3 * len(rounds) + 2.5), height=4.0)
    ax = axes[0, 0]
    outcome = outcomes(run).reindex(ranked.index)
    x = ranked["round"].to_numpy(dtype=float) + _jitter(len(ranked))
    colors = [OUTCOME_COLORS.get(o, "#555555") for o in outcome]
    ax.scatter(x, ranked[run.best_col], c=colors, s=20, alpha=0.8, edgecolors="none")
    med = ranked.groupby("round")[run.best_col].median()
    best = ranked.groupby("round")[run.best_col].agg(lambda v: objective.best(v, run.mode))
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
    """The best metric over learning rate x batch size: left, every trial that ranks placed by
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
    ranked = _ranked(run)
    if ranked.empty:
        return _no_data(title, "no healthy trial")
    dx, dy = run.space[x], run.space[y]
    px, py = _positions(dx, ranked[f"param_{x}"]), _positions(dy, ranked[f"param_{y}"])
    metric = ranked[run.best_col].to_numpy(dtype=float)
    fig, axes = _figure(1, 2, width=10.5, height=4.2)
    left, right = axes[0]
    cmap = _better_brighter(run)
    norm = Normalize(metric.min(), max(metric.max(), metric.min() + 1e-12))
    order = np.argsort(-objective.sign(run.mode) * metric)
    jy = _jitter(len(py), 0.1) if isinstance(dy, Choice) else 0.0
    left.scatter(px[order], (py + jy)[order], c=cmap(norm(metric[order])), s=36, edgecolors="none")
    _set_scale(left, dx, "x")
    _set_scale(left, dy, "y")
    left.set_xlabel(x + _scale_note(dx))
    left.set_ylabel(y + _scale_note(dy))
    left.grid(alpha=0.3)
    fig.colorbar(ScalarMappable(norm, cmap), ax=left, label=run.best_col)
    left.set_title(f"{title}: {len(ranked)} trials")
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


def plot_pareto_front(run: Run) -> Figure:
    """A run of several metrics: the first two, one against the other, for every trial that
    ranks (by each metric's last value); the Pareto front highlighted and connected."""
    title = "Pareto front"
    if len(run.metrics) < 2:
        return _no_data(title, f"this run optimizes one metric, {run.metric}")
    board = leaderboard(run)
    (x, y), (mx, my) = run.metrics[:2], run.modes[:2]
    if board.empty:
        return _no_data(title, f"no trial finished with a value of {', '.join(run.metrics)}")
    on = board["pareto"].astype(bool)
    front, rest = board[on].sort_values(x, kind="stable"), board[~on]
    fig, axes = _figure(width=7.0, height=4.8)
    ax = axes[0, 0]
    ax.scatter(rest[x], rest[y], s=22, color="#9a9a9a", label=f"dominated ({len(rest)})")
    ax.plot(front[x], front[y], "-o", color="#d62728", label=f"Pareto front ({len(front)})")
    for axis, name in (("x", x), ("y", y)):
        values = board[name].to_numpy(dtype=float)
        if values.min() > 0 and values.max() > 30 * values.min():  # several decades: log
            getattr(ax, f"set_{axis}scale")("log")
    ax.set_xlabel(f"{x} ({mx} is better)")
    ax.set_ylabel(f"{y} ({my} is better)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", frameon=False)
    by = "" if len(run.metrics) == 2 else f" (front by all {len(run.metrics)} metrics)"
    ax.set_title(f"{title}: {len(front)} of {len(board)} trials{by}")
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
"""Every plot, in the order the report shows them (after `plot_pareto_front`, for a run of
several metrics)."""
