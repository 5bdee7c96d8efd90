"""Run directories: naming one, the one-driver claim, and what a killed driver leaves behind."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickletools
import platform
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

from caviar.errors import RunDirError
from caviar.results import RAY_DIR, SPEC_FILE
from caviar.storage import Location

DEFAULT_STORAGE = "caviar_runs"
CLAIM_FILE = ".caviar-driver.json"


def resolve(spec_name: str, storage: str | None, name: str | None) -> Location:
    """`<storage>/<name>`; the name defaults to the spec's name and the time."""
    name = name or f"{spec_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if "/" in name or "\\" in name or name in (".", ".."):
        raise RunDirError(f"--name: expected a plain directory name, found {name!r}")
    return Location.of(storage or DEFAULT_STORAGE) / name


def no_such_directory(loc: Location) -> str:
    return f"{loc.uri}: no such directory; pass the run directory that `caviar run` printed"


def check_new(run_dir: Location) -> None:
    if run_dir.is_nonempty_dir():
        raise RunDirError(
            f"{run_dir.uri}: already exists and is not empty; pass another --name (two sweeps "
            f"never share a run directory), or continue it with: caviar resume {run_dir.uri}"
        )


def open_existing(run_dir: str) -> Location:
    """A run directory to resume, checked."""
    loc = Location.of(run_dir)
    if not loc.exists():
        raise RunDirError(no_such_directory(loc))
    if not (loc / SPEC_FILE).is_file():
        raise RunDirError(
            f"{loc.uri}: not a caviar run directory (no {SPEC_FILE}); pass the "
            "directory `caviar run` printed"
        )
    return loc


def recover(loc: Location) -> None:
    """What a killed driver left, put right before its sweep resumes (and once this driver has
    the run directory to itself: `claim`): half-written files removed, Ray's state files as
    they were last saved together, and the newest of each whole."""
    for d in (loc, loc / RAY_DIR):
        for name in d.names():
            if name.startswith(".") and name.endswith(".tmp"):
                loc.fs.delete_file((d / name).path)
    restore_snapshot(loc / RAY_DIR)
    _check_ray_state(loc)


# What Ray Tune restores a sweep from: the newest file of each kind, by name, as Ray picks it.
RAY_STATE = ("experiment_state-", "search_gen_state-", "searcher-state-", "callback-states-")
# The files of RAY_STATE of one save, in one file written whole (`ray_seam.StateSnapshot`). Not
# .json or .pkl: Ray's resume copies those to its staging dir, and its syncs would then write
# the old snapshot back over each new one.
SNAPSHOT = "caviar-snapshot.zip"


def snapshot(staging_dir: str, session: str) -> bytes:
    """The state files Ray Tune has just saved for driver session `session` in its staging
    directory, as a zip archive."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in sorted(os.listdir(staging_dir)):
            if name.startswith(tuple(prefix + session for prefix in RAY_STATE)):
                z.write(os.path.join(staging_dir, name), name)
    return buf.getvalue()


def restore_snapshot(ray_dir: Location) -> None:
    """Make the run directory's copy of Ray's state the last snapshot's.

    Ray Tune saves a sweep's state (trial statuses, the searcher's, the callbacks') as several
    files at once, then copies them to the run directory in the background, one by one. A
    driver killed during a copy leaves the files of two saves: a searcher waiting for trials
    that Ray has finished, or trials it never suggested; the resumed sweep then waited forever
    for a next trial (seen in tests/test_faults.py's five kills). Files of later driver sessions
    than the snapshot's, from a driver killed before its first snapshot, are removed, so that
    the snapshot's are the newest, which Ray restores."""
    path = ray_dir / SNAPSHOT
    if not path.is_file():
        return  # a sweep from before caviar took snapshots, or killed before the first
    try:
        with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as z:
            files = {name: z.read(name) for name in z.namelist()}
    except zipfile.BadZipFile as e:
        raise RunDirError(
            f"{path.uri}: unreadable ({e}); run the sweep again under another --name"
        ) from None
    names = ray_dir.names()
    for prefix in RAY_STATE:
        saved = max((n for n in files if n.startswith(prefix)), default=None)
        if saved is None:
            continue  # a kind the snapshot lacks stays as it is
        for name in names:
            if name.startswith(prefix) and name > saved:
                ray_dir.fs.delete_file((ray_dir / name).path)
    for name, data in files.items():
        (ray_dir / name).write_bytes(data)


def _check_ray_state(loc: Location) -> None:
    """A state file Ray cannot read makes it start the sweep over from nothing; refuse instead.
    (caviar's runs write them whole, `storage.ReplacingLocalHandler`; a run directory from
    before, or copied while being written, may hold one cut short.)"""
    ray_dir = loc / RAY_DIR
    names = ray_dir.names()
    for prefix in RAY_STATE:
        newest = max((n for n in names if n.startswith(prefix)), default=None)
        if newest is not None and not _whole(data := (ray_dir / newest).read_bytes(), newest):
            raise RunDirError(
                f"{(ray_dir / newest).uri}: cut short ({len(data)} bytes; a driver killed while "
                "Ray Tune wrote it), and Ray cannot resume the sweep without it. What the sweep "
                f"recorded is in {loc.uri} (caviar results {loc.uri}); run it again under "
                "another --name"
            )


def _whole(data: bytes, name: str) -> bool:
    """Whether a state file is complete: JSON that parses, or a pickle that reaches its end."""
    try:
        if name.startswith("experiment_state-"):
            json.loads(data)
        else:
            for _ in pickletools.genops(io.BytesIO(data)):
                pass
    except ValueError:  # an empty file too
        return False
    return True


def has_experiment_state(run_dir: Location) -> bool:
    """Whether Ray saved any experiment state; without it nothing ran and a resume starts
    over."""
    return any(n.startswith("experiment_state-") for n in (run_dir / RAY_DIR).names())


@contextlib.contextmanager
def claim(run_dir: Location) -> Iterator[None]:
    """One driver per run directory: a second driver of a sweep whose driver is still alive on
    this machine is refused. A driver that was killed leaves its claim behind, which the next
    one takes over."""
    path = run_dir / CLAIM_FILE
    me = {"host": platform.node(), "pid": os.getpid()}
    if job_id := _ray_job_id():
        me["job_id"] = job_id  # run by `caviar submit`: `caviar serve` stops it through Jobs
    if path.exists():
        other = json.loads(path.read_text())
        if other["host"] == me["host"] and _caviar_alive(other["pid"]):
            raise RunDirError(
                f"{run_dir.uri}: a caviar driver (pid {other['pid']}) is still running this "
                "sweep; wait for it, or stop it (Ctrl-C or kill PID) and resume"
            )
    path.write_text(json.dumps(me))
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.fs.delete_file(path.path)


def _ray_job_id() -> str | None:
    """The Ray job's submission id when this driver runs as one (Ray passes the job's metadata
    to its entrypoint in RAY_JOB_CONFIG_JSON_ENV_VAR)."""
    try:
        config = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
        job_id = (config.get("metadata") or {}).get("job_submission_id")
    except (ValueError, AttributeError):
        return None
    return job_id if isinstance(job_id, str) else None


def _caviar_alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"caviar" in cmdline
