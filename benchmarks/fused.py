"""Fused trials on the CPU (issue 15): k configurations as fused trials of a caviar sweep,
against the same k configurations as k separate trials of a caviar sweep, at the same total
CPU, side by side.

    python -m benchmarks.fused [--ks 2 4 8 16] [--epochs 20] [--cpus 2] [--json]

Both are real caviar sweeps (FIFO, grid over k learning rates, all k trials at once) of the
built-in train function, every trial reporting and checkpointing every epoch through Ray Tune:
separate: `resources: {cpu: CPUS / k}`, each trial a population of one in its own process;
fused: `resources: {cpu: CPUS, fuse: k}`, the k trials members of fused groups
(`caviar.fused`: on CPUs alone one single-threaded group per CPU, each training its members as
one `caviar.train.population.Population`).

Three figures for each: the members' training-phase samples per second summed (the built-in
function's `samples_per_s`: examples trained / seconds of the epoch's training phase, median
over epochs 2..E, the first being warm-up); "steady", the members' samples per second between
their first and last reports summed (each trial's epochs 2..E over the time between its reports
of epochs 1 and E: training with everything each epoch costs beside it, reports and
checkpoints, but not the trials' start); and the samples trained in all over the wall time
(`caviar.driver.run` from launch to return). Trials that share the CPUs time-slice, so each one's
training-phase rate overstates what they deliver together; the wall figure is what a user
gets. The final val_acc of each configuration in both shows they learned alike: a member
computes what it would alone up to float rounding (tests/test_population.py checks 1e-5 over a
few epochs), and rounding differences (batched against single matmuls) grow over many epochs
at high learning rates, to a few validation examples.
With --json the figures are printed to stdout as one JSON object (the sweeps' output goes to
stderr), with `ratio_k8` (fused / separate, wall figure, at k = 8) when 8 is among --ks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from typing import Any

import numpy as np

MODEL = {"optimizer": "adamw", "depth": 2, "hidden": 128, "batch_size": 64, "dropout": 0.1}
"""The quickstart's MLP at one shape: members of a population share it."""


def spec(k: int, epochs: int, cpus: float, fuse: bool) -> dict[str, Any]:
    name = "fused" if fuse else "separate"
    resources = {"cpu": cpus, "fuse": k} if fuse else {"cpu": cpus / k}
    return {
        "name": f"{name}-{k}",
        "metric": "val_acc",
        "mode": "max",
        "train": {"task": "mnist1d", "model": "mlp", "max_epochs": epochs, "fixed": MODEL},
        "space": {"lr": {"choice": np.geomspace(3e-4, 1e-2, k).round(6).tolist()}},
        "searcher": {"name": "grid"},
        "scheduler": {"name": "fifo"},
        "budget": {"num_samples": k, "max_concurrent": k},
        "resources": resources | {"gpu": 0},
    }


def sweep(k: int, epochs: int, cpus: float, fuse: bool, storage: str) -> dict:
    """One sweep's figures; val_acc is each configuration's final one, in order of lr."""
    import pandas as pd

    from caviar import driver
    from caviar.spec import parse_spec

    t0 = time.perf_counter()
    run_dir = driver.run(parse_spec(spec(k, epochs, cpus, fuse)), storage=storage)
    wall = time.perf_counter() - t0
    trials = pd.read_parquet(f"{run_dir}/trials.parquet").sort_values("param_lr")
    history = pd.read_parquet(f"{run_dir}/history.parquet")
    assert len(trials) == k and (trials.status == "completed").all(), trials.status.tolist()
    later = history[history.epoch >= 2]
    rate = later.groupby("epoch")["samples_per_s"].sum().median()
    span = history.groupby("trial_id")["time_total_s"].agg(lambda t: t.max() - t.min())
    steady = (epochs - 1) * samples_per_epoch() / span
    finals = trials.val_acc.astype(float).tolist()
    return {
        "samples_per_s": float(rate),
        "steady_samples_per_s": float(steady.sum()),
        "wall_s": float(wall),
        "val_acc": finals,
    }


def samples_per_epoch() -> int:
    from caviar.train import DEFAULTS
    from caviar.train.data import load
    from caviar.train.population import batches_per_epoch

    hp = {**DEFAULTS, **MODEL}
    n = len(load("mnist1d").x_train)
    return min(n, batches_per_epoch(n, hp) * int(hp["batch_size"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--cpus", type=float, default=2.0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    import ray

    ray.init(address="local", include_dashboard=False, log_to_driver=False, num_cpus=args.cpus)
    rows, per_epoch = [], samples_per_epoch()
    sweep_output = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    try:
        with tempfile.TemporaryDirectory(prefix="caviar-fused-") as storage, sweep_output:
            for k in args.ks:
                sep = sweep(k, args.epochs, args.cpus, False, storage)
                fus = sweep(k, args.epochs, args.cpus, True, storage)
                trained = k * args.epochs * per_epoch
                row: dict[str, Any] = {"k": k}
                for name, r in (("separate", sep), ("fused", fus)):
                    row[f"{name}_training_samples_per_s"] = r["samples_per_s"]
                    row[f"{name}_steady_samples_per_s"] = r["steady_samples_per_s"]
                    row[f"{name}_wall_s"] = r["wall_s"]
                    row[f"{name}_wall_samples_per_s"] = trained / r["wall_s"]
                row["ratio"] = row["fused_wall_samples_per_s"] / row["separate_wall_samples_per_s"]
                for fig in ("training", "steady"):
                    row[f"ratio_{fig}"] = (
                        row[f"fused_{fig}_samples_per_s"] / row[f"separate_{fig}_samples_per_s"]
                    )
                row["max_val_acc_difference"] = float(
                    np.max(np.abs(np.subtract(sep["val_acc"], fus["val_acc"])))
                )
                rows.append(row)
    finally:
        ray.shutdown()
    if args.json:
        out: dict[str, Any] = {"cpus": args.cpus, "epochs": args.epochs, "rows": rows}
        out |= {f"ratio_k{r['k']}": r["ratio"] for r in rows}
        print(json.dumps(out, indent=1))
        return
    figures = ("training", "steady", "wall")
    print("samples/s: training phase summed over members | steady | samples trained / wall time")
    print(
        f"{'k':>3s} {'separate':>29s} {'fused':>29s} {'ratio':>18s} {'wall sep':>9s} "
        f"{'wall fused':>10s} {'max |dacc|':>10s}"
    )
    for r in rows:
        sep, fus = (
            " | ".join(f"{r[f'{n}_{fig}_samples_per_s']:,.0f}" for fig in figures)
            for n in ("separate", "fused")
        )
        ratios = " | ".join(f"{r[key]:4.2f}" for key in ("ratio_training", "ratio_steady", "ratio"))
        print(
            f"{r['k']:3d} {sep:>29s} {fus:>29s} {ratios:>18s} {r['separate_wall_s']:8.1f}s "
            f"{r['fused_wall_s']:9.1f}s {r['max_val_acc_difference']:10.2g}"
        )


if __name__ == "__main__":
    main()
