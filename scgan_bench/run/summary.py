"""Long-format results and the run's summary table (pure functions of the per-image values), and the
checked reader of the CSV files a run wrote."""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import UsageError

RESULT_COLUMNS = ("dataset", "method", "metric", "image_id", "value")
SUMMARY_COLUMNS = ("dataset", "method", "metric", "direction", "mean", "std", "n", "n_failed",
                   "status", "note")


def read_run_csv(path: Path, columns: Sequence[str], numeric: Sequence[str] = ()) -> list[dict[str, str]]:
    """The rows of a CSV file a run wrote (``results.csv``, ``summary.csv``, ...); a file that is not
    UTF-8 CSV with ``columns``, or whose ``numeric`` columns do not parse, is refused in one line naming
    it and the line (:class:`UsageError`)."""
    fix = "rerun `scgan-bench run` on the run folder to rewrite it"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = reader.fieldnames or []
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file (damaged or replaced); {fix}") from None
    except csv.Error as exc:
        raise UsageError(f"{path}: not a CSV file ({exc}); {fix}") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise UsageError(f"{path}: no column {', '.join(missing)} (not a file scgan-bench wrote, or damaged); {fix}")
    for n, r in enumerate(rows, 2):
        for c in numeric:
            try:
                if r.get(c) not in ("", None):
                    float(r[c])
            except (TypeError, ValueError):
                raise UsageError(f"{path}, line {n}: {c} is {str(r[c])[:40]!r}, not a number; {fix}") from None
    return rows


@dataclass(frozen=True)
class Cell:
    """One (dataset, method, metric) summary cell. ``status`` is ``ok``, ``n/a`` (not applicable,
    e.g. a full-reference metric on a real-world set), ``unavailable`` or ``failed``."""

    dataset: str
    method: str
    metric: str
    higher_is_better: bool
    values: Sequence[float] = ()
    n_failed: int = 0
    status: str = "ok"
    note: str = ""
    display_scale: float = 1.0
    set_value: float | None = None   # set metrics (FID, KID, accuracy): the value itself
    set_std: float | None = None     # e.g. KID's std over subsets
    n_set: int | None = None
    #: whether the summary prints ``± set_std`` (a set metric's spread; a kept per-image cell carries its std
    #: for summary.csv only, as a freshly computed one does)
    std_shown: bool = True

    @property
    def mean(self) -> float:
        if self.set_value is not None:
            return self.set_value
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        if self.set_value is not None:
            return self.set_std if self.set_std is not None else math.nan
        if not self.values or not np.isfinite(self.values).all():
            return math.nan  # e.g. PSNR of ground truth is inf
        return float(np.std(self.values))

    @property
    def n(self) -> int:
        return self.n_set if self.n_set is not None else len(self.values)

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"


def _fmt(v: float) -> str:
    return repr(float(v))


def results_csv(rows: Iterable[tuple[str, str, str, str, float]]) -> str:
    """Per-image long-format CSV; values printed with ``repr`` (round-trip exact)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RESULT_COLUMNS)
    for d, m, k, i, v in rows:
        w.writerow((d, m, k, i, _fmt(v)))
    return buf.getvalue()


def summary_csv(cells: Iterable[Cell]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUMMARY_COLUMNS)
    for c in cells:
        ok = c.status == "ok"
        w.writerow((c.dataset, c.method, c.metric, c.direction, _fmt(c.mean) if ok else "",
                    _fmt(c.std) if ok else "", c.n, c.n_failed, c.status, c.note))
    return buf.getvalue()


#: footnote of a (method, metric) pair that no invocation kept in the folder computed
NOT_RUN = ("not run: no invocation kept in this folder computed this method with this metric "
           "(`scgan-bench run` with both in --methods / --metrics adds it)")


def _cell_text(c: Cell, marks: dict[str, int]) -> str:
    if c.status == "ok":
        v = c.mean * c.display_scale
        txt = f"{v:.4f}" if math.isfinite(v) else f"{v}"
        if c.std_shown and c.set_std is not None and math.isfinite(c.set_std):   # a set metric's spread (KID)
            txt += f" ± {c.set_std * c.display_scale:.4f}"
        return txt + (f" ({c.n_failed} failed)" if c.n_failed else "")
    if c.status == "n/a":
        return "n/a"
    mark = marks.setdefault(c.note, len(marks) + 1)
    return f"— [{mark}]"


def count_notes(notes: dict[str, dict[str, Any]]) -> str:
    """``{image id: {key: value}}`` -> ``"key: value n, value n; ..."`` (counts per distinct value)."""
    counts: dict[str, dict[str, int]] = {}
    for note in notes.values():
        for k, v in note.items():
            if isinstance(v, float):
                continue  # per-image numbers (losses, seconds) are in method_notes.csv, not counted
            counts.setdefault(k, {}).setdefault(str(v).lower(), 0)
            counts[k][str(v).lower()] += 1
    return "; ".join(f"{k}: " + ", ".join(f"{v} {n}" for v, n in sorted(vals.items()))
                     for k, vals in sorted(counts.items()))


def notes_csv(rows: Iterable[tuple[str, str, str, dict[str, Any]]]) -> str:
    """dataset, method, image_id, key, value: every per-image method note."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dataset", "method", "image_id", "key", "value"])
    for d, m, i, note in rows:
        for k, v in sorted(note.items()):
            w.writerow([d, m, i, k, v])
    return buf.getvalue()


def summary_markdown(cells: Sequence[Cell], conventions: dict[str, str],
                     n_images: dict[str, int] | None = None,
                     notes: dict[tuple[str, str], str] | None = None,
                     caveats: dict[str, list[str]] | None = None) -> str:
    """One Markdown table per dataset: rows are methods, columns metrics (with direction arrows).
    Cells that are not computed show a mark and a footnote with the reason, never a blank. ``notes``:
    counted per-image method notes of (dataset, method), listed under the dataset's table. ``caveats``
    (:func:`scgan_bench.reports.comparable.run_caveats`): why numbers are not comparable with published ones, per
    dataset (a partial set) and under ``""`` for the run (non-official weights), stated in bold."""
    caveats = caveats or {}
    out: list[str] = []
    datasets = list(dict.fromkeys(c.dataset for c in cells))
    for d in datasets:
        dc = [c for c in cells if c.dataset == d]
        metrics = list(dict.fromkeys(c.metric for c in dc))
        methods = list(dict.fromkeys(c.method for c in dc))
        arrow = {c.metric: ("↑" if c.higher_is_better else "↓")
                 + (f" (x{c.display_scale:g})" if c.display_scale != 1 else "") for c in dc}
        n = (n_images or {}).get(d, max((c.n for c in dc), default=0))
        marks: dict[str, int] = {}
        out.append(f"### {d} ({n} images)\n")
        out.append("| method | " + " | ".join(f"{m} {arrow[m]}" for m in metrics) + " |")
        out.append("|---|" + "---:|" * len(metrics))
        lookup = {(c.method, c.metric): c for c in dc}
        for meth in methods:
            out.append(f"| {meth} | " + " | ".join(
                _cell_text(lookup[(meth, m)], marks) if (meth, m) in lookup
                else f"— [{marks.setdefault(NOT_RUN, len(marks) + 1)}]" for m in metrics) + " |")
        out.append("")
        for note, k in marks.items():
            out.append(f"[{k}] {note}  ")
        refs = sorted({c.note for c in dc if c.status == "ok" and c.note.startswith("vs HR of")})
        for r in refs:
            out.append(f"FID/KID reference: {r[3:]}  ")
        if any(c.status == "n/a" for c in dc):
            out.append("n/a: full-reference metric on a real-world set (no ground truth)  ")
        for (nd, nm), text in sorted((notes or {}).items()):
            if nd == d and text:
                out.append(f"Method notes, {nm} (per image in method_notes.csv): {text}  ")
        out += [f"**Not comparable:** {line}.  " for line in caveats.get(d, ())]
        out.append("")
    out += [f"**Not comparable:** {line}.  " for line in caveats.get("", ())]
    if caveats.get(""):
        out.append("")
    if conventions:
        out.append("Conventions: " + "; ".join(f"{k}: {v}" for k, v in conventions.items()))
    return "\n".join(out).rstrip() + "\n"
