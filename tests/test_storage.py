import io
import os
import pickle
import subprocess
import sys

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from caviar.errors import RunDirError
from caviar.storage import Location, ReplacingLocalHandler, is_local, ray_storage


def test_local_paths_and_file_uris_are_the_same_place(tmp_path):
    a = Location.of(tmp_path) / "run"
    b = Location.of(f"file://{tmp_path}") / "run"
    assert a.is_local and b.is_local and a.path == b.path
    assert b.uri == f"file://{tmp_path}/run"
    (a / "x.txt").fs.create_dir(a.path)
    (a / "x.txt").write_text("hello")
    assert (b / "x.txt").read_text() == "hello"
    assert b.is_nonempty_dir() and not (b / "nope").exists()


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    loc = Location.of(tmp_path) / "f.bin"
    for i in range(3):
        loc.write_bytes(bytes([i]) * 10)
    assert loc.read_bytes() == b"\x02" * 10
    assert os.listdir(tmp_path) == ["f.bin"]


# Rewrites a file through a filesystem, killed -9 halfway: what Ray Tune's copy of a sweep's
# state over the run directory's does when the driver is killed at that moment.
KILLED_MID_WRITE = """
import os, pickle, signal, sys
fs, path = pickle.load(sys.stdin.buffer)
f = fs.open_output_stream(path)
f.write(b"new, half")
f.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("ours", [False, True])
def test_a_file_written_by_a_killed_process_is_whole(tmp_path, ours):
    """pyarrow's local filesystem empties a file it opens for writing, so a process killed
    mid-write leaves it cut short (seen: `caviar resume` unable to read the searcher's state);
    the filesystem caviar gives Ray Tune leaves the old file as it was."""
    fs = ray_storage(Location.of(tmp_path))[1] if ours else pafs.LocalFileSystem()
    path = str(tmp_path / "searcher-state.pkl")
    with fs.open_output_stream(path) as f:
        f.write(b"old, whole")
    writer = subprocess.run(
        [sys.executable, "-c", KILLED_MID_WRITE], input=pickle.dumps((fs, path)), check=False
    )
    assert writer.returncode == -9
    with open(path, "rb") as f:
        assert f.read() == (b"old, whole" if ours else b"new, half")


class _FailingReads(ReplacingLocalHandler):
    """The local disk, whose files fail to read after their first kilobyte (a filesystem of
    its own, so that copies from it read it rather than ask the destination to copy)."""

    def __eq__(self, other):
        return type(other) is _FailingReads

    def open_input_stream(self, path):
        class Half(io.FileIO):
            def read(self, n=-1):
                if self.tell() >= 1024:
                    raise OSError("the disk went away")
                return super().read(min(n if n >= 0 else 1024, 1024))

        return pa.PythonFile(Half(path), mode="r")


@pytest.mark.parametrize("ours", [False, True])
def test_a_copy_that_fails_halfway_leaves_the_old_file(tmp_path, ours):
    """Ray Tune syncs state with pyarrow's copy_files; when reading its source fails halfway,
    pyarrow's filesystem leaves the destination cut short, caviar's leaves it as it was."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "state.json").write_bytes(b"new" * 10_000)
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "state.json").write_bytes(b"old, whole")
    fs = ray_storage(Location.of(tmp_path))[1] if ours else pafs.LocalFileSystem()
    with pytest.raises(OSError, match="the disk went away"):
        pafs.copy_files(
            str(tmp_path / "src"),
            str(tmp_path / "dst"),
            source_filesystem=pafs.PyFileSystem(_FailingReads()),
            destination_filesystem=fs,
            chunk_size=1024,
        )
    written = (tmp_path / "dst" / "state.json").read_bytes()
    assert written == b"old, whole" if ours else len(written) == 1024


def test_ray_gets_a_local_filesystem_for_a_local_run_dir(tmp_path):
    path, fs = ray_storage(Location.of(f"file://{tmp_path}"))
    assert path == str(tmp_path) and is_local(fs) and is_local(pafs.LocalFileSystem())
    assert pickle.loads(pickle.dumps(fs)) == fs  # Ray sends it to every trial
    src = tmp_path / "src" / "a" / "b"
    src.mkdir(parents=True)
    (src / "c.json").write_text("{}")
    pafs.copy_files(str(tmp_path / "src"), str(tmp_path / "dst"), destination_filesystem=fs)
    assert sorted(p.name for p in (tmp_path / "dst").rglob("*")) == ["a", "b", "c.json"]
    fs.delete_dir(str(tmp_path / "dst"))
    assert sorted(os.listdir(tmp_path)) == ["src"]
    assert ray_storage(Location.of("mock://x")) == ("mock://x", None)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
def test_unwritable_storage_is_a_user_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(RunDirError, match="--storage: cannot write to"):
        (Location.of(ro) / "run").check_writable()


def test_unwritable_device_is_a_user_error():
    # /dev/full is a file, so nothing can be created below it, root or not.
    with pytest.raises(RunDirError, match=r"--storage: cannot write to '/dev/full/run'"):
        (Location.of("/dev/full") / "run").check_writable()


def test_unknown_uri_scheme_is_a_user_error():
    with pytest.raises(RunDirError, match=r"--storage: cannot open 'nosuch://bucket/x'"):
        Location.of("nosuch://bucket/x")


def test_a_resume_restores_rays_state_as_last_saved_together(tmp_path):
    """Ray copies its state files one by one: what a killed copy leaves (the experiment of one
    save, the searcher of an older one; a later session's files from a driver killed before
    its first snapshot) is replaced by the files of the last snapshot."""
    from caviar import rundir

    staging, ray_dir = tmp_path / "staging", tmp_path / "ray"
    staging.mkdir(), ray_dir.mkdir()
    s1, s2 = "2026-12-07_10-00-00", "2026-12-07_10-05-00"
    saved = {
        f"experiment_state-{s1}.json": b'{"trials": 4}',
        f"searcher-state-{s1}.pkl": b"searcher knows 4",
        f"search_gen_state-{s1}.json": b"4 suggested",
        f"callback-states-{s1}.pkl": b"callbacks",
    }
    for name, data in {**saved, "basic-variant-state-x.json": b"not Ray's state"}.items():
        (staging / name).write_bytes(data)
    (ray_dir / rundir.SNAPSHOT).write_bytes(rundir.snapshot(str(staging), s1))

    torn = {
        f"experiment_state-{s1}.json": b'{"trials": 4}',
        f"searcher-state-{s1}.pkl": b"searcher knows 2",
        f"search_gen_state-{s1}.json": b"2 suggested",
        f"experiment_state-{s2}.json": b'{"trials": 4}',
        f"searcher-state-{s2}.pkl": b"searcher knows 2",
        "searcher-state-2026-12-07_09-00-00.pkl": b"an earlier session",
        "0a1b2c3d.txt": b"a trial's",
    }
    for name, data in torn.items():
        (ray_dir / name).write_bytes(data)
    rundir.restore_snapshot(Location.of(ray_dir))
    assert {p.name: p.read_bytes() for p in ray_dir.iterdir() if p.name != rundir.SNAPSHOT} == {
        **saved,
        "searcher-state-2026-12-07_09-00-00.pkl": b"an earlier session",
        "0a1b2c3d.txt": b"a trial's",
    }

    (ray_dir / rundir.SNAPSHOT).write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(RunDirError, match="caviar-snapshot.zip: unreadable"):
        rundir.restore_snapshot(Location.of(ray_dir))
