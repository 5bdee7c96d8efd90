"""What a sweep optimizes and how its trials end: the one definition of the direction of
optimization (``min`` / ``max``), of dominance and the Pareto front when a sweep optimizes
several metrics, and of the trial statuses, for the searchers, the Ray seam, the tables and the
analysis."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

Mode = Literal["min", "max"]

Status = Literal["completed", "early_stopped", "diverged", "error", "unfinished"]
STATUSES: tuple[Status, ...] = ("completed", "early_stopped", "diverged", "error", "unfinished")
"""Every status in trials.parquet. ``unfinished`` only in the tables of a running or
interrupted sweep: the trial had not ended when they were written."""

HEALTHY: tuple[Status, ...] = ("completed", "early_stopped")
"""Trials that ended without a fault: what a searcher learns from."""

RANKED: tuple[Status, ...] = ("completed", "early_stopped", "unfinished")
"""Trials that rank in leaderboards, `caviar best` and the plots: healthy ones, and those of an
interrupted sweep whose reports so far are real. Diverged and errored trials never rank."""


RAY_KEYS = frozenset(
    {
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
    }
)
"""Keys Ray Tune (and caviar's session) set on every result: bookkeeping, not metrics, left out
of history.parquet."""

RESERVED = RAY_KEYS | {
    "time_total_s",
    "status",
    "round",
    "epochs",
    "stopped_by_scheduler",
    "stopped_by_asha",
    "rung",
    "wall_time_s",
    "error",
    "error_type",
    "pareto",
}
"""Names a sweep's metric cannot have: Ray's keys, whose values Ray sets itself, and the columns
trials.parquet fills for each trial (its status, its error), which a metric of the same name
would overwrite or be overwritten by."""


def sign(mode: Mode) -> float:
    """+1 for min, -1 for max: ``sign(mode) * value`` is smaller for better values."""
    return 1.0 if mode == "min" else -1.0


def better(a: float, b: float, mode: Mode) -> bool:
    """Whether `a` is strictly better than `b`."""
    return sign(mode) * a < sign(mode) * b


def best(values: Iterable[float | None], mode: Mode) -> float | None:
    """The best finite value, or None if there is none."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return min(finite) if mode == "min" else max(finite)


def as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """A spec's metric or mode as a tuple: one name, or one per objective."""
    return (value,) if isinstance(value, str) else tuple(value or ())


def dominates(a: Sequence[float], b: Sequence[float], modes: Sequence[Mode]) -> bool:
    """Whether `a` is at least as good as `b` on every objective and better on one."""
    pairs = [(sign(m) * x, sign(m) * y) for x, y, m in zip(a, b, modes, strict=True)]
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


def pareto_front(points: Sequence[Sequence[float] | None], modes: Sequence[Mode]) -> list[bool]:
    """Which points no other point dominates: the Pareto front. A point that is None or has a
    missing or non-finite value is never on it and dominates nothing; equal points on the
    front are all on it."""
    oriented = {
        i: [sign(m) * v for v, m in zip(p, modes, strict=True)]
        for i, p in enumerate(points)
        if p is not None and all(v is not None and math.isfinite(v) for v in p)
    }
    lower: list[Mode] = ["min"] * len(modes)
    on, front = [False] * len(points), []
    # In lexicographic order every dominator of a point comes before it, and a dominated
    # dominator is dominated by an earlier point of the front: comparing each point with the
    # front found so far is enough.
    for i in sorted(oriented, key=oriented.__getitem__):
        if not any(dominates(q, oriented[i], lower) for q in front):
            front.append(oriented[i])
            on[i] = True
    return on
