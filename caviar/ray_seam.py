"""The adapters Ray Tune calls: caviar's searchers as a Ray searcher, the schedulers, the
callbacks (progress, scheduler state, the hang watchdog, the results recorder) and the
stopper. Each takes its collaborators in ``__init__`` and is unit-tested with fake trials
(tests/test_ray_seam.py), as Ray tests its own schedulers. `caviar.driver` wires them
together; this module and the driver are the only ones that import Ray Tune.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import pickle
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

import pyarrow.fs as pafs
from ray.air._internal import usage as ray_usage
from ray.tune import Callback, Stopper
from ray.tune.error import TuneError
from ray.tune.experiment import Trial
from ray.tune.logger import JsonLoggerCallback
from ray.tune.result import EXPR_RESULT_FILE
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.tune.search import Searcher as RaySearcher

from caviar import objective, results, rundir, schedulers, session, storage
from caviar.errors import CaviarError
from caviar.objective import Mode
from caviar.searchers import Outcome, Searcher
from caviar.spec import SweepSpec
from caviar.stopping import STOP, Stopping, StoppingOptions
from caviar.storage import Location

# Ray Tune's usage telemetry counts each run's callbacks by class, and imports every tracker
# integration Ray ships to know those classes: wandb's and mlflow's SDKs where they are
# installed, about 3 s of the driver's CPU before the first trial of every sweep. caviar's
# callbacks are its own machinery, not a choice of the user's to count, so caviar leaves this
# one tag out; Ray's other usage records are as Ray makes them.
ray_usage.tag_callbacks = lambda callbacks: False

# --- the searcher -----------------------------------------------------------------------------


class SearcherAdapter(RaySearcher):
    """A caviar `Searcher` as Ray Tune's: suggestions pass through; each trial's outcome (its
    status by `results.trial_status`, last and best value, and with several metrics each one's
    last value) reaches `on_trial_complete`."""

    def __init__(
        self,
        searcher: Searcher,
        max_epochs: int,
        on_save: Callable[[str, str], None] | None = None,
    ) -> None:
        self.metrics = objective.as_tuple(searcher.metric)
        self.modes = objective.as_tuple(searcher.mode)
        super().__init__(metric=self.metrics[0], mode=self.modes[0])  # Ray knows one: the first
        # Not `self.searcher`: Ray takes any object with that attribute for a wrapper.
        self.caviar_searcher, self.max_epochs = searcher, max_epochs
        self.on_save = on_save  # (staging dir, session) of each experiment snapshot
        self.last: dict[str, dict] = {}
        self.best: dict[str, float] = {}

    def suggest(self, trial_id: str) -> dict | None:
        config = self.caviar_searcher.suggest(trial_id)
        # A conditional space: the trial gets only its branch's parameters.
        return None if config is None else self.caviar_searcher.space.active(config)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.last[trial_id] = result
        value = result.get(self.metrics[0])
        if isinstance(value, (int, float)) and math.isfinite(value):
            best = self.best.get(trial_id)
            if best is None or objective.better(value, best, self.modes[0]):
                self.best[trial_id] = value

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if result:
            # Ray skips `on_trial_result` for the result on which its scheduler stopped the
            # trial: without this, a trial stopped at its first report reached the searcher
            # with no value at all, and TPE learned nothing from it.
            self.on_trial_result(trial_id, result)
        last = self.last.pop(trial_id, None)
        status = results.trial_status(last, error, self.max_epochs)
        value = last.get(self.metrics[0]) if last else None
        epoch = int(last.get("epoch", 0)) if last else 0
        best = self.best.pop(trial_id, None)
        values = tuple((last or {}).get(m) for m in self.metrics) if len(self.metrics) > 1 else ()
        self.caviar_searcher.on_trial_complete(
            trial_id, Outcome(status, value, best, epoch, values)
        )

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        super().save_to_dir(checkpoint_dir, session_str)
        if self.on_save is not None:
            self.on_save(checkpoint_dir, session_str)

    # Ray saves this with every experiment snapshot and restores it on `caviar resume`.
    def save(self, checkpoint_path: str) -> None:
        state = {
            "searcher": self.caviar_searcher.state_dict(),
            "last": self.last,
            "best": self.best,
        }
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.caviar_searcher.load_state_dict(state["searcher"])
        self.last, self.best = state["last"], state["best"]


# --- schedulers -------------------------------------------------------------------------------


_CONTROLLERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class ControllerAware:
    """Mixin for caviar's schedulers: keeps the Tune controller Ray passes them, for the
    watchdog, which must fail a trial that reports nothing (no hook of Ray's gets a chance to
    see such a trial otherwise). Kept outside the scheduler's ``__dict__``, which Ray's
    schedulers pickle as their saved state."""

    @property
    def controller(self) -> Any:
        return _CONTROLLERS.get(self)

    @controller.setter
    def controller(self, value: Any) -> None:
        _CONTROLLERS[self] = value

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self.controller = tune_controller
        super().on_trial_add(tune_controller, trial)  # type: ignore[misc]


class RecordsStops(ControllerAware):
    """Mixin: records which trials the scheduler stopped before max_epochs (the tables'
    ``stopped_by_scheduler``), in its own ``__dict__`` so that it is saved with it."""

    max_epochs: int

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)  # type: ignore[misc]
        if decision == TrialScheduler.STOP and not self.final(result):
            self.__dict__.setdefault("stopped", set()).add(trial.trial_id)
        return decision

    def final(self, result: dict) -> bool:
        """Whether `result` is its trial's last: marked so, or at max_epochs."""
        return bool(
            result.get(session.FINAL) or result.get("epoch", self.max_epochs) >= self.max_epochs
        )


class Fifo(ControllerAware, FIFOScheduler):
    """Ray's FIFO scheduler: no early stopping."""


class RecordingASHA(RecordsStops, ASHAScheduler):
    """Ray's ASHA, also recording each trial's bracket (whose rungs differ when
    ``brackets > 1``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stopped: set[str] = set()
        self.bracket: dict[str, int] = {}
        self.max_epochs = kwargs["max_t"]

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        self.bracket[trial.trial_id] = self._brackets.index(self._trial_info[trial.trial_id])


class RecordingHyperBand(RecordsStops, HyperBandScheduler):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stopped: set[str] = set()
        self.max_epochs = kwargs["max_t"]

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        # A resumed sweep adds its finished trials too (Ray's HyperBand saves no state: its
        # brackets start again). In a bracket, a finished trial never reaches the next
        # milestone, and the bracket's other trials stayed paused for ever (seen: a hung
        # resume). They take no part.
        if trial.status not in (Trial.TERMINATED, Trial.ERROR):
            super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        # A trial at max_epochs has nothing left to train, so it ends instead of pausing.
        # Paused there, it waits for its bracket to be processed again, and Ray's HyperBand
        # may never do it: when the bracket's other trials end as completed (their last
        # report and their function's return arriving together) it skips a finished bracket,
        # and the sweep hangs with trials paused at max_epochs (seen in a test run).
        if decision == TrialScheduler.PAUSE and self.final(result):
            return TrialScheduler.CONTINUE
        return decision

    def _process_bracket(self, tune_controller: Any, bracket: Any) -> str:
        # Ray stops the bracket's bad trials here: the paused ones through the controller,
        # not by a decision on a result of theirs. Counted as stopped as well.
        halving = bracket.successive_halving

        def recorded(*args: Any) -> tuple[list, list]:
            good, bad = halving(*args)
            self.stopped.update(t.trial_id for t in bad)
            return good, bad

        bracket.successive_halving = recorded
        try:
            return super()._process_bracket(tune_controller, bracket)
        finally:
            del bracket.successive_halving  # the bracket's own method again


class RecordingMedian(RecordsStops, MedianStoppingRule):
    def __init__(self, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stopped: set[str] = set()
        self.max_epochs = max_epochs


class Pbt(RecordsStops, PopulationBasedTraining):
    """Ray's population based training. Ray refuses any search algorithm beside it, for fear
    that one learns from configurations PBT changed midway; caviar's spec pairs it with random
    search only (its initial population), which learns nothing, so the check is skipped.

    Two of Ray's steps lose a trial's work, and are changed:
    - Exploiting, Ray points the trial at the other trial's checkpoint and pauses it; that
      trial goes on and deletes the checkpoint once it has `checkpoint.keep` newer ones, and
      the paused one, started again later, then has nothing to restore (FileNotFoundError,
      seen when trials outnumber their slots). Here the trial gets a copy of its own, in its
      folder, kept and deleted as its own checkpoints are.
    - A trial's last report (max_epochs) went through PBT like any other: it could pause the
      trial, or be copied into a lower trial, which then had nothing left to train and ended
      with the other trial's result as its own. Here a last report ends its trial."""

    def __init__(self, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_epochs = max_epochs

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(_WithoutSearchAlg(tune_controller), trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if self.final(result):
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def _exploit(self, tune_controller: Any, trial: Any, trial_to_clone: Any) -> None:
        from ray.train._internal.session import _TrainingResult
        from ray.tune import Checkpoint

        source = self._trial_state[trial_to_clone]
        fs = trial.storage.storage_filesystem
        # A name of its own: a resumed sweep's counters, and a second copy of the same
        # checkpoint, would name a folder that its records may delete later.
        name = f"pbt_copy_{trial_to_clone.trial_id}_{uuid.uuid4().hex[:8]}"
        own = f"{trial.storage.trial_fs_path}/{name}"
        try:
            fs.create_dir(own)
            pafs.copy_files(
                source.last_checkpoint.path,
                own,
                source_filesystem=source.last_checkpoint.filesystem,
                destination_filesystem=fs,
            )
        except OSError as e:  # it had no checkpoint left: the trial goes on as it is
            print(
                f"caviar: pbt: trial {trial.trial_id} keeps its own weights instead of trial "
                f"{trial_to_clone.trial_id}'s, whose checkpoint could not be copied ({e})",
                file=sys.stderr,
            )
            return
        super()._exploit(tune_controller, trial, trial_to_clone)
        # Registered, it is the trial's latest; the oldest it keeps beyond `checkpoint.keep`
        # are deleted then. One may be gone already (a resumed sweep's snapshot names
        # checkpoints the killed driver deleted after it): Ray's own registration of a
        # trial's checkpoint logs that and goes on, and so does this one.
        with contextlib.suppress(FileNotFoundError):
            trial.run_metadata.checkpoint_manager.register_checkpoint(
                _TrainingResult(checkpoint=Checkpoint(own, fs), metrics=source.last_result)
            )


class _WithoutSearchAlg:
    """The Tune controller as PBT's check should see it: without a search algorithm."""

    search_alg = None

    def __init__(self, controller: Any) -> None:
        self._controller = controller

    def __getattr__(self, name: str) -> Any:
        return getattr(self._controller, name)


class CaviarScheduler(ControllerAware, FIFOScheduler):
    """caviar's early stopping (`caviar.stopping.Stopping`) as a Ray Tune scheduler: trials
    run first in, first out, and each result gets the rule's CONTINUE or STOP."""

    def __init__(self, metric: str, mode: Mode, max_epochs: int, options: StoppingOptions):
        super().__init__()
        self.metric_name = metric  # not `metric`: a read-only property of Ray's schedulers
        self.rule = Stopping(mode, max_epochs, options)

    @property
    def stopped(self) -> set[str]:
        return set(self.rule.stopped)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        # The same configuration with another seed: its spread is the metric's noise.
        config = {k: v for k, v in (trial.config or {}).items() if k != "seed"}
        self.rule.on_add(trial.trial_id, repr(sorted(config.items(), key=lambda kv: kv[0])))

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if result.get(session.FINAL):
            return self.CONTINUE
        epoch = result.get("epoch", result.get("training_iteration", 0))
        decision = self.rule.on_result(trial.trial_id, epoch, result.get(self.metric_name))
        return self.STOP if decision == STOP else self.CONTINUE

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.rule.state_dict(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.rule.load_state_dict(pickle.load(f))

    def audit(self) -> list[dict[str, Any]]:
        return self.rule.audit()


def make_scheduler(spec: SweepSpec) -> TrialScheduler:
    """The spec's scheduler. PBT explores the searched hyperparameters that do not change the
    shape of the model."""
    name, o, max_epochs = spec.scheduler.name, spec.scheduler.options, spec.train.max_epochs
    if name == "caviar":
        return CaviarScheduler(spec.metric, spec.mode, max_epochs, o)
    if name == "asha":
        return RecordingASHA(
            time_attr="epoch",
            max_t=max_epochs,
            grace_period=o.grace_period,
            reduction_factor=o.reduction_factor,
            brackets=o.brackets,
        )
    if name == "hyperband":
        return RecordingHyperBand(
            time_attr="epoch", max_t=max_epochs, reduction_factor=o.reduction_factor
        )
    if name == "median":
        return RecordingMedian(
            max_epochs,
            time_attr="epoch",
            grace_period=o.grace_period,
            min_samples_required=o.min_samples_required,
        )
    if name == "pbt":
        return Pbt(
            max_epochs,
            time_attr="epoch",
            perturbation_interval=o.perturbation_interval,
            quantile_fraction=o.quantile_fraction,
            resample_probability=o.resample_probability,
            hyperparam_mutations=pbt_mutations(spec),
        )
    return Fifo()


def pbt_mutations(spec: SweepSpec) -> dict[str, Any]:
    """PBT's explore step for each searched hyperparameter it may change: a sampler from the
    searched domain. Shape-changing knobs of the built-in train function (the width, depth,
    batch size ...) are left out: a checkpoint of one shape cannot continue in another."""
    import numpy as np

    from caviar.train import SHARED

    rng = np.random.default_rng(spec.seed)
    fixed_shape = set(SHARED) | {"hidden", "channels"} if spec.train.task else set()
    mutations = {}
    for name, domain in spec.space:
        if name in fixed_shape or name not in spec.space.searched:
            continue
        mutations[name] = functools.partial(domain.sample, rng)
    if not mutations:
        raise CaviarError(
            "scheduler: pbt needs a searched hyperparameter it can change during training "
            "(one that does not change the model's shape, such as lr or weight_decay)"
        )
    return mutations


def newest_checkpoint(result: Any) -> Any:
    """The checkpoint to restore a trial from: Ray's choice, or where that no longer exists,
    the newest one in the trial's folder. A driver killed between two experiment snapshots
    leaves a snapshot naming a checkpoint it then deleted (checkpoint.keep) after newer ones
    were written; the trial goes on from the newest, whose epochs its result.json holds."""
    from ray.train._internal.session import _TrainingResult

    checkpoint = getattr(result, "checkpoint", None)
    if checkpoint is None:
        return result
    fs, path = checkpoint.filesystem, checkpoint.path
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        return result
    parent = os.path.dirname(path)
    found = {
        int(m[1]): i.path
        for i in fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
        if i.type == pafs.FileType.Directory
        and (m := re.fullmatch(r"checkpoint_(\d+)", i.base_name))
    }
    if not found:
        return result  # Ray says what is missing
    newest = type(checkpoint)(found[max(found)], filesystem=fs)
    return _TrainingResult(checkpoint=newest, metrics={})


def restoring(trainable: Any) -> type:
    """`trainable` (a Ray Tune train function or trainable class) as a trainable class that
    restores from `newest_checkpoint`."""
    from ray.tune.trainable import wrap_function

    if not isinstance(trainable, type):
        trainable = wrap_function(trainable)

    class Restoring(trainable):  # type: ignore[misc, valid-type]
        def restore(self, checkpoint_path: Any) -> Any:
            return super().restore(newest_checkpoint(checkpoint_path))

    Restoring.__name__ = Restoring.__qualname__ = trainable.__name__  # Ray names trials by it
    return Restoring


class ResultLog(JsonLoggerCallback):
    """Ray's result.json writer, writing where the results are read. Ray writes each trial's
    results in a staging folder on the driver and copies them to the run directory every few
    minutes and when a trial ends. With the run directory on this machine's file system
    caviar appends them there directly, so what reads it while the sweep runs (the tables'
    rewrites, the dashboard, a notebook) sees each epoch as it is reported.

    Elsewhere (object storage) Ray's copies stay, without the step that loses results: when a
    trial starts again after a PAUSE (hyperband, median) Ray copied the run directory's copy
    back over the staging file, dropping every result reported since the last copy (seen: a
    trial's epochs 1, 2, 4). Only a staging file that does not exist (a new driver, resuming)
    needs the run directory's copy."""

    def log_trial_start(self, trial: Any) -> None:
        if not storage.is_local(trial.storage.storage_filesystem):
            super().log_trial_start(trial)
            return
        if trial in self._trial_files:
            self._trial_files[trial].close()
        trial.init_local_path()
        self.update_config(trial, trial.config)  # params.json: Ray copies it with the rest
        path = Path(trial.path, EXPR_RESULT_FILE)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._trial_files[trial] = path.open("at")

    def _restore_from_remote(self, file_name: str, trial: Any) -> None:
        if not os.path.exists(os.path.join(trial.local_path, file_name)):
            super()._restore_from_remote(file_name, trial)


class SchedulerState(Callback):
    """Ray saves the searcher's and the callbacks' state with each experiment snapshot, but not
    the scheduler's. This callback carries it in that same snapshot, through the scheduler's
    own save/restore, so a resumed sweep keeps ASHA's rung records and early-stopping decisions
    instead of promoting every trial until the rungs fill again."""

    def __init__(self, scheduler: TrialScheduler) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict:
        if type(self.scheduler).save is TrialScheduler.save:
            return {}  # a scheduler without state (FIFO)
        with tempfile.TemporaryDirectory(prefix="caviar-") as d:
            path = os.path.join(d, "scheduler.pkl")
            self.scheduler.save(path)
            return {"scheduler": Path(path).read_bytes()}

    def set_state(self, state: dict) -> None:
        if not state:
            return
        with tempfile.TemporaryDirectory(prefix="caviar-") as d:
            path = os.path.join(d, "scheduler.pkl")
            Path(path).write_bytes(state["scheduler"])
            self.scheduler.restore(path)


class StateSnapshot(Callback):
    """After each experiment snapshot of Ray Tune's, the files of that one save in one file of
    the run directory, written whole (`rundir.restore_snapshot` says why). Ray saves the
    searcher's state (`SearcherAdapter.on_save` tells this callback where) and the callbacks'
    last, and then ends the step; the snapshot is taken at the end of the step, and at the end
    of the sweep, after Ray's last save."""

    def __init__(self, ray_dir: Location) -> None:
        self.path = ray_dir / rundir.SNAPSHOT
        self.saved: tuple[str, str] | None = None

    def on_save(self, staging_dir: str, session_str: str) -> None:
        self.saved = (staging_dir, session_str)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._write()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._write()

    def _write(self) -> None:
        if self.saved is not None:
            self.path.write_bytes(rundir.snapshot(*self.saved))
            self.saved = None


def trackers(spec: SweepSpec, run_dir: Location) -> list[Callback]:
    """Ray Tune's logger callbacks for the spec's `loggers`: one run per trial in each
    tracker, with the trial's hyperparameters and every epoch's metrics.

    - mlflow: to `tracking_uri`, else MLFLOW_TRACKING_URI, else a file store in the run
      directory (`<run dir>/mlruns`; on object storage, MLflow's own default); the experiment
      is the sweep's name;
    - wandb: offline (WANDB_MODE=offline) unless WANDB_API_KEY is set, to the project
      `project` or the sweep's name, each sweep a group; local files under the run directory;
    - tensorboard: tensorboardX event files in each trial's directory, and its
      hyperparameters with its last metrics once it ends."""
    callbacks: list[Callback] = []
    for tracker in spec.loggers:
        if tracker.name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            uri = tracker.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
            if uri is None and run_dir.is_local:
                uri = Path(run_dir.path, "mlruns").as_uri()
            if uri is not None and uri.startswith("file:"):
                # MLflow 3 refuses its file store (in maintenance) unless told to allow it.
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            callbacks.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=spec.name))
        elif tracker.name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            if not os.environ.get("WANDB_API_KEY"):
                os.environ.setdefault("WANDB_MODE", "offline")
            # wandb.init's own arguments: its logging actors may run where this environment
            # does not reach.
            init: dict[str, Any] = {"mode": os.environ.get("WANDB_MODE", "online")}
            if run_dir.is_local:
                init["dir"] = run_dir.path
            callbacks.append(
                WandbLoggerCallback(
                    project=tracker.project or spec.name, group=run_dir.name, **init
                )
            )
        elif tracker.name == "tensorboard":
            from ray.tune.logger import TBXLoggerCallback

            callbacks.append(TBXLoggerCallback())
    return callbacks


# --- stopping the sweep or a trial ------------------------------------------------------------


def end_tune_loop() -> bool:
    """End the running `tune.run` as its own stop signal (SIGUSR1) does: Tune saves the
    experiment state with the running trials unfinished and its searcher not finished, and
    returns; `caviar resume` goes on from there. False where Tune's loop took no signal
    (`tune.run` off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if not callable(signal.getsignal(signal.SIGUSR1)):
        return False
    os.kill(os.getpid(), signal.SIGUSR1)
    return True


class Abort(Stopper):
    """Stops the whole sweep when a trial misuses `caviar.report` (the sweep's metric missing,
    no epoch): every other trial would fail the same way, so the budget is not spent on them.
    The misuse is recognised by the exception's type (`session.ReportError`). The sweep ends
    resumably (`end_tune_loop`), so that once the function is fixed `caviar resume` runs the
    trials not yet run; only where that cannot be done does `stop_all` end it, which marks
    Tune's searcher finished for good."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.resumable = False

    def check(self, error: BaseException | None) -> None:
        cause = getattr(error, "cause", error)  # Ray wraps the trial's exception
        if self.reason is None and isinstance(cause, session.ReportError):
            message = str(cause).removeprefix("caviar.report:").strip()
            self.reason = f"train.function: {message}"
            self.resumable = end_tune_loop()

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.reason is not None and not self.resumable


def trial_exception(trial: Any) -> BaseException | None:
    """The exception a failed trial raised, as Ray pickled it; None if there is none."""
    path = getattr(trial, "pickled_error_file", None)
    if not path or not Path(path).exists():
        return None
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except Exception:  # noqa: BLE001 - an exception that cannot be unpickled tells us nothing
        return None


class TrialHung(TuneError):
    """A trial reported nothing for far longer than its epochs take: stopped by the watchdog."""


class TrialTimeout(TuneError):
    """A trial ran past the spec's per-trial limit (budget.trial_time_s)."""


class Release(Callback):
    """Fused trials (`caviar.fused`): tells the broker when a member trial is done with its
    group: completed, stopped by the scheduler, failed, or about to be retried. Waits for the
    broker, so that a retried trial's new attempt never reaches it first."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        import ray

        ray.get(self.broker.release.remote(trial.trial_id))

    on_trial_error = on_trial_recover = on_trial_complete


class Watchdog(Callback):
    """Fails trials that hang or overrun, so they do not hold their slot for ever.

    A trial that has reported at least `min_epochs` epochs hangs when no report has come for
    `factor` times its median epoch time, and at least `min_s` seconds (a slow epoch is not a
    hang; a deadlock, a stuck read or a dead peer is). A trial running longer than
    `trial_time_s` (when set) overruns. Either way it ends as ``error`` (after its retries,
    `max_failures`), with error_type TrialHung or TrialTimeout, its process is stopped rather
    than reused, and the sweep goes on."""

    def __init__(
        self,
        scheduler: ControllerAware,
        factor: float,
        min_s: float,
        trial_time_s: float | None = None,
        min_epochs: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scheduler, self.factor, self.min_s = scheduler, factor, min_s
        self.trial_time_s, self.min_epochs, self.clock = trial_time_s, min_epochs, clock
        self.started: dict[str, float] = {}
        self.reports: dict[str, list[float]] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started[trial.trial_id] = self.clock()
        self.reports[trial.trial_id] = []

    on_trial_recover = on_trial_start  # a retry starts its clocks again

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info):
        self.reports.setdefault(trial.trial_id, []).append(self.clock())

    def verdict(self, trial_id: str) -> TuneError | None:
        """Why the trial must be stopped now, or None."""
        now, start = self.clock(), self.started.get(trial_id)
        if start is None:
            return None
        if self.trial_time_s is not None and now - start > self.trial_time_s:
            return TrialTimeout(
                f"TrialTimeout: the trial ran for {now - start:.0f} s, past budget.trial_time_s "
                f"= {self.trial_time_s:g}; raise the limit or shorten the trial"
            )
        times = self.reports.get(trial_id, [])
        if len(times) < self.min_epochs:
            return None
        epoch_s = statistics.median(b - a for a, b in zip([start, *times], times, strict=False))
        silent = now - times[-1]
        if silent > max(self.min_s, self.factor * epoch_s):
            return TrialHung(
                f"TrialHung: no report for {silent:.0f} s after epoch {len(times)}, "
                f"{silent / max(epoch_s, 1e-9):.0f} times its median epoch time "
                f"({epoch_s:.2f} s); stopped by caviar's watchdog (watchdog.factor "
                f"{self.factor:g}, watchdog.min_s {self.min_s:g}). Look for a deadlock, a "
                "stuck read or a dead peer in the train function"
            )
        return None

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        controller = self.scheduler.controller
        if controller is None:
            return
        for trial in trials:
            if trial.status == "RUNNING" and (error := self.verdict(trial.trial_id)):
                self.started.pop(trial.trial_id, None)
                # Ray's own failure path: error file, retries (max_failures), the searcher
                # and scheduler told, and the actor stopped instead of being reused.
                controller._process_trial_failure(trial, exception=error)

    def get_state(self) -> dict:
        return {}  # clocks restart with the trials on a resume


# --- progress and results ------------------------------------------------------------------


class Recorder:
    """Writes trials.parquet and history.parquet from the trials' result files: after the
    sweep, and while it runs (at most every `every_s` seconds, as trials end), so a running or
    crashed sweep still has readable results.

    Incremental: a trial that has ended is read once; each rewrite reads only the trials still
    running and those that ended since the last one."""

    def __init__(
        self,
        run_dir: Location,
        spec: SweepSpec,
        spec_yaml: str,
        searcher: Searcher,
        scheduler: TrialScheduler,
        environment: dict[str, str],
        every_s: float = 10.0,
    ):
        self.run_dir, self.spec, self.searcher, self.scheduler = run_dir, spec, searcher, scheduler
        self.spec_yaml = spec_yaml
        self.metadata = {"caviar.seed": str(spec.seed), **environment}
        self.every_s, self.last = every_s, 0.0
        self.ended: dict[str, Any] = {}  # trial id -> its (trials row, history) once ended
        self.ended_trials, self.ended_history = None, None  # their tables, concatenated

    def rungs(self, trial_id: str) -> list[float] | None:
        """The trial's rungs: its bracket's under ASHA, the scheduler's otherwise."""
        s, max_epochs = self.spec.scheduler, self.spec.train.max_epochs
        bracket = getattr(self.scheduler, "bracket", {}).get(trial_id, 0)
        if s.name == "asha" and bracket:
            o = s.options
            return results.asha_rungs(o.grace_period, o.reduction_factor, max_epochs, bracket)
        return schedulers.rungs(s.name, s.options, max_epochs)

    def _trial_dir(self, trial_id: str, config: Any, status: str) -> results.TrialDir:
        stopped = getattr(self.scheduler, "stopped", set())
        return results.TrialDir(
            trial_id,
            self.run_dir / results.RAY_DIR / trial_id,
            config,
            self.searcher.round_of(trial_id),
            trial_id in stopped,
            status == "ERROR",
            status not in ("TERMINATED", "ERROR"),
            self.rungs(trial_id),
        )

    def write(self, trials: Iterable[tuple[str, Any, str, int | None]]) -> None:
        """`trials`: (trial id, config, Ray's status, last epoch Ray saw) of each trial of the
        experiment."""
        import pandas as pd

        trials = list(trials)
        ended = {t[0]: t for t in trials if t[2] in ("TERMINATED", "ERROR")}
        if self.ended.keys() - ended.keys():  # ended, then marked unfinished by an interrupt
            back = self.ended.keys() - ended.keys()
            for trial_id in back:
                del self.ended[trial_id]
            self.ended_trials = self.ended_trials[~self.ended_trials.trial_id.isin(back)]
            self.ended_history = self.ended_history[~self.ended_history.trial_id.isin(back)]
        spec = self.spec
        fresh_trials, fresh_history = results.collect(
            [self._trial_dir(*t[:3]) for t in trials if t[0] not in self.ended],
            spec.metric,
            spec.mode,
            spec.train.max_epochs,
        )
        # An ended trial is settled, and read no more, once its files say what Ray saw: its
        # last epoch, and an error if it failed (storage may lag behind the driver).
        settled = [
            row.trial_id
            for row in fresh_trials.itertuples()
            if row.trial_id in ended
            and (row.status == "error") == (ended[row.trial_id][2] == "ERROR")
            and row.epochs == (ended[row.trial_id][3] or 0)
        ]
        if settled:
            self.ended.update(dict.fromkeys(settled))
            done = fresh_trials.trial_id.isin(settled)
            self.ended_trials = pd.concat([self.ended_trials, fresh_trials[done]])
            fresh_trials = fresh_trials[~done]
            done = fresh_history.trial_id.isin(settled)
            self.ended_history = pd.concat([self.ended_history, fresh_history[done]])
            fresh_history = fresh_history[~done]
        order = {t[0]: i for i, t in enumerate(trials)}
        trials_df = pd.concat([self.ended_trials, fresh_trials], ignore_index=True)
        history_df = pd.concat([self.ended_history, fresh_history], ignore_index=True)
        if not trials_df.empty:  # in the experiment's order, whatever ended when
            trials_df = trials_df.sort_values("trial_id", key=lambda c: c.map(order), kind="stable")
            trials_df = trials_df.reset_index(drop=True)
        if len(spec.metrics) > 1:  # over the whole table: a trial ending moves the front
            trials_df["pareto"] = results.pareto(trials_df, spec.metric, spec.mode)
        results.write_results(
            self.run_dir,
            trials_df,
            history_df,
            self.spec_yaml,
            self.searcher.regions(),
            self.metadata,
            self.scheduler.audit() if hasattr(self.scheduler, "audit") else None,
        )
        self.last = time.monotonic()

    def maybe_write(self, trials: list) -> None:
        if time.monotonic() - self.last >= self.every_s:
            self.write(ray_trials(t for t in trials if t.status != "PENDING"))


def ray_trials(trials: Iterable[Any], status: dict[str, str] | None = None) -> list[tuple]:
    """What `Recorder.write` takes of Ray's trials; `status` overrides Ray's."""
    return [
        (
            t.trial_id,
            t.config,
            (status or {}).get(t.trial_id, t.status),
            (t.last_result or {}).get("epoch"),
        )
        for t in trials
    ]


class Live:
    """A few lines at the bottom of a terminal, redrawn in place by rich's live display; what
    is printed through `print` scrolls above them."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live as RichLive

        self.out = out
        console = Console(file=out, force_terminal=True, highlight=False, markup=False)
        self.live = RichLive(
            console=console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,  # no global side effects: Ray's own lines print as they do
            redirect_stderr=False,
        )

    def clear(self) -> None:
        self.live.stop()  # transient: the display is erased

    def draw(self, lines: list[str]) -> None:
        from rich.text import Text

        if not self.live.is_started:
            self.live.start()
        text = Text("\n".join(lines), no_wrap=True, overflow="ellipsis")
        self.live.update(text, refresh=True)

    def print(self, line: str, lines: list[str]) -> None:
        self.live.console.print(line, soft_wrap=True)  # above the display
        self.draw(lines)


def live_terminal(out: TextIO) -> bool:
    """Whether `out` is a terminal that can redraw lines."""
    return out.isatty() and os.environ.get("TERM", "") != "dumb"


class Progress(Callback):
    """One line per finished trial: counts, the best so far, and an ETA; and the recorder's
    rewrites as trials end. On a terminal (`live`), also a live display under those lines:
    the counts, the best so far, each running trial's epoch and the ETA."""

    MAX_RUNNING_SHOWN = 8

    def __init__(
        self,
        total: int,
        metric: str,
        mode: Mode,
        max_epochs: int,
        abort: Abort,
        recorder: Recorder,
        clock: Callable[[], float] = time.monotonic,
        live: TextIO | None = None,
        redraw_s: float = 0.5,
    ) -> None:
        self.total, self.metric, self.mode, self.max_epochs = total, metric, mode, max_epochs
        self.abort, self.recorder, self.clock = abort, recorder, clock
        self.done = self.stopped_early = self.done_before = 0
        self.best: float | None = None
        self.started = clock()
        self.in_flight: set[str] = set()  # started and not ended
        # Not ended (pending, running, paused) when Tune's loop last stepped: Ray marks them
        # TERMINATED when an interrupted sweep shuts down, but they are unfinished (and a
        # resume runs them).
        self.unended: list[str] = []
        self.live = Live(live) if live is not None else None
        self.redraw_s, self.drawn_at = redraw_s, -math.inf
        self.latest: dict[str, dict] = {}  # each running trial's last result
        self.trials: list = []

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

    def eta(self, elapsed: float) -> float | None:
        """Seconds left at this run's pace so far; None before a trial has ended."""
        ended = self.done - self.done_before
        return elapsed / ended * (self.total - self.done) if ended else None

    def running(self, trials: list) -> list:
        # A trial that has just ended is still RUNNING in Ray's list.
        return [t for t in trials if t.status == "RUNNING" and t.trial_id in self.in_flight]

    def line(self, trials: list, trial: Any, status: str, error: str = "") -> str:
        self.done += 1
        self.stopped_early += status == "early_stopped"
        last = trial.last_result or {}
        value = last.get(self.metric)
        if status in objective.HEALTHY and isinstance(value, (int, float)):
            self.best = objective.best([self.best, value], self.mode)
        elapsed = self.clock() - self.started
        running = len(self.running(trials))
        eta = self.eta(elapsed) or 0.0
        shown = f"{value:.4g}" if isinstance(value, (int, float)) else "-"
        if error:
            shown += f" ({results.error_type(error) or 'see its error.txt'})"
        best = f"{self.best:.4g}" if self.best is not None else "-"
        return (
            f"[{self.done}/{self.total} {elapsed:6.1f}s, {running} running, "
            f"{self.stopped_early} stopped early, ETA {eta:4.0f}s] trial {trial.trial_id} "
            f"{status} at epoch {last.get('epoch', 0)}: {self.metric}={shown}  best {best}"
        )

    def status_lines(self) -> list[str]:
        """The live display: the counts, the best so far, the ETA, then each running trial
        with its epoch and last value."""
        elapsed = self.clock() - self.started
        running = self.running(self.trials)
        eta = self.eta(elapsed)
        best = f"{self.best:.4g}" if self.best is not None else "-"
        lines = [
            f"caviar: {self.done}/{self.total} done, {len(running)} running, "
            f"{self.stopped_early} stopped early, best {self.metric} {best}, "
            f"{elapsed:.0f}s, ETA {f'{eta:.0f}s' if eta is not None else '-'}"
        ]
        for t in running[: self.MAX_RUNNING_SHOWN]:
            last = self.latest.get(t.trial_id)
            if last is None:
                lines.append(f"  running {t.trial_id}  starting")
                continue
            value = last.get(self.metric)
            shown = f"  {self.metric} {value:.4g}" if isinstance(value, (int, float)) else ""
            lines.append(
                f"  running {t.trial_id}  epoch {last.get('epoch', 0)}/{self.max_epochs}{shown}"
            )
        if len(running) > self.MAX_RUNNING_SHOWN:
            lines.append(f"  ... and {len(running) - self.MAX_RUNNING_SHOWN} more running")
        return lines

    def redraw(self, trials: list, now: bool = False) -> None:
        self.trials = trials
        if self.live is not None and (now or self.clock() - self.drawn_at >= self.redraw_s):
            self.live.draw(self.status_lines())
            self.drawn_at = self.clock()

    def emit(self, trials: list, line: str) -> None:
        """A finished trial's line: printed, or above the live display."""
        if self.live is None:
            print(line, flush=True)
        else:
            self.trials = trials
            self.live.print(line, self.status_lines())
            self.drawn_at = self.clock()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.in_flight.add(trial.trial_id)
        self.redraw(trials)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info):
        self.latest[trial.trial_id] = result
        self.redraw(trials)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.unended = [t.trial_id for t in trials if t.status not in ("TERMINATED", "ERROR")]
        self.redraw(trials)  # the clock and the ETA move on

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.in_flight.discard(trial.trial_id)
        self.latest.pop(trial.trial_id, None)
        status = results.trial_status(trial.last_result or {}, False, self.max_epochs)
        self.emit(trials, self.line(trials, trial, status))
        self.recorder.maybe_write(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.in_flight.discard(trial.trial_id)
        self.latest.pop(trial.trial_id, None)
        # The local error file is written before callbacks run; storage is synced later.
        path = trial.error_file
        error = Path(path).read_text() if path and Path(path).exists() else ""
        self.emit(trials, self.line(trials, trial, "error", error))
        self.abort.check(trial_exception(trial))
        self.recorder.maybe_write(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.live is not None:  # what follows prints as without a terminal
            self.live.clear()
            self.live.out.flush()
