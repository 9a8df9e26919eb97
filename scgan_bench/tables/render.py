"""Render Tables 1-7 from a run's stored results (or from the paper's values) as CSV, Markdown and
LaTeX, with the paper's best / second / third highlighting and footnoted missing cells; and compare a
run with the paper, cell by cell."""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..errors import UsageError
from ..reports.ranking import printed_ranks
from ..run.summary import RESULT_COLUMNS, read_run_csv
from .specs import (BACKEND_LABELS, DATASET_LABELS, METRIC_FORMATS, TABLES, Cell, TableSpec, relabel,
                    with_extra_methods)

PAPER_VALUES = Path(__file__).resolve().parent / "paper_values.csv"


@dataclass(frozen=True)
class Value:
    """A printed-unit value (KID x 100, accuracies in %) and its +- std where the paper prints one."""

    value: float
    std: float | None = None


@lru_cache(maxsize=1)
def _paper_rows() -> tuple[tuple[str, str, str, str, float, float | None], ...]:
    with open(PAPER_VALUES, newline="") as f:
        return tuple((r["table"], r["dataset"], r["row"], r["metric"], float(r["value"]),
                      float(r["std"]) if r["std"] else None) for r in csv.DictReader(f))


def paper_values(table: int) -> dict[Cell, Value]:
    """The values printed in the paper's Table ``table``."""
    return {Cell(d, m, k): Value(v, s) for t, d, m, k, v, s in _paper_rows() if int(t) == table}


def run_values(run: Path) -> tuple[dict[Cell, Value], dict[Cell, str]]:
    """Raw values and reasons for missing cells, from a run's results.csv / summary.csv:
    no recomputation. Set metrics use their set value (``image_id == '*'``), others the mean."""
    results, summary = run / "results.csv", run / "summary.csv"
    if not results.exists():
        raise UsageError(f"{run} holds no results.csv: is it a `scgan-bench run` folder?")
    per: dict[tuple[str, str, str], list[float]] = {}
    sets: dict[tuple[str, str, str], float] = {}
    for r in read_run_csv(results, RESULT_COLUMNS, numeric=("value",)):
        key = (r["dataset"], r["method"], r["metric"])
        if r["image_id"] == "*":
            sets[key] = float(r["value"])
        else:
            per.setdefault(key, []).append(float(r["value"]))
    values: dict[Cell, Value] = {}
    for key in set(per) | {k for k in sets if ":" not in k[2]}:
        d, m, k = key
        v = sets[key] if key in sets else sum(per[key]) / len(per[key])
        values[Cell(d, m, k)] = Value(v, sets.get((d, m, f"{k}:std")))
    reasons: dict[Cell, str] = {}
    if summary.exists():
        for r in read_run_csv(summary, ("dataset", "method", "metric", "status", "note")):
            if r["status"] != "ok":  # a note that already says "method X unavailable: ..." is kept as is
                said = r["note"].startswith(f"method {r['method']} ")
                reasons[Cell(r["dataset"], r["method"], r["metric"])] = (r["note"] if said
                                                                         else f"{r['status']}: {r['note']}")
    return values, reasons


def missing_reason(cell: Cell, reasons: dict[Cell, str], number: int) -> str:
    """Why a table cell has no value, in one line the user can act on."""
    from ..registries import METHODS, load_plugins

    load_plugins()
    if cell in reasons:
        return reasons[cell]
    if cell.method not in METHODS:
        from ..baselines import PLANNED

        why = PLANNED.get(cell.method)
        return f"method {cell.method} is not implemented in scgan-bench yet" + (f": {why}" if why else "")
    avail = METHODS.get(cell.method).availability()
    if not avail.ok:  # named as the run names it (gfpgan -> gfpgan-v1.3), so one cause is one footnote
        return f"method {METHODS.canonical(cell.method)} unavailable: {avail.reason}"
    return f"not in this run: `scgan-bench run --table {number}` computes it"


@lru_cache(maxsize=1)
def _paper_methods() -> frozenset[str]:
    return frozenset(r[2] for r in _paper_rows())


def fmt(cell: Cell, v: Value, spec: TableSpec | None = None) -> str:
    f = spec.format_of(cell.metric) if spec is not None else METRIC_FORMATS.get(cell.metric)
    d = f.decimals if f else 4
    txt = f"{v.value:.{d}f}" if math.isfinite(v.value) else str(v.value)
    if f and f.with_std and v.std is not None:
        txt += f"±{v.std:.{d}f}"
    if f and f.percent:
        txt += "%"
    return txt


def ranks(spec: TableSpec, values: dict[Cell, Value]) -> dict[Cell, int]:
    """1/2/3 for best/second/third along ``spec.rank_by``, on the values as the table prints them: equal
    printed values share a rank (dense). A line is ranked only where two or more methods have a value;
    pseudo-methods (ground-truth) never are."""
    from ..registries import METRICS, is_pseudo, load_plugins

    load_plugins()
    out: dict[Cell, int] = {}
    lines = ([[spec.cell(r, c) for r, _ in spec.rows] for c, _ in spec.columns] if spec.rank_by == "column"
             else [[spec.cell(r, c) for c, _ in spec.columns] for r, _ in spec.rows])
    if spec.groups and spec.rank_by == "column":  # rank within each dataset block
        lines = [[spec.cell(r, c) for r in keys] for _, keys in spec.groups for c, _ in spec.columns]
    for line in lines:
        got = {c: values[c].value for c in line if c in values and c.method not in spec.rank_exclude
               and not is_pseudo(c.method) and math.isfinite(values[c].value)}
        if not got:
            continue
        first = next(iter(got)).metric
        f = spec.format_of(first)
        higher = (f.higher_is_better if f is not None and f.higher_is_better is not None
                  else METRICS.get(first).higher_is_better if first in METRICS else False)
        out.update(printed_ranks(got, higher_is_better=higher, decimals=f.decimals if f else 4))
    return out


@dataclass
class Rendered:
    spec: TableSpec
    header: list[str]
    rows: list[list[str]]
    rank: list[list[int]]          # 0 = none
    notes: dict[str, int]          # reason -> footnote number
    substitutions: list[str] = field(default_factory=list)
    #: every cell by its table keys: dataset, method, metric, and the raw run value (None: missing)
    cells: list[dict] = field(default_factory=list)
    #: table metric -> the run metric its values were read from (``--metric-map``), for the conventions
    sources: dict[str, str] = field(default_factory=dict)
    #: lines a table built outside the paper's states under every format (the BFR tables' conventions)
    extra_conventions: list[str] = field(default_factory=list)

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.header)
        w.writerows(self.rows)
        for note, k in self.notes.items():
            w.writerow([f"[{k}]", note])
        for sub in self.substitutions:
            w.writerow(["note", sub])
        return buf.getvalue()

    def conventions(self) -> list[str]:
        """Lines stating how the table's metrics are printed, under every format."""
        out = list(self.extra_conventions)
        if "kid" in self.spec.metrics:
            out.append("KID is printed x100 (mean ± std over subsets), as in the paper.")
        if "facenet-verif" in self.spec.metrics:
            src = self.sources.get("facenet-verif", "facenet-verif")
            if src == "facenet-verif":
                out.append("Accuracy = share of SR images verified as the same person as their HR image "
                           "(genuine acceptance: the only reading that gives the paper's 13-27 % for methods; a "
                           "balanced accuracy cannot fall below ~50 %), FaceNet: squared L2 of unit embeddings < 1.1. "
                           "With this reading and no detector, Ground Truth is 100 % by construction (each HR image "
                           "is compared with itself); the paper's 97.56 % implies something this protocol does not "
                           "reproduce (faces its detector missed, or other photos of each person as the reference), "
                           "so that row is not comparable.")
            else:
                from ..registries import METRICS, load_plugins

                load_plugins()
                conv = METRICS.get(src).convention if src in METRICS else ""
                out.append(f"Accuracy read from run metric {src}" + (f": {conv}." if conv else "."))
        return out

    def markdown(self) -> str:
        style = {1: "**{}** (1st)", 2: "**{}** (2nd)", 3: "**{}** (3rd)"}
        out = [f"**{self.spec.heading}.** {self.spec.title}", "",
               "| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        for row, rk in zip(self.rows, self.rank):
            out.append("| " + " | ".join(style[r].format(t) if r else t for t, r in zip(row, rk)) + " |")
        out.append("")
        out += [f"[{k}] {note}  " for note, k in self.notes.items()]
        out += [f"Note: {sub}.  " for sub in self.substitutions]
        out += [f"{c}  " for c in self.conventions()]
        return "\n".join(out).rstrip() + "\n"

    def json(self) -> str:
        """The grid with its ranks, footnotes, stated substitutions and conventions (what the HTML
        report renders: best / second / third as colours, footnotes under the table)."""
        lead = len(self.header) - len(self.spec.columns)
        return json.dumps({"number": self.spec.number, "title": self.spec.title, "header": self.header,
                           "lead_columns": lead, "rows": self.rows, "rank": self.rank,
                           "notes": [[k, n] for n, k in self.notes.items()], "substitutions": self.substitutions,
                           "conventions": self.conventions(), "cells": self.cells}, ensure_ascii=False,
                          indent=1) + "\n"

    def files(self) -> dict[str, str]:
        """The table in every format it is written in: extension -> text."""
        return {"csv": self.csv(), "md": self.markdown(), "tex": self.latex(), "json": self.json()}

    def latex(self) -> str:
        from .latex import render_latex

        return render_latex(self, [(str(k), n) for n, k in self.notes.items()]
                            + [("", f"Note: {sub}.") for sub in self.substitutions]
                            + [("", c) for c in self.conventions()])


#: the footnote of a spread of exactly 0 (KID over sets of 2 images)
NO_SPREAD = ("± 0 means no spread was measurable, not a certain value: every KID subset gave the same value "
             "(with 2 images per set each subset is the whole set)")


def render(spec: TableSpec, values: dict[Cell, Value], reasons: dict[Cell, str] | None = None,
           paper: dict[Cell, Value] | None = None, marks: dict[Cell, str | list[str]] | None = None,
           no_delta: dict[Cell, str] | None = None) -> Rendered:
    """The grid of ``spec``: values formatted as in the paper, missing cells as ``—[k]`` with a
    footnote. With ``paper``, each cell also shows the paper's value and the difference, except the
    cells of ``no_delta`` (read from another dataset or backend: the paper's value is shown with the
    reason and no difference); ``marks`` footnote cells that have a value (e.g. two rows that are the
    same SR network, a partial set)."""
    reasons, marks, no_delta = reasons or {}, marks or {}, no_delta or {}
    rk = ranks(spec, values)
    notes: dict[str, int] = {}
    group_of = {r: label for label, keys in spec.groups for r in keys}
    header = ((["Dataset"] if spec.groups else []) + [spec.row_header] + [lab for lab, _ in spec.extra_columns]
              + [lab for _, lab in spec.columns])
    rows, rank_rows, raw = [], [], []
    for r, label in spec.rows:
        lead = ([group_of.get(r, "")] if spec.groups else []) + [label] + [ex[r] for _, ex in spec.extra_columns]
        cells, rrow = [], [0] * len(lead)
        for c, _ in spec.columns:
            cell = spec.cell(r, c)
            raw.append({"dataset": cell.dataset, "method": cell.method, "metric": cell.metric,
                        "value": values[cell].value if cell in values else None})
            if cell in values:
                txt = fmt(cell, values[cell], spec)
                f = spec.format_of(cell.metric)
                if f and f.with_std and values[cell].std == 0.0:
                    txt += f"[{notes.setdefault(NO_SPREAD, len(notes) + 1)}]"
                if paper is not None and cell in paper:
                    p = paper[cell]
                    d = f.decimals if f else 4
                    txt += (f" (paper {fmt(cell, p, spec)}; no Δ: {no_delta[cell]})" if cell in no_delta
                            else f" (paper {fmt(cell, p, spec)}, Δ {values[cell].value - p.value:+.{d}f})")
                for mark in ([marks[cell]] if isinstance(marks.get(cell), str) else marks.get(cell, ())):
                    txt += f"[{notes.setdefault(mark, len(notes) + 1)}]"
                cells.append(txt)
                rrow.append(rk.get(cell, 0))
            else:
                why = missing_reason(cell, reasons, spec.number)
                k = notes.setdefault(why, len(notes) + 1)
                cells.append(f"—[{k}]")
                rrow.append(0)
        rows.append(lead + cells)
        rank_rows.append(rrow)
    return Rendered(spec, header, rows, rank_rows, notes, cells=raw)


def table_spec(number: int | str) -> TableSpec:
    return TABLES.get(str(number))


def printed(cell: Cell, v: Value) -> Value:
    """Raw run value -> the paper's printed units for this cell's metric (KID x 100, % accuracies)."""
    f = METRIC_FORMATS.get(cell.metric)
    scale = f.scale if f else 1.0
    return Value(v.value * scale, None if v.std is None else v.std * scale)


#: table method -> the method of a run retrained on this project's data that fills it when the run has it
#: (the paper retrained every baseline); the released weights fill it otherwise
RETRAINED = {"lrgan": "lrgan-retrained"}


def method_sources(spec: TableSpec, methods: dict[str, str] | None = None, shown: set[str] | None = None
                   ) -> dict[str, str]:
    """Table method key -> the run method that fills it: ``methods`` first, else the retrained method
    when the run (``shown``) has it (``lrgan`` -> ``lrgan-retrained``), else the registry's alias
    (``gfpgan`` -> ``gfpgan-v1.3``, ``real-esrgan`` -> ``realesrgan``), else the key itself."""
    from ..registries import METHODS, load_plugins

    load_plugins()
    methods = methods or {}
    for k, v in methods.items():
        if k not in spec.methods:
            raise UsageError(f"--method-map {k}={v}: Table {spec.number} has no method {k!r} "
                             f"(its methods: {', '.join(spec.methods)})")

    def source(m: str) -> str:
        if m in methods:
            return methods[m]
        if shown and RETRAINED.get(m) in shown:
            return RETRAINED[m]
        return METHODS.canonical(m)

    return {m: source(m) for m in spec.methods}


def remap(spec: TableSpec, values: dict[Cell, Value], reasons: dict[Cell, str],
          datasets: dict[str, str], metrics: dict[str, str], methods: dict[str, str] | None = None
          ) -> tuple[dict[Cell, Value], dict[Cell, str], list[str]]:
    """Read the table's cells from other run datasets / metrics / methods (e.g. ``ls3dw -> demo``,
    ``fid -> fid-dlib``, ``gfpgan -> gfpgan-v1.3``); returns the re-keyed values, reasons and the notes
    that label every substitution."""
    out_v, out_r = {}, {}
    msrc = method_sources(spec, methods, {c.method for c in values})
    for cell in spec.cells():
        src = Cell(datasets.get(cell.dataset, cell.dataset), msrc[cell.method], metrics.get(cell.metric, cell.metric))
        if src in values:
            out_v[cell] = values[src]
        elif src in reasons:
            out_r[cell] = reasons[src]
    labels = [f"column/row '{d}' shows run dataset '{s}'" for d, s in datasets.items()
              if d != s and d in spec.datasets]
    labels += [f"'{m}' is read from run metric '{s}'" for m, s in metrics.items()
               if m != s and m in spec.metrics]
    return out_v, out_r, labels


def substituted(spec: TableSpec, datasets: dict[str, str], metrics: dict[str, str]
                ) -> tuple[dict[str, str], dict[Cell, str]]:
    """For a table read through ``--dataset-map`` / ``--metric-map``: what computed each substituted
    metric, for its label (the backend, ``dlib``, when it differs from the paper's; else the run
    metric's name), and for every cell read from another dataset or metric why the paper's value is
    no reference for it (no difference is printed there)."""
    from ..registries import METRICS, load_plugins

    load_plugins()

    def backend(m: str) -> str:
        return METRICS.get(m).backend if m in METRICS else ""

    by = {}
    for m, src in metrics.items():
        if m != src and m in spec.metrics:
            b = backend(src)
            by[m] = BACKEND_LABELS.get(b, b) if b and b != backend(m) else src
    why: dict[Cell, str] = {}
    for cell in spec.cells():
        parts = []
        d = datasets.get(cell.dataset, cell.dataset)
        if d != cell.dataset:
            parts.append(f"run dataset {d}, not {DATASET_LABELS.get(cell.dataset, cell.dataset)}")
        if cell.metric in by:
            parts.append(f"{metrics[cell.metric]} ({by[cell.metric]}), not the paper's {cell.metric}")
        if parts:
            why[cell] = "; ".join(parts)
    return by, why


def pretrained_notes(spec: TableSpec, run: Path, msrc: dict[str, str], shown: set[str]) -> list[str]:
    """One note per column filled by a baseline: for official pretrained weights which method, weights
    and resolution bridge produced it (the paper says all baselines were retrained; these cells are
    not); for a run retrained here, its training run (method, variant, step, seed, options, sha256)."""
    path = run / "run.json"
    try:
        methods = json.loads(path.read_text()).get("methods", {}) if path.exists() else {}
    except ValueError:
        return []
    notes = []
    for key, src in msrc.items():
        fp = methods.get(src, {}).get("fingerprint", {})
        if src in shown and isinstance(fp.get("retrained"), dict):
            label = dict(spec.columns).get(key) or dict(spec.rows).get(key) or key
            rt = fp["retrained"]
            opts = ", ".join(f"{k}={v}" for k, v in sorted((rt.get("options") or {}).items()))
            notes.append(f"{label}: method {src}, retrained here on this project's data (scgan-bench train --method "
                         f"{rt.get('method')} --variant {rt.get('variant')}; step {rt.get('step')}, seed "
                         f"{rt.get('seed')}, width {rt.get('width')}{'; ' + opts if opts else ''}; checkpoint "
                         f"sha256 {str(fp.get('checkpoint_sha256', ''))[:12]}), not the released weights")
            continue
        if src not in shown or "weights" not in fp or "bridge" not in fp:
            continue
        label = dict(spec.columns).get(key) or dict(spec.rows).get(key) or key
        bridge = fp["bridge"] if isinstance(fp["bridge"], str) else f"{fp['bridge'].get('up')}, {fp['bridge'].get('down')}"
        official = methods.get(src, {}).get("official_bridge")
        notes.append(f"{label}: method {src}, official pretrained weights (sha256 "
                     f"{', '.join(str(h)[:12] for h in fp['weights'].values())}), not retrained on SCGAN's data; "
                     f"bridge {bridge}" + (f"; its own script resizes with {official}, as its published numbers "
                                           f"did: compare with them only from `--method-opt {src}:bridge=official`"
                                           if official else ""))
    return notes


def scgan_provenance(run: Path) -> dict[str, dict]:
    """SCGAN-variant methods of a run -> their checkpoint's fingerprint (recipe, trained variant)."""
    from ..scgan.variants import VARIANTS

    path = run / "run.json"
    if not path.exists():
        return {}
    try:
        methods = json.loads(path.read_text()).get("methods", {})
    except ValueError:
        return {}
    return {m: dict(info.get("fingerprint", {})) for m, info in methods.items() if m in VARIANTS}


def with_recipes(spec: TableSpec, provenance: dict[str, dict]) -> tuple[TableSpec, dict[Cell, str]]:
    """For tables whose rows are SCGAN variants: a Recipe column (each checkpoint's recipe, and the
    variant it was trained as when that is not the row's), and a footnote on every value of a row
    whose checkpoint is the same SR network as another row's under their common recipe."""
    from dataclasses import replace as dc_replace

    from ..scgan.dataflow import equivalence_classes, explain, same_network_as
    from ..scgan.model import Recipe
    from ..scgan.variants import VARIANTS

    if spec.row_header != "Variant":
        return spec, {}
    first_col = spec.columns[0][0]
    method_of = {r: spec.cell(r, first_col).method for r, _ in spec.rows}
    label = {}
    for r, m in method_of.items():
        fp = provenance.get(m)
        if fp is None:
            label[r] = "—"
            continue
        label[r] = fp.get("recipe") or "unknown"
        if fp.get("trained_variant") and fp["trained_variant"] != m:
            label[r] += f" (trained as {fp['trained_variant']})"
    marks: dict[Cell, str] = {}
    by_recipe: dict[str, list[str]] = {}
    for m in dict.fromkeys(method_of.values()):
        fp = provenance.get(m, {})
        if m in VARIANTS and fp.get("recipe_spec") and fp.get("trained_variant", m) in (m, None):
            by_recipe.setdefault(json.dumps(fp["recipe_spec"], sort_keys=True), []).append(m)
    for r, m in method_of.items():  # a row filled by another variant's checkpoint (reproduce's shared training)
        fp = provenance.get(m, {})
        tv = fp.get("trained_variant")
        if not tv or tv == m or m not in VARIANTS or tv not in VARIANTS or not fp.get("recipe_spec"):
            continue
        recipe = Recipe.from_spec(fp["recipe_spec"])
        if tv in same_network_as(m, recipe, [tv]):
            note = (f"checkpoint of {VARIANTS.get(tv).paper_name}'s training, reused: {explain(m, tv, recipe)}, so it "
                    f"is this row's SR network too (`reproduce` trains each such group once)")
        else:
            note = (f"checkpoint trained as {VARIANTS.get(tv).paper_name}, which trains another SR network than "
                    f"this row under recipe {recipe.name}: not this variant's result")
        for c, _ in spec.columns:
            marks[spec.cell(r, c)] = note
    for key, members in by_recipe.items():
        recipe = Recipe.from_spec(json.loads(key))
        for group in equivalence_classes(recipe, members):
            for m in group:
                other = next(o for o in group if o != m)
                note = (f"same SR network as {VARIANTS.get(other).paper_name}'s row under recipe {recipe.name}: "
                        f"{explain(m, other, recipe)}; from one seed the two checkpoints are identical "
                        "(bit for bit on one machine and thread count)")
                for r, mm in method_of.items():
                    if mm == m:
                        for c, _ in spec.columns:
                            marks[spec.cell(r, c)] = note
    return dc_replace(spec, extra_columns=spec.extra_columns + (("Recipe", label),)), marks


def _cell_counts(run: Path) -> dict[tuple[str, str, str], int]:
    """(dataset, method, metric) -> the n of the run's summary.csv (images the cell's value is over)."""
    path = run / "summary.csv"
    if not path.exists():
        return {}
    return {(r["dataset"], r["method"], r["metric"]): int(float(r.get("n") or 0))
            for r in read_run_csv(path, ("dataset", "method", "metric", "status"), numeric=("n",))
            if r.get("status") == "ok"}


def not_comparable(spec: TableSpec, run: Path, values: dict[Cell, Value], msrc: dict[str, str],
                   datasets: dict[str, str], metrics: dict[str, str]) -> dict[Cell, list[str]]:
    """Table cells with a value that is not comparable with the paper's, and why (one sentence each):
    computed on part of the test set (``--limit``, unreadable images: the sentence gives n), against a
    partial reference set, or with weight files that are not the official release
    (:mod:`scgan_bench.reports.comparable`, from the run's ``run.json`` and ``summary.csv``)."""
    from ..reports.comparable import cell_caveats

    try:
        meta = json.loads((run / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    counts = _cell_counts(run)
    out = {}
    for cell in values:
        d, m, k = datasets.get(cell.dataset, cell.dataset), msrc.get(cell.method, cell.method), \
            metrics.get(cell.metric, cell.metric)
        why = cell_caveats(meta, d, m, k, counts.get((d, m, k)))
        if why:
            out[cell] = why
    return out


def _absent_reasons(spec: TableSpec, values: dict[Cell, Value], reasons: dict[Cell, str], msrc: dict[str, str],
                    present: dict[str, set[str]], datasets: dict[str, str]) -> dict[Cell, str]:
    """Why a table cell of a method the run did score elsewhere is empty: the run has the method on other
    datasets only (``--dataset-map`` reads the table's dataset from one), or not at all (a method of
    ``--extra-methods`` that was never run here: not "not implemented")."""
    from ..registries import METHODS, load_plugins

    load_plugins()
    out = {}
    for cell in spec.cells():
        if cell in values or cell in reasons:     # a value, or what the run recorded about this cell
            continue
        m, d = msrc.get(cell.method, cell.method), datasets.get(cell.dataset, cell.dataset)
        here = present.get(m)
        label = DATASET_LABELS.get(cell.dataset, cell.dataset)
        if here and d not in here:
            out[cell] = (f"method {m} was not run on {d} in this run (it has values for "
                         f"{', '.join(sorted(here))}): run it on {d}, or read {label} from one of those with "
                         f"--dataset-map {cell.dataset}=NAME")
        elif here:   # scored on this dataset, only not with this metric (registered now or not: a method's
            # files absent now were there for the run, so "unavailable" would be wrong here)
            out[cell] = (f"method {m} was scored on {d} in this run, but not with {cell.metric}: add it to the run's "
                         f"--metrics")
        elif not here and m not in METHODS and m not in _paper_methods():
            out[cell] = (f"method {m} has no value in this run: run it in this folder (`scgan-bench run --methods "
                         f"...`) on the table's datasets, or map them with --dataset-map")
    return out


def _check_protocol(number: int, run: Path) -> None:
    """The paper's tables are SCGAN's protocol (16 px -> 64 px): a run under another is refused, by name."""
    try:
        meta = json.loads((run / "run.json").read_text())
    except (OSError, ValueError):
        return   # run_values says what is wrong with the folder
    name = (meta.get("protocol") or {}).get("name", "scgan-sr") if isinstance(meta, dict) else "scgan-sr"
    if name != "scgan-sr":
        raise UsageError(f"Table {number} is the paper's protocol (scgan-sr: 16 px in, 64 px out); {run} was run under "
                         f"{name}, whose images and numbers are not the table's")


def run_extra_methods(spec: TableSpec, run: Path) -> list[str]:
    """The run's methods that fill none of ``spec``'s columns (PMRF, CodeFormer, your own ...), in the run's
    order; reference rows (ground truth) left out: ``--extra-methods auto``."""
    from ..registries import is_pseudo, load_plugins

    load_plugins()
    values, reasons = run_values(run)
    shown = {c.method for c in values} | {c.method for c in reasons}
    filled = set(method_sources(spec, None, {c.method for c in values}).values()) | set(spec.methods)
    try:
        order = list(json.loads((run / "run.json").read_text()).get("methods", {}))
    except (OSError, ValueError, AttributeError):
        order = []
    ranked = [m for m in order if m in shown] + sorted(shown - set(order))
    return [m for m in ranked if m not in filled and not is_pseudo(m)]


def write_files(out: Path, stem: str, texts: dict[str, str]) -> list[Path]:
    """``out/<stem>.<ext>`` for each ``ext -> text`` (atomic writes); the paths in order."""
    from ..io.image_io import atomic_write_text

    written = []
    for ext, text in texts.items():
        path = out / f"{stem}.{ext}"
        atomic_write_text(path, text)
        written.append(path)
    return written


def write_table(number: int | str, run: Path | None, out: Path, *, compare_paper: bool = False,
                datasets: dict[str, str] | None = None, metrics: dict[str, str] | None = None,
                methods: dict[str, str] | None = None, extra_methods: list[str] | None = None) -> list[Path]:
    """Write ``tableN.{csv,md,tex,json}`` for a run (or for the paper's own values when ``run`` is
    None), plus ``tableN_vs_paper.{csv,md,json}`` with deltas when asked. ``datasets`` / ``metrics`` map the
    table's names to the run's (every substitution is stated under the table); ``extra_methods`` adds
    run methods beside the paper's (:func:`.specs.with_extra_methods`)."""
    spec = table_spec(number)
    if extra_methods == ["auto"]:
        if run is None:
            raise UsageError("--extra-methods auto: needs a run folder (the methods it holds beyond the paper's)")
        extra_methods = run_extra_methods(spec, run)
    if extra_methods:
        spec = with_extra_methods(spec, extra_methods)
    paper = paper_values(spec.number)
    subs: list[str] = []
    marks: dict[Cell, list[str]] = {}
    no_delta: dict[Cell, str] = {}
    if run is None:
        values, reasons = paper, {}
    else:
        _check_protocol(spec.number, run)
        values, reasons = run_values(run)
        shown = {c.method for c in values}
        msrc = method_sources(spec, methods, shown)
        present: dict[str, set[str]] = {}
        for c in values:
            present.setdefault(c.method, set()).add(c.dataset)
        values, reasons, subs = remap(spec, values, reasons, datasets or {}, metrics or {}, methods)
        reasons.update(_absent_reasons(spec, values, reasons, msrc, present, datasets or {}))
        by, no_delta = substituted(spec, datasets or {}, metrics or {})
        spec = relabel(spec, datasets or {}, by)
        subs += [f"column '{k}' shows run method '{v}'" for k, v in msrc.items()
                 if k != v and v in shown]
        subs += pretrained_notes(spec, run, msrc, shown)
        values = {c: printed(c, v) for c, v in values.items()}
        spec, recipe_marks = with_recipes(spec, scgan_provenance(run))
        marks = {c: [m] for c, m in recipe_marks.items()}
        for cell, whys in not_comparable(spec, run, values, msrc, datasets or {}, metrics or {}).items():
            marks.setdefault(cell, []).extend(f"{why}: not comparable with the paper's value (no Δ)" for why in whys)
            no_delta[cell] = "; ".join(([no_delta[cell]] if cell in no_delta else []) + whys)
    r = render(spec, values, reasons, marks=marks)
    r.substitutions = subs
    r.sources = {k: v for k, v in (metrics or {}).items() if k in spec.metrics}
    written = write_files(out, f"table{spec.number}", r.files())
    if compare_paper and run is not None:
        cmp = render(spec, values, reasons, paper=paper, marks=marks, no_delta=no_delta)
        cmp.substitutions = subs
        cmp.sources = r.sources
        written += write_files(out, f"table{spec.number}_vs_paper",
                               {"csv": cmp.csv(), "md": cmp.markdown(), "json": cmp.json()})
    return written
