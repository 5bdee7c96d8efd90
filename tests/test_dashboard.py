"""`caviar serve`: the dashboard's names, security, JSON and stop button on synthetic run
directories (fast lane, no Ray), and live on real sweeps in headless Chromium (integration)."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from caviar import results
from caviar.dashboard import data, server
from caviar.storage import Location
from tests.conftest import chromium, needs_chromium

SPEC = {
    "name": "t",
    "metric": "val_acc",
    "mode": "max",
    "train": {"task": "digits", "model": "mlp", "max_epochs": 5},
    "space": {"lr": {"loguniform": [1e-4, 1e-1]}, "hidden": {"choice": [16, 32]}},
    "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
    "budget": {"num_samples": 6},
}


def make_run(root: Path, name: str, epochs: list[int], statuses: dict | None = None) -> Path:
    """A run directory with real Parquet tables: trial i trains epochs[i] epochs, its value
    rising by 0.1 an epoch from 0.1 * i."""
    records = []
    for i, n in enumerate(epochs):
        history = [{"epoch": e, "val_acc": 0.1 * i + 0.1 * e} for e in range(1, n + 1)]
        config = {"lr": 10.0 ** -(i + 1), "hidden": 16 * (1 + i % 2)}
        running = (statuses or {}).get(i) == "unfinished"
        records.append(results.TrialRecord(f"t{i}", config, history, running=running))
    trials, history = results.build_tables(records, "val_acc", "max", SPEC["train"]["max_epochs"])
    loc = Location.of(root / name)
    loc.mkdir()
    text = yaml.safe_dump({**SPEC, "name": name}, sort_keys=False)
    (loc / results.SPEC_FILE).write_text(text)
    results.write_results(loc, trials, history, text)
    return root / name


async def _requests(app, calls):
    from aiohttp.test_utils import TestClient, TestServer

    out = []
    async with TestClient(TestServer(app)) as client:
        for method, path, kwargs in calls:
            r = await client.request(method, path, allow_redirects=False, **kwargs)
            out.append((r.status, await r.read(), r.cookies))
    return out


def request(app, *calls):
    """[(status, body, cookies)] of each (method, path, kwargs) in one client session."""
    return asyncio.run(_requests(app, [(c if len(c) == 3 else (*c, {})) for c in calls]))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    storage = tmp_path / "runs"
    storage.mkdir()
    make_run(storage, "done", [5, 2, 1, 5])
    make_run(storage, "other", [5, 5])
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / results.SPEC_FILE).write_text("name: secret\n")
    return storage


def test_names():
    for ok in ("quickstart-20261123-170612", "a", "x.y_z-1", "sweep 2"):
        assert data.valid_name(ok), ok
    for bad in ("", ".", "..", "../x", "a/b", "/etc", "a\\b", ".hidden", "_catalog", "a\x00b"):
        assert not data.valid_name(bad), bad


def test_run_location_only_direct_children(root: Path):
    loc = Location.of(root)
    assert data.run_location(loc, "done").path == str(root / "done")
    for bad in ("../secret", "..", "nope", str(root.parent / "secret"), "done/ray"):
        with pytest.raises(data.NotFound):
            data.run_location(loc, bad)
    (root / "no-spec").mkdir()
    (root / "link").symlink_to(root.parent / "secret")  # a run directory outside the root
    assert data.sweep_names(loc) == ["done", "other"]
    with pytest.raises(data.NotFound):
        data.run_location(loc, "link")
    assert request(server.make_app(str(root)), ("GET", "/api/sweep/link"))[0][0] == 404


def test_path_traversal_is_refused(root: Path):
    app = server.make_app(str(root))
    paths = [
        "/sweep/..%2Fsecret",
        "/sweep/..%2F..%2Fetc",
        "/sweep/%2Fetc%2Fpasswd",
        "/api/sweep/..%2Fsecret",
        "/api/sweep/%2Fetc",
        "/api/sweep/..",
        "/api/sweep/.hidden",
        "/api/sweep/_catalog",
        "/api/sweep/nope",
        "/api/compare?a=done&b=..%2Fsecret",
        "/api/compare?a=done&b=/etc",
        "/static/..%2Fserver.py",
        "/static/data.py",
        "/sweep/../../etc/passwd",
    ]
    answers = request(app, *[("GET", p) for p in paths])
    for path, (status, body, _) in zip(paths, answers, strict=True):
        assert status in (403, 404), (path, status)
        assert b"secret" not in body and b"root:" not in body, path
    app = server.make_app(str(root))  # an app serves one event loop
    status, _, _ = request(
        app, ("POST", "/api/sweep/..%2Fsecret/stop", {"headers": {"X-Caviar": "1"}})
    )[0]
    assert status == 404


def test_token_required_when_set(root: Path):
    app = server.make_app(str(root), token="s3cret")
    (
        (no, _, _),
        (wrong, _, _),
        (given, _, cookies),
        (cookie, _, _),
        (header, _, _),
        (bearer, _, _),
    ) = request(
        app,
        ("GET", "/api/sweeps"),
        ("GET", "/api/sweeps?token=nope"),
        ("GET", "/?token=s3cret"),
        ("GET", "/api/sweeps"),  # the cookie the first good request set
        ("GET", "/api/sweeps", {"headers": {"X-Caviar-Token": "s3cret"}}),
        ("GET", "/api/sweeps", {"headers": {"Authorization": "Bearer s3cret"}}),
    )
    assert (no, wrong) == (401, 401)
    assert given == 200 and cookies[server.COOKIE].value == "s3cret"
    assert cookies[server.COOKIE]["httponly"] and cookies[server.COOKIE]["samesite"] == "Strict"
    assert (cookie, header, bearer) == (200, 200, 200)
    # Every route is guarded, static files and the stop button too.
    for path in ("/", "/sweep/done", "/static/dashboard.js", "/static/plotly.min.js"):
        assert request(server.make_app(str(root), token="s3cret"), ("GET", path))[0][0] == 401


def test_token_generated_for_other_hosts():
    assert server.resolve_token("127.0.0.1", None) == ""
    assert server.resolve_token("127.0.0.1", "given") == "given"
    generated = server.resolve_token("0.0.0.0", None)
    assert len(generated) >= 24 and generated != server.resolve_token("0.0.0.0", None)
    assert server.url("0.0.0.0", 80, "tok") == "http://127.0.0.1:80/?token=tok"


def test_local_bind_refuses_other_hosts_and_cross_site_posts(root: Path):
    app = server.make_app(str(root))
    (rebound, _, _), (post, _, _) = request(
        app,
        ("GET", "/api/sweeps", {"headers": {"Host": "evil.example:8765"}}),
        ("POST", "/api/sweep/done/stop"),  # no X-Caviar header: a form on another site
    )
    assert (rebound, post) == (403, 403)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=30
        ) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for_url(proc: subprocess.Popen, out: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if m := re.search(r"(http://\S+)", out.read_text()):
            return m.group(1)
        assert proc.poll() is None, out.read_text()
        time.sleep(0.1)
    raise AssertionError(f"caviar serve printed no URL:\n{out.read_text()}")


@pytest.mark.parametrize("taken", [True, False])
def test_serve_on_a_port_it_cannot_have_is_a_user_error(root: Path, taken: bool):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1] if taken else 70000
        proc = subprocess.run(
            [sys.executable, "-m", "caviar.cli", "serve", str(root), "--port", str(port)],
            capture_output=True,
            text=True,
            check=False,
        )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"caviar: error: --port: cannot serve on 127.0.0.1:{port} (")
    assert proc.stderr.endswith("); pass another port\n")


@pytest.mark.parametrize("given", ["run directory", "file"])
def test_serve_of_a_run_directory_or_a_file_says_what_to_serve(root: Path, given: str):
    path = root / "done" if given == "run directory" else root / "done" / results.SPEC_FILE
    proc = subprocess.run(
        [sys.executable, "-m", "caviar.cli", "serve", str(path), "--port", str(free_port())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    want = {
        "run directory": f"caviar: error: {path}: a run directory, not a storage root; the "
        f"dashboard lists the run directories under a root: caviar serve {root}\n",
        "file": f"caviar: error: {path}: a file, not a storage root; pass the folder that "
        "holds the run directories (the --storage of `caviar run`)\n",
    }[given]
    assert proc.stderr == want


def test_serve_on_all_interfaces_prints_and_requires_a_token(root: Path, tmp_path: Path):
    port = free_port()
    out = tmp_path / "serve.out"
    with open(out, "w") as f:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "caviar.cli",
                "serve",
                str(root),
                "--host",
                "0.0.0.0",
                "--port",
                str(port),
            ],
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    try:
        url = wait_for_url(proc, out)
        token = url.split("?token=")[1]
        base = f"http://127.0.0.1:{port}"
        for _ in range(50):  # the URL is printed just before the socket listens
            try:
                status, _ = get(f"{base}/api/sweeps")
                break
            except (ConnectionError, urllib.error.URLError):
                time.sleep(0.1)
        assert status == 401
        status, body = get(f"{base}/api/sweeps?token={token}")
        assert status == 200 and {s["name"] for s in json.loads(body)["sweeps"]} == {
            "done",
            "other",
        }
        assert get(f"{base}/api/sweeps", {"X-Caviar-Token": token})[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def test_json_of_a_finished_sweep(root: Path):
    app = server.make_app(str(root))
    (s1, listing, _), (s2, body, _), (s3, page, _), (s4, js, _) = request(
        app,
        ("GET", "/api/sweeps"),
        ("GET", "/api/sweep/done"),
        ("GET", "/sweep/done"),
        ("GET", "/static/plotly.min.js"),
    )
    assert (s1, s2, s3, s4) == (200, 200, 200, 200)
    assert b"stop" in page and b"/static/plotly.min.js" in page and b"cdn" not in page.lower()
    assert len(js) > 1_000_000  # plotly.js itself, from the installed package
    sweeps = {s["name"]: s for s in json.loads(listing)["sweeps"]}
    assert sweeps["done"]["status"] == "finished"
    assert sweeps["done"]["counts"] == {"completed": 2, "early_stopped": 2}
    assert sweeps["done"]["best"]["trial_id"] == "t3"
    assert sweeps["done"]["best"]["value"] == pytest.approx(0.8)
    d = json.loads(body)
    assert d["status"] == "finished" and d["progress"]["done"] == 4 and not d["progress"]["running"]
    assert d["leaderboard"]["columns"][:4] == ["trial_id", "status", "epochs", "best_val_acc"]
    assert [r[0] for r in d["leaderboard"]["rows"]] == ["t3", "t0", "t1", "t2"]
    points = sum(
        sum(v is not None for v in g["y"]) for g in d["curves"]["groups"] if not g.get("best")
    )
    assert points == 5 + 2 + 1 + 5
    assert d["stopping"]["rungs"] == [1, 2, 4] and d["stopping"]["audit"] is None
    assert {e["param"] for e in d["effects"]} == {"lr", "hidden"}
    assert next(e for e in d["effects"] if e["param"] == "lr")["log"]
    assert d["spec"].startswith("name: done")


def test_etag_answers_an_unchanged_sweep_with_304(root: Path):
    async def go():
        from aiohttp.test_utils import TestClient, TestServer

        async with TestClient(TestServer(server.make_app(str(root)))) as client:
            first = await client.get("/api/sweep/done")
            etag = first.headers["ETag"]
            again = await client.get("/api/sweep/done", headers={"If-None-Match": etag})
            return again.status

    assert asyncio.run(go()) == 304


def test_importance_of_an_ended_sweep(root: Path):
    make_run(root, "eight", [5, 4, 3, 5, 2, 5, 1, 5])
    app = server.make_app(str(root))
    (s1, few, _), (s2, eight, _) = request(
        app, ("GET", "/api/sweep/done/importance"), ("GET", "/api/sweep/eight/importance")
    )
    assert (s1, s2) == (200, 200)
    assert json.loads(few)["importance"] is None and "fewer than 5" in json.loads(few)["reason"]
    assert {r["param"] for r in json.loads(eight)["importance"]} <= {"lr", "hidden"}


def test_compare(root: Path):
    ((status, body, _),) = request(
        server.make_app(str(root)), ("GET", "/api/compare?a=done&b=other")
    )
    d = json.loads(body)
    assert (
        status == 200 and d["a"]["best"]["trial_id"] == "t3" and d["b"]["best"]["trial_id"] == "t1"
    )
    assert d["a"]["best"]["config"]["lr"] == pytest.approx(1e-4)
    assert d["b"]["best"]["curve"]["y"] == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6])


def write_live(run_dir: Path, trial_id: str, epochs: int, status: str | None = None) -> None:
    d = run_dir / "ray" / trial_id
    d.mkdir(parents=True, exist_ok=True)
    config = {"lr": 0.5, "hidden": 32}
    lines = [
        json.dumps({"epoch": e, "val_acc": 0.05 * e, "config": config, "training_iteration": e})
        for e in range(1, epochs + 1)
    ]
    (d / "result.json").write_text("".join(line + "\n" for line in lines))


def test_live_sweep_reads_running_trials_from_ray_files(root: Path, monkeypatch):
    run = make_run(root, "live", [5, 1], statuses={1: "unfinished"})
    me = {"host": platform.node(), "pid": os.getpid()}
    (run / ".caviar-driver.json").write_text(json.dumps(me))
    monkeypatch.setattr(data, "_caviar_alive", lambda pid: True)
    write_live(run, "t1", 3)  # trials.parquet is stale: it says 1 epoch
    write_live(run, "t9", 2)  # not in trials.parquet yet
    state = {
        "trial_data": [
            [json.dumps({"trial_id": t, "status": "RUNNING"}), "{}"] for t in ("t1", "t9")
        ]
    }
    (run / "ray" / "experiment_state-2026.json").write_text(json.dumps(state))
    loc = Location.of(root)
    d = data.sweep_detail(loc, "live")
    assert d["status"] == "running"
    assert {r["trial_id"]: r["epoch"] for r in d["progress"]["running"]} == {"t1": 3, "t9": 2}
    assert d["counts"] == {"completed": 1, "running": 2}
    points = sum(
        sum(v is not None for v in g["y"]) for g in d["curves"]["groups"] if not g.get("best")
    )
    assert points == 5 + 3 + 2
    write_live(run, "t9", 4)  # a new report: the answer follows
    d = data.sweep_detail(loc, "live")
    assert {r["trial_id"]: r["epoch"] for r in d["progress"]["running"]} == {"t1": 3, "t9": 4}
    monkeypatch.setattr(data, "_caviar_alive", lambda pid: False)  # the driver was killed
    d = data.sweep_detail(loc, "live")
    assert d["status"] == "interrupted" and d["counts"] == {"completed": 1, "unfinished": 2}


def test_statuses_of_ended_sweeps(root: Path, tmp_path: Path):
    make_run(root, "cut", [5, 2], statuses={1: "unfinished"})
    (root / "nothing").mkdir()
    (root / "nothing" / results.SPEC_FILE).write_text(yaml.safe_dump(SPEC))
    got = {s["name"]: s["status"] for s in data.sweeps(Location.of(root))}
    expected = {"done": "finished", "other": "finished", "cut": "interrupted"}
    assert got == {**expected, "nothing": "starting"}  # its driver has yet to take the claim
    an_hour_ago = time.time() - 3600
    os.utime(root / "nothing" / results.SPEC_FILE, (an_hour_ago, an_hour_ago))
    got = {s["name"]: s["status"] for s in data.sweeps(Location.of(root))}
    assert got == {**expected, "nothing": "failed"}


def test_stop_button_sends_sigint_to_the_driver(root: Path, tmp_path: Path):
    flag = tmp_path / "got-sigint"
    code = (
        "import signal, sys, time, pathlib\n"
        f"signal.signal(signal.SIGINT, lambda *a: (pathlib.Path({str(flag)!r}).write_text('x'), sys.exit(0)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    # "caviar" in its command line, as rundir's liveness check wants of a driver
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "caviar"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        claim = {"host": platform.node(), "pid": proc.pid}
        (root / "done" / ".caviar-driver.json").write_text(json.dumps(claim))
        app = server.make_app(str(root))
        ((status, body, _),) = request(
            app, ("POST", "/api/sweep/done/stop", {"headers": {"X-Caviar": "1"}})
        )
        assert status == 202 and json.loads(body) == {
            "stopped": True,
            "how": "SIGINT",
            "pid": proc.pid,
        }
        assert proc.wait(10) == 0 and flag.exists()
        app = server.make_app(str(root))
        ((status, body, _),) = request(
            app, ("POST", "/api/sweep/done/stop", {"headers": {"X-Caviar": "1"}})
        )
        assert status == 409 and "gone" in json.loads(body)["reason"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # A driver on another machine with no job id: said, not signalled.
    (root / "done" / ".caviar-driver.json").write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    status, answer = server.stop_sweep(Location.of(root), "done")
    assert status == 409 and "elsewhere" in answer["reason"]


def test_stop_button_stops_a_submitted_sweep_through_jobs(root: Path, monkeypatch):
    from caviar import jobs

    calls = []
    monkeypatch.setattr(
        jobs, "stop", lambda address, job_id: calls.append((address, job_id)) or True
    )
    claim = {"host": "head-node", "pid": 4242, "job_id": "caviar-done"}
    (root / "done" / ".caviar-driver.json").write_text(json.dumps(claim))
    status, answer = server.stop_sweep(Location.of(root), "done", "http://head:8265")
    assert status == 202 and answer == {
        "stopped": True,
        "how": "Ray Jobs API",
        "job_id": "caviar-done",
    }
    assert calls == [("http://head:8265", "caviar-done")]


def test_claim_records_the_ray_job_id(tmp_path: Path, monkeypatch):
    from caviar import rundir

    meta = {"metadata": {"job_submission_id": "caviar-x-1", "caviar_sweep": "x"}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(meta))
    loc = Location.of(tmp_path)
    with rundir.claim(loc):
        assert json.loads((tmp_path / rundir.CLAIM_FILE).read_text())["job_id"] == "caviar-x-1"
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR")
    with rundir.claim(loc):
        assert "job_id" not in json.loads((tmp_path / rundir.CLAIM_FILE).read_text())


# --- integration: real sweeps, `caviar serve` and headless Chromium ---------------------------


SLOW_TRAIN = """
import time
import caviar

def train(config):
    for epoch in range(1, config["max_epochs"] + 1):
        time.sleep(config["sleep"])
        caviar.report({"epoch": epoch, "score": 1 - (config["x"] - 0.3) ** 2 + 0.01 * epoch})
"""


def slow_sweep(write_spec, tmp_path: Path, max_epochs: int, trials: int) -> Path:
    """A spec of `trials` trials of SLOW_TRAIN, 2 at a time, each epoch a second."""
    (tmp_path / "slow.py").write_text(SLOW_TRAIN)
    return write_spec(
        {
            "metric": "score",
            "train": {"function": "slow:train", "max_epochs": max_epochs, "fixed": {"sleep": 1.0}},
            "space": {"x": {"uniform": [0, 1]}},
            "scheduler": {"name": "fifo"},
            "budget": {"num_samples": trials, "max_concurrent": 2},
        }
    )


def page_points(dom: str) -> int:
    """Curve points drawn by plotly in a dumped DOM (its SVG markers)."""
    return dom.count('class="point"')


@pytest.mark.integration
@needs_chromium
def test_live_sweep_in_a_browser_then_stop(write_spec, tmp_path, private_ray_tmp):
    from conftest import CaviarProcess

    from caviar.results import load_trials

    spec = slow_sweep(write_spec, tmp_path, max_epochs=8, trials=4)
    storage = tmp_path / "runs"
    port = free_port()
    env = {**os.environ, "RAY_TMPDIR": str(private_ray_tmp)}
    serve = CaviarProcess("serve", str(storage), "--port", str(port), cwd=tmp_path, env=env)
    sweep = CaviarProcess(
        "run", str(spec), "--storage", str(storage), "--name", "live", cwd=tmp_path, env=env
    )
    procs = [serve, sweep]
    base = f"http://127.0.0.1:{port}"
    try:
        run_dir = storage / "live"

        def detail(name: str = "live") -> dict:
            return json.loads(get(f"{base}/api/sweep/{name}")[1])

        def wait(ready, what: str, proc=sweep, timeout: float = 240):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    if ready():
                        return
                except (OSError, ValueError, KeyError):
                    pass
                assert proc.popen.poll() is None, f"exited before {what}:\n{proc.output}"
                time.sleep(0.3)
            raise AssertionError(f"timed out waiting for {what}:\n{proc.output}")

        wait(
            lambda: any(r["epoch"] >= 1 for r in detail()["progress"]["running"]), "a running trial"
        )
        url = f"{base}/sweep/live"
        profile = tmp_path / "profile"
        first = chromium(["--virtual-time-budget=4000", "--dump-dom", url], profile).stdout
        assert "running" in first and '<button id="stop" type="button">stop sweep' in first
        time.sleep(3)
        second = chromium(["--virtual-time-budget=4000", "--dump-dom", url], profile).stdout
        assert page_points(second) > page_points(first) > 0, (
            page_points(first),
            page_points(second),
        )
        live = detail()
        assert live["status"] == "running"

        assert sweep.wait() == 0, sweep.output
        wait(lambda: detail()["status"] == "finished", "the finished state", proc=serve, timeout=30)
        done = chromium(["--virtual-time-budget=4000", "--dump-dom", url], profile).stdout
        assert "finished" in done and page_points(done) >= 4 * 8
        shot = tmp_path / "shot.png"
        chromium(
            [f"--screenshot={shot}", "--window-size=1200,1600", "--virtual-time-budget=4000", url],
            profile,
        )
        import matplotlib.image

        pixels = matplotlib.image.imread(shot)
        assert pixels.shape[0] > 500 and float(np.std(pixels[..., :3])) > 0.05  # not blank

        # A second sweep, stopped from the dashboard: its trials are kept as unfinished.
        stopped = CaviarProcess(
            "run", str(spec), "--storage", str(storage), "--name", "stopme", cwd=tmp_path, env=env
        )
        procs.append(stopped)
        wait(
            lambda: any(r["epoch"] >= 1 for r in detail("stopme")["progress"]["running"]),
            "stopme running",
            proc=stopped,
        )
        req = urllib.request.Request(
            f"{base}/api/sweep/stopme/stop", method="POST", headers={"X-Caviar": "1"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 202 and json.loads(r.read())["how"] == "SIGINT"
        assert stopped.wait() == 130, stopped.output
        trials = load_trials(storage / "stopme")
        assert "unfinished" in set(trials["status"]), trials[["trial_id", "status"]]
        wait(
            lambda: detail("stopme")["status"] == "interrupted",
            "stopme interrupted",
            proc=serve,
            timeout=30,
        )
        index = chromium(["--virtual-time-budget=4000", "--dump-dom", f"{base}/"], profile).stdout
        assert 'href="/sweep/live"' in index and 'href="/sweep/stopme"' in index
        assert "interrupted" in index and "finished" in index
        compare = f"{base}/compare?a=live&b=stopme"
        both = chromium(["--virtual-time-budget=4000", "--dump-dom", compare], profile).stdout
        best = detail()["best"]["trial_id"]
        assert "<th>live</th>" in both and "<th>stopme</th>" in both and best in both
        assert run_dir.exists()
    finally:
        for p in procs:
            if p.popen.poll() is None:
                p.kill()


@pytest.mark.integration
def test_run_with_its_own_dashboard_serves_while_the_sweep_runs(
    write_spec, tmp_path, private_ray_tmp
):
    from conftest import CaviarProcess

    spec = slow_sweep(write_spec, tmp_path, max_epochs=6, trials=2)
    port = free_port()
    env = {**os.environ, "RAY_TMPDIR": str(private_ray_tmp)}
    sweep = CaviarProcess(
        "run",
        str(spec),
        "--storage",
        "runs",
        "--name",
        "own",
        "--dashboard",
        str(port),
        cwd=tmp_path,
        env=env,
    )
    try:
        status = None
        while status != "running" and sweep.popen.poll() is None:
            try:
                sweeps = json.loads(get(f"http://127.0.0.1:{port}/api/sweeps")[1])["sweeps"]
                status = next((s["status"] for s in sweeps if s["name"] == "own"), None)
            except (ConnectionError, urllib.error.URLError, KeyError):
                pass
            time.sleep(0.2)
        assert status == "running", sweep.output
        assert sweep.wait() == 0, sweep.output
    finally:
        sweep.kill()
    assert f"caviar: dashboard: http://127.0.0.1:{port}/\n" in sweep.output
