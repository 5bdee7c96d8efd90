"""HyperOpt's Tree-structured Parzen Estimator.

hyperopt sees the unit cube: every numeric dimension as ``hp.uniform(name, 0, 1)``, mapped to a
value by the domain's own `from_unit`, and every choice as ``hp.choice`` over indices. So TPE
models log domains in log space and momentum in log(1 - beta) space, and no domain goes
through hyperopt's own conversions (whose ``loguniform`` takes natural-log bounds, and which
Ray's adapter has been seen to drop parameters in).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from caviar.searchers.base import Outcome, Searcher
from caviar.space import Choice, Fixed, Space


@dataclass(frozen=True)
class TPEOptions:
    n_startup: Annotated[int, Field(ge=1)] = 20
    """Random trials before TPE starts modelling (hyperopt's n_startup_jobs)."""
    gamma: Annotated[float, Field(gt=0, lt=1)] = 0.25
    """Fraction of observations TPE counts as good."""


def _identity(config: dict) -> dict:
    return config  # hyperopt's objective; never called, but the Domain must be picklable


class TPESearcher(Searcher):
    Options = TPEOptions

    @classmethod
    def summary(cls, space: Space, options: TPEOptions, num_samples: int) -> str:
        random = min(options.n_startup, num_samples)
        return (
            f"random for the first {random} trials, then model-based (TPE) for the other "
            f"{num_samples - random}"
        )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        import hyperopt as hpo

        self._dims = [(n, d) for n, d in self.space if not isinstance(d, Fixed)]
        hp_space = {
            n: hpo.hp.choice(n, list(range(len(d.values))))
            if isinstance(d, Choice)
            else hpo.hp.uniform(n, 0.0, 1.0)
            for n, d in self._dims
        }
        # hyperopt cannot build a domain with nothing in it; a space of constants needs none.
        self._domain = hpo.Domain(_identity, hp_space) if hp_space else None
        self._algo = functools.partial(
            hpo.tpe.suggest, n_startup_jobs=self.options.n_startup, gamma=self.options.gamma
        )
        self.trials = hpo.Trials()
        self.rng = np.random.default_rng(self.seed)
        self.tids: dict[str, int] = {}
        self.worst: float | None = None  # worst loss seen, given to diverged trials

    def suggest(self, trial_id: str) -> dict[str, Any]:
        if self._domain is None:
            return self.space.decode({})
        self.trials.refresh()
        tid = self.trials.new_trial_ids(1)[0]
        (doc,) = self._algo([tid], self._domain, self.trials, int(self.rng.integers(2**31 - 1)))
        self.trials.insert_trial_docs([doc])
        self.trials.refresh()
        self.tids[trial_id] = tid
        return self.space.decode({k: v[0] for k, v in doc["misc"]["vals"].items() if v})

    def _finish(self, doc: dict, outcome: Outcome) -> None:
        import hyperopt as hpo

        loss = self.sign(outcome.best) if outcome.usable and outcome.best is not None else None
        if loss is not None and math.isfinite(loss):
            self.worst = loss if self.worst is None else max(self.worst, loss)
            doc["state"], doc["result"] = hpo.JOB_STATE_DONE, {"loss": loss, "status": "ok"}
        elif outcome.status == "diverged" and self.worst is not None:
            # A diverged region is a bad region: tell TPE so, at the worst loss seen.
            doc["state"], doc["result"] = hpo.JOB_STATE_DONE, {"loss": self.worst, "status": "ok"}
        else:
            doc["state"], doc["result"] = hpo.JOB_STATE_ERROR, {"status": "fail"}
        self.trials.refresh()

    def on_trial_complete(self, trial_id: str, outcome: Outcome) -> None:
        tid = self.tids.pop(trial_id, None)
        if tid is None:
            return
        doc = next(t for t in self.trials._dynamic_trials if t["tid"] == tid)
        self._finish(doc, outcome)

    def observe(self, config: dict[str, Any], outcome: Outcome) -> None:
        if self._domain is None:
            return
        vals = {}
        for name, d in self._dims:
            if name not in config:  # inactive in a conditional space: any value is as good
                vals[name] = [0 if isinstance(d, Choice) else 0.5]
                continue
            value = config[name]
            if isinstance(d, Choice):
                if value not in d.values:
                    return
                vals[name] = [d.values.index(value)]
            else:
                u = d.to_unit(value)
                if not 0.0 <= u <= 1.0:
                    return  # outside this space: nothing TPE can place
                vals[name] = [u]
        self.trials.refresh()
        tid = self.trials.new_trial_ids(1)[0]
        idxs = {name: [tid] for name in vals}
        misc = {"tid": tid, "cmd": self._domain.cmd, "workdir": None, "idxs": idxs, "vals": vals}
        (doc,) = self.trials.new_trial_docs([tid], [None], [{"status": "new"}], [misc])
        self.trials.insert_trial_docs([doc])
        self.trials.refresh()
        self._finish(next(t for t in self.trials._dynamic_trials if t["tid"] == tid), outcome)

    def state_dict(self) -> dict[str, Any]:
        return {
            "docs": list(self.trials._dynamic_trials),
            "rng": self.rng.bit_generator.state,
            "tids": dict(self.tids),
            "worst": self.worst,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import copy

        import hyperopt as hpo

        self.trials = hpo.Trials()
        self.trials._dynamic_trials = copy.deepcopy(state["docs"])
        self.trials.refresh()
        self.rng.bit_generator.state = state["rng"]
        self.tids = dict(state["tids"])
        self.worst = state["worst"]
