"""Spec -> Ray Tune: the trainable, its resources, the searcher, ASHA, checkpoints; then the
results into Parquet. This module and `caviar.session` are the only ones that talk to Ray."""

from __future__ import annotations

import functools
import importlib
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from caviar import catalog, results, session
from caviar.errors import CaviarError, RunDirError
from caviar.searchers import Outcome, Searcher, searcher_class
from caviar.spec import SweepSpec, dump_yaml, spec_to_dict
from caviar.storage import Location

# Ray Tune warns on every forced experiment snapshot, which per-epoch checkpoints trigger.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Ray logs every result as JSON, CSV and TensorBoard; caviar reads only the JSON (results.py),
# so the others are turned off and the JSON logger is added back explicitly.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

DEFAULT_STORAGE = "caviar_runs"


def load_function(target: str, search_path: str | None = None) -> Callable[[dict], Any]:
    """Import "module:function", looking in `search_path` (the user's working directory) too."""
    module_name, _, attr = target.partition(":")
    if search_path and search_path not in sys.path:
        sys.path.insert(0, search_path)
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise CaviarError(
            f"train.function: cannot import {target!r} ({type(e).__name__}: {e}); the module "
            "must be importable from the working directory or installed"
        ) from None
    if not callable(fn):
        raise CaviarError(f"train.function: {target!r} is not callable")
    return fn


def _builtin_trainable(config: dict, *, data: Any, model: str, threads: int, metric: str) -> None:
    from caviar.train.loop import train

    fn = functools.partial(train, data=data, model=model, threads=threads)
    session.run(fn, config, session.RaySession(metric))


def _user_trainable(config: dict, *, target: str, search_path: str, metric: str) -> None:
    session.run(load_function(target, search_path), config, session.RaySession(metric))


def make_trainable(spec: SweepSpec, search_path: str) -> Any:
    """The function Ray Tune runs for each trial, with its resources attached."""
    from ray import tune

    if spec.train.function:
        fn = functools.partial(
            _user_trainable,
            target=spec.train.function,
            search_path=search_path,
            metric=spec.metric,
        )
        trainable = tune.with_parameters(fn)
    else:
        from caviar.train.data import load

        # Built once in the driver and shared through the object store: no trial rebuilds it.
        trainable = tune.with_parameters(
            functools.partial(
                _builtin_trainable,
                model=spec.train.model,
                threads=max(1, int(spec.resources.cpu)),
                metric=spec.metric,
            ),
            data=load(spec.train.task, spec.seed, spec.train.data, spec.train.label),
        )
    return tune.with_resources(trainable, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})


def _tune_searcher(searcher: Searcher, max_epochs: int) -> Any:
    """Adapt a caviar searcher to Ray Tune's Searcher interface."""
    from ray.tune.search import Searcher as RaySearcher

    class TuneSearcher(RaySearcher):
        def __init__(self) -> None:
            super().__init__(metric=searcher.metric, mode=searcher.mode)
            # Not `self.searcher`: Ray takes any object with that attribute for a wrapper.
            self.last: dict[str, dict] = {}
            self.best: dict[str, float] = {}

        def suggest(self, trial_id: str) -> dict | None:
            return searcher.suggest(trial_id)

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            self.last[trial_id] = result
            value = result.get(searcher.metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                best = self.best.get(trial_id)
                if best is None or searcher.sign(value) < searcher.sign(best):
                    self.best[trial_id] = value

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
            last = result or self.last.get(trial_id)
            self.last.pop(trial_id, None)
            status = results.trial_status(last, error, max_epochs)
            value = last.get(searcher.metric) if last else None
            epoch = int(last.get("epoch", 0)) if last else 0
            best = self.best.pop(trial_id, None)
            searcher.on_trial_complete(trial_id, Outcome(status, value, best, epoch))

        def save(self, checkpoint_path: str) -> None:
            import pickle

            with open(checkpoint_path, "wb") as f:
                pickle.dump(searcher.state_dict(), f)

        def restore(self, checkpoint_path: str) -> None:
            import pickle

            with open(checkpoint_path, "rb") as f:
                searcher.load_state_dict(pickle.load(f))

    return TuneSearcher()


def _scheduler(spec: SweepSpec, stopped: set[str]) -> Any:
    """ASHA or FIFO; ids of trials ASHA stops before max_epochs are added to `stopped`."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s, max_epochs = spec.scheduler, spec.train.max_epochs
    if s.name == "fifo":
        return FIFOScheduler()

    class RecordingASHA(ASHAScheduler):
        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            decision = super().on_trial_result(tune_controller, trial, result)
            final = result.get(session.FINAL) or result.get("epoch", max_epochs) >= max_epochs
            if decision == self.STOP and not final:
                stopped.add(trial.trial_id)
            return decision

    return RecordingASHA(
        time_attr="epoch",
        max_t=max_epochs,
        grace_period=s.grace_period,
        reduction_factor=s.reduction_factor,
        brackets=s.brackets,
    )


class _Abort:
    """Stops the whole sweep when a trial misuses `caviar.report` (the sweep's metric missing,
    no epoch): every other trial would fail the same way, so the budget is not spent on them."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def check(self, trial: Any) -> None:
        # The local error file is written before callbacks run; storage is synced later.
        path = trial.error_file
        error = Path(path).read_text() if path and Path(path).exists() else ""
        if self.reason is None and "ReportError" in error:
            line = next(ln for ln in error.splitlines() if "caviar.report:" in ln)
            self.reason = "train.function: " + line.split("caviar.report:", 1)[1].strip()

    def stopper(self) -> Any:
        from ray.tune import Stopper

        abort = self

        class AbortStopper(Stopper):
            def __call__(self, trial_id: str, result: dict) -> bool:
                return False

            def stop_all(self) -> bool:
                return abort.reason is not None

        return AbortStopper()


class _Recorder:
    """Writes trials.parquet and history.parquet from the trials' result files: after the
    sweep, and while it runs (at most every `every_s` seconds, as trials end), so a running or
    crashed sweep still has readable results."""

    def __init__(
        self,
        run_dir: Location,
        spec: SweepSpec,
        spec_yaml: str,
        searcher: Searcher,
        stopped: set[str],
        environment: dict[str, str],
        every_s: float = 10.0,
    ):
        self.run_dir, self.spec, self.searcher, self.stopped = run_dir, spec, searcher, stopped
        self.spec_yaml = spec_yaml
        self.metadata = {"caviar.seed": str(spec.seed), **environment}
        self.every_s, self.last = every_s, 0.0
        s = spec.scheduler
        self.rungs = (
            results.asha_rungs(s.grace_period, s.reduction_factor, spec.train.max_epochs)
            if s.name == "asha"
            else None
        )

    def write(self, trials: Any) -> None:
        trials_df, history_df = results.collect(
            [
                results.TrialDir(
                    trial_id,
                    self.run_dir / results.RAY_DIR / trial_id,
                    config,
                    self.searcher.round_of(trial_id),
                    trial_id in self.stopped,
                    errored,
                )
                for trial_id, config, errored in trials
            ],
            self.spec.metric,
            self.spec.mode,
            self.spec.train.max_epochs,
            self.rungs,
        )
        results.write_results(
            self.run_dir,
            trials_df,
            history_df,
            self.spec_yaml,
            self.searcher.regions(),
            self.metadata,
        )
        self.last = time.monotonic()

    def maybe_write(self, trials: list) -> None:
        if time.monotonic() - self.last >= self.every_s:
            self.write(
                (t.trial_id, t.config, t.status == "ERROR") for t in trials if t.status != "PENDING"
            )


def _environment(spec: SweepSpec) -> dict[str, str]:
    """Versions and hardware, for the Parquet files' metadata."""
    import importlib.metadata as md
    import json
    import platform

    import ray

    def version(package: str) -> str | None:
        try:
            return md.version(package)
        except md.PackageNotFoundError:
            return None

    nodes = [n for n in ray.nodes() if n["Alive"]]
    have = ray.cluster_resources()
    cpu_model = platform.processor()
    if Path("/proc/cpuinfo").exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu_model = names[0] if names else cpu_model
    packages = ("caviar", "ray", "torch", "hyperopt", "pyarrow", "pandas", "numpy")
    versions = {p: version(p) for p in packages} | {"python": platform.python_version()}
    hardware = {
        "nodes": len(nodes),
        "cpus": have.get("CPU", 0),
        "gpus": have.get("GPU", 0),
        "driver_cpu_model": cpu_model,
        "driver_host": platform.node(),
    }
    return {"caviar.versions": json.dumps(versions), "caviar.hardware": json.dumps(hardware)}


def _progress_callback(spec: SweepSpec, abort: _Abort, recorder: _Recorder) -> Any:
    from ray.tune import Callback

    total, metric, mode = spec.budget.num_samples, spec.metric, spec.mode
    better = max if mode == "max" else min

    class Progress(Callback):
        """One line per finished trial: counts, the best so far, and an ETA."""

        def __init__(self) -> None:
            self.done = self.stopped_early = 0
            self.best, self.started = None, time.monotonic()

        def _line(self, trials: list, trial: Any, status: str) -> None:
            self.done += 1
            self.stopped_early += status == "early_stopped"
            last = trial.last_result or {}
            value = last.get(metric)
            if status in ("completed", "early_stopped") and isinstance(value, (int, float)):
                self.best = value if self.best is None else better(self.best, value)
            elapsed = time.monotonic() - self.started
            running = sum(t.status == "RUNNING" for t in trials)
            eta = elapsed / self.done * (total - self.done)
            shown = f"{value:.4g}" if isinstance(value, (int, float)) else "-"
            best = f"{self.best:.4g}" if self.best is not None else "-"
            print(
                f"[{self.done}/{total} {elapsed:6.1f}s, {running} running, "
                f"{self.stopped_early} stopped early, ETA {eta:4.0f}s] trial {trial.trial_id} "
                f"{status} at epoch {last.get('epoch', 0)}: {metric}={shown}  best {best}",
                flush=True,
            )

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            last = trial.last_result or {}
            self._line(trials, trial, results.trial_status(last, False, spec.train.max_epochs))
            recorder.maybe_write(trials)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._line(trials, trial, "error")
            abort.check(trial)
            recorder.maybe_write(trials)

    return Progress()


def _init_ray(address: str | None) -> None:
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, log_to_driver=False)
        except ConnectionError as e:
            raise CaviarError(
                f"--address: cannot connect to the Ray cluster at {address!r} ({e}); check that "
                "it is running and the address is right, and if it uses token authentication "
                "(the default of `ray start --head` in Ray 2.60) set RAY_AUTH_MODE=token and "
                "RAY_AUTH_TOKEN_PATH to its token file"
            ) from None
    else:
        # The embedded default: a private Ray on this machine, sized to it, gone with us.
        ray.init(address="local", include_dashboard=False, log_to_driver=False)


def _default_concurrency(spec: SweepSpec) -> int:
    import ray

    have = ray.cluster_resources()
    cpu, gpu = have.get("CPU", 0.0), have.get("GPU", 0.0)
    slots = math.floor(cpu / spec.resources.cpu + 1e-9)
    if spec.resources.gpu:
        slots = min(slots, math.floor(gpu / spec.resources.gpu + 1e-9))
    if slots < 1:
        raise CaviarError(
            f"resources: a trial asks for cpu={spec.resources.cpu}, gpu={spec.resources.gpu} "
            f"but the cluster has CPU={cpu:g}, GPU={gpu:g}; lower the request or add nodes"
        )
    return slots


def resolve_run_dir(spec: SweepSpec, storage: str | None, name: str | None) -> Location:
    name = name or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if "/" in name or "\\" in name or name in (".", ".."):
        raise RunDirError(f"--name: expected a plain directory name, found {name!r}")
    return Location.of(storage or spec.storage or DEFAULT_STORAGE) / name


def _check_shared_storage(run_dir: Location) -> None:
    """A local path works on a multi-node cluster only if all its nodes share this machine."""
    import ray

    hosts = {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    if run_dir.is_local and len(hosts) > 1:
        raise RunDirError(
            f"--storage: {run_dir.uri} is a local path, but the cluster's nodes are on "
            f"{len(hosts)} machines ({', '.join(sorted(hosts))}); trials would checkpoint to "
            "disks the driver never sees. Use a path on storage every node mounts (NFS) or "
            "an s3:// or gs:// URI"
        )


def run(
    spec: SweepSpec,
    *,
    address: str | None = None,
    storage: str | None = None,
    name: str | None = None,
) -> str:
    """Run the sweep; return the run directory (a path or URI) with its Parquet results."""
    run_dir = resolve_run_dir(spec, storage, name)
    if run_dir.is_nonempty_dir():
        raise RunDirError(
            f"{run_dir.uri}: already exists and is not empty; pass another --name (two sweeps "
            "never share a run directory)"
        )
    search_path = os.getcwd()
    if spec.train.function:
        load_function(spec.train.function, search_path)  # fail before Ray starts

    run_dir.check_writable()
    spec_yaml = dump_yaml(spec_to_dict(spec))
    (run_dir / results.SPEC_FILE).write_text(spec_yaml)

    import ray
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    _init_ray(address)
    try:
        _check_shared_storage(run_dir)
        searcher = searcher_class(spec.searcher.name)(
            spec.trial_space(),
            spec.metric,
            spec.mode,
            spec.budget.num_samples,
            spec.seed,
            spec.searcher.options,
        )
        stopped: set[str] = set()  # trials ASHA stopped before max_epochs
        abort = _Abort()
        recorder = _Recorder(run_dir, spec, spec_yaml, searcher, stopped, _environment(spec))
        # Without a concurrency limit Ray gives a custom searcher one pending trial at a time.
        # The cluster's capacity is checked either way: a trial that fits no node would hang.
        capacity = _default_concurrency(spec)
        concurrency = spec.budget.max_concurrent or capacity
        search_alg = tune.search.ConcurrencyLimiter(
            _tune_searcher(searcher, spec.train.max_epochs), max_concurrent=concurrency
        )
        tuner = tune.Tuner(
            make_trainable(spec, search_path),
            tune_config=tune.TuneConfig(
                metric=spec.metric,
                mode=spec.mode,
                search_alg=search_alg,
                scheduler=_scheduler(spec, stopped),
                num_samples=spec.budget.num_samples,
                time_budget_s=spec.budget.time_budget_s,
                # Per-trial overhead is a product feature: a fresh actor per trial costs ~1 s.
                reuse_actors=True,
                trial_dirname_creator=lambda t: t.trial_id,
            ),
            run_config=tune.RunConfig(
                name=results.RAY_DIR,
                storage_path=run_dir.uri,
                verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.checkpoint.keep),
                # A failed trial restarts from its latest checkpoint, up to max_failures times.
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                callbacks=[JsonLoggerCallback(), _progress_callback(spec, abort, recorder)],
                stop=abort.stopper(),
            ),
        )
        print(
            f"caviar: sweep {spec.name}: {spec.budget.num_samples} trials, "
            f"{concurrency} at a time, run dir {run_dir.uri}",
            flush=True,
        )
        grid = tuner.fit()
        # The final tables come from the ResultGrid: every trial of the experiment, no other.
        recorder.write((Path(r.path).name, r.config, r.error is not None) for r in grid)
        try:  # the catalog is a convenience: it never fails a finished sweep
            catalog.publish(run_dir)
        except (CaviarError, OSError) as e:
            print(f"caviar: {run_dir.uri} not added to the catalog: {e}", file=sys.stderr)
        if abort.reason:
            raise CaviarError(
                [abort.reason, f"the sweep was stopped; what ran is in {run_dir.uri}"]
            )
    finally:
        ray.shutdown()
    return run_dir.uri
