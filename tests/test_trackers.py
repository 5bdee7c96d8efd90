"""`loggers:`: each trial as a run in MLflow, W&B (offline) and TensorBoard, read back with each
tracker's own reader; and the spec's checks of the list (fast lane: no Ray)."""

import os
import re

import pandas as pd
import pytest

from caviar import spec as spec_module
from caviar.errors import SpecError
from caviar.spec import parse_spec, spec_to_dict
from tests.conftest import QUICK_SPEC, caviar_cli


def problems(loggers) -> list[str]:
    with pytest.raises(SpecError) as e:
        parse_spec({**QUICK_SPEC, "loggers": loggers})
    return str(e.value).splitlines()


def test_loggers_are_parsed_and_written_back_as_given():
    spec = parse_spec(
        {**QUICK_SPEC, "loggers": ["tensorboard", {"name": "mlflow", "tracking_uri": "file:/x"}]}
    )
    assert [t.name for t in spec.loggers] == ["tensorboard", "mlflow"]
    assert spec.loggers[1].tracking_uri == "file:/x"
    assert spec_to_dict(spec)["loggers"] == [
        "tensorboard",
        {"name": "mlflow", "tracking_uri": "file:/x"},
    ]
    assert parse_spec(spec_to_dict(spec)) == spec
    assert parse_spec(QUICK_SPEC).loggers == () and "loggers" not in spec_to_dict(
        parse_spec(QUICK_SPEC)
    )


def test_unknown_trackers_and_options_are_refused_in_one_pass():
    assert problems(["mlfow", {"name": "wandb", "tracking_uri": "x"}, "wandb"]) == [
        "loggers: unknown tracker 'mlfow'; did you mean 'mlflow'? (expected a list of "
        "trackers: mlflow, wandb, tensorboard; or {name: mlflow, tracking_uri: ...})",
        "loggers.wandb.tracking_uri: unknown option for tracker 'wandb' (valid options: "
        "name, project)",
        "loggers: tracker 'wandb' named twice; name each tracker once",
    ]
    assert problems([{"name": "mlflow", "tracking_uri": 3}]) == [
        "loggers.mlflow.tracking_uri: expected a string, found 3"
    ]


def test_a_tracker_whose_package_is_missing_is_refused_with_the_pip_command(monkeypatch):
    monkeypatch.setitem(spec_module.TRACKERS, "wandb", ("no_such_module_x", "wandb", ("project",)))
    assert problems(["wandb"]) == [
        "loggers: tracker 'wandb' needs the wandb package, which is not installed; "
        "pip install 'wandb' (or pip install 'caviar[trackers]')"
    ]


@pytest.mark.integration
def test_each_trial_is_a_run_in_mlflow_wandb_and_tensorboard(
    write_spec, tmp_path, ray_head, monkeypatch
):
    """3 trials x 2 epochs, every epoch's metrics and each trial's hyperparameters in each
    tracker's own store, read back with its own reader."""
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    pytest.importorskip("tensorboard")
    path = write_spec(
        {
            "train": {**QUICK_SPEC["train"], "max_epochs": 2},
            "scheduler": {"name": "fifo"},
            "budget": {"num_samples": 3},
            "loggers": ["mlflow", "wandb", "tensorboard"],
        }
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLFLOW_TRACKING_URI", "WANDB_API_KEY", "WANDB_MODE")
    }
    env["WANDB_SILENT"] = "true"
    out = caviar_cli(
        "run", str(path), "--storage", str(tmp_path / "runs"), "--name", "r", cwd=tmp_path, env=env
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # Not a terminal: a line per finished trial, no live display.
    assert "\x1b[" not in out.stdout
    finished = [ln for ln in out.stdout.splitlines() if re.match(r"\[\d/3 ", ln)]
    assert len(finished) == 3 and all(" completed at epoch 2: val_acc=" in ln for ln in finished)
    run_dir = tmp_path / "runs" / "r"
    trials = pd.read_parquet(run_dir / "trials.parquet").set_index("trial_id")
    history = pd.read_parquet(run_dir / "history.parquet")
    assert len(trials) == 3 and set(trials["epochs"]) == {2}

    # MLflow: a file store in the run directory, an experiment named as the sweep.
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient((run_dir / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("t")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3
    for run in runs:
        (trial_id,) = [t for t in trials.index if t in run.data.tags["trial_name"]]
        row = trials.loc[trial_id]
        params = run.data.params
        assert float(params["lr"]) == pytest.approx(row["param_lr"])
        assert int(params["hidden"]) == row["param_hidden"]
        assert params["optimizer"] == "adamw" and params["max_epochs"] == "2"
        assert run.info.status == "FINISHED"
        logged = client.get_metric_history(run.info.run_id, "val_acc")
        mine = history[history.trial_id == trial_id].sort_values("epoch")
        assert [m.step for m in sorted(logged, key=lambda m: m.step)] == [1, 2]
        assert [m.value for m in sorted(logged, key=lambda m: m.step)] == pytest.approx(
            list(mine["val_acc"])
        )

    # W&B, offline: one run per trial under the run directory, its id the trial's.
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert {d.name.rsplit("-", 1)[1] for d in offline} == set(trials.index)
    for d in offline:
        assert list(d.glob("run-*.wandb")), list(d.iterdir())

    # TensorBoard: event files in each trial's directory, every epoch, the hyperparameters.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for trial_id in trials.index:
        acc = EventAccumulator(str(run_dir / "ray" / trial_id))
        acc.Reload()
        scalars = acc.Scalars("ray/tune/val_acc")
        mine = history[history.trial_id == trial_id].sort_values("epoch")
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx(list(mine["val_acc"]), rel=1e-6)
        assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")
