"""The blind-face-restoration tables of 2022-2026 papers, from a run under the ``bfr-512`` protocol (no
recomputation): ``scgan-bench table bfr-synthetic|bfr-real|bfr-ntire RUN [--compare-paper]``.

- ``bfr-synthetic``: every synthetic pair set of the run (CelebA-Test; a pair folder of your own), a block of
  method rows each: PSNR, SSIM, LPIPS, identity (IDS: ArcFace cosine; Deg: VQFR's angle), LMD, FID to FFHQ,
  NIQE, MUSIQ (CodeFormer's / VQFR's Table 1 columns).
- ``bfr-real``: every real set (LFW-Test, WebPhoto-Test, WIDER-Test, CelebChild-Test, ...): FID to FFHQ,
  NIQE, MUSIQ, MANIQA, CLIP-IQA.
- ``bfr-ntire``: per NTIRE set of the run, as the organisers' ``eval.py`` scores it: per subset the faces
  whose AdaFace cosine with their input falls below the subset's threshold, the identity gate (a method
  fails with more than ten such faces), the no-reference metrics averaged per subset and weighted by the
  subsets' official counts, FID to FFHQ over all outputs, and the weighted score.

``--compare-paper`` adds ``<table>_vs_paper.{csv,md,json}``: every published number on record for the
table's datasets (:mod:`.published`) beside the run's value, with the difference only where comparable.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from . import published as published_numbers
from .published import Check, check
from .render import Value, render, run_values, write_files
from .specs import Cell, MetricColumn, TableSpec

NAMES = ("bfr-synthetic", "bfr-real", "bfr-ntire")

#: how the papers print each metric (CodeFormer / VQFR / NTIRE: 2-4 decimals, LPIPS 0-1)
FORMATS = {
    "psnr": MetricColumn("psnr", "PSNR ↑", 2), "ssim": MetricColumn("ssim", "SSIM ↑", 4),
    "lpips": MetricColumn("lpips", "LPIPS ↓", 4), "ids-arcface": MetricColumn("ids-arcface", "IDS ↑", 4),
    "deg-vqfr": MetricColumn("deg-vqfr", "Deg ↓", 2), "lmd-awing": MetricColumn("lmd-awing", "LMD ↓", 3),
    "fid-ffhq512": MetricColumn("fid-ffhq512", "FID ↓", 2), "niqe": MetricColumn("niqe", "NIQE ↓", 3),
    "musiq": MetricColumn("musiq", "MUSIQ ↑", 2), "maniqa": MetricColumn("maniqa", "MANIQA ↑", 4),
    "clip-iqa": MetricColumn("clip-iqa", "CLIP-IQA ↑", 4), "q-align": MetricColumn("q-align", "Q-Align ↑", 4),
}
SYNTHETIC_METRICS = ("psnr", "ssim", "lpips", "ids-arcface", "deg-vqfr", "lmd-awing", "fid-ffhq512", "niqe", "musiq")
REAL_METRICS = ("fid-ffhq512", "niqe", "musiq", "maniqa", "clip-iqa")
DATASET_LABELS = {"celeba-test": "CelebA-Test", "lfw-test": "LFW-Test", "webphoto-test": "WebPhoto-Test",
                  "wider-test": "WIDER-Test", "celebchild-test": "CelebChild-Test"}
#: the metrics each table needs, for the command that fills an empty cell
PRESET_OF = {"bfr-synthetic": "preset:bfr-synthetic,niqe,musiq", "bfr-real": "fid-ffhq512,niqe,musiq,maniqa,clip-iqa",
             "bfr-ntire": "preset:ntire-rwfr"}

#: the identity thresholds the organisers' eval.py applies, per year (AdaFace cosine of output and input)
NTIRE_THRESHOLDS = {
    2025: {"CelebA": 0.5, "LFW-Test": 0.6, "CelebChild-Test": 0.6, "WebPhoto-Test": 0.3, "WIDER-Test": 0.3},
    2026: {"CelebA": 0.5, "LFW-Test": 0.6, "CelebChild-Test": 0.6, "WebPhoto-Test": 0.25, "WIDER-Test": 0.2},
}
#: where each year's thresholds are read from, and what disagrees with them
NTIRE_THRESHOLD_SOURCE = {
    2025: "eval.py of zhengchen1999/NTIRE2025_RealWorld_Face_Restoration",
    2026: "eval.py of jkwang28/NTIRE2026_RealWorld_Face_Restoration (its README says 0.30 for WIDER and WebPhoto; "
          "eval.py, the script that scored the entries, applies 0.20 and 0.25: this table uses eval.py's)",
}
#: NTIRE 2026's README: a submission fails when more than ten faces fall below their subset's threshold
#: (2025's repository states no rule; the same one is applied and said)
MAX_BELOW = 10
SUBSET_SHORT = {"CelebA": "CelebA", "LFW-Test": "LFW", "CelebChild-Test": "CelebChild", "WebPhoto-Test": "WebPhoto",
                "WIDER-Test": "WIDER"}
NTIRE_IQA = ("niqe", "clip-iqa", "maniqa", "musiq", "q-align")


@dataclass
class RunData:
    """What the tables read from a run folder: run.json, the cell values and the reasons of the missing."""

    run: Path
    meta: dict
    values: dict[Cell, Value]
    reasons: dict[Cell, str]
    per_image: dict[tuple[str, str, str], dict[str, float]] = field(default_factory=dict)

    @property
    def protocol(self) -> str:
        return (self.meta.get("protocol") or {}).get("name", "scgan-sr")

    def kind(self, dataset: str) -> str:
        return str(self.meta.get("datasets", {}).get(dataset, {}).get("kind", ""))

    def methods(self, dataset: str) -> list[str]:
        """The run's methods with a value or a stated reason on ``dataset``, in the run's order (no reference
        row on a real set: it has no ground truth)."""
        from ..registries import is_pseudo, ordered_methods

        seen = {c.method for c in (*self.values, *self.reasons) if c.dataset == dataset
                and not (self.kind(dataset) == "real" and is_pseudo(c.method))}
        order = list(self.meta.get("methods", {}))
        return ordered_methods([m for m in order if m in seen] + sorted(seen - set(order)))


def load_run(run: Path) -> RunData:
    """The run's values (``results.csv``), reasons (``summary.csv``), per-image values and ``run.json``."""
    from ..run.summary import RESULT_COLUMNS, read_run_csv

    values, reasons = run_values(run)
    try:
        meta = json.loads((run / "run.json").read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{run / 'run.json'} cannot be read ({exc}): is {run} a `scgan-bench run` folder?") from None
    per: dict[tuple[str, str, str], dict[str, float]] = {}
    for r in read_run_csv(run / "results.csv", RESULT_COLUMNS, numeric=("value",)):
        if r["image_id"] != "*":
            per.setdefault((r["dataset"], r["method"], r["metric"]), {})[r["image_id"]] = float(r["value"])
    return RunData(run, meta if isinstance(meta, dict) else {}, values, reasons, per)


def _check_protocol(data: RunData, name: str) -> None:
    if not data.protocol.startswith("bfr-"):
        raise UsageError(f"{name} is the blind-face-restoration protocol's table (bfr-512: 512 px in, 512 px out); "
                         f"{data.run} was run under {data.protocol}: rerun with --protocol bfr-512")


def _missing(data: RunData, cell: Cell, table: str) -> str:
    if cell in data.reasons:
        return data.reasons[cell]
    return (f"not in this run: `scgan-bench run --protocol {data.protocol} --datasets {cell.dataset} --methods "
            f"{cell.method} --metrics {PRESET_OF[table]}` computes it")


def grouped_spec(name: str, title: str, data: RunData, datasets: list[str], metrics: tuple[str, ...]) -> TableSpec:
    """A block of method rows per dataset, one column per metric (ranked within each block)."""
    rows, groups = [], []
    for d in datasets:
        keys = tuple(f"{d}/{m}" for m in data.methods(d))
        rows += [(k, k.split("/", 1)[1]) for k in keys]
        groups.append((DATASET_LABELS.get(d, d), keys))
    return TableSpec(name, title, tuple(rows), tuple((k, FORMATS[k].label) for k in metrics),
                     lambda r, c: Cell(r.split("/", 1)[0], r.split("/", 1)[1], c), tuple(groups),
                     formats=dict(FORMATS))


def _datasets(data: RunData, name: str) -> list[str]:
    ds = list(data.meta.get("datasets", {}))
    if name == "bfr-synthetic":
        out = [d for d in ds if data.kind(d) == "synthetic"]
    elif name == "bfr-real":
        out = [d for d in ds if data.kind(d) == "real" and not _ntire_year(d)]
    else:
        out = [d for d in ds if _ntire_year(d)]
    if not out:
        what = {"bfr-synthetic": "synthetic pair set (celeba-test, folder-pairs, ...)",
                "bfr-real": "real-world set (lfw-test, webphoto-test, wider-test, celebchild-test, ...)",
                "bfr-ntire": "NTIRE set (ntire2025-rwfr, ntire2026-rwfr)"}[name]
        raise UsageError(f"{data.run} holds no {what}: {name} has nothing to show (the run's datasets: "
                         f"{', '.join(ds) or 'none'})")
    return out


def _ntire_year(dataset: str) -> int | None:
    m = re.fullmatch(r"ntire(\d{4})-rwfr", dataset)
    return int(m.group(1)) if m and int(m.group(1)) in NTIRE_THRESHOLDS else None


def _caveats(data: RunData, cells: list[Cell]) -> dict[Cell, list[str]]:
    """Why each cell's value is not comparable with a published full-set, 512 px number."""
    from ..reports.comparable import cell_caveats
    from .render import _cell_counts

    counts = _cell_counts(data.run)
    out = {}
    for c in cells:
        why = cell_caveats(data.meta, c.dataset, c.method, c.metric, counts.get((c.dataset, c.method, c.metric)))
        if data.protocol == "scgan-sr":
            why.insert(0, "run under scgan-sr (16 px in, 64 px out), not the papers' 512 px protocol")
        if why:
            out[c] = why
    return out


def _grid(name: str, data: RunData) -> tuple[TableSpec, dict[Cell, Value], dict[Cell, str], list[str]]:
    datasets = _datasets(data, name)
    synthetic = name == "bfr-synthetic"
    spec = grouped_spec(name, f"Blind face restoration on {'synthetic pairs' if synthetic else 'real-world faces'}"
                              f" ({data.protocol})", data, datasets,
                        SYNTHETIC_METRICS if synthetic else REAL_METRICS)
    values = {c: data.values[c] for c in spec.cells() if c in data.values}
    reasons = {c: _missing(data, c, name) for c in spec.cells() if c not in values}
    conv = ["FID against FFHQ's 512 px Inception statistics (fid-ffhq512, as GFPGAN / VQFR / CodeFormer); LPIPS 0-1 "
            "(papers that print x100 are read as 0-1 in --compare-paper)."]
    if synthetic:
        conv.append("IDS: ArcFace cosine of output and ground truth (higher is better); Deg: the angle as VQFR's "
                    "calculate_cos_dist.py (lower is better); LMD: landmark distance as VQFR's script.")
    return spec, values, reasons, conv


def ntire_grid(data: RunData, dataset: str) -> tuple[TableSpec, dict[Cell, Value], dict[Cell, str], list[str]]:
    """The NTIRE table of one NTIRE set: rows = methods, columns = faces below threshold per subset and in all,
    the eval.py-weighted metrics, FID and the score (with and without Q-Align)."""
    from ..datasets.ntire_rwfr import TEST_COUNTS, canonical_subset

    from ..metrics.composite import ntire_rwfr_score
    from ..run.store import read_record

    year = _ntire_year(dataset)
    assert year is not None
    thr = NTIRE_THRESHOLDS[year]
    subsets = list(TEST_COUNTS)
    subset_of: dict[str, str] = {}
    records = data.run / "data" / dataset / "records"
    for p in sorted(records.glob("*.json")) if records.is_dir() else []:
        rec = read_record(p)
        if rec and isinstance(rec.get("source"), str) and "/" in rec["source"]:
            s = canonical_subset(rec["source"].split("/")[1])
            if s:
                subset_of[str(rec.get("id", p.stem))] = s
    cols = ([(f"below:{s}", f"{SUBSET_SHORT[s]} < {thr[s]:g}") for s in subsets] + [("below", "All below")]
            + [(k, FORMATS[k].label) for k in NTIRE_IQA] + [("fid-ffhq512", FORMATS["fid-ffhq512"].label),
                                                           ("score-no-qalign", "Score w/o Q-Align ↑"),
                                                           ("score", "Score ↑")])
    formats = dict(FORMATS)
    formats.update({k: MetricColumn(k, lab, 0, higher_is_better=False) for k, lab in cols if k.startswith("below")})
    formats["score-no-qalign"] = MetricColumn("score-no-qalign", "Score w/o Q-Align ↑", 4, higher_is_better=True)
    formats["score"] = MetricColumn("score", "Score ↑", 4, higher_is_better=True)
    methods = data.methods(dataset)
    values: dict[Cell, Value] = {}
    reasons: dict[Cell, str] = {}
    gate: dict[str, str] = {}
    for m in methods:
        ids = data.per_image.get((dataset, m, "id-lq-adaface"), {})
        cell = Cell(dataset, m, "id-lq-adaface")
        if not ids:
            why = _missing(data, cell, "bfr-ntire")
            for s in subsets + [""]:
                reasons[Cell(dataset, m, f"below:{s}" if s else "below")] = f"needs id-lq-adaface per image: {why}"
            gate[m] = "—"
        else:
            unknown = sorted(i for i in ids if i not in subset_of)
            total = 0
            for s in subsets:
                mine = [v for i, v in ids.items() if subset_of.get(i) == s]
                c = Cell(dataset, m, f"below:{s}")
                if not mine:
                    reasons[c] = f"no {s} image scored in this run"
                    continue
                k = sum(v < thr[s] for v in mine)
                total += k
                values[c] = Value(float(k))
            values[Cell(dataset, m, "below")] = Value(float(total))
            gate[m] = "fail" if total > MAX_BELOW else "pass"
            if unknown:
                reasons[Cell(dataset, m, "below")] = (f"{len(unknown)} image(s) of no known subset ({unknown[0]}, ...): "
                                                     "their records name no subset folder")
                values.pop(Cell(dataset, m, "below"), None)
                gate[m] = "—"
        weighted: dict[str, float] = {}
        for k in NTIRE_IQA:
            per = data.per_image.get((dataset, m, k), {})
            c = Cell(dataset, m, k)
            means = {s: [v for i, v in per.items() if subset_of.get(i) == s] for s in subsets}
            present = [s for s in subsets if means[s]]
            if not present:
                reasons[c] = _missing(data, c, "bfr-ntire")
                continue
            weight = sum(TEST_COUNTS[s] for s in present)
            weighted[k] = sum(sum(means[s]) / len(means[s]) * TEST_COUNTS[s] for s in present) / weight
            values[c] = Value(weighted[k])
        fid = data.values.get(Cell(dataset, m, "fid-ffhq512"))
        if fid is not None:
            values[Cell(dataset, m, "fid-ffhq512")] = fid
            weighted["fid-ffhq512"] = fid.value
        else:
            reasons[Cell(dataset, m, "fid-ffhq512")] = _missing(data, Cell(dataset, m, "fid-ffhq512"), "bfr-ntire")
        parts = ("clip-iqa", "maniqa", "musiq", "niqe", "fid-ffhq512")
        if all(p in weighted for p in parts):
            five = ntire_rwfr_score({**{p: weighted[p] for p in parts}, "q-align": 0.0})
            values[Cell(dataset, m, "score-no-qalign")] = Value(five)
            if "q-align" in weighted:
                values[Cell(dataset, m, "score")] = Value(ntire_rwfr_score(weighted))
        else:
            lack = ", ".join(p for p in parts if p not in weighted)
            reasons[Cell(dataset, m, "score-no-qalign")] = f"needs {lack}"
        if Cell(dataset, m, "score") not in values:
            reasons[Cell(dataset, m, "score")] = ("needs Q-Align (`q-align`, a GPU metric: 8.2 B parameters) on this "
                                                  "set; see the score without it")
    spec = TableSpec(f"bfr-{dataset}", f"NTIRE {year} Real-World Face Restoration on {dataset} ({data.protocol})",
                     tuple((m, m) for m in methods), tuple(cols), lambda r, c: Cell(dataset, r, c),
                     extra_columns=((f"Identity gate (≤ {MAX_BELOW} below)", gate),), formats=formats)
    conv = [f"Thresholds of {year} (AdaFace cosine of output and input): "
            + ", ".join(f"{s} {thr[s]:g}" for s in subsets) + f"; from {NTIRE_THRESHOLD_SOURCE[year]}.",
            f"Identity gate: fail with more than {MAX_BELOW} faces below their threshold (NTIRE 2026's README"
            + ("; 2025's repository states no rule, the same is applied" if year == 2025 else "") + ").",
            "NIQE, CLIP-IQA, MANIQA, MUSIQ, Q-Align: the mean of each subset weighted by the subset's official count "
            "(eval.py); FID to FFHQ over all outputs; Score = CLIP-IQA + MANIQA + MUSIQ/100 + max(0, (10-NIQE)/10) + "
            "Q-Align/5 + max(0, (100-FID)/100); Score w/o Q-Align leaves its term out (at most 5, not 6).",
            "Identity cosines come from this project's id-lq-adaface: faces warped by the fixed FFHQ 5-point template, "
            "not by the organisers' per-image landmarks (face_alignment/inference.py): counts near a threshold may "
            "differ from eval.py's."]
    return spec, values, reasons, conv


def write_bfr_table(name: str, run: Path, out: Path, *, compare_paper: bool = False) -> list[Path]:
    """Write ``<name>.{csv,md,tex,json}`` (``bfr-<dataset>.*`` for each NTIRE set) from a run, and with
    ``compare_paper`` ``<name>_vs_paper.{csv,md,json}``."""
    if name not in NAMES:
        raise UsageError(f"unknown table {name!r}: the blind-face-restoration tables are {', '.join(NAMES)}")
    data = load_run(run)
    _check_protocol(data, name)
    grids = ([ntire_grid(data, d) for d in _datasets(data, name)] if name == "bfr-ntire" else [_grid(name, data)])
    written: list[Path] = []
    for spec, values, reasons, conv in grids:
        caveats = _caveats(data, list(values))
        marks = {c: [f"{w}: not comparable with published numbers" for w in whys] for c, whys in caveats.items()}
        r = render(spec, values, reasons, marks=marks)
        r.substitutions = _weights_notes(data)
        r.extra_conventions = conv
        written += write_files(out, str(spec.number), r.files())
    if compare_paper:
        if name == "bfr-ntire":
            raise UsageError("--compare-paper: no published numbers are on record for the NTIRE sets (the challenge "
                             "reports rank teams, not the methods of this suite)")
        written += write_comparison(name, data, out, _datasets(data, name))
    return written


def _weights_notes(data: RunData) -> list[str]:
    """One line per method run with official weights: which files (sha256) and how it was bridged."""
    notes = []
    for m, info in data.meta.get("methods", {}).items():
        fp = info.get("fingerprint", {}) if isinstance(info, dict) else {}
        if isinstance(fp.get("weights"), dict) and fp["weights"]:
            notes.append(f"{m}: weights sha256 {', '.join(str(h)[:12] for h in fp['weights'].values())}")
    return notes


def comparison(data: RunData, datasets: list[str]) -> list[Check]:
    """Every published number on record for ``datasets`` beside the run's value for it."""
    from ..registries import METHODS, load_plugins

    load_plugins()
    rows = [p for p in published_numbers.published() if p.dataset in datasets]
    cells = [Cell(p.dataset, METHODS.canonical(p.method), p.metric) for p in rows]
    caveats = _caveats(data, [c for c in cells if c in data.values])
    out = []
    for p, c in zip(rows, cells):
        v = data.values.get(c)
        if v is None:
            if c.method not in METHODS:
                missing = f"method {c.method} is not in scgan-bench"
            elif c in data.reasons:
                missing = data.reasons[c]
            else:
                missing = (f"not in this run: `scgan-bench run --protocol bfr-512 --datasets {c.dataset} --methods "
                           f"{c.method} --metrics {c.metric}`")
            out.append(check(p, None, missing=missing))
        else:
            out.append(check(p, v.value, "; ".join(caveats.get(c, [])) or None))
    return out


def comparison_rows(checks: list[Check]) -> list[dict]:
    """The checks as flat rows (what the CSV / JSON / Markdown print)."""
    rows = []
    for k in checks:
        f = FORMATS.get(k.published.metric)
        d = f.decimals if f else 4
        rows.append({"method": k.published.method, "dataset": k.published.dataset, "metric": k.published.metric,
                     "published": f"{k.published.value:.{d}f}",
                     "run": "" if k.run_value is None else f"{k.run_value:.{d}f}",
                     "delta": "" if k.delta is None else f"{k.delta:+.{d}f}",
                     "tolerance": "" if k.tolerance is None else f"{k.tolerance:g}",
                     "verdict": k.verdict, "why": k.why, "source": k.published.source})
    return rows


COMPARISON_NOTE = ("Published numbers as transcribed (every row names the paper, its table and where it was transcribed "
                   "from; check a row against the paper's PDF before relying on it). A difference is printed only for "
                   "a number computed on the same released files, the whole set, the 512 px protocol and official "
                   "weights; 'reproduced' means within the stated tolerance.")


def write_comparison(name: str, data: RunData, out: Path, datasets: list[str], stem: str | None = None) -> list[Path]:
    """``<stem>.{csv,md,json}`` (default ``<name>_vs_paper``) of :func:`comparison`."""
    import csv
    import io

    rows = comparison_rows(comparison(data, datasets))
    stem = stem or f"{name}_vs_paper"
    cols = ["method", "dataset", "metric", "published", "run", "delta", "tolerance", "verdict", "why", "source"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    md = [f"**{name} vs published numbers** ({', '.join(datasets)})", "", COMPARISON_NOTE, "",
          "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(str(r[c]).replace("|", "/") for c in cols) + " |" for r in rows]
    if not rows:
        md.append(f"(no published number on record for {', '.join(datasets)})")
    return write_files(out, stem, {"csv": buf.getvalue(), "md": "\n".join(md) + "\n",
                                   "json": json.dumps({"note": COMPARISON_NOTE, "rows": rows}, ensure_ascii=False,
                                                      indent=1) + "\n"})


def published_listing() -> str:
    """Every published number on record, as Markdown (``table bfr-* --paper``)."""
    lines = ["| method | dataset | test set | metric | value | source |", "|---|---|---|---|---|---|"]
    for p in published_numbers.published():
        f = FORMATS.get(p.metric)
        lines.append(f"| {p.method} | {p.dataset} | {p.test_set} | {p.metric} | "
                     f"{p.value:.{f.decimals if f else 4}f} | {p.source} |")
    return "\n".join([COMPARISON_NOTE, ""] + lines) + "\n"
