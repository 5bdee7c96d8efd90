"""caviar.ray_seam with fake trials, as Ray tests its own schedulers: no Ray cluster starts.
These tests import Ray Tune, so they run in the integration lane."""

import json
import pickle
import signal
import types
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from conftest import imported_after

from caviar import results
from caviar.searchers import searcher_class
from caviar.session import ReportError
from caviar.space import Float, Space
from caviar.spec import parse_spec
from caviar.storage import Location

pytestmark = pytest.mark.integration
seam = pytest.importorskip("caviar.ray_seam")


@dataclass
class FakeTrial:
    trial_id: str
    status: str = "RUNNING"
    config: dict = field(default_factory=dict)
    last_result: dict | None = None
    error_file: str | None = None
    pickled_error_file: str | None = None


def spec(**overrides):
    raw = {
        "name": "seam",
        "metric": "acc",
        "mode": "max",
        "train": {"function": "m:f", "max_epochs": 9},
        "space": {"x": {"uniform": [0, 1]}},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 3},
        "budget": {"num_samples": 4},
    }
    for key, value in overrides.items():
        raw[key] = value
    return parse_spec(raw)


def random_searcher(num_samples=4):
    space = Space((("x", Float(0.0, 1.0)),))
    return searcher_class("random")(space, "acc", "max", num_samples, 0)


def test_searcher_adapter_reports_each_outcome_and_round_trips_its_state(tmp_path):
    searcher = random_searcher()
    adapter = seam.SearcherAdapter(searcher, max_epochs=3)
    config = adapter.suggest("t1")
    assert set(config) == {"x"}
    for epoch, acc in ((1, 0.5), (2, 0.8), (3, 0.7)):
        adapter.on_trial_result("t1", {"epoch": epoch, "acc": acc})
    seen = []
    searcher.on_trial_complete = lambda trial_id, outcome: seen.append((trial_id, outcome))
    adapter.on_trial_complete("t1")
    ((trial_id, outcome),) = seen
    assert (trial_id, outcome.status, outcome.value, outcome.best, outcome.epoch) == (
        "t1",
        "completed",
        0.7,
        0.8,
        3,
    )
    adapter.suggest("t2")
    adapter.on_trial_result("t2", {"epoch": 1, "acc": 0.1})
    adapter.save(str(tmp_path / "s.pkl"))
    restored = seam.SearcherAdapter(random_searcher(), max_epochs=3)
    restored.restore(str(tmp_path / "s.pkl"))
    assert restored.best == {"t2": 0.1} and restored.suggest("t3") == adapter.suggest("t3")


def test_searcher_adapter_counts_the_result_a_trial_was_stopped_on():
    # Ray does not call `on_trial_result` for the result its scheduler stops a trial on; it
    # passes that result to `on_trial_complete` only.
    searcher = random_searcher()
    adapter = seam.SearcherAdapter(searcher, max_epochs=9)
    adapter.suggest("first")
    adapter.suggest("later")
    adapter.on_trial_result("later", {"epoch": 1, "acc": 0.2})
    seen = {}
    searcher.on_trial_complete = lambda trial_id, outcome: seen.update({trial_id: outcome})
    adapter.on_trial_complete("first", {"epoch": 1, "acc": 0.3})
    adapter.on_trial_complete("later", {"epoch": 3, "acc": 0.6})
    assert [(o.status, o.value, o.best, o.epoch) for o in seen.values()] == [
        ("early_stopped", 0.3, 0.3, 1),
        ("early_stopped", 0.6, 0.6, 3),
    ]


def test_recording_asha_records_its_stops_and_each_trials_bracket(tmp_path):
    scheduler = seam.make_scheduler(
        spec(scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 3, "brackets": 2})
    )
    scheduler.set_search_properties("acc", "max")
    controller = object()
    trials = [FakeTrial(f"t{i}") for i in range(12)]
    for t in trials:
        scheduler.on_trial_add(controller, t)
    assert scheduler.controller is controller
    assert set(scheduler.bracket.values()) <= {0, 1} and len(scheduler.bracket) == 12
    decisions = {}
    for epoch in (1, 3):
        for i, t in enumerate(trials):
            if decisions.get(t.trial_id) != "STOP":
                decisions[t.trial_id] = scheduler.on_trial_result(
                    controller, t, {"epoch": epoch, "acc": 1 - i / 12}
                )
    assert scheduler.stopped == {k for k, v in decisions.items() if v == "STOP"}
    assert scheduler.stopped  # the weak ones
    # The scheduler's state (stops, brackets) survives the snapshot a resume restores.
    state = seam.SchedulerState(scheduler).get_state()
    fresh = seam.make_scheduler(
        spec(scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 3, "brackets": 2})
    )
    seam.SchedulerState(fresh).set_state(state)
    assert fresh.stopped == scheduler.stopped and fresh.bracket == scheduler.bracket


def test_recorder_rungs_follow_each_trials_bracket():
    recorder = seam.Recorder(
        Location.of("/tmp"), spec(), "", random_searcher(), seam.make_scheduler(spec()), {}
    )
    recorder.scheduler.bracket = {"a": 0, "b": 1}
    assert recorder.rungs("a") == [1, 3, 9] and recorder.rungs("b") == [3, 9]


class ActualReportError(ReportError):
    pass


class NotAReportErrorAtAll(Exception):
    """Its name contains ReportError; it is not one."""


def test_abort_stops_the_sweep_on_a_report_error_by_its_type():
    abort = seam.Abort()
    abort.check(NotAReportErrorAtAll("ReportError in the message too"))
    assert not abort.stop_all()
    wrapped = type("RayTaskError", (Exception,), {})()
    wrapped.cause = ReportError("caviar.report: the sweep's metric 'acc' is missing")
    abort.check(wrapped)
    assert abort.stop_all()  # no Tune loop to end here: Tune's stop_all it is
    assert abort.reason == "train.function: the sweep's metric 'acc' is missing"
    assert not abort.resumable


def test_abort_ends_tune_loop_as_its_stop_signal_does_so_that_resume_goes_on():
    """Tune's stop_all would mark its searcher finished in the saved state, and a resume
    would then run none of the trials left; its SIGUSR1 handler ends the loop resumably."""
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    try:
        abort = seam.Abort()
        abort.check(ReportError("caviar.report: metrics need an integer 'epoch'"))
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert received == [signal.SIGUSR1]
    assert abort.resumable and not abort.stop_all() and abort.reason


def test_trial_exception_reads_rays_pickled_error(tmp_path):
    path = tmp_path / "error.pkl"
    path.write_bytes(pickle.dumps(ValueError("boom")))
    assert str(seam.trial_exception(FakeTrial("t", pickled_error_file=str(path)))) == "boom"
    assert seam.trial_exception(FakeTrial("t")) is None


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeController:
    def __init__(self):
        self.failed = []

    def _process_trial_failure(self, trial, exception):
        self.failed.append((trial.trial_id, exception))
        trial.status = "ERROR"


def watchdog(trial_time_s=None):
    clock, controller = Clock(), FakeController()
    scheduler = seam.Fifo()
    scheduler.controller = controller
    return seam.Watchdog(scheduler, 10, 5, trial_time_s, clock=clock), clock, controller


def test_watchdog_fails_a_trial_silent_for_many_epoch_times():
    dog, clock, controller = watchdog()
    slow, hung = FakeTrial("slow"), FakeTrial("hung")
    for t in (slow, hung):
        dog.on_trial_start(0, [], t)
    for epoch in (1, 2):
        clock.now = epoch * 1.0
        dog.on_trial_result(0, [], hung, {"epoch": epoch})
    clock.now = 2.5
    dog.on_trial_result(0, [], slow, {"epoch": 1})  # one epoch: no usual time yet
    clock.now = 11.9  # 9.9 s of silence: under 10 epoch times
    dog.on_step_end(0, [slow, hung])
    assert controller.failed == []
    clock.now = 12.5
    dog.on_step_end(0, [slow, hung])
    ((trial_id, error),) = controller.failed
    assert trial_id == "hung" and isinstance(error, seam.TrialHung)
    assert results.error_type(f"Failure # 1\n{error}") == "TrialHung"
    assert "no report for 10 s after epoch 2" in str(error)
    dog.on_step_end(0, [slow, hung])  # failed once only
    assert len(controller.failed) == 1


def test_watchdog_respects_its_minimum_and_the_per_trial_limit():
    dog, clock, controller = watchdog(trial_time_s=100)
    fast = FakeTrial("fast")
    dog.on_trial_start(0, [], fast)
    for epoch in (1, 2):
        clock.now = epoch * 0.01
        dog.on_trial_result(0, [], fast, {"epoch": epoch})
    clock.now = 4.0  # 400 epoch times, but under watchdog.min_s
    dog.on_step_end(0, [fast])
    assert controller.failed == []
    for epoch in range(3, 30):
        clock.now = epoch * 4.0
        dog.on_trial_result(0, [], fast, {"epoch": epoch})
    clock.now = 100.5
    dog.on_step_end(0, [fast])
    ((_, error),) = controller.failed
    assert isinstance(error, seam.TrialTimeout) and "budget.trial_time_s = 100" in str(error)


def test_progress_lines_count_and_track_the_best(capsys, tmp_path):
    writes = []
    recorder = type("R", (), {"maybe_write": lambda self, trials: writes.append(len(trials))})()
    clock = Clock()
    progress = seam.Progress(3, "acc", "max", 9, seam.Abort(), recorder, clock=clock)
    a = FakeTrial("a", status="TERMINATED", last_result={"epoch": 9, "acc": 0.7})
    b = FakeTrial("b", status="TERMINATED", last_result={"epoch": 3, "acc": 0.9})
    error = tmp_path / "error.txt"
    error.write_text("Traceback\nValueError: bad")
    c = FakeTrial("c", status="ERROR", last_result={"epoch": 1, "acc": 0.99}, error_file=str(error))
    clock.now = 10.0
    progress.on_trial_complete(0, [a, b, c], a)
    progress.on_trial_complete(0, [a, b, c], b)
    progress.on_trial_error(0, [a, b, c], c)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[1/3   10.0s, 0 running, 0 stopped early, ETA   20s] trial a")
    assert "trial b early_stopped at epoch 3: acc=0.9  best 0.9" in lines[1]
    assert "trial c error at epoch 1: acc=0.99 (ValueError)  best 0.9" in lines[2]
    assert writes == [3, 3, 3] and progress.get_state()["best"] == 0.9
    # Ray calls on_trial_complete while the trial is still RUNNING in its list: not counted.
    d, e = FakeTrial("d"), FakeTrial("e")
    for t in (d, e):
        progress.on_trial_start(0, [d, e], t)
    d.last_result = {"epoch": 9, "acc": 0.5}
    progress.on_trial_complete(0, [d, e], d)
    assert "1 running" in capsys.readouterr().out


def test_progress_on_a_terminal_redraws_a_live_display_under_the_lines(tmp_path):
    import io
    import re

    def shown() -> str:  # what the terminal shows, without rich's cursor codes
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())

    recorder = type("R", (), {"maybe_write": lambda self, trials: None})()
    clock, out = Clock(), io.StringIO()
    progress = seam.Progress(3, "acc", "max", 9, seam.Abort(), recorder, clock=clock, live=out)
    a, b = FakeTrial("a"), FakeTrial("b")
    progress.on_trial_start(0, [a, b], a)
    progress.on_trial_start(0, [a, b], b)
    clock.now = 4.0
    progress.on_trial_result(0, [a, b], a, {"epoch": 2, "acc": 0.5})
    assert shown().endswith(
        "caviar: 0/3 done, 2 running, 0 stopped early, best acc -, 4s, ETA -\n"
        "  running a  epoch 2/9  acc 0.5\n"
        "  running b  starting"
    )
    clock.now = 4.1  # within redraw_s: not drawn again
    progress.on_step_end(0, [a, b])
    assert out.getvalue().count("caviar: ") == 2
    clock.now = 10.0
    a.status, a.last_result = "TERMINATED", {"epoch": 9, "acc": 0.7}
    progress.on_trial_complete(0, [a, b], a)
    assert (
        "[1/3   10.0s, 1 running, 0 stopped early, ETA   20s] trial a completed "
        "at epoch 9: acc=0.7  best 0.7\n" in shown()
    )
    assert shown().endswith(  # the display, redrawn under it
        "caviar: 1/3 done, 1 running, 0 stopped early, best acc 0.7, 10s, ETA 20s\n"
        "  running b  starting"
    )
    progress.on_experiment_end([a, b])
    assert not progress.live.live.is_started  # erased: what follows prints as on a pipe


def _write_trial(run_dir: Path, trial_id: str, epochs: int) -> None:
    d = run_dir / results.RAY_DIR / trial_id
    d.mkdir(parents=True, exist_ok=True)
    rows = [{"epoch": e, "acc": e / 10} for e in range(1, epochs + 1)]
    (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_recorder_reads_an_ended_trial_once_its_files_are_settled(tmp_path, monkeypatch):
    read = []
    collect = results.collect

    def counting(trial_dirs, *args, **kwargs):
        read.extend(t.trial_id for t in trial_dirs)
        return collect(trial_dirs, *args, **kwargs)

    monkeypatch.setattr(results, "collect", counting)
    recorder = seam.Recorder(
        Location.of(tmp_path), spec(), "", random_searcher(), seam.make_scheduler(spec()), {}
    )
    for t in ("a", "b", "c"):
        _write_trial(tmp_path, t, 2)
    a = ("a", {"x": 0.1}, "TERMINATED", 2)
    recorder.write([a, ("b", {"x": 0.2}, "RUNNING", 2)])
    # b ended at epoch 9, but storage still holds its first 2 epochs: read again next time.
    recorder.write([a, ("b", {"x": 0.2}, "TERMINATED", 9), ("c", {}, "RUNNING", 1)])
    _write_trial(tmp_path, "b", 9)
    recorder.write([a, ("b", {"x": 0.2}, "TERMINATED", 9), ("c", {}, "ERROR", 2)])
    # c failed, but its error file has not reached storage yet: read again next time.
    (tmp_path / results.RAY_DIR / "c" / "error.txt").write_text("Traceback\nValueError: x")
    c = ("c", {}, "ERROR", 2)
    recorder.write([a, ("b", {"x": 0.2}, "TERMINATED", 9), c])
    recorder.write([a, ("b", {"x": 0.2}, "TERMINATED", 9), c])
    assert read == ["a", "b", "b", "c", "b", "c", "c"]
    trials = pd.read_parquet(tmp_path / results.TRIALS_FILE)
    assert list(trials.trial_id) == ["a", "b", "c"]
    assert list(trials.status) == ["early_stopped", "completed", "error"]
    assert len(pd.read_parquet(tmp_path / results.HISTORY_FILE)) == 2 + 9 + 2
    # An interrupt marks an ended trial unfinished again: it is not listed twice.
    recorder.write([("a", {"x": 0.1}, "RUNNING", 2), ("b", {"x": 0.2}, "TERMINATED", 9), c])
    trials = pd.read_parquet(tmp_path / results.TRIALS_FILE)
    assert list(trials.trial_id) == ["a", "b", "c"]
    assert list(trials.status) == ["unfinished", "completed", "error"]


def test_caviar_scheduler_stops_at_trusted_rungs_and_round_trips_its_state(tmp_path):
    scheduler = seam.make_scheduler(spec(scheduler={"name": "caviar", "min_pairs": 4}))
    assert isinstance(scheduler, seam.CaviarScheduler)
    controller = object()
    decisions = {}
    for i in range(8):  # the first four train fully (nothing measured yet), then a cut
        trial = FakeTrial(f"t{i}", config={"x": i})
        scheduler.on_trial_add(controller, trial)
        quality = 0.9 - i / 10
        for epoch in range(1, 10):
            value = quality * (1 - 0.5**epoch)
            decision = scheduler.on_trial_result(controller, trial, {"epoch": epoch, "acc": value})
            if decision == "STOP":
                decisions[trial.trial_id] = epoch
                break
    assert set(decisions) >= {"t6", "t7"} and not {"t0", "t1", "t2", "t3"} & set(decisions)
    assert scheduler.stopped == set(decisions)
    assert scheduler.audit()[0]["trusted"] is True
    scheduler.save(str(tmp_path / "s.pkl"))
    fresh = seam.make_scheduler(spec(scheduler={"name": "caviar", "min_pairs": 4}))
    fresh.restore(str(tmp_path / "s.pkl"))
    assert fresh.audit() == scheduler.audit() and fresh.stopped == scheduler.stopped


def test_hyperband_ends_a_trial_at_max_epochs_instead_of_pausing_it(monkeypatch):
    """Ray's HyperBand pauses a trial at its bracket's last milestone until the bracket is
    processed, which may never happen again (a hung sweep); at max_epochs caviar's wrapper
    lets the trial end instead, and passes every other decision on."""
    scheduler = seam.make_scheduler(spec(scheduler={"name": "hyperband"}))
    monkeypatch.setattr(seam.HyperBandScheduler, "on_trial_result", lambda *a: "PAUSE")
    trial = FakeTrial("t0")
    assert scheduler.on_trial_result(None, trial, {"epoch": 3, "acc": 0.5}) == "PAUSE"
    assert scheduler.on_trial_result(None, trial, {"epoch": 9, "acc": 0.5}) == "CONTINUE"
    monkeypatch.setattr(seam.HyperBandScheduler, "on_trial_result", lambda *a: "STOP")
    assert scheduler.on_trial_result(None, trial, {"epoch": 9, "acc": 0.5}) == "STOP"
    assert not scheduler.stopped  # a stop at max_epochs is no early stop


def test_pbt_ends_a_trial_at_max_epochs_and_keeps_its_weights_when_no_copy_can_be_made(
    monkeypatch, tmp_path, capsys
):
    """A last report ends its trial: PBT neither pauses it nor lets another trial copy it. An
    exploit whose checkpoint cannot be copied into the trial's own folder is skipped, with a
    line on stderr; the trial goes on (Ray's exploit, which pauses it, never runs)."""
    import pyarrow.fs as pafs
    from ray.tune import Checkpoint

    raw = {"space": {"lr": {"loguniform": [1e-3, 1e-1]}}, "scheduler": {"name": "pbt"}}
    scheduler = seam.make_scheduler(spec(**raw))
    monkeypatch.setattr(seam.PopulationBasedTraining, "on_trial_result", lambda *a: "PAUSE")
    trial = FakeTrial("t0")
    assert scheduler.on_trial_result(None, trial, {"epoch": 4, "acc": 0.5}) == "PAUSE"
    assert scheduler.on_trial_result(None, trial, {"epoch": 9, "acc": 0.5}) == "CONTINUE"

    def exploit(*args):
        raise AssertionError("Ray's exploit ran")

    monkeypatch.setattr(seam.PopulationBasedTraining, "_exploit", exploit)
    source = type("Trial", (), {"trial_id": "t1"})()  # hashable, as Ray's trials are
    gone = Checkpoint(str(tmp_path / "t1" / "checkpoint_000003"), pafs.LocalFileSystem())
    scheduler._trial_state[source] = types.SimpleNamespace(
        last_checkpoint=gone, last_result={"epoch": 3, "acc": 0.9}
    )
    trial.storage = types.SimpleNamespace(
        trial_fs_path=str(tmp_path / "t0"), storage_filesystem=pafs.LocalFileSystem()
    )
    scheduler._exploit(None, trial, source)
    assert "trial t0 keeps its own weights instead of trial t1's" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["asha", "hyperband", "median", "pbt", "fifo", "caviar"])
def test_every_named_scheduler_is_built_with_its_options(name):
    scheduler = seam.make_scheduler(spec(scheduler={"name": name}))
    expected = {
        "asha": seam.RecordingASHA,
        "hyperband": seam.RecordingHyperBand,
        "median": seam.RecordingMedian,
        "pbt": seam.Pbt,
        "fifo": seam.Fifo,
        "caviar": seam.CaviarScheduler,
    }[name]
    assert type(scheduler) is expected


def test_pbt_explores_only_what_keeps_the_models_shape():
    raw = {
        "name": "p",
        "metric": "val_acc",
        "mode": "max",
        "train": {"task": "digits", "max_epochs": 4},
        "space": {"lr": {"loguniform": [1e-3, 1e-1]}, "hidden": {"randint": [8, 32]}},
        "scheduler": {"name": "pbt"},
    }
    mutations = seam.pbt_mutations(parse_spec(raw))
    assert set(mutations) == {"lr"} and 1e-3 <= mutations["lr"]() <= 1e-1
    with pytest.raises(seam.CaviarError, match="pbt needs a searched hyperparameter"):
        seam.pbt_mutations(parse_spec({**raw, "space": {"hidden": {"randint": [8, 32]}}}))


class StagedTrial:
    """What the result log reads of Ray's Trial: the driver's staging folder (`local_path`) and
    the run directory's trial folder (`path`) on its file system. Hashable, as trials are."""

    def __init__(self, staging: Path, remote: Path, fs):
        staging.mkdir(parents=True, exist_ok=True)
        self.local_path, self.path = str(staging), str(remote)
        self.config, self.checkpoint = {"x": 1}, object()
        self.storage = types.SimpleNamespace(trial_fs_path=str(remote), storage_filesystem=fs)

    def init_local_path(self):
        Path(self.local_path).mkdir(parents=True, exist_ok=True)


def epochs_in(path: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in path.open()]


def test_result_log_writes_a_local_run_dir_as_results_come(tmp_path):
    import pyarrow.fs

    remote, staging = tmp_path / "run" / "t1", tmp_path / "staging" / "t1"
    log, trial = seam.ResultLog(), StagedTrial(staging, remote, pyarrow.fs.LocalFileSystem())
    log.log_trial_result(1, trial, {"epoch": 1})
    log.log_trial_result(2, trial, {"epoch": 2})
    assert epochs_in(remote / "result.json") == [1, 2]  # readable while the trial runs
    log.log_trial_end(trial)
    log.log_trial_start(trial)  # restarted after a pause: appends
    log.log_trial_result(3, trial, {"epoch": 3})
    assert epochs_in(remote / "result.json") == [1, 2, 3]
    assert (staging / "params.json").exists() and not (staging / "result.json").exists()


def test_result_log_keeps_results_reported_since_the_last_copy_to_object_storage(tmp_path):
    """A trial restarting after a PAUSE: the staging file is ahead of the run directory's copy
    and must not be overwritten by it; a new driver (no staging file) takes the copy."""
    import pyarrow.fs

    bucket = pyarrow.fs.SubTreeFileSystem(str(tmp_path / "bucket"), pyarrow.fs.LocalFileSystem())
    remote = tmp_path / "bucket" / "run" / "t1"
    remote.mkdir(parents=True)
    (remote / "result.json").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    staging = tmp_path / "staging" / "t1"
    staging.mkdir(parents=True)
    (staging / "result.json").write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3}\n')

    log, paused = seam.ResultLog(), StagedTrial(staging, Path("run/t1"), bucket)
    log.log_trial_start(paused)
    log.log_trial_result(4, paused, {"epoch": 4})
    log.log_trial_end(paused)
    assert epochs_in(staging / "result.json") == [1, 2, 3, 4]

    fresh = tmp_path / "new-driver" / "t1"
    log.log_trial_start(StagedTrial(fresh, Path("run/t1"), bucket))
    assert (fresh / "result.json").read_text() == (remote / "result.json").read_text()


def test_a_trial_restores_from_its_newest_checkpoint_when_ray_names_a_deleted_one(tmp_path):
    import pyarrow.fs
    from ray import tune
    from ray.train._internal.session import _TrainingResult

    trial = tmp_path / "ray" / "t1"
    for name in ("checkpoint_000006", "checkpoint_000010", "checkpoint_tmp"):
        (trial / name).mkdir(parents=True)
    fs = pyarrow.fs.LocalFileSystem()

    def result(name):
        return _TrainingResult(tune.Checkpoint(str(trial / name), filesystem=fs), {"epoch": 6})

    kept = result("checkpoint_000006")
    assert seam.newest_checkpoint(kept) is kept  # Ray's choice, where it exists
    deleted = seam.newest_checkpoint(result("checkpoint_000005"))
    assert deleted.checkpoint.path == str(trial / "checkpoint_000010")
    assert seam.restoring(tune.with_parameters(lambda config: None)).__name__ != "Restoring"


def test_a_sweep_driver_does_not_import_the_tracker_sdks_for_ray_telemetry():
    """Ray Tune's callback telemetry imports wandb and mlflow where installed (3 s of a driver's
    CPU, every sweep); with caviar's seam loaded, counting callbacks imports neither."""
    code = (
        "import caviar.ray_seam\n"
        "from ray.air._internal import usage\n"
        "from ray.tune import Callback\n"
        "usage.tag_callbacks([Callback()])\n"
    )
    assert imported_after(code, {"wandb", "mlflow"}) == set()
