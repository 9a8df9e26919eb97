"""Stage 1: turn a dataset's manifest into HR / LR PNGs under ``<run>/data/<dataset>/``.

Source files are hashed first and checked against the integrity lock; then every image without a
current record is decoded, cropped, resized and (for synthetic sets) degraded with a seed derived from
``(seed, dataset, image id)``. Bad files are reported, never fatal. Work is spread over ``workers``
processes; the output does not depend on their number.
"""
from __future__ import annotations

import errno
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from tqdm import tqdm

from ..io.degradations import degrade, derive_seed, make_degradation
from ..protocols import EvalProtocol
from ..errors import ImageDecodeError, UsageError
from ..io.image_io import atomic_write_bytes, encode_png, remember
from ..interfaces import Dataset, GivenPairs, SourceItem
from ..io.manifest import Manifest, check_integrity, sha256_bytes
from ..registries import DATASETS, load_plugins
from ..settings import current, in_settings
from .shard import SINGLE, Shard
from .store import files_intact, prepare_stage_dir, read_record, safe_name, write_record

PREP_VERSION = 1


@dataclass(frozen=True)
class Failure:
    """One image that could not be processed at some stage, with the reason."""

    stage: str
    dataset: str
    method: str
    image_id: str
    source: str
    reason: str


@dataclass(frozen=True)
class DatasetJob:
    """Everything a worker needs to rebuild the dataset and process one of its items."""

    name: str
    options: Mapping[str, Any]
    root: str | None
    degradation: str | None
    seed: int
    out: str

    def dataset(self) -> Dataset:
        load_plugins()
        return DATASETS.get(self.name).create(**self.options)


@dataclass
class PreparedDataset:
    """The result of stage 1 for one dataset."""

    name: str
    kind: str
    dir: Path
    key: str
    manifest: Manifest
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> record, manifest order
    failures: list[Failure] = field(default_factory=list)
    degradation: Mapping[str, Any] | None = None
    recomputed: int = 0
    #: items of the dataset's whole selection (before ``--limit``): a run scoring fewer is a partial set
    full_items: int | None = None


def _digest_one(job: DatasetJob, item: SourceItem) -> tuple[str, str | None, str]:
    ds = job.dataset()
    root = Path(job.root) if job.root else None
    try:
        return item.source, ds.source_digest(root, item), ""
    except ImageDecodeError as exc:
        return item.source, None, exc.reason


def _process_one(job: DatasetJob, item: SourceItem, source_sha: str) -> dict[str, Any]:
    """Load, crop, degrade and write one item; returns its record (raises ImageDecodeError)."""
    ds = job.dataset()
    root = Path(job.root) if job.root else None
    out = Path(job.out)
    img = ds.load(root, item)
    name = safe_name(item.id)
    rec: dict[str, Any] = {"id": item.id, "source": item.source, "source_sha256": source_sha}
    if ds.kind == "synthetic" and isinstance(ds, GivenPairs):   # LR given beside the HR: used as it is
        lr = ds.load_lr(root, item)
        hr_png = encode_png(img)
        atomic_write_bytes(out / "hr" / f"{name}.png", hr_png)
        remember(out / "hr" / f"{name}.png", img)
        rec.update(hr=f"hr/{name}.png", hr_sha256=sha256_bytes(hr_png), degradation={"name": "given"})
    elif ds.kind == "synthetic":
        deg = make_degradation(job.degradation)
        seed = derive_seed(job.seed, job.name, item.id)
        lr, params = degrade(deg, img, seed)
        hr_png = encode_png(img)
        atomic_write_bytes(out / "hr" / f"{name}.png", hr_png)
        remember(out / "hr" / f"{name}.png", img)
        rec.update(hr=f"hr/{name}.png", hr_sha256=sha256_bytes(hr_png),
                   degradation={"name": job.degradation, **params})
    else:
        lr = img
        rec.update(hr=None, hr_sha256=None, degradation=None)
    lr_png = encode_png(lr)
    atomic_write_bytes(out / "lr" / f"{name}.png", lr_png)
    remember(out / "lr" / f"{name}.png", lr)
    rec.update(lr=f"lr/{name}.png", lr_sha256=sha256_bytes(lr_png), lr_size=list(lr.shape[:2]))
    write_record(out / "records" / f"{name}.json", rec)
    return rec


def _process_safe(job: DatasetJob, item: SourceItem, source_sha: str
                  ) -> tuple[str, dict[str, Any] | None, str]:
    try:
        return item.id, _process_one(job, item, source_sha), ""
    except ImageDecodeError as exc:
        return item.id, None, exc.reason
    except ValueError as exc:  # e.g. an image too small to crop, an id too long to be a file name
        return item.id, None, f"{type(exc).__name__}: {exc}"
    except OSError as exc:
        # an OSError here comes from writing the run folder (reads raise ImageDecodeError): a full or
        # read-only disk is the run's problem, not this image's, so it propagates; a name too long for
        # the file system is this image's
        if exc.errno != errno.ENAMETOOLONG:
            raise
        return item.id, None, f"its id is too long for a file name here ({exc.strerror}): shorten the file name"


#: Below this many images per worker, starting processes (each imports torch, ~1.5 s) costs more
#: than it saves.
MIN_ITEMS_PER_PROCESS = 500


def _map(fn: Callable, args: Sequence[tuple], workers: int, desc: str, progress: bool, *,
         threads: bool = False) -> Iterable:
    """Ordered map over ``args`` with a progress bar: in-process, over threads (for work that
    releases the GIL, like hashing) or over spawned processes (for decoding and degrading)."""
    bar = tqdm(total=len(args), desc=desc, disable=None if progress else True, unit="img", leave=False)
    try:
        if workers <= 1 or len(args) < 2 or (not threads and len(args) < MIN_ITEMS_PER_PROCESS * workers):
            for a in args:
                yield fn(*a)
                bar.update()
            return
        pool = (ThreadPoolExecutor(max_workers=workers) if threads else
                ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")))
        with pool:   # the workers run under this run's settings (pixel limit, links, offline)
            chunk = 1 if threads else max(1, min(64, len(args) // (workers * 4)))
            settings = current()
            for r in pool.map(in_settings, *zip(*[(settings, fn, *a) for a in args]), chunksize=chunk):
                yield r
                bar.update()
    finally:
        bar.close()


def prepare_dataset(name: str, *, out: Path, seed: int, root: Path | None = None,
                    options: Mapping[str, Any] | None = None, degradation: str | None = None,
                    limit: int | None = None, workers: int = 1, accept_data_changes: bool = False,
                    progress: bool = True, shard: Shard = SINGLE, protocol: EvalProtocol | None = None
                    ) -> PreparedDataset:
    """Run stage 1 for dataset ``name``; see the module docstring. Under a sharded run (:mod:`.shard`)
    each rank hashes and prepares its own part; rank 0 keeps the folder's key and the integrity lock;
    every rank returns the whole result. Under another protocol than SCGAN's (:mod:`..protocols`) the HR
    faces are ``protocol.out_size`` px, the LR ``protocol.lr_size`` px, and synthetic LR is made by the
    protocol's degradation unless one is given."""
    load_plugins()
    spec = DATASETS.get(name)
    options = dict(options or {})
    try:
        ds = spec.create(**options)
    except TypeError as exc:
        raise UsageError(f"dataset {name!r}: bad option ({exc}); its options: "
                         f"{', '.join(spec.create().options())}") from None
    sized = protocol is not None and not protocol.is_default
    if sized:
        import dataclasses

        sizes = {k: v for k, v in (("hr_size", protocol.out_size), ("lr_size", protocol.lr_size))
                 if hasattr(ds, k) and k not in options}
        if sizes and not dataclasses.is_dataclass(ds):
            raise UsageError(f"dataset {name!r} cannot be prepared at protocol {protocol.name}'s sizes (its class is "
                             "not a dataclass with hr_size / lr_size fields)")
        ds = dataclasses.replace(ds, **sizes) if sizes else ds
    root = ds.locate(root)
    if ds.kind == "real" and degradation:
        raise UsageError(f"dataset {name!r} is a real-world LR set (no ground truth): it takes no "
                         f"degradation, got {degradation!r}")
    if isinstance(ds, GivenPairs) and degradation:
        raise UsageError(f"dataset {name!r} holds given LR/HR pairs: its LR images are used as they are, so it "
                         f"takes no degradation, got {degradation!r}")
    own = protocol.degradation if sized and protocol.degradation else ds.default_degradation
    deg_name = (degradation or own) if ds.kind == "synthetic" and not isinstance(ds, GivenPairs) else None
    deg = make_degradation(deg_name) if deg_name else None
    ratio = getattr(ds, "hr_size", 64) // getattr(ds, "lr_size", 16)
    if deg is not None and deg.scale != ratio:
        hint = {"gfpgan": "; use gfpgan-x4", "gfpgan-x4": "; use gfpgan"}.get(deg_name, "") if ratio in (1, 4) else ""
        raise UsageError(f"degradation {deg_name!r} shrinks by x{deg.scale}, but dataset {name!r} takes its HR faces "
                         f"x{ratio} down to the LR size ({getattr(ds, 'hr_size', 64)} -> {getattr(ds, 'lr_size', 16)} "
                         f"px, protocol {protocol.name if protocol else 'scgan-sr'}){hint}")
    deg_cfg = deg.config() if deg is not None else None
    whole = ds.manifest(root)
    manifest = whole.head(limit)
    ddir = out / "data" / name
    key_obj = {"dataset": name, "kind": ds.kind, "options": dict(ds.options()),
               "degradation": deg_cfg, "seed": seed if deg_name else None, "prep_version": PREP_VERSION}
    if sized:   # SCGAN's protocol adds nothing: earlier folders keep their keys
        key_obj["protocol"] = protocol.record()
    key, _ = shard.from_main(lambda: prepare_stage_dir(ddir, key_obj))
    job = DatasetJob(name, dict(ds.options()), str(root) if root else None, deg_name, seed, str(ddir))
    result = PreparedDataset(name, ds.kind, ddir, key, manifest, degradation=deg_cfg, full_items=len(whole))
    result.failures += [Failure("annotation", name, "", "-", src, why) for src, why in manifest.rejected]

    sources = list(dict.fromkeys(it.source for it in manifest.items))
    digests: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    for src, digest, err in _map(_digest_one, [(job, SourceItem("", s)) for s in shard.own(sources)], workers,
                                 f"{name}: hash sources", progress, threads=True):
        digests[src] = digest
        if err:
            errors[src] = err
    if shard.world > 1:
        parts = shard.gather((digests, errors))
        digests = {s: d for part, _ in parts for s, d in part.items()}
        digests = {s: digests[s] for s in sources}
        errors = {s: e for _, part in parts for s, e in part.items()}
    shard.from_main(lambda: check_integrity(name, root, digests, errors, accept_changes=accept_data_changes))

    def cached(it: SourceItem) -> dict[str, Any] | None:
        try:
            rec = read_record(ddir / "records" / f"{safe_name(it.id)}.json")
        except ValueError:   # an unusable id: _process_safe reports it as this image's failure
            return None
        ok = (rec is not None and rec.get("source_sha256") == digests[it.source] and rec.get("source") == it.source
              and files_intact(ddir, rec, ("lr", "hr")))
        return rec if ok else None

    readable = [it for it in manifest.items if digests[it.source] is not None]
    found = {it.id: cached(it) for it in shard.own(readable)}  # each rank checks its part of the cache
    if shard.world > 1:
        found = {k: v for part in shard.gather(found) for k, v in part.items()}
    todo: list[tuple] = []
    for it in manifest.items:
        if digests[it.source] is None:
            result.failures.append(Failure("load", name, "", it.id, it.source, errors[it.source]))
        elif found[it.id] is not None:
            result.records[it.id] = found[it.id]
        else:
            todo.append((job, it, digests[it.source]))
    by_id = {it.id: it for it in manifest.items}
    done = list(_map(_process_safe, shard.own(todo), workers, f"{name}: prepare", progress))
    for image_id, rec, err in (r for part in shard.gather(done) for r in part) if shard.world > 1 else done:
        if rec is None:
            result.failures.append(Failure("load", name, "", image_id, by_id[image_id].source, err))
        else:
            result.records[image_id] = rec
            result.recomputed += 1
    order = {it.id: i for i, it in enumerate(manifest.items)}
    result.records = dict(sorted(result.records.items(), key=lambda kv: order[kv[0]]))
    return result
