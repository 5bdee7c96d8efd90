"""Train functions written only against Ray Tune's public API run unchanged in caviar, on a
real private Ray: every report lands in Parquet, checkpoints restore, and what caviar cannot
record fails the trial with a reason."""

import pandas as pd
import pytest

from tests.conftest import caviar_cli

pytestmark = pytest.mark.integration

RAY_TUNE_TRAIN = """
import os
import tempfile

from ray import tune


def train(config):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "step.txt")) as f:
                start = int(f.read())
    for step in range(start + 1, 6):
        if config["x"] > 0.5 and step == 3 and not checkpoint:
            raise RuntimeError("a node went away")  # once: the retry restores from step 2
        score = config["x"] * step
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "step.txt"), "w") as f:
                f.write(str(step))
            tune.report(
                {"iterations": step, "mean_loss": -score},
                checkpoint=tune.Checkpoint.from_directory(d),
            )
"""

RAY_TRAIN_NO_CHECKPOINT = """
from ray.train import report


def train(config):
    for step in range(4):
        report({"mean_loss": config["x"] + step})
"""


def run(write_spec, tmp_path, module, text, **overrides):
    (tmp_path / f"{module}.py").write_text(text)
    spec = write_spec(
        {
            "metric": "mean_loss",
            "mode": "min",
            "train": {"function": f"{module}:train", "max_epochs": 5},
            "space": {"x": {"choice": [0.2, 0.9]}},
            "searcher": {"name": "grid"},
            "scheduler": {"name": "fifo"},
            "budget": {"num_samples": 2},
            **overrides,
        }
    )
    out = caviar_cli("run", str(spec), "--storage", "runs", "--name", "r", cwd=tmp_path)
    return out, tmp_path / "runs" / "r"


def test_a_ray_tune_function_with_checkpoints_and_a_forced_failure(write_spec, tmp_path, ray_head):
    out, run_dir = run(write_spec, tmp_path, "raytrain", RAY_TUNE_TRAIN, max_failures=1)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    trials = pd.read_parquet(run_dir / "trials.parquet").set_index("param_x")
    history = pd.read_parquet(run_dir / "history.parquet")
    assert list(trials["status"]) == ["completed", "completed"]
    assert list(trials["epochs"]) == [5, 5]
    assert trials.loc[0.9, "best_mean_loss"] == pytest.approx(-4.5)
    # One row per report; the failed trial resumed at step 3 from its step-2 checkpoint.
    assert not history.duplicated(["trial_id", "epoch"]).any() and len(history) == 10
    assert (history["iterations"] == history["epoch"]).all()


def test_ray_train_report_without_checkpoints(write_spec, tmp_path, ray_head):
    out, run_dir = run(
        write_spec,
        tmp_path,
        "raytrain2",
        RAY_TRAIN_NO_CHECKPOINT,
        train={"function": "raytrain2:train", "max_epochs": 4},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    history = pd.read_parquet(run_dir / "history.parquet")
    assert sorted(history["epoch"].unique()) == [1, 2, 3, 4] and len(history) == 8
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert set(trials["status"]) == {"completed"}


@pytest.mark.parametrize(
    "body, message",
    [
        (
            'tune.report({"iterations": 1, "loss": 1.0})',
            "the sweep's metric 'mean_loss' is missing",
        ),
        (
            'tune.report({"mean_loss": "low"})',
            "the sweep's metric 'mean_loss' must be a number, found 'low'",
        ),
        ('tune.report({"mean_loss": None})', "must be a number, found None"),
        ("return None", "returned None without reporting anything"),
    ],
    ids=["missing", "string", "none", "nothing"],
)
def test_what_caviar_cannot_record_fails_with_the_reason(
    write_spec, tmp_path, ray_head, body, message
):
    text = f"from ray import tune\n\n\ndef train(config):\n    {body}\n"
    out, run_dir = run(write_spec, tmp_path, "bad", text)
    assert out.returncode != 0
    assert message in out.stderr + out.stdout
    assert "Traceback" not in out.stderr
