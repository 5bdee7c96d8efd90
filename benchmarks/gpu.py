"""The GPU measurements (issue 15), in one process tree, each part side by side with its
baseline. Run through benchmarks/gpu_suite.sh on a GPU machine; `--dry-run` runs every part
at toy sizes on the CPU to check the script itself.

(a) caviar's train loop against the textbook DataLoader loop, one trial on the GPU
    (benchmarks.train_throughput's variants);
(b) fractional packing: k = 1, 2, 4, 8 caviar trials sharing one GPU (`resources.gpu` 1/k)
    through a real caviar sweep; aggregate samples/s;
(c) fused populations: k = 1, 8, 32, 128 members on one GPU (`caviar.train.population`),
    summed samples/s, eager and with the traced step (`caviar.train.population._backward`),
    and the CUDA fast paths (TF32, bf16 autocast, batched optimizer);
(d) trials per GPU-hour for the quickstart's MLP sweep (its space, 27 epochs, no early
    stopping): Ray Tune's defaults (one trial per GPU, DataLoader loop, no actor reuse)
    against caviar packed (8 trials per GPU) and caviar fused + packed (`resources.fuse` 8
    or 16, 8 or 4 groups per GPU), each a real caviar sweep;
(e) one packed trial exhausting the GPU's memory while the others finish.

Every part writes its numbers to OUT/gpu.json as soon as it ends, so a run cut short keeps
what it measured.

    python -m benchmarks.gpu --out DIR [--dry-run] [--parts abcde]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

RESULTS: dict[str, Any] = {}
OUT = Path(".")
DRY = False


def save() -> None:
    (OUT / "gpu.json").write_text(json.dumps(RESULTS, indent=1, default=str))


def log(*args: Any) -> None:
    print(*args, flush=True)


def device() -> torch.device:
    return torch.device("cpu" if DRY else "cuda")


# --- (a) ---------------------------------------------------------------------------------


def part_a() -> dict:
    from benchmarks import train_throughput as tt
    from caviar.train.data import load

    data, dev = load("mnist1d"), device()
    epochs, seeds = (3, 1) if DRY else (8, 2)
    out = {}
    for bs in (64, 256):
        variants = {
            "textbook": tt.textbook,
            "compute_bound": tt.compute_bound,
            "caviar": functools.partial(tt.caviar_loop, threads=1),
        }
        rates = {}
        for name, fn in variants.items():
            runs = [fn(data, bs, epochs, dev, seed) for seed in range(seeds)]
            rates[name] = statistics.median(r for rs, _ in runs for r in rs[1:])
            rates[name + "_val_acc"] = statistics.mean(acc for _, acc in runs)
        rates["ratio_caviar_textbook"] = rates["caviar"] / rates["textbook"]
        out[f"batch_{bs}"] = rates
        log(
            f"(a) batch {bs}: caviar {rates['caviar']:,.0f} samples/s, textbook "
            f"{rates['textbook']:,.0f}: {rates['ratio_caviar_textbook']:.2f}x (target 4x)"
        )
    return out


# --- (b), (d), (e): sweeps through caviar ----------------------------------------------------

QUICKSTART_SPACE = {
    "lr": {"loguniform": [1e-4, 3e-2]},
    "weight_decay": {"loguniform": [1e-6, 1e-1]},
    "hidden": {"randint": [32, 512]},
    "dropout": {"uniform": [0.0, 0.5]},
    "batch_size": {"choice": [32, 64, 128, 256]},
}
QUICKSTART_FIXED = {"optimizer": "adamw", "depth": 2}


def caviar_sweep(spec: dict, storage: str) -> tuple[float, Any, Any]:
    """(wall seconds of caviar.driver.run, trials table, history table)."""
    import pandas as pd

    from caviar import driver
    from caviar.spec import parse_spec

    t0 = time.perf_counter()
    run_dir = driver.run(parse_spec(spec), storage=storage, name=spec["name"])
    wall = time.perf_counter() - t0
    return (
        wall,
        pd.read_parquet(f"{run_dir}/trials.parquet"),
        pd.read_parquet(f"{run_dir}/history.parquet"),
    )


def part_b(storage: str) -> dict:
    out = {}
    epochs = 3 if DRY else 15
    for k in (1, 2, 4, 8):
        share = {"cpu": 1 / k, "gpu": 0} if DRY else {"cpu": 1, "gpu": 1 / k}
        spec = {
            "name": f"pack{k}",
            "metric": "val_acc",
            "mode": "max",
            "train": {
                "task": "mnist1d",
                "model": "mlp",
                "max_epochs": epochs,
                "fixed": {"optimizer": "adamw", "hidden": 256, "batch_size": 64},
            },
            "space": {"lr": {"loguniform": [1e-3, 1e-2]}},
            "scheduler": {"name": "fifo"},
            "budget": {"num_samples": k, "max_concurrent": k},
            "resources": share,
        }
        wall, trials, history = caviar_sweep(spec, storage)
        # Each trial's median training throughput over epochs 2..N; all k run at once.
        per_trial = history[history.epoch > 1].groupby("trial_id").samples_per_s.median()
        out[f"k{k}"] = {
            "aggregate_samples_per_s": float(per_trial.sum()),
            "per_trial_samples_per_s": float(per_trial.median()),
            "sweep_wall_s": wall,
            "statuses": trials.status.value_counts().to_dict(),
        }
        log(
            f"(b) {k} trials per GPU: aggregate {per_trial.sum():,.0f} samples/s "
            f"({per_trial.median():,.0f} each), sweep {wall:.1f}s"
        )
    return out


def quickstart_spec(name: str, n: int, share: dict, fifo: bool = True) -> dict:
    return {
        "name": name,
        "metric": "val_acc",
        "mode": "max",
        "train": {
            "task": "mnist1d",
            "model": "mlp",
            "max_epochs": 3 if DRY else 27,
            "fixed": QUICKSTART_FIXED,
        },
        "space": QUICKSTART_SPACE,
        "searcher": {"name": "random"},
        "scheduler": {"name": "fifo"} if fifo else {"name": "asha", "grace_period": 3},
        "budget": {"num_samples": n},
        "resources": share,
    }


def textbook_trial(config: dict, data: Any) -> None:
    """Ray Tune's documented pattern: a DataLoader loop reporting every epoch."""
    import torch.nn.functional as F
    from ray import tune
    from torch.utils.data import DataLoader, TensorDataset

    from caviar.train import DEFAULTS, models

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    hp = {**DEFAULTS, **config}
    net = models.build("mlp", data.shape, data.num_classes, hp).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    loader = DataLoader(
        TensorDataset(torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)),
        batch_size=int(hp["batch_size"]),
        shuffle=True,
    )
    x_val, y_val = torch.as_tensor(data.x_val).to(dev), torch.as_tensor(data.y_val).to(dev)
    for epoch in range(1, int(hp["max_epochs"]) + 1):
        net.train()
        for xb, yb in loader:
            xb, yb = xb.to(dev), yb.to(dev)
            opt.zero_grad()
            F.cross_entropy(net(xb), yb).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            acc = (net(x_val).argmax(1) == y_val).float().mean().item()
        tune.report({"val_acc": acc, "epoch": epoch})


def ray_defaults_sweep(n: int, storage: str) -> tuple[float, int]:
    import ray
    from ray import tune

    from caviar.train.data import load

    space = {
        "lr": tune.loguniform(1e-4, 3e-2),
        "weight_decay": tune.loguniform(1e-6, 1e-1),
        "hidden": tune.randint(32, 513),  # Ray's upper bound is exclusive
        "dropout": tune.uniform(0.0, 0.5),
        "batch_size": tune.choice([32, 64, 128, 256]),
        "max_epochs": 3 if DRY else 27,
        **QUICKSTART_FIXED,
    }
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        if not DRY and ray.cluster_resources().get("GPU", 0) < 1:
            raise RuntimeError(f"Ray sees no GPU: {ray.cluster_resources()}")
        trainable = tune.with_resources(
            tune.with_parameters(textbook_trial, data=load("mnist1d")),
            {"cpu": 1, "gpu": 0 if DRY else 1},
        )
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(num_samples=n, metric="val_acc", mode="max"),
            run_config=tune.RunConfig(storage_path=storage, name="ray_defaults", verbose=0),
        )
        t0 = time.perf_counter()
        grid = tuner.fit()
        wall = time.perf_counter() - t0
        done = sum(r.error is None for r in grid)
    finally:
        ray.shutdown()
    return wall, done


def fused_sweep(n: int, fuse: int, groups_per_gpu: int, storage: str) -> tuple[float, int]:
    """The quickstart's sweep with `resources.fuse` (a real caviar sweep): groups of up to
    `fuse` trials of one shape, `groups_per_gpu` groups sharing each GPU."""
    share = (
        {"cpu": 0.25, "gpu": 0, "fuse": fuse}
        if DRY
        else {"cpu": 1, "gpu": 1 / groups_per_gpu, "fuse": fuse}
    )
    wall, trials, _ = caviar_sweep(quickstart_spec(f"fused{fuse}", n, share), storage)
    return wall, int((trials.status == "completed").sum())


def part_d(storage: str) -> dict:
    n_ray = 4 if DRY else 8
    n_caviar = 8 if DRY else 64
    packed = {"cpu": 0.25, "gpu": 0} if DRY else {"cpu": 1, "gpu": 0.125}
    out: dict[str, Any] = {}

    def caviar_packed() -> tuple[float, int]:
        wall, trials, _ = caviar_sweep(quickstart_spec("packed", n_caviar, packed), storage)
        return wall, int((trials.status == "completed").sum())

    variants = {
        "ray_defaults": lambda: ray_defaults_sweep(n_ray, storage),
        "caviar_packed8": caviar_packed,
        "caviar_fused8_packed8": lambda: fused_sweep(n_caviar, 8, 8, storage),
        "caviar_fused16_packed4": lambda: fused_sweep(n_caviar, 16, 4, storage),
    }
    for name, fn in variants.items():
        try:
            wall, done = fn()
        except Exception:  # one variant failing must not lose the others
            out[name] = {"error": traceback.format_exc()}
            log(f"(d) {name} FAILED: {out[name]['error']}")
            continue
        out[name] = {"trials": done, "wall_s": wall, "trials_per_gpu_hour": done / wall * 3600}
        log(f"(d) {name}: {done} trials in {wall:.1f}s: {done / wall * 3600:,.0f} trials/GPU-hour")
        RESULTS["d"] = out
        save()
    base = out.get("ray_defaults", {}).get("trials_per_gpu_hour")
    for v in out.values():
        if base and "trials_per_gpu_hour" in v:
            v["ratio_vs_ray_defaults"] = v["trials_per_gpu_hour"] / base
    return out


def part_e(storage: str) -> dict:
    spec = {
        "name": "oom",
        "metric": "score",
        "mode": "max",
        "train": {"function": "benchmarks.gpu_oom:train", "max_epochs": 6},
        "space": {"x": {"choice": [0.0, 0.25, 0.5, 1.0]}},
        "searcher": {"name": "grid"},
        "scheduler": {"name": "fifo"},
        "budget": {"num_samples": 4, "max_concurrent": 4},
        "resources": {"cpu": 1, "gpu": 0} if DRY else {"cpu": 1, "gpu": 0.25},
    }
    wall, trials, _ = caviar_sweep(spec, storage)
    rows = trials[["param_x", "status", "error_type", "epochs"]].to_dict("records")
    log(f"(e) {rows}")
    return {"wall_s": wall, "trials": rows}


# --- (c) ---------------------------------------------------------------------------------


def part_c() -> dict:
    from caviar.train import population
    from caviar.train.data import load
    from caviar.train.population import Population

    data, dev = load("mnist1d"), device()
    ks = (1, 4) if DRY else (1, 8, 32, 128)
    out: dict[str, Any] = {}
    trace_after = population.TRACE_AFTER

    def measure(
        k: int,
        model: str = "mlp",
        tf32: bool = True,
        batched: bool | None = None,
        traced: bool = False,
        **extra: Any,
    ) -> float:
        # Eager steps throughout, or traced from the warm-up epoch on (`_backward`).
        population.TRACE_AFTER = 0 if traced else 1 << 30
        pop = Population(data, model, device=dev)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        for i in range(k):
            pop.add(
                i,
                {
                    "max_epochs": 1000,
                    "optimizer": "adamw",
                    "hidden": 256,
                    "channels": 32,
                    "depth": 2,
                    "batch_size": 64,
                    "lr": 1e-3 * (1 + i / k),
                    "dropout": 0.1,
                    "seed": i,
                    **extra,
                },
            )
        if batched is not None:
            pop.opt.batched = batched
        pop.train_epoch()  # warm-up
        t0 = time.perf_counter()
        epochs = 3
        for _ in range(epochs):
            pop.train_epoch()
        return k * len(data.x_train) * epochs / (time.perf_counter() - t0)

    def attempt(name: str, fn: Any) -> None:
        try:
            out[name] = fn()
            log(f"(c) {name}: {out[name]:,.0f} samples/s summed")
        except Exception:  # one variant failing must not lose the others
            out[name] = None
            out[name + "_error"] = traceback.format_exc()
            log(f"(c) {name} FAILED: {out[name + '_error']}")
        RESULTS["c"] = out
        save()

    for k in ks:
        attempt(f"k{k}", functools.partial(measure, k))
        attempt(f"k{k}_traced", functools.partial(measure, k, traced=True))
    k = ks[-1] if DRY else 32
    for name, kwargs in {
        "tf32_off": {"tf32": False},
        "bf16": {"precision": "bf16"},
        "per_member_optimizer": {"batched": False},
        "cnn": {"model": "cnn"},
    }.items():
        attempt(f"k{k}_{name}", functools.partial(measure, k, **kwargs))
    attempt("cnn_k1", functools.partial(measure, 1, model="cnn"))
    population.TRACE_AFTER = trace_after
    return out


def main() -> None:
    global OUT, DRY
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_out")
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU")
    parser.add_argument("--parts", default="acdbe")
    args = parser.parse_args()
    OUT, DRY = Path(args.out), args.dry_run
    OUT.mkdir(parents=True, exist_ok=True)
    if not DRY and not torch.cuda.is_available():
        sys.exit("benchmarks.gpu: no CUDA device; use --dry-run to check the script on a CPU")
    RESULTS["machine"] = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "dry_run": DRY,
    }
    storage = tempfile.mkdtemp(prefix="caviar-gpu-")
    parts = {
        "a": part_a,
        "c": part_c,
        "d": lambda: part_d(storage),
        "b": lambda: part_b(storage),
        "e": lambda: part_e(storage),
    }
    for name in args.parts:
        t0 = time.perf_counter()
        try:
            RESULTS[name] = parts[name]()
        except Exception:  # one part failing must not lose the others' numbers
            RESULTS[name] = {"error": traceback.format_exc()}
            log(f"({name}) FAILED:\n{RESULTS[name]['error']}")
        RESULTS[name + "_seconds"] = time.perf_counter() - t0
        save()
    log(
        json.dumps(
            {k: v for k, v in RESULTS.items() if not isinstance(v, dict) or "error" not in v},
            default=str,
        )[:3000]
    )


if __name__ == "__main__":
    main()
