"""The run folder as a cache: keyed stage folders and per-image JSON records.

Every stage folder (one dataset's LR/HR images, one method's SR images, one method's metric values)
holds a ``key.json`` with the hash of what determines its contents. A folder whose key differs is
stale and is emptied. Inside a folder, each image has a record written *after* its PNGs, with the
sha256 of its inputs and outputs, so a record proves its files are complete and current, and a run
killed at any point resumes where it stopped. All writes are atomic (temp file + rename).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from ..errors import UsageError
from ..io.image_io import atomic_write_text
from ..io.manifest import stable_hash


def prepare_stage_dir(path: Path, key_obj: Mapping[str, Any]) -> tuple[str, bool]:
    """Ensure ``path`` is a stage folder for ``key_obj``; returns ``(key, was_reset)``.

    A folder with another key is emptied (its results no longer apply); a non-empty folder without
    a key was not made by us and is refused; stray temp files from a killed run are removed.
    """
    key = stable_hash(key_obj, 32)
    key_file = path / "key.json"
    reset = False
    if key_file.exists():
        try:
            old = json.loads(key_file.read_text())["key"]
        except (ValueError, KeyError):
            old = None
        if old != key:
            shutil.rmtree(path)
            reset = True
    elif path.exists() and any(path.iterdir()):
        raise UsageError(f"refusing to use {path}: it has files but no key.json, so it was not made "
                         "by scgan-bench; choose another --out")
    path.mkdir(parents=True, exist_ok=True)
    if not key_file.exists():
        atomic_write_text(key_file, json.dumps({"key": key, "what": key_obj}, indent=1,
                                               sort_keys=True, default=str))
    remove_temp_files(path)
    return key, reset


def remove_temp_files(path: Path) -> None:
    """Delete ``.*.tmp`` files that a killed atomic write left behind."""
    for root, _dirs, files in os.walk(path):
        for f in files:
            if f.startswith(".") and f.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(root, f))
                except FileNotFoundError:
                    pass


def read_record(path: Path) -> dict[str, Any] | None:
    """A per-image record, or ``None`` if absent or damaged (empty after a power loss, edited,
    truncated): the item is then recomputed, never trusted."""
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def files_intact(base: Path, rec: Mapping[str, Any], fields: tuple[str, ...]) -> bool:
    """Whether each file a record names (``rec[field]``, relative to ``base``) still has the sha256
    the record holds (``rec[field + '_sha256']``); a field set to None is skipped."""
    from ..io.manifest import sha256_file

    for f in fields:
        rel, want = rec.get(f), rec.get(f"{f}_sha256")
        if rel is None and want is None:
            continue
        if not isinstance(rel, str) or not isinstance(want, str):
            return False
        try:
            if sha256_file(base / rel) != want:
                return False
        except OSError:
            return False
    return True


def write_record(path: Path, record: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(record, sort_keys=True))


#: Longest image id (UTF-8 bytes) stored under its own name: ``<id>.json`` and the temporary names beside
#: it must stay under the file systems' 255 bytes per name.
MAX_NAME_BYTES = 230


def safe_name(image_id: str) -> str:
    """File name for an id (ids are filename-safe by construction; guard anyway): a ``ValueError``
    for a path separator, ``.``/``..``, a NUL, or an id too long to be a file name."""
    if "/" in image_id or "\\" in image_id or "\0" in image_id or image_id in ("", ".", ".."):
        raise ValueError(f"image id {image_id!r} is not a safe file name")
    size = len(image_id.encode("utf-8", "surrogateescape"))
    if size > MAX_NAME_BYTES:
        raise ValueError(f"image id {image_id[:40]!r}... is {size} bytes long; file names allow "
                         f"{MAX_NAME_BYTES} here: shorten the file name")
    return image_id
