"""Optuna's TPE and CMA-ES samplers, and for sweeps of several metrics its NSGA-II and
multi-objective TPE, through its ask-and-tell API.

Like `tpe`, Optuna sees the unit cube: every numeric dimension is a ``FloatDistribution(0, 1)``
mapped to a value by the domain's own `from_unit`, and every choice a categorical over its
indices, so log and one-minus-log scales are caviar's, never Optuna's. Every trial asks for
every domain (a conditional space's inactive parameters are dropped from the config
afterwards), so the search space never changes and TPE's ``group`` is not needed.

Each caviar trial is one Optuna trial: `suggest` asks for it, `on_trial_complete` tells it,
`observe` adds a finished one (a warm start). How an outcome is told (`_told`):

- completed: COMPLETE with its best value; the study's direction is the sweep's mode;
- early-stopped: PRUNED, its best value reported at the epoch it stopped. Optuna's TPE then
  ranks it behind every completed trial and, among the stopped ones, deeper first and by value
  at equal depth: a scheduler stops a trial because it lost to its peers at that rung, and a
  value from 3 epochs does not compare with one from 27 (caviar's coarse-to-fine ranks trials
  the same way). Told as COMPLETE with that value instead, a trial stopped at a rung where
  values are still low or noisy would count as good or bad by the epoch count alone. CMA-ES
  compares values within a generation only; with ``consider_pruned_trials`` it reads a pruned
  trial's reported value, so with 85% of a sweep stopped early it still learns from them;
- diverged, errored or without a finite value: FAIL, which both samplers leave out of their
  models (caviar's `tpe` gives a diverged trial the worst loss seen instead).

With several metrics the study has one direction per metric, and a trial is COMPLETE with
every metric's value at its last epoch (`Outcome.objectives`), as Optuna takes a completed
trial's, or FAIL when it ended in a fault or misses a metric. Optuna prunes no multi-objective
study, and caviar's spec allows no early stopping with several metrics.

The whole state is the in-memory study (trials, the sampler and its random state) together with
the trial id -> Optuna trial map, pickled as one object so the map's trials stay the study's.

optuna is an optional dependency (optuna_cmaes also needs cmaes): it is imported only when a
searcher is built, and reading a searcher's `Options` (what `caviar validate` does) checks that
the packages are installed without importing them.
"""

from __future__ import annotations

import importlib.util
import io
import math
import pickle
import threading
import warnings
from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import numpy as np
from pydantic import Field

from caviar.errors import CaviarError
from caviar.objective import as_tuple
from caviar.searchers.base import Outcome, Searcher
from caviar.space import Choice, Fixed, Space

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class OptunaTPEOptions:
    n_startup: Annotated[int, Field(ge=1)] = 20
    """Random trials before TPE starts modelling (Optuna's n_startup_trials)."""


@dataclass(frozen=True)
class OptunaMOTPEOptions:
    n_startup: Annotated[int, Field(ge=1)] = 10
    """Random trials before TPE starts modelling (Optuna's n_startup_trials)."""


@dataclass(frozen=True)
class OptunaNSGA2Options:
    population_size: Annotated[int, Field(ge=2)] = 50
    """Trials per generation; the first generation is random."""


@dataclass(frozen=True)
class OptunaCmaEsOptions:
    n_startup: Annotated[int, Field(ge=1)] = 1
    """Random trials before CMA-ES starts (Optuna's n_startup_trials)."""
    popsize: Annotated[int, Field(ge=2)] | None = None
    """Trials per generation; default 4 + floor(3 ln d) for d numeric dimensions."""


class _Pickler(pickle.Pickler):
    """pickle, with a threading lock pickled as a new one: Optuna's genetic samplers (NSGA-II)
    hold one, over their generation cache."""

    def reducer_override(self, obj: Any) -> Any:
        return (threading.Lock, ()) if isinstance(obj, _LOCK) else NotImplemented


_LOCK = type(threading.Lock())


def _require(searcher: str, packages: tuple[str, ...]) -> None:
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise CaviarError(
            f"searcher {searcher} needs {' and '.join(missing)}: pip install {' '.join(missing)}"
        )


class _Requires:
    """A searcher's ``Options`` that first checks its packages are installed: `caviar.spec`
    reads it to validate the options, so a missing package is a spec problem."""

    def __init__(self, options: type):
        self.options = options

    def __get__(self, obj: Any, cls: type[_OptunaSearcher]) -> type:
        _require(cls.NAME, cls.PACKAGES)
        return self.options


class _OptunaSearcher(Searcher):
    NAME: ClassVar[str]
    PACKAGES: ClassVar[tuple[str, ...]] = ("optuna",)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        _require(self.NAME, self.PACKAGES)  # also when options were given, not read
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._dims = [(n, d) for n, d in self.space if not isinstance(d, Fixed)]
        self._distributions = {
            n: optuna.distributions.CategoricalDistribution(list(range(len(d.values))))
            if isinstance(d, Choice)
            else optuna.distributions.FloatDistribution(0.0, 1.0)
            for n, d in self._dims
        }
        self.study = optuna.create_study(
            directions=[{"max": "maximize", "min": "minimize"}[m] for m in as_tuple(self.mode)],
            sampler=self._sampler(),
        )
        self.trials: dict[str, optuna.trial.Trial] = {}

    @abstractmethod
    def _sampler(self, **extra: Any) -> optuna.samplers.BaseSampler:
        """The sampler, seeded by the spec's seed; `extra` are more of its arguments."""

    def suggest(self, trial_id: str) -> dict[str, Any]:
        trial = self.study.ask(self._distributions)
        self.trials[trial_id] = trial
        return self.space.decode(trial.params)

    def on_trial_complete(self, trial_id: str, outcome: Outcome) -> None:
        trial = self.trials.pop(trial_id, None)
        if trial is None:
            return
        state, values = self._told(outcome)
        if state.name == "PRUNED":
            trial.report(values[0], outcome.epoch)
        self.study.tell(trial, values if state.name == "COMPLETE" else None, state=state)

    def observe(self, config: dict[str, Any], outcome: Outcome) -> None:
        import optuna

        params = {}
        # Inactive parameters of a conditional space are not in `config`: give them random
        # values (seeded) so every trial holds every dimension, as TPE's joint model needs.
        rng = np.random.default_rng([self.seed, len(self.study.get_trials(deepcopy=False))])
        for name, d in self._dims:
            if name not in config:
                if self.space.is_active(name, config):
                    return  # from another space: nothing to place
                params[name] = (
                    rng.integers(len(d.values)) if isinstance(d, Choice) else rng.random()
                )
            elif isinstance(d, Choice):
                if config[name] not in d.values:
                    return
                params[name] = d.values.index(config[name])
            else:
                u = d.to_unit(config[name])
                if not -1e-9 <= u <= 1 + 1e-9:
                    return  # outside this space
                params[name] = min(max(u, 0.0), 1.0)
        params = {n: v.item() if isinstance(v, np.generic) else v for n, v in params.items()}
        state, values = self._told(outcome)
        pruned = state.name == "PRUNED"
        self.study.add_trial(
            optuna.trial.create_trial(
                state=state,
                values=values,
                params=params,
                distributions=self._distributions,
                intermediate_values={outcome.epoch: values[0]} if pruned and values else None,
            )
        )

    def state_dict(self) -> dict[str, Any]:
        # One pickle, so the map's trials refer to the restored study.
        out = io.BytesIO()
        _Pickler(out).dump((self.study, self.trials))
        return {"study": out.getvalue()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.study, self.trials = pickle.loads(state["study"])

    # The searcher itself pickles as its state (the sampler's lock, see `_Pickler`).
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "study": None, "trials": None, "saved": self.state_dict()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        saved = state.pop("saved")
        self.__dict__.update(state)
        self.load_state_dict(saved)

    def _told(self, outcome: Outcome) -> tuple[optuna.trial.TrialState, list[float] | None]:
        """How an outcome is told to Optuna, its values one per metric (see the module
        docstring)."""
        from optuna.trial import TrialState

        if len(self.study.directions) > 1:
            values = outcome.objectives
            return (TrialState.FAIL, None) if values is None else (TrialState.COMPLETE, [*values])
        best = outcome.best if outcome.usable else None
        if best is None or not math.isfinite(best):
            return TrialState.FAIL, None
        if outcome.status == "early_stopped":
            return TrialState.PRUNED, [best]
        return TrialState.COMPLETE, [best]


class OptunaTPESearcher(_OptunaSearcher):
    """Optuna's multivariate TPE with the constant liar: a running trial counts as the worst
    value, so trials suggested while others run do not all crowd the same point."""

    NAME = "optuna_tpe"
    Options = _Requires(OptunaTPEOptions)
    MODEL = "Optuna's multivariate TPE"

    @classmethod
    def summary(cls, space: Space, options: OptunaTPEOptions, num_samples: int) -> str:
        random = min(options.n_startup, num_samples)
        return (
            f"random for the first {random} trials, then model-based ({cls.MODEL}) for the "
            f"other {num_samples - random}"
        )

    def _sampler(self, **extra: Any) -> optuna.samplers.BaseSampler:
        import optuna

        return optuna.samplers.TPESampler(
            n_startup_trials=self.options.n_startup,
            multivariate=True,
            constant_liar=True,
            seed=self.seed,
        )


class OptunaMOTPESearcher(OptunaTPESearcher):
    """Optuna's TPE for several metrics (MOTPE): a trial counts as good when few others
    dominate it; with the constant liar, as `optuna_tpe`."""

    NAME = "optuna_motpe"
    MULTI_OBJECTIVE = True
    Options = _Requires(OptunaMOTPEOptions)
    MODEL = "Optuna's multi-objective TPE"


class OptunaNSGA2Searcher(_OptunaSearcher):
    """Optuna's NSGA-II, a genetic algorithm: each generation's parents are the best trials by
    Pareto rank (then crowding distance) of the generations so far."""

    NAME = "optuna_nsga2"
    MULTI_OBJECTIVE = True
    Options = _Requires(OptunaNSGA2Options)

    @classmethod
    def summary(cls, space: Space, options: OptunaNSGA2Options, num_samples: int) -> str:
        size = options.population_size
        return (
            f"NSGA-II: a random first generation of {min(size, num_samples)} trials, then "
            f"{max(0, math.ceil(num_samples / size) - 1)} more generation(s) of {size}"
        )

    def _sampler(self, **extra: Any) -> optuna.samplers.BaseSampler:
        import optuna

        return optuna.samplers.NSGAIISampler(
            population_size=self.options.population_size, seed=self.seed
        )


class OptunaCmaEsSearcher(_OptunaSearcher):
    """Optuna's CMA-ES, for numeric domains only. A warm start of at least 10 trials
    initializes it from the best of them (Optuna's warm-starting CMA-ES)."""

    NAME = "optuna_cmaes"
    PACKAGES = ("optuna", "cmaes")
    Options = _Requires(OptunaCmaEsOptions)
    WARM_MIN: ClassVar[int] = 10  # cmaes estimates the start from the best tenth of them

    @classmethod
    def check(cls, space: Space, options: OptunaCmaEsOptions, num_samples: int) -> list[str]:
        return [
            f"space.{n}: searcher optuna_cmaes searches numeric domains only, found a choice "
            f"of {len(d.values)} values; use searcher optuna_tpe, or make {n} fixed "
            "(train.fixed)"
            for n, d in space
            if isinstance(d, Choice)
        ]

    @classmethod
    def summary(cls, space: Space, options: OptunaCmaEsOptions, num_samples: int) -> str:
        dims = sum(not isinstance(d, Fixed) for _, d in space)
        popsize = options.popsize or 4 + math.floor(3 * math.log(max(dims, 1)))
        random = min(options.n_startup, num_samples)
        return f"random for the first {random} trials, then CMA-ES in generations of {popsize}"

    def _sampler(self, **extra: Any) -> optuna.samplers.BaseSampler:
        import optuna

        with warnings.catch_warnings():  # consider_pruned_trials and source_trials warn
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.CmaEsSampler(
                n_startup_trials=self.options.n_startup,
                popsize=self.options.popsize,
                consider_pruned_trials=True,
                warn_independent_sampling=False,  # choices are refused by `check`
                seed=self.seed,
                **extra,
            )

    def observe(self, config: dict[str, Any], outcome: Outcome) -> None:
        super().observe(config, outcome)
        # CMA-ES keeps no model of single trials: what it learns from a warm start is where to
        # begin, so the sampler is rebuilt with the finished trials as its source.
        sources = [
            t
            for t in self.study.get_trials(deepcopy=False)
            if t.state.name in ("COMPLETE", "PRUNED")
        ]
        if len(sources) >= self.WARM_MIN:
            self.study.sampler = self._sampler(source_trials=sources)
