"""`caviar plan`: what a sweep will cost before it launches.

Per rung, the trials expected to reach it and the epochs trained up to it; the expected total
epochs, and from a short probe of one trial's epoch time, the wall time and GPU-hours at the
sweep's concurrency.

The rung counts come from simulating the spec's scheduler on model learning curves (each
trial a quality drawn at random, its curve rising towards it, with evaluation noise), many
times over, in the order trials arrive. For ASHA that reproduces the leniency of asynchronous
successive halving early in a sweep (the first trials at a rung pass with little to compare
against), which a plain N / reduction_factor**k count misses. caviar's own scheduler stops only
where early ranks agree with later ones, which depends on the problem: the plan shows the
count if they agree (the model curves do) and the cost if no rung is ever trusted (every trial
trains fully).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from caviar import schedulers
from caviar.fused import layout
from caviar.spec import SweepSpec
from caviar.stopping import STOP, Stopping

SIMULATIONS = 200
UNMODELLED = ("hyperband", "median")
"""Schedulers that stop trials, by rules the plan does not simulate."""


@dataclass(frozen=True)
class Rung:
    epoch: float
    trials: float
    """Trials expected to reach this epoch."""
    low: float
    high: float
    """The 10th and 90th percentiles of `trials` over the simulations: early in a sweep the
    order trials happen to arrive in moves ASHA's cuts a lot."""
    epochs: float
    """Epochs expected to be trained from the previous rung up to this one, over all trials."""


@dataclass(frozen=True)
class Plan:
    trials: int
    max_epochs: int
    scheduler: str
    rungs: list[Rung]
    """Every rung, and max_epochs last."""
    epochs_if_all_trusted: float | None = None
    """caviar's scheduler: `rungs` are for typical curves; this is the cost if no rung is
    ever trusted."""
    epoch_seconds: float | None = None
    """The probe's: one trial's epoch, or one fused group's (`group` members at once)."""
    concurrency: int = 1
    gpu_per_trial: float = 0.0
    group: int = 1
    """Members of the probed fused group (`caviar.fused.layout`); 1: not fused."""

    @property
    def epochs(self) -> float:
        return sum(r.epochs for r in self.rungs)

    @property
    def wall_seconds(self) -> float | None:
        if self.epoch_seconds is None:
            return None
        return self.epochs * self.epoch_seconds / self.concurrency

    @property
    def gpu_hours(self) -> float | None:
        if self.epoch_seconds is None:
            return None
        return self.epochs * self.epoch_seconds * self.gpu_per_trial / 3600

    def text(self) -> str:
        full = self.trials * self.max_epochs
        lines = [
            f"{self.trials} trials x {self.max_epochs} epochs = {full:,} epochs without early "
            f"stopping; scheduler {self.scheduler}:",
            f"  {'epoch':>7s} {'trials':>8s} {'(10%-90%)':>11s} {'epochs':>9s}",
        ]
        lines += [
            f"  {r.epoch:7g} {r.trials:8.1f} {f'({r.low:g}-{r.high:g})':>11s} {r.epochs:9.0f}"
            for r in self.rungs
        ]
        if self.scheduler in UNMODELLED:
            lines.append(
                f"  at most {full:,} epochs: {self.scheduler}'s stops are not simulated (every "
                "trial counted in full)"
            )
        else:
            lines.append(f"  expected total: {self.epochs:,.0f} epochs ({self.epochs / full:.0%})")
        if self.epochs_if_all_trusted is not None:
            lines.append(
                "  (on typical learning curves; caviar stops trials only at rungs whose ranks "
                f"agree with later ones, and where none does, it stops nothing: {full:,} epochs)"
            )
        if self.epoch_seconds is not None:
            lines.append(
                f"  probe: {self.epoch_seconds:.2f} s per epoch"
                + (f" of a fused group of {self.group}" if self.group > 1 else "")
                + f"; {self.concurrency} trials at a time: "
                f"about {_duration(self.wall_seconds or 0)} wall time"
                + (f", {self.gpu_hours:.2f} GPU-hours" if self.gpu_per_trial else "")
            )
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _curves(rng: np.random.Generator, trials: int, max_epochs: int) -> np.ndarray:
    """Model learning curves [trial, epoch]: a quality, approached at a pace of its own, plus
    evaluation noise."""
    quality = rng.uniform(0.3, 0.9, trials)
    pace = rng.uniform(1.0, 4.0, trials)
    epochs = np.arange(1, max_epochs + 1)
    clean = quality[:, None] * (1 - np.exp(-epochs[None, :] / (pace[:, None] * max_epochs / 10)))
    return clean + rng.normal(0, 0.01, clean.shape)


def _asha_reached(curves: np.ndarray, grace: float, rf: float, max_epochs: int) -> list[float]:
    """Epochs each trial trains under Ray Tune's ASHA rule (one bracket): at each rung a trial
    stops if its value is below the (1 - 1/rf) percentile of those recorded there before it."""
    from caviar.results import asha_rungs

    rungs = [r for r in asha_rungs(grace, rf, max_epochs) if r < max_epochs]
    recorded: dict[float, list[float]] = {r: [] for r in rungs}
    reached = []
    for curve in curves:
        stop = max_epochs
        for r in rungs:
            value = curve[math.ceil(r) - 1]
            before = recorded[r]
            cut = np.percentile(before, (1 - 1 / rf) * 100) if before else None
            before.append(value)
            if cut is not None and value < cut:
                stop = math.ceil(r)
                break
        reached.append(stop)
    return reached


def _caviar_reached(curves: np.ndarray, spec: SweepSpec) -> list[float]:
    rule = Stopping("max", spec.train.max_epochs, spec.scheduler.options)
    reached = []
    for i, curve in enumerate(curves):
        stop = spec.train.max_epochs
        for epoch, value in enumerate(curve, start=1):
            if rule.on_result(str(i), epoch, float(value)) == STOP:
                stop = epoch
                break
        reached.append(stop)
    return reached


def expected_rungs(spec: SweepSpec, simulations: int = SIMULATIONS, seed: int = 0) -> list[Rung]:
    n, max_epochs = spec.budget.num_samples, spec.train.max_epochs
    name, options = spec.scheduler.name, spec.scheduler.options
    marks = [r for r in schedulers.rungs(name, options, max_epochs) or [] if r < max_epochs]
    marks.append(max_epochs)
    rng = np.random.default_rng(seed)
    reach: list[list[float]] = [[] for _ in marks]
    trained = np.zeros(len(marks))
    for _ in range(simulations if name in ("asha", "caviar") else 1):
        curves = _curves(rng, n, max_epochs)
        if name == "asha":
            stops = _asha_reached(
                curves, options.grace_period, options.reduction_factor, max_epochs
            )
        elif name == "caviar":
            stops = _caviar_reached(curves, spec)
        else:  # pbt and fifo stop nothing; hyperband and median are not simulated
            stops = [max_epochs] * n
        stops = np.asarray(stops, dtype=float)
        previous = 0.0
        for k, mark in enumerate(marks):
            reach[k].append(float((stops >= mark).sum()))
            trained[k] += np.clip(np.minimum(stops, mark) - previous, 0, None).sum()
            previous = mark
    runs = simulations if name in ("asha", "caviar") else 1
    return [
        Rung(m, float(np.mean(r)), *np.percentile(r, [10, 90]).tolist(), e / runs)
        for m, r, e in zip(marks, reach, trained, strict=True)
    ]


def probe(spec: SweepSpec, epochs: int = 2) -> float:
    """Seconds per epoch of one trial of the built-in train function (its second epoch: the
    first pays for setup), trained here with the spec's first configuration; with
    `resources.fuse`, of that many members on one share of `resources` (one of the groups
    they train in, as `caviar.fused.layout` lays them out: the others train beside it)."""
    from caviar.train.data import load
    from caviar.train.population import Population

    config = spec.trial_space().sample(np.random.default_rng(spec.seed))
    config["max_epochs"] = epochs
    data = load(spec.train.task, spec.seed, spec.train.data, spec.train.label)
    lay = layout(spec.resources)
    population = Population(data, spec.train.model, threads=lay.threads)
    for member in range(lay.size):
        population.add(member, config)
    for _ in range(epochs):
        out = population.train_epoch()
    return float(out[0][1]["epoch_seconds"])


def make_plan(spec: SweepSpec, concurrency: int, epoch_seconds: float | None = None) -> Plan:
    full = spec.scheduler.name == "caviar"
    return Plan(
        trials=spec.budget.num_samples,
        max_epochs=spec.train.max_epochs,
        scheduler=spec.scheduler.name,
        rungs=expected_rungs(spec),
        epochs_if_all_trusted=float(spec.budget.num_samples * spec.train.max_epochs)
        if full
        else None,
        epoch_seconds=epoch_seconds,
        concurrency=max(1, concurrency),
        gpu_per_trial=spec.resources.gpu / spec.resources.fuse,
        group=layout(spec.resources).size,  # 1 when not fused
    )


def local_concurrency(spec: SweepSpec) -> int:
    """Trials at once on this machine: the spec's max_concurrent, else what its CPUs (and
    GPUs) hold, as the embedded Ray would size itself (times `resources.fuse`)."""
    import os

    if spec.budget.max_concurrent:
        return spec.budget.max_concurrent
    slots = math.floor((os.cpu_count() or 1) / spec.resources.cpu)
    if spec.resources.gpu:
        slots = min(slots, math.floor(_gpus() / spec.resources.gpu))
    return max(1, slots) * spec.resources.fuse


def _gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0
