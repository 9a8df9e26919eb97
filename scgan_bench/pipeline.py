"""``scgan-bench run``: prepare datasets, super-resolve with every method, score, summarise.

Output folder layout (everything is a cache; see :mod:`scgan_bench.store`)::

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
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from . import __version__
from .errors import UsageError
from .image_io import atomic_write_text
from .prepare import Failure, PreparedDataset, prepare_dataset
from .registries import DATASETS, METHODS, METRICS, load_plugins
from .scoring import score_method
from .summary import Cell, results_csv, summary_csv, summary_markdown
from .superres import run_method


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
    dataset_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    accept_data_changes: bool = False
    progress: bool = True


@dataclass
class RunResult:
    out: Path
    cells: list[Cell]
    failures: list[Failure]
    recomputed: dict[str, int]
    unavailable: dict[str, str]
    summary_md: str


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
    """Check every name before any work starts (unknown names -> UsageError with did-you-mean)."""
    load_plugins()
    for n in cfg.datasets:
        DATASETS.get(n)
    for n in cfg.methods:
        METHODS.get(n)
    for n in cfg.metrics:
        METRICS.get(n)
    for n in [*cfg.roots, *cfg.degradations, *cfg.dataset_options]:
        if n not in cfg.datasets:
            raise UsageError(f"an option names dataset {n!r}, which is not in --datasets "
                             f"({','.join(cfg.datasets)})")
    if cfg.workers < 1 or cfg.batch_size < 1:
        raise UsageError("--workers and --batch-size must be >= 1")
    if cfg.limit is not None and cfg.limit < 1:
        raise UsageError("--limit must be >= 1")


def run_benchmark(cfg: RunConfig) -> RunResult:
    """Run the whole benchmark; an identical second call recomputes nothing."""
    validate(cfg)
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    meta: dict[str, Any] = {"status": "running", "config": _jsonable(asdict(cfg)),
                            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "versions": _versions(), "datasets": {}, "methods": {}, "metrics": {}}
    atomic_write_text(out / "run.json", json.dumps(meta, indent=1, default=str))

    failures: list[Failure] = []
    recomputed = {"images_prepared": 0, "images_super_resolved": 0, "metric_values": 0}
    prepared: list[PreparedDataset] = []
    for name in cfg.datasets:
        p = prepare_dataset(name, out=out, seed=cfg.seed, root=cfg.roots.get(name),
                            options=cfg.dataset_options.get(name), degradation=cfg.degradations.get(name),
                            limit=cfg.limit, workers=cfg.workers,
                            accept_data_changes=cfg.accept_data_changes, progress=cfg.progress)
        prepared.append(p)
        failures += p.failures
        recomputed["images_prepared"] += p.recomputed
        meta["datasets"][name] = {"kind": p.kind, "key": p.key, "images": len(p.records),
                                  "manifest_items": len(p.manifest), "manifest_sha256": p.manifest.digest(),
                                  "manifest": dict(p.manifest.header), "degradation": p.degradation}

    unavailable: dict[str, str] = {}
    methods = {}
    for name in cfg.methods:
        spec = METHODS.get(name)
        avail = spec.availability()
        if not avail.ok:
            unavailable[f"method:{name}"] = avail.reason
            continue
        methods[name] = spec.create(device=device)
        meta["methods"][name] = {"summary": spec.summary, "fingerprint": dict(methods[name].fingerprint())}
    metric_specs = {}
    for name in cfg.metrics:
        spec = METRICS.get(name)
        avail = spec.availability()
        if not avail.ok:
            unavailable[f"metric:{name}"] = avail.reason
        else:
            metric_specs[name] = spec
        meta["metrics"][name] = {"version": spec.version, "higher_is_better": spec.higher_is_better,
                                 "convention": spec.convention, "available": avail.ok,
                                 "reason": avail.reason}

    rows: list[tuple[str, str, str, str, float]] = []
    cells: list[Cell] = []
    for data in prepared:
        applicable = {n: s for n, s in metric_specs.items() if data.kind == "synthetic" or not s.needs_hr}
        for mname in cfg.methods:
            if mname not in methods:
                cells += [Cell(data.name, mname, k, METRICS.get(k).higher_is_better, status="unavailable",
                               note=f"method {mname}: {unavailable[f'method:{mname}']}")
                          for k in cfg.metrics]
                continue
            method = methods[mname]
            srr = run_method(method, data, out, fingerprint=method.fingerprint(),
                             batch_size=cfg.batch_size, device=device, progress=cfg.progress)
            failures += srr.failures
            recomputed["images_super_resolved"] += srr.recomputed
            values, mfail = score_method(data, srr, applicable, out, progress=cfg.progress)
            failures += mfail
            for k in cfg.metrics:
                spec = METRICS.get(k)
                if f"metric:{k}" in unavailable:
                    cells.append(Cell(data.name, mname, k, spec.higher_is_better, status="unavailable",
                                      note=f"metric {k}: {unavailable[f'metric:{k}']}"))
                    continue
                if k not in applicable:
                    cells.append(Cell(data.name, mname, k, spec.higher_is_better, status="n/a",
                                      note="full-reference metric; this set has no ground truth"))
                    continue
                mv = values[k]
                recomputed["metric_values"] += mv.recomputed
                n_failed = len(data.manifest) - len(mv.values)
                rows += [(data.name, mname, k, i, v) for i, v in mv.values.items()]
                cells.append(Cell(data.name, mname, k, spec.higher_is_better, tuple(mv.values.values()),
                                  n_failed, "ok" if mv.values else "failed",
                                  "" if mv.values else "every image failed; see failures.csv"))

    conventions = {k: METRICS.get(k).convention for k in cfg.metrics if METRICS.get(k).convention}
    md = summary_markdown(cells, conventions, {p.name: len(p.records) for p in prepared})
    atomic_write_text(out / "results.csv", results_csv(rows), durable=True)
    atomic_write_text(out / "summary.csv", summary_csv(cells), durable=True)
    atomic_write_text(out / "summary.md", md, durable=True)
    atomic_write_text(out / "failures.csv", failures_csv(failures), durable=True)
    meta.update(status="complete", finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                seconds=round(time.time() - started, 3), recomputed=recomputed,
                unavailable=unavailable, failures=len(failures))
    atomic_write_text(out / "run.json", json.dumps(meta, indent=1, default=str), durable=True)
    return RunResult(out, cells, failures, recomputed, unavailable, md)


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
