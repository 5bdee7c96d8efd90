"""What a sweep optimizes and how its trials end: the one definition of the direction of
optimization (``min`` / ``max``) and of the trial statuses, for the searchers, the Ray seam,
the tables and the analysis."""

from __future__ import annotations

import math
from collections.abc import Iterable
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
