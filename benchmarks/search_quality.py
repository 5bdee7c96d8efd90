"""Search quality on Branin and Hartmann-6: mean best value after N evaluations over S seeds.

caviar's searchers (Optuna's TPE and CMA-ES among them, through caviar's ask-and-tell adapter) are
driven directly (suggest, evaluate, report: one trial at a time, as a sweep with
max_concurrent=1 would), side by side with hyperopt's own ``fmin(tpe.suggest)`` on hyperopt's
native space. Lower is better; the optima are 0.397887 (Branin) and -3.32237
(Hartmann-6).

    python -m benchmarks.search_quality [--evals 200] [--seeds 10]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np

from caviar.searchers import Outcome, searcher_class
from caviar.searchers.coarse_to_fine import CoarseToFineOptions
from caviar.space import Float, Space


def branin(c: dict) -> float:
    x1, x2 = c["x1"], c["x2"]
    b, cc, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + cc * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(c: dict) -> float:
    x = np.array([c[f"x{i}"] for i in range(1, 7)])
    return float(-np.sum(_ALPHA * np.exp(-np.sum(_A * (x - _P) ** 2, axis=1))))


PROBLEMS: dict[str, tuple[Callable[[dict], float], dict[str, tuple[float, float]], float]] = {
    "branin": (branin, {"x1": (-5.0, 10.0), "x2": (0.0, 15.0)}, 0.397887),
    "hartmann6": (hartmann6, {f"x{i}": (0.0, 1.0) for i in range(1, 7)}, -3.32237),
}

SEARCHERS = {
    "random": ("random", None),
    "tpe": ("tpe", None),
    "coarse_to_fine(tpe)": ("coarse_to_fine", CoarseToFineOptions(rounds=3, inner="tpe")),
    "coarse_to_fine(random)": ("coarse_to_fine", CoarseToFineOptions(rounds=3, inner="random")),
    "optuna_tpe": ("optuna_tpe", None),
    "optuna_cmaes": ("optuna_cmaes", None),
}


def run_caviar(name: str, options: object, problem: str, evals: int, seed: int) -> float:
    fn, bounds, _ = PROBLEMS[problem]
    space = Space.from_dict({k: Float(lo, hi) for k, (lo, hi) in bounds.items()})
    searcher = searcher_class(name)(space, "f", "min", evals, seed=seed, options=options)
    best = math.inf
    for i in range(evals):
        config = searcher.suggest(str(i))
        assert config is not None, "a sequential searcher must always have a suggestion"
        value = fn(config)
        best = min(best, value)
        searcher.on_trial_complete(str(i), Outcome("completed", value, value, 1))
    return best


def run_hyperopt(problem: str, evals: int, seed: int) -> float:
    import hyperopt as hpo

    fn, bounds, _ = PROBLEMS[problem]
    space = {k: hpo.hp.uniform(k, lo, hi) for k, (lo, hi) in bounds.items()}
    trials = hpo.Trials()
    hpo.fmin(
        fn,
        space,
        algo=hpo.tpe.suggest,
        max_evals=evals,
        trials=trials,
        rstate=np.random.default_rng(seed),
        show_progressbar=False,
    )
    return min(trials.losses())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evals", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    args = parser.parse_args()
    seeds = range(args.seeds)
    for problem in args.problems:
        optimum = PROBLEMS[problem][2]
        print(
            f"\n{problem}: mean best of {args.evals} evaluations over {args.seeds} seeds "
            f"(optimum {optimum})"
        )
        rows = {}
        for label, (name, options) in SEARCHERS.items():
            t0 = time.perf_counter()
            rows[label] = [run_caviar(name, options, problem, args.evals, s) for s in seeds]
            rows[label + "_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        rows["hyperopt fmin(tpe)"] = [run_hyperopt(problem, args.evals, s) for s in seeds]
        rows["hyperopt fmin(tpe)_s"] = time.perf_counter() - t0
        for label, values in rows.items():
            if not label.endswith("_s"):
                print(
                    f"  {label:24s} mean {np.mean(values):9.4f}  median {np.median(values):9.4f}"
                    f"  worst {np.max(values):9.4f}  ({rows[label + '_s']:.1f} s)"
                )


if __name__ == "__main__":
    main()
