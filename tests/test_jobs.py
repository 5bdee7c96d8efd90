"""`caviar submit` and the job commands: the refusals that need no cluster."""

import pytest

from tests.conftest import caviar_cli


def test_an_unreachable_jobs_api_is_a_user_error(tmp_path):
    out = caviar_cli("jobs", "--address", "http://127.0.0.1:9", cwd=tmp_path)
    assert out.returncode == 2
    assert (
        "caviar: error: --address: cannot reach the Jobs API at 'http://127.0.0.1:9'" in out.stderr
    )


@pytest.mark.parametrize("command", [["jobs"], ["status", "x"], ["logs", "x"], ["stop", "x"]])
def test_the_jobs_api_address_is_required(tmp_path, monkeypatch, command):
    env = {
        k: v
        for k, v in __import__("os").environ.items()
        if k not in ("CAVIAR_JOBS_ADDRESS", "RAY_ADDRESS")
    }
    out = caviar_cli(*command, cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert (
        "--address: the cluster's Jobs API address is needed, e.g. http://HEAD:8265" in out.stderr
    )


def test_submit_needs_storage_every_node_sees(write_spec, tmp_path):
    out = caviar_cli(
        "submit",
        str(write_spec()),
        "--address",
        "http://127.0.0.1:9",
        "--storage",
        "relative/runs",
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert "--storage: a sweep on a cluster needs storage every node sees" in out.stderr


def test_submit_refuses_an_unimportable_train_module_before_contacting_the_cluster(
    write_spec, tmp_path
):
    spec = write_spec(
        {
            "metric": "score",
            "train": {"function": "nosuch:train", "max_epochs": 2},
            "space": {"x": {"uniform": [0, 1]}},
        }
    )
    out = caviar_cli(
        "submit",
        str(spec),
        "--address",
        "http://127.0.0.1:9",
        "--storage",
        "/tmp/runs",
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert "train.function: cannot import 'nosuch:train'" in out.stderr
