"""caviar's early stopping: asynchronous successive halving that checks its own premise.

Stopping a trial at epoch r because it ranks low there only pays if the ranking at r predicts
the final one. This rule measures that while the sweep runs and stops only where it holds:

- rungs at ``min_epochs * reduction_factor**k`` epochs (as ASHA's). A trial has three values
  at a rung: its best so far (not its last value: a noisy epoch does not decide); its
  forecast, where its learning curve is headed at max_epochs (`forecast`: a slow starter
  still climbing ranks above a fast starter on a lower plateau, as freeze-thaw methods rank
  them); and a learned prediction of its value at the higher level, a ridge regression on
  its best so far at this rung and the ones below fitted on the trials that got there
  (`ridge`; Baker et al.'s sequential regression models), which learns a ranking that runs
  backwards (fast starters that plateau low) from a single epoch;
- the agreement of a rung, measured against a level at least two rungs higher (the highest
  that at least ``min_pairs`` of its trials reached, times the values the regression takes),
  over the trials that reached both: the Spearman rank correlation of their values there (by
  each of the three, the learned one by leave-one-out: the rung ranks by whichever agrees
  better), and whether this rung's cut would have kept a trial as good, at the higher level,
  as the best one (within twice the noise). A rung stops trials only once its agreement is
  known, the correlation is at least ``trust`` and the eventual best would have survived its
  cut: until then it is a grace period, whose length adapts to the problem;
- at a trusted rung a trial below the top ``1 / reduction_factor`` of the values recorded there
  stops (among the last ``window`` trials there), unless it is within ``noise_z`` times the
  metric's noise of the cut (carried through the regression for the learned ranking). A
  trial that passed a rung while it was not trusted yet is judged there as soon as it is.
  However it ranks among its neighbours, a trial also stops at a trusted rung when its chance
  of beating the best value recorded at the reference level is below ``hopeless``: its value
  there predicted by a line fitted to the pairs the agreement was measured on, give or take
  the line's leave-one-out error (a searcher that learns proposes trials each better than the
  last few, and a cut among recent trials alone passes nearly all of them).
  The noise is the larger of two estimates: the spread between trials of the same
  configuration with other seeds (`repeat_key`), and the epoch-to-epoch jitter of each
  trial's curve (second differences, which a smooth learning trend does not inflate).

Pure Python with no Ray: `caviar.ray_seam.CaviarScheduler` puts it behind Ray Tune's scheduler
interface. `audit()` is the table written with the results: what each rung measured and did.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from caviar import objective
from caviar.objective import Mode

CONTINUE, STOP = "CONTINUE", "STOP"


@dataclass(frozen=True)
class StoppingOptions:
    min_epochs: Annotated[int, Field(ge=1)] = 1
    reduction_factor: Annotated[float, Field(gt=1)] = 3.0
    trust: Annotated[float, Field(ge=-1, le=1)] = 0.5
    """Rank correlation (Spearman) a rung needs with a later level before it may stop trials
    (and its cut must have kept the trial that did best there)."""
    min_pairs: Annotated[int, Field(ge=3)] = 6
    """Trials that must have reached both levels before their agreement counts (at least 3:
    two trials always rank the same or reversed)."""
    noise_z: Annotated[float, Field(ge=0)] = 0.5
    """A trial within this many noise standard deviations of the cut goes on."""
    hopeless: Annotated[float, Field(ge=0, lt=1)] = 0.01
    """At a trusted rung a trial also stops when its predicted chance of beating the best
    value recorded at the rung's reference level is below this (0: never), whatever its rank
    among its neighbours: a searcher that improves as it learns passes nearly every trial
    through a cut among recent trials. (Domhan et al. 2015 stop at 5% with a Bayesian model of
    the curve; on held-out curve families, `benchmarks/early_stopping/heldout.py`, this
    linear-Gaussian prediction at 5% lost up to 0.0055 of the final metric against never
    stopping a trial as hopeless, at 1% at most 0.0018 (1.4 standard errors), saving 5-17% of
    the epochs.)"""
    window: Annotated[int, Field(ge=0)] = 9
    """The cut is among the last `window` trials that reached the rung (0: all of them): a
    model-based searcher proposes better trials as it learns, and measured against the early
    random ones nearly all of them would pass."""


@dataclass(frozen=True)
class Agreement:
    rho: float
    """Spearman rank correlation between the two levels' values."""
    pairs: int
    reference: float
    """The higher level (epochs) compared with."""
    winner_kept: bool
    """Whether this rung's cut would have kept a trial as good as the best at the reference,
    within twice the noise."""
    key: str = "best"
    """What the rung ranks trials by, whichever agreed better: "best" (best so far),
    "forecast" (where the curve is headed at max_epochs) or "learned" (the final value
    predicted from the trial's values so far by a regression on the trials that got there)."""
    intercept: float = math.nan
    slope: float = math.nan
    spread: float = math.nan
    """The reference level's value predicted from what the rung ranks by, lower is better:
    ``intercept + slope * value``, off by `spread` (standard deviation, leave-one-out)."""


def rungs_of(options: StoppingOptions, max_epochs: int) -> list[int]:
    """The rungs below max_epochs (max_epochs itself is the last reference): at
    ``min_epochs * reduction_factor**k`` epochs, each the whole epoch at which a trial reaches
    it (trials report whole epochs: with a factor of 1.5 the rung at 2.25 is epoch 3), without
    repeats."""
    rungs: list[int] = []
    rung = float(options.min_epochs)
    while (epoch := _whole_epoch(rung)) < max_epochs:
        if not rungs or epoch > rungs[-1]:
            rungs.append(epoch)
        rung *= options.reduction_factor
    return rungs


def _whole_epoch(epochs: float) -> int:
    """The first whole epoch at or past `epochs` (a hair over a whole number is that number:
    1.1**2 is 1.2100000000000002)."""
    return math.ceil(epochs - 1e-9)


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); nan if either side is constant."""
    rx, ry = _ranks(x), _ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan


def _or(x: float, default: float) -> float:
    return default if math.isnan(x) else x


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def ridge(x: np.ndarray, y: np.ndarray, penalty: float = 1.0) -> tuple[np.ndarray, Any, float]:
    """Least squares of `y` on the standardized columns of `x` and an intercept, the slopes
    ridge-penalized: each point's leave-one-out prediction (the fit on all the others, the
    columns scaled as for all: what measures the regression honestly), the fit on all points
    as a function of new rows, and its gain (how far noise of 1 in each of a row's values
    moves its prediction: the norm of the slopes)."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0

    def design(rows: np.ndarray) -> np.ndarray:
        return np.column_stack([np.ones(len(rows)), (rows - mean) / scale])

    d = design(x)
    regular = penalty * np.eye(d.shape[1])
    regular[0, 0] = 0.0  # the intercept is not shrunk
    inverse = np.linalg.inv(d.T @ d + regular)
    coef = inverse @ d.T @ y
    leverage = np.einsum("ij,jk,ik->i", d, inverse, d)
    loo = y - (y - d @ coef) / np.maximum(1 - leverage, 1e-9)
    gain = float(np.linalg.norm(coef[1:] / scale))
    return loo, lambda rows: design(rows) @ coef, gain


def forecast(epochs: list[float], values: list[float], horizon: float) -> float:
    """Where a learning curve is headed at `horizon` epochs, on a lower-is-better scale: the
    least-squares fit of ``a + b * exp(-epoch / tau)`` (b >= 0, tau searched on a log grid up
    to the horizon), never worse than the curve's best so far. Slow starters still improving
    forecast far better than their value now; fast starters on a plateau forecast it."""
    best = min(values)
    if len(values) < 3:
        return best
    e = np.asarray(epochs, dtype=float)
    z = np.asarray(values, dtype=float)
    taus = np.geomspace(0.3, max(horizon, 1.0), 24)[:, None]
    basis = np.exp(-e[None, :] / taus)  # (taus, epochs)
    bm = basis.mean(axis=1, keepdims=True)
    zc = z - z.mean()
    var = ((basis - bm) ** 2).sum(axis=1)
    b = np.where(var > 1e-12, ((basis - bm) * zc).sum(axis=1) / np.maximum(var, 1e-12), 0.0)
    b = np.clip(b, 0.0, None)  # a curve getting worse forecasts its mean: its best counts
    a = z.mean() - b * bm[:, 0]
    sse = ((z[None, :] - a[:, None] - b[:, None] * basis) ** 2).sum(axis=1)
    k = int(np.argmin(sse))
    return min(best, float(a[k] + b[k] * math.exp(-horizon / taus[k, 0])))


class Stopping:
    """The rule's state and decisions for one sweep. Call `on_result` with every report; it
    answers CONTINUE or STOP. All state is plain data (`state_dict` / `load_state_dict`)."""

    def __init__(self, mode: Mode, max_epochs: int, options: StoppingOptions | None = None):
        self.mode, self.max_epochs = mode, max_epochs
        self.options = options or StoppingOptions()
        self.rungs = rungs_of(self.options, max_epochs)
        self.levels = [*self.rungs, max_epochs]  # where values are recorded
        self.at: dict[str, dict[str, float]] = {str(r): {} for r in self.levels}
        self.best: dict[str, float] = {}
        # trial -> its [epoch, value] reports up to the last rung (what forecasts need: a
        # sweep's state stays small however long its trials train)
        self.history: dict[str, list[list[float]]] = {}
        self.recent: dict[str, list[float]] = {}  # trial -> its last 8 values, for its jitter
        self.ahead: dict[str, dict[str, float]] = {str(r): {} for r in self.rungs}  # forecasts
        self.jitter: dict[str, float] = {}
        self.repeat: dict[str, Hashable] = {}
        self.stopped: dict[str, float] = {}  # trial -> the rung it was stopped at
        self.spared: dict[str, int] = {}  # rung -> trials below the cut spared by the noise band
        self.hopeless: dict[str, int] = {}  # rung -> trials stopped there as hopeless
        self.pending: dict[str, list[float]] = {}  # trial -> rungs it passed while untrusted
        self._memo: dict[Any, Any] = {}

    # --- what the sweep tells it -----------------------------------------------------------

    def on_add(self, trial_id: str, repeat_key: Hashable | None = None) -> None:
        """A new trial; trials with the same `repeat_key` are one configuration with other
        seeds (their spread is the metric's noise)."""
        if repeat_key is not None:
            self.repeat[trial_id] = repeat_key

    def on_result(self, trial_id: str, epoch: float, value: Any) -> str:
        if trial_id in self.stopped:
            # Stopped once, stopped for good: a trial that reports again was restored from an
            # experiment saved before the stop took effect (a driver interrupted just then).
            return STOP
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return CONTINUE  # a diverged trial ends itself
        best = self.best.get(trial_id)
        if best is None or objective.better(value, best, self.mode):
            self.best[trial_id] = best = float(value)
        if not self.rungs or epoch <= self.rungs[-1]:
            self.history.setdefault(trial_id, []).append([float(epoch), float(value)])
        recent = self.recent.setdefault(trial_id, [])
        recent.append(float(value))
        del recent[:-8]
        if len(recent) >= 5:
            second = [recent[i] - 2 * recent[i + 1] + recent[i + 2] for i in range(len(recent) - 2)]
            self.jitter[trial_id] = statistics.pstdev(second) / math.sqrt(6)
        last = epoch >= self.max_epochs  # its last report: nothing is left to stop
        # A rung the trial passed while it was not trusted judges it once it is.
        pending = self.pending.get(trial_id, [])
        for rung in list(pending):
            if self.trusted(rung):
                pending.remove(rung)
                if not last and self._stops(trial_id, rung):
                    self.stopped[trial_id] = rung
                    return STOP
        for level in self.levels:
            key = str(level)
            if epoch >= level and trial_id not in self.at[key]:
                self.at[key][trial_id] = best
                if level not in self.rungs or last:
                    continue
                self.ahead[key][trial_id] = self._forecast(trial_id)
                if self._stops(trial_id, level):
                    self.stopped[trial_id] = level
                    return STOP
                if not self.trusted(level):
                    self.pending.setdefault(trial_id, []).append(level)
        return CONTINUE

    # --- what it measures ------------------------------------------------------------------

    def _forecast(self, trial_id: str) -> float:
        history = self.history.get(trial_id)
        if not history:  # its first report came after the last rung: nothing to fit
            return self.best[trial_id]
        sign = objective.sign(self.mode)
        epochs, values = zip(*history, strict=True)
        return sign * forecast(list(epochs), [sign * v for v in values], self.max_epochs)

    def agreement(self, rung: float) -> Agreement | None:
        """How the ranking at this rung agrees with the ranking at the highest level above it
        that `min_pairs` of its trials reached, by best so far, forecast or learned
        prediction, whichever agrees better; None while no level has."""
        sizes = tuple(len(v) for v in self.at.values())
        if self._memo.get("sizes") != sizes:  # it changes only when a trial reaches a level
            self._memo = {"sizes": sizes}
        if rung not in self._memo:
            self._memo[rung] = self._agreement(rung)
        return self._memo[rung]

    def _agreement(self, rung: float) -> Agreement | None:
        measured = [self._agreement_of(rung, key) for key in ("best", "forecast", "learned")]
        known = [a for a in measured if a is not None]
        # Trusted first, then the better correlation; ties keep the simpler "best".
        return max(known, key=lambda a: (self._trusts(a), _or(a.rho, -2.0)), default=None)

    def _agreement_of(self, rung: float, key: str) -> Agreement | None:
        here = self.at[str(rung)]
        # Compared with a level at least two rungs on: the early rungs of slow starters agree
        # with each other and with nothing later.
        horizon = min(self.max_epochs, rung * self.options.reduction_factor**2)
        sign = objective.sign(self.mode)
        features = [str(level) for level in self.levels if level <= rung]  # learned: its inputs
        for level in reversed(self.levels):
            if level < horizon - 1e-9:
                break
            there = self.at[str(level)]
            both = [t for t in here if t in there]
            if len(both) < self.options.min_pairs * (len(features) if key == "learned" else 1):
                continue
            late = [sign * there[t] for t in both]  # lower is better from here on
            if key == "learned":
                loo, fit, gain = ridge(self._rows(features, both), np.array(late))
                early = loo.tolist()
                # What `ranked` and the noise band use once this rung ranks by it.
                self._memo[("fit", rung)] = (features, fit, gain)
            else:
                recorded = self.ranked(rung, key)
                early = [sign * recorded[t] for t in both]
            # What would this rung's cut, among these trials, have cost at the higher level?
            # The best trial it keeps against the best of all: within twice the noise is
            # nothing lost (near the top, trials a hair apart are seed noise).
            cut = sorted(early)[max(0, math.ceil(len(early) / self.options.reduction_factor) - 1)]
            kept_best = min(b for a, b in zip(early, late, strict=True) if a <= cut)
            kept = kept_best - min(late) <= 2 * self.noise()
            # The late value from the early one, for the chance of beating the best there.
            # (A penalty of next to nothing: early values all alike fit a slope of 0.)
            loo, line, _ = ridge(np.array(early)[:, None], np.array(late), penalty=1e-6)
            at_0, at_1 = line(np.array([[0.0], [1.0]])).tolist()
            intercept, slope = at_0, at_1 - at_0
            spread = float(np.sqrt(np.mean((np.array(late) - loo) ** 2)))
            rho = spearman(early, late)
            return Agreement(rho, len(both), level, kept, key, intercept, slope, spread)
        return None

    def ranked(self, rung: float, key: str) -> dict[str, float]:
        """What the rung ranks its trials by under `key` (on the metric's scale), once its
        agreement under that key is measured."""
        if key == "best":
            return self.at[str(rung)]
        if key == "forecast":
            return self.ahead[str(rung)]
        features, fit, _ = self._memo[("fit", rung)]
        trials = [t for t in self.at[str(rung)] if all(t in self.at[f] for f in features)]
        predicted = objective.sign(self.mode) * fit(self._rows(features, trials))
        return dict(zip(trials, predicted.tolist(), strict=True))

    def _rows(self, features: list[str], trials: list[str]) -> np.ndarray:
        """Each trial's best so far at those levels, lower is better."""
        sign = objective.sign(self.mode)
        return np.array([[sign * self.at[f][t] for f in features] for t in trials])

    def trusted(self, rung: float) -> bool:
        return self._trusts(self.agreement(rung))

    def _trusts(self, a: Agreement | None) -> bool:
        return a is not None and a.rho >= self.options.trust and a.winner_kept

    def noise(self) -> float:
        """The metric's noise standard deviation (0 until something measures it)."""
        jitter = statistics.median(self.jitter.values()) if self.jitter else 0.0
        groups: dict[Hashable, list[float]] = {}
        final = self.at[str(self.max_epochs)]
        for trial_id, key in self.repeat.items():
            if trial_id in final:
                groups.setdefault(key, []).append(final[trial_id])
        spreads = [statistics.variance(v) for v in groups.values() if len(v) > 1]
        seeds = math.sqrt(statistics.fmean(spreads)) if spreads else 0.0
        return max(jitter, seeds)

    def _stops(self, trial_id: str, rung: float) -> bool:
        rf = self.options.reduction_factor
        if len(self.at[str(rung)]) < rf or not self.trusted(rung):
            return False
        measured = self.agreement(rung)
        key = "best" if measured is None else measured.key
        recorded = self.ranked(rung, key)
        # The metric's noise, carried through to what the rung ranks by.
        band = self.options.noise_z * self.noise()
        if key == "learned":
            band *= self._memo[("fit", rung)][2]
        value = recorded.get(
            trial_id, self.at[str(rung)][trial_id]
        )  # a state from before forecasts
        sign = objective.sign(self.mode)
        values = list(recorded.values())
        if self.options.window:
            values = values[-self.options.window :]
        ordered = sorted(sign * v for v in values)  # best first
        cut = ordered[max(0, math.ceil(len(ordered) / rf) - 1)]
        if sign * value > cut + band:
            return True
        if self._hopeless(sign * value, measured, band):  # what the cut let through
            self.hopeless[str(rung)] = self.hopeless.get(str(rung), 0) + 1
            return True
        if sign * value > cut:
            self.spared[str(rung)] = self.spared.get(str(rung), 0) + 1
        return False

    def _hopeless(self, value: float, measured: Agreement | None, band: float) -> bool:
        """Whether a trial ranked by `value` (lower is better) at a rung with this agreement
        has less than `hopeless` chance of beating the best value at its reference level
        (and is predicted further below it than the noise band)."""
        if not self.options.hopeless or measured is None or not measured.slope > 0:
            return False
        sign = objective.sign(self.mode)
        incumbent = min(sign * v for v in self.at[str(measured.reference)].values())
        predicted = measured.intercept + measured.slope * value
        spread = max(measured.spread, self.noise())
        z = statistics.NormalDist().inv_cdf(1 - self.options.hopeless)
        return predicted - incumbent > max(z * spread, band)

    def audit(self) -> list[dict[str, Any]]:
        """One row per rung: trials that reached it, stopped there (and of those, as hopeless),
        spared by the noise band, the agreement measured and whether it was trusted."""
        rows = []
        for rung in self.rungs:
            measured = self.agreement(rung)
            stopped = sum(1 for r in self.stopped.values() if r == rung)
            rho = None if measured is None else measured.rho
            rows.append(
                {
                    "rung": rung,
                    "reached": len(self.at[str(rung)]),
                    "stopped": stopped,
                    "stopped_hopeless": self.hopeless.get(str(rung), 0),
                    "spared_by_noise": self.spared.get(str(rung), 0),
                    "agreement": rho,
                    "pairs": None if measured is None else measured.pairs,
                    "reference": None if measured is None else measured.reference,
                    "winner_kept": None if measured is None else measured.winner_kept,
                    "ranked_by": None if measured is None else measured.key,
                    "trusted": self.trusted(rung),
                    "noise": self.noise(),
                    # Trusted when it stopped them, but the agreement has fallen since.
                    "warning": (
                        f"{stopped} trials stopped at a rung no longer trusted (agreement "
                        f"{rho:.2f}, trust {self.options.trust:g}; best trial at epoch "
                        f"{measured.reference:g} {'kept' if measured.winner_kept else 'cut'} "
                        "by its cut)"
                        if stopped and measured is not None and not self.trusted(rung)
                        else None
                    ),
                }
            )
        return rows

    # --- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        keys = ("at", "ahead", "history", "best", "recent", "jitter", "repeat", "stopped")
        keys += ("spared", "hopeless", "pending")
        return {k: getattr(self, k) for k in keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self._memo = {}
        # Before 2026-12-07 a factor like 1.5 put rungs between whole epochs ("2.25"): a
        # sweep saved then is resumed on the whole epochs the rungs are reached at.
        level = {k: str(_whole_epoch(float(k))) for k in (*self.at, *self.spared, *self.hopeless)}
        if any(k != v for k, v in level.items()):
            for name in ("at", "ahead"):
                merged = {str(r): {} for r in (self.levels if name == "at" else self.rungs)}
                for k, trials in getattr(self, name).items():
                    if level[k] in merged:  # (a rung reached at max_epochs is no rung now)
                        merged[level[k]] = trials | merged[level[k]]  # the lowest rung's first
                setattr(self, name, merged)
            for name in ("spared", "hopeless"):
                counts: dict[str, int] = {}
                for k, n in getattr(self, name).items():
                    counts[level[k]] = counts.get(level[k], 0) + n
                setattr(self, name, counts)
            self.stopped = {t: _whole_epoch(r) for t, r in self.stopped.items()}
            self.pending = {
                t: sorted({_whole_epoch(r) for r in p} & set(self.rungs))
                for t, p in self.pending.items()
            }
