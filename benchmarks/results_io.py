"""Loading a sweep's results: caviar's Parquet path against Ray Tune's own loaders.

A sweep of 1,000 trials x 50 epochs (the flags change both). First a real Ray Tune experiment
directory is made: a plain `tune.Tuner` on a function trainable that reports 50 times a few
metrics, FIFO, `reuse_actors=True`, Ray's default loggers (result.json, progress.csv,
TensorBoard), trial folders named by trial id as caviar names them, between a private
`ray.init(address="local", include_dashboard=False)` and `ray.shutdown()`. It is made in a
child process, so no Ray process is running while the loaders are timed, and kept under
`--exp-dir` (a temp dir by default) so that a later call with the same `--exp-dir` reuses it.

Then, side by side in this process (imports done before any timing, each variant run
`--repeats` times interleaved, the median reported), with `time.perf_counter`:

  caviar       list the trial folders, `caviar.results.collect` (every result.json parsed in
               one `pyarrow.json.read_json` call, the history built in columns), `write_results`
               to a fresh run dir, then `pandas.read_parquet` of trials.parquet and
               history.parquet: the total. Before anything is timed, its tables are checked
               equal to those of caviar's per-line path (`collect(..., fast=False)`, the path
               caviar falls back to), which is timed too as `caviar_lines`
  ray_ea       `ray.tune.ExperimentAnalysis(exp_dir)` (which loads every trial's result.json
               into a per-epoch DataFrame in its constructor), `.trial_dataframes` (the
               per-epoch history, one DataFrame per trial) and `.dataframe()` (one row per trial)
  ray_grid     `tune.Tuner.restore(exp_dir, trainable).get_results()` (a ResultGrid over an
               ExperimentAnalysis), `.get_dataframe()` (one row per trial) and every
               `Result.metrics_dataframe` (the per-epoch history)

Every variant ends with the same per-epoch history in memory (trials x epochs rows; checked)
and a one-row-per-trial table. The ratio caviar / Ray is taken against the faster Ray variant
(target <= 0.2).

    python -m benchmarks.results_io                                  # 1000 x 50
    python -m benchmarks.results_io --trials 20 --epochs 5           # a quick check
    python -m benchmarks.results_io --exp-dir /tmp/results-io-exp    # create once, reuse
    python -m benchmarks.results_io --profile                        # where caviar's time goes

`--rewrite` measures something else: what one rewrite of the tables costs late in a running
sweep (caviar rewrites them as trials end, at most every 10 s). Synthetic result.json files
(`--trials` x `--epochs`, a few metrics per line, written directly: no Ray needed) stand for a
sweep with `--running` trials still running and the rest ended; `--batch` more trials end
before the rewrite that is timed. Side by side: a full `collect` + `write_results` of every
trial (what caviar did before), and `caviar.ray_seam.Recorder.write`, which reads a trial
once it has ended and afterwards only the running ones and those that ended since.

    python -m benchmarks.results_io --rewrite --trials 10000 --epochs 100
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
METRIC = "val_acc"
EXP_NAME = "exp"
META_FILE = "caviar_bench.json"
TARGET = 0.2


# --- the trial function (pickled by value for Ray's workers: keep it self-contained) ------


def trainable(config: dict) -> None:
    """Fifty epochs of a made-up learning curve; five metrics per report, as a real loop has."""
    import math

    from ray import tune

    for epoch in range(1, config["epochs"] + 1):
        progress = 1.0 - math.exp(-epoch * config["lr"] * 10)
        tune.report(
            {
                "epoch": epoch,
                "loss": 2.3 * (1.0 - progress) + 0.01 * config["hidden"] / 512,
                "acc": 0.1 + 0.85 * progress,
                "val_loss": 2.3 * (1.0 - progress) + 0.05,
                "val_acc": 0.1 + 0.8 * progress,
                "lr": config["lr"],
            }
        )


# --- making the experiment directory (in a child process) ---------------------------------


def create_experiment(storage: Path, trials: int, epochs: int) -> dict[str, Any]:
    """Run the sweep with Ray Tune's defaults for logging; return how long it took."""
    # Ray Tune's default loggers (progress.csv for its own loaders) stay on: caviar.driver's
    # switch is an environment variable, and this child never imports caviar.driver.
    os.environ.pop("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", None)
    import ray
    from ray import tune

    t0 = time.perf_counter()
    ray.init(address="local", include_dashboard=False)
    try:
        tuner = tune.Tuner(
            trainable,
            param_space={
                "lr": tune.loguniform(1e-4, 1e-1),
                "hidden": tune.randint(16, 512),
                "optimizer": tune.choice(["sgd", "adamw"]),
                "epochs": epochs,
            },
            tune_config=tune.TuneConfig(
                num_samples=trials,
                metric=METRIC,
                mode="max",
                reuse_actors=True,
                trial_dirname_creator=lambda t: t.trial_id,
            ),
            run_config=tune.RunConfig(storage_path=str(storage), name=EXP_NAME, verbose=0),
        )
        grid = tuner.fit()
    finally:
        ray.shutdown()
    seconds = time.perf_counter() - t0
    assert len(grid) == trials and grid.num_errors == 0, (len(grid), grid.num_errors)
    exp_dir = storage / EXP_NAME
    some = next(p for p in exp_dir.iterdir() if (p / "result.json").is_file())
    assert (some / "progress.csv").is_file(), f"{some}: no progress.csv (default loggers off?)"
    meta = {"trials": trials, "epochs": epochs, "create_s": seconds, "ray": ray.__version__}
    (exp_dir / META_FILE).write_text(json.dumps(meta))
    return meta


def ensure_experiment(storage: Path, trials: int, epochs: int) -> dict[str, Any]:
    """The experiment under storage/exp, made by a child process unless it is there already."""
    meta_file = storage / EXP_NAME / META_FILE
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if (meta["trials"], meta["epochs"]) == (trials, epochs):
            print(f"reusing {storage / EXP_NAME} (made in {meta['create_s']:.1f} s)", flush=True)
            return meta
        sys.exit(
            f"{storage / EXP_NAME} holds {meta['trials']} x {meta['epochs']}, not "
            f"{trials} x {epochs}; pass another --exp-dir"
        )
    if (storage / EXP_NAME).exists():
        sys.exit(f"{storage / EXP_NAME} exists but is incomplete; remove it or pass another")
    storage.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # never join someone else's cluster
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="caviar-rio-", dir="/tmp")  # private, short
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "benchmarks.results_io", "--create", str(storage)]
    cmd += ["--trials", str(trials), "--epochs", str(epochs)]
    print(f"creating a Ray Tune experiment of {trials} x {epochs} in {storage}...", flush=True)
    subprocess.run(cmd, cwd=REPO, env=env, check=True)
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    meta = json.loads(meta_file.read_text())
    print(f"made in {meta['create_s']:.1f} s", flush=True)
    return meta


# --- the loaders --------------------------------------------------------------------------


def load_caviar(exp_dir: Path, out: Path, epochs: int, fast: bool = True) -> dict[str, Any]:
    """caviar's path from Ray's per-trial result.json files to DataFrames read from Parquet."""
    import pandas as pd
    import pyarrow.fs as pafs

    from caviar.results import HISTORY_FILE, TRIALS_FILE, TrialDir, collect, write_results
    from caviar.storage import Location

    steps: dict[str, float] = {}
    t0 = t = time.perf_counter()

    def step(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        steps[name] = now - t
        t = now

    exp = Location.of(exp_dir)
    infos = exp.fs.get_file_info(pafs.FileSelector(exp.path))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)
    step("list")
    trials, history = collect(
        [TrialDir(n, exp / n, None) for n in names], METRIC, "max", epochs, fast=fast
    )
    step("collect")
    run_dir = Location.of(out)
    run_dir.mkdir()
    write_results(run_dir, trials, history, f"name: results-io\nmetric: {METRIC}\n")
    step("write_results")
    trials_df = pd.read_parquet(out / TRIALS_FILE)
    history_df = pd.read_parquet(out / HISTORY_FILE)
    step("read_parquet")
    return {
        "seconds": time.perf_counter() - t0,
        "steps": steps,
        "trials": len(trials_df),
        "history_rows": len(history_df),
    }


def load_ray_ea(exp_dir: Path) -> dict[str, Any]:
    from ray.tune import ExperimentAnalysis

    t0 = time.perf_counter()
    ea = ExperimentAnalysis(str(exp_dir))
    t1 = time.perf_counter()
    frames = ea.trial_dataframes
    table = ea.dataframe()
    t2 = time.perf_counter()
    return {
        "seconds": t2 - t0,
        "steps": {"ExperimentAnalysis()": t1 - t0, "trial_dataframes+dataframe()": t2 - t1},
        "trials": len(table),
        "history_rows": sum(len(df) for df in frames.values()),
    }


def load_ray_grid(exp_dir: Path) -> dict[str, Any]:
    from ray import tune

    t0 = time.perf_counter()
    grid = tune.Tuner.restore(str(exp_dir), trainable).get_results()
    t1 = time.perf_counter()
    table = grid.get_dataframe()
    frames = [r.metrics_dataframe for r in grid]
    t2 = time.perf_counter()
    return {
        "seconds": t2 - t0,
        "steps": {"Tuner.restore().get_results()": t1 - t0, "get_dataframe+metrics": t2 - t1},
        "trials": len(table),
        "history_rows": sum(len(df) for df in frames if df is not None),
    }


def profile_caviar(exp_dir: Path, epochs: int, top: int = 25) -> None:
    out = Path(tempfile.mkdtemp(prefix="caviar-rio-prof-")) / "run"
    prof = cProfile.Profile()
    prof.enable()
    load_caviar(exp_dir, out, epochs)
    prof.disable()
    shutil.rmtree(out.parent, ignore_errors=True)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(top)
    print(text.getvalue())


# --- the report ---------------------------------------------------------------------------


def machine() -> str:
    import pandas as pd
    import pyarrow as pa
    import ray

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"nproc {os.cpu_count()}, CPU {cpu}, memory {mem:.1f} GiB, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, Ray {ray.__version__}, "
        f"pandas {pd.__version__}, pyarrow {pa.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument(
        "--exp-dir",
        type=Path,
        help="where the Ray Tune experiment is made (as EXP_DIR/exp), or found from an "
        "earlier call; default a new temp dir, removed at the end",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--variants", default="caviar,caviar_lines,ray_ea,ray_grid", help="comma-separated subset"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile caviar's path once")
    parser.add_argument("--create", type=Path, help=argparse.SUPPRESS)  # the child's job
    parser.add_argument("--rewrite", action="store_true", help="time one rewrite in a sweep")
    parser.add_argument("--running", type=int, default=100, help="--rewrite: trials running")
    parser.add_argument("--batch", type=int, default=100, help="--rewrite: trials just ended")
    args = parser.parse_args(argv)

    if args.rewrite:
        return measure_rewrite(args)

    if args.create:
        create_experiment(args.create, args.trials, args.epochs)
        return 0

    storage = args.exp_dir or Path(tempfile.mkdtemp(prefix="caviar-results-io-"))
    try:
        ensure_experiment(storage.resolve(), args.trials, args.epochs)
        return measure(storage.resolve() / EXP_NAME, args)
    finally:
        if args.exp_dir is None:
            shutil.rmtree(storage, ignore_errors=True)


def _synthetic_sweep(run_dir: Path, trials: int, epochs: int) -> list[str]:
    """result.json files of `trials` trials x `epochs` epochs, as Ray would leave them."""
    ids = [f"{i:08x}" for i in range(trials)]
    for i, trial_id in enumerate(ids):
        d = run_dir / "ray" / trial_id
        d.mkdir(parents=True)
        lines = (
            json.dumps(
                {
                    "epoch": e,
                    "loss": 1 / e,
                    METRIC: 0.5 + 0.4 * (1 - 1 / e) * (i % 97) / 97,
                    "lr": 1e-3,
                    "trial_id": trial_id,
                    "training_iteration": e,
                }
            )
            for e in range(1, epochs + 1)
        )
        (d / "result.json").write_text("\n".join(lines) + "\n")
    return ids


def measure_rewrite(args: argparse.Namespace) -> int:
    from caviar import results
    from caviar.ray_seam import Recorder, make_scheduler
    from caviar.searchers import searcher_class
    from caviar.spec import parse_spec
    from caviar.storage import Location

    print(machine())
    spec = parse_spec(
        {
            "name": "rewrite",
            "metric": METRIC,
            "mode": "max",
            "train": {"function": "m:f", "max_epochs": args.epochs},
            "space": {"x": {"uniform": [0, 1]}},
            "scheduler": {"name": "fifo"},
            "budget": {"num_samples": args.trials},
        }
    )
    searcher = searcher_class("random")(
        spec.trial_space(), METRIC, "max", args.trials, 0, spec.searcher.options
    )
    root = Path(tempfile.mkdtemp(prefix="caviar-rewrite-"))
    try:
        t0 = time.perf_counter()
        ids = _synthetic_sweep(root, args.trials, args.epochs)
        print(
            f"made {args.trials} x {args.epochs} result files in {time.perf_counter() - t0:.1f} s"
        )
        ended_before = args.trials - args.running - args.batch

        def statuses(ended: int) -> list[tuple[str, dict, str, int]]:
            return [
                (t, {"x": 0.5}, "TERMINATED" if i < ended else "RUNNING", args.epochs)
                for i, t in enumerate(ids)
            ]

        loc = Location.of(root)
        recorder = Recorder(loc, spec, "", searcher, make_scheduler(spec), {})
        t0 = time.perf_counter()
        recorder.write(statuses(ended_before))  # the sweep so far: each ended trial read once
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        recorder.write(statuses(ended_before + args.batch))
        incremental = time.perf_counter() - t0
        t0 = time.perf_counter()
        trials_df, history_df = results.collect(
            [
                results.TrialDir(t, loc / "ray" / t, c, running=s == "RUNNING")
                for t, c, s, _ in statuses(ended_before + args.batch)
            ],
            METRIC,
            "max",
            args.epochs,
        )
        results.write_results(loc, trials_df, history_df, "")
        full = time.perf_counter() - t0
        assert len(history_df) == args.trials * args.epochs
        written = pd_read(root)
        assert len(written) == args.trials * args.epochs, len(written)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"{args.trials} trials x {args.epochs} epochs, {args.running} running, {args.batch} just "
        f"ended:\n  full rewrite (collect every trial, write): {full:.2f} s\n"
        f"  incremental rewrite (Recorder.write):      {incremental:.2f} s  "
        f"({full / incremental:.1f}x faster)\n"
        f"  the recorder's first write (every ended trial read once): {first:.2f} s"
    )
    return 0


def pd_read(root: Path) -> Any:
    import pandas

    return pandas.read_parquet(root / "history.parquet")


def measure(exp_dir: Path, args: argparse.Namespace) -> int:
    # Imports first: they are not what is timed.
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    from ray import tune  # noqa: F401
    from ray.tune import ExperimentAnalysis  # noqa: F401

    import caviar.results  # noqa: F401

    variants = [v for v in args.variants.split(",") if v]
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    scratch = Path(tempfile.mkdtemp(prefix="caviar-rio-out-"))
    print(machine())
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    expected = args.trials * args.epochs
    # Untimed: the columnar path must give the per-line path's tables on this experiment.
    from caviar.results import TrialDir, collect
    from caviar.storage import Location

    exp = Location.of(exp_dir)
    dirs = [TrialDir(p.name, exp / p.name, None) for p in sorted(exp_dir.iterdir()) if p.is_dir()]
    for fast, lines in zip(
        collect(dirs, METRIC, "max", args.epochs),
        collect(dirs, METRIC, "max", args.epochs, fast=False),
        strict=True,
    ):
        pandas.testing.assert_frame_equal(fast, lines, check_dtype=False)
    print("caviar: the columnar and per-line paths give the same tables (checked)")
    try:
        # One untimed pass over the files, so that every variant finds them in the page cache.
        for p in exp_dir.iterdir():
            if (p / "result.json").is_file():
                (p / "result.json").read_bytes()
        for i in range(args.repeats):
            for v in variants:
                gc.collect()
                if v == "caviar":
                    r = load_caviar(exp_dir, scratch / f"run{i}", args.epochs)
                elif v == "caviar_lines":
                    r = load_caviar(exp_dir, scratch / f"lines{i}", args.epochs, fast=False)
                elif v == "ray_ea":
                    r = load_ray_ea(exp_dir)
                elif v == "ray_grid":
                    r = load_ray_grid(exp_dir)
                else:
                    raise SystemExit(f"unknown variant {v!r}")
                assert r["history_rows"] == expected, (v, r["history_rows"], expected)
                assert r["trials"] == args.trials, (v, r["trials"], args.trials)
                runs[v].append(r)
                steps = ", ".join(f"{k} {s:.3f}" for k, s in r["steps"].items())
                print(f"  repeat {i + 1} {v:9s} {r['seconds']:7.3f} s  ({steps})", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    med = {v: statistics.median(r["seconds"] for r in rs) for v, rs in runs.items()}
    print(f"\n{args.trials} trials x {args.epochs} epochs = {expected} results, medians:")
    for v, s in med.items():
        print(f"  {v:9s} {s:7.3f} s")
    ray_variants = [v for v in med if v.startswith("ray_")]
    for ours in (v for v in ("caviar", "caviar_lines") if v in med and ray_variants):
        for v in ray_variants:
            print(f"  {ours} / {v}: {med[ours] / med[v]:.3f}")
        fastest = min(ray_variants, key=med.get)
        ratio = med[ours] / med[fastest]
        verdict = "PASS" if ratio <= TARGET else "MISS"
        print(f"{ours} / fastest Ray ({fastest}): {ratio:.3f} (target <= {TARGET}) {verdict}")
    if args.profile:
        profile_caviar(exp_dir, args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
