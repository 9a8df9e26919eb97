"""Where the suite keeps its own files between runs, and the sha256 digests that name and check files
(below everything else: it imports nothing of the package)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def data_home() -> Path:
    """``$SCGAN_BENCH_HOME`` or ``~/.cache/scgan-bench``: generated manifests, integrity locks, weight pins
    and the default weights folder."""
    env = os.environ.get("SCGAN_BENCH_HOME")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scgan-bench"
    return base.expanduser()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def stable_hash(obj: object, n: int = 16) -> str:
    """Short sha256 of canonical JSON, for cache keys."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]
