"""Atomic writes: every file scratchlm writes goes through here.

A file is written to a temporary name in the same folder, flushed to disk, and renamed over the old one,
so a reader (or a run killed mid-write) only ever sees a whole old file or a whole new one. A write that
fails (a full disk, a file-size limit, a read-only file system) leaves the old file as it was; `DISK_ERRORS`
are the causes a user can mend, which the CLI reports in one line.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# No space, over a quota, over the file-size limit, a read-only file system, no permission, a failing device
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)


def cannot_write(error: OSError) -> str:
    """Why a write failed, in words: 'No space left on device'."""
    return error.strerror or str(error)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` to write to; once written it is flushed to disk and renamed over
    `path`, so a crash leaves either the old file or the new one, never a mix.

    A write that fails (a full disk) removes its temporary file: only a kill can leave one behind.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())
