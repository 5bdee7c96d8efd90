"""Where run directories live: a local path, or a URI that pyarrow's filesystems understand
(``s3://bucket/prefix``, ``gs://bucket/prefix``, ``file:///path``). Every read and write of a
run directory goes through here, so results land the same way on a laptop and on a cluster."""

from __future__ import annotations

import os
import posixpath
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from caviar.errors import RunDirError


@dataclass(frozen=True)
class Location:
    """A directory on a filesystem."""

    fs: pafs.FileSystem
    path: str
    uri: str
    """As the user would write it (what Ray's storage_path takes)."""

    @classmethod
    def of(cls, where: str | Path) -> Location:
        where = str(where)
        if "://" in where:
            try:
                fs, path = pafs.FileSystem.from_uri(where)
            except (ValueError, OSError) as e:  # pyarrow's ArrowInvalid is a ValueError
                raise RunDirError(f"--storage: cannot open {where!r}: {e}") from None
            return cls(fs, path.rstrip("/"), where.rstrip("/"))
        path = str(Path(where).expanduser().resolve())
        return cls(pafs.LocalFileSystem(), path, path)

    @property
    def is_local(self) -> bool:
        return is_local(self.fs)

    def __truediv__(self, name: str) -> Location:
        sep = "/" if not self.uri.endswith("/") else ""
        return Location(self.fs, posixpath.join(self.path, name), f"{self.uri}{sep}{name}")

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.File

    def is_nonempty_dir(self) -> bool:
        return bool(self.names())

    def names(self) -> list[str]:
        """The names in this directory; empty if it does not exist."""
        if self.fs.get_file_info(self.path).type != pafs.FileType.Directory:
            return []
        return [
            posixpath.basename(i.path) for i in self.fs.get_file_info(pafs.FileSelector(self.path))
        ]

    def mkdir(self) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.readall()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> None:
        """Atomically: a reader sees the old content or the new, never a part. On a local disk
        a temporary file is renamed over the target; an object store's PUT is atomic itself."""
        if not self.is_local:
            with self.fs.open_output_stream(self.path) as f:
                f.write(data)
            return
        tmp = _temporary(self.path)
        try:
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            self.fs.move(tmp, self.path)
        except BaseException:
            if self.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                self.fs.delete_file(tmp)
            raise

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def check_writable(self) -> None:
        """Fail now, with the reason, rather than after the sweep has run."""
        probe = self / f".caviar-write-test-{uuid.uuid4().hex[:8]}"
        try:
            self.mkdir()
            probe.write_bytes(b"ok")
            self.fs.delete_file(probe.path)
        except OSError as e:
            raise RunDirError(
                f"--storage: cannot write to {self.uri!r} ({e}); pass a writable path or URI"
            ) from None


def _temporary(path: str) -> str:
    """Where to write `path` until it is whole: a dot name beside it, which directory readers
    (pandas, pyarrow, Ray's restore) skip."""
    head, tail = posixpath.split(path)
    return posixpath.join(head, f".{tail}.{uuid.uuid4().hex[:8]}.tmp")


def ray_storage(run_dir: Location) -> tuple[str, pafs.FileSystem | None]:
    """Ray Tune's `storage_path` and `storage_filesystem` for a run directory: on a local disk
    its path, and a filesystem whose every file replaces the old one only once written whole
    (`ReplacingLocalHandler`); elsewhere its URI, for Ray to open itself (an object store's PUT
    is atomic)."""
    if run_dir.is_local:
        return run_dir.path, pafs.PyFileSystem(ReplacingLocalHandler())
    return run_dir.uri, None


def is_local(fs: pafs.FileSystem) -> bool:
    """Whether `fs` is this machine's disk (pyarrow's, or `ray_storage`'s)."""
    return fs.type_name in ("local", f"py::{ReplacingLocalHandler.TYPE_NAME}")


class ReplacingLocalHandler(pafs.FileSystemHandler):
    """The local disk, where a file written replaces the old one only once whole.

    Ray Tune copies the experiment's state (trial statuses, the searcher's and scheduler's
    state, every driver session's) over the run directory's copy every few seconds, opening each
    file for writing (which empties it) and then writing it. A driver killed in that moment
    left files empty, and `caviar resume` could not restore the sweep: Ray started it again
    from nothing (seen in tests/test_faults.py's five kills). Written under a temporary name and
    renamed over the old file, a killed copy leaves the old file as it was."""

    TYPE_NAME = "caviar-local"

    def __init__(self) -> None:
        self.fs = pafs.LocalFileSystem()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReplacingLocalHandler)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def get_type_name(self) -> str:
        return self.TYPE_NAME

    def open_output_stream(self, path: str, metadata: object) -> pa.NativeFile:
        return pa.PythonFile(_Replacing(path), mode="w")

    def copy_file(self, src: str, dest: str) -> None:
        tmp = _temporary(dest)
        self.fs.copy_file(src, tmp)
        self.fs.move(tmp, dest)

    # The rest as the local disk does it.
    def normalize_path(self, path: str) -> str:
        return self.fs.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        self.fs.delete_dir_contents("/", accept_root_dir=True)

    def delete_file(self, path: str) -> None:
        self.fs.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.fs.move(src, dest)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.fs.open_input_stream(path)

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self.fs.open_input_file(path)

    def open_append_stream(self, path: str, metadata: object) -> pa.NativeFile:
        return self.fs.open_append_stream(path)


class _Replacing:
    """A file object writing `path` under a temporary name, renamed over it on close; a write
    that failed, or a copy whose source failed (pyarrow then never closes it), leaves `path`
    as it was (and the temporary file, a dot name that readers skip). One case it cannot see:
    Python code that raises between two writes inside ``with fs.open_output_stream(...)``
    (pyarrow closes the file on the way out, and what was written replaces `path`); Ray
    Tune's writers through it write once."""

    def __init__(self, path: str) -> None:
        self.path, self.tmp = path, _temporary(path)
        self.file = open(self.tmp, "wb")  # noqa: SIM115 (closed by close())
        self.failed = False

    @property
    def closed(self) -> bool:
        return self.file.closed

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.file.tell()

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except BaseException:
            self.failed = True
            raise

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        if self.file.closed:
            return
        self.file.close()
        if self.failed:
            os.unlink(self.tmp)
        else:
            os.replace(self.tmp, self.path)
