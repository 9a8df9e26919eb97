"""``scgan-bench run``: prepare datasets, super-resolve with every method, score, summarise.

Output folder layout (everything is a cache; see :mod:`scgan_bench.run.store`)::

    <out>/run.json                     config, versions, keys, counts, status
    <out>/data/<dataset>/{hr,lr}/*.png  HR (synthetic sets) and LR inputs; records/ hold the
                                       degradation parameters and sha256 of each image
    <out>/sr/<dataset>/<method>/*.png   SR outputs, quantised once to uint8
    <out>/metrics/<dataset>/<method>/<metric>.json   per-image values
    <out>/results.csv                  long format: dataset, method, metric, image_id, value
    <out>/summary.csv, summary.md      mean / std / n per (dataset, method, metric)
    <out>/failures.csv                 every image that failed, with the stage and reason
"""
from __future__ import annotations

import csv
import io
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from .. import __version__
from ..reports.comparable import run_caveats
from ..errors import DataIntegrityError, Interrupted, UsageError
from ..protocols import EvalProtocol, get_protocol
from ..settings import Settings, using
from ..assets.statefiles import StateFileError
from ..io.image_io import atomic_write_text
from ..interfaces import NoReferenceMetric, PairedMetric, ReferenceMethod, SetMetric
from .parallel import worker_pool
from .prepare import Failure, PreparedDataset, prepare_dataset
from ..registries import DATASETS, METHODS, METRICS, load_plugins
from .runlock import run_lock
from .scoring import MetricUnavailable, score_method, score_set
from .shard import SINGLE, Shard
from .store import remove_temp_files
from .summary import Cell, count_notes, notes_csv, results_csv, summary_csv, summary_markdown
from .superres import run_method
from ..assets.weights import unofficial


@dataclass
class RunConfig:
    """Everything ``scgan-bench run`` takes."""

    datasets: list[str]
    methods: list[str]
    metrics: list[str]
    out: Path
    seed: int = 0
    workers: int = 1
    batch_size: int = 32
    device: str = "cpu"
    limit: int | None = None
    roots: dict[str, Path] = field(default_factory=dict)
    degradations: dict[str, str] = field(default_factory=dict)
    references: dict[str, str] = field(default_factory=dict)
    dataset_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    accept_data_changes: bool = False
    progress: bool = True
    wait: bool = False  # wait for another process's lock on ``out`` instead of stopping
    only_this_run: bool = False  # outputs cover this invocation only (else earlier still-valid results stay)
    tf32: bool = False  # CUDA only: allow TF32 float32 arithmetic (scgan_bench.run.precision); off = strict float32
    #: what a method is given and returns (scgan_bench.protocols): scgan-sr (16 -> 64, the paper's) or bfr-512
    protocol: str = "scgan-sr"
    # what the run may read or fetch (scgan_bench.settings); None: the environment's default
    max_pixels: int | None = None    # decompression-bomb guard ($SCGAN_BENCH_MAX_PIXELS, default 50 M)
    offline: bool | None = None      # never download weights ($SCGAN_BENCH_OFFLINE)
    follow_links: bool | None = None  # read sources that resolve outside a dataset root ($SCGAN_BENCH_FOLLOW_LINKS)

    def settings(self) -> Settings:
        """The environment's settings (read once, here) with this config's explicit choices."""
        return Settings.from_env().overridden(max_pixels=self.max_pixels, offline=self.offline,
                                              follow_links=self.follow_links)


@dataclass
class RunResult:
    out: Path
    cells: list[Cell]
    failures: list[Failure]
    recomputed: dict[str, int]
    unavailable: dict[str, str]
    summary_md: str
    #: why some numbers are not comparable with published ones (:func:`scgan_bench.reports.comparable.run_caveats`)
    caveats: dict[str, list[str]] = field(default_factory=dict)
    #: ``run --only-this-run``: the folder holding this invocation's own outputs (``out`` keeps everything)
    this_run: Path | None = None


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; anything else is checked."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda[:N], got {device!r}")
    return device


def _versions() -> dict[str, str]:
    import numpy
    import PIL
    import scipy
    import skimage
    import torch

    return {"scgan_bench": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "torch": torch.__version__, "numpy": numpy.__version__, "pillow": PIL.__version__,
            "scipy": scipy.__version__, "scikit-image": skimage.__version__}


def validate(cfg: RunConfig) -> None:
    """Check every name before any work starts (unknown names -> UsageError with did-you-mean);
    ``dir:NAME=DIR`` methods are registered and named ``NAME``."""
    from ..methods.folder import expand_folder_methods

    load_plugins()
    cfg.methods = expand_folder_methods(cfg.methods)
    for n in cfg.datasets:
        DATASETS.get(n)
    for n in cfg.methods:
        METHODS.get(n)
    for n in cfg.method_options:
        if METHODS.canonical(n) not in [METHODS.canonical(m) for m in cfg.methods]:
            raise UsageError(f"an option names method {n!r}, which is not in --methods ({','.join(cfg.methods)})")
    for n in cfg.metrics:
        METRICS.get(n)
    from ..metrics.composite import with_parts

    cfg.metrics = with_parts(cfg.metrics, METRICS.get)
    for n in cfg.references.values():
        DATASETS.get(n)
    refs = {*cfg.references.values(), *(DATASETS.get(d).default_reference for d in cfg.datasets)} - {None}
    for n in [*cfg.roots, *cfg.dataset_options]:
        if n not in cfg.datasets and n not in refs:
            raise UsageError(f"an option names dataset {n!r}, which is neither in --datasets "
                             f"({','.join(cfg.datasets)}) nor a reference set")
    for n in [*cfg.degradations, *cfg.references]:
        if n not in cfg.datasets:
            raise UsageError(f"an option names dataset {n!r}, which is not in --datasets "
                             f"({','.join(cfg.datasets)})")
    if cfg.workers < 1 or cfg.batch_size < 1:
        raise UsageError("--workers and --batch-size must be >= 1")
    if cfg.limit is not None and cfg.limit < 1:
        raise UsageError("--limit must be >= 1")
    cfg.protocol = get_protocol(cfg.protocol).name
    cfg.settings()  # a bad pixel limit is a usage error now, not a failure per image


def run_benchmark(cfg: RunConfig, shard: Shard | None = None) -> RunResult:
    """Run the whole benchmark; an identical second call recomputes nothing. The run folder is
    locked for the duration (:mod:`.runlock`): a second run on it stops (or waits, ``cfg.wait``).
    Under torchrun the ranks share the work (:mod:`.shard`; ``shard`` defaults to torchrun's world)
    and every rank returns the same result; rank 0 holds the lock and writes the folder's files."""
    from .shard import session

    validate(cfg)
    with session(shard) as shard, using(cfg.settings()):
        return _run_sharded(cfg, shard)


def _run_sharded(cfg: RunConfig, shard: Shard) -> RunResult:
    from contextlib import ExitStack

    from .precision import fp32_precision

    device = shard_device(resolve_device(cfg.device), shard)
    out = Path(cfg.out)
    with ExitStack() as lock:
        def take_lock() -> None:
            lock.enter_context(run_lock(out, wait=cfg.wait))
            remove_temp_files(out)  # what interrupted atomic writes left (we hold the folder alone)

        shard.from_main(take_lock)
        try:
            with worker_pool(cfg.workers), fp32_precision(device, cfg.tf32):  # dlib's metrics over --workers
                return _run_locked(cfg, out, device, shard)
        except BaseException as exc:
            if shard.main:
                _mark_stopped(out, exc)
            raise


def shard_device(device: str, shard: Shard) -> str:
    """A rank's device: ``cuda`` under torchrun is ``cuda:LOCAL_RANK`` (one GPU per rank)."""
    if shard.world == 1 or not device.startswith("cuda"):
        return device
    from ..training.engine import rank_device

    return str(rank_device(device))


class StageLog:
    """Per-stage counts and seconds: kept for ``run.json`` (``stages``) and, when stderr is not a
    terminal (batch jobs, logs), printed one line per stage (progress bars are off there)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.rows: list[dict[str, Any]] = []
        self.t0 = time.perf_counter()

    def lines(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return not (isatty and isatty())

    def done(self, stage: str, what: str, count: int, seconds: float, **extra: Any) -> None:
        row = {"stage": stage, "what": what, "count": count, "seconds": round(seconds, 3), **extra}
        self.rows.append(row)
        if self.lines():
            more = "".join(f", {k} {v}" for k, v in extra.items())
            print(f"scgan-bench [{time.perf_counter() - self.t0:8.1f} s] {stage} {what}: {count} in "
                  f"{seconds:.1f} s{more}", file=self.stream, flush=True)


def _mark_stopped(out: Path, exc: BaseException) -> None:
    """Record in run.json why a run stopped: ``failed`` with the error, or ``interrupted``."""
    try:
        meta = json.loads((out / "run.json").read_text())
    except (OSError, ValueError):
        return
    if meta.get("status") == "failed":
        return  # already recorded (e.g. a dataset with no scored image), with its reason
    interrupted = isinstance(exc, KeyboardInterrupt)
    why = f" ({exc})" if isinstance(exc, Interrupted) else ""
    meta.update(status="interrupted" if interrupted else "failed",
                error=f"interrupted{why}; rerun the same command to resume" if interrupted else
                f"{type(exc).__name__}: {exc}" if not isinstance(exc, UsageError) else str(exc),
                finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    try:
        atomic_write_text(out / "run.json", json.dumps(meta, indent=1, default=str), durable=True)
    except OSError:
        pass  # the disk that failed the run may fail this too; the exception still reaches the caller


def _prepare_all(cfg: RunConfig, out: Path, log: StageLog, shard: Shard = SINGLE) -> list[PreparedDataset]:
    """Prepare every dataset; the ones that cannot be read (missing, wrong layout) are reported
    together, with the generic folder datasets as the alternative."""
    prepared, problems = [], []
    for name in cfg.datasets:
        t = time.perf_counter()
        try:
            prepared.append(prepare_dataset(name, out=out, seed=cfg.seed, root=cfg.roots.get(name),
                                            options=cfg.dataset_options.get(name),
                                            degradation=cfg.degradations.get(name), limit=cfg.limit,
                                            workers=cfg.workers, accept_data_changes=cfg.accept_data_changes,
                                            progress=cfg.progress, shard=shard,
                                            protocol=get_protocol(cfg.protocol)))
            p = prepared[-1]
            log.done("prepare", name, len(p.records), time.perf_counter() - t, decoded=p.recomputed,
                     failed=len([f for f in p.failures if f.dataset == name]))
        except (DataIntegrityError, StateFileError):   # the data changed, or the lock is damaged: said alone
            raise
        except UsageError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise UsageError(f"{len(problems)} of {len(cfg.datasets)} dataset(s) cannot be read:\n  "
                         + "\n  ".join(problems) + "\nfaces in another layout: --datasets folder --root folder=DIR "
                         "(HR faces, degraded as the paper) or folder-lr (real LR faces); `scgan-bench list datasets`")
    return prepared


def _run_locked(cfg: RunConfig, out: Path, device: str, shard: Shard = SINGLE) -> RunResult:
    """The run's stages, top to bottom, with every image decoded once (:class:`.image_io.DecodeCache`; its
    counts in run.json's ``decoded_images``). Each stage reads the config and adds to ``run`` (what
    run.json, the tables and the result will say)."""
    from ..io.image_io import decode_cache
    from .accumulate import previous

    if not shard.main:  # one voice: rank 0 shows progress and stage lines, and writes the folder's files
        cfg = replace(cfg, progress=False)
    with decode_cache() as images:
        started = time.time()
        earlier = {} if not shard.main else previous(out)  # --only-this-run too: a view, never a deletion
        run = _start(cfg, out, shard, earlier, started)                  # run.json: running
        prepared = _prepare_all(cfg, out, run.log, shard)                # LR / HR pairs (prepare.py)
        _record_datasets(run, cfg, prepared, shard)
        methods = _load_methods(run, cfg, device)                        # SR methods (the METHODS registry)
        metrics = _check_metrics(run, cfg)                               # metrics available here
        run.meta["weights"] = _weights_in_use()
        get_metric = _metric_builder(device)
        references = _reference_sets(run, cfg, prepared, metrics, shard)  # HR sets behind FID / KID
        for data in prepared:
            for name in cfg.methods:
                _evaluate(run, cfg, data, name, methods.get(name), metrics, references, get_metric, out, device,
                          shard, several=len(prepared) > 1)               # SR (superres.py), scores (scoring.py)
        return _finish(run, cfg, out, prepared, earlier, images, shard)  # tables (summary.py, accumulate.py)


@dataclass
class _Tally:
    """What a run gathers as its stages go: run.json's record, the tables' cells and rows, the failures."""

    meta: dict[str, Any]
    log: StageLog
    started: float
    failures: list[Failure] = field(default_factory=list)
    recomputed: dict[str, int] = field(default_factory=lambda: {"images_prepared": 0, "images_super_resolved": 0,
                                                                 "metric_values": 0})
    unavailable: dict[str, str] = field(default_factory=dict)
    rows: list[tuple[str, str, str, str, float]] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    note_rows: list[tuple[str, str, str, dict]] = field(default_factory=list)
    note_counts: dict[tuple[str, str], str] = field(default_factory=dict)
    #: the input size the protocol gives each method (bfr-512: 512, or 128 for an x4 model)
    given: dict[str, int] = field(default_factory=dict)


def _start(cfg: RunConfig, out: Path, shard: Shard, earlier: dict, started: float) -> _Tally:
    """run.json says ``running`` (keeping, as ``last_complete``, what the folder's CSVs describe until this
    invocation replaces them)."""
    meta: dict[str, Any] = {"status": "running", "config": _jsonable(asdict(cfg)),
                            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "versions": _versions(), "datasets": {}, "methods": {}, "metrics": {}}
    if shard.world > 1:
        meta["shards"] = shard.world
    protocol = get_protocol(cfg.protocol)
    before = (earlier.get("meta", {}).get("protocol") or {}).get("name", "scgan-sr")
    if earlier.get("meta") and before != protocol.name:
        raise UsageError(f"{out} holds a run under protocol {before}; this run is {protocol.name}: give it its own "
                         "--out (one protocol per run folder: their images and numbers differ)")
    if not protocol.is_default:   # SCGAN's protocol adds nothing: earlier run.json files read the same
        meta["protocol"] = protocol.record()
    last = {k: v for k, v in earlier.get("meta", {}).items() if k != "last_complete"}
    if shard.main:
        atomic_write_text(out / "run.json", json.dumps({**meta, "last_complete": last} if last else meta, indent=1,
                                                       default=str))
    return _Tally(meta, StageLog(None if shard.main else io.StringIO()), started)


def _record_datasets(run: _Tally, cfg: RunConfig, prepared: list[PreparedDataset], shard: Shard) -> None:
    """Each prepared set's failures, counts and manifest in run.json; its ids for ``export-lr``."""
    for p in prepared:
        run.failures += p.failures
        if shard.main:
            _write_if_changed(p.dir / "ids.txt", "".join(f"{i}\n" for i in p.records))  # for export-lr
        run.recomputed["images_prepared"] += p.recomputed
        run.meta["datasets"][p.name] = {"kind": p.kind, "key": p.key, "images": len(p.records),
                                        "manifest_items": len(p.manifest), "manifest_sha256": p.manifest.digest(),
                                        "full_manifest_items": p.full_items, "limit": cfg.limit,
                                        "manifest": dict(p.manifest.header), "degradation": p.degradation}


def _load_methods(run: _Tally, cfg: RunConfig, device: str) -> dict[str, Any]:
    """Every available method, built on ``device``; one that is missing files or fails to load is
    unavailable with the reason (the method's state, not the run's)."""
    methods: dict[str, Any] = {}
    protocol = get_protocol(cfg.protocol)
    for name in cfg.methods:
        spec = METHODS.get(name)
        avail = spec.check(**cfg.method_options.get(name, {}))
        if not avail.ok:
            run.unavailable[f"method:{name}"] = avail.reason
            continue
        try:
            methods[name] = spec.create(device=device, protocol=protocol, **cfg.method_options.get(name, {}))
            try:
                run.given[name] = protocol.lr_size if protocol.is_default else protocol.input_for(methods[name].scale)
            except UsageError as exc:   # its scale cannot reach the protocol's sizes: said as such, not as a load error
                methods.pop(name)
                run.unavailable[f"method:{name}"] = f"not run under protocol {protocol.name}: {exc}"
                continue
            fp = _with_protocol(_checked_fingerprint(name, methods[name]), protocol, run.given[name],
                                methods[name].scale)
            run.meta["methods"][name] = {"summary": spec.summary, "license": spec.license, "fingerprint": fp,
                                         "unofficial_weights": unofficial(fp.get("weights") or {})}
            bridge = getattr(methods[name], "bridge", None)
            if getattr(bridge, "mode", None) == "bicubic" and getattr(bridge, "official_resizer", "pil-bicubic") \
                    != "pil-bicubic":  # the tables' notes say that published numbers used the official resize
                run.meta["methods"][name]["official_bridge"] = bridge.official_resizer
        except Exception as exc:  # noqa: BLE001 (a checkpoint that fails to load: the method, not the run)
            methods.pop(name, None)
            run.unavailable[f"method:{name}"] = f"could not be loaded: {type(exc).__name__}: {exc}"
    return methods


def _check_metrics(run: _Tally, cfg: RunConfig) -> dict[str, Any]:
    """The specs of the metrics available here; every metric's version, convention and state in run.json."""
    metric_specs = {}
    for name in cfg.metrics:
        spec = METRICS.get(name)
        avail = spec.availability()
        if not avail.ok:
            run.unavailable[f"metric:{name}"] = avail.reason
        else:
            metric_specs[name] = spec
        run.meta["metrics"][name] = {"version": spec.version, "higher_is_better": spec.higher_is_better,
                                     "convention": spec.convention, "available": avail.ok,
                                     "reason": avail.reason, "backend": spec.backend,
                                     "unofficial_weights": unofficial(spec.fingerprint().get("weights", {}))
                                     if avail.ok else {}}
    return metric_specs


def _reference_sets(run: _Tally, cfg: RunConfig, prepared: list[PreparedDataset], metric_specs: Mapping[str, Any],
                    shard: Shard) -> dict[str, Any]:
    """The HR set each dataset's FID / KID compare against (prepared here), recorded in run.json."""
    references = _references(cfg, prepared, metric_specs, run.failures, shard)
    run.meta["references"] = {k: v if isinstance(v, str) else v.name for k, v in references.items()}
    ref_metrics = [n for n, s in metric_specs.items() if s.kind == "set" and s.reference == "hr-set"]
    run.meta["references_detail"] = {k: {"name": v.name, "images": len(v.records), "full_manifest_items": v.full_items,
                                         "limit": cfg.limit, "metrics": ref_metrics}
                                     for k, v in references.items() if not isinstance(v, str)}
    return references


def _evaluate(run: _Tally, cfg: RunConfig, data: PreparedDataset, mname: str, method: Any,
              metric_specs: Mapping[str, Any], references: dict[str, Any], get_metric, out: Path, device: str,
              shard: Shard, several: bool) -> None:
    """One (dataset, method): its SR images, then a cell per metric (unavailable / n/a cells say why)."""
    if method is None:
        why = f"method {mname} unavailable: {run.unavailable[f'method:{mname}']}"
        run.cells += [_cell(data, mname, k, status="unavailable", note=why) for k in cfg.metrics]
        return
    if isinstance(method, ReferenceMethod) and data.kind == "real":
        run.cells += [_cell(data, mname, k, status="n/a", note=f"{mname} needs ground truth") for k in cfg.metrics]
        return
    srr = _super_resolve(run, cfg, data, mname, method, out, device, shard, several)
    applicable = {n: s for n, s in metric_specs.items() if data.kind == "synthetic" or not s.needs_hr}
    per_image = {n: s for n, s in applicable.items() if s.kind == "image"}
    t = time.perf_counter()
    values, mfail = score_method(data, srr, per_image, out, get_metric, progress=cfg.progress, shard=shard)
    run.failures += mfail
    if per_image:
        run.log.done("metrics", f"{data.name} {mname} {','.join(per_image)}",
                     sum(len(v.values) for v in values.values()), time.perf_counter() - t,
                     computed=sum(v.recomputed for v in values.values()))
    for k in cfg.metrics:
        run.cells.append(_metric_cell(run, cfg, data, srr, mname, k, applicable, values, references, get_metric,
                                      out, shard))


def _super_resolve(run: _Tally, cfg: RunConfig, data: PreparedDataset, mname: str, method: Any, out: Path,
                   device: str, shard: Shard, several: bool):
    """The method's SR images of the set (cached in ``sr/``), with its failures and per-image notes."""
    t = time.perf_counter()
    protocol = get_protocol(cfg.protocol)
    srr = run_method(method, data, out, fingerprint=_with_protocol(dict(method.fingerprint()), protocol,
                                                                   run.given[mname], method.scale),
                     batch_size=cfg.batch_size, device=device, progress=cfg.progress, shard=shard,
                     given_size=None if protocol.is_default else run.given[mname])
    run.log.done("sr", f"{data.name} {mname}", len(srr.records), time.perf_counter() - t, computed=srr.recomputed,
                 failed=len(srr.failures))
    run.failures += srr.failures
    if hasattr(method, "extra_files") and (not several or method.has_own_folder(data.name)):
        run.failures += [Failure("sr", data.name, mname, "-", str(p),
                                 f"extra output: no image of {data.name} has the id {p.stem!r}")
                         for p in method.extra_files(data.name, list(data.records))]
    run.recomputed["images_super_resolved"] += srr.recomputed
    if srr.notes():
        run.note_rows += [(data.name, mname, i, n) for i, n in srr.notes().items()]
        run.note_counts[(data.name, mname)] = count_notes(srr.notes())
    return srr


def _metric_cell(run: _Tally, cfg: RunConfig, data: PreparedDataset, srr, mname: str, k: str,
                 applicable: Mapping[str, Any], values: dict, references: dict[str, Any], get_metric, out: Path,
                 shard: Shard) -> Cell:
    """One metric's cell of (dataset, method): per-image values, a composite, or a set metric."""
    spec = METRICS.get(k)
    if f"metric:{k}" in run.unavailable:
        return _cell(data, mname, k, status="unavailable", note=run.unavailable[f"metric:{k}"])
    if k not in applicable:
        return _cell(data, mname, k, status="n/a", note="full-reference metric; this set has no ground truth")
    if spec.kind == "image" and values[k].unavailable:
        run.unavailable[f"metric:{k}"] = values[k].unavailable
        return _cell(data, mname, k, status="unavailable", note=values[k].unavailable)
    if spec.kind == "image":
        mv = values[k]
        run.recomputed["metric_values"] += mv.recomputed
        run.rows += [(data.name, mname, k, i, v) for i, v in mv.values.items()]
        empty = {} if mv.values else {"status": "failed", "note": "every image failed; see failures.csv"}
        return _cell(data, mname, k, values=tuple(mv.values.values()), n_failed=len(data.manifest) - len(mv.values),
                     **empty)
    if spec.kind == "composite":
        return _composite_cell(data, mname, k, spec, run.cells, run.rows)
    t = time.perf_counter()
    cell = _score_set_cell(data, srr, k, spec, out, get_metric, references, run.rows, run.failures, run.recomputed,
                           cfg.progress, shard)
    run.log.done("metric", f"{data.name} {mname} {k}", cell.n, time.perf_counter() - t, status=cell.status)
    return cell


def _finish(run: _Tally, cfg: RunConfig, out: Path, prepared: list[PreparedDataset], earlier: dict,
            images, shard: Shard) -> RunResult:
    """Merge with the folder's still-valid earlier results, write results / summary / failures and run.json
    (rank 0; the other ranks wait for it), and say whether some dataset ended with no scored image."""
    from .accumulate import merge

    meta, cells, rows, note_rows, failures = run.meta, run.cells, run.rows, run.note_rows, run.failures
    n_images = {p.name: len(p.records) for p in prepared}
    empty = [_empty_reason(p) for p in prepared if not p.records]
    if not shard.main:  # rank 0 writes the outputs; the others wait for them and end as it does
        shard.barrier()
        if empty:
            raise UsageError("no image could be scored for " + "; ".join(empty))
        return RunResult(out, cells, failures, run.recomputed, run.unavailable,
                         summary_markdown(cells, {}, n_images, {}))
    view = None
    if cfg.only_this_run:  # this invocation's outputs alone, beside (never instead of) the folder's
        import copy

        vmeta = copy.deepcopy(meta)
        vmeta["comparability"] = run_caveats(vmeta)
        vmeta["view_of"] = str(out)
        view = (vmeta, list(cells), list(rows), list(note_rows), list(failures),
                _with_protocol_line(_summary_of(cells, note_rows, dict(run.note_counts), n_images,
                                                vmeta["comparability"]), cfg))
    meta["kept_from_earlier_runs"] = [list(k) for k in merge(earlier, out, meta, cells, rows, note_rows, failures,
                                                               n_images)]
    meta["comparability"] = run_caveats(meta)
    md = _with_protocol_line(_summary_of(cells, note_rows, run.note_counts, n_images, meta["comparability"]), cfg)
    t = time.perf_counter()
    _write_outputs(out, cells, rows, note_rows, failures, md)
    run.log.done("write", "results.csv, summary, failures.csv", len(rows), time.perf_counter() - t, cells=len(cells))
    meta["stages"] = run.log.rows
    meta["decoded_images"] = images.stats()
    meta.update(status="failed" if empty else "complete", outputs_written=True,
                finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                seconds=round(time.time() - run.started, 3), recomputed=run.recomputed,
                unavailable=run.unavailable, failures=len(failures))
    if empty:
        meta["error"] = "; ".join(empty)
    if view is not None:
        vmeta, vcells, vrows, vnotes, vfail, vmd = view
        vmeta.update({k: meta[k] for k in ("stages", "status", "outputs_written", "finished", "seconds", "recomputed",
                                           "unavailable") if k in meta}, failures=len(vfail))
        _write_outputs(out / THIS_RUN, vcells, vrows, vnotes, vfail, vmd)
        atomic_write_text(out / THIS_RUN / "run.json", json.dumps(vmeta, indent=1, default=str), durable=True)
    atomic_write_text(out / "run.json", json.dumps(meta, indent=1, default=str), durable=True)
    shard.barrier()
    if empty:
        raise UsageError("no image could be scored for " + "; ".join(empty) + f" (the other datasets' results are in "
                         f"{out / 'summary.md'}; every failure in {out / 'failures.csv'})")
    if view is not None:
        return RunResult(out, view[1], view[4], run.recomputed, run.unavailable, view[5], view[0]["comparability"],
                         this_run=out / THIS_RUN)
    return RunResult(out, cells, failures, run.recomputed, run.unavailable, md, meta["comparability"])


def _empty_reason(p: PreparedDataset) -> str:
    """Why a dataset ended with no image: an empty selection, or every image failing (first reason)."""
    if not len(p.manifest):
        return (f"dataset {p.name}: its manifest selected no image (`scgan-bench list datasets` and its card "
                f"say what layout it expects; any folder of faces: --datasets folder)")
    mine = [f for f in p.failures if f.dataset == p.name]
    first = f" (e.g. {mine[0].source}: {mine[0].reason})" if mine else ""
    return f"dataset {p.name}: all {len(p.manifest)} selected images failed to load{first}"


def _write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` atomically unless the file already holds it (a rerun rewrites no cached file)."""
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    atomic_write_text(path, text)


#: where ``run --only-this-run`` writes the invocation's own outputs (the folder's files keep everything)
THIS_RUN = "this_run"


def _summary_of(cells: list[Cell], note_rows: list, note_counts: dict, n_images: dict[str, int],
                caveats: dict[str, list[str]]) -> str:
    """summary.md of these cells: conventions of their metrics, counted method notes, caveats."""
    counts = dict(note_counts)
    for d, m in {(d, m) for d, m, _, _ in note_rows} - set(counts):
        counts[(d, m)] = count_notes({i: n for dd, mm, i, n in note_rows if (dd, mm) == (d, m)})
    conventions = {k: METRICS.get(k).convention for k in dict.fromkeys(c.metric for c in cells)
                   if METRICS.get(k).convention}
    shown = {c.dataset for c in cells}
    return summary_markdown(cells, conventions, {d: n for d, n in n_images.items() if d in shown}, counts, caveats)


def _write_outputs(folder: Path, cells: list[Cell], rows: list, note_rows: list, failures: list[Failure],
                   md: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "method_notes.csv", notes_csv(note_rows), durable=True)
    atomic_write_text(folder / "results.csv", results_csv(rows), durable=True)
    atomic_write_text(folder / "summary.csv", summary_csv(cells), durable=True)
    atomic_write_text(folder / "summary.md", md, durable=True)
    atomic_write_text(folder / "failures.csv", failures_csv(failures), durable=True)


def _with_protocol(fp: dict[str, Any], protocol: EvalProtocol, given: int, scale: int) -> dict[str, Any]:
    """A method's fingerprint under ``protocol``: SCGAN's adds nothing (earlier caches stay valid); another
    states what the method is given (its input as stored, or downsampled for an x4 model)."""
    if protocol.is_default:
        return fp
    how = (f"the {given} px input as it is" if given == protocol.lr_size else
           f"the {protocol.lr_size} px input resized to {given} px (Pillow bicubic, antialiased, 8 bits), then x{scale}")
    return {**fp, "protocol": {**protocol.record(), "input": how}}


def _with_protocol_line(md: str, cfg: RunConfig) -> str:
    """summary.md under another protocol than SCGAN's opens with it (SCGAN's summary is unchanged)."""
    protocol = get_protocol(cfg.protocol)
    return md if protocol.is_default else f"Protocol {protocol.name}: {protocol.summary}.\n\n{md}"


def _checked_fingerprint(name: str, method: Any) -> dict[str, Any]:
    """``method.fingerprint()`` as a JSON-able dict (it enters cache keys and run.json), or a UsageError
    naming the method and what it returned."""
    fp = method.fingerprint()
    if not isinstance(fp, Mapping):
        raise UsageError(f"method {name}: fingerprint() returned {type(fp).__name__} ({fp!r:.60}), not a dict of what "
                         "determines its outputs (code version, options, weights sha256); see README 'Your own "
                         "method'")
    def path_only(o: Any) -> str:   # a path is written as text (as cache keys do); any other object is refused
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

    try:
        json.dumps(fp, sort_keys=True, default=path_only)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"method {name}: fingerprint() must hold only JSON values (str, number, bool, None, "
                         f"lists, dicts with str keys) or paths: {exc}") from None
    return dict(fp)


def _weights_in_use() -> dict[str, dict[str, str]]:
    """sha256, path and check of every weight file present here (for the run's provenance)."""
    from ..assets.weights import ASSETS, WeightsError, resolve, status

    out = {}
    for name in ASSETS:
        if status(name).state in ("verified", "unverified"):
            try:
                r = resolve(name, allow_download=False)
            except WeightsError:
                continue
            out[name] = {"sha256": r.sha256, "path": str(r.path), "check": r.check}
    return out


def _cell(data: PreparedDataset, method: str, metric: str, **kw: Any) -> Cell:
    spec = METRICS.get(metric)
    return Cell(data.name, method, metric, spec.higher_is_better, display_scale=spec.display_scale, **kw)


def _score_set_cell(data: PreparedDataset, srr, name: str, spec, out: Path, get_metric, references,
                    rows: list, failures: list, recomputed: dict, progress: bool, shard: Shard = SINGLE) -> Cell:
    ref = references.get(data.name) if spec.reference == "hr-set" else None
    if spec.reference == "hr-set" and isinstance(ref, str):
        return _cell(data, srr.method, name, status="unavailable", note=ref)
    try:
        sv, sfail = score_set(data, srr, name, spec, out, get_metric, ref, progress=progress, shard=shard)
    except MetricUnavailable as exc:
        return _cell(data, srr.method, name, status="unavailable", note=str(exc))
    except (ValueError, RuntimeError) as exc:
        failures.append(Failure("metric", data.name, srr.method, "*", name, f"{type(exc).__name__}: {exc}"))
        return _cell(data, srr.method, name, status="failed", note=f"{name}: {exc}")
    failures += sfail
    recomputed["metric_values"] += int(sv.recomputed) * (len(sv.per_image) or 1)
    rows += [(data.name, srr.method, name, i, v) for i, v in sv.per_image.items()]
    rows += [(data.name, srr.method, name + (f":{k}" if k else ""), "*", v) for k, v in sv.values.items()]
    n = len(sv.per_image) or len(srr.records)
    note = f"vs HR of {ref.name}" if ref is not None else (
        "vs published reference statistics" if spec.reference == "stats" else "")
    return _cell(data, srr.method, name, values=tuple(sv.per_image.values()), set_value=sv.values[""],
                 set_std=sv.values.get("std"), n_set=n, n_failed=len(data.manifest) - n, note=note)


def _composite_cell(data: PreparedDataset, method: str, name: str, spec, cells: list[Cell], rows: list) -> Cell:
    """A composite from its parts' cells of this dataset and method (computed before it in the run)."""
    from ..metrics.composite import combine_cells

    got = {c.metric: c for c in cells if (c.dataset, c.method) == (data.name, method) and c.metric in spec.parts}
    for p in spec.parts:
        c = got.get(p)
        if c is None or c.status != "ok" or not math.isfinite(c.mean):
            status = "unavailable" if c is None or c.status in ("unavailable", "n/a") else "failed"
            why = "not computed in this run" if c is None else (c.note or c.status)
            return _cell(data, method, name, status=status, note=f"part {p}: {why}")
    v = combine_cells(spec, {p: got[p].mean for p in spec.parts})
    rows.append((data.name, method, name, "*", v))
    return _cell(data, method, name, set_value=v, n_set=min(got[p].n for p in spec.parts),
                 n_failed=max(got[p].n_failed for p in spec.parts), note=f"from {', '.join(spec.parts)}")


def _metric_builder(device: str):
    """Build each metric once per run, lazily; metrics that use the same feature extractor share it."""
    built: dict[str, Any] = {}
    extractors: dict[str, Any] = {}

    failed: dict[str, str] = {}

    def get(name: str) -> Any:
        if name in failed:
            raise MetricUnavailable(failed[name])
        if name not in built:
            spec = METRICS.get(name)
            try:
                m = spec.create(device=device)
            except Exception as exc:  # noqa: BLE001 (weights that fail to load: the metric, not the run)
                failed[name] = f"{name} could not be loaded: {type(exc).__name__}: {exc}"
                raise MetricUnavailable(failed[name]) from exc
            expected = SetMetric if spec.kind == "set" else (PairedMetric, NoReferenceMetric)
            if not isinstance(m, expected):
                raise TypeError(f"metric {name!r} ({type(m).__name__}) does not implement the "
                                f"protocol its spec declares ({spec.kind})")
            if spec.kind == "set":
                m.extractor = extractors.setdefault(m.extractor.key, m.extractor)
            built[name] = m
        return built[name]

    return get


def _references(cfg: RunConfig, prepared: list[PreparedDataset], metric_specs: Mapping[str, Any],
                failures: list[Failure], shard: Shard = SINGLE) -> dict[str, Any]:
    """The HR set each dataset's FID/KID compare against: its own HR (synthetic sets) or a configured
    HR dataset (real sets; prepared here if it is not part of the run). A reason string when none."""
    out: dict[str, Any] = {}
    if not any(s.kind == "set" and s.reference == "hr-set" for s in metric_specs.values()):
        return out
    by_name = {p.name: p for p in prepared}
    for p in prepared:
        if p.kind == "synthetic":
            out[p.name] = p
            continue
        ref = cfg.references.get(p.name) or DATASETS.get(p.name).default_reference
        if ref is None:
            out[p.name] = (f"no HR reference set for real-world set {p.name}: pass "
                           f"--reference {p.name}=DATASET")
            continue
        if ref not in by_name:
            try:
                by_name[ref] = prepare_dataset(ref, out=cfg.out, seed=cfg.seed, root=cfg.roots.get(ref),
                                               options=cfg.dataset_options.get(ref), limit=cfg.limit,
                                               workers=cfg.workers, progress=cfg.progress,
                                               accept_data_changes=cfg.accept_data_changes, shard=shard,
                                               protocol=get_protocol(cfg.protocol))
                failures += by_name[ref].failures
            except UsageError as exc:
                out[p.name] = f"reference set {ref} for {p.name} unavailable: {exc}"
                continue
        if by_name[ref].kind != "synthetic":
            out[p.name] = f"reference set {ref} has no HR images"
        else:
            out[p.name] = by_name[ref]
    return out


def failures_csv(failures: list[Failure]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("stage", "dataset", "method", "image_id", "source", "reason"))
    for f in failures:
        w.writerow((f.stage, f.dataset, f.method, f.image_id, f.source, f.reason))
    return buf.getvalue()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
