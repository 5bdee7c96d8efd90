"""Schedulers by name, with their options: what a spec's ``scheduler:`` section may say.

``caviar`` (the default) is caviar's own early stopping (`caviar.stopping`); the others are
Ray Tune's, each a thin wrapper (`caviar.ray_seam.make_scheduler`). This module imports
neither Ray nor torch, so `caviar validate` checks a scheduler's options without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from caviar.stopping import StoppingOptions, rungs_of


@dataclass(frozen=True)
class AshaOptions:
    """Ray Tune's ASHA: stop a trial below the top 1/reduction_factor at a rung."""

    grace_period: Annotated[int, Field(ge=1)] = 1
    reduction_factor: Annotated[float, Field(gt=1)] = 3.0
    brackets: Annotated[int, Field(ge=1)] = 1


@dataclass(frozen=True)
class HyperbandOptions:
    """Ray Tune's (synchronous) HyperBand: brackets of successive halving; pauses trials."""

    reduction_factor: Annotated[float, Field(gt=1)] = 3.0


@dataclass(frozen=True)
class MedianOptions:
    """Ray Tune's median stopping rule: stop a trial whose best so far is worse than the
    median of the other trials' running averages at the same epoch."""

    grace_period: Annotated[int, Field(ge=0)] = 1
    min_samples_required: Annotated[int, Field(ge=1)] = 3


@dataclass(frozen=True)
class PbtOptions:
    """Ray Tune's population based training: every `perturbation_interval` epochs the bottom
    `quantile_fraction` of trials copy a top trial's checkpoint and hyperparameters, then
    perturb the searched ones (resampling each with `resample_probability`)."""

    perturbation_interval: Annotated[int, Field(ge=1)] = 4
    quantile_fraction: Annotated[float, Field(ge=0, le=0.5)] = 0.25
    resample_probability: Annotated[float, Field(ge=0, le=1)] = 0.25


@dataclass(frozen=True)
class FifoOptions:
    """No early stopping: every trial trains all max_epochs."""


SCHEDULERS: dict[str, type] = {
    "caviar": StoppingOptions,
    "asha": AshaOptions,
    "hyperband": HyperbandOptions,
    "median": MedianOptions,
    "pbt": PbtOptions,
    "fifo": FifoOptions,
}
DEFAULT = "caviar"
PAUSING = frozenset({"hyperband", "pbt"})
"""Schedulers that pause trials and start them again later, deciding over a bracket or a
population of trials that exist at once (Ray Tune creates every trial up front for them)."""


def rungs(name: str, options: object, max_epochs: int) -> list[float] | None:
    """The epochs at which the scheduler may stop trials (its first bracket's, for ASHA);
    None for schedulers without rungs."""
    from caviar.results import asha_rungs

    if isinstance(options, StoppingOptions):
        return rungs_of(options, max_epochs)
    if isinstance(options, AshaOptions):
        return asha_rungs(options.grace_period, options.reduction_factor, max_epochs)
    return None
