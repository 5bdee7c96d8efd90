"""Fault injection on real Ray: a killed driver (then `caviar resume`), Ctrl-C and SIGTERM, a
worker node's raylet killed mid-sweep, a trial out of memory. Each checks what holds after:
every trial once in trials.parquet, one history row per (trial, epoch), trials resumed from
their checkpoints rather than from epoch 0."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import CaviarProcess

from caviar.results import load_history, load_trials
from caviar.rundir import SNAPSHOT
from caviar.searchers.coarse_to_fine import split_budget

pytestmark = pytest.mark.integration

# A train function slow enough to be caught mid-epoch: it resumes from its checkpoint and
# records the epoch it started from in every report.
SLOW_TRAIN = """
import textwrap
import time
import caviar

def train(config):
    state = caviar.get_checkpoint()
    start = state["epoch"] if state else 0
    for epoch in range(start + 1, config["max_epochs"] + 1):
        time.sleep(config["sleep"])
        score = 1 - (config["x"] - 0.3) ** 2 + 0.01 * epoch
        caviar.report({"epoch": epoch, "score": score, "start": start},
                      checkpoint={"epoch": epoch})
"""


def slow_spec(write_spec, tmp_path: Path, **overrides) -> Path:
    (tmp_path / "slow.py").write_text(SLOW_TRAIN)
    return write_spec(
        {
            "metric": "score",
            "train": {"function": "slow:train", "max_epochs": 8, "fixed": {"sleep": 0.5}},
            "space": {"x": {"uniform": [0, 1]}},
            "scheduler": {"name": "asha", "grace_period": 2, "reduction_factor": 3},
            **overrides,
        }
    )


def start_run(spec: Path, run_dir: Path) -> CaviarProcess:
    """`caviar run` of `spec` into `run_dir` (its parent the storage, its name the run's)."""
    return CaviarProcess(
        "run", str(spec), "--storage", str(run_dir.parent), "--name", run_dir.name, cwd=spec.parent
    )


def reported(run_dir: Path) -> int:
    """Results reported so far, over every trial folder."""
    return sum(p.read_text().count("\n") for p in run_dir.glob("ray/*/result.json"))


def wait_until(proc: CaviarProcess, ready, what: str) -> None:
    while not ready():
        if proc.popen.poll() is not None:
            raise AssertionError(
                f"caviar exited ({proc.popen.returncode}) before {what}:\n{proc.output}"
            )
        time.sleep(0.1)


def wait_for_reports(proc: CaviarProcess, run_dir: Path, more: int) -> None:
    """Until the sweep has reported `more` results than it had."""
    target = reported(run_dir) + more
    wait_until(proc, lambda: reported(run_dir) >= target, f"{more} more results")


def recorded_mid_training(run_dir: Path, max_epochs: int) -> bool:
    """Whether Ray Tune's newest saved experiment state has a trial part-way through, with
    checkpoints: what a killed driver's resume goes on from. (Ray saves that state every 10 s,
    or sooner once a trial has made `checkpoint.keep` checkpoints since the last save; a driver
    killed before a save resumes from the one before.)"""
    states = sorted((run_dir / "ray").glob("experiment_state-*.json"))
    try:
        trial_data = json.loads(states[-1].read_text())["trial_data"] if states else []
    except (OSError, ValueError):  # being written
        return False
    for trial, run in trial_data:
        epoch = json.loads(run).get("last_result", {}).get("epoch", 0)
        if json.loads(trial)["status"] in ("RUNNING", "PAUSED") and 0 < epoch < max_epochs:
            return True
    return False


def check_complete(run_dir: Path, num_samples: int, max_epochs: int):
    """Every trial exactly once, every epoch exactly once, nothing past max_epochs."""
    trials, history = load_trials(run_dir), load_history(run_dir)
    assert len(trials) == num_samples and trials["trial_id"].is_unique
    assert set(trials["status"]) <= {"completed", "early_stopped"}, trials[["trial_id", "status"]]
    assert not history.duplicated(["trial_id", "epoch"]).any()
    for trial_id, epochs in history.groupby("trial_id")["epoch"]:
        assert list(epochs) == list(range(1, len(epochs) + 1)), trial_id  # no gap, no repeat
    assert (
        trials.set_index("trial_id")["epochs"].to_dict()
        == history.groupby("trial_id").size().to_dict()
    )
    assert (trials["epochs"] <= max_epochs).all()
    assert ((trials["status"] == "completed") == (trials["epochs"] == max_epochs)).all()
    # ASHA's decisions survived the restarts: every early stop is one ASHA made.
    assert (trials["stopped_by_asha"] == (trials["status"] == "early_stopped")).all()
    return trials, history


def test_a_driver_killed_five_times_then_resumed_runs_every_trial_once(
    write_spec, tmp_path, private_ray_tmp
):
    n = 15
    spec = slow_spec(
        write_spec,
        tmp_path,
        searcher={"name": "coarse_to_fine", "rounds": 3},
        budget={"num_samples": n, "max_concurrent": 2},
    )
    run_dir = tmp_path / "runs" / "r"
    proc = start_run(spec, run_dir)
    for _ in range(5):
        wait_for_reports(proc, run_dir, 6)
        proc.kill()  # kill -9 the driver and its embedded Ray mid-sweep
        assert not proc.alive()
        proc = CaviarProcess("resume", str(run_dir), cwd=tmp_path)
    assert proc.wait() == 0, proc.output
    assert "caviar: resuming" in proc.output
    assert f"[{n}/{n} " in proc.output  # the progress count went on from where it was

    trials, history = check_complete(run_dir, n, max_epochs=8)
    # Trials caught mid-sweep went on from their checkpoints, not from epoch 0.
    assert (history["start"] > 0).any()
    # Coarse-to-fine went on in the right round: each round got its share of the budget, and
    # each trial lies in the region of its round.
    assert trials["round"].value_counts().sort_index().tolist() == split_budget(n, 3)
    regions = pd.read_parquet(run_dir / "regions.parquet").set_index("round")
    assert sorted(regions.index) == [0, 1, 2]
    for _, t in trials.iterrows():
        region = regions.loc[t["round"]]
        assert region["low"] - 1e-9 <= t["param_x"] <= region["high"] + 1e-9
    assert regions.loc[2, "high"] - regions.loc[2, "low"] < 1.0


def test_a_resume_from_rays_state_copied_half_from_an_older_save_runs_every_trial_once(
    write_spec, tmp_path, private_ray_tmp
):
    """Ray Tune copies its saved state to the run directory file by file, in the background: a
    driver killed mid-copy leaves the trials of one save beside the searcher of an older one.
    Resumed from that, coarse-to-fine waited forever for trials that Ray had finished."""
    n = 6
    spec = slow_spec(
        write_spec,
        tmp_path,
        searcher={"name": "coarse_to_fine", "rounds": 2},
        budget={"num_samples": n, "max_concurrent": 2},
    )
    run_dir = tmp_path / "runs" / "r"
    ray_dir = run_dir / "ray"
    proc = start_run(spec, run_dir)

    def newest(pattern: str) -> Path | None:
        return max(ray_dir.glob(pattern), default=None)

    def copy_of_searchers_first_state() -> dict[str, bytes] | None:
        files = [newest("searcher-state-*.pkl"), newest("search_gen_state-*.json")]
        return None if None in files else {f.name: f.read_bytes() for f in files}

    def trials_saved() -> int:
        state = newest("experiment_state-*.json")
        try:
            return len(json.loads(state.read_text())["trial_data"]) if state else 0
        except ValueError:  # being written
            return 0

    wait_until(proc, lambda: copy_of_searchers_first_state() is not None, "a first save")
    old = copy_of_searchers_first_state()
    wait_until(proc, lambda: trials_saved() >= 4, "four trials saved")
    proc.kill()
    session = newest("experiment_state-*.json").stem.removeprefix("experiment_state-")
    for name, data in old.items():  # what a copy cut short leaves: the searcher's older state
        assert session in name
        (ray_dir / name).write_bytes(data)

    proc = CaviarProcess("resume", str(run_dir), cwd=tmp_path)
    assert proc.wait() == 0, proc.output
    trials, _ = check_complete(run_dir, n, max_epochs=8)
    assert trials["round"].value_counts().sort_index().tolist() == split_budget(n, 2)
    # The resumed driver took snapshots of its own.
    with zipfile.ZipFile(ray_dir / SNAPSHOT) as z:
        assert len(z.namelist()) == 4 and session not in "".join(z.namelist())


def test_ctrl_c_and_sigterm_stop_the_sweep_resumably(write_spec, tmp_path, private_ray_tmp):
    n = 6
    spec = slow_spec(write_spec, tmp_path, budget={"num_samples": n, "max_concurrent": 2})
    run_dir = tmp_path / "runs" / "r"
    proc = start_run(spec, run_dir)
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        wait_for_reports(proc, run_dir, 4)
        proc.popen.send_signal(sig)
        assert proc.wait() == code, proc.output
        out = proc.output
        assert f"caviar: stopped by {sig.name}: " in out
        assert f"continue with: caviar resume {run_dir}" in out
        assert "tune.run(" not in out  # Ray's own advice, wrong for a caviar user, is dropped
        assert not proc.alive()  # the embedded Ray went down with the driver
        # What ran so far is in the tables; trials caught running are marked unfinished.
        trials = load_trials(run_dir)
        assert 0 < len(trials) <= n
        assert (trials["status"] == "unfinished").any()
        proc = CaviarProcess("resume", str(run_dir), cwd=tmp_path)
    assert proc.wait() == 0, proc.output
    _, history = check_complete(run_dir, n, max_epochs=8)
    assert (history["start"] > 0).any()


def test_a_second_driver_on_a_running_sweep_is_refused(write_spec, tmp_path, private_ray_tmp):
    spec = slow_spec(write_spec, tmp_path, budget={"num_samples": 4, "max_concurrent": 1})
    run_dir = tmp_path / "runs" / "r"
    proc = start_run(spec, run_dir)
    try:
        wait_for_reports(proc, run_dir, 1)
        second = CaviarProcess("resume", str(run_dir), cwd=tmp_path)
        assert second.wait() == 2
        assert (
            f"caviar: error: {run_dir}: a caviar driver (pid {proc.popen.pid}) is still "
            "running this sweep" in second.output
        )
    finally:
        proc.kill()
    assert reported(run_dir) > 0  # the first driver's work is still there


def test_a_sweep_state_cut_short_is_refused_before_ray_starts_over(
    write_spec, tmp_path, private_ray_tmp
):
    """Ray Tune, unable to read its newest state file, starts the sweep again from nothing; a
    resume refuses instead, naming the file, and changes nothing. (caviar's own snapshot of the
    state, `rundir.restore_snapshot`, would put the file back whole; a run directory from
    before caviar took them has none.)"""
    from conftest import caviar_cli

    spec = slow_spec(write_spec, tmp_path, budget={"num_samples": 2})
    proc = CaviarProcess("run", str(spec), "--storage", "runs", "--name", "r", cwd=tmp_path)
    assert proc.wait() == 0, proc.output
    run_dir = tmp_path / "runs" / "r"
    (run_dir / "ray" / SNAPSHOT).unlink()
    state = max((run_dir / "ray").glob("search_gen_state-*.json"))
    state.write_bytes(state.read_bytes()[:40])
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    out = caviar_cli("resume", str(run_dir), cwd=tmp_path, without_ray=True)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"caviar: error: {state}: cut short (40 bytes; a driver killed while Ray Tune wrote "
        "it), and Ray cannot resume the sweep without it. What the sweep recorded is in "
        f"{run_dir} (caviar results {run_dir}); run it again under another --name"
    )
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before


def test_resume_of_something_that_is_not_a_run_dir_is_refused(tmp_path):
    from conftest import caviar_cli

    out = caviar_cli("resume", str(tmp_path), without_ray=True)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"caviar: error: {tmp_path}: not a caviar run directory (no spec.yaml); pass the "
        "directory `caviar run` printed"
    )
    out = caviar_cli("resume", str(tmp_path / "typo"), without_ray=True)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"caviar: error: {tmp_path / 'typo'}: no such directory; pass the run directory that "
        "`caviar run` printed"
    )


def test_killing_a_worker_nodes_raylet_loses_no_trial(write_spec, tmp_path, local_cluster_module):
    """kill -9 a worker node's raylet mid-sweep: its trials fail, restart on the surviving
    node from their latest checkpoints, and every trial finishes."""
    n = 4
    spec = slow_spec(
        write_spec, tmp_path, scheduler={"name": "fifo"}, budget={"num_samples": n}, max_failures=3
    )
    run_dir = tmp_path / "runs" / "r"
    cluster = local_cluster_module.LocalCluster(num_workers=2, cpus_per_node=1, head_cpus=0)
    cluster.start()
    try:
        nodes = cluster.wait_for_nodes(3)
        doomed = next(x["NodeID"] for x in nodes if "/worker-1/" in x["RayletSocketName"])
        proc = CaviarProcess(
            *("run", str(spec), "--storage", str(run_dir.parent), "--name", "r"),
            *("--address", cluster.address),
            cwd=tmp_path,
            env=cluster.client_env(),
        )
        wait_until(proc, lambda: on_node(run_dir, doomed), "a trial 2 epochs into worker-1")
        victims = on_node(run_dir, doomed)
        os.kill(cluster.raylet_pid("worker-1"), signal.SIGKILL)
        assert proc.wait() == 0, proc.output
    finally:
        cluster.stop()
    trials, history = check_complete(run_dir, n, max_epochs=8)
    assert (trials["node_id"] != doomed).all()  # every trial ended on the surviving node
    for trial_id in victims:
        restarted = history[(history["trial_id"] == trial_id) & (history["start"] > 0)]
        assert len(restarted), trial_id  # went on from a checkpoint, not from epoch 0


def on_node(run_dir: Path, node_id: str) -> set[str]:
    """Trials whose latest report, at epoch 2 or later, came from node `node_id`."""
    found = set()
    for path in run_dir.glob("ray/*/result.json"):
        lines = path.read_text().splitlines()
        last = json.loads(lines[-1]) if lines else {}
        if last.get("node_id") == node_id and last.get("epoch", 0) >= 2:
            found.add(path.parent.name)
    return found


def test_a_trial_out_of_memory_fails_alone(write_spec, tmp_path, private_ray_tmp):
    """A trial allocates past a memory limit set inside it (RLIMIT_AS: 1 GiB above what its
    process maps) at epoch 2: it ends in error as OutOfMemoryError; the others complete."""
    (tmp_path / "hungry.py").write_text(
        textwrap.dedent("""
        import resource
        import torch
        import caviar

        def train(config):
            for epoch in range(1, 4):
                if config["x"] >= 0.5 and epoch == 2:
                    with open("/proc/self/statm") as f:
                        mapped = int(f.read().split()[0]) * resource.getpagesize()
                    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
                    resource.setrlimit(resource.RLIMIT_AS, (mapped + 2**30, hard))
                    try:
                        torch.ones(2**32, dtype=torch.uint8)  # 4 GiB
                    finally:
                        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
                caviar.report({"epoch": epoch, "score": config["x"]})
        """)
    )
    spec = write_spec(
        {
            "metric": "score",
            "train": {"function": "hungry:train", "max_epochs": 3},
            "space": {"x": {"uniform": [0, 1]}},
            "scheduler": {"name": "fifo"},
            "budget": {"num_samples": 8},
        }
    )
    proc = CaviarProcess("run", str(spec), "--storage", "runs", "--name", "r", cwd=tmp_path)
    assert proc.wait() == 0, proc.output
    trials = load_trials(tmp_path / "runs" / "r").set_index("trial_id")
    hungry = trials["param_x"] >= 0.5
    assert hungry.any() and (~hungry).any()
    assert (trials.loc[hungry, "status"] == "error").all()
    assert (trials.loc[hungry, "error_type"] == "OutOfMemoryError").all()
    assert trials.loc[hungry, "error"].str.contains("the trial ran out of CPU memory").all()
    assert (trials.loc[hungry, "epochs"] == 1).all()
    assert (trials.loc[~hungry, "status"] == "completed").all()
    assert "(OutOfMemoryError)" in proc.output  # the progress line says why


def test_caviars_scheduler_keeps_its_measurements_across_an_interrupt(
    write_spec, tmp_path, private_ray_tmp
):
    n = 12
    spec = slow_spec(
        write_spec,
        tmp_path,
        scheduler={"name": "caviar", "min_pairs": 3},
        searcher={"name": "random"},
        budget={"num_samples": n, "max_concurrent": 2},
        train={"function": "slow:train", "max_epochs": 9, "fixed": {"sleep": 0.2}},
    )
    run_dir = tmp_path / "runs" / "r"
    proc = start_run(spec, run_dir)
    wait_for_reports(proc, run_dir, 40)
    proc.popen.send_signal(signal.SIGINT)
    assert proc.wait() == 130, proc.output
    before = pd.read_parquet(run_dir / "audit.parquet")
    proc = CaviarProcess("resume", str(run_dir), cwd=tmp_path)
    assert proc.wait() == 0, proc.output
    trials, _ = check_complete(run_dir, n, max_epochs=9)
    after = pd.read_parquet(run_dir / "audit.parquet")
    # The resumed rule went on from what it had measured: every trial reached rung 1 once.
    assert after.loc[0, "reached"] == n and after.loc[0, "reached"] >= before.loc[0, "reached"]
    assert (after["stopped"] >= before["stopped"]).all()
    assert after["stopped"].sum() == (trials["status"] == "early_stopped").sum()


def test_a_pbt_sweep_killed_and_resumed_completes_every_trial(
    write_spec, tmp_path, private_ray_tmp
):
    """The resumed sweep's checkpoint records name checkpoints the killed driver deleted after
    its last snapshot: an exploit, registering its copy, then tried to delete one of those and
    the whole sweep failed (FileNotFoundError out of Ray's checkpoint manager)."""
    n, epochs = 6, 16
    spec = slow_spec(
        write_spec,
        tmp_path,
        scheduler={"name": "pbt", "perturbation_interval": 2},
        searcher={"name": "random"},
        budget={"num_samples": n},
        train={"function": "slow:train", "max_epochs": epochs, "fixed": {"sleep": 0.25}},
    )
    run_dir = tmp_path / "runs" / "r"
    proc = start_run(spec, run_dir)
    wait_for_reports(proc, run_dir, 30)
    wait_until(proc, lambda: recorded_mid_training(run_dir, epochs), "a snapshot mid-training")
    wait_for_reports(proc, run_dir, 8)  # checkpoints made (and old ones deleted) after it
    proc.kill()
    proc = CaviarProcess("resume", str(run_dir), cwd=tmp_path)
    assert proc.wait() == 0, proc.output
    trials, history = load_trials(run_dir), load_history(run_dir)
    assert len(trials) == n and (trials["status"] == "completed").all(), trials
    assert (history.groupby("trial_id")["epoch"].max() == epochs).all()
    assert not history.duplicated(["trial_id", "epoch"]).any()


def test_a_hyperband_sweep_killed_and_resumed_completes(write_spec, tmp_path, private_ray_tmp):
    """Ray's HyperBand saves no state: resumed, its brackets start again and the sweep adds
    every trial to them, the finished ones too, which never reach a milestone again; the other
    trials waited paused for them for ever (a hung resume)."""
    n, epochs = 12, 16
    spec = slow_spec(
        write_spec,
        tmp_path,
        scheduler={"name": "hyperband"},
        searcher={"name": "random"},
        budget={"num_samples": n},
        train={"function": "slow:train", "max_epochs": epochs, "fixed": {"sleep": 0.25}},
    )
    run_dir = tmp_path / "runs" / "r"
    proc = start_run(spec, run_dir)
    wait_until(proc, lambda: "early_stopped at epoch" in proc.output, "a trial stopped")
    wait_until(proc, lambda: recorded_mid_training(run_dir, epochs), "a snapshot mid-training")
    proc.kill()
    proc = CaviarProcess("resume", str(run_dir), cwd=tmp_path)
    assert proc.wait() == 0, proc.output
    trials, history = load_trials(run_dir), load_history(run_dir)
    assert len(trials) == n and set(trials["status"]) == {"completed", "early_stopped"}
    assert len(history) == trials["epochs"].sum()
    assert not history.duplicated(["trial_id", "epoch"]).any()


def test_a_fused_sweep_killed_and_resumed_keeps_every_member_as_if_trained_alone(
    write_spec, tmp_path, private_ray_tmp
):
    """Fused trials (4 per group) under ASHA, some diverging: kill -9 the driver mid-sweep,
    resume. Every member is a trial once, with every epoch once; members caught mid-sweep go
    on from their checkpoints; each member's history is what its configuration gives alone.
    (Alone and fused differ by float rounding, 1e-7 an epoch; some configurations amplify it
    past 1e-5 after six epochs or so, hence four.)"""
    import functools

    from caviar import session
    from caviar.train.data import load
    from caviar.train.loop import train

    n, epochs = 16, 4
    spec = write_spec(
        {
            "train": {
                "task": "mnist1d",
                "model": "mlp",
                "max_epochs": epochs,
                "fixed": {"optimizer": "sgd", "momentum": 0.9},
            },
            # lr 1e6 diverges within an epoch or two.
            "space": {"lr": {"choice": [0.03, 0.1, 1e6]}, "hidden": {"randint": [32, 96]}},
            "searcher": {"name": "random"},
            "budget": {"num_samples": n},
            "resources": {"cpu": 1, "fuse": 4},
        }
    )
    run_dir = tmp_path / "runs" / "r"
    proc = start_run(spec, run_dir)
    wait_until(proc, lambda: recorded_mid_training(run_dir, epochs), "a member saved mid-sweep")
    proc.kill()
    assert "fused groups" in proc.output
    proc = CaviarProcess("resume", str(run_dir), cwd=tmp_path)
    assert proc.wait() == 0, proc.output

    trials, history = load_trials(run_dir), load_history(run_dir)
    assert len(trials) == n and trials["trial_id"].is_unique
    statuses = set(trials["status"])
    assert {"early_stopped", "diverged"} <= statuses <= {"completed", "early_stopped", "diverged"}
    assert (trials["status"] == "diverged").eq(trials["param_lr"] == 1e6).all()
    assert not history.duplicated(["trial_id", "epoch"]).any()
    assert trials.set_index("trial_id")["epochs"].to_dict() == (
        history.groupby("trial_id").size().to_dict()
    )
    restarts = [
        r
        for path in run_dir.glob("ray/*/result.json")
        for r in map(json.loads, path.read_text().splitlines())
        if r["iterations_since_restore"] == 1 and r["epoch"] > 1
    ]
    assert restarts  # members went on from their checkpoints after the kill

    data = load("mnist1d")
    for status in ("completed", "early_stopped", "diverged"):
        row = trials[trials["status"] == status].iloc[0]
        config = {c[len("param_") :]: row[c] for c in trials.columns if c.startswith("param_")}
        config = {k: v.item() if hasattr(v, "item") else v for k, v in config.items()}
        alone = session.run(
            functools.partial(train, data=data, model="mlp"), config, session.Session("val_acc")
        ).results
        mine = history[history["trial_id"] == row["trial_id"]].sort_values("epoch")
        assert len(mine) <= len(alone)
        for column in ("train_loss", "val_loss", "val_acc"):
            expected = [r[column] for r in alone[: len(mine)]]
            assert mine[column].tolist() == pytest.approx(expected, abs=1e-5, nan_ok=True), (
                status,
                column,
            )
