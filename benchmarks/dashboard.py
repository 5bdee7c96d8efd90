"""The dashboard's sweep page on a large finished sweep: 1,000 trials x 50 epochs, built
synthetically as real Parquet in caviar's schema (`results.build_tables`, `write_results`).
Times the JSON endpoint (cold: first read; warm: a poll of an unchanged sweep), the list
endpoint and the page, through a real `caviar serve` app on a free port. Prints ms.

    .venv/bin/python benchmarks/dashboard.py [--trials 1000] [--epochs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from caviar import results
from caviar.spec import dump_yaml
from caviar.storage import Location


def synthetic_run(
    root: Path,
    name: str,
    trials: int,
    epochs: int,
    seed: int = 0,
    asha: bool = False,
    killed: bool = False,
) -> Path:
    """A finished sweep whose curves rise with noise: every trial trains all `epochs` (the
    worst case), or with `asha` most stop early as under ASHA."""
    rng = np.random.default_rng(seed)
    spec = {
        "name": name,
        "metric": "val_acc",
        "mode": "max",
        "train": {"task": "digits", "model": "mlp", "max_epochs": epochs},
        "space": {
            "lr": {"loguniform": [1e-4, 1e-1]},
            "hidden": {"randint": [16, 512]},
            "batch_size": {"choice": [32, 64, 128]},
        },
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 3},
        "budget": {"num_samples": trials},
    }
    records = []
    for i in range(trials):
        lr = float(np.exp(rng.uniform(np.log(1e-4), np.log(1e-1))))
        n = epochs
        if asha:
            n = int(min(epochs, rng.choice([1, 3, 9, 27, epochs], p=[0.5, 0.25, 0.13, 0.08, 0.04])))
        quality = 1 - abs(np.log10(lr) + 2.5) / 3
        curve = quality * (1 - np.exp(-np.arange(1, n + 1) / 8)) + rng.normal(0, 0.01, n)
        history = [
            {"epoch": e + 1, "val_acc": float(v), "loss": float(1 - v), "time_total_s": e + 1.0}
            for e, v in enumerate(curve)
        ]
        config = {
            "lr": lr,
            "hidden": int(rng.integers(16, 513)),
            "batch_size": int(rng.choice([32, 64, 128])),
        }
        record = results.TrialRecord(
            f"{i:08x}", config, history, stopped_by_asha=n < epochs, running=killed
        )
        records.append(record)
    rungs = results.asha_rungs(1, 3, epochs)
    trials_df, history_df = results.build_tables(records, "val_acc", "max", epochs, rungs)
    run_dir = Location.of(root / name)
    run_dir.mkdir()
    spec_yaml = dump_yaml(spec)
    (run_dir / results.SPEC_FILE).write_text(spec_yaml)
    results.write_results(run_dir, trials_df, history_df, spec_yaml)
    if killed:  # a driver killed mid-sweep: every trial unfinished, read from Ray's files
        for record in records:
            trial_dir = root / name / results.RAY_DIR / record.trial_id
            trial_dir.mkdir(parents=True)
            lines = (json.dumps({**r, "config": record.config}) for r in record.history)
            (trial_dir / "result.json").write_text("".join(f"{line}\n" for line in lines))
        claim = {"host": platform.node(), "pid": 2**22 + 1}  # above pid_max: not alive
        (root / name / ".caviar-driver.json").write_text(json.dumps(claim))
    return root / name


async def _time(client, path: str, n: int) -> tuple[float, float, int]:
    """(first request ms, median of the next n, bytes)."""
    t0 = time.perf_counter()
    r = await client.get(path)
    body = await r.read()
    assert r.status == 200, (path, r.status)
    first = (time.perf_counter() - t0) * 1000
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = await client.get(path)
        await r.read()
        times.append((time.perf_counter() - t0) * 1000)
    return first, float(np.median(times)), len(body)


async def _bench(root: Path, name: str, n: int) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from caviar.dashboard.server import make_app

    async with TestClient(TestServer(make_app(str(root)))) as client:
        for path in (f"/api/sweep/{name}", "/api/sweeps", f"/sweep/{name}"):
            first, warm, size = await _time(client, path, n)
            print(
                f"{path:32s} first {first:8.1f} ms   warm (median of {n}) {warm:7.1f} ms   "
                f"{size / 1e3:8.1f} kB"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="caviar-dash-bench-") as d:
        t0 = time.perf_counter()
        synthetic_run(Path(d), "big", args.trials, args.epochs)
        synthetic_run(Path(d), "killed", args.trials, args.epochs, killed=True)
        print(
            f"built {args.trials} trials x {args.epochs} epochs, twice, in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        print("a finished sweep:")
        asyncio.run(_bench(Path(d), "big", args.repeat))
        print("a sweep whose driver was killed (every trial read from ray/*/result.json):")
        asyncio.run(_bench(Path(d), "killed", args.repeat))


if __name__ == "__main__":
    main()
