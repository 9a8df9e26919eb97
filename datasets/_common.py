"""Helpers shared by the dataset modules: root resolution, face cropping to the protocol sizes."""
from __future__ import annotations

import hashlib
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from scgan_bench.errors import DatasetUnavailableError, ImageDecodeError, UsageError
from scgan_bench.io.image_io import read_image
from scgan_bench.interfaces import SourceItem
from scgan_bench.io.manifest import sha256_file
from scgan_bench.io.resize import crop_with_padding, resize_uint8, to_square

#: The paper's protocol: 16x16 LR -> 64x64 SR/HR (x4).
HR_SIZE = 64
LR_SIZE = 16


def resolve_root(name: str, root: Path | str | None, default_subdir: str) -> Path:
    """Dataset root: explicit ``root`` > ``$SCGAN_BENCH_ROOT_<NAME>`` > ``$SCGAN_BENCH_DATA/<subdir>``."""
    env_var = "SCGAN_BENCH_ROOT_" + name.upper().replace("-", "_")
    tried: list[str] = []
    candidates: list[tuple[str, Path]] = []
    if root is not None:
        candidates.append(("--root", Path(root)))
    if os.environ.get(env_var):
        candidates.append((f"${env_var}", Path(os.environ[env_var])))
    if os.environ.get("SCGAN_BENCH_DATA"):
        candidates.append(("$SCGAN_BENCH_DATA", Path(os.environ["SCGAN_BENCH_DATA"]) / default_subdir))
    for origin, path in candidates:
        path = path.expanduser()
        if path.is_dir():
            return path
        tried.append(f"{origin} -> {path} (not a directory)")
        if origin == "--root":
            break
    where = "; ".join(tried) if tried else "nothing was given"
    raise DatasetUnavailableError(
        f"dataset {name!r} not found ({where}). Pass --root {name}=DIR, or set ${env_var}, or put "
        f"it at $SCGAN_BENCH_DATA/{default_subdir}. See `scgan-bench list datasets` for its card.")


def follow_links() -> bool:
    """``--follow-links`` / ``$SCGAN_BENCH_FOLLOW_LINKS=1``: read sources that resolve outside the
    dataset root (symbolic links to other disks); off by default (:mod:`scgan_bench.settings`)."""
    from scgan_bench.settings import current

    return current().follow_links


def source_path(root: Path, item: SourceItem) -> Path:
    """The item's file under ``root``. A source that resolves outside the root (an absolute path,
    ``..``, a symbolic link elsewhere) is refused unless :func:`follow_links`; a broken link is named."""
    path = root / item.source
    if path.is_symlink() and not path.exists():
        raise ImageDecodeError(path, f"broken symbolic link (to {os.readlink(path)})")
    if follow_links():
        return path
    try:
        base, real = root.resolve(), path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise ImageDecodeError(path, f"cannot resolve the path: {exc}") from None
    if real != base and base not in real.parents:
        raise ImageDecodeError(path, f"resolves outside the dataset root {base}; refused (pass --follow-links "
                                     "to read files that links point to elsewhere)")
    return path


def file_digest(root: Path, item: SourceItem) -> str:
    """sha256 of the item's source file; a missing, unreadable or out-of-root file raises
    ImageDecodeError."""
    path = source_path(root, item)
    try:
        return sha256_file(path)
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(path, "is a directory, not an image file") from None
    except OSError as exc:
        raise ImageDecodeError(path, f"cannot read file: {exc.strerror or exc}") from None


def face_crop(img: np.ndarray, box: tuple[int, int, int, int] | None, size: int) -> np.ndarray:
    """Crop ``box`` (edge-replicated outside the image) or the centre square, then resize to
    ``size`` with Pillow's antialiased bicubic filter."""
    face = crop_with_padding(img, box) if box is not None else to_square(img)
    if face.shape[0] == size and face.shape[1] == size:
        return face
    return resize_uint8(face, (size, size), "bicubic")


def load_face(root: Path, item: SourceItem, size: int) -> np.ndarray:
    """Decode the item's file and crop/resize it to a ``size`` square face."""
    return face_crop(read_image(source_path(root, item)), item.box, size)


#: Longest id (UTF-8 bytes) a relative path gives as it is: the run folder stores ``<id>.png`` /
#: ``<id>.json`` next to temporary names, and file systems allow 255 bytes per name. A longer id keeps its
#: first bytes and ends in ``~`` + 16 hex of the path's sha256 (still distinct, still stable).
MAX_ID_BYTES = 200


def id_from_relpath(rel: str) -> str:
    """A filename-safe id from a relative path: ``a/b/c.png`` -> ``a__b__c``; ids over
    :data:`MAX_ID_BYTES` are shortened with a hash of the path."""
    stem = rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel
    uid = stem.replace("/", "__").replace("\\", "__").replace(" ", "_")
    raw = uid.encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_ID_BYTES:
        return uid
    head = raw[:MAX_ID_BYTES - 17].decode("utf-8", "ignore")
    return f"{head}~{hashlib.sha256(rel.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}"


def unique_ids(rels: list[str]) -> list[str]:
    """Ids for relative paths, one per path and distinct even on a case-insensitive file system:
    :func:`id_from_relpath`, plus ``-<8 hex of sha256(path)>`` for every path whose id would collide
    with another's (``dup.png`` / ``dup.PNG``, ``sp ace.png`` / ``sp_ace.png``, ``sub/x.png`` /
    ``sub__x.png``)."""
    base = [id_from_relpath(r) for r in rels]
    count: dict[str, int] = {}
    for b in base:
        count[b.lower()] = count.get(b.lower(), 0) + 1
    ids = [b if count[b.lower()] == 1 else f"{b}-{hashlib.sha256(r.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
           for b, r in zip(base, rels)]
    seen: dict[str, str] = {}
    for i, r in zip(ids, rels):
        if i.lower() in seen:
            raise UsageError(f"files {seen[i.lower()]!r} and {r!r} map to the same image id {i!r}; rename one")
        seen[i.lower()] = r
    return ids


def options_of(obj: Any, exclude: tuple[str, ...] = ("name", "kind", "default_degradation")
               ) -> Mapping[str, Any]:
    """The dataclass fields of a dataset that shape its images (for the cache key)."""
    out = {}
    for f in fields(obj):
        if f.name in exclude or f.name.startswith("_"):
            continue
        v = getattr(obj, f.name)
        out[f.name] = str(v) if isinstance(v, Path) else v
    return out


def check_split(name: str, split: str, allowed: tuple[str, ...]) -> None:
    if split not in allowed:
        raise UsageError(f"dataset {name!r} has no split {split!r}; allowed: {', '.join(allowed)}")
