"""The bank of real learning curves: random configurations of caviar's built-in train function,
every one trained to its full max_epochs, one row per (config, epoch) in Parquet.

    python -m benchmarks.early_stopping.bank [--tasks mnist1d_mlp digits_cnn ...]
                                             [--configs 1000] [--processes 2]

Configurations are drawn by caviar's random searcher from each task's space (seed 0), so the
bank is reproducible; they train in populations (`caviar.train.population`: configurations of
one shape trained as one batched computation, each member exactly as it would alone). The
first configurations drawn are the same whatever the count, so a bank is made again only in
part: the configurations it holds keep their rows, only the others train (fewer `--configs`
than it holds keeps its first ones).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MAX_EPOCHS = 27
# Where early and final rankings can disagree: the learning rate and its schedule, weight decay,
# dropout and label smoothing all trade early speed for final accuracy.
COMMON_SPACE = {
    "lr": {"loguniform": [1e-4, 1e-1]},
    "weight_decay": {"loguniform": [1e-6, 1e-1]},
    "dropout": {"uniform": [0.0, 0.5]},
    "label_smoothing": {"uniform": [0.0, 0.2]},
    "schedule": {"choice": ["constant", "cosine"]},
    "batch_size": {"choice": [32, 64, 128]},
}
TASKS: dict[str, dict[str, Any]] = {
    "mnist1d_mlp": {
        "task": "mnist1d",
        "model": "mlp",
        "fixed": {"optimizer": "adamw", "depth": 2},
        "space": {**COMMON_SPACE, "hidden": {"randint": [32, 256]}},
    },
    "mnist1d_cnn": {
        "task": "mnist1d",
        "model": "cnn",
        "fixed": {"optimizer": "adamw", "depth": 3, "kernel_size": 5},
        "space": {**COMMON_SPACE, "channels": {"randint": [8, 32]}},
    },
    "digits_cnn": {
        "task": "digits",
        "model": "cnn",
        "fixed": {"optimizer": "sgd", "momentum": 0.9, "depth": 2, "kernel_size": 3},
        "space": {**COMMON_SPACE, "channels": {"randint": [8, 32]}},
    },
}
FUSE = 32  # members per population
CURVE = ("epoch", "val_acc", "val_loss", "train_loss", "test_acc", "diverged")  # a row's metrics


def bank_path(task: str) -> Path:
    return HERE / f"bank_{task}.parquet"


def spec_of(task: str, configs: int) -> Any:
    from caviar.spec import parse_spec

    t = TASKS[task]
    return parse_spec(
        {
            "name": task,
            "metric": "val_acc",
            "mode": "max",
            "train": {
                "task": t["task"],
                "model": t["model"],
                "max_epochs": MAX_EPOCHS,
                "fixed": t["fixed"],
            },
            "space": t["space"],
            "budget": {"num_samples": configs},
        }
    )


def configurations(task: str, configs: int) -> list[dict[str, Any]]:
    from caviar.searchers import searcher_class

    spec = spec_of(task, configs)
    searcher = searcher_class("random")(
        spec.trial_space(), spec.metric, spec.mode, configs, 0, spec.searcher.options
    )
    return [searcher.suggest(str(i)) for i in range(configs)]


def _train_group(args: tuple[str, list[tuple[int, dict]]]) -> list[dict[str, Any]]:
    task, members = args
    from caviar.train.data import load
    from caviar.train.population import Population

    t = TASKS[task]
    population = Population(load(t["task"]), t["model"])
    for config_id, config in members:
        population.add(config_id, config)
    rows = []
    while len(population):
        for config_id, metrics, _, _ in population.train_epoch():
            rows.append(
                {
                    "config_id": config_id,
                    **{k: metrics[k] for k in CURVE},
                }
            )
    return rows


def make_bank(task: str, configs: int, processes: int) -> Path:
    import pandas as pd

    from caviar.train import group_key

    chosen = configurations(task, configs)
    path = bank_path(task)
    kept = _kept(path, chosen)
    banked = set(kept.config_id)
    groups: dict[tuple, list[tuple[int, dict]]] = {}
    for i, c in enumerate(chosen):
        if i not in banked:
            groups.setdefault(group_key(c), []).append((i, c))
    for members in groups.values():  # neighbours in width share a population: less padding
        members.sort(key=lambda m: (m[1].get("hidden", 0), m[1].get("channels", 0)))
    work = [
        (task, members[j : j + FUSE])
        for members in groups.values()
        for j in range(0, len(members), FUSE)
    ]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(processes) as pool:
        rows = [r for part in pool.imap_unordered(_train_group, work) for r in part]
    curves = pd.DataFrame(rows, columns=["config_id", *CURVE])
    if banked:
        curves = pd.concat([kept[curves.columns], curves], ignore_index=True)
    params = pd.DataFrame(
        [{"config_id": i, **{f"param_{k}": v for k, v in c.items()}} for i, c in enumerate(chosen)]
    )
    bank = params.merge(curves, on="config_id").sort_values(["config_id", "epoch"])
    bank.to_parquet(path, index=False)
    print(
        f"{task}: {configs} configurations ({len(banked)} kept from the bank), {len(bank)} rows"
        f" in {time.perf_counter() - t0:.0f} s"
        f" -> {path.relative_to(HERE.parent.parent)}",
        flush=True,
    )
    return path


def _kept(path: Path, chosen: list[dict[str, Any]]) -> Any:
    """The rows of the bank at `path` for the configurations of `chosen` it holds already:
    none unless its configurations are the same draws (a bank drawn otherwise is made again)."""
    import pandas as pd

    bank = pd.read_parquet(path) if path.exists() else pd.DataFrame({"config_id": []})
    bank = bank[bank.config_id < len(chosen)]
    first = bank.groupby("config_id").first()
    for i, row in first.iterrows():
        if any(row.get(f"param_{k}") != v for k, v in chosen[i].items()):
            return bank.iloc[:0]
    return bank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--configs", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    for task in args.tasks:
        make_bank(task, args.configs, args.processes)


if __name__ == "__main__":
    main()
