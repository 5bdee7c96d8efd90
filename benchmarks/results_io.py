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

  caviar       list the trial folders, `caviar.results.read_trial_dir` on each (every
               result.json, parsed line by line), `TrialRecord`s (config from the results),
               `build_tables`, `write_results` to a fresh run dir, then
               `pandas.read_parquet` of trials.parquet and history.parquet: the total
  proposed     the same with `proposed_build_tables` (below: a prototype of a change to
               caviar/results.py, one `pyarrow.json.read_json` over every result.json's bytes,
               the history built in columns) in place of read_trial_dir + build_tables; checked
               to give the same tables as the current path before anything is timed
  ray_ea       `ray.tune.ExperimentAnalysis(exp_dir)` (which loads every trial's result.json
               into a per-epoch DataFrame in its constructor), `.trial_dataframes` (the
               per-epoch history, one DataFrame per trial) and `.dataframe()` (one row per trial)
  ray_grid     `tune.Tuner.restore(exp_dir, trainable).get_results()` (a ResultGrid over an
               ExperimentAnalysis), `.get_dataframe()` (one row per trial) and every
               `Result.metrics_dataframe` (the per-epoch history)

Every variant ends with the same per-epoch history in memory (trials x epochs rows; checked)
and a one-row-per-trial table. The ratios caviar / Ray and proposed / Ray are taken against
the faster Ray variant (target <= 0.2).

    python -m benchmarks.results_io                                  # 1000 x 50
    python -m benchmarks.results_io --trials 20 --epochs 5           # a quick check
    python -m benchmarks.results_io --exp-dir /tmp/results-io-exp    # create once, reuse
    python -m benchmarks.results_io --profile                        # where caviar's time goes
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


def load_caviar(exp_dir: Path, out: Path, epochs: int) -> dict[str, Any]:
    """caviar's path from Ray's per-trial result.json files to DataFrames read from Parquet."""
    import pandas as pd
    import pyarrow.fs as pafs

    from caviar.results import (
        HISTORY_FILE,
        TRIALS_FILE,
        TrialRecord,
        build_tables,
        read_trial_dir,
        write_results,
    )
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
    records = []
    for name in names:
        history, error = read_trial_dir(exp / name)
        if not history and error is None:
            continue
        config = history[-1].get("config", {}) if history else {}
        records.append(TrialRecord(name, config, history, error))
    step("read_trial_dir")
    trials, history = build_tables(records, METRIC, "max", epochs)
    step("build_tables")
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


def proposed_build_tables(
    trial_dirs: list[tuple[str, Any]],
    configs: dict[str, dict[str, Any]] | None,
    metric: str,
    mode: str,
    max_epochs: int,
) -> tuple[Any, Any] | None:
    """A PROTOTYPE of the change proposed for caviar/results.py (see RESULTS.md): every
    trial's result.json parsed in one `pyarrow.json.read_json` call over the concatenated
    bytes (C++, instead of 50,000 `json.loads`), the history de-duplicated and ordered in
    columns, and the trials table built by the current `build_tables` from each trial's last
    row (its best value computed in columns). None where the fast path does not apply (a
    metric whose JSON type changes between reports): the caller falls back to the current path.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.json as pj

    from caviar.results import _RAY_KEYS, TrialRecord, build_tables

    parts, counts, ids, errors = [], [], [], {}
    for trial_id, trial_dir in trial_dirs:
        path, error_file = trial_dir / "result.json", trial_dir / "error.txt"
        raw = path.read_bytes() if path.exists() else b""
        if raw and not raw.endswith(b"\n"):  # a driver killed mid-write: a partial last line
            head, _, tail = raw.rpartition(b"\n")
            try:
                json.loads(tail)
                raw += b"\n"
            except ValueError:
                raw = head + b"\n" if head else b""
        if b"\n\n" in raw or raw[:1].isspace():  # blank lines: read_json skips them
            raw = b"".join(line + b"\n" for line in raw.split(b"\n") if line.strip())
        error = error_file.read_text() if error_file.exists() else None
        n = raw.count(b"\n")
        if not n and error is None and not (configs or {}).get(trial_id):
            continue  # suggested but never started
        parts.append(raw)
        counts.append(n)
        ids.append(trial_id)
        errors[trial_id] = error
    try:
        table = pj.read_json(pa.BufferReader(b"".join(parts))) if sum(counts) else None
    except pa.ArrowInvalid:
        return None
    if table is not None and (table.num_rows != sum(counts) or "epoch" not in table.schema.names):
        return None
    best: dict[str, Any] = {}
    last: dict[str, dict[str, Any]] = {}
    if table is None:
        history = pd.DataFrame(columns=["trial_id", "epoch"])
    else:
        trial_index = np.repeat(np.arange(len(ids)), counts)
        try:
            epoch = table.column("epoch").cast(pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        keys = pd.DataFrame({"t": trial_index, "epoch": epoch.to_pandas()})
        keys = keys[keys["epoch"].notna()]
        keys = keys[~keys.duplicated(["t", "epoch"], keep="last")]  # the last report wins
        order = keys.sort_values(["t", "epoch"], kind="stable").index.to_numpy()
        rows = table.set_column(table.schema.get_field_index("epoch"), "epoch", epoch)
        rows = rows.take(order)
        row_trial = trial_index[order]
        cols = [c for c in rows.column_names if c not in _RAY_KEYS]
        history = rows.select(cols).add_column(
            0, "trial_id", pa.array(np.asarray(ids, dtype=object)[row_trial], pa.string())
        )
        history = history.to_pandas()
        history["epoch"] = history["epoch"].astype("int64")
        # Each trial's last row, and its best value of the metric (finite numbers only).
        ends = np.flatnonzero(np.r_[row_trial[1:] != row_trial[:-1], True])
        for t, row in zip(row_trial[ends], rows.take(ends).to_pylist(), strict=True):
            last[ids[t]] = {k: v for k, v in row.items() if v is not None}
        if metric in rows.column_names:
            values = pd.to_numeric(rows.column(metric).to_pandas(), errors="coerce")
            values = values.where(np.isfinite(values))
            grouped = values.groupby(row_trial)
            by_trial = grouped.max() if mode == "max" else grouped.min()
            best = {ids[t]: None if pd.isna(v) else float(v) for t, v in by_trial.items()}

    def config(t: str) -> dict[str, Any]:
        # The driver passes the ResultGrid's configs; without them, Ray's copy in the results.
        return configs.get(t, {}) if configs is not None else last.get(t, {}).get("config", {})

    records = [TrialRecord(t, config(t), [last[t]] if t in last else [], errors[t]) for t in ids]
    trials, _ = build_tables(records, metric, mode, max_epochs)
    if not trials.empty:
        trials[f"best_{metric}"] = [best.get(t) for t in ids]
    return trials, history


def load_proposed(exp_dir: Path, out: Path, epochs: int) -> dict[str, Any]:
    """The caviar variant with `proposed_build_tables` in place of read_trial_dir and
    build_tables; the rest (list, write_results, read_parquet) as in load_caviar."""
    import pandas as pd
    import pyarrow.fs as pafs

    from caviar.results import HISTORY_FILE, TRIALS_FILE, write_results
    from caviar.storage import Location

    t0 = time.perf_counter()
    exp = Location.of(exp_dir)
    infos = exp.fs.get_file_info(pafs.FileSelector(exp.path))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)
    t1 = time.perf_counter()
    built = proposed_build_tables([(n, exp / n) for n in names], None, METRIC, "max", epochs)
    assert built is not None, "the fast path did not apply"
    trials, history = built
    t2 = time.perf_counter()
    run_dir = Location.of(out)
    run_dir.mkdir()
    write_results(run_dir, trials, history, f"name: results-io\nmetric: {METRIC}\n")
    t3 = time.perf_counter()
    trials_df = pd.read_parquet(out / TRIALS_FILE)
    history_df = pd.read_parquet(out / HISTORY_FILE)
    t4 = time.perf_counter()
    return {
        "seconds": t4 - t0,
        "steps": {
            "list": t1 - t0,
            "proposed_build_tables": t2 - t1,
            "write_results": t3 - t2,
            "read_parquet": t4 - t3,
        },
        "trials": len(trials_df),
        "history_rows": len(history_df),
    }


def check_proposed(trial_dirs: list[tuple[str, Any]], metric: str, mode: str, epochs: int) -> None:
    """The prototype gives the same Parquet tables as read_trial_dir + build_tables."""
    import pandas as pd
    import pyarrow as pa

    from caviar.results import TrialRecord, build_tables, read_trial_dir

    records, configs = [], {}
    for name, d in trial_dirs:
        history, error = read_trial_dir(d)
        if history or error is not None:
            # As the driver does: the configs come from elsewhere (the ResultGrid).
            configs[name] = next((r["config"] for r in reversed(history) if "config" in r), {})
            records.append(TrialRecord(name, configs[name], history, error))
    expected = build_tables(records, metric, mode, epochs)
    got = proposed_build_tables(trial_dirs, configs, metric, mode, epochs)
    assert got is not None, "the fast path did not apply"
    for name, want, have in zip(("trials", "history"), expected, got, strict=True):
        want = pa.Table.from_pandas(want, preserve_index=False).to_pandas()
        have = pa.Table.from_pandas(have, preserve_index=False).to_pandas()
        pd.testing.assert_frame_equal(have, want, check_dtype=False, obj=name)


def check_proposed_edge_cases() -> None:
    """Replayed epochs, NaN and infinity, a partial last line, blank lines, an errored trial
    with no results, a float epoch, a metric only some trials report: same tables."""
    from caviar.storage import Location

    root = Path(tempfile.mkdtemp(prefix="caviar-rio-edge-"))
    nan, inf = float("nan"), float("inf")
    cfg = {"lr": 0.1}
    files = {
        "t1": [{"epoch": e, "acc": 0.1 * e, "trial_id": "t1", "config": cfg} for e in (1, 2, 1, 3)],
        "t2": [{"epoch": 1, "acc": nan, "loss": inf, "diverged": True, "config": cfg}],
        "t3": [{"epoch": 1.0, "acc": 0.5, "note": "x", "config": cfg}, {"done": True}],
        "t4": [],
        "t5": [{"epoch": e, "acc": -inf if e == 2 else 0.2, "config": cfg} for e in (1, 2)],
    }
    try:
        for name, rows in files.items():
            d = root / name
            d.mkdir()
            text = "".join(json.dumps(r) + "\n" for r in rows)
            if name == "t1":
                text = "\n" + text + '{"epoch": 4, "acc'  # blank first line, partial last
            if name == "t4":
                (d / "error.txt").write_text("Traceback...\nValueError: boom")
            (d / "result.json").write_text(text)
        dirs = [(n, Location.of(root) / n) for n in files]
        for mode in ("max", "min"):
            check_proposed(dirs, "acc", mode, 3)
        # A value whose JSON type changes (text, then a number): no fast path, None.
        (root / "t5" / "result.json").write_text('{"epoch": 2, "note": 7}\n')
        assert proposed_build_tables(dirs, None, "acc", "max", 3) is None
    finally:
        shutil.rmtree(root, ignore_errors=True)


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
        "--variants", default="caviar,proposed,ray_ea,ray_grid", help="comma-separated subset"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile caviar's path once")
    parser.add_argument("--create", type=Path, help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args(argv)

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
    if "proposed" in variants:  # untimed: the prototype must give the same tables
        from caviar.storage import Location

        check_proposed_edge_cases()
        exp = Location.of(exp_dir)
        dirs = sorted(p.name for p in exp_dir.iterdir() if p.is_dir())
        check_proposed([(n, exp / n) for n in dirs], METRIC, "max", args.epochs)
        print("proposed: same trials and history tables as the current path (checked)")
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
                elif v == "proposed":
                    r = load_proposed(exp_dir, scratch / f"proposed{i}", args.epochs)
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
    for ours in (v for v in ("caviar", "proposed") if v in med and ray_variants):
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
