"""Per-trial overhead on trivial trials: caviar's full path against plain Ray Tune.

Three variants, each in its own Python process so that one cannot change another's
environment (importing `caviar.driver` turns off Ray Tune's CSV/TensorBoard loggers through
environment variables, which would flatter plain Ray Tune if it ran in the same process):

  caviar        a spec naming `benchmarks.overhead:trivial`, FIFO, run by `caviar.driver.run`
                exactly as `caviar run` does (its own private local Ray, then shut down)
  ray_defaults  plain `tune.Tuner` with default settings (a fresh actor per trial)
  reuse_actors  the same with `TuneConfig(reuse_actors=True)`

Each is timed with `time.perf_counter` around ray.init .. ray.shutdown (imports excluded, and
for caviar around `driver.run`, which holds both). Run from the repository root:

    python -m benchmarks.overhead [--trials 200]
    python benchmarks/overhead.py [--trials 200]
    python -m benchmarks.overhead --variants caviar,reuse_actors --repeats 5   # the 1.25x check

The machine may be shared: `--repeats` runs the variants interleaved and reports medians.

Exit status: 0 when every variant ran (a missed target prints MISS but is not a failure),
1 when a variant failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VARIANTS = ("caviar", "reuse_actors", "ray_defaults")
RESULT_PREFIX = "OVERHEAD_RESULT "
# (name, numerator, denominator, comparison, target)
TARGETS = (
    ("caviar / reuse_actors", "caviar", "reuse_actors", "<=", 1.25),
    ("ray_defaults / caviar", "ray_defaults", "caviar", ">=", 10.0),
)


# --- the trial functions (imported by Ray workers: keep this module's top level light) ----


def trivial(config: dict) -> dict:
    """caviar's user train function: a one-shot objective, reported once."""
    return {"score": config["x"]}


def ray_trivial(config: dict) -> None:
    """Plain Ray Tune's trainable: one report."""
    from ray import tune

    tune.report({"score": config["x"]})


# --- one variant, in this process ---------------------------------------------------------


def run_caviar(trials: int, storage: str) -> dict[str, Any]:
    from caviar import driver
    from caviar.results import TRIALS_FILE, load_trials
    from caviar.spec import parse_spec

    spec_dict = {
        "name": "overhead",
        "metric": "score",
        "mode": "max",
        "train": {"function": "benchmarks.overhead:trivial", "max_epochs": 1},
        "space": {"x": {"uniform": [0.0, 1.0]}},
        "searcher": {"name": "random"},
        "scheduler": {"name": "fifo"},
        "budget": {"num_samples": trials},
        "resources": {"cpu": 1, "gpu": 0},
    }
    t0 = time.perf_counter()
    spec = parse_spec(spec_dict)
    run_dir = driver.run(spec, storage=storage, name="overhead")
    seconds = time.perf_counter() - t0

    # driver.run returns the run dir (a Path, or a URI string since storage may be remote);
    # load_trials reads trials.parquet from either.
    table = load_trials(run_dir)
    assert len(table) == trials, f"{run_dir}/{TRIALS_FILE}: {len(table)} rows, expected {trials}"
    statuses = table["status"].value_counts().to_dict()
    assert statuses == {"completed": trials}, f"trial statuses {statuses}, expected all completed"
    assert table["score"].notna().all(), "some trials have no score"
    return {"seconds": seconds, "rows": len(table)}


def run_ray(trials: int, storage: str, reuse_actors: bool) -> dict[str, Any]:
    import ray
    from ray import tune

    t0 = time.perf_counter()
    ray.init(address="local", include_dashboard=False)
    try:
        tuner = tune.Tuner(
            ray_trivial,
            param_space={"x": tune.uniform(0, 1)},
            tune_config=tune.TuneConfig(
                num_samples=trials, metric="score", mode="max", reuse_actors=reuse_actors
            ),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        )
        grid = tuner.fit()
    finally:
        ray.shutdown()
    seconds = time.perf_counter() - t0

    assert len(grid) == trials, f"{len(grid)} results, expected {trials}"
    assert grid.num_errors == 0, f"{grid.num_errors} trials failed"
    scores = [r.metrics.get("score") for r in grid]
    assert all(s is not None for s in scores), "some trials have no score"
    return {"seconds": seconds, "rows": len(grid)}


def _time_ray_phases() -> dict[str, float]:
    """Wrap ray.init and ray.shutdown (as the module attributes every caller looks up) to
    record how long each took: the fixed cost inside a variant's end-to-end time."""
    import ray

    phases: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t

        return wrapper

    ray.init = timed("init_s", ray.init)
    ray.shutdown = timed("shutdown_s", ray.shutdown)
    return phases


def run_variant(variant: str, trials: int, keep: bool) -> dict[str, Any]:
    storage = tempfile.mkdtemp(prefix=f"caviar-overhead-{variant}-")
    phases = _time_ray_phases()
    try:
        if variant == "caviar":
            out = run_caviar(trials, storage)
        else:
            out = run_ray(trials, storage, reuse_actors=(variant == "reuse_actors"))
    finally:
        if keep:
            print(f"{variant}: storage kept at {storage}", file=sys.stderr)
        else:
            shutil.rmtree(storage, ignore_errors=True)
    return {"variant": variant, "trials": trials, **out, **phases}


# --- the parent: each variant in a child process, then the table --------------------------


def spawn(variant: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """Run one variant in a fresh interpreter from the repo root; None when it failed."""
    env = dict(os.environ)
    # caviar joins $RAY_ADDRESS if set; the benchmark wants the private local Ray.
    env.pop("RAY_ADDRESS", None)
    # Workers import `benchmarks.overhead` (caviar also puts its cwd on workers' sys.path).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.overhead",
        "--child",
        variant,
        "--trials",
        str(args.trials),
    ]
    if args.keep:
        cmd.append("--keep")
    log = Path(tempfile.mkstemp(prefix=f"caviar-overhead-{variant}-", suffix=".log")[1])
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
        try:
            rc: int | str = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            # SIGINT first: the child's `finally` shuts its own Ray down.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            rc = f"timeout after {args.timeout:g} s"
    text = log.read_text(errors="replace")
    result = None
    for line in text.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
    if rc != 0 or result is None:
        tail = "\n".join(text.splitlines()[-40:])
        print(f"{variant}: FAILED (exit {rc}); log {log}; last lines:\n{tail}", flush=True)
        return None
    if args.verbose:
        print(text, end="")
    if not args.keep:
        log.unlink(missing_ok=True)
    return result


def _line(variant: str, r: dict[str, Any], trials: int) -> str:
    init, shutdown = r.get("init_s", 0.0), r.get("shutdown_s", 0.0)
    rest = r["seconds"] - init - shutdown
    return (
        f"{variant:<13} {r['seconds']:9.2f} s  {1000 * r['seconds'] / trials:9.1f} ms/trial"
        f"  ({r['rows']} trials; ray.init {init:.1f} s, shutdown {shutdown:.1f} s, "
        f"the rest {1000 * rest / trials:.1f} ms/trial)"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=200, help="trials per variant (default 200)")
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated subset of {','.join(VARIANTS)}",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds before a variant is killed and counted as failed",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs of each variant, interleaved; the table shows medians (default 1)",
    )
    p.add_argument("--keep", action="store_true", help="keep run dirs and logs")
    p.add_argument("--verbose", action="store_true", help="print each variant's own output")
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.trials < 1:
        p.error("--trials: expected an integer >= 1")
    if args.repeats < 1:
        p.error("--repeats: expected an integer >= 1")

    if args.child:
        # Imports before the clock starts, as in every variant.
        import ray  # noqa: F401
        from ray import tune  # noqa: F401

        if args.child == "caviar":
            import caviar.driver  # noqa: F401
        out = run_variant(args.child, args.trials, args.keep)
        print(RESULT_PREFIX + json.dumps(out), flush=True)
        return 0

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {unknown}; expected some of {', '.join(VARIANTS)}")

    print(
        f"overhead: {args.trials} trivial trials per variant, each variant in its own "
        f"process; {os.cpu_count()} CPUs",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    failed = []
    for rep in range(args.repeats):
        for v in variants:
            if v in failed:
                continue
            r = spawn(v, args)
            if r is None:
                failed.append(v)
                continue
            runs[v].append(r)
            if args.repeats > 1:
                print(f"  repeat {rep + 1}/{args.repeats}: {_line(v, r, args.trials)}", flush=True)

    # The median of the repeats of each phase: one noisy run does not decide a ratio.
    seconds: dict[str, float] = {}
    for v in variants:
        if runs[v] and v not in failed:
            med = {
                k: statistics.median(r.get(k, 0.0) for r in runs[v])
                for k in ("seconds", "init_s", "shutdown_s")
            }
            seconds[v] = med["seconds"]
            spread = ""
            if len(runs[v]) > 1:
                all_s = sorted(r["seconds"] for r in runs[v])
                spread = f"  [median of {len(all_s)}: {all_s[0]:.2f} .. {all_s[-1]:.2f} s]"
            print(_line(v, {**med, "rows": runs[v][0]["rows"]}, args.trials) + spread, flush=True)

    for label, num, den, op, target in TARGETS:
        if num in seconds and den in seconds:
            ratio = seconds[num] / seconds[den]
            ok = ratio <= target if op == "<=" else ratio >= target
            print(f"{label:<22} {ratio:7.2f}  (target {op} {target:g})  {'PASS' if ok else 'MISS'}")
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    # `python benchmarks/overhead.py` puts benchmarks/ on sys.path, not the repo root.
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    sys.exit(main())
