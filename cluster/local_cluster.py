"""A real multi-node Ray cluster on this one machine, for development and tests.

A head node plus N worker nodes, each a separate ``ray start ... --block`` process with its own
raylet, on free ports of its own (never Ray's defaults 6379 / 8265 / 52365, so it never collides
with someone else's cluster) and its own temp dir. It stops exactly the processes it started.

    from cluster.local_cluster import LocalCluster

    with LocalCluster(num_workers=2, cpus_per_node=1) as c:
        c.wait_for_nodes(3)
        subprocess.run(["caviar", "run", "sweep.yaml", "--address", c.address],
                       env=c.client_env(), check=True)

    python cluster/local_cluster.py start --workers 2   # prints the address and env to export
    python cluster/local_cluster.py status
    python cluster/local_cluster.py stop

Token authentication in Ray 2.60, as measured here (see cluster/README.md):

- ``ray.init()`` that starts a new local Ray (caviar's embedded default, ``address="local"``)
  turns token auth on when ``RAY_AUTH_MODE`` is unset and, if no token exists, writes a fresh one
  to ``~/.ray/auth_token``. So after any embedded run, the home directory holds a token.
- ``ray start --head`` with ``RAY_AUTH_MODE`` unset turns token auth on exactly when a token
  exists (``RAY_AUTH_TOKEN``, the file named by ``RAY_AUTH_TOKEN_PATH``, or
  ``~/.ray/auth_token``), and otherwise starts without auth (with a warning). Hence "``ray start
  --head`` turns on token auth": it does on any machine where an embedded Ray has run before.
- ``ray start --address ...`` (a worker node) never turns auth on by itself: against a token
  cluster it needs ``RAY_AUTH_MODE=token`` and the token, or its raylet cannot register.
- A driver's ``ray.init(address="HOST:PORT")`` (and ``RAY_ADDRESS``, which caviar's ``--address``
  amounts to) never turns auth on by itself either; only ``address="auto"`` / no address does,
  when a token exists. So a client needs ``RAY_AUTH_MODE=token`` plus the token.
- The token is looked up as ``RAY_AUTH_TOKEN`` (the value), else ``RAY_AUTH_TOKEN_PATH`` (a
  file), else ``~/.ray/auth_token``. Processes a node starts (GCS, raylet, dashboard, task
  workers) inherit its environment.

This module therefore writes its own token to ``<temp_dir>/auth_token`` (mode 0600) and gives
every node and every client ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH=<that file>``, with
``RAY_AUTH_TOKEN`` removed (it would win over the file). The home directory is neither read nor
written. ``auth="disabled"`` sets ``RAY_AUTH_MODE=disabled`` everywhere instead, so a token in
the home directory does not switch auth on behind our back. The dashboard (Jobs API) is kept on
127.0.0.1; with token auth on, HTTP clients send ``Authorization: Bearer <token>`` (Ray's
``JobSubmissionClient`` adds it by itself given the same two variables, per Ray's source). The
dashboard's HTTP server, Jobs API included, needs ``ray[default]``; with ``ray[tune]`` alone the
head runs a minimal dashboard process that serves nothing (`LocalCluster.has_jobs_api`).

Two more facts that shaped this module: nodes started at the same moment in one temp dir race
for the plasma store's socket name (a raylet dies with "bind: Address already in use"), so each
node gets its own temp dir under the cluster's; and Ray rewrites ``127.0.0.1:PORT`` to the
machine's IP, so ``address`` is the head's own record of it (``<head>/ray_current_cluster``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
TOKEN_FILE = "auth_token"
# Unix socket paths are limited to 107 bytes; Ray puts them at
# <node dir>/session_<date>_<time>_<us>_<pid>/sockets/plasma_store (about 75 bytes below root).
MAX_ROOT_LEN = 30
# Variables that would point a child at another cluster or another token.
_SCRUBBED = ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")
# Set in every node process (and inherited by all they spawn): which cluster a process is of.
MARKER_VAR = "CAVIAR_LOCAL_CLUSTER"
# How many times `start` starts a worker node again whose `ray start` exited while it joined.
WORKER_START_RETRIES = 2


@dataclass
class NodeProc:
    """One `ray start --block` process; its pid is also its process group and session id."""

    role: str  # "head" or "worker-<i>"
    pid: int
    start_ticks: int  # /proc/<pid>/stat starttime: tells our process from a reused pid
    log: str


class ClusterError(RuntimeError):
    """The cluster did not start, or did not reach the expected shape."""


# --- processes, by /proc (no psutil in this environment) -------------------------------------


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(process group, session, start time) of a live, non-zombie pid, else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # a zombie is gone for our purposes (its parent reaps it)
        return None
    return int(fields[2]), int(fields[3]), int(fields[19])


def _is_ours(node: NodeProc) -> bool:
    st = _stat(node.pid)
    return st is not None and st[2] == node.start_ticks


def _environ_has(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:
        return False


def session_members(sids: set[int], marker: str) -> list[int]:
    """Live pids in one of the sessions `sids` that carry our `marker` variable.

    Each `ray start` leads a session of its own, and everything it spawns stays in it however
    deep (raylets give each task worker its own process group, not its own session), so the
    session finds them all. The marker, inherited by all of them, guards against pid reuse once
    a session's leader has died."""
    want = marker.encode()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[1] in sids and _environ_has(int(entry), want):
                pids.append(int(entry))
    return pids


def send_signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


# --- ports, env, token ---------------------------------------------------------------------


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def free_ports(n: int, taken: set[int] | None = None) -> list[int]:
    """`n` distinct ports that are free now (held open together, so no two are the same) and
    not in `taken`, to which they are added: a port handed out earlier is free again until the
    process it went to binds it, and the OS may offer it twice."""
    taken = set() if taken is None else taken
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))
            socks.append(s)
            if (port := s.getsockname()[1]) not in taken:
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    taken.update(ports)
    return ports


def _auth_env(auth: str, token_path: Path) -> dict[str, str]:
    if auth == "token":
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)}
    return {"RAY_AUTH_MODE": "disabled"}


def client_env(env: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default os.environ) without other clusters' Ray settings, plus `env`."""
    out = {k: v for k, v in (os.environ if base is None else base).items() if k not in _SCRUBBED}
    out.update(env)
    return out


def _ray_cmd() -> list[str]:
    return [sys.executable, "-m", "ray.scripts.scripts"]


# --- the cluster -------------------------------------------------------------------------------


class LocalCluster:
    """A head plus `num_workers` worker nodes on this machine; a context manager.

    `head_cpus` defaults to 0 so trials run on the workers only (tests can then count nodes);
    `object_store_mb` is per node. `temp_dir=None` makes a fresh one under /tmp; `stop()`
    removes what `start()` wrote there (the dir too, if that empties it) unless
    `keep_temp_dir`, and keeps it all when `start()` fails, for its logs. `auth` is "token"
    (the default, as `ray start --head` would pick on a machine with a token) or "disabled".
    With `stop_at_exit` (the default) the cluster is also stopped when this interpreter exits;
    the CLI's `start` turns that off.
    """

    def __init__(
        self,
        num_workers: int = 2,
        cpus_per_node: int = 1,
        head_cpus: int = 0,
        temp_dir: str | os.PathLike | None = None,
        *,
        object_store_mb: int = 256,
        auth: str = "token",
        keep_temp_dir: bool = False,
        startup_timeout: float = 90.0,
        stop_at_exit: bool = True,
    ):
        if auth not in ("token", "disabled"):
            raise ValueError(f"auth: expected 'token' or 'disabled', got {auth!r}")
        if num_workers < 0:
            raise ValueError(f"num_workers: expected >= 0, got {num_workers}")
        self.num_workers, self.cpus_per_node, self.head_cpus = num_workers, cpus_per_node, head_cpus
        self.object_store_mb, self.auth = object_store_mb, auth
        self.startup_timeout = startup_timeout
        self.keep_temp_dir = keep_temp_dir
        self.stop_at_exit = stop_at_exit
        self.root: Path | None = Path(temp_dir).absolute() if temp_dir is not None else None
        self.nodes: list[NodeProc] = []
        self.address: str = ""
        self.dashboard_url: str = ""
        self.env: dict[str, str] = {}
        self._gcs_port = self._dashboard_port = 0
        self._ports: set[int] = set()  # every port handed to a node of this cluster
        self._popen: dict[int, subprocess.Popen] = {}

    # -- public API --

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def token_path(self) -> Path:
        assert self.root is not None
        return self.root / TOKEN_FILE

    @property
    def token(self) -> str | None:
        return self.token_path.read_text().strip() if self.auth == "token" else None

    @property
    def has_jobs_api(self) -> bool:
        """Whether the head serves the dashboard's HTTP API (Jobs API) at `dashboard_url`.

        That needs `ray[default]` (aiohttp and friends); with plain `ray[tune]` Ray runs only a
        minimal dashboard process with no HTTP server, and `--include-dashboard true` fails."""
        import importlib.util

        return importlib.util.find_spec("aiohttp") is not None

    @property
    def pids(self) -> list[int]:
        """The `ray start` processes (each leads the session holding its node's processes)."""
        return [n.pid for n in self.nodes]

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A full environment for a client process (driver, `caviar`, `ray` CLI, Jobs client)."""
        return client_env(self.env, base)

    def start(self) -> LocalCluster:
        if self.nodes:
            raise ClusterError("already started")
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="caviar-lc-", dir="/tmp"))
        if len(str(self.root)) > MAX_ROOT_LEN:
            raise ValueError(
                f"temp_dir: {str(self.root)!r} is {len(str(self.root))} characters; Ray's unix "
                f"sockets below it need it at most {MAX_ROOT_LEN} (e.g. /tmp/mycluster)"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        if self.auth == "token":
            fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))  # what `ray get-auth-token --generate` makes
        self.env = _auth_env(self.auth, self.token_path)
        if self.stop_at_exit:  # a crashed test or script must not leave a cluster behind
            atexit.register(self.stop)
        try:
            self._start_head()
            for i in range(1, self.num_workers + 1):
                self._start_worker(i)
            self._read_address()
            self._write_state()
            self.wait_for_nodes(
                1 + self.num_workers, self.startup_timeout, restarts=WORKER_START_RETRIES
            )
        except BaseException:
            self.stop(remove_temp_dir=False)  # keep the logs the error points to
            raise
        return self

    def wait_for_nodes(self, n: int, timeout: float = 60.0, *, restarts: int = 0) -> list[dict]:
        """Wait until `n` nodes are alive; return them as `ray.nodes()` entries. A worker node
        whose `ray start` exits meanwhile is started again, `restarts` times in all.

        Asked from a driver subprocess with `client_env()`, so this process never imports Ray
        and the check also proves that a client can connect and authenticate."""
        script = (
            "import json, sys, time, ray\n"
            "ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR')\n"
            "deadline = time.monotonic() + float(sys.argv[3])\n"
            "while True:\n"
            "    alive = [x for x in ray.nodes() if x['Alive']]\n"
            "    if len(alive) >= int(sys.argv[2]) or time.monotonic() > deadline: break\n"
            "    time.sleep(0.5)\n"
            "print('NODES=' + json.dumps(alive, default=str))\n"
        )
        self._check_alive(("head",))
        assert self.root is not None
        out, err = (
            self.root / "logs" / "wait_for_nodes.out",
            self.root / "logs" / "wait_for_nodes.err",
        )
        with open(out, "w") as stdout, open(err, "w") as stderr:
            waiter = subprocess.Popen(
                [sys.executable, "-c", script, self.address, str(n), str(timeout)],
                env=self.client_env(),
                stdout=stdout,
                stderr=stderr,
                text=True,
            )
        deadline = time.monotonic() + timeout + 60
        try:
            while waiter.poll() is None:
                if time.monotonic() > deadline:
                    raise ClusterError(f"no answer from the cluster at {self.address} in time")
                for node in [x for x in self.nodes if x.role != "head" and not _is_ours(x)]:
                    if restarts <= 0:
                        self._check_alive()
                    restarts -= 1
                    self._restart(node)
                time.sleep(0.5)
        finally:
            if waiter.poll() is None:
                waiter.kill()
            waiter.wait()
        lines = [ln for ln in out.read_text().splitlines() if ln.startswith("NODES=")]
        if waiter.returncode != 0 or not lines:
            raise ClusterError(
                f"could not list the nodes of {self.address} (exit {waiter.returncode}):\n"
                f"{err.read_text()[-3000:]}"
            )
        alive = json.loads(lines[-1][len("NODES=") :])
        if len(alive) < n:
            self._check_alive()
            raise ClusterError(
                f"{len(alive)} of {n} nodes alive after {timeout:g}s; logs in {self.root}/logs"
            )
        return alive

    @property
    def marker(self) -> str:
        return f"{MARKER_VAR}={self.root}"

    def alive_pids(self) -> list[int]:
        """Every live process this cluster started: the `ray start`s and all they spawned."""
        return session_members({n.pid for n in self.nodes}, self.marker) if self.nodes else []

    def raylet_pid(self, role: str) -> int:
        """The raylet of node `role` ("head", "worker-<i>"): for fault injection, kill it."""
        node = next(n for n in self.nodes if n.role == role)
        for pid in session_members({node.pid}, self.marker):
            try:
                argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if argv0.endswith(b"/raylet"):
                return pid
        raise ClusterError(f"{role}: no raylet process found")

    def stop(self, timeout: float = 20.0, *, remove_temp_dir: bool | None = None) -> None:
        """Stop our nodes, workers first; only the processes this cluster started.

        SIGTERM to each `ray start --block` lets it take its own processes down; whatever is
        left of its session after `timeout` gets SIGTERM, then SIGKILL. Then what `start`
        wrote to the temp dir is removed unless `keep_temp_dir` (`remove_temp_dir` overrides)."""
        atexit.unregister(self.stop)
        sids = {n.pid for n in self.nodes}
        for role_is_head in (False, True):
            group = [n for n in self.nodes if (n.role == "head") == role_is_head and _is_ours(n)]
            send_signal([n.pid for n in group], signal.SIGTERM)
            self._wait_gone({n.pid for n in group}, timeout)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = session_members(sids, self.marker) if sids else []
            if not left:
                break
            send_signal(left, sig)
            self._wait_gone(sids, 5.0)
        left = session_members(sids, self.marker) if sids else []
        if left:
            raise ClusterError(f"processes still alive after SIGKILL: {left}")
        self.nodes = []
        if self.root is not None:
            remove = not self.keep_temp_dir if remove_temp_dir is None else remove_temp_dir
            if remove:
                self._remove_own_files()
            else:
                (self.root / STATE_FILE).unlink(missing_ok=True)

    def _remove_own_files(self) -> None:
        """Remove what `start` put in the temp dir, and the dir itself if that leaves it empty
        (a `temp_dir` the caller named may hold other things)."""
        assert self.root is not None
        for name in (TOKEN_FILE, STATE_FILE, STATE_FILE + ".tmp"):
            (self.root / name).unlink(missing_ok=True)
        for d in self.root.glob("*"):
            if d.is_dir() and (d.name in ("head", "logs") or d.name.startswith("worker-")):
                shutil.rmtree(d, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.root.rmdir()

    def _wait_gone(self, sids: set[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for p in self._popen.values():
                p.poll()  # reap our own children, so they do not linger as zombies
            if not sids or not session_members(sids, self.marker) or time.monotonic() > deadline:
                return
            time.sleep(0.1)

    # -- internals --

    def _spawn(self, role: str, args: list[str]) -> NodeProc:
        assert self.root is not None
        node_dir = self.root / role
        node_dir.mkdir(exist_ok=True)
        log = self.root / "logs" / f"{role}.out"
        agent_http, agent_grpc, runtime_env, metrics = free_ports(4, self._ports)
        cmd = [
            *_ray_cmd(),
            "start",
            "--block",
            "--disable-usage-stats",
            "--temp-dir",
            str(node_dir),
            "--object-store-memory",
            str(self.object_store_mb * 2**20),
            # Ray's fixed default 52365 would collide between nodes; the rest are pinned too so
            # our own nodes, started back to back, never pick the same one.
            "--dashboard-agent-listen-port",
            str(agent_http),
            "--dashboard-agent-grpc-port",
            str(agent_grpc),
            "--runtime-env-agent-port",
            str(runtime_env),
            "--metrics-export-port",
            str(metrics),
            *args,
        ]
        env = {**client_env(self.env), MARKER_VAR: str(self.root)}
        # The nodes run in this Python environment, as if it were activated: a job's entrypoint
        # (`python -m caviar.cli ...`) must find this interpreter, as on a real cluster it finds
        # the image's.
        bin_dir = os.path.dirname(sys.executable)
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
        with open(log, "w") as out:
            p = subprocess.Popen(
                cmd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.root,
            )
        st = _stat(p.pid)
        node = NodeProc(role, p.pid, st[2] if st else 0, str(log))
        self.nodes.append(node)
        self._popen[p.pid] = p
        self._write_state()  # at once, so `stop` can find it should this process die now
        return node

    def _start_head(self) -> None:
        assert self.root is not None
        self._gcs_port, self._dashboard_port = free_ports(2, self._ports)
        self.dashboard_url = f"http://127.0.0.1:{self._dashboard_port}"
        self._spawn(
            "head",
            [
                "--head",
                "--port",
                str(self._gcs_port),
                "--num-cpus",
                str(self.head_cpus),
                *(["--include-dashboard", "true"] if self.has_jobs_api else []),
                "--dashboard-host",
                "127.0.0.1",
                "--dashboard-port",
                str(self._dashboard_port),
            ],
        )
        # Workers may join as soon as the GCS listens; they wait for the rest of the head.
        self._wait_for(lambda: _listening(self._gcs_port), "the head's GCS to listen")
        self.address = f"127.0.0.1:{self._gcs_port}"

    def _read_address(self) -> None:
        """The GCS address as Ray writes it once the head is up: Ray rewrites 127.0.0.1 to the
        machine's IP, and so must we for the address to match what Ray reports."""
        assert self.root is not None
        address_file = self.root / "head" / "ray_current_cluster"
        self._wait_for(
            lambda: address_file.exists() and address_file.read_text().strip(), "the head"
        )
        self.address = address_file.read_text().strip()

    def _wait_for(self, ready: Callable[[], Any], what: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while not ready():
            self._check_alive(("head",))  # the head's start; workers are checked as they join
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"timed out after {self.startup_timeout:g}s waiting for {what}; "
                    f"logs in {self.root}/logs"
                )
            time.sleep(0.2)

    def _start_worker(self, i: int) -> None:
        self._spawn(
            f"worker-{i}",
            [
                "--address",
                self.address,
                "--num-cpus",
                str(self.cpus_per_node),
            ],
        )

    def _restart(self, node: NodeProc) -> None:
        """Start worker `node`, whose `ray start` exited, again: on a loaded machine a node can
        time out while it registers ("the GCS has become overloaded"). Its log is kept."""
        send_signal(session_members({node.pid}, self.marker), signal.SIGKILL)
        self._wait_gone({node.pid}, 5.0)
        if popen := self._popen.pop(node.pid, None):
            popen.wait()
        self.nodes.remove(node)
        log = Path(node.log)
        kept = log.with_name(f"{log.name}.{len(list(log.parent.glob(log.name + '.*')))}")
        log.replace(kept)
        last = next(reversed(kept.read_text().strip().splitlines()), "(no output)")
        print(
            f"local_cluster: {node.role} exited while starting ({last}); starting it again; "
            f"its log: {kept}",
            file=sys.stderr,
        )
        self._start_worker(int(node.role.split("-")[1]))

    def _check_alive(self, roles: Container[str] | None = None) -> None:
        for n in self.nodes:
            if (roles is None or n.role in roles) and not _is_ours(n):
                tail = Path(n.log).read_text()[-3000:] if Path(n.log).exists() else ""
                raise ClusterError(f"{n.role} (`ray start`, pid {n.pid}) exited:\n{tail}")

    def _write_state(self) -> None:
        assert self.root is not None
        state = {
            "address": self.address,
            "dashboard_url": self.dashboard_url,
            "env": self.env,
            "auth": self.auth,
            "root": str(self.root),
            "keep_temp_dir": self.keep_temp_dir,
            "nodes": [asdict(n) for n in self.nodes],
        }
        tmp = self.root / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.root / STATE_FILE)

    @classmethod
    def from_state(cls, temp_dir: str | os.PathLike) -> LocalCluster:
        """The cluster a `start` (possibly another process) recorded in `temp_dir`."""
        root = Path(temp_dir).absolute()
        state = json.loads((root / STATE_FILE).read_text())
        c = cls(num_workers=len(state["nodes"]) - 1, temp_dir=root, auth=state["auth"])
        c.keep_temp_dir = state.get("keep_temp_dir", False)
        c.address, c.dashboard_url, c.env = state["address"], state["dashboard_url"], state["env"]
        c.nodes = [NodeProc(**n) for n in state["nodes"]]
        return c


# --- command line ------------------------------------------------------------------------------


def _default_root() -> Path:
    return Path(f"/tmp/caviar-cluster-{os.getuid()}")


def _exports(c: LocalCluster) -> Iterator[str]:
    yield f"export RAY_ADDRESS={c.address}"
    for k, v in c.env.items():
        yield f"export {k}={v}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="local_cluster.py", description="A multi-node Ray cluster on this machine."
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    start = sub.add_parser("start", help="start a head and N workers, then return")
    start.add_argument("--workers", type=int, default=2)
    start.add_argument("--cpus", type=int, default=1, help="CPUs per worker node")
    start.add_argument("--head-cpus", type=int, default=0)
    start.add_argument("--object-store-mb", type=int, default=256)
    start.add_argument("--auth", choices=["token", "disabled"], default="token")
    stop = sub.add_parser("stop", help="stop the nodes and remove what start wrote")
    stop.add_argument("--keep-logs", action="store_true", help="keep the temp dir and its logs")
    for p in (start, stop, sub.add_parser("status"), sub.add_parser("env")):
        p.add_argument(
            "--temp-dir",
            default=str(_default_root()),
            help="the cluster's directory (default %(default)s)",
        )
    args = parser.parse_args(argv)
    root = Path(args.temp_dir)

    if args.cmd == "start":
        if (root / STATE_FILE).exists():
            old = LocalCluster.from_state(root)
            if old.alive_pids():
                print(
                    f"a cluster is already running from {root} at {old.address}; "
                    f"`stop --temp-dir {root}` it first",
                    file=sys.stderr,
                )
                return 2
        c = LocalCluster(
            args.workers,
            args.cpus,
            args.head_cpus,
            root,
            object_store_mb=args.object_store_mb,
            auth=args.auth,
            stop_at_exit=False,
        )
        t0 = time.monotonic()
        try:
            c.start()
        except ClusterError as e:
            print(f"local_cluster: {e}", file=sys.stderr)
            return 1
        print(
            f"# {1 + args.workers} nodes up in {time.monotonic() - t0:.1f}s; "
            f"dashboard {c.dashboard_url}; state {root / STATE_FILE}"
        )
        print("\n".join(_exports(c)))
        print(f"# caviar run SPEC --address {c.address}")
        return 0

    if not (root / STATE_FILE).exists():
        print(f"no cluster recorded in {root}", file=sys.stderr)
        return 2 if args.cmd != "stop" else 0
    c = LocalCluster.from_state(root)
    if args.cmd == "env":
        print("\n".join(_exports(c)))
    elif args.cmd == "status":
        pids = c.alive_pids()
        print(
            f"address {c.address}  dashboard {c.dashboard_url}  "
            f"{len([n for n in c.nodes if _is_ours(n)])}/{len(c.nodes)} nodes' "
            f"`ray start` alive, {len(pids)} processes"
        )
    else:
        try:
            c.stop(remove_temp_dir=not args.keep_logs)
        except ClusterError as e:
            print(f"local_cluster: {e}", file=sys.stderr)
            return 1
        print(f"stopped the cluster at {c.address}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
