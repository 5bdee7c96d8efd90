"""The searcher interface.

A searcher decides which configurations a sweep spends its budget on. It knows nothing of Ray:
`caviar.driver` adapts it to Ray Tune, and tests and benchmarks drive it directly.

Contract:

- The driver builds it once per sweep as ``cls(space, metric, mode, num_samples, seed,
  options)`` where ``options`` is the searcher's own frozen ``Options`` dataclass (validated
  from the spec by `caviar.spec`). A sweep of several metrics passes ``metric`` and ``mode``
  as tuples, one entry per metric, and only to a searcher whose ``MULTI_OBJECTIVE`` is true
  (`caviar.spec` refuses the others); it learns from `Outcome.objectives`.
- ``suggest(trial_id)`` is called whenever a trial slot is free. It returns the complete
  config for that trial (every name in the space, fixed values included), or ``None`` for
  "nothing yet, ask again later" (for example while a round is still running). It is called
  at most once per trial id, and at most ``num_samples`` times with a config returned.
- ``on_trial_complete(trial_id, outcome)`` is called once for every suggested trial when it
  ends, whatever the reason (see `Outcome`).
- ``round_of(trial_id)`` gives the round a trial was suggested in (0 for searchers without
  rounds).
- The searcher owns all of its state. ``state_dict()`` returns it as plain picklable data and
  ``load_state_dict(state)`` restores it into a freshly built searcher, after which the
  restored searcher proposes exactly what the original would have.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from caviar import objective
from caviar.objective import Mode, Status
from caviar.space import Space


@dataclass(frozen=True)
class Outcome:
    """How a trial ended.

    ``value`` is the last reported value of the sweep's metric and ``best`` the best by the
    sweep's mode (both None if the trial never reported); ``epoch`` is the last epoch reported.
    An early-stopped trial carries the value at the epoch ASHA stopped it; a diverged or
    errored trial may carry values from before the fault but should rank behind every healthy
    trial. With several metrics, ``value`` and ``best`` are the first metric's and ``values``
    holds each metric's value at the last epoch (empty for one metric).
    """

    status: Status
    value: float | None = None
    best: float | None = None
    epoch: int = 0
    values: tuple[float | None, ...] = ()

    @property
    def usable(self) -> bool:
        return self.status in objective.HEALTHY and _finite(self.value)

    @property
    def objectives(self) -> tuple[float, ...] | None:
        """What a multi-objective searcher learns from: every metric's value at the last
        epoch (as Optuna takes a completed trial's), or None, a failed trial, when the trial
        ended in a fault or misses a metric."""
        if self.status in objective.HEALTHY and self.values and all(map(_finite, self.values)):
            return tuple(float(v) for v in self.values)  # type: ignore[arg-type]
        return None


def _finite(x: float | None) -> bool:
    return isinstance(x, numbers.Real) and math.isfinite(x)  # a reported string is no number


@dataclass(frozen=True)
class NoOptions:
    """For searchers without options of their own."""


class Searcher(ABC):
    """Proposes configurations and learns from finished trials. See the module docstring."""

    Options: ClassVar[type] = NoOptions
    MULTI_OBJECTIVE: ClassVar[bool] = False
    """Whether it can search a sweep of several metrics (see the module docstring)."""

    def __init__(
        self,
        space: Space,
        metric: str | tuple[str, ...],
        mode: Mode | tuple[Mode, ...],
        num_samples: int,
        seed: int = 0,
        options: Any = None,
    ):
        self.space = space
        self.metric = metric
        self.mode = mode
        self.num_samples = num_samples
        self.seed = seed
        self.options = options if options is not None else self.Options()

    @abstractmethod
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """The config for a new trial, or None to be asked again later."""

    def on_trial_complete(self, trial_id: str, outcome: Outcome) -> None:  # noqa: B027
        """Learn from a finished trial. The default ignores it."""

    def round_of(self, trial_id: str) -> int:
        return 0

    def observe(self, config: dict[str, Any], outcome: Outcome) -> None:  # noqa: B027
        """Learn from a trial this searcher did not suggest (a warm start). Default: ignore."""

    def regions(self) -> list[dict[str, Any]]:
        """The space searched in each round, as ``{"round": r, "space": {name: raw domain}}``;
        empty for searchers without rounds."""
        return []

    @classmethod
    def summary(cls, space: Space, options: Any, num_samples: int) -> str:
        """A line for `caviar validate` about what this searcher will do."""
        return ""

    @classmethod
    def check(cls, space: Space, options: Any, num_samples: int) -> list[str]:
        """Problems with using this searcher on `space`, as spec messages (validation time)."""
        return []

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """All state, as plain picklable data."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def sign(self, value: float) -> float:
        """The value oriented so that lower is better."""
        return objective.sign(self.mode) * value
