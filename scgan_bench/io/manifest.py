"""Test-split manifests (which images, in which order) and the source-integrity lock.

A manifest is a TSV file: ``#``-comment header lines (``# key: value``) then ``id<TAB>source`` and
optionally ``<TAB>left,top,right,bottom``. Manifests that depend only on a dataset's official file
naming (FFHQ) ship inside the package under ``datasets/manifests/``; those that depend on a listing or
an annotation file are generated deterministically on first use and cached in the user's data home.

The lock records the sha256 of every source file the first time a dataset is prepared; later runs
compare against it, so a changed or missing file is detected before any number is computed.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..errors import DataIntegrityError, UsageError
from .image_io import atomic_write_text
from ..paths import data_home, sha256_bytes, sha256_file, stable_hash  # noqa: F401 (their home before)
from ..assets.statefiles import is_str_map, read_state, write_state


def seeded_selection(candidates: Sequence[str], k: int, seed: int) -> list[str]:
    """``k`` of ``candidates`` chosen by a seeded shuffle of the sorted list, returned sorted.

    Uses Python's ``random.Random(seed).sample`` (stable across versions for a given seed and
    population), so everyone with the same files gets the same ids.
    """
    pool = sorted(candidates)
    if k >= len(pool):
        return pool
    return sorted(random.Random(seed).sample(pool, k))


@dataclass(frozen=True)
class Manifest:
    """An ordered list of :class:`SourceItem` plus provenance (how the selection was made)."""

    dataset: str
    split: str
    items: tuple  # tuple[SourceItem, ...]
    header: Mapping[str, str] = field(default_factory=dict)
    rejected: tuple = ()  # (source, reason) of annotated faces dropped while building (reported per run)

    def __len__(self) -> int:
        return len(self.items)

    def digest(self) -> str:
        """sha256 over the ids, sources and boxes (not the header), in order."""
        h = hashlib.sha256()
        for it in self.items:
            h.update(f"{it.id}\t{it.source}\t{it.box}\n".encode())
        return h.hexdigest()

    def head(self, n: int | None) -> "Manifest":
        if n is None or n >= len(self.items):
            return self
        return Manifest(self.dataset, self.split, tuple(self.items[:n]), dict(self.header), self.rejected)

    def to_tsv(self) -> str:
        lines = [f"# {k}: {v}" for k, v in self.header.items()]
        lines += [f"#!rejected\t{src}\t{why}" for src, why in self.rejected]
        for it in self.items:
            row = [it.id, it.source]
            if it.box is not None:
                row.append(",".join(str(v) for v in it.box))
            lines.append("\t".join(row))
        return "\n".join(lines) + "\n"

    @classmethod
    def from_tsv(cls, text: str, dataset: str, split: str, origin: str = "<text>") -> "Manifest":
        from ..interfaces import SourceItem

        header: dict[str, str] = {}
        items = []
        rejected = []
        seen: set[str] = set()
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.rstrip("\n")
            if not line.strip():
                continue
            if line.startswith("#!rejected\t"):
                _, src, why = (line.split("\t", 2) + ["", ""])[:3]
                rejected.append((src, why))
                continue
            if line.startswith("#"):
                key, _, val = line[1:].partition(":")
                header[key.strip()] = val.strip()
                continue
            cols = line.split("\t")
            if len(cols) not in (2, 3):
                raise UsageError(f"{origin}:{lineno}: expected 'id<TAB>source[<TAB>box]', got {line!r}")
            box = None
            if len(cols) == 3:
                try:
                    l, t, r, b = (int(v) for v in cols[2].split(","))
                except ValueError:
                    raise UsageError(f"{origin}:{lineno}: bad box {cols[2]!r}") from None
                box = (l, t, r, b)
            if cols[0] in seen:
                raise UsageError(f"{origin}:{lineno}: duplicate id {cols[0]!r}")
            seen.add(cols[0])
            items.append(SourceItem(cols[0], cols[1], box))
        return cls(dataset, split, tuple(items), header, tuple(rejected))

    def save(self, path: Path) -> None:
        atomic_write_text(path, self.to_tsv())

    @classmethod
    def load(cls, path: Path, dataset: str, split: str) -> "Manifest":
        return cls.from_tsv(Path(path).read_text(encoding="utf-8"), dataset, split, str(path))


def packaged_manifest_path(dataset: str, split: str) -> Path:
    """Where a shipped manifest lives (``scgan_bench/datasets/manifests/<dataset>-<split>.tsv``)."""
    import importlib.util

    spec = importlib.util.find_spec("scgan_bench.datasets")   # located, not imported: it imports this module
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0]).resolve() / "manifests" / f"{dataset}-{split}.tsv"


def generated_manifest(dataset: str, split: str, root: Path | None, key: Mapping[str, object],
                       build) -> Manifest:
    """Return the cached generated manifest for ``(dataset, split, root, key)`` or build and cache it.

    ``build()`` must be deterministic given the same source files and ``key`` (seed, filters).
    """
    tag = stable_hash({"root": str(root.resolve()) if root else None, **key})
    path = data_home() / "manifests" / f"{dataset}-{split}-{tag}.tsv"
    if path.exists():
        try:
            cached = Manifest.load(path, dataset, split)
            if cached.header.get("items_sha256") == cached.digest():
                return cached
        except (UsageError, OSError, UnicodeDecodeError):
            pass
        # edited, damaged, emptied or without its digest: the cache is ours to rebuild (the selection is
        # deterministic, so the same files give the same manifest), and its sources are checked anyway
    manifest = build()
    manifest = Manifest(manifest.dataset, manifest.split, manifest.items,
                        {**manifest.header, "items_sha256": manifest.digest()}, manifest.rejected)
    manifest.save(path)
    return manifest


# ------------------------------------------------------------------------------ integrity lock
@dataclass
class IntegrityReport:
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # source, recorded, now
    missing: list[tuple[str, str]] = field(default_factory=list)        # source, reason
    recorded_new: int = 0
    lock_path: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.changed and not self.missing

    def message(self, dataset: str) -> str:
        lines = [f"dataset {dataset!r}: source files differ from the sha256 recorded in "
                 f"{self.lock_path} when the data was first prepared:"]
        for src, old, new in self.changed[:20]:
            lines.append(f"  changed: {src} (recorded {old[:12]}..., now {new[:12]}...)")
        for src, why in self.missing[:20]:
            lines.append(f"  missing: {src} ({why})")
        extra = len(self.changed) + len(self.missing) - min(20, len(self.changed)) - min(20, len(self.missing))
        if extra > 0:
            lines.append(f"  ... and {extra} more")
        lines.append("Restore the original files, or re-record them with --accept-data-changes "
                     "(results will then not be comparable with earlier runs).")
        return "\n".join(lines)


def lock_path(dataset: str, root: Path | None) -> Path:
    tag = stable_hash({"root": str(root.resolve()) if root else "<builtin>"})
    return data_home() / "locks" / f"{dataset}-{tag}.json"


def check_integrity(dataset: str, root: Path | None, digests: Mapping[str, str | None],
                    errors: Mapping[str, str], *, accept_changes: bool = False) -> IntegrityReport:
    """Compare source digests (``source -> sha256``; ``None`` when unreadable, reason in
    ``errors``) with the lock; record new sources. Raises :class:`DataIntegrityError` on a
    mismatch unless ``accept_changes`` (which re-records the current hashes)."""
    path = lock_path(dataset, root)

    def sound(obj: object) -> str:
        if not isinstance(obj, dict) or not isinstance(obj.get("sources"), dict):
            return "no 'sources' object of file -> sha256"
        return is_str_map(obj["sources"])

    lock = read_state(path, f"data integrity lock of {dataset!r}", sound,
                      "delete it: the files found now are then recorded as the reference (a change made since "
                      "the first run goes unnoticed)") or {
        "dataset": dataset, "root": str(root.resolve()) if root else None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "sources": {}}
    recorded: dict[str, str] = lock["sources"]
    report = IntegrityReport(lock_path=path)
    for src, digest in digests.items():
        old = recorded.get(src)
        if digest is None:
            if old is not None:
                report.missing.append((src, errors.get(src, "unreadable")))
            continue
        if old is None:
            recorded[src] = digest
            report.recorded_new += 1
        elif old != digest:
            report.changed.append((src, old, digest))
            if accept_changes:
                recorded[src] = digest
    if not report.ok and not accept_changes:
        raise DataIntegrityError(report.message(dataset))
    if report.recorded_new or (accept_changes and report.changed):
        lock["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_state(path, lock)
    return report


def iter_chunks(seq: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]
