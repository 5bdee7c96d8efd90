"""Spec -> Ray Tune: the trainable, its resources, the searcher, ASHA, checkpoints; then the
results into Parquet. This module and `caviar.session` are the only ones that talk to Ray."""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import math
import os
import pickle
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from caviar import catalog, objective, results, session
from caviar.errors import CaviarError, Interrupted, RunDirError
from caviar.searchers import Outcome, Searcher, searcher_class
from caviar.spec import SweepSpec, dump_yaml, parse_spec, parse_yaml, spec_to_dict
from caviar.storage import Location

# Ray Tune warns on every forced experiment snapshot, which per-epoch checkpoints trigger.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Ray logs every result as JSON, CSV and TensorBoard; caviar reads only the JSON (results.py),
# so the others are turned off and the JSON logger is added back explicitly.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# caviar handles SIGINT and SIGTERM itself (`_graceful_stop`), through Tune's SIGUSR1.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")

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

        # Ray saves this with every experiment snapshot and restores it on `caviar resume`.
        def save(self, checkpoint_path: str) -> None:
            state = {"searcher": searcher.state_dict(), "last": self.last, "best": self.best}
            with open(checkpoint_path, "wb") as f:
                pickle.dump(state, f)

        def restore(self, checkpoint_path: str) -> None:
            with open(checkpoint_path, "rb") as f:
                state = pickle.load(f)
            searcher.load_state_dict(state["searcher"])
            self.last, self.best = state["last"], state["best"]

    return TuneSearcher()


def _scheduler(spec: SweepSpec) -> Any:
    """ASHA (recording the trials it stops before max_epochs) or FIFO."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s, max_epochs = spec.scheduler, spec.train.max_epochs
    if s.name == "fifo":
        return FIFOScheduler()

    class RecordingASHA(ASHAScheduler):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.stopped: set[str] = set()  # in the scheduler's state, so it is saved with it

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            decision = super().on_trial_result(tune_controller, trial, result)
            final = result.get(session.FINAL) or result.get("epoch", max_epochs) >= max_epochs
            if decision == self.STOP and not final:
                self.stopped.add(trial.trial_id)
            return decision

    return RecordingASHA(
        time_attr="epoch",
        max_t=max_epochs,
        grace_period=s.grace_period,
        reduction_factor=s.reduction_factor,
        brackets=s.brackets,
    )


def _scheduler_state(scheduler: Any) -> Any:
    """Ray saves the searcher's and the callbacks' state with each experiment snapshot, but not
    the scheduler's. This callback carries ASHA's rung records (and the trials it stopped) in
    that same snapshot, through ASHA's own save/restore, so a resumed sweep keeps its
    early-stopping decisions instead of promoting every trial until the rungs fill again."""
    import tempfile

    from ray.tune import Callback

    class SchedulerState(Callback):
        def get_state(self) -> dict:
            with tempfile.TemporaryDirectory(prefix="caviar-") as d:
                path = os.path.join(d, "scheduler.pkl")
                scheduler.save(path)
                return {"scheduler": Path(path).read_bytes()}

        def set_state(self, state: dict) -> None:
            with tempfile.TemporaryDirectory(prefix="caviar-") as d:
                path = os.path.join(d, "scheduler.pkl")
                Path(path).write_bytes(state["scheduler"])
                scheduler.restore(path)

    return SchedulerState()


class _Abort:
    """Stops the whole sweep when a trial misuses `caviar.report` (the sweep's metric missing,
    no epoch): every other trial would fail the same way, so the budget is not spent on them."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def check(self, error: str) -> None:
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
        scheduler: Any,
        environment: dict[str, str],
        every_s: float = 10.0,
    ):
        self.run_dir, self.spec, self.searcher, self.scheduler = run_dir, spec, searcher, scheduler
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
        """`trials`: (trial id, config, Ray's status) of each trial of the experiment."""
        stopped = getattr(self.scheduler, "stopped", set())  # ASHA's; a resume replaces it
        trials_df, history_df = results.collect(
            [
                results.TrialDir(
                    trial_id,
                    self.run_dir / results.RAY_DIR / trial_id,
                    config,
                    self.searcher.round_of(trial_id),
                    trial_id in stopped,
                    status == "ERROR",
                    status not in ("TERMINATED", "ERROR"),
                )
                for trial_id, config, status in trials
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
            self.write((t.trial_id, t.config, t.status) for t in trials if t.status != "PENDING")


def _environment(spec: SweepSpec) -> dict[str, str]:
    """Versions and hardware, for the Parquet files' metadata."""
    import importlib.metadata as md

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

    class Progress(Callback):
        """One line per finished trial: counts, the best so far, and an ETA."""

        def __init__(self) -> None:
            self.done = self.stopped_early = self.done_before = 0
            self.best, self.started = None, time.monotonic()
            # Started and not ended: Ray marks them TERMINATED when an interrupted sweep
            # shuts down, but they are unfinished (and a resume continues them).
            self.in_flight: set[str] = set()

        # Saved with each experiment snapshot: a resumed sweep goes on counting.
        def get_state(self) -> dict:
            return {"done": self.done, "stopped_early": self.stopped_early, "best": self.best}

        def set_state(self, state: dict) -> None:
            self.done, self.stopped_early, self.best = (
                state["done"],
                state["stopped_early"],
                state["best"],
            )
            self.done_before = self.done

        def _line(self, trials: list, trial: Any, status: str, error: str = "") -> None:
            self.done += 1
            self.stopped_early += status == "early_stopped"
            last = trial.last_result or {}
            value = last.get(metric)
            if status in objective.HEALTHY and isinstance(value, (int, float)):
                self.best = objective.best([self.best, value], mode)
            elapsed = time.monotonic() - self.started
            running = sum(t.status == "RUNNING" for t in trials)
            eta = elapsed / (self.done - self.done_before) * (total - self.done)
            shown = f"{value:.4g}" if isinstance(value, (int, float)) else "-"
            if error:
                shown += f" ({results.error_type(error) or 'see its error.txt'})"
            best = f"{self.best:.4g}" if self.best is not None else "-"
            print(
                f"[{self.done}/{total} {elapsed:6.1f}s, {running} running, "
                f"{self.stopped_early} stopped early, ETA {eta:4.0f}s] trial {trial.trial_id} "
                f"{status} at epoch {last.get('epoch', 0)}: {metric}={shown}  best {best}",
                flush=True,
            )

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.in_flight.add(trial.trial_id)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.in_flight.discard(trial.trial_id)
            last = trial.last_result or {}
            self._line(trials, trial, results.trial_status(last, False, spec.train.max_epochs))
            recorder.maybe_write(trials)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.in_flight.discard(trial.trial_id)
            # The local error file is written before callbacks run; storage is synced later.
            path = trial.error_file
            error = Path(path).read_text() if path and Path(path).exists() else ""
            self._line(trials, trial, "error", error)
            abort.check(error)
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


@contextlib.contextmanager
def _graceful_stop() -> Iterator[list[int]]:
    """SIGINT (Ctrl-C) and SIGTERM end the sweep as Tune's own stop signal (SIGUSR1) does:
    running trials stop, and the experiment state is saved with them still unfinished, so a
    resume continues them. A second signal acts at once. Yields the signals received."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received  # signal handlers belong to the main thread
        return

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) == 1 and callable(signal.getsignal(signal.SIGUSR1)):
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's loop is running: end it
        else:  # a second signal, or Tune's loop has not started: stop now
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGUSR1] = signal.getsignal(signal.SIGUSR1)
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


_CLAIM_FILE = ".caviar-driver.json"


@contextlib.contextmanager
def _claim(run_dir: Location) -> Iterator[None]:
    """One driver per run directory: a second `caviar resume` of a sweep whose driver is still
    alive on this machine is refused. A driver that was killed leaves its claim behind, which
    the next one takes over."""
    claim = run_dir / _CLAIM_FILE
    me = {"host": platform.node(), "pid": os.getpid()}
    if claim.exists():
        other = json.loads(claim.read_text())
        if other["host"] == me["host"] and _caviar_alive(other["pid"]):
            raise RunDirError(
                f"{run_dir.uri}: a caviar driver (pid {other['pid']}) is still running this "
                "sweep; wait for it, or stop it (Ctrl-C or kill PID) and resume"
            )
    claim.write_text(json.dumps(me))
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            claim.fs.delete_file(claim.path)


def _caviar_alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"caviar" in cmdline


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
            f"never share a run directory), or continue it with: caviar resume {run_dir.uri}"
        )
    if spec.train.function:
        load_function(spec.train.function, os.getcwd())  # fail before Ray starts
    run_dir.check_writable()
    spec_yaml = dump_yaml(spec_to_dict(spec))
    (run_dir / results.SPEC_FILE).write_text(spec_yaml)
    return _sweep(spec, spec_yaml, run_dir, address, resume=False)


def resume(run_dir: str, *, address: str | None = None) -> str:
    """Continue a sweep whose driver died or was stopped, from its last saved state: finished
    trials are kept, unfinished ones continue from their latest checkpoints, the searcher and
    ASHA go on from where they were. Returns the run directory."""
    loc = Location.of(run_dir)
    if not (loc / results.SPEC_FILE).is_file():
        raise RunDirError(
            f"{loc.uri}: not a caviar run directory (no {results.SPEC_FILE}); pass the "
            "directory `caviar run` printed"
        )
    spec_yaml = (loc / results.SPEC_FILE).read_text()
    spec = parse_spec(parse_yaml(spec_yaml))
    if spec.train.function:
        load_function(spec.train.function, os.getcwd())
    for name in loc.names():  # half-written tables of a driver killed mid-write
        if name.startswith(".") and name.endswith(".tmp"):
            loc.fs.delete_file((loc / name).path)
    # No experiment state: the driver died before Ray saved any, so nothing ran; start over.
    saved = any(n.startswith("experiment_state-") for n in (loc / results.RAY_DIR).names())
    return _sweep(spec, spec_yaml, loc, address, resume=saved)


class _MisleadingRayLog(logging.Filter):
    """Drops two of Ray Tune's log records that mislead a caviar user:

    - after an interrupt, Tune's advice to resume with `tune.run(..., resume=True)`: caviar
      prints its own line, with `caviar resume RUN_DIR`;
    - after a resume, the traceback Tune's checkpoint retention (checkpoint.keep) logs for each
      old checkpoint that the dead driver had already deleted after its last snapshot. The
      trial is unaffected."""

    LOGGERS = ("ray.tune.tune", "ray.tune.execution.tune_controller")

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        message = str(record.msg)
        return not (
            "Resume experiment with: tune.run" in message
            or (isinstance(error, FileNotFoundError) and "Error handling checkpoint" in message)
        )


_MISLEADING_RAY_LOG = _MisleadingRayLog()


def _sweep(
    spec: SweepSpec, spec_yaml: str, run_dir: Location, address: str | None, resume: bool
) -> str:
    import ray
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    search_path = os.getcwd()
    for name in _MisleadingRayLog.LOGGERS:
        logging.getLogger(name).addFilter(_MISLEADING_RAY_LOG)  # once: the same instance
    with _claim(run_dir):
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
            scheduler = _scheduler(spec)
            abort = _Abort()
            recorder = _Recorder(run_dir, spec, spec_yaml, searcher, scheduler, _environment(spec))
            progress = _progress_callback(spec, abort, recorder)
            callbacks = [JsonLoggerCallback(), progress]
            if spec.scheduler.name == "asha":
                callbacks.append(_scheduler_state(scheduler))
            # Without a concurrency limit Ray gives a custom searcher one pending trial at a
            # time. The cluster's capacity is checked either way: a trial that fits no node
            # would hang.
            capacity = _default_concurrency(spec)
            concurrency = spec.budget.max_concurrent or capacity
            search_alg = tune.search.ConcurrencyLimiter(
                _tune_searcher(searcher, spec.train.max_epochs), max_concurrent=concurrency
            )
            print(
                f"caviar: {'resuming' if resume else 'sweep'} {spec.name}: "
                f"{spec.budget.num_samples} trials, {concurrency} at a time, "
                f"run dir {run_dir.uri}",
                flush=True,
            )
            # tune.run rather than Tuner: on resume it takes fresh searcher, scheduler and
            # callback objects (whose state Ray then restores), where Tuner.restore would
            # unpickle copies of the first run's, cut off from this driver.
            with _graceful_stop() as signals:
                analysis = tune.run(
                    make_trainable(spec, search_path),
                    name=results.RAY_DIR,
                    storage_path=run_dir.uri,
                    metric=spec.metric,
                    mode=spec.mode,
                    search_alg=search_alg,
                    scheduler=scheduler,
                    num_samples=spec.budget.num_samples,
                    time_budget_s=spec.budget.time_budget_s,
                    # Per-trial overhead is a product feature: a fresh actor costs ~1 s.
                    reuse_actors=True,
                    trial_dirname_creator=lambda t: t.trial_id,
                    verbose=0,
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.checkpoint.keep),
                    # A failed trial restarts from its latest checkpoint, up to max_failures.
                    max_failures=spec.max_failures,
                    callbacks=callbacks,
                    stop=abort.stopper(),
                    raise_on_failed_trial=False,
                    resume_config=tune.ResumeConfig() if resume else None,
                )
            # The tables come from the experiment's trials: stray trial folders (from a
            # driver that died between snapshots) are left out.
            status = {t.trial_id: t.status for t in analysis.trials}
            if signals:
                status.update(dict.fromkeys(progress.in_flight, "RUNNING"))
            recorder.write((t.trial_id, t.config, status[t.trial_id]) for t in analysis.trials)
        finally:
            ray.shutdown()
    if signals:
        done = sum(s in ("TERMINATED", "ERROR") for s in status.values())
        raise Interrupted(signals[0], run_dir.uri, done, spec.budget.num_samples)
    try:  # the catalog is a convenience: it never fails a finished sweep
        catalog.publish(run_dir)
    except (CaviarError, OSError) as e:
        print(f"caviar: {run_dir.uri} not added to the catalog: {e}", file=sys.stderr)
    if abort.reason:
        raise CaviarError([abort.reason, f"the sweep was stopped; what ran is in {run_dir.uri}"])
    return run_dir.uri
