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


class DataIntegrityError(UsageError):
    """Source files differ from the sha256 recorded when the dataset was first prepared."""


class DatasetUnavailableError(UsageError):
    """A dataset's files cannot be found; the message says where they were looked for."""
