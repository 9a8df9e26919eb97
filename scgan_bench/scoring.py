"""Stage 3: per-image metric values for one (dataset, method), stored in
``<run>/metrics/<dataset>/<method>/<metric>.json``.

Each stored value carries the sha256 of the SR (and HR) PNG it was computed from and the metric's
version, so a value is reused exactly when its inputs are unchanged. SR and HR PNGs are decoded once
per image and shared by all metrics that still need that image.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from tqdm import tqdm

from .image_io import atomic_write_text, read_image
from .interfaces import MetricSpec, NoReferenceMetric, PairedMetric
from .manifest import iter_chunks
from .prepare import Failure, PreparedDataset
from .superres import SRResult


@dataclass
class MetricValues:
    metric: str
    values: dict[str, float] = field(default_factory=dict)  # id -> value, dataset order
    recomputed: int = 0


def _load_stored(path: Path, version: str) -> dict[str, list]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return data["values"] if data.get("version") == version else {}


def _encode(v: float) -> float | str:
    return v if math.isfinite(v) else repr(v)  # JSON has no inf/nan: store "inf" / "nan"


def _decode(v: float | str) -> float:
    return float(v)


def score_method(data: PreparedDataset, sr: SRResult, metrics: Mapping[str, MetricSpec],
                 out: Path, *, batch_size: int = 64, progress: bool = True
                 ) -> tuple[dict[str, MetricValues], list[Failure]]:
    """Compute (or reuse) every metric in ``metrics`` for every SR image of ``sr``."""
    mdir = out / "metrics" / data.name / sr.method
    built: dict[str, Any] = {}
    stored: dict[str, dict[str, list]] = {}
    need: dict[str, list[str]] = {}
    results: dict[str, MetricValues] = {}
    for name, spec in metrics.items():
        stored[name] = _load_stored(mdir / f"{name}.json", spec.version)
        results[name] = MetricValues(name)
        need[name] = []
        for image_id, srec in sr.records.items():
            hr_sha = data.records[image_id]["hr_sha256"] if spec.needs_hr else None
            old = stored[name].get(image_id)
            if old is not None and old[1] == srec["sr_sha256"] and old[2] == hr_sha:
                continue
            need[name].append(image_id)
    failures: list[Failure] = []
    need_sets = {k: set(v) for k, v in need.items()}
    todo = [i for i in sr.records if any(i in s for s in need_sets.values())]
    bar = tqdm(total=len(todo), desc=f"{data.name}: {sr.method}: metrics", disable=None if progress else True,
               unit="img", leave=False)
    for chunk in iter_chunks(todo, batch_size):
        srs = {i: read_image(sr.dir / sr.records[i]["sr"]) for i in chunk}
        hrs: dict[str, Any] = {}
        for name, spec in metrics.items():
            ids = [i for i in chunk if i in need_sets[name]]
            if not ids:
                continue
            metric = built.get(name) or built.setdefault(name, spec.create())
            try:
                if isinstance(metric, PairedMetric):
                    for i in ids:
                        if i not in hrs:
                            hrs[i] = read_image(data.dir / data.records[i]["hr"])
                    vals = metric.score_pairs([srs[i] for i in ids], [hrs[i] for i in ids])
                elif isinstance(metric, NoReferenceMetric):
                    vals = metric.score_images([srs[i] for i in ids])
                else:
                    raise TypeError(f"metric {name!r} implements neither PairedMetric nor "
                                    "NoReferenceMetric")
            except (ValueError, RuntimeError) as exc:
                failures.extend(Failure("metric", data.name, sr.method, i, name,
                                        f"{type(exc).__name__}: {exc}") for i in ids)
                continue
            for i, v in zip(ids, vals, strict=True):
                hr_sha = data.records[i]["hr_sha256"] if spec.needs_hr else None
                stored[name][i] = [_encode(float(v)), sr.records[i]["sr_sha256"], hr_sha]
                results[name].recomputed += 1
        bar.update(len(chunk))
    bar.close()
    for name, spec in metrics.items():
        keep = {i: stored[name][i] for i in sr.records if i in stored[name]}
        if results[name].recomputed or keep.keys() != stored[name].keys():
            atomic_write_text(mdir / f"{name}.json", json.dumps(
                {"metric": name, "version": spec.version, "higher_is_better": spec.higher_is_better,
                 "convention": spec.convention, "values": keep}, sort_keys=True))
        results[name].values = {i: _decode(v[0]) for i, v in keep.items()}
    return results, failures
