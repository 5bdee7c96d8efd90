"""The importers end to end on real Ray: W&B sweep files in the styles of W&B's docs (random
with log_uniform_values, grid with values, bayes with nested parameters) and a Ray Tune
param_space convert with `caviar import`, validate, and run."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import caviar_cli

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def ok(*args, cwd):
    out = caviar_cli(*args, cwd=cwd)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.mark.parametrize(
    "source, what, train",
    [
        ("wandb", "wandb/random.yaml", "digits"),
        ("wandb", "wandb/grid.yaml", "digits"),
        ("wandb", "wandb/nested.yaml", "train:train"),
        ("tune", "tune/search_space.py:search_space", "digits"),
    ],
)
def test_an_imported_sweep_validates_and_runs(source, what, train, tmp_path, ray_head):
    cwd = EXAMPLES / "wandb" if train == "train:train" else tmp_path  # beside its train.py
    spec_path = tmp_path / "spec.yaml"
    ok("import", source, str(EXAMPLES / what), "--train", train, "-o", str(spec_path), cwd=cwd)
    ok("validate", str(spec_path), cwd=cwd)
    # A smaller sweep than the example's, the same in every other respect.
    spec = yaml.safe_load(spec_path.read_text())
    if spec["searcher"]["name"] != "grid":
        spec["budget"]["num_samples"] = min(spec["budget"]["num_samples"], 4)
    spec["budget"].pop("max_concurrent", None)
    spec["train"]["max_epochs"] = 3
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    storage = tmp_path / "runs"
    ok("run", str(spec_path), "--storage", str(storage), "--name", "r", cwd=cwd)
    trials = pd.read_parquet(storage / "r" / "trials.parquet")
    history = pd.read_parquet(storage / "r" / "history.parquet")
    assert len(trials) == spec["budget"]["num_samples"]
    assert set(trials["status"]) <= {"completed", "early_stopped"}, trials[["status", "error"]]
    assert len(history) == trials["epochs"].sum() > 0
    metric = spec["metric"]
    assert trials[metric].notna().all()
    searched = [k for k, d in spec["space"].items() if "value" not in d]
    assert all(trials[f"param_{k}"].nunique() > 1 for k in searched if k != "hidden")
