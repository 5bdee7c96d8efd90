"""Sweeps as Ray Jobs: submit a spec to a cluster's Jobs API, list, follow, stop.

`submit` ships the spec (and the user's train module and data file when the spec names them)
as the job's working directory and runs ``caviar run`` as the job's driver on the cluster, so
the sweep is exactly what `caviar run --address auto` would do there. The Jobs API address is
the dashboard's, ``http://HEAD:8265``; with token authentication (RAY_AUTH_MODE=token and the
token in RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH) Ray's client sends the token itself.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from caviar.errors import CaviarError
from caviar.spec import SweepSpec, dump_yaml, spec_to_dict

ADDRESS_ENV = "CAVIAR_JOBS_ADDRESS"
METADATA_KEY = "caviar_sweep"


def jobs_address(address: str | None) -> str:
    address = address or os.environ.get(ADDRESS_ENV)
    if not address:
        env = os.environ.get("RAY_ADDRESS", "")
        address = env if env.startswith("http") else None
    if not address:
        raise CaviarError(
            f"--address: the cluster's Jobs API address is needed, e.g. http://HEAD:8265 "
            f"(or set {ADDRESS_ENV})"
        )
    return address


def client(address: str | None) -> Any:
    from ray.job_submission import JobSubmissionClient

    address = jobs_address(address)
    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise CaviarError(
            f"--address: cannot reach the Jobs API at {address!r} ({str(e).splitlines()[0]}); "
            "check that the cluster's dashboard is running and reachable (ray[default] on the "
            "head; `ray dashboard` forwards its port), and with token authentication set "
            "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH"
        ) from None


@contextmanager
def _working_dir(spec: SweepSpec) -> Iterator[Path]:
    """A temporary directory with what the job needs: the resolved spec, the user's train
    module (if it is a local file or package) and the data file of task 'file'."""
    with tempfile.TemporaryDirectory(prefix="caviar-job-") as d:
        wd = Path(d)
        raw = spec_to_dict(spec)
        if spec.train.function:
            from caviar.loader import load_function

            # Imported as `caviar run` would, so a missing module fails here, before submitting.
            load_function(spec.train.function, os.getcwd())
            top = sys.modules[spec.train.function.split(":")[0].split(".")[0]]
            origin = Path(top.__file__ or "").resolve()
            if origin.is_relative_to(Path.cwd()):  # a local module; installed ones stay put
                src = origin.parent if origin.name == "__init__.py" else origin
                copy = shutil.copytree if src.is_dir() else shutil.copy2
                copy(src, wd / src.name)
        if spec.train.data:
            shutil.copy2(spec.train.data, wd / Path(spec.train.data).name)
            raw["train"]["data"] = Path(spec.train.data).name
        (wd / "spec.yaml").write_text(dump_yaml(raw))
        yield wd


def submit(spec: SweepSpec, *, address: str | None, storage: str | None, name: str | None) -> str:
    """Submit the sweep as a Ray job; return its job id."""
    storage = storage or spec.storage
    if not storage or not (storage.startswith(("/", "s3://", "gs://", "file://"))):
        raise CaviarError(
            f"--storage: a sweep on a cluster needs storage every node sees: an absolute path "
            f"on shared storage (NFS) or an s3:// or gs:// URI, found {storage!r}"
        )
    name = name or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    command = [
        "python",
        "-m",
        "caviar.cli",
        "run",
        "spec.yaml",
        "--address",
        "auto",
        "--storage",
        storage,
        "--name",
        name,
    ]
    with _working_dir(spec) as wd:  # local problems (an unimportable module) first
        c = client(address)
        try:
            return c.submit_job(
                entrypoint=shlex.join(command),
                submission_id=f"caviar-{name}",
                runtime_env={"working_dir": str(wd)},
                metadata={METADATA_KEY: spec.name, "run_dir": f"{storage.rstrip('/')}/{name}"},
            )
        except RuntimeError as e:
            raise CaviarError(
                f"submit: the cluster refused the job: {str(e).splitlines()[0]}"
            ) from None


def _job(c: Any, job_id: str) -> Any:
    try:
        return c.get_job_info(job_id)
    except RuntimeError as e:
        if "does not exist" in str(e) or "404" in str(e):
            raise CaviarError(
                f"JOB: no job {job_id!r} on this cluster; `caviar jobs` lists them"
            ) from None
        raise


def list_jobs(address: str | None) -> list[Any]:
    c = client(address)
    return [j for j in c.list_jobs() if (j.metadata or {}).get(METADATA_KEY)]


def status(address: str | None, job_id: str) -> Any:
    return _job(client(address), job_id)


def logs(address: str | None, job_id: str) -> str:
    c = client(address)
    _job(c, job_id)
    return c.get_job_logs(job_id)


def stop(address: str | None, job_id: str) -> bool:
    c = client(address)
    _job(c, job_id)
    return c.stop_job(job_id)


def follow(address: str | None, job_id: str) -> int:
    """Stream the job's output until it ends; return the exit code the sweep would have."""
    c = client(address)
    _job(c, job_id)

    async def tail() -> None:
        async for chunk in c.tail_job_logs(job_id):
            print(chunk, end="", flush=True)

    asyncio.run(tail())
    while not (info := c.get_job_info(job_id)).status.is_terminal():
        time.sleep(1)
    if info.status.value == "SUCCEEDED":
        return 0
    code = getattr(info, "driver_exit_code", None)
    print(
        f"caviar: job {job_id} {info.status.value}: {info.message or ''}".rstrip(), file=sys.stderr
    )
    return 2 if code == 2 else 1
