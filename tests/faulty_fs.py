"""Local filesystems that fail as disks and processes do, for the results-writing fault tests.

Each is pyarrow's local filesystem with its writes redirected; `caviar.storage.Location` takes
them in place of a real one."""

from __future__ import annotations

import os
import signal

import pyarrow.fs as pafs


class _Local:
    type_name = "local"

    def __init__(self):
        self.local = pafs.LocalFileSystem()

    def __getattr__(self, name):
        return getattr(self.local, name)


class FullDisk(_Local):
    """Every file written lands on /dev/full: the kernel's ENOSPC, as on a full disk."""

    def open_output_stream(self, path):
        self.local.open_output_stream(path).close()  # the temporary file, left empty
        return self.local.open_output_stream("/dev/full")


class DiesMidWrite(_Local):
    """This process is killed (SIGKILL) halfway through the first write of a file's bytes."""

    def open_output_stream(self, path):
        stream = self.local.open_output_stream(path)

        class Half:
            def __enter__(self):
                return self

            def write(self, data):
                stream.write(data[: len(data) // 2])
                stream.flush()
                os.kill(os.getpid(), signal.SIGKILL)

            def __exit__(self, *exc):
                stream.close()

        return Half()
