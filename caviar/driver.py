"""Spec -> Ray Tune: the trainable and its resources, Ray itself, and the sweep's wiring (the
adapters in `caviar.ray_seam`), run and resume; then the results into Parquet. This module,
`caviar.ray_seam`, `caviar.jobs` and `caviar.session` are the only ones that talk to Ray."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from caviar import catalog, results, rundir, schedulers, session, space
from caviar.errors import CaviarError, Interrupted, RunDirError
from caviar.loader import load_function
from caviar.searchers import searcher_class
from caviar.spec import SweepSpec, dump_yaml, parse_spec, parse_yaml, spec_to_dict
from caviar.storage import Location, ray_storage

# Ray Tune warns on every forced experiment snapshot, which per-epoch checkpoints trigger.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Ray logs every result as JSON, CSV and TensorBoard; caviar reads only the JSON (results.py),
# so the others are turned off and the JSON logger is added back explicitly (the spec's
# `loggers: [tensorboard]` adds TensorBoard's back).
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# caviar handles SIGINT and SIGTERM itself (`_graceful_stop`), through Tune's SIGUSR1.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")


def _builtin_trainable(
    config: dict, *, data: Any, model: str, threads: int, metrics: tuple[str, ...]
) -> None:
    from caviar.train.loop import train

    fn = functools.partial(train, data=data, model=model, threads=threads)
    session.run(fn, config, session.RaySession(metrics))


def _user_trainable(
    config: dict,
    *,
    target: str,
    search_path: str,
    metrics: tuple[str, ...],
    fn: Callable[[dict], Any] | None = None,
) -> None:
    """A user's train function in a trial: imported by name ("module:function"), or `fn`, the
    function object itself (`caviar.run(spec, train=fn)`: one defined in a notebook, which no
    worker could import), which Ray ships to the worker with cloudpickle."""
    session.use_ray_tune_functions()  # before the user's module binds ray.tune.report
    if fn is None:
        fn = load_function(target, search_path)
    session.run(fn, space.nested(config), session.RaySession(metrics))


FUNCTION_NOTE = (
    "# train.function names a function passed to caviar.run(spec, train=fn) as an object (it\n"
    "# may be defined in a notebook or a script's __main__); `caviar resume` cannot import it:\n"
    "# resume from Python with caviar.resume(RUN_DIR, train=fn)\n"
)
"""Heads spec.yaml when the train function came as an object."""


def _ship_by_value(fn: Callable) -> None:
    """Make cloudpickle send `fn`'s module by value when a worker could not import it by name:
    Ray's workers see the working directory and the installed packages, not a module a test
    runner or a notebook put on sys.path. `__main__` functions already travel by value."""
    module = sys.modules.get(getattr(fn, "__module__", None) or "__main__")
    file = getattr(module, "__file__", None)
    if module is None or module.__name__ == "__main__" or not file:
        return
    import site
    import sysconfig

    from ray import cloudpickle

    top = module.__name__.partition(".")[0]
    depth = module.__name__.count(".") + (Path(file).name == "__init__.py")
    home = Path(file).resolve().parents[depth]  # the directory `top` is imported from
    roots = [Path.cwd(), *map(Path, site.getsitepackages()), Path(sysconfig.get_path("stdlib"))]
    if home not in {r.resolve() for r in roots}:
        cloudpickle.register_pickle_by_value(sys.modules[top])


def make_trainable(
    spec: SweepSpec,
    search_path: str,
    fn: Callable[[dict], Any] | None = None,
    broker: Any = None,
) -> Any:
    """The function Ray Tune runs for each trial, with its resources attached. `fn`: the user's
    train function as an object, instead of importing `spec.train.function` by name.
    `broker`: fused trials' (`caviar.fused`), whose groups hold the resources."""
    from ray import tune

    from caviar import ray_seam

    if broker is not None:
        from caviar import fused

        trainable = fused.trainable(broker, spec.metrics)
        resources = {"cpu": 0, "memory": fused.MEMBER_MEMORY}
        return tune.with_resources(ray_seam.restoring(trainable), resources)
    if spec.train.function:
        if fn is not None:
            _ship_by_value(fn)
        trainable = tune.with_parameters(
            functools.partial(
                _user_trainable,
                target=spec.train.function,
                search_path=search_path,
                metrics=spec.metrics,
                fn=fn,
            )
        )
    else:
        # Built once in the driver and shared through the object store: no trial rebuilds it.
        trainable = tune.with_parameters(
            functools.partial(
                _builtin_trainable,
                model=spec.train.model,
                threads=_threads(spec),
                metrics=spec.metrics,
            ),
            data=_data(spec),
        )
    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    return tune.with_resources(ray_seam.restoring(trainable), resources)


def _threads(spec: SweepSpec) -> int:
    return max(1, int(spec.resources.cpu))


def _data(spec: SweepSpec) -> Any:
    from caviar.train.data import load

    return load(spec.train.task, spec.seed, spec.train.data, spec.train.label)


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


def _init_ray(address: str | None) -> bool:
    """Connect to Ray; True if this call started it (and the sweep must shut it down). A Ray
    the caller already started in this process (a notebook, a benchmark) is used as it is."""
    import ray

    if ray.is_initialized():
        return False
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
    return True


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
        from caviar.ray_seam import end_tune_loop

        received.append(signum)
        if len(received) > 1 or not end_tune_loop():
            raise KeyboardInterrupt  # a second signal, or Tune's loop has not started: now

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGUSR1] = signal.getsignal(signal.SIGUSR1)
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run(
    spec: SweepSpec,
    *,
    address: str | None = None,
    storage: str | None = None,
    name: str | None = None,
    train_fn: Callable[[dict], Any] | None = None,
    progress_view: Callable[[Any], Any] | None = None,
) -> str:
    """Run the sweep; return the run directory (a path or URI) with its Parquet results.
    `train_fn`: the train function as an object (`caviar.run(spec, train=fn)`), which
    `spec.train.function` then only names. `progress_view`: called with the sweep's
    `ray_seam.Progress`, returns one more Ray callback (a notebook's live display)."""
    run_dir = rundir.resolve(spec.name, storage or spec.storage, name)
    rundir.check_new(run_dir)
    if spec.train.function and train_fn is None:
        load_function(spec.train.function, os.getcwd())  # fail before Ray starts
    run_dir.check_writable()
    spec_yaml = (FUNCTION_NOTE if train_fn else "") + dump_yaml(spec_to_dict(spec))
    (run_dir / results.SPEC_FILE).write_text(spec_yaml)
    return _sweep(spec, spec_yaml, run_dir, address, False, train_fn, progress_view)


def resume(
    run_dir: str,
    *,
    address: str | None = None,
    train_fn: Callable[[dict], Any] | None = None,
    progress_view: Callable[[Any], Any] | None = None,
) -> str:
    """Continue a sweep whose driver died or was stopped, from its last saved state: finished
    trials are kept, unfinished ones continue from their latest checkpoints, the searcher and
    ASHA go on from where they were. Returns the run directory. `train_fn` as for `run`: a
    run whose function came as an object needs it again."""
    loc = rundir.open_existing(run_dir)
    spec_yaml = (loc / results.SPEC_FILE).read_text()
    spec = parse_spec(parse_yaml(spec_yaml))
    if train_fn is not None and not spec.train.function:
        raise CaviarError(
            f"train: {loc.uri} ran the built-in train function of task {spec.train.task!r}; "
            "resume it without train="
        )
    if spec.train.function and train_fn is None:
        try:
            load_function(spec.train.function, os.getcwd())
        except CaviarError:
            if not spec_yaml.startswith(FUNCTION_NOTE):
                raise
            raise CaviarError(
                f"train.function: {spec.train.function!r} was passed to caviar.run as a "
                "function object (defined in a notebook or a script), which `caviar resume` "
                f"cannot import; resume from Python: caviar.resume({loc.uri!r}, train=train), "
                "with the same function defined"
            ) from None
    return _sweep(
        spec,
        spec_yaml,
        loc,
        address,
        rundir.has_experiment_state(loc),
        train_fn,
        progress_view,
    )


class _MisleadingRayLog(logging.Filter):
    """Drops Ray Tune's log records that mislead a caviar user:

    - the traceback of a trial that misused `caviar.report` (or `ray.tune.report`): caviar
      says what was wrong in one line and stops the sweep;
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
            isinstance(getattr(error, "cause", error), session.ReportError)
            or "Resume experiment with: tune.run" in message
            or (isinstance(error, FileNotFoundError) and "Error handling checkpoint" in message)
        )


_MISLEADING_RAY_LOG = _MisleadingRayLog()


def _sweep(
    spec: SweepSpec,
    spec_yaml: str,
    run_dir: Location,
    address: str | None,
    resume: bool,
    train_fn: Callable[[dict], Any] | None = None,
    progress_view: Callable[[Any], Any] | None = None,
) -> str:
    search_path = os.getcwd()
    for name in _MisleadingRayLog.LOGGERS:
        logging.getLogger(name).addFilter(_MISLEADING_RAY_LOG)  # once: the same instance
    with rundir.claim(run_dir):
        if resume:
            rundir.recover(run_dir)  # may refuse: before Ray is imported
        import ray
        from ray import tune

        from caviar import ray_seam as seam

        started = _init_ray(address)
        broker = None
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
            if spec.searcher.warm_start and not resume:
                earlier, skipped = results.earlier_trials(
                    spec.searcher.warm_start, spec.trial_space(), spec.metric
                )
                for config, outcome in earlier:
                    searcher.observe(config, outcome)
                print(
                    f"caviar: warm start: {len(earlier)} trials from "
                    f"{len(spec.searcher.warm_start)} earlier sweep(s); {skipped} outside this "
                    "space or unfinished, skipped",
                    flush=True,
                )
            scheduler = seam.make_scheduler(spec)
            abort = seam.Abort()
            recorder = seam.Recorder(
                run_dir, spec, spec_yaml, searcher, scheduler, _environment(spec)
            )
            progress = seam.Progress(
                spec.budget.num_samples,
                spec.metrics[0],
                spec.modes[0],
                spec.train.max_epochs,
                abort,
                recorder,
                # On a terminal, a live display under the finished trials' lines.
                live=sys.stdout if seam.live_terminal(sys.stdout) else None,
            )
            watchdog = seam.Watchdog(
                scheduler,
                spec.watchdog.factor,
                spec.watchdog.min_s,
                spec.budget.trial_time_s,
            )
            snapshot = seam.StateSnapshot(run_dir / results.RAY_DIR)
            callbacks = [
                snapshot,
                seam.ResultLog(),
                progress,
                watchdog,
                seam.SchedulerState(scheduler),
                *seam.trackers(spec, run_dir),  # the spec's loggers: mlflow, wandb, tensorboard
            ]
            if progress_view is not None:
                callbacks.append(progress_view(progress))
            # Without a concurrency limit Ray gives a custom searcher one pending trial at a
            # time. The cluster's capacity is checked either way: a trial that fits no node
            # would hang.
            capacity = _default_concurrency(spec)
            # Fused: each of the `capacity` shares of `resources` trains up to `fuse` trials.
            concurrency = spec.budget.max_concurrent or capacity * spec.resources.fuse
            broker, groups = None, ""
            if spec.resources.fuse > 1:
                from caviar import fused

                broker = fused.start(spec, _data(spec), capacity)
                callbacks.append(seam.Release(broker))
                lay = fused.layout(spec.resources)
                groups = f" in up to {capacity * lay.groups} fused groups of {lay.size}"
            # Ray's limit counts the trials started and not finished, paused ones too. Under a
            # scheduler that pauses trials, at the cluster's capacity it kept HyperBand's
            # brackets from ever filling (it stopped nothing) and PBT's population at the
            # trials running: those get every trial from the start, as from Ray's own
            # generator, and the cluster's capacity bounds the trials running.
            pausing = spec.scheduler.name in schedulers.PAUSING
            search_alg = tune.search.ConcurrencyLimiter(
                seam.SearcherAdapter(searcher, spec.train.max_epochs, snapshot.on_save),
                max_concurrent=spec.budget.max_concurrent
                or (spec.budget.num_samples if pausing else concurrency),
            )
            print(
                f"caviar: {'resuming' if resume else 'sweep'} {spec.name}: "
                f"{spec.budget.num_samples} trials, {concurrency} at a time{groups}, "
                f"run dir {run_dir.uri}",
                flush=True,
            )
            # tune.run rather than Tuner: on resume it takes fresh searcher, scheduler and
            # callback objects (whose state Ray then restores), where Tuner.restore would
            # unpickle copies of the first run's, cut off from this driver.
            storage_path, storage_filesystem = ray_storage(run_dir)
            began = time.monotonic()
            with _graceful_stop() as signals:
                analysis = tune.run(
                    make_trainable(spec, search_path, train_fn, broker),
                    name=results.RAY_DIR,
                    storage_path=storage_path,
                    storage_filesystem=storage_filesystem,
                    metric=spec.metrics[0],  # what Ray itself reports on: the first metric
                    mode=spec.modes[0],
                    search_alg=search_alg,
                    scheduler=scheduler,
                    num_samples=spec.budget.num_samples,
                    time_budget_s=spec.budget.time_budget_s,
                    # Per-trial overhead is a product feature: a fresh actor costs ~1 s.
                    reuse_actors=True,
                    trial_dirname_creator=lambda t: t.trial_id,
                    verbose=0,
                    checkpoint_config=tune.CheckpointConfig(
                        # PBT copies a trial's checkpoint from its last perturbation, up
                        # to perturbation_interval epochs old (`ray_seam.Pbt`).
                        num_to_keep=max(
                            spec.checkpoint.keep, spec.scheduler.options.perturbation_interval + 1
                        )
                        if spec.scheduler.name == "pbt"
                        else spec.checkpoint.keep
                    ),
                    # A failed trial restarts from its latest checkpoint, up to max_failures.
                    max_failures=spec.max_failures,
                    callbacks=callbacks,
                    stop=abort,
                    raise_on_failed_trial=False,
                    resume_config=tune.ResumeConfig() if resume else None,
                )
            # The tables come from the experiment's trials: stray trial folders (from a
            # driver that died between snapshots) are left out.
            status = {t.trial_id: t.status for t in analysis.trials}
            if signals or abort.reason:  # trials caught pending or running are unfinished
                status.update(dict.fromkeys(progress.unended, "RUNNING"))
            recorder.write(seam.ray_trials(analysis.trials, status))
        finally:
            if broker is not None:
                ray.kill(broker)  # and with it, the groups it started
            if started:
                ray.shutdown()
    if signals:
        done = sum(s in ("TERMINATED", "ERROR") for s in status.values())
        raise Interrupted(signals[0], run_dir.uri, done, spec.budget.num_samples)
    try:  # the catalog is a convenience: it never fails a finished sweep
        catalog.publish(run_dir)
    except (CaviarError, OSError) as e:
        print(f"caviar: {run_dir.uri} not added to the catalog: {e}", file=sys.stderr)
    budget = spec.budget.time_budget_s
    if budget and time.monotonic() - began >= budget:
        never = spec.budget.num_samples - len(status)
        print(
            f"caviar: budget.time_budget_s ({budget:g} s) ended the sweep: the trials running "
            "then were stopped (early_stopped)"
            + (f", and {never} of its {spec.budget.num_samples} never started" if never else ""),
            file=sys.stderr,
        )
    if abort.reason:
        stopped = f"the sweep was stopped; what ran is in {run_dir.uri}"
        if abort.resumable:
            stopped += f"; fix the train function, then continue with: caviar resume {run_dir.uri}"
        raise CaviarError([abort.reason, stopped])
    return run_dir.uri
