"""Shared fixtures. Tests that start Ray use a private local instance with its own temp dir, or
the `ray start --head` of their test process (`ray_head`)."""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from pathlib import Path

import pytest
import yaml

CAVIAR = [sys.executable, "-m", "caviar.cli"]

# A test still running after this long is stuck (the slowest takes about two minutes here).
# Nothing fails for it: the worker prints what it is waiting on, so that a CI run that hangs
# says where instead of running out its clock silently.
STUCK_AFTER_S = 900
_running: weakref.WeakSet[CaviarProcess] = weakref.WeakSet()
_stuck_out = pytest.StashKey()


def pytest_configure(config: pytest.Config) -> None:
    # stderr as it is before pytest captures a test's output, for the stuck-test report
    config.stash[_stuck_out] = os.fdopen(os.dup(sys.__stderr__.fileno()), "w")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    timer = threading.Timer(STUCK_AFTER_S, _report_stuck, (item, item.config.stash[_stuck_out]))
    timer.daemon = True
    timer.start()
    try:
        return (yield)
    finally:
        timer.cancel()


def _process_tree(root: int) -> str:
    """`ps` of every process below `root`."""
    parents: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    below, todo = [], [root]
    while todo:
        below += (children := [c for p in todo for c in parents.get(p, [])])
        todo = children
    if not below:
        return "(no processes)"
    ps = ["ps", "-ww", "-o", "pid,ppid,stat,etime,args", "-p", ",".join(map(str, below))]
    return subprocess.run(ps, capture_output=True, text=True).stdout


def _report_stuck(item: pytest.Item, out) -> None:
    """Where a stuck test is: its threads' stacks, the processes it started, the tail of the
    output of each `caviar` it runs."""
    print(f"\n=== {item.nodeid} still running after {STUCK_AFTER_S} s ===", file=out)
    print(_process_tree(os.getpid()), file=out)
    for proc in list(_running):
        if proc.popen.poll() is None:
            print(f"--- {proc.out} (pid {proc.popen.pid}), last lines:", file=out)
            print(proc.output[-4000:], file=out)
    out.flush()
    faulthandler.dump_traceback(out, all_threads=True)


def caviar_cli(*args: str, cwd=None, env=None, without_ray: bool = False):
    """Run the `caviar` command as a user would. `without_ray` also checks that the process
    never imported Ray: user errors must be found before any Ray process starts."""
    if without_ray:
        code = (
            "import sys; from caviar.cli import main; rc = main(sys.argv[1:]); "
            "assert 'ray' not in sys.modules, 'ray imported'; sys.exit(rc)"
        )
        command = [sys.executable, "-c", code, *args]
    else:
        command = [*CAVIAR, *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env)


def imported_after(code: str, modules: set[str]) -> set[str]:
    """Which of `modules` a fresh Python process has imported once it has run `code`."""
    probe = f"{code}\nimport sys\nprint(sorted({sorted(modules)!r} & sys.modules.keys()))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return set(eval(out.stdout.strip().splitlines()[-1]))


class CaviarProcess:
    """`caviar ...` running in a session of its own, output to a file: a test can signal it,
    or kill it and every process it started (its embedded Ray), by PID."""

    def __init__(self, *args: str, cwd: Path, env: dict | None = None):
        self.marker = f"{cwd}/{uuid.uuid4().hex}"
        self.out = cwd / f"caviar-{uuid.uuid4().hex[:8]}.out"
        env = {**(env if env is not None else os.environ), "CAVIAR_TEST_PROCESS": self.marker}
        with open(self.out, "w") as out:
            self.popen = subprocess.Popen(
                [*CAVIAR, *args],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _running.add(self)

    @property
    def output(self) -> str:
        return self.out.read_text()

    def wait(self) -> int:
        return self.popen.wait()

    def kill(self) -> None:
        """kill -9 the driver, then whatever it started that is still alive, as if its machine
        had died; return when all are gone."""
        lc = _local_cluster_module()
        self.popen.kill()
        self.popen.wait()
        marker = f"CAVIAR_TEST_PROCESS={self.marker}"
        while left := lc.session_members({self.popen.pid}, marker):
            lc.send_signal(left, signal.SIGKILL)
            time.sleep(0.1)

    def alive(self) -> list[int]:
        """Processes it started that are still alive."""
        marker = f"CAVIAR_TEST_PROCESS={self.marker}"
        return _local_cluster_module().session_members({self.popen.pid}, marker)


@pytest.fixture(autouse=True)
def _fast_lane_imports_no_ray(request: pytest.FixtureRequest):
    """`pytest -m "not integration"` is the fast lane: a test outside the integration lane that
    imports Ray fails, so the lane stays fast and keeps the import boundaries honest."""
    had_ray = "ray" in sys.modules
    yield
    if (
        not had_ray
        and "ray" in sys.modules
        and request.node.get_closest_marker("integration") is None
    ):
        pytest.fail(f"{request.node.nodeid} imported Ray; mark it @pytest.mark.integration")


QUICK_SPEC = {
    "name": "t",
    "metric": "val_acc",
    "mode": "max",
    "train": {"task": "digits", "model": "mlp", "max_epochs": 4, "fixed": {"optimizer": "adamw"}},
    "space": {
        "lr": {"loguniform": [1e-4, 1e-1]},
        "hidden": {"randint": [16, 64]},
        "batch_size": {"choice": [32, 64]},
    },
    "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
    "budget": {"num_samples": 8},
}


@pytest.fixture
def write_spec(tmp_path: Path):
    """Write a spec dict (QUICK_SPEC updated with the given keys) to a YAML file."""

    def write(raw: dict | None = None, text: str | None = None, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(
            text
            if text is not None
            else yaml.safe_dump({**QUICK_SPEC, **(raw or {})}, sort_keys=False)
        )
        return path

    return write


@pytest.fixture
def private_ray_tmp(monkeypatch: pytest.MonkeyPatch):
    """Point Ray at a private temp dir (short, for its Unix sockets), removed afterwards;
    nothing is shared."""
    d = tempfile.mkdtemp(prefix="caviar-ray-", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", d)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def _shared_head():
    """A `ray start --head` of this test process's own (an xdist worker's), with this machine's
    CPUs, its own temp dir and ports; stopped, by PID, when the process's tests are done."""
    cluster = _local_cluster_module().LocalCluster(num_workers=0, head_cpus=os.cpu_count() or 1)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def ray_head(_shared_head, monkeypatch: pytest.MonkeyPatch):
    """Point the test's sweeps (`caviar run`, `caviar.run`) at a running Ray head, shared by the
    tests of this test process one after another, as `ray start --head` users run theirs: each
    sweep connects in about a second instead of starting and stopping a Ray of its own. Tests of
    what the embedded Ray does (kill -9 of a driver and all it started, Ctrl-C, memory limits)
    use `private_ray_tmp`."""
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    for name, value in {**_shared_head.env, "RAY_ADDRESS": _shared_head.address}.items():
        monkeypatch.setenv(name, value)
    return _shared_head


# --- a real multi-node Ray cluster on this machine (cluster/local_cluster.py) ---------------


def _local_cluster_module():
    """`cluster/local_cluster.py`, which is a script beside the package, not part of it."""
    import importlib.util
    import sys

    name = "caviar_local_cluster"
    if name not in sys.modules:
        path = Path(__file__).resolve().parent.parent / "cluster" / "local_cluster.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def local_cluster_module():
    """The `cluster/local_cluster.py` module, for tests that build their own LocalCluster."""
    return _local_cluster_module()


@pytest.fixture
def local_cluster():
    """A real Ray cluster on this machine: a head with 0 CPUs and 2 worker nodes with 1 CPU
    each, token auth on, its own ports and temp dir. Stopped afterwards, and only its own
    processes. Clients need `cluster.client_env()` and `cluster.address`."""
    cluster = _local_cluster_module().LocalCluster(num_workers=2, cpus_per_node=1, head_cpus=0)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


# --- headless Chromium (Debian's; CI installs it) ---------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (CI installs one)"
)


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    """Headless Chromium with a profile of its own, nothing fetched but the page: its output."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)
