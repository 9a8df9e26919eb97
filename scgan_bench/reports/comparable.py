"""When a number may be set beside a published one: the whole test set scored, with official weights.

A run records in ``run.json`` how many images of each dataset's whole selection it scored (``images``
of ``full_manifest_items``, and ``--limit``), the reference set behind FID / KID of a real-world set, and
for every method and metric the weight files that are not the official release (``unofficial_weights``,
see :func:`scgan_bench.assets.weights.unofficial`). From those alone (no recomputation) this module says, per
(dataset, method, metric) cell, why its value is not comparable with the paper's: the summary, the
tables (a footnote on the value, and no Δ in ``tableN_vs_paper``), the report and ``list`` all read it.
"""
from __future__ import annotations

from typing import Any, Mapping


def partial_set(meta: Mapping[str, Any], dataset: str) -> str | None:
    """Why ``dataset`` of the run (``run.json`` contents) is not its whole selection, or None."""
    d = meta.get("datasets", {}).get(dataset)
    if not d:
        return None
    full = d.get("full_manifest_items", d.get("manifest_items"))
    got = d.get("images")
    if full is None or got is None or got >= full:
        return None
    why = []
    limit = d.get("limit")
    if limit is not None and limit < full:
        why.append(f"--limit {limit}")
    lost = min(full, limit if limit is not None else full) - got
    if lost > 0:
        why.append(f"{lost:,} could not be read: failures.csv")
    return f"partial set: {got:,} of {full:,} images of {dataset}" + (f" ({'; '.join(why)})" if why else "")


def count_note(meta: Mapping[str, Any], dataset: str) -> str | None:
    """Why a test set folder is not the published set (its file count differs: the manifest's ``count_note``)."""
    return (meta.get("datasets", {}).get(dataset, {}).get("manifest") or {}).get("count_note") or None


def reduced_protocol(meta: Mapping[str, Any]) -> str | None:
    """Why a run under a reduced-size protocol (``bfr-128``: a stand-in for ``bfr-512``) is not comparable."""
    rec = meta.get("protocol") or {}
    if rec and rec.get("published") is False:
        return (f"protocol {rec.get('name')} ({rec.get('lr_size')} px in, {rec.get('out_size')} px out) is a reduced-size "
                "stand-in for the published protocol")
    return None


def reference_partial(meta: Mapping[str, Any], dataset: str) -> str | None:
    """Why the HR reference set behind FID / KID of real-world ``dataset`` is partial, or None."""
    ref = meta.get("references_detail", {}).get(dataset)
    if not ref or ref.get("name") == dataset:
        return None
    return partial_set({"datasets": {ref["name"]: ref}}, ref["name"])


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def unofficial_parts(meta: Mapping[str, Any], method: str | None, metric: str | None) -> list[str]:
    """The method's and metric's weight files that are not the official release, as sentences."""
    out = []
    for kind, name in (("method", method), ("metric", metric)):
        rec = meta.get(f"{kind}s", {}).get(name) if name else None
        for asset, why in (rec or {}).get("unofficial_weights", {}).items():
            out.append(f"{kind} {name} used non-official weights ({why})")
    return out


def cell_caveats(meta: Mapping[str, Any], dataset: str, method: str, metric: str, n: int | None = None
                 ) -> list[str]:
    """Every reason why the cell's value is not comparable with a published full-set value."""
    out = []
    reduced = reduced_protocol(meta)
    if reduced:
        out.append(reduced)
    part = partial_set(meta, dataset)
    full = meta.get("datasets", {}).get(dataset, {}).get("full_manifest_items")
    counted = count_note(meta, dataset)
    if counted:
        out.append(counted)
    if part:
        out.append(part)
    elif n is not None and full is not None and 0 < n < full:
        out.append(f"partial: n = {n:,} of {full:,} images of {dataset} scored for this cell (failures.csv)")
    rp = reference_partial(meta, dataset)
    if rp and metric in meta["references_detail"][dataset].get("metrics", ()):
        out.append(f"its reference set is a {rp}")
    out += unofficial_parts(meta, method, metric)
    return out


def run_caveats(meta: Mapping[str, Any]) -> dict[str, list[str]]:
    """The run's reasons that some of its numbers are not comparable with published ones, as summary
    lines: per dataset (a partial set, a partial reference set) and under ``""`` the methods and metrics
    that used non-official weight files."""
    out: dict[str, list[str]] = {}
    for d in meta.get("datasets", {}):
        lines = []
        part = partial_set(meta, d)
        if part:
            lines.append(_sentence(part) + ": not comparable with numbers published for the whole set")
        counted = count_note(meta, d)
        if counted:
            lines.append(_sentence(counted) + ": not comparable with published numbers")
        rp = reference_partial(meta, d)
        if rp:
            lines.append(f"{', '.join(meta['references_detail'][d].get('metrics', ()))} of {d} compare against a "
                         f"{rp}: not comparable with published numbers")
        if lines:
            out[d] = lines
    reduced = reduced_protocol(meta)
    if reduced:
        out.setdefault("", []).append(_sentence(reduced) + ": not comparable with published numbers")
    odd = [s for m in meta.get("methods", {}) for s in unofficial_parts(meta, m, None)]
    odd += [s for k in meta.get("metrics", {}) for s in unofficial_parts(meta, None, k)]
    if odd:
        out.setdefault("", []).extend(_sentence(s) + ": its numbers are not comparable with published ones" for s in odd)
    return out
