"""The quickstart sweep on a real multi-node Ray cluster on this machine (a head and two worker
nodes, cluster/local_cluster.py): through the Jobs API with `caviar submit --wait`, and with
`caviar run --address auto`. Each must finish every trial, spread them over both worker
nodes, and leave complete Parquet results; the cluster's processes are stopped afterwards.
The quickstart is cut to 18 trials of at most 9 epochs, to keep CI short; the rest of the spec
is the example's."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import _local_cluster_module, caviar_cli

pytestmark = pytest.mark.integration
QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.yaml"
TRIALS = 18


@pytest.fixture
def quickstart(tmp_path) -> Path:
    spec = yaml.safe_load(QUICKSTART.read_text())
    spec["budget"]["num_samples"] = TRIALS
    spec["train"]["max_epochs"] = 9
    path = tmp_path / "quickstart.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def cluster():
    c = _local_cluster_module().LocalCluster(num_workers=2, cpus_per_node=1, head_cpus=0)
    c.start()
    try:
        c.wait_for_nodes(3, timeout=90)
        yield c
    finally:
        c.stop()
    assert not c.alive_pids()


def caviar(cluster, *args, cwd, **env_vars):
    env = {**cluster.client_env(), "PYTHONUNBUFFERED": "1", **env_vars}
    return caviar_cli(*args, cwd=cwd, env=env)


def check_run(run_dir: Path) -> None:
    trials = pd.read_parquet(run_dir / "trials.parquet")
    history = pd.read_parquet(run_dir / "history.parquet")
    assert len(trials) == TRIALS
    assert set(trials["status"]) <= {"completed", "early_stopped"}
    assert trials["node_id"].nunique() >= 2, trials["node_id"].value_counts()
    assert len(history) == trials["epochs"].sum()
    assert not history.duplicated(["trial_id", "epoch"]).any()


def test_submit_the_quickstart_through_the_jobs_api(cluster, quickstart, tmp_path):
    assert cluster.has_jobs_api
    out = caviar(
        cluster,
        "submit",
        str(quickstart),
        "--address",
        cluster.dashboard_url,
        "--storage",
        str(tmp_path / "runs"),
        "--name",
        "job",
        "--wait",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    job_id = out.stdout.splitlines()[0]
    assert job_id == "caviar-job"
    assert f"[{TRIALS}/{TRIALS}" in out.stdout  # the sweep's progress, streamed
    check_run(tmp_path / "runs" / "job")
    listed = caviar(cluster, "jobs", "--address", cluster.dashboard_url, cwd=tmp_path)
    assert "caviar-job  SUCCEEDED  quickstart" in listed.stdout
    missing = caviar(cluster, "status", "nope", "--address", cluster.dashboard_url, cwd=tmp_path)
    assert missing.returncode == 2 and "no job 'nope' on this cluster" in missing.stderr


def test_run_with_address_auto(cluster, quickstart, tmp_path):
    out = caviar(
        cluster,
        "run",
        str(quickstart),
        "--address",
        "auto",
        "--storage",
        str(tmp_path / "runs"),
        "--name",
        "auto",
        cwd=tmp_path,
        RAY_ADDRESS=cluster.address,
    )  # as on the head node: auto finds the cluster
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    check_run(tmp_path / "runs" / "auto")
