"""Tables 1-7 of the paper as data: rows, columns, grouping, arrows, formats, and what a run needs.

A table is a grid of cells, each naming one (dataset, method, metric). ``rank_by`` says along which
axis best / second / third are highlighted (the paper ranks each metric column per dataset in
Tables 1-4 and 6, and each dataset-metric row in Table 5 and 7).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..registry import Registry

SYNTHETIC = ("ls3dw", "ffhq")
REAL = ("widerface", "webface")
DATASET_LABELS = {"ls3dw": "LS3D-W balanced", "ffhq": "FFHQ", "widerface": "Widerface", "webface": "WebFace"}


@dataclass(frozen=True)
class MetricColumn:
    """How a metric is printed in the paper."""

    name: str
    label: str
    decimals: int
    scale: float = 1.0      # printed value = raw value * scale (KID x 100, accuracies in %)
    percent: bool = False
    with_std: bool = False  # KID is printed mean +- std
    #: the direction of a column that is no registered metric (a count, a score built by the table)
    higher_is_better: bool | None = None


METRIC_FORMATS = {
    "fid": MetricColumn("fid", "FID", 2),
    "kid": MetricColumn("kid", "KID", 2, scale=100.0, with_std=True),
    "lpips": MetricColumn("lpips", "LPIPS", 3),
    "niqe": MetricColumn("niqe", "NIQE", 4),
    "hog-detect": MetricColumn("hog-detect", "Detection accuracy", 2, scale=100.0, percent=True),
    "facenet-verif": MetricColumn("facenet-verif", "Accuracy", 2, scale=100.0, percent=True),
}

METHOD_LABELS = {
    "bicubic": "Bicubic Interpolation", "dfdnet": "DFDNet", "hifacegan": "HifaceGAN",
    "real-esrgan": "Real-ESRGAN", "cyclegan": "CycleGAN", "gfpgan": "GFPGAN", "lrgan": "LRGAN",
    "pulse": "PULSE", "scgan": "SCGAN (ours)", "ground-truth": "Ground Truth",
}


@dataclass(frozen=True)
class Cell:
    dataset: str
    method: str
    metric: str


@dataclass(frozen=True)
class TableSpec:
    number: int | str                         # 1-7 for the paper's tables; a name (``bfr-real``) otherwise
    title: str
    rows: tuple[tuple[str, str], ...]          # (row key, label)
    columns: tuple[tuple[str, str], ...]       # (column key, label)
    cell: object                              # (row key, column key) -> Cell
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()  # row groups (label, row keys) for layout
    rank_by: str = "column"                   # "column" or "row"
    rank_exclude: tuple[str, ...] = ()
    extra_columns: tuple[tuple[str, dict], ...] = field(default=())  # (label, row key -> text)
    row_header: str = "Method"
    #: how this table prints a metric, where it differs from the paper's (:data:`METRIC_FORMATS`)
    formats: dict[str, MetricColumn] = field(default_factory=dict)

    @property
    def heading(self) -> str:
        """How the table is named above it: ``Table 3`` for the paper's, the table's name otherwise."""
        return f"Table {self.number}" if isinstance(self.number, int) else str(self.number)

    def format_of(self, metric: str) -> MetricColumn | None:
        """The printing of ``metric`` in this table (None: 4 decimals, as is)."""
        return self.formats.get(metric) or METRIC_FORMATS.get(metric)

    def cells(self) -> list[Cell]:
        return [self.cell(r, c) for r, _ in self.rows for c, _ in self.columns]

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(c.dataset for c in self.cells()))

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(c.method for c in self.cells()))

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(c.metric for c in self.cells()))


TABLES: Registry[TableSpec] = Registry("table")


def with_extra_methods(spec: TableSpec, extras: list[str]) -> TableSpec:
    """``spec`` with more methods beside the paper's, on the table's own method axis: new columns where
    methods are columns (Tables 5, 7), new rows where they are rows (Tables 4, 6), and a new row in
    every dataset block where rows are ``dataset/method`` (Tables 1-3). Labels are the method names;
    extra methods are ranked with the others."""
    from dataclasses import replace

    from ..errors import UsageError

    extras = [m for m in dict.fromkeys(extras) if m and m not in spec.methods]
    if not extras:
        return spec
    r0, c0 = spec.rows[0][0], spec.columns[0][0]
    if all(spec.cell(r0, c).method == c for c, _ in spec.columns):
        return replace(spec, columns=spec.columns + tuple((m, m) for m in extras))
    if all(spec.cell(r, c0).method == r for r, _ in spec.rows):
        return replace(spec, rows=spec.rows + tuple((m, m) for m in extras),
                       extra_columns=tuple((lab, {**col, **{m: "" for m in extras}}) for lab, col in spec.extra_columns))
    if spec.groups and all("/" in r and spec.cell(r, c0).method == r.rsplit("/", 1)[1] for r, _ in spec.rows):
        labels = dict(spec.rows)
        groups = tuple((label, keys + tuple(f"{keys[0].rsplit('/', 1)[0]}/{m}" for m in extras))
                       for label, keys in spec.groups)
        rows = tuple((k, labels.get(k, k.rsplit("/", 1)[1])) for _, keys in groups for k in keys)
        return replace(spec, rows=rows, groups=groups)
    raise UsageError(f"Table {spec.number} has no method axis to add {', '.join(extras)} to")


#: how a metric backend is named in labels ("FID (dlib)")
BACKEND_LABELS = {"inception": "Inception", "facenet": "FaceNet", "dlib": "dlib", "hog-svm": "HOG+SVM"}
#: the word of a table title that names the metric's backend (replaced when another backend fills it)
TITLE_BACKENDS = {"facenet-verif": "FaceNet", "hog-detect": "HOG+SVM"}


def relabel(spec: TableSpec, datasets: dict[str, str], metrics: dict[str, str]) -> TableSpec:
    """``spec`` with its labels carrying each substitution where the numbers are read: a dataset read
    from another run dataset shows ``FFHQ → demo``, a metric computed by something else (``metrics``:
    table metric -> what computed it, e.g. ``dlib``) shows ``FID (dlib)``; the title names both (and
    never the paper's backend, e.g. FaceNet, for another)."""
    from dataclasses import replace

    ds = {DATASET_LABELS[d]: f"{DATASET_LABELS[d]} → {src}" for d, src in datasets.items()
          if src != d and d in spec.datasets and d in DATASET_LABELS}
    ms = {METRIC_FORMATS[m].label: f"{METRIC_FORMATS[m].label} ({by})" for m, by in metrics.items()
          if m in spec.metrics and m in METRIC_FORMATS}
    if not ds and not ms:
        return spec

    def sub(text: str, table: dict[str, str]) -> str:
        if not table:
            return text
        pat = "|".join(rf"(?<![\w-]){re.escape(k)}(?![\w-])" for k in sorted(table, key=len, reverse=True))
        return re.sub(pat, lambda m: table[m.group(0)], text)

    def label(text: str) -> str:
        return sub(text, {**ds, **ms})

    title = sub(spec.title, {**ds, **{TITLE_BACKENDS[m]: by for m, by in metrics.items()
                                      if m in TITLE_BACKENDS and m in spec.metrics}})
    said = []
    by_src: dict[str, list[str]] = {}
    for d, src in datasets.items():
        if d in spec.datasets and src != d and ds.get(DATASET_LABELS.get(d, "")) not in title:
            by_src.setdefault(src, []).append(DATASET_LABELS.get(d, d))
    said += [f"{', '.join(labels)} → {src}" for src, labels in by_src.items()]
    by_backend: dict[str, list[str]] = {}
    for m, by in metrics.items():
        if m in spec.metrics and m in METRIC_FORMATS and by not in title:
            by_backend.setdefault(by, []).append(METRIC_FORMATS[m].label)
    said += [f"{', '.join(labels)} by {by}" for by, labels in by_backend.items()]
    if said:
        title += f" ({'; '.join(said)})"
    return replace(spec, title=title, row_header=label(spec.row_header),
                   rows=tuple((k, label(v)) for k, v in spec.rows),
                   columns=tuple((k, label(v)) for k, v in spec.columns),
                   groups=tuple((label(g), keys) for g, keys in spec.groups))


def _ablation(number: int, title: str, variants: list[tuple[str, str]]) -> TableSpec:
    """Tables 1-3: per dataset a block of variant rows; FID, KID and LPIPS (synthetic) or NIQE (real)."""
    rows = tuple((f"{d}/{v}", label) for d in SYNTHETIC + REAL for v, label in variants)
    cols = (("fid", "FID ↓"), ("kid", "KID ↓"), ("third", "LPIPS ↓ / NIQE ↓"))

    def cell(row: str, col: str) -> Cell:
        d, v = row.split("/")
        metric = col if col != "third" else ("lpips" if d in SYNTHETIC else "niqe")
        return Cell(d, v, metric)

    groups = tuple((DATASET_LABELS[d], tuple(f"{d}/{v}" for v, _ in variants)) for d in SYNTHETIC + REAL)
    return TableSpec(number, title, rows, cols, cell, groups, row_header="Variant")


TABLES.register("1", _ablation(1, "Semi-cycled architecture: SCGAN and its variants", [
    ("scgan-wo-dsl", "SCGAN-w/o-D_SL"), ("scgan-wo-dhl", "SCGAN-w/o-D_HL"), ("scgan-fc", "SCGAN-fc"),
    ("scgan", "SCGAN")]))
TABLES.register("2", _ablation(2, "Sharing parameters between the two degradation branches", [
    ("scgan-sa", "SCGAN-SA"), ("scgan-se", "SCGAN-SE"), ("scgan-sd", "SCGAN-SD"), ("scgan-sm", "SCGAN-SM"),
    ("scgan", "SCGAN")]))
TABLES.register("3", _ablation(3, "Loss functions", [
    ("scgan-wo-al", "SCGAN-w/o-AL"), ("scgan-wo-pl", "SCGAN-w/o-PL"), ("scgan-wo-cl", "SCGAN-w/o-CL"),
    ("scgan", "SCGAN")]))


def _table4() -> TableSpec:
    from ..scgan.variants import TABLE4_ROWS

    order = [(4, 1), (3, 1), (3, 2), (3, 3), (3, 4), (2, 1), (2, 2), (2, 3), (2, 4), (2, 5), (2, 6),
             (1, 1), (1, 2), (1, 3), (1, 4)]
    rows = tuple((f"scgan-ladv-{r}-{k}", f"l_adv-{r}-{k}") for r, k in order) + (("scgan", "SCGAN"),)
    kept = {f"scgan-ladv-{r}-{k}": set(TABLE4_ROWS[(r, k)]) for r, k in order}
    kept["scgan"] = {"L1", "L2", "H1", "H2"}
    cols = tuple((f"{d}/{m}", f"{DATASET_LABELS[d]} {m.upper()} ↓") for d in REAL for m in ("fid", "kid", "niqe"))
    extra = (("Removal", {r: str(4 - len(kept[r])) for r, _ in rows}),) + tuple(
        (f"l_adv^D_{k}", {r: "✓" if k in kept[r] else "✗" for r, _ in rows}) for k in ("L1", "L2", "H1", "H2"))
    return TableSpec(4, "Combinations of adversarial losses", rows, cols,
                     lambda row, col: Cell(col.split("/")[0], row, col.split("/")[1]), extra_columns=extra,
                     row_header="Variant")


TABLES.register("4", _table4())

_T5_METHODS = ("bicubic", "dfdnet", "hifacegan", "real-esrgan", "cyclegan", "gfpgan", "lrgan", "pulse", "scgan")
TABLES.register("5", TableSpec(
    5, "Comparison with state-of-the-art methods",
    rows=tuple((f"{d}/{m}", f"{METRIC_FORMATS[m].label} ↓") for d in SYNTHETIC + REAL
               for m in (("fid", "kid", "lpips") if d in SYNTHETIC else ("fid", "kid", "niqe"))),
    columns=tuple((m, METHOD_LABELS[m]) for m in _T5_METHODS),
    cell=lambda row, col: Cell(row.split("/")[0], col, row.split("/")[1]),
    groups=tuple((DATASET_LABELS[d], tuple(f"{d}/{m}" for m in (("fid", "kid", "lpips") if d in SYNTHETIC
                                                                  else ("fid", "kid", "niqe"))))
                 for d in SYNTHETIC + REAL),
    rank_by="row", row_header="Metric"))

_T6_METHODS = ("bicubic", "dfdnet", "hifacegan", "cyclegan", "lrgan", "gfpgan", "scgan")
TABLES.register("6", TableSpec(
    6, "HOG+SVM face detection accuracy on SR images",
    rows=tuple((m, METHOD_LABELS[m]) for m in _T6_METHODS),
    columns=tuple((d, DATASET_LABELS[d]) for d in SYNTHETIC + REAL),
    cell=lambda row, col: Cell(col, row, "hog-detect")))
_T7_METHODS = ("bicubic", "dfdnet", "hifacegan", "cyclegan", "lrgan", "gfpgan", "scgan", "ground-truth")
TABLES.register("7", TableSpec(
    7, "FaceNet verification accuracy on the FFHQ test set",
    rows=(("accuracy", "Accuracy"),),
    columns=tuple((m, METHOD_LABELS[m]) for m in _T7_METHODS),
    cell=lambda row, col: Cell("ffhq", col, "facenet-verif"), rank_by="row", rank_exclude=("ground-truth",),
    row_header="FFHQ"))
