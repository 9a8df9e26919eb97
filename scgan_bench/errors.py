"""Exception types. User mistakes are ``UsageError`` (CLI exit code 2); bad data is reported per file."""
from __future__ import annotations

from pathlib import Path


class UsageError(ValueError):
    """A user-supplied name, option or value is not valid (the CLI exits with code 2)."""


class UnknownNameError(UsageError, KeyError):
    """A registry lookup missed; the message lists close matches and every allowed name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ImageDecodeError(ValueError):
    """A file could not be decoded as an image; names the file and the cause."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class WeightsError(UsageError):
    """A weight file is missing (offline), unverifiable, fails its sha256 check or cannot be loaded."""


class DataIntegrityError(UsageError):
    """Source files differ from the sha256 recorded when the dataset was first prepared."""


class DatasetUnavailableError(UsageError):
    """A dataset's files cannot be found; the message says where they were looked for."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a scheduler's stop, a closed terminal), raised like Ctrl-C so that every stage
    records the stop (``run.json``: ``interrupted``) and the command exits with 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


class TrainingDiverged(RuntimeError):
    """Training produced non-finite losses or weights; the last good checkpoint is left intact."""


_OS_ADVICE = {
    "ENOSPC": "the disk is full: free space or choose a folder on another disk",
    "EDQUOT": "the disk quota is exceeded: free space or choose a folder on another disk",
    "EROFS": "the file system is read-only: choose a writable folder",
    "EACCES": "permission denied: choose a folder you can write to, or fix its permissions",
    "EPERM": "operation not permitted: choose a folder you can write to, or fix its permissions",
    "ENAMETOOLONG": "a path component is too long for the file system: use shorter names",
    "ENOTDIR": "a component of the path is a file, not a folder",
    "EISDIR": "a folder is in the way of a file of the same name",
    "EEXIST": "a file is in the way of a folder of the same name",
}


def describe_os_error(exc: OSError) -> str:
    """``<path>: <what the OS said> (<what to do>)`` for an OSError from a file operation."""
    import errno as _errno

    code = _errno.errorcode.get(exc.errno or 0, "")
    where = exc.filename if exc.filename is not None else "?"
    advice = _OS_ADVICE.get(code)
    from .paths import data_home

    if str(where).startswith(str(data_home())) and code in ("EACCES", "EROFS", "EPERM", "ENOSPC", "ENOTDIR",
                                                              "EEXIST"):
        advice = (f"the data home {data_home()} (manifests, integrity locks) is not writable: set "
                  "$SCGAN_BENCH_HOME to a writable folder")
    return f"{where}: {exc.strerror or exc}" + (f" ({advice})" if advice else "")
