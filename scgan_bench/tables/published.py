"""Numbers the blind-face-restoration papers published, each with where it was printed, and the check of a
run against them (``table bfr-* --compare-paper``, ``verify-method``).

``bfr_published.csv`` holds one row per published number: the method (this project's name for the weights
the paper scored: ``gfpgan-v1`` is the paper's GFP-GAN, not the later v1.3 / v1.4), the dataset (this
project's name), ``test_set`` (which files: ``released`` = the set as its authors distribute it, the one
this project's dataset module reads; ``codeformer-synthetic`` / ``difface-synthetic`` = a CelebA-Test the
paper synthesised itself from CelebA-HQ with its own degradation, not GFPGAN's released pairs), the metric
(this project's), the value in the metric's own units (LPIPS 0-1, not x100), the paper and table that
printed it, and ``via``: where the number was transcribed from. Every row so far was transcribed from Papers
with Code's record of the paper (the papers' PDFs were not reachable where this file was written): a row is
"as transcribed", to be checked against the PDF, and the comparison says so.

A difference is printed only where the number is comparable: same released file list, and the run computed
the metric on the whole set under the ``bfr-512`` protocol. Everything else is listed with the reason.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PUBLISHED = Path(__file__).resolve().parent / "bfr_published.csv"

#: how far a run's value may be from a published one and still reproduce it: what decoding (cv2 / Pillow),
#: resize paths, library versions and GPU arithmetic move these metrics by on a 512 px test set (this
#: project's choice, stated in the README; not a statistical bound)
TOLERANCES = {"psnr": 0.3, "ssim": 0.01, "lpips": 0.01, "dists": 0.01, "fid-ffhq512": 2.0, "niqe": 0.15,
              "musiq": 1.0, "maniqa": 0.01, "clip-iqa": 0.01, "deg-vqfr": 1.0, "lmd-awing": 0.2,
              "ids-arcface": 0.01}

#: what a test-set tag other than ``released`` means, for the reason printed with it
TEST_SETS = {
    "released": "the set as its authors distribute it (what this project's dataset module reads)",
    "codeformer-synthetic": "CodeFormer's own CelebA-Test (3,000 CelebA-HQ faces degraded with CodeFormer's "
                            "training degradation), not GFPGAN's released pairs",
    "difface-synthetic": "DifFace's own synthetic CelebA-Test (CelebA-HQ faces degraded by DifFace's settings), "
                         "not GFPGAN's released pairs",
}


@dataclass(frozen=True)
class Published:
    """One number a paper printed."""

    method: str
    dataset: str
    test_set: str
    metric: str
    value: float
    paper: str
    table: str
    via: str

    @property
    def source(self) -> str:
        return f"{self.paper}, {self.table}; transcribed from {self.via}"


@lru_cache(maxsize=1)
def published() -> tuple[Published, ...]:
    """Every row of ``bfr_published.csv`` (a row with an unknown test set or a non-number is an error here,
    not a silent skip)."""
    rows = []
    with open(PUBLISHED, newline="", encoding="utf-8") as f:
        for line, r in enumerate(csv.DictReader(f), start=2):
            if r["test_set"] not in TEST_SETS:
                raise ValueError(f"{PUBLISHED}:{line}: test_set {r['test_set']!r} is not one of {', '.join(TEST_SETS)}")
            value = float(r["value"])
            if not math.isfinite(value):
                raise ValueError(f"{PUBLISHED}:{line}: value {r['value']!r} is not a finite number")
            rows.append(Published(r["method"], r["dataset"], r["test_set"], r["metric"], value, r["paper"],
                                  r["table"], r["via"]))
    return tuple(rows)


def for_method(method: str, dataset: str | None = None) -> list[Published]:
    """The published numbers of ``method`` (on ``dataset`` when given)."""
    return [p for p in published() if p.method == method and (dataset is None or p.dataset == dataset)]


def not_comparable(p: Published) -> str | None:
    """Why ``p`` can be no reference for a run of this project, whatever the run (None: it can be)."""
    if p.test_set != "released":
        return f"published on {TEST_SETS[p.test_set]}"
    return None


@dataclass(frozen=True)
class Check:
    """A published number beside the run's value: ``verdict`` is ``reproduced`` / ``differs`` (within /
    beyond :data:`TOLERANCES`), ``no Δ`` (not comparable: ``why``) or ``not in run`` (``why``)."""

    published: Published
    run_value: float | None
    verdict: str
    why: str = ""

    @property
    def delta(self) -> float | None:
        if self.run_value is None or self.verdict not in ("reproduced", "differs"):
            return None
        return self.run_value - self.published.value

    @property
    def tolerance(self) -> float | None:
        return TOLERANCES.get(self.published.metric)


def check(p: Published, run_value: float | None, run_caveat: str | None = None, missing: str = "") -> Check:
    """``p`` against the run's value for its (method, dataset, metric): ``run_caveat`` says why the run's value
    is no full-set, protocol-true number (it is then not compared); ``missing`` why the run has none."""
    why = not_comparable(p)
    if run_value is None:
        return Check(p, None, "not in run", missing or "the run has no value for it")
    if why or run_caveat:
        return Check(p, run_value, "no Δ", "; ".join(w for w in (why, run_caveat) if w))
    tol = TOLERANCES.get(p.metric)
    if tol is None:
        return Check(p, run_value, "no Δ", f"no tolerance is stated for {p.metric}")
    return Check(p, run_value, "reproduced" if abs(run_value - p.value) <= tol else "differs")
