"""Real sweeps on a private local Ray, run through the `caviar` command as a user would."""

import json
import os
import re
import subprocess
import textwrap

import pandas as pd
import pytest
import yaml

from tests.conftest import CAVIAR, QUICK_SPEC, caviar_cli

pytestmark = pytest.mark.integration


def caviar(*args, cwd):
    out = caviar_cli(*args, cwd=cwd)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def run_sweep(spec_path, tmp_path, ray_head, storage=None):
    storage = storage or str(tmp_path / "runs")
    stdout = caviar("run", str(spec_path), "--storage", storage, "--name", "r", cwd=tmp_path)
    run_dir = tmp_path / "runs" / "r"
    assert stdout.strip().splitlines()[-1] == f"{storage}/r"
    return (
        run_dir,
        pd.read_parquet(run_dir / "trials.parquet"),
        pd.read_parquet(run_dir / "history.parquet"),
    )


def function_spec(write_spec, tmp_path, source, train=None, **spec):
    """A spec whose train function is `source` (the module fn.py in tmp_path): metric score,
    x uniform in [0, 1] unless `spec` says otherwise, and `train`'s keys beside the function."""
    (tmp_path / "fn.py").write_text(textwrap.dedent(source))
    train = {"function": "fn:train", **(train or {})}
    return write_spec(
        {"metric": "score", "space": {"x": {"uniform": [0, 1]}}, "train": train, **spec}
    )


def test_builtin_sweep_with_asha(write_spec, tmp_path, ray_head):
    run_dir, trials, history = run_sweep(write_spec(), tmp_path, ray_head)
    assert len(trials) == 8 and trials["trial_id"].is_unique
    assert set(trials["status"]) <= {"completed", "early_stopped"}
    assert (trials["status"] == "early_stopped").sum() >= 1
    assert (trials["stopped_by_asha"] == (trials["status"] == "early_stopped")).all()
    assert set(trials.loc[trials["status"] == "completed", "epochs"]) == {4}
    assert (trials.loc[trials["status"] == "early_stopped", "epochs"] < 4).all()
    for col in (
        "round",
        "param_lr",
        "param_hidden",
        "param_batch_size",
        "param_optimizer",
        "val_acc",
        "best_val_acc",
        "node_id",
    ):
        assert trials[col].notna().all(), col
    assert trials["param_lr"].between(1e-4, 1e-1).all()
    # history: one row per (trial, epoch), every epoch a trial trained.
    assert not history.duplicated(["trial_id", "epoch"]).any()
    assert len(history) == trials["epochs"].sum()
    assert history.groupby("trial_id")["epoch"].max().to_dict() == dict(
        zip(trials["trial_id"], trials["epochs"], strict=True)
    )
    assert (run_dir / "spec.yaml").exists() and (run_dir / "ray").is_dir()
    # ... and the run is in the storage root's catalog of sweeps.
    catalog = pd.read_parquet(tmp_path / "runs" / "_catalog" / "trials")
    assert list(catalog["sweep"].unique()) == ["r"] and len(catalog) == 8
    board = json.loads(caviar("results", str(run_dir), "--json", "--top", "3", cwd=tmp_path))
    assert len(board) == 3
    assert board[0]["best_val_acc"] == trials["best_val_acc"].max()


def test_reused_actors_leak_no_state_between_trials(write_spec, tmp_path, ray_head):
    # Every trial has the same config, so with actor reuse every trial must give the same
    # numbers: seeds, model and optimizer are rebuilt per trial.
    spec = write_spec(
        {
            "space": {"lr": 0.01, "hidden": 32, "dropout": 0.1},
            "scheduler": {"name": "fifo"},
            "budget": {"num_samples": 4, "max_concurrent": 2},
            "train": {"task": "digits", "max_epochs": 2},
        }
    )
    # Storage given as a URI (as s3:// or gs:// would be), through pyarrow's filesystems.
    storage = f"file://{tmp_path}/runs"
    _, trials, history = run_sweep(spec, tmp_path, ray_head, storage=storage)
    assert list(trials["status"]) == ["completed"] * 4
    per_trial = history.pivot(index="trial_id", columns="epoch", values="val_loss")
    assert (per_trial.nunique() == 1).all(), per_trial


def test_faults_stay_in_their_trial(write_spec, tmp_path, ray_head):
    spec = function_spec(
        write_spec,
        tmp_path,
        """
        import math
        import caviar

        def train(config):
            x = config["x"]
            for epoch in range(1, config["max_epochs"] + 1):
                if x < 0.25:
                    raise ValueError(f"bad x {x}")
                score = math.nan if (x < 0.5 and epoch == 3) else x * epoch
                caviar.report({"epoch": epoch, "score": score}, checkpoint={"epoch": epoch})
    """,
        train={"max_epochs": 4},
        scheduler={"name": "fifo"},
        budget={"num_samples": 12},
    )
    _, trials, history = run_sweep(spec, tmp_path, ray_head)
    x = trials["param_x"]
    expected = (
        pd.Series("completed", index=trials.index).mask(x < 0.5, "diverged").mask(x < 0.25, "error")
    )
    assert (trials["status"] == expected).all(), trials[["param_x", "status"]]
    assert {"error", "diverged", "completed"} <= set(trials["status"])
    errors = trials.loc[trials["status"] == "error", "error"]
    assert errors.str.contains("ValueError: bad x").all()
    assert (trials.loc[trials["status"] == "diverged", "epochs"] == 3).all()
    assert (trials.loc[trials["status"] == "completed", "best_score"] == 4 * x[x >= 0.5]).all()


def test_coarse_to_fine_rounds_and_regions_land_in_parquet(write_spec, tmp_path, ray_head):
    spec = write_spec(
        {
            "searcher": {
                "name": "coarse_to_fine",
                "rounds": 2,
                "inner": "tpe",
                "top_fraction": 0.5,
            },
            "budget": {"num_samples": 8, "max_concurrent": 2},
            "train": {"task": "digits", "max_epochs": 3, "fixed": {"optimizer": "adamw"}},
        }
    )
    run_dir, trials, _ = run_sweep(spec, tmp_path, ray_head)
    assert sorted(trials["round"]) == [0] * 4 + [1] * 4
    for col in ("param_lr", "param_hidden", "param_batch_size"):
        assert trials[col].notna().all()
    regions = pd.read_parquet(run_dir / "regions.parquet")
    assert sorted(regions["round"].unique()) == [0, 1]
    lr = regions[regions["param"] == "lr"].set_index("round")
    assert lr.loc[0, "low"] == 1e-4 and lr.loc[0, "high"] == 1e-1
    assert lr.loc[1, "high"] / lr.loc[1, "low"] < lr.loc[0, "high"] / lr.loc[0, "low"]
    round1 = trials[trials["round"] == 1]
    assert round1["param_lr"].between(lr.loc[1, "low"], lr.loc[1, "high"]).all()


def test_a_function_that_does_not_report_the_metric_stops_the_sweep(write_spec, tmp_path, ray_head):
    spec = function_spec(
        write_spec,
        tmp_path,
        "import caviar\n"
        "def train(config):\n"
        "    for epoch in range(1, 4):\n"
        "        caviar.report({'epoch': epoch, 'accuracy': config['x']})\n",
        train={"max_epochs": 3},
        budget={"num_samples": 40},
    )
    out = caviar_cli(
        "run", str(spec), "--storage", str(tmp_path / "runs"), "--name", "r", cwd=tmp_path
    )
    assert out.returncode == 2
    assert (
        "caviar: error: train.function: the sweep's metric 'score' is missing from the "
        "reported keys ['accuracy', 'epoch']"
    ) in out.stderr
    trials = pd.read_parquet(tmp_path / "runs" / "r" / "trials.parquet")
    assert 1 <= len(trials) <= 4 and "error" in set(trials["status"])
    assert set(trials["status"]) <= {"error", "unfinished"}  # the others were stopped


def test_a_sweep_stopped_by_a_bad_report_resumes_once_the_function_is_fixed(
    write_spec, tmp_path, ray_head
):
    """The stop must not end Ray's searcher for good: resume runs the trials not yet run."""
    spec = function_spec(
        write_spec,
        tmp_path,
        "import os, caviar\n"
        "def train(config):\n"
        "    for epoch in range(1, 3):\n"
        "        fixed = os.path.exists(os.path.join(os.path.dirname(__file__), 'fixed'))\n"
        "        caviar.report({'epoch': epoch, 'score': config['x']} if fixed else {})\n",
        train={"max_epochs": 2},
        scheduler={"name": "fifo"},
        budget={"num_samples": 6, "max_concurrent": 2},
    )
    run_dir = tmp_path / "runs" / "r"
    out = caviar_cli(
        "run", str(spec), "--storage", str(run_dir.parent), "--name", "r", cwd=tmp_path
    )
    assert out.returncode == 2, out.stderr
    assert f"fix the train function, then continue with: caviar resume {run_dir}" in out.stderr
    first = pd.read_parquet(run_dir / "trials.parquet")
    assert 1 <= len(first) <= 2 and set(first.status) <= {"error", "unfinished"}, first.status
    (tmp_path / "fixed").touch()
    out = caviar_cli("resume", str(run_dir), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    trials = pd.read_parquet(run_dir / "trials.parquet").set_index("trial_id")
    assert len(trials) == 6
    errored = first.trial_id[first.status == "error"]
    assert (trials.status[errored] == "error").all()  # Ray does not rerun an errored trial
    assert (trials.status.drop(errored) == "completed").all(), trials.status


def test_results_are_readable_while_the_sweep_runs(write_spec, tmp_path, ray_head):
    import time

    spec = function_spec(
        write_spec,
        tmp_path,
        "import time, caviar\n"
        "def train(config):\n"
        "    for epoch in range(1, config['max_epochs'] + 1):\n"
        "        time.sleep(1.0)\n"
        "        caviar.report({'epoch': epoch, 'score': config['x']})\n",
        train={"max_epochs": 2},
        scheduler={"name": "fifo"},
        budget={"num_samples": 8, "max_concurrent": 2},
    )
    proc = subprocess.Popen(
        [*CAVIAR, "run", str(spec), "--storage", str(tmp_path / "runs"), "--name", "r"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    trials_file = tmp_path / "runs" / "r" / "trials.parquet"
    while proc.poll() is None and not trials_file.exists():
        time.sleep(0.2)
    seen_while_running = proc.poll() is None
    partial = pd.read_parquet(trials_file)
    assert proc.wait() == 0
    assert seen_while_running, "trials.parquet appeared only after the sweep ended"
    assert 1 <= len(partial) < 8
    assert len(pd.read_parquet(trials_file)) == 8


def test_a_trial_that_fails_once_resumes_from_its_checkpoint(write_spec, tmp_path, ray_head):
    spec = function_spec(
        write_spec,
        tmp_path,
        """
        import os
        import caviar

        def train(config):
            state = caviar.get_checkpoint()
            start = state["epoch"] if state else 0
            for epoch in range(start + 1, config["max_epochs"] + 1):
                marker = os.path.join(config["dir"], f"failed-{config['x']:.6f}")
                if config["x"] < 0.5 and epoch == 2 and not os.path.exists(marker):
                    open(marker, "w").close()
                    raise RuntimeError("transient fault")  # once: the restart succeeds
                if config["x"] >= 0.9:
                    raise RuntimeError("permanent fault")  # every time
                caviar.report({"epoch": epoch, "score": config["x"], "start": start},
                              checkpoint={"epoch": epoch})
    """,
        train={"max_epochs": 3, "fixed": {"dir": str(tmp_path)}},
        scheduler={"name": "fifo"},
        budget={"num_samples": 10},
        max_failures=2,
    )
    _, trials, history = run_sweep(spec, tmp_path, ray_head)
    x = trials.set_index("trial_id")["param_x"]
    permanent = x[x >= 0.9].index
    flaky = x[x < 0.5].index
    assert len(flaky) and len(permanent)
    assert (trials.set_index("trial_id").loc[permanent, "status"] == "error").all()
    assert (
        trials.set_index("trial_id").loc[permanent, "error"].str.contains("permanent fault").all()
    )
    healthy = trials[trials["param_x"] < 0.9]
    assert (healthy["status"] == "completed").all() and (healthy["epochs"] == 3).all()
    # A flaky trial's epochs after the fault were trained by the restarted trial, which began
    # from the epoch-1 checkpoint, not from epoch 0; and no epoch appears twice.
    restarted = history[history["trial_id"].isin(flaky)].set_index(["trial_id", "epoch"])["start"]
    assert (restarted.xs(3, level="epoch") == 1).all()
    assert not history.duplicated(["trial_id", "epoch"]).any()


def test_a_name_that_escapes_the_storage_root_is_refused(write_spec, tmp_path):
    out = caviar_cli(
        "run",
        str(write_spec()),
        "--storage",
        str(tmp_path / "r"),
        "--name",
        "../outside",
        cwd=tmp_path,
        without_ray=True,
    )
    assert out.returncode == 2
    assert (
        "caviar: error: --name: expected a plain directory name, found '../outside'" in out.stderr
    )
    assert not (tmp_path / "outside").exists()


def test_a_run_into_a_used_run_dir_is_refused(write_spec, tmp_path):
    used = tmp_path / "runs" / "r"
    used.mkdir(parents=True)
    (used / "trials.parquet").write_bytes(b"from an earlier sweep")
    out = caviar_cli(
        *("run", str(write_spec()), "--storage", str(tmp_path / "runs"), "--name", "r"),
        cwd=tmp_path,
        without_ray=True,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"caviar: error: {used}: already exists and is not empty; pass another --name (two "
        f"sweeps never share a run directory), or continue it with: caviar resume {used}"
    )
    assert [p.name for p in used.iterdir()] == ["trials.parquet"]
    assert (used / "trials.parquet").read_bytes() == b"from an earlier sweep"


HANGS_AFTER_TWO_EPOCHS = """
import threading

import caviar


def train(config):
    for epoch in (1, 2, 3):
        if config["x"] > 0.5 and epoch == 3:
            threading.Event().wait()  # a deadlock: never reports again
        caviar.report({"epoch": epoch, "score": config["x"]})
"""


def test_a_hung_trial_is_stopped_by_the_watchdog_and_the_sweep_goes_on(
    write_spec, tmp_path, ray_head
):
    spec = function_spec(
        write_spec,
        tmp_path,
        HANGS_AFTER_TWO_EPOCHS,
        train={"max_epochs": 3},
        space={"x": {"choice": [0.1, 0.9, 0.2]}},
        searcher={"name": "grid"},
        scheduler={"name": "fifo"},
        budget={"num_samples": 3, "max_concurrent": 3},
        watchdog={"factor": 10, "min_s": 3},
    )
    _, trials, history = run_sweep(spec, tmp_path, ray_head)
    by_x = trials.set_index("param_x")
    assert by_x.loc[0.9, "status"] == "error" and by_x.loc[0.9, "error_type"] == "TrialHung"
    assert "no report for" in by_x.loc[0.9, "error"] and by_x.loc[0.9, "epochs"] == 2
    assert list(by_x.loc[[0.1, 0.2], "status"]) == ["completed", "completed"]
    assert len(history) == 3 + 3 + 2


@pytest.mark.parametrize("scheduler", ["caviar", "asha", "hyperband", "median", "pbt", "fifo"])
def test_each_named_scheduler_runs_a_real_sweep(write_spec, tmp_path, ray_head, scheduler):
    spec = write_spec({"scheduler": {"name": scheduler}, "budget": {"num_samples": 6}})
    run_dir, trials, history = run_sweep(spec, tmp_path, ray_head)
    assert len(trials) == 6 and set(trials["status"]) <= {"completed", "early_stopped"}
    assert (
        len(history) == trials["epochs"].sum()
        and not history.duplicated(["trial_id", "epoch"]).any()
    )
    if scheduler in ("fifo", "pbt"):  # neither stops a trial
        assert (trials["status"] == "completed").all()
    assert (trials["stopped_by_scheduler"] <= (trials["status"] == "early_stopped")).all()
    assert (run_dir / "audit.parquet").exists() == (scheduler == "caviar")


CARRIES_ITS_WEIGHTS = """
import caviar


def train(config):
    # `owner`: the x of the trial whose weights these are (PBT copies them with a checkpoint).
    state = caviar.get_checkpoint() or {"epoch": 0, "w": 0.0, "owner": config["x"]}
    w = state["w"]
    for epoch in range(state["epoch"] + 1, config["max_epochs"] + 1):
        w += config["x"]
        metrics = {"epoch": epoch, "score": w, "owner": state["owner"]}
        caviar.report(metrics, checkpoint={**metrics, "w": w})
"""


def weights_spec(write_spec, tmp_path, scheduler: dict, epochs: int, **spec):
    """CARRIES_ITS_WEIGHTS under `scheduler` with random search, and `spec`'s other keys."""
    return function_spec(
        write_spec,
        tmp_path,
        CARRIES_ITS_WEIGHTS,
        train={"max_epochs": epochs},
        searcher={"name": "random"},
        scheduler=scheduler,
        **spec,
    )


def test_pbt_with_more_trials_than_slots_copies_weights_and_loses_no_trial(
    write_spec, tmp_path, ray_head
):
    """Paused trials wait for a slot while the trials they copy go on: each gets a copy of its
    own of the checkpoint it exploits (Ray's pointer was deleted under it: FileNotFoundError),
    and a trial's last epoch ends it (copied, it left the other trial nothing to train)."""
    pbt = {"name": "pbt", "perturbation_interval": 2}
    spec = weights_spec(
        write_spec, tmp_path, pbt, 16, budget={"num_samples": 8, "max_concurrent": 2}
    )
    _, trials, history = run_sweep(spec, tmp_path, ray_head)
    table = trials[["trial_id", "status", "epochs", "error"]].to_string()
    assert list(trials["status"]) == ["completed"] * 8 and (trials["epochs"] == 16).all(), table
    assert not history.duplicated(["trial_id", "epoch"]).any()
    assert (history.groupby("trial_id")["epoch"].max() == 16).all()
    history = history.sort_values(["trial_id", "epoch"])
    first = history.groupby("trial_id")["owner"].transform("first")
    assert (history["owner"] != first).any(), "no trial went on from another's weights"


def test_hyperband_with_fewer_slots_than_a_bracket_fills_it_and_stops_trials(
    write_spec, tmp_path, ray_head
):
    """Ray's limit on the trials started counts paused ones: at the slots the cluster has (one
    here), HyperBand's brackets never filled, and it stopped nothing. Trials it stops while
    they are paused count as stopped by the scheduler too."""
    spec = weights_spec(
        write_spec,
        tmp_path,
        {"name": "hyperband"},
        9,
        budget={"num_samples": 12},
        resources={"cpu": os.cpu_count()},  # one trial at a time
    )
    _, trials, history = run_sweep(spec, tmp_path, ray_head)
    stopped = trials["status"] == "early_stopped"
    assert stopped.sum() >= 4 and (trials.loc[~stopped, "status"] == "completed").all()
    assert (trials["stopped_by_scheduler"] == stopped).all()
    assert len(history) == trials["epochs"].sum()
    assert not history.duplicated(["trial_id", "epoch"]).any()


def test_a_time_budget_ends_the_sweep_and_says_so(write_spec, tmp_path, ray_head):
    source = """
    import time
    import caviar

    def train(config):
        for epoch in range(1, config["max_epochs"] + 1):
            time.sleep(0.3)
            caviar.report({"epoch": epoch, "score": config["x"]})
    """
    spec = function_spec(
        write_spec,
        tmp_path,
        source,
        train={"max_epochs": 20},  # 6 s a trial, one at a time: 36 s for the six
        scheduler={"name": "fifo"},
        budget={"num_samples": 6, "time_budget_s": 3},
        resources={"cpu": os.cpu_count()},
    )
    out = caviar_cli("run", str(spec), "--storage", str(tmp_path / "runs"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "caviar: budget.time_budget_s (3 s) ended the sweep: the trials running then" in (
        out.stderr
    )
    (run_dir,) = (tmp_path / "runs").glob("*-*")
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert len(trials) < 6 and not (trials["status"] == "completed").any()
    assert f"and {6 - len(trials)} of its 6 never started" in out.stderr


def test_a_warm_started_sweep_learns_from_an_earlier_one(write_spec, tmp_path, ray_head):
    first = write_spec({"budget": {"num_samples": 4}}, name="first.yaml")
    first_dir, _, _ = run_sweep(first, tmp_path, ray_head)
    second = write_spec(
        {
            "budget": {"num_samples": 3},
            "searcher": {"name": "tpe", "n_startup": 2, "warm_start": [str(first_dir)]},
        },
        name="second.yaml",
    )
    out = caviar(
        "run", str(second), "--storage", str(tmp_path / "runs"), "--name", "r2", cwd=tmp_path
    )
    assert "caviar: warm start: 4 trials from 1 earlier sweep(s); 0 outside this space" in out
    assert len(pd.read_parquet(tmp_path / "runs" / "r2" / "trials.parquet")) == 3


@pytest.mark.parametrize("searcher", ["tpe", "optuna_tpe", "coarse_to_fine"])
def test_a_conditional_space_runs_and_its_inactive_parameters_are_null(
    write_spec, tmp_path, ray_head, searcher
):
    spec = write_spec(
        {
            "space": {
                "lr": {"loguniform": [1e-3, 1e-1]},
                "optimizer": {
                    "choice": [
                        {"name": "sgd", "momentum": {"one_minus_loguniform": [0.8, 0.99]}},
                        {"name": "adamw", "beta2": {"uniform": [0.9, 0.999]}},
                    ]
                },
            },
            "train": {"task": "digits", "max_epochs": 2},
            "searcher": {"name": searcher}
            if searcher != "coarse_to_fine"
            else {"name": searcher, "rounds": 2},
            "scheduler": {"name": "fifo"},
            "budget": {"num_samples": 8},
        }
    )
    run_dir, trials, _ = run_sweep(spec, tmp_path, ray_head)
    sgd = trials["param_optimizer"] == "sgd"
    assert sgd.any() and (~sgd).any()
    assert trials.loc[sgd, "param_momentum"].notna().all()
    assert trials.loc[sgd, "param_beta2"].isna().all()
    assert trials.loc[~sgd, "param_beta2"].notna().all()
    assert trials.loc[~sgd, "param_momentum"].isna().all()
    # The analysis and the report take the nulls in their stride.
    caviar("report", str(run_dir), "--out", str(tmp_path / "report.html"), cwd=tmp_path)
    assert "momentum" in (tmp_path / "report.html").read_text()


def test_fused_trials_under_the_default_scheduler_and_searcher(tmp_path, ray_head):
    """caviar's scheduler and TPE (random for its first 20), 8 trials on each 2 CPUs, as
    two groups of 4 members (one per CPU): two shapes (batch sizes), so members of one shape
    share groups as they come and go."""
    raw = {key: value for key, value in QUICK_SPEC.items() if key != "scheduler"}
    raw["train"] = {**raw["train"], "fixed": {"optimizer": "adamw", "hidden": 32}}
    raw["space"] = {
        "lr": {"loguniform": [1e-4, 1e-1]},
        "weight_decay": {"loguniform": [1e-6, 1e-1]},
        "batch_size": {"choice": [32, 64]},
    }
    raw |= {"budget": {"num_samples": 24}, "resources": {"cpu": 2, "fuse": 8}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    out = caviar("validate", "spec.yaml", cwd=tmp_path)
    assert "with tpe, scheduler caviar" in out, out
    assert (
        "up to 8 trials of one shape train together on each share of cpu 2, gpu 0 (as 2 "
        "groups of up to 4, cpu 1 each)"
    ) in out, out
    out = caviar("run", "spec.yaml", "--storage", "runs", "--name", "r", cwd=tmp_path)
    at_a_time, groups, size = map(
        int, re.search(r"(\d+) at a time in up to (\d+) fused groups of (\d+)", out).groups()
    )
    assert size == 4 and at_a_time == 4 * groups, out
    trials = pd.read_parquet(tmp_path / "runs" / "r" / "trials.parquet")
    history = pd.read_parquet(tmp_path / "runs" / "r" / "history.parquet")
    assert len(trials) == 24 and set(trials["status"]) <= {"completed", "early_stopped"}
    assert (trials["status"] == "early_stopped").any()  # members leave their groups early
    assert len(history) == trials["epochs"].sum()
    assert not history.duplicated(["trial_id", "epoch"]).any()
    assert (tmp_path / "runs" / "r" / "audit.parquet").exists()
    # Members of a group report their group's epoch: the same epoch_seconds, to the bit.
    together = history.groupby("epoch_seconds")["trial_id"].nunique()
    assert together.max() >= 2, together
