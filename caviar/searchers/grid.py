"""Grid search over choices and given values. The grid repeats while trials remain, so
num_samples = 3 x the grid size runs every configuration three times (seed noise)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from caviar.searchers.base import Searcher
from caviar.space import Choice, Domain, Fixed, Int, Space


@dataclass(frozen=True)
class GridOptions:
    points: Annotated[int, Field(ge=2)] | None = None
    """Grid points for each numeric domain, evenly spaced on its own scale; without it a
    numeric domain is an error (write it as a choice)."""


def _values(d: Domain, points: int | None) -> list[Any]:
    if isinstance(d, Choice):
        return list(d.values)
    if isinstance(d, Fixed):
        return [d.value]
    assert points is not None
    values = [d.from_unit(u) for u in np.linspace(0.0, 1.0, points)]
    if isinstance(d, Int):
        # Int.from_unit(0) and (1) land on the bounds' half-steps; keep each integer once.
        values = sorted(set(values))
    return values


def grid(space: Space, points: int | None) -> list[dict[str, Any]]:
    """Every combination, once: in a conditional space a branch's parameters vary only under
    its own label."""
    names = space.names
    axes = [_values(d, points) for _, d in space]
    configs = (space.active(dict(zip(names, c, strict=True))) for c in itertools.product(*axes))
    unique: dict[str, dict[str, Any]] = {}
    for config in configs:
        unique.setdefault(repr(sorted(config.items(), key=lambda kv: kv[0])), config)
    return list(unique.values())


class GridSearcher(Searcher):
    Options = GridOptions
    MULTI_OBJECTIVE = True  # it learns nothing, whatever the sweep optimizes

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.configs = grid(self.space, self.options.points)
        self.next = 0

    @classmethod
    def check(cls, space: Space, options: GridOptions, num_samples: int) -> list[str]:
        problems = [
            f"space.{n}: grid search needs values for a {type(d).__name__} domain; write it "
            f"as {{choice: [...]}} or set searcher.points to grid it on its own scale"
            for n, d in space
            if not isinstance(d, (Choice, Fixed)) and options.points is None
        ]
        if not problems:
            size = len(grid(space, options.points))
            if num_samples % size:
                problems.append(
                    f"budget.num_samples: the grid has {size} configurations, so num_samples "
                    f"must be a multiple of {size}, found {num_samples}"
                )
        return problems

    @classmethod
    def summary(cls, space: Space, options: GridOptions, num_samples: int) -> str:
        size = len(grid(space, options.points))
        runs = num_samples // size
        return f"the grid has {size} configurations; {num_samples} trials run each {runs} time(s)"

    def suggest(self, trial_id: str) -> dict[str, Any]:
        config = self.configs[self.next % len(self.configs)]
        self.next += 1
        return dict(config)

    def state_dict(self) -> dict[str, Any]:
        return {"next": self.next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next = state["next"]
