"""Composite metrics: NTIRE's weighted score against its formula written here, and a composite in a run
(parts added and reported alone, the value from their means, unavailable / failed naming the part)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from scgan_bench.interfaces import MetricSpec
from scgan_bench.registries import METRICS, load_plugins


def test_ntire_score_is_the_reports_formula():
    """NTIRE 2025 RWFR: CLIPIQA + MANIQA + MUSIQ/100 + QALIGN/5 + max(0, (10-NIQE)/10) + max(0, (100-FID)/100),
    written here term by term; NIQE above 10 and FID above 100 add nothing."""
    from scgan_bench.metrics.composite import NTIRE_PARTS, ntire_rwfr_score

    v = {"clip-iqa": 0.61, "maniqa": 0.52, "musiq": 71.0, "q-align": 4.1, "niqe": 4.0, "fid-ffhq512": 35.0}
    assert ntire_rwfr_score(v) == pytest.approx(0.61 + 0.52 + 0.71 + 0.82 + 0.6 + 0.65, abs=1e-12)
    assert ntire_rwfr_score({**v, "niqe": 12.5, "fid-ffhq512": 140.0}) == pytest.approx(0.61 + 0.52 + 0.71 + 0.82,
                                                                                        abs=1e-12)
    assert set(NTIRE_PARTS) == set(v)
    load_plugins()
    spec = METRICS.get("ntire-rwfr-score")
    assert spec.kind == "composite" and spec.higher_is_better and set(spec.parts) == set(v)


def test_ntire_score_unavailable_names_every_missing_part(weights_dir):
    """Offline with no weights: every part without its files is named, Q-Align (built in) with its snapshot's."""
    load_plugins()
    a = METRICS.get("ntire-rwfr-score").availability()
    assert not a.ok
    for part in ("q-align (2 weight files missing: 'q-align/config.json'", "clip-iqa (weights 'clip-rn50'",
                 "maniqa (weights", "musiq (weights", "fid-ffhq512 (", "niqe ("):
        assert part in a.reason


class _Brightness:
    """A stand-in no-reference metric on a 1-5 scale (mean brightness) in place of the built-in Q-Align."""

    def score_images(self, sr):
        return [1 + 4 * float(np.mean(im)) / 255 for im in sr]


class _Broken:
    def score_images(self, sr):
        raise ValueError("this stand-in cannot score")


def _run(tmp_path, metrics: str) -> tuple[dict, dict]:
    from scgan_bench.cli import main

    out = tmp_path / "run"
    assert main(["run", "--datasets", "demo", "--methods", "bicubic", "--metrics", metrics, "--limit", "3",
                 "--quiet", "--device", "cpu", "--out", str(out)]) == 0
    cells = {r["metric"]: r for r in csv.DictReader((out / "summary.csv").open())}
    return cells, json.loads((out / "run.json").read_text())


def test_composite_in_a_run(tmp_path, monkeypatch):
    """Asking for a composite adds its parts (each a cell of its own); its value is the combination of the
    parts' means, its row in results.csv; without a part it is unavailable naming it."""
    from scgan_bench.metrics.composite import PartsAvailable

    load_plugins()
    monkeypatch.setitem(METRICS._entries, "q-align", MetricSpec(
        name="q-align", factory=lambda device="cpu": _Brightness(), summary="stand-in", higher_is_better=True,
        version="1", needs_hr=False))
    parts = ("psnr", "q-align", "ssim")
    monkeypatch.setitem(METRICS._entries, "combo", MetricSpec(
        name="combo", factory=lambda device="cpu": None, summary="test composite", higher_is_better=True,
        version="1", needs_hr=False, kind="composite", parts=parts, availability=PartsAvailable(parts),
        combine=lambda v: v["psnr"] / 10 + v["q-align"] - v["ssim"]))
    cells, meta = _run(tmp_path / "a", "combo")
    assert meta["config"]["metrics"] == ["psnr", "q-align", "ssim", "combo"]
    assert all(cells[p]["status"] == "ok" for p in parts)
    want = float(cells["psnr"]["mean"]) / 10 + float(cells["q-align"]["mean"]) - float(cells["ssim"]["mean"])
    assert cells["combo"]["status"] == "ok" and float(cells["combo"]["mean"]) == pytest.approx(want, rel=1e-9)
    assert cells["combo"]["n"] == "3"
    rows = [r for r in csv.DictReader((tmp_path / "a" / "run" / "results.csv").open()) if r["metric"] == "combo"]
    assert [(r["image_id"], float(r["value"])) for r in rows] == [("*", pytest.approx(want, rel=1e-9))]

    METRICS._entries["q-align"] = MetricSpec(
        name="q-align", factory=lambda device="cpu": _Broken(), summary="stand-in", higher_is_better=True,
        version="2", needs_hr=False)
    cells, _ = _run(tmp_path / "b", "combo")
    assert cells["q-align"]["status"] == "failed"
    assert cells["combo"]["status"] == "failed" and cells["combo"]["note"].startswith("part q-align: ")

    monkeypatch.delitem(METRICS._entries, "q-align")   # a part no plug-in registers
    cells, _ = _run(tmp_path / "c", "combo")
    assert cells["combo"]["status"] == "unavailable"
    assert "'q-align', which neither the suite nor an installed plug-in" in cells["combo"]["note"]
    assert cells["psnr"]["status"] == "ok"  # the registered parts are still computed and reported
