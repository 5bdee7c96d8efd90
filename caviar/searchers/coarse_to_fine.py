"""Coarse-to-fine: search, narrow the space around the best configurations, search again.

The budget is split evenly over ``rounds`` (the remainder goes to the first). Each round runs a
fresh inner searcher (``random`` or ``tpe``) on that round's region; a TPE round is warm-started
with every earlier trial that falls inside its region, so nothing learned is thrown away.
A round starts when every trial of the previous one has ended.

Ranking a round fairly when ASHA stopped some trials early: ASHA promotes a trial to a higher
rung only if it beat its peers at the lower one, so a trial that trained more epochs ranks
ahead of one stopped earlier; trials that reached the same epoch rank by their best metric.
Diverged and errored trials are never among the best.

Narrowing: the ``top_fraction`` best trials of the round (at least one) span, in every numeric
dimension, an interval on the domain's own scale (decades for log domains); the next region is
that span widened to at least ``min_width`` of the user's range, plus ``margin`` times its
width on each side, clipped to the user's range unless ``widen`` is set. A choice keeps the
values seen among the best. When the best trial sits in the outermost 5% of the user's range,
a warning says so, and only if ``widen`` is set may the next region extend past that edge.

The box of the top trials is the rule users ask for, and it is what makes the rounds narrow on
the dimensions that matter; on a multimodal objective whose good configurations lie far apart
it stays wide. With ``inner: tpe`` (the default) each round's TPE still concentrates on the
best of them, warm-started from every earlier trial in the region.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from caviar import objective
from caviar.searchers.base import Outcome, Searcher
from caviar.searchers.tpe import TPEOptions
from caviar.space import Choice, Domain, Fixed, Space

log = logging.getLogger("caviar.searchers")
EDGE = 0.05  # the outermost 5% of the user's range, on the domain's scale


@dataclass(frozen=True)
class CoarseToFineOptions:
    rounds: Annotated[int, Field(ge=1)] = 3
    inner: Literal["random", "tpe"] = "tpe"
    top_fraction: Annotated[float, Field(gt=0, le=1)] = 0.25
    margin: Annotated[float, Field(ge=0)] = 0.25
    min_width: Annotated[float, Field(gt=0, le=1)] = 0.05
    widen: bool = False


def rank_key(outcome: Outcome, sign: float) -> tuple[float, float]:
    """Sort key, best first: more epochs first, then the better best value."""
    return (-outcome.epoch, sign * (outcome.best if outcome.best is not None else outcome.value))


def split_budget(total: int, rounds: int) -> list[int]:
    base, extra = divmod(total, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


class CoarseToFineSearcher(Searcher):
    Options = CoarseToFineOptions

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.budgets = [b for b in split_budget(self.num_samples, self.options.rounds) if b]
        self.round = 0
        self.suggested = 0  # in this round
        self.pending: set[str] = set()
        self.rounds: dict[str, int] = {}
        self.done: list[tuple[str, int, dict[str, Any], Outcome]] = []
        self.configs: dict[str, dict[str, Any]] = {}
        # The region of each round: unit-coordinate boxes for numeric domains (in the user's
        # domain), kept values for choices.
        self.boxes: list[dict[str, tuple[float, float]]] = [{}]
        self.kept: list[dict[str, tuple]] = [{}]
        self.inner = self._make_inner()

    @classmethod
    def check(cls, space: Space, options: CoarseToFineOptions, num_samples: int) -> list[str]:
        if num_samples < options.rounds:
            return [
                f"budget.num_samples: coarse_to_fine with {options.rounds} rounds needs at least "
                f"{options.rounds} trials, found {num_samples}; lower searcher.rounds"
            ]
        return []

    @classmethod
    def summary(cls, space: Space, options: CoarseToFineOptions, num_samples: int) -> str:
        budgets = [b for b in split_budget(num_samples, options.rounds) if b]
        return f"{len(budgets)} rounds of {options.inner} search with {budgets} trials"

    # -- the region of a round -----------------------------------------------------------

    def _round_space(self, r: int) -> Space:
        narrowed: dict[str, Domain] = {}
        for name, (lo, hi) in self.boxes[r].items():
            narrowed[name] = self.space.domain(name).narrow(lo, hi)  # type: ignore[attr-defined]
        for name, values in self.kept[r].items():
            narrowed[name] = Choice(values) if len(values) > 1 else Fixed(values[0])
        return self.space.replace(**narrowed)

    def _make_inner(self) -> Searcher:
        from caviar.searchers import searcher_class

        budget = self.budgets[self.round]
        options = TPEOptions(n_startup=max(1, min(20, budget // 3)))
        inner = searcher_class(self.options.inner)(
            self._round_space(self.round),
            self.metric,
            self.mode,
            budget,
            seed=self.seed + 7919 * self.round,
            options=options if self.options.inner == "tpe" else None,
        )
        for _, _, config, outcome in self.done:
            inner.observe(config, outcome)
        return inner

    def _narrow(self) -> None:
        """Compute the next round's region from this round's best trials."""
        ranked = sorted(
            ((o, c) for _, r, c, o in self.done if r == self.round and o.usable),
            key=lambda oc: rank_key(oc[0], objective.sign(self.mode)),
        )
        box, kept = dict(self.boxes[self.round]), dict(self.kept[self.round])
        if ranked:
            top = [
                c for _, c in ranked[: max(1, math.ceil(self.options.top_fraction * len(ranked)))]
            ]
            for name, d in self.space:
                # Only the best trials in which the parameter was active say where it is good.
                mine = [c for c in top if self.space.is_active(name, c)]
                if not mine or isinstance(d, Fixed):
                    continue
                if isinstance(d, Choice):
                    kept[name] = tuple(v for v in d.values if any(c[name] == v for c in mine))
                else:
                    box[name] = self._interval(name, d, [d.to_unit(c[name]) for c in mine], mine[0])
        self.boxes.append(box)
        self.kept.append(kept)

    def _interval(
        self, name: str, d: Domain, us: list[float], best: dict[str, Any]
    ) -> tuple[float, float]:
        o = self.options
        lo, hi = min(us), max(us)
        width = max(hi - lo, o.min_width)
        mid = (lo + hi) / 2
        lo, hi = mid - width * (0.5 + o.margin), mid + width * (0.5 + o.margin)
        u_best = d.to_unit(best[name])
        at_edge = u_best < EDGE or u_best > 1 - EDGE
        if at_edge:
            edge = "lower" if u_best < EDGE else "upper"
            log.warning(
                "space.%s: the best configurations of round %d sit at the %s edge of %s; %s",
                name,
                self.round,
                edge,
                d.to_raw(),
                "the next round extends past it (searcher.widen)"
                if o.widen
                else "consider widening the range, or set searcher.widen: true",
            )
        if not (o.widen and at_edge):
            lo, hi = max(lo, 0.0), min(hi, 1.0)
        return lo, hi

    # -- the searcher interface ----------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.suggested >= self.budgets[self.round]:
            if self.round + 1 >= len(self.budgets) or self.pending:
                return None  # all suggested, or waiting for this round to end
            self._narrow()
            self.round += 1
            self.suggested = 0
            self.inner = self._make_inner()
            log.info(
                "coarse_to_fine: round %d searches %s", self.round, self.regions()[-1]["space"]
            )
        config = self.inner.suggest(trial_id)
        if config is not None:
            self.suggested += 1
            self.pending.add(trial_id)
            self.rounds[trial_id] = self.round
            self.configs[trial_id] = config
        return config

    def on_trial_complete(self, trial_id: str, outcome: Outcome) -> None:
        # Not suggested here, or learned from already: a resumed sweep can rerun a trial whose
        # end the searcher's saved state holds (seen after a driver was killed: Ray had saved
        # the searcher with the trial ended and the trial itself still running).
        if trial_id not in self.configs:
            return
        r = self.rounds[trial_id]
        self.done.append((trial_id, r, self.configs.pop(trial_id), outcome))
        if trial_id in self.pending:
            self.pending.discard(trial_id)
            if r == self.round:
                self.inner.on_trial_complete(trial_id, outcome)

    def round_of(self, trial_id: str) -> int:
        return self.rounds.get(trial_id, 0)

    def regions(self) -> list[dict[str, Any]]:
        return [
            {
                "round": r,
                "space": {
                    n: d.to_raw() for n, d in self._round_space(r) if n in self.space.searched
                },
            }
            for r in range(self.round + 1)
        ]

    def state_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "suggested": self.suggested,
            "pending": sorted(self.pending),
            "rounds": dict(self.rounds),
            "done": list(self.done),
            "configs": dict(self.configs),
            "boxes": list(self.boxes),
            "kept": list(self.kept),
            "inner": self.inner.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.round, self.suggested = state["round"], state["suggested"]
        self.pending, self.rounds = set(state["pending"]), dict(state["rounds"])
        self.done, self.configs = list(state["done"]), dict(state["configs"])
        self.boxes, self.kept = list(state["boxes"]), list(state["kept"])
        self.inner = self._make_inner()
        self.inner.load_state_dict(state["inner"])
