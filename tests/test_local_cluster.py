"""A sweep on a real multi-node Ray cluster (cluster/local_cluster.py): `caviar run --address`
against `ray start` nodes, trials spread over the worker nodes, and every process stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.integration

# The sleep keeps a trial busy while the other node's actor starts: trials of a few milliseconds
# would all run, one after another, on whichever reused actor came up first.
TRAIN_MODULE = """
import time

import caviar


def train(config):
    for epoch in range(1, config["max_epochs"] + 1):
        time.sleep(0.5)
        caviar.report({"epoch": epoch, "score": config["x"] * epoch}, checkpoint={"epoch": epoch})
"""

SPEC = """
name: cluster-smoke
metric: score
mode: max
train: {function: "mytrain:train", max_epochs: 3}
space:
  x: {uniform: [0, 1]}
scheduler: {name: asha, grace_period: 1, reduction_factor: 2}
budget: {num_samples: 8}
"""


def _caviar() -> list[str]:
    return [sys.executable, "-c", "import sys; from caviar.cli import main; sys.exit(main())"]


def test_sweep_runs_on_a_multi_node_cluster(local_cluster, tmp_path: Path) -> None:
    cluster = local_cluster
    nodes = cluster.wait_for_nodes(3, timeout=60)
    assert len({n["NodeID"] for n in nodes}) == 3
    cpus = sorted(n["Resources"].get("CPU", 0.0) for n in nodes)
    assert cpus == [0.0, 1.0, 1.0]
    started = cluster.alive_pids()
    assert set(cluster.pids) <= set(started)

    (tmp_path / "mytrain.py").write_text(textwrap.dedent(TRAIN_MODULE))
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(SPEC))
    storage = tmp_path / "runs"
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            *_caviar(),
            "run",
            "sweep.yaml",
            "--address",
            cluster.address,
            "--storage",
            str(storage),
            "--name",
            "t",
        ],
        cwd=tmp_path,
        env=cluster.client_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(f"caviar run took {time.monotonic() - t0:.1f}s\n{proc.stdout}", file=sys.stderr)
    assert proc.returncode == 0, proc.stderr[-5000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    assert run_dir == storage / "t"

    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert len(trials) == 8
    assert set(trials["status"]) <= {"completed", "early_stopped"}
    worker_ids = {n["NodeID"] for n in nodes if n["Resources"].get("CPU", 0.0) > 0}
    used = set(trials["node_id"])
    assert used <= worker_ids, "a trial ran on the 0-CPU head"
    assert len(used) >= 2, f"all trials ran on one node: {used}"

    # Every process the cluster started, however deep (task workers included), is gone.
    before = cluster.alive_pids()
    print(f"cluster processes before stop: {sorted(set(started) | set(before))}", file=sys.stderr)
    cluster.stop()
    assert cluster.alive_pids() == []
    left = [pid for pid in set(started) | set(before) if _alive(pid)]
    assert left == [], f"still running: {left}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_stop_leaves_other_processes_alone(local_cluster_module) -> None:
    """A process outside the cluster, though of the same user and machine, survives stop()."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        cluster = local_cluster_module.LocalCluster(num_workers=1, cpus_per_node=1)
        with cluster:
            pids = cluster.alive_pids()
            assert len(pids) >= 4  # ray start, GCS, raylet, ... of the head and one worker
        assert not [p for p in pids if _alive(p)]
        assert bystander.poll() is None
        assert not os.path.exists(cluster.root), "the temp dir it made is removed"
    finally:
        bystander.kill()
        bystander.wait()


def test_a_worker_node_that_exits_while_joining_is_started_again(
    local_cluster_module, monkeypatch, capsys
) -> None:
    """On a loaded machine a worker's `ray start` can give up while it registers ("the GCS has
    become overloaded"); `start` starts it again instead of failing the whole cluster."""
    real, calls = local_cluster_module._ray_cmd(), []

    def ray_cmd() -> list[str]:  # the head, then worker-1 (which exits at once), then the rest
        calls.append(1)
        if len(calls) == 2:
            return [sys.executable, "-c", "import sys; sys.exit('node timed out (simulated)')"]
        return real

    monkeypatch.setattr(local_cluster_module, "_ray_cmd", ray_cmd)
    with local_cluster_module.LocalCluster(num_workers=1, cpus_per_node=1) as cluster:
        assert len(cluster.wait_for_nodes(2, timeout=30)) == 2
        assert len(calls) == 3
        logs = sorted(p.name for p in (cluster.root / "logs").glob("worker-1.out*"))
        assert logs == ["worker-1.out", "worker-1.out.0"]
    err = capsys.readouterr().err
    assert "worker-1 exited while starting (node timed out (simulated)); starting it again" in err


def test_free_ports_never_hands_a_cluster_the_same_port_twice(
    local_cluster_module, monkeypatch
) -> None:
    """A port handed to a node is free again until the node binds it, and the OS may offer it
    once more (seen: a head's dashboard and its dashboard agent both given 51343)."""
    offered = iter([51343, 51343, 51344, 51345])

    class Socket:  # what the OS offers, in order
        def __init__(self, *args: object) -> None:
            self.port = next(offered)

        def bind(self, address: object) -> None:
            pass

        def getsockname(self) -> tuple[str, int]:
            return ("0.0.0.0", self.port)

        def close(self) -> None:
            pass

    monkeypatch.setattr(local_cluster_module.socket, "socket", Socket)
    taken: set[int] = set()
    assert local_cluster_module.free_ports(1, taken) == [51343]
    assert local_cluster_module.free_ports(2, taken) == [51344, 51345]
    assert taken == {51343, 51344, 51345}
