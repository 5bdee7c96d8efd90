import os

import pytest

from caviar.errors import RunDirError
from caviar.storage import Location


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
