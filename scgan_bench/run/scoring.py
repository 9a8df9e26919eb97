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
from typing import Any, Callable, Mapping

from tqdm import tqdm

from . import parallel, precision
from .features import cached_features
from ..io.image_io import atomic_write_text, read_image
from ..interfaces import MetricSpec, NoReferenceMetric, PairedMetric
from ..io.manifest import stable_hash
from .prepare import Failure, PreparedDataset
from .shard import SINGLE, Shard
from .superres import SRResult


class MetricUnavailable(RuntimeError):
    """A metric could not be built here (its weights fail to load, ...): the reason, for its cells."""


@dataclass
class MetricValues:
    metric: str
    values: dict[str, float] = field(default_factory=dict)  # id -> value, dataset order
    recomputed: int = 0
    unavailable: str = ""  # why the metric could not run at all


def _load_stored(path: Path, fingerprint: Mapping[str, Any]) -> dict[str, list]:
    """Stored per-image values, if they were computed with this metric fingerprint (version, weights
    sha256, package versions); a damaged, foreign or stale file counts as empty (all recompute)."""
    try:
        data = json.loads(path.read_text())
        values = data["values"] if data.get("fingerprint") == json.loads(json.dumps(fingerprint)) else {}
        if not isinstance(values, dict) or not all(isinstance(v, list) and len(v) == 3 for v in values.values()):
            return {}
        return values
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        return {}


def _score_batch(metric: Any, name: str, ids: list[str], srs: Mapping[str, Any], hrs: Mapping[str, Any]) -> list[float]:
    if isinstance(metric, PairedMetric):
        vals = parallel.call(metric, "score_pairs", [srs[i] for i in ids], [hrs[i] for i in ids])
    elif isinstance(metric, NoReferenceMetric):
        vals = parallel.call(metric, "score_images", [srs[i] for i in ids])
    else:
        raise TypeError(f"metric {name!r} implements neither PairedMetric nor NoReferenceMetric")
    vals = [float(v) for v in vals]
    if len(vals) != len(ids):
        raise ValueError(f"metric {name!r} returned {len(vals)} values for {len(ids)} images")
    return vals


def _score_isolated(metric: Any, name: str, ids: list[str], srs: Mapping[str, Any], hrs: Mapping[str, Any]
                    ) -> dict[str, float | str]:
    """Score a batch; if it fails, score its images one by one, so one bad image (e.g. a flat face
    whose NIQE statistics are singular) fails alone. Values, or the error text per image."""
    try:
        return dict(zip(ids, _score_batch(metric, name, ids, srs, hrs)))
    except Exception as exc:  # noqa: BLE001 (isolated below, reported per image)
        if len(ids) == 1:
            return {ids[0]: f"{type(exc).__name__}: {exc}"}
    out: dict[str, float | str] = {}
    for i in ids:
        try:
            out[i] = _score_batch(metric, name, [i], srs, hrs)[0]
        except Exception as exc:  # noqa: BLE001
            out[i] = f"{type(exc).__name__}: {exc}"
    return out


def _encode(v: float) -> float | str:
    return v if math.isfinite(v) else repr(v)  # JSON has no inf/nan: store "inf" / "nan"


def _decode(v: float | str) -> float:
    return float(v)


def score_method(data: PreparedDataset, sr: SRResult, metrics: Mapping[str, MetricSpec],
                 out: Path, get_metric: Callable[[str], Any], *, batch_size: int = 64,
                 progress: bool = True, shard: Shard = SINGLE) -> tuple[dict[str, MetricValues], list[Failure]]:
    """Compute (or reuse) every per-image metric in ``metrics`` for every SR image of ``sr``;
    ``get_metric(name)`` builds a metric once per run (only when a value is missing). Sharded
    (:mod:`.shard`): each rank scores its batches, rank 0 writes the metric files; every rank returns
    every value."""
    mdir = out / "metrics" / data.name / sr.method
    stored: dict[str, dict[str, list]] = {}
    need: dict[str, list[str]] = {}
    results: dict[str, MetricValues] = {}
    fingerprints: dict[str, dict[str, Any]] = {}
    broken: dict[str, str] = {}
    for name, spec in metrics.items():
        results[name] = MetricValues(name)
        need[name] = []
        try:
            fingerprints[name] = {**spec.fingerprint(), **precision.tag()}
        except Exception as exc:  # noqa: BLE001 (its weights vanished or changed since the availability check)
            broken[name] = f"{name}: {type(exc).__name__}: {exc}"
            stored[name] = {}
            continue
        stored[name] = _load_stored(mdir / f"{name}.json", fingerprints[name])
        for image_id, srec in sr.records.items():
            hr_sha = data.records[image_id]["hr_sha256"] if spec.needs_hr else None
            old = stored[name].get(image_id)
            if old is not None and old[1] == srec["sr_sha256"] and old[2] == hr_sha:
                continue
            need[name].append(image_id)
    failures: list[Failure] = []
    need_sets = {k: set(v) for k, v in need.items()}
    todo = [i for i in sr.records if any(i in s for s in need_sets.values())]
    batches = list(shard.own_batches(todo, batch_size))
    new: dict[str, dict[str, list]] = {name: {} for name in metrics}  # this rank's values
    bar = tqdm(total=sum(map(len, batches)), desc=f"{data.name}: {sr.method}: metrics", disable=None if progress else True,
               unit="img", leave=False)
    paired = [n for n, spec in metrics.items() if spec.needs_hr]

    def load(chunk: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        srs = {i: read_image(sr.dir / sr.records[i]["sr"]) for i in chunk}
        hrs = {i: read_image(data.dir / data.records[i]["hr"]) for i in chunk
               if any(i in need_sets[n] for n in paired) and data.records[i].get("hr")}
        return srs, hrs

    for chunk, (srs, hrs) in parallel.prefetched(batches, load):  # next decodes meanwhile
        for name, spec in metrics.items():
            ids = [i for i in chunk if i in need_sets[name]]
            if not ids:
                continue
            if name in broken:
                continue
            try:
                metric = get_metric(name)
            except MetricUnavailable as exc:
                broken[name] = str(exc)
                continue
            if isinstance(metric, PairedMetric):
                for i in ids:
                    if i not in hrs:
                        hrs[i] = read_image(data.dir / data.records[i]["hr"])
            scored = _score_isolated(metric, name, ids, srs, hrs)
            for i, v in scored.items():
                if isinstance(v, str):
                    failures.append(Failure("metric", data.name, sr.method, i, name, v))
                    continue
                hr_sha = data.records[i]["hr_sha256"] if spec.needs_hr else None
                new[name][i] = [_encode(v), sr.records[i]["sr_sha256"], hr_sha]
        bar.update(len(chunk))
    bar.close()
    parts = shard.gather((new, failures, broken)) if shard.world > 1 else [(new, failures, broken)]
    failures = [f for _, fails, _ in parts for f in fails]
    broken = {k: v for *_, b in parts for k, v in b.items()}
    for part, _, _ in parts:
        for name, values in part.items():
            stored[name].update(values)
            results[name].recomputed += len(values)
    for name, spec in metrics.items():
        if name in broken:
            results[name].unavailable = broken[name]
            continue
        keep = {i: stored[name][i] for i in sr.records if i in stored[name]}
        if shard.main and (results[name].recomputed or keep.keys() != stored[name].keys()):
            atomic_write_text(mdir / f"{name}.json", json.dumps(
                {"metric": name, "version": spec.version, "fingerprint": fingerprints[name],
                 "higher_is_better": spec.higher_is_better, "convention": spec.convention, "values": keep},
                sort_keys=True))
        results[name].values = {i: _decode(v[0]) for i, v in keep.items()}
    return results, failures


@dataclass
class SetValues:
    metric: str
    per_image: dict[str, float] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)  # "" = the metric itself, e.g. "std"
    recomputed: bool = False


def _images(data: PreparedDataset, ids, field_: str) -> dict[str, tuple[Path, str]]:
    return {i: (data.dir / data.records[i][field_], data.records[i][f"{field_}_sha256"]) for i in ids}


def score_set(data: PreparedDataset, sr: SRResult, name: str, spec: MetricSpec, out: Path,
              get_metric: Callable[[str], Any], reference: PreparedDataset | None, *,
              progress: bool = True, shard: Shard = SINGLE) -> tuple[SetValues, list[Failure]]:
    """A set metric for one (dataset, method): features from the cache, the value reused when no
    input image changed (then no model is even loaded). Sharded (:mod:`.shard`): every rank extracts
    its batches of features, rank 0 merges them and computes the value; every rank returns it."""
    sr_imgs = {i: (sr.dir / r["sr"], r["sr_sha256"]) for i, r in sr.records.items()}
    if spec.reference == "paired":
        ref_imgs, ref_name = _images(data, sr.records, "hr"), data.name
    elif spec.reference == "stats":  # published statistics inside the metric: no reference images
        ref_imgs, ref_name = {}, "published statistics"
    elif spec.reference == "lr":  # each SR image against its own LR input (identity kept from the input)
        ref_imgs, ref_name = _images(data, sr.records, "lr"), data.name
    else:
        if reference is None:
            raise ValueError(f"{name}: no HR reference set for {data.name}")
        ref_imgs, ref_name = _images(reference, reference.records, "hr"), reference.name
    try:
        fingerprint = {**spec.fingerprint(), **precision.tag()}
    except Exception as exc:  # noqa: BLE001 (its weights vanished or changed since the availability check)
        raise MetricUnavailable(f"{name}: {type(exc).__name__}: {exc}") from exc
    params = spec.per_dataset(data.name) if spec.per_dataset else {}  # ValueError: the set has no setting
    key = stable_hash({"metric": name, "fingerprint": fingerprint, "ref": ref_name,
                       "sr": sorted((i, s) for i, (_, s) in sr_imgs.items()),
                       "hr": sorted((i, s) for i, (_, s) in ref_imgs.items()), **({"params": params} if params else {})},
                      32)
    path = out / "metrics" / data.name / sr.method / f"{name}.json"

    def stored() -> SetValues | None:
        try:
            old = json.loads(path.read_text())
            if old.get("key") == key:
                return SetValues(name, {i: _decode(v) for i, v in old["per_image"].items()},
                                 {k: _decode(v) for k, v in old["values"].items()})
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            pass  # a damaged file: recompute
        return None

    old = shard.from_main(stored)
    if old is not None:
        return old, []
    if shard.world > 1:  # rank 0 builds it first: a metric it cannot build stops every rank with its reason
        shard.from_main(lambda: type(get_metric(name)).__name__)
    metric = get_metric(name)  # this rank's own instance, on its own device
    feats_sr = cached_features(metric.extractor, sr_imgs, out / "features" / data.name / sr.method,
                               desc=f"{data.name}: {sr.method}: {name} features", progress=progress, shard=shard)
    feats_ref = cached_features(metric.extractor, ref_imgs, out / "features" / ref_name /
                                ("lr" if spec.reference == "lr" else "hr"),
                                desc=f"{ref_name}: HR: {name} features", progress=progress,
                                shard=shard) if ref_imgs else {}

    def compute() -> tuple[SetValues, list[Failure]]:
        per, values = metric.compute(feats_sr, feats_ref, **params)
        per = per or {}
        failures = [Failure("metric", data.name, sr.method, i, name, "no value (e.g. no face detected)")
                    for i in sr.records if per and i not in per]
        atomic_write_text(path, json.dumps(
            {"metric": name, "version": spec.version, "fingerprint": fingerprint, "key": key, "reference": ref_name,
             "higher_is_better": spec.higher_is_better, "convention": spec.convention,
             "per_image": {i: _encode(v) for i, v in per.items()},
             "values": {k: _encode(v) for k, v in values.items()}}, sort_keys=True))
        return SetValues(name, per, values, recomputed=True), failures

    return shard.from_main(compute)
