"""Small JSON state files the suite keeps between runs (the weights' trust-on-first-use pins, the data
integrity locks): read with a one-line refusal naming the file when damaged, rewritten atomically with a
backup of the last good version beside them (``<file>.bak``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ..errors import UsageError
from ..io.image_io import atomic_write_bytes, atomic_write_text


class StateFileError(UsageError):
    """A state file is damaged: the message names it, the cause, and how to recover."""


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


def read_state(path: Path, what: str, check: Callable[[Any], str], reset: str) -> Any | None:
    """The JSON object in ``path`` (``None`` when there is none). A file that is not UTF-8 JSON, or whose
    content ``check`` faults (it returns what is wrong, or ``""``), raises :class:`StateFileError`:
    ``<path>: damaged <what> (<cause>); <recovery>``, where the recovery is restoring the backup when
    one is there, else ``reset``."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise StateFileError(f"{path}: a folder is where the {what} file belongs; move it away") from None
    try:
        obj = json.loads(raw.decode("utf-8"))
        wrong = check(obj)
    except UnicodeDecodeError:
        wrong = "not UTF-8 text"
    except ValueError as exc:
        wrong = f"not JSON: {str(exc).splitlines()[0][:80]}" if raw.strip() else "empty"
    if not wrong:
        return obj
    bak = backup_path(path)
    fix = (f"its last good version is {bak}: restore it with `cp {bak} {path}`, or {reset}" if bak.is_file()
           else reset)
    raise StateFileError(f"{path}: damaged {what} ({wrong}); {fix}")


def write_state(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically and durably; the version it replaces, if it still parses, is kept
    as ``<file>.bak`` first."""
    try:
        old = path.read_bytes()
        json.loads(old.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        old = b""
    if old:
        atomic_write_bytes(backup_path(path), old, durable=True)
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True), durable=True)


def is_str_map(obj: Any) -> str:
    """``""`` for a JSON object of strings to strings, else what is wrong (for :func:`read_state`)."""
    if not isinstance(obj, dict):
        return f"a JSON {type(obj).__name__}, not an object"
    bad = next((k for k, v in obj.items() if not isinstance(v, str)), None)
    return "" if bad is None else f"entry {bad!r} is not a string"

