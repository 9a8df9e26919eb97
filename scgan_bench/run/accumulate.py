"""Runs accumulate: a rerun in the same folder with other methods (or metrics, or datasets) adds to the
folder's results instead of replacing them.

An earlier invocation's summary cell (dataset, method, metric), with its per-image values, notes and
failures, is kept when this invocation did not compute it and it is still valid here:
* its dataset was not prepared by this invocation, or was prepared identically (same stage key);
* its method was not loaded by this invocation, or has the same fingerprint (same weights and
  options, so the same SR images);
* its metric is still registered with the same version;
* its SR images are still in the folder (``sr/<dataset>/<method>/``).
``RunConfig.only_this_run`` (``run --only-this-run``) restricts the outputs to this invocation.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from .prepare import Failure
from .summary import Cell


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _float(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def previous(out: Path) -> dict[str, Any]:
    """The folder's last invocation that wrote its outputs: run.json (or, after a run that stopped
    before writing any, the ``last_complete`` record it carries) plus the CSVs (empty when none)."""
    try:
        meta = json.loads((out / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    if not (meta.get("status") == "complete" or meta.get("outputs_written")):
        meta = meta.get("last_complete") or {}
    if not meta:
        return {}
    return {"meta": meta, "summary": _read_csv(out / "summary.csv"), "results": _read_csv(out / "results.csv"),
            "notes": _read_csv(out / "method_notes.csv"), "failures": _read_csv(out / "failures.csv")}


def kept_cells(prev: dict[str, Any], out: Path, meta: dict[str, Any], computed: set[tuple[str, str, str]]
               ) -> set[tuple[str, str, str]]:
    """The earlier invocation's (dataset, method, metric) cells that stay valid (module docstring)."""
    from ..registries import METRICS

    if not prev:
        return set()
    pm = prev["meta"]
    keep = set()
    for r in prev["summary"]:
        key = (r["dataset"], r["method"], r["metric"])
        d, m, k = key
        if key in computed:
            continue
        if d in meta["datasets"] and meta["datasets"][d].get("key") != pm.get("datasets", {}).get(d, {}).get("key"):
            continue
        if m in meta["methods"] and meta["methods"][m].get("fingerprint") != pm.get("methods", {}).get(m, {}).get(
                "fingerprint"):
            continue
        if k not in METRICS or pm.get("metrics", {}).get(k, {}).get("version") != METRICS.get(k).version:
            continue
        if r["status"] == "ok" and not (out / "sr" / d / m).is_dir():
            continue
        keep.add(key)
    return keep


def merge(prev: dict[str, Any], out: Path, meta: dict[str, Any], cells: list[Cell], rows: list[tuple],
          note_rows: list[tuple], failures: list[Failure], n_images: dict[str, int]) -> list[tuple[str, str, str]]:
    """Add the earlier invocation's still-valid cells (and their values, notes, failures, dataset and
    method records) to this invocation's; returns the kept cells' keys."""
    from ..registries import METRICS

    computed = {(c.dataset, c.method, c.metric) for c in cells}
    keep = kept_cells(prev, out, meta, computed)
    if not keep:
        return []
    pm = prev["meta"]
    for r in prev["summary"]:
        d, m, k = key = (r["dataset"], r["method"], r["metric"])
        if key not in keep:
            continue
        mean, std = _float(r["mean"]), _float(r["std"])
        spec = METRICS.get(k)
        cells.append(Cell(d, m, k, r["direction"] == "higher", n_failed=int(r["n_failed"] or 0), status=r["status"],
                          note=r["note"], display_scale=spec.display_scale, std_shown=spec.kind == "set",
                          set_value=mean if mean is not None else (math.nan if r["status"] == "ok" else None),
                          set_std=std, n_set=int(r["n"] or 0)))
    rows += [(r["dataset"], r["method"], r["metric"], r["image_id"], float(r["value"])) for r in prev["results"]
             if (r["dataset"], r["method"], r["metric"]) in keep]
    pairs = {(d, m) for d, m, _ in keep}
    new_pairs = {(c.dataset, c.method) for c in cells if (c.dataset, c.method, c.metric) in computed}
    old_only = pairs - new_pairs
    by_note: dict[tuple[str, str, str], dict[str, str]] = {}
    for r in prev["notes"]:
        if (r["dataset"], r["method"]) in old_only:
            by_note.setdefault((r["dataset"], r["method"], r["image_id"]), {})[r["key"]] = r["value"]
    note_rows += [(d, m, i, n) for (d, m, i), n in by_note.items()]
    datasets_now = set(meta["datasets"])
    for r in prev["failures"]:
        pair_kept = (r["dataset"], r["method"]) in old_only
        dataset_only = not r["method"] and r["dataset"] not in datasets_now and any(d == r["dataset"] for d, _ in pairs)
        if pair_kept or dataset_only:
            failures.append(Failure(r["stage"], r["dataset"], r["method"], r["image_id"], r["source"], r["reason"]))
    for d, _ in pairs:
        if d not in meta["datasets"] and d in pm.get("datasets", {}):
            meta["datasets"][d] = pm["datasets"][d]
            n_images[d] = pm["datasets"][d].get("images", 0)
    for _, m in pairs:
        if m not in meta["methods"] and m in pm.get("methods", {}):
            meta["methods"][m] = pm["methods"][m]
    for _, _, k in keep:
        if k not in meta["metrics"] and k in pm.get("metrics", {}):
            meta["metrics"][k] = pm["metrics"][k]
    return sorted(keep)
