"""Early stopping side by side: caviar's default sweep against Ray Tune's ASHA, Optuna's
pruning and random search without stopping, on the same budget, over many seeds.

    python -m benchmarks.early_stopping [--families ...] [--methods ...] [--seeds 10]
                                        [--trials 100] [--concurrent 2] [--json OUT.json]

Families: the bank's tasks (real curves, `bank.py`) and the synthetic `disagree` / `agree`
(`curves.py`). Every trial replays a curve (`replay.py`), through real Ray Tune for the Ray
and caviar methods (one private local Ray for the whole run), in-process for Optuna.

Methods, each with `--trials` trials, `--concurrent` at a time, seed s:
  caviar_default   `caviar.driver.run` of a spec naming neither searcher nor scheduler
  ray_asha_random  Ray Tune: ASHAScheduler(grace 1, reduction factor 3), random search
  ray_asha_hyperopt  the same with HyperOptSearch
  optuna_tpe_sha   Optuna: TPESampler + SuccessiveHalvingPruner (rungs 1, 3, 9, 27)
  random_nostop    caviar random search, FIFO: every trial to max_epochs

What counts: the best final metric, the metric at max_epochs of the configuration the method
would hand the user (its best trial by its own ranking), and the epochs it trained.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from typing import Any

from benchmarks.early_stopping.bank import MAX_EPOCHS, TASKS
from benchmarks.early_stopping.curves import SYNTHETIC, curves, space_of

METHODS = (
    "caviar_default",
    "ray_asha_random",
    "ray_asha_hyperopt",
    "optuna_tpe_sha",
    "random_nostop",
)


def _domains(family: str) -> list[tuple[str, Any]]:
    from caviar.spec import parse_spec

    spec = parse_spec(
        {
            "name": "x",
            "metric": "val_acc",
            "mode": "max",
            "train": {"function": "m:f"},
            "space": space_of(family),
        }
    )
    return list(spec.space)


def caviar_sweep(family: str, seed: int, trials: int, concurrent: int, default: bool, storage: str):
    import pandas as pd

    from caviar import driver, results
    from caviar.spec import parse_spec

    raw = {
        "name": f"{family}-{seed}",
        "metric": "val_acc",
        "mode": "max",
        "seed": seed,
        "train": {
            "function": "benchmarks.early_stopping.replay:train",
            "max_epochs": MAX_EPOCHS,
            "fixed": {"family": family},
        },
        "space": space_of(family),
        "budget": {"num_samples": trials, "max_concurrent": concurrent},
    }
    if not default:
        raw |= {"searcher": {"name": "random"}, "scheduler": {"name": "fifo"}}
    run_dir = driver.run(parse_spec(raw), storage=storage, name=f"{raw['name']}-{time.time_ns()}")
    t = pd.read_parquet(f"{run_dir}/trials.parquet")
    best = results.leaderboard(t, "val_acc", "max").iloc[0]  # what `caviar best` hands over
    config = {k.removeprefix("param_"): best[k] for k in t.columns if k.startswith("param_")}
    return config, int(t.epochs.sum())


def ray_sweep(family: str, seed: int, trials: int, concurrent: int, hyperopt: bool, storage: str):
    import numpy as np
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler

    from benchmarks.early_stopping.replay import ray_train
    from caviar.space import Choice, Float, Int

    space: dict[str, Any] = {"family": family}
    for name, d in _domains(family):
        if isinstance(d, Choice):
            space[name] = tune.choice(list(d.values))
        elif isinstance(d, Int):
            space[name] = tune.randint(d.low, d.high + 1)  # Ray's upper bound is exclusive
        elif isinstance(d, Float):
            space[name] = (tune.loguniform if d.scale == "log" else tune.uniform)(d.low, d.high)
    if hyperopt:
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.hyperopt import HyperOptSearch

        search = ConcurrencyLimiter(HyperOptSearch(random_state_seed=seed), concurrent)
    else:
        from ray.tune.search import BasicVariantGenerator

        search = BasicVariantGenerator(random_state=np.random.default_rng(seed).integers(2**31))
    tuner = tune.Tuner(
        ray_train,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="val_acc",
            mode="max",
            num_samples=trials,
            max_concurrent_trials=concurrent,
            search_alg=search,
            scheduler=ASHAScheduler(
                time_attr="epoch", max_t=MAX_EPOCHS, grace_period=1, reduction_factor=3
            ),
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            storage_path=storage,
            name=f"ray-{time.time_ns()}",
            verbose=0,
            # Importing caviar turns Ray's automatic loggers off; the result grid reads JSON.
            callbacks=[JsonLoggerCallback()],
        ),
    )
    grid = tuner.fit()
    best = grid.get_best_result(metric="val_acc", mode="max", scope="all")
    epochs = sum(int(r.metrics.get("epoch", 0)) for r in grid)
    return {k: v for k, v in best.config.items() if k != "family"}, epochs


def optuna_sweep(family: str, seed: int, trials: int, concurrent: int):
    import optuna

    from caviar.space import Choice, Float, Int

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    domains = _domains(family)
    curve_of = curves(family)
    epochs = []

    def objective(trial: optuna.Trial) -> float:
        config: dict[str, Any] = {}
        for name, d in domains:
            if isinstance(d, Choice):
                config[name] = trial.suggest_categorical(name, list(d.values))
            elif isinstance(d, Int):
                config[name] = trial.suggest_int(name, d.low, d.high, log=d.scale == "log")
            elif isinstance(d, Float):
                config[name] = trial.suggest_float(name, d.low, d.high, log=d.scale == "log")
        curve = curve_of.curve(config)
        for epoch in range(1, len(curve) + 1):
            trial.report(float(curve[epoch - 1]), epoch)
            if trial.should_prune():
                epochs.append(epoch)
                raise optuna.TrialPruned()
        epochs.append(len(curve))
        return float(curve[-1])

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(objective, n_trials=trials, n_jobs=concurrent)
    return dict(study.best_trial.params), sum(epochs)


def run_one(method: str, family: str, seed: int, args: argparse.Namespace, storage: str) -> dict:
    t0 = time.perf_counter()
    if method == "caviar_default":
        config, epochs = caviar_sweep(family, seed, args.trials, args.concurrent, True, storage)
    elif method == "random_nostop":
        config, epochs = caviar_sweep(family, seed, args.trials, args.concurrent, False, storage)
    elif method.startswith("ray_asha"):
        hyperopt = method == "ray_asha_hyperopt"
        config, epochs = ray_sweep(family, seed, args.trials, args.concurrent, hyperopt, storage)
    elif method == "optuna_tpe_sha":
        config, epochs = optuna_sweep(family, seed, args.trials, args.concurrent)
    else:
        raise SystemExit(f"unknown method {method!r}")
    return {
        "method": method,
        "family": family,
        "seed": seed,
        "final": curves(family).final(config),
        "epochs": epochs,
        "seconds": time.perf_counter() - t0,
    }


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for family in dict.fromkeys(r["family"] for r in rows):
        base = [r for r in rows if r["family"] == family and r["method"] == "random_nostop"]
        base_epochs = statistics.fmean(r["epochs"] for r in base) if base else None
        for method in dict.fromkeys(r["method"] for r in rows):
            rs = [r for r in rows if r["family"] == family and r["method"] == method]
            if not rs:
                continue
            finals = [r["final"] for r in rs]
            sd = statistics.stdev(finals) if len(finals) > 1 else 0.0
            epochs = statistics.fmean(r["epochs"] for r in rs)
            out.append(
                {
                    "family": family,
                    "method": method,
                    "seeds": len(rs),
                    "final_mean": statistics.fmean(finals),
                    "final_std": sd,
                    "final_sem": sd / len(finals) ** 0.5,
                    "epochs_mean": epochs,
                    "epochs_vs_random_nostop": epochs / base_epochs if base_epochs else None,
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=[*TASKS, *SYNTHETIC])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--json", help="write every run and the summary here")
    args = parser.parse_args()

    import ray

    ray.init(
        address="local", include_dashboard=False, log_to_driver=False, num_cpus=args.concurrent
    )
    rows: list[dict] = []
    try:
        with tempfile.TemporaryDirectory(prefix="caviar-es-") as storage:
            for family in args.families:
                for seed in range(args.seeds):
                    for method in args.methods:
                        row = run_one(method, family, seed, args, storage)
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                        if args.json:
                            with open(args.json, "w") as f:
                                json.dump({"runs": rows, "summary": summarize(rows)}, f, indent=1)
    finally:
        ray.shutdown()
    header = f"{'family':12s} {'method':18s} {'best final (mean ± std)':>26s}"
    print(f"\n{header} {'epochs':>8s} {'/ random':>8s}")
    for s in summarize(rows):
        ratio = s["epochs_vs_random_nostop"]
        print(
            f"{s['family']:12s} {s['method']:18s} {s['final_mean']:14.4f} ± {s['final_std']:.4f} "
            f"{s['epochs_mean']:8.0f} {ratio if ratio is not None else float('nan'):8.2f}"
        )


if __name__ == "__main__":
    main()
