"""Held-out curve families, for choosing caviar's stopping defaults away from the benchmark's.

    python -m benchmarks.early_stopping.heldout [--seeds 100] [--option hopeless=0.01 ...]

The benchmark's families (`curves.py`, the bank) decide nothing here: an option is compared
on four families of random curves it was not chosen on, each sweep replayed in-process with
random search (100 trials, 2 at a time, each advancing one epoch in turn, as in `emulate.py`):

- ``noisy``: saturating curves of random quality and pace, evaluation noise 0.03;
- ``crossing``: the better the configuration, the slower it tends to start (a milder
  ``disagree``);
- ``skewed``: qualities crowded near the best (many configurations nearly as good);
- ``overfit``: curves that peak at about a third of max_epochs and then fall by up to 0.1.

With `--asha`, ASHA's rule beside them (grace 1, reduction factor 3, as `emulate.py` has it).
For each option set and family: the mean metric at max_epochs of the configuration handed over
(best so far, then last value, as `caviar.results.leaderboard` ranks), its mean difference
from the defaults' on the same curves ± the standard error of that paired difference, and the
mean epochs trained.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

import numpy as np

from benchmarks.early_stopping.bank import MAX_EPOCHS
from benchmarks.early_stopping.emulate import _Asha, parse_options
from caviar.stopping import STOP, Stopping, StoppingOptions

FAMILIES = ("noisy", "crossing", "skewed", "overfit")


def family(name: str, rng: np.random.Generator, trials: int) -> np.ndarray:
    """Curves [trial, epoch] of one family."""
    epochs = np.arange(1, MAX_EPOCHS + 1)[None, :]
    quality = rng.uniform(0.3, 0.9, trials)
    pace, noise = rng.uniform(1, 4, trials), 0.01
    if name == "noisy":
        noise = 0.03
    elif name == "crossing":
        pace = 1 + 6 * (quality - 0.3) / 0.6 * rng.uniform(0.5, 1.5, trials)
    elif name == "skewed":
        quality = 0.9 - 0.6 * rng.beta(1, 4, trials)
    clean = quality[:, None] * (1 - np.exp(-epochs / (pace[:, None] * MAX_EPOCHS / 10)))
    if name == "overfit":
        fall = rng.uniform(0, 0.1, trials)[:, None]
        clean -= fall * np.clip((epochs - MAX_EPOCHS / 3) / MAX_EPOCHS, 0, None)
    return clean + rng.normal(0, noise, clean.shape)


def sweep(curves: np.ndarray, rule: Stopping, concurrent: int = 2) -> tuple[float, int]:
    """The handed-over configuration's metric at max_epochs, and the epochs trained."""
    running: list[int] = []
    reached: dict[int, int] = {}
    best: dict[int, float] = {}
    arrived = 0
    while arrived < len(curves) or running:
        while arrived < len(curves) and len(running) < concurrent:
            running.append(arrived)
            reached[arrived] = 0
            arrived += 1
        for t in list(running):
            reached[t] += 1
            value = float(curves[t, reached[t] - 1])
            best[t] = max(best.get(t, value), value)
            stop = rule.on_result(str(t), reached[t], value) == STOP
            if stop or reached[t] >= MAX_EPOCHS:
                running.remove(t)
    handed = max(best, key=lambda t: (best[t], curves[t, reached[t] - 1]))
    return float(curves[handed, -1]), sum(reached.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--asha", action="store_true", help="ASHA's rule beside (emulate.py's)")
    parser.add_argument(
        "--option", action="append", default=[], help="NAME=VALUE[,VALUE...]: one set per value"
    )
    args = parser.parse_args()
    variants = {"defaults": StoppingOptions()}
    for text in args.option:
        name, _, values = text.partition("=")
        for label in (f"{name}={value}" for value in values.split(",")):
            variants[label] = replace(StoppingOptions(), **parse_options([label]))
    if args.asha:
        variants["asha"] = None
    for name in FAMILIES:
        curves = [family(name, np.random.default_rng(s), args.trials) for s in range(args.seeds)]
        base = None
        for label, options in variants.items():
            rules = (
                _Asha("max", MAX_EPOCHS, StoppingOptions(window=0))
                if options is None
                else Stopping("max", MAX_EPOCHS, options)
                for _ in curves
            )
            finals, spent = zip(*map(sweep, curves, rules), strict=True)
            base = base or finals
            diff = [a - b for a, b in zip(finals, base, strict=True)]
            sem = statistics.stdev(diff) / len(diff) ** 0.5 if len(diff) > 1 else 0.0
            print(
                f"{name:9s} {label:16s} final {statistics.fmean(finals):.4f} "
                f"({statistics.fmean(diff):+.4f} ± {sem:.4f} paired)  "
                f"epochs {statistics.fmean(spent):5.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
