"""Per-image feature cache for set metrics: ``<run>/features/<dataset>/<set>/<extractor>.npz``.

Each row is stored with the sha256 of the PNG it came from; a row is recomputed only when its image
changed, and the file is keyed by the extractor and the sha256 of the weights it loaded. One
extractor's features serve every metric that uses it (FID and KID share Inception features;
verification and identity cosine share FaceNet embeddings), and the HR reference set's features are
computed once per dataset, whatever the number of methods.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from tqdm import tqdm

from . import parallel, precision
from ..io.image_io import atomic_write_bytes, read_image
from ..interfaces import FeatureExtractor
from ..io.manifest import stable_hash
from .shard import SINGLE, Shard


def _load(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """The cached rows; a damaged cache file counts as empty (its rows are recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {i: (s, f) for i, s, f in zip(z["ids"].tolist(), z["shas"].tolist(), z["feats"])}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return {}


def cache_name(extractor: FeatureExtractor) -> str:
    """The cache file of an extractor's features: its key, plus (when it declares ``requirements``)
    the sha256 of every weight file and the version of every package it uses: other weights, other
    file. Every reader of the cache (metrics, figures) gets the same name."""
    req = getattr(extractor, "requirements", None)
    loaded = {**(req.fingerprint() if req is not None else {}), **precision.tag()}
    return f"{stable_hash(extractor.key if not loaded else {'extractor': extractor.key, **loaded})}.npz"


def _save(path: Path, rows: Mapping[str, tuple[str, np.ndarray]], key: Any) -> None:
    ids = sorted(rows)
    buf = io.BytesIO()
    np.savez(buf, ids=np.array(ids), shas=np.array([rows[i][0] for i in ids]),
             feats=np.stack([rows[i][1] for i in ids]), key=np.array(key))
    atomic_write_bytes(path, buf.getvalue())


def _parts(path: Path) -> list[Path]:
    """The per-rank part files of a cache (``<name>.part-R-of-W.npz``) that a sharded run left."""
    return sorted(path.parent.glob(f"{path.stem}.part-*-of-*.npz"))


def cached_features(extractor: FeatureExtractor, images: Mapping[str, tuple[Path, str]], cache_dir: Path,
                    *, batch_size: int | None = None, desc: str = "", progress: bool = True,
                    shard: Shard = SINGLE, pad: bool | None = None) -> dict[str, np.ndarray]:
    """Features for ``images`` (``id -> (png path, png sha256)``), computing only missing rows (the
    file is :func:`cache_name`). Batches of 256 images for an extractor on a GPU, 32 otherwise. On a GPU
    (or with ``pad``) a network extractor always gets full batches: a short last batch of one image size
    is padded with copies of its last image and their rows dropped, so every call has one shape (kernels
    autotuned once; an image's features do not depend on how many images the set has).

    Sharded (:mod:`.shard`): each rank extracts its batches into its own part file, rank 0 merges the
    parts into the cache file and removes them, and only rank 0 gets the features (other ranks get
    an empty dict). Rows of parts a killed sharded run left are reused."""
    on_gpu = str(getattr(extractor, "device", "cpu")).startswith("cuda")
    if batch_size is None:
        batch_size = 256 if on_gpu else 32
    if pad is None:
        pad = on_gpu
    pad = pad and hasattr(extractor, "device") and not getattr(extractor, "cpu_parallel", False)
    path = cache_dir / cache_name(extractor)
    stored: dict[str, tuple[str, np.ndarray]] = {}

    def absorb_parts() -> None:
        """Rank 0: the cache plus the rows of parts that this or an earlier (killed) sharded run left."""
        parts = _parts(path)
        stored.update(_load(path))
        for part in parts:
            stored.update(_load(part))
        if parts:
            _save(path, stored, extractor.key)
            for part in parts:
                part.unlink(missing_ok=True)

    def plan() -> list[str]:
        absorb_parts()
        return [i for i, (_, sha) in images.items() if i not in stored or stored[i][0] != sha]

    todo = shard.from_main(plan)  # every rank works from rank 0's view of the cache
    batches = list(shard.own_batches(todo, batch_size))
    new: dict[str, tuple[str, np.ndarray]] = {}
    bar = tqdm(total=sum(map(len, batches)), desc=desc, disable=None if progress else True, unit="img", leave=False)
    for chunk, imgs in parallel.prefetched(batches, lambda ids: [read_image(images[i][0]) for i in ids]):
        n = len(imgs)
        if pad and n < batch_size and len({im.shape for im in imgs}) == 1:
            imgs = imgs + [imgs[-1]] * (batch_size - n)
        feats = parallel.call(extractor, "extract", imgs)[:n]
        for i, f in zip(chunk, feats):
            new[i] = (images[i][1], np.asarray(f, dtype=np.float64))
        bar.update(len(chunk))
    bar.close()
    if shard.world == 1:
        stored.update(new)
        if todo:
            _save(path, stored, extractor.key)
        return {i: stored[i][1] for i in images}
    if new:
        _save(path.with_name(f"{path.stem}.part-{shard.rank}-of-{shard.world}.npz"), new, extractor.key)
    shard.barrier()  # every part is written
    shard.from_main(absorb_parts)
    return {i: stored[i][1] for i in images} if shard.main else {}


_SHARED: dict[tuple, Any] = {}


def shared_extractor(cls: type, assets: tuple[str, ...], **kwargs: Any) -> Any:
    """One ``cls(**kwargs)`` per process, per content of the weight files it loads (their sha256) and per
    ``kwargs`` (a device): the metrics that share an extractor (FID, KID, verification, cosine in dlib's
    space, the DINOv2 distances) load its models once; a changed file gives a new instance."""
    from ..assets.weights import resolve

    key = (cls, tuple(resolve(a, allow_download=False).sha256 for a in assets), tuple(sorted(kwargs.items())))
    if key not in _SHARED:
        _SHARED[key] = cls(**kwargs)
    return _SHARED[key]
