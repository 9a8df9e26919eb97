"""One process per run folder: an exclusive advisory lock (``flock``) on ``<folder>/.scgan-bench.lock``.

A second ``scgan-bench run`` (or ``train``) on the same folder stops at once with a message naming the
process that holds it (pid, host, start time, command), or with ``wait=True`` waits for it. The kernel
releases the lock when its holder exits, however it exits (kill -9 included), so a stale lock file
never blocks anyone. Also the place where an unusable ``--out`` becomes a clear error.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import UsageError

LOCK_NAME = ".scgan-bench.lock"


class RunLockedError(UsageError):
    """Another process holds the run folder."""


def ensure_folder(path: Path, what: str = "--out") -> Path:
    """Create ``path`` (and parents) or raise a UsageError saying why it cannot be used."""
    from ..errors import describe_os_error

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"{what} {path} exists and is a file, not a folder: choose another path") from None
    except NotADirectoryError:
        raise UsageError(f"{what} {path}: a component of the path is a file, not a folder") from None
    except OSError as exc:
        raise UsageError(f"{what} {path} cannot be created: {describe_os_error(exc)}") from None
    return path


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: "
                f"{info.get('command')}")
    except (OSError, ValueError):
        return "a process that has not yet recorded itself"


@contextmanager
def run_lock(folder: Path, *, wait: bool = False, command: str | None = None) -> Iterator[Path]:
    """Hold the exclusive lock on ``folder`` for the duration of the block."""
    folder = ensure_folder(folder)
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        from ..errors import describe_os_error

        raise UsageError(f"cannot open the run lock {path}: {describe_os_error(exc)}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunLockedError(
                f"{folder} is in use by another scgan-bench process ({_holder(path)}). Wait for it to "
                "finish (or pass --wait), or use another folder") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": command or " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the flock
