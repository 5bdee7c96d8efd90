"""Where run directories live: a local path, or a URI that pyarrow's filesystems understand
(``s3://bucket/prefix``, ``gs://bucket/prefix``, ``file:///path``). Every read and write of a
run directory goes through here, so results land the same way on a laptop and on a cluster."""

from __future__ import annotations

import posixpath
import uuid
from dataclasses import dataclass
from pathlib import Path

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
        return self.fs.type_name == "local"

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
        # A dot name, so directory readers (pandas, pyarrow) skip a write in progress.
        head, tail = posixpath.split(self.path)
        tmp = posixpath.join(head, f".{tail}.{uuid.uuid4().hex[:8]}.tmp")
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
