"""Issue 26: a number is set beside the paper's (a Δ) only where it is comparable. A partial test set
(missing images, ``--limit``) and a weight file that is not the official release are said in every
output: the summary, the run's exit status under ``--require-comparable``, the tables (a footnote with
n, no Δ), the report, ``list`` and ``weights list``. Ranks are taken on printed values."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import torch

from sb_testdata import HR_FACES, need

from scgan_bench.assets import weights as W
from scgan_bench.cli import main


def _ffhq_part(root: Path, n: int) -> list[str]:
    """A flat FFHQ folder holding the first ``n`` of the 2,500 test ids (the shared 128 px faces)."""
    from scgan_bench.io.manifest import packaged_manifest_path

    faces = sorted(need(HR_FACES).glob("*.png"))
    ids = [ln.split("\t")[0] for ln in packaged_manifest_path("ffhq", "test").read_text().splitlines()
           if ln and not ln.startswith("#")][:n]
    root.mkdir(parents=True)
    for i, face in zip(ids, faces):
        os.link(face, root / f"{i}.png")
    return ids


def _random_alexnet(weights_dir: Path) -> str:
    """torchvision's AlexNet with random weights, in the official file's name and layout, pinned."""
    from torchvision.models import alexnet

    torch.manual_seed(0)
    path = weights_dir / W.ASSETS.get("alexnet").filename
    torch.save(alexnet().state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    W.register_sha256("alexnet", digest)
    return digest


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_partial_test_set_and_unofficial_weights_print_no_delta_anywhere(weights_dir, tmp_path, capsys):
    ffhq, run = tmp_path / "ffhq", tmp_path / "run"
    _ffhq_part(ffhq, 6)
    digest = _random_alexnet(weights_dir)
    args = ["run", "--datasets", "ffhq", "--root", f"ffhq={ffhq}", "--methods", "bicubic,nearest",
            "--metrics", "hog-detect,lpips", "--out", str(run), "--quiet", "--device", "cpu"]
    capsys.readouterr()
    assert main(args) == 0                      # the good images are scored, as ever...
    out = capsys.readouterr().out
    partial = "partial set: 6 of 2,500 images of ffhq (2,494 could not be read: failures.csv)"
    assert f"NOT COMPARABLE with published numbers: P{partial[1:]}" in out
    assert f"NOT COMPARABLE with published numbers: Metric lpips used non-official weights " \
           f"(alexnet-owt-7be5be79.pth sha256 {digest[:12]}… is not the official file (7be5be791159…))" in out
    md = (run / "summary.md").read_text()
    assert f"**Not comparable:** P{partial[1:]}: not comparable" in md
    assert "**Not comparable:** Metric lpips used non-official weights" in md
    meta = json.loads((run / "run.json").read_text())
    assert meta["datasets"]["ffhq"]["full_manifest_items"] == 2500 and meta["datasets"]["ffhq"]["images"] == 6
    assert set(meta["metrics"]["lpips"]["unofficial_weights"]) == {"alexnet"}
    assert meta["metrics"]["hog-detect"]["unofficial_weights"] == {}
    # ...and --require-comparable makes it the exit status (nothing is recomputed)
    assert main([*args, "--require-comparable"]) == 3
    assert "--require-comparable: exit status 3" in capsys.readouterr().out

    # tables: every FFHQ value footnoted with its n, and no Δ in the comparison with the paper
    for number, metric in (("5", "lpips"), ("6", "hog-detect")):
        assert main(["table", number, str(run), "--compare-paper"]) == 0
        table = (run / f"table{number}.md").read_text()
        assert f"{partial}: not comparable with the paper's value (no Δ)" in table
        cmp = (run / f"table{number}_vs_paper.md").read_text()
        assert "Δ " not in cmp.replace("no Δ", ""), cmp
        assert f"no Δ: {partial}" in cmp
        tex = (run / f"table{number}.tex").read_text()
        assert "6 of 2,500 images of ffhq" in tex
    cmp5 = (run / "table5_vs_paper.md").read_text()
    assert "metric lpips used non-official weights" in cmp5
    # the report carries the tables' footnotes and the summary's statement
    assert main(["report", str(run), "--no-tsne"]) == 0
    html = (run / "report.html").read_text()
    assert "6 of 2,500 images of ffhq" in html and "metric lpips used non-official weights" in html
    # list and weights list name the non-official file
    assert main(["list", "metrics"]) == 0
    listed = capsys.readouterr().out
    block = listed[listed.index("\nlpips "):][:400]
    assert "available with NON-OFFICIAL weights" in block and digest[:12] in block
    assert main(["weights", "list", "alexnet"]) == 0
    assert "NOT the official file" in capsys.readouterr().out

    # --limit on a full folder is a partial set too, said as such
    lim = tmp_path / "lim"
    assert main(["run", "--datasets", "ffhq", "--root", f"ffhq={ffhq}", "--methods", "bicubic", "--metrics",
                 "hog-detect", "--limit", "3", "--out", str(lim), "--quiet", "--device", "cpu"]) == 0
    assert "partial set: 3 of 2,500 images of ffhq (--limit 3)" in (lim / "summary.md").read_text().replace(
        "Partial", "partial")


def _crafted_run(run: Path, *, images: int, unofficial: dict[str, dict[str, str]], n: dict[str, int]) -> None:
    """A run folder as `run` writes it: FFHQ scored by bicubic with fid / kid / lpips."""
    run.mkdir()
    values = {"fid": 30.0, "kid": 0.02, "lpips": 0.3}
    with open(run / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "method", "metric", "image_id", "value"])
        for k, v in values.items():
            w.writerow(["ffhq", "bicubic", k, "*", v])
        w.writerow(["ffhq", "bicubic", "kid:std", "*", 0.001])
    with open(run / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "method", "metric", "direction", "mean", "std", "n", "n_failed", "status", "note"])
        for k, v in values.items():
            w.writerow(["ffhq", "bicubic", k, "lower", v, "", n.get(k, images), 2500 - n.get(k, images), "ok", ""])
    meta = {"status": "complete", "datasets": {"ffhq": {"images": images, "manifest_items": 2500,
                                                        "full_manifest_items": 2500, "limit": None}},
            "methods": {"bicubic": {"fingerprint": {}, "unofficial_weights": {}}},
            "metrics": {k: {"version": "1", "unofficial_weights": unofficial.get(k, {})} for k in values}}
    (run / "run.json").write_text(json.dumps(meta))


def test_each_reason_alone_removes_the_delta_of_its_cells_only(tmp_path):
    """One reason at a time, on a run folder as `run` writes it: only the cells it concerns lose their Δ
    (the others keep theirs), and each says why."""
    full = tmp_path / "full"
    _crafted_run(full, images=2500, unofficial={"fid": {"inception-fid": "weights-inception… is not the official"}},
                 n={"lpips": 2400})
    assert main(["table", "5", str(full), "--compare-paper"]) == 0
    cmp = {r[1]: r for r in csv.reader(open(full / "table5_vs_paper.csv")) if r and r[0] == "FFHQ"}
    fid, kid, lpips = (next(r for label, r in cmp.items() if label.startswith(k)) for k in ("FID", "KID", "LPIPS"))
    bicubic = 2  # columns: Dataset, Metric, Bicubic, ...
    assert re.search(r"\(paper [\d.±]+, Δ [+-][\d.]+\)", kid[bicubic]), kid
    assert "no Δ: metric fid used non-official weights" in fid[bicubic] and ", Δ" not in fid[bicubic]
    assert "no Δ: partial: n = 2,400 of 2,500 images of ffhq" in lpips[bicubic] and ", Δ" not in lpips[bicubic]
    plain = {r[1]: r for r in csv.reader(open(full / "table5.csv")) if r and r[0] == "FFHQ"}
    notes = {r[0]: r[1] for r in csv.reader(open(full / "table5.csv")) if r and r[0].startswith("[")}
    fid_mark = re.fullmatch(r"30\.00(\[\d+\])", plain["FID ↓"][bicubic]).group(1)
    assert notes[fid_mark].startswith("metric fid used non-official weights")
    lp_mark = re.fullmatch(r"0\.300(\[\d+\])", plain["LPIPS ↓"][bicubic]).group(1)
    assert notes[lp_mark].startswith("partial: n = 2,400 of 2,500")
    assert plain["KID ↓"][bicubic] == "2.00±0.10"                     # comparable: no footnote


def test_ranks_follow_printed_values(tmp_path):
    """Values that print alike share a rank and a colour; a difference below the printed precision never
    decides one (Table 1 prints FID with 2 decimals)."""
    from scgan_bench.reports.ranking import printed_ranks
    from scgan_bench.tables.render import Value, render, table_spec
    from scgan_bench.tables.specs import Cell

    # independent of the code's helper: rank by the printed strings themselves
    vals = {"a": 0.6249, "b": 0.6151, "c": 0.6201, "d": 0.6180, "e": 0.70}
    assert printed_ranks(vals, higher_is_better=False, decimals=2) == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 2}
    assert printed_ranks({"x": 19.8301, "y": 19.8299}, higher_is_better=False, decimals=2) == {"x": 1, "y": 1}
    assert printed_ranks({"x": 1.0, "y": float("nan")}, higher_is_better=True, decimals=2) == {}
    spec = table_spec(1)                          # LPIPS printed with 3 decimals
    cells = {Cell("ffhq", m, "lpips"): Value(v) for m, v in
             (("scgan-wo-dsl", 0.62049), ("scgan-wo-dhl", 0.61951), ("scgan-fc", 0.6201), ("scgan", 0.6198))}
    r = render(spec, cells)
    got = {row[1]: rk[-1] for row, rk in zip(r.rows, r.rank) if row[1].startswith("SCGAN") and "0.620" in row[-1]}
    assert len(got) == 4 and set(got.values()) == {1}, got    # all print 0.620: all best, none "2nd" / "3rd"
    tex = r.latex()
    assert tex.count("\\textcolor{red}{0.620}") == 4 and "\\textcolor{blue}{0." not in tex


def test_bar_chart_colours_ties_alike_and_never_greys_a_ranked_out_method(tmp_path):
    from scgan_bench.reports import figures

    run = tmp_path / "run"
    run.mkdir()
    with open(run / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "method", "metric", "direction", "mean", "std", "n", "n_failed", "status", "note"])
        for m, v in (("a", 20.00001), ("b", 20.0), ("c", 21.0), ("d", 22.0), ("e", 23.0), ("ground-truth", 30.0)):
            w.writerow(["demo", m, "psnr", "higher", v, "", 4, 0, "ok", ""])
    fig = figures._bars_fig(run, "demo")
    bars = fig.axes[0].patches
    names = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    colour = {n: tuple(round(c, 3) for c in b.get_facecolor()) for n, b in zip(names, bars)}
    assert colour["a"] == colour["b"]                          # 20.0000 and 20.0000 as printed: one rank
    import matplotlib.colors as mc

    assert colour["e"] == tuple(round(c, 3) for c in mc.to_rgba("#c00000"))
    assert colour["a"] == tuple(round(c, 3) for c in mc.to_rgba(figures.OTHER_COLOUR))   # 4th: tan, not grey
    assert colour["ground-truth"] == tuple(round(c, 3) for c in mc.to_rgba(figures.PSEUDO_COLOUR))
    assert colour["a"] != colour["ground-truth"]
    assert "tan: the other methods" in fig._suptitle.get_text()


# ------------------------------------------------------------------------------------------ labels
def _summary_run(run: Path, rows: list[tuple[str, str, str, float, int]]) -> None:
    """results.csv / summary.csv / run.json of set-valued cells (dataset, method, metric, value, n)."""
    run.mkdir()
    with open(run / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "method", "metric", "image_id", "value"])
        w.writerows([(d, m, k, "*", v) for d, m, k, v, _ in rows])
    with open(run / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "method", "metric", "direction", "mean", "std", "n", "n_failed", "status", "note"])
        w.writerows([(d, m, k, "higher", v, "", n, 0, "ok", "") for d, m, k, v, n in rows])
    (run / "run.json").write_text(json.dumps({"status": "complete", "datasets": {
        d: {"images": n, "manifest_items": n, "full_manifest_items": n} for d, _, _, _, n in rows}}))


def test_table_7_read_from_dlib_states_dlibs_rule_not_facenets(tmp_path):
    run = tmp_path / "run"
    _summary_run(run, [("demo", "bicubic", "dlib-verif", 0.5, 10), ("demo", "ground-truth", "dlib-verif", 1.0, 10)])
    assert main(["table", "7", str(run), "--dataset-map", "ffhq=demo", "--metric-map", "facenet-verif=dlib-verif"]) == 0
    md = (run / "table7.md").read_text()
    assert "dlib" in md.splitlines()[0]                                 # the title names the backend
    assert "L2 of raw descriptors < 0.6" in md and "< 1.1" not in md and "squared L2 of unit" not in md
    tex = (run / "table7.tex").read_text()
    assert "< 1.1" not in tex and "0.6" in tex


def test_extra_method_missing_from_a_table_dataset_points_to_dataset_map(tmp_path):
    run = tmp_path / "run"
    _summary_run(run, [("demo", "mine", "hog-detect", 0.5, 10)])
    assert main(["table", "6", str(run), "--extra-methods", "mine"]) == 0
    md = (run / "table6.md").read_text()
    assert "not implemented" not in md.split("| mine |")[1].split("\n")[0]
    notes = "\n".join(ln for ln in md.splitlines() if ln.startswith("["))
    assert "method mine was not run on ffhq in this run (it has values for demo)" in notes
    assert "--dataset-map ffhq=NAME" in notes
    # a method that is in no run at all is said to be absent from the run, not "not implemented"
    assert main(["table", "6", str(run), "--extra-methods", "yours"]) == 0
    md = (run / "table6.md").read_text()
    assert "method yours has no value in this run" in md and "method yours is not implemented" not in md


def test_extra_methods_auto_adds_the_runs_methods_beyond_the_papers(tmp_path, capsys, monkeypatch):
    """``--extra-methods auto``: each run method that fills no column of the table (here pmrf, mine), in the
    run's order; not the ones that do (bicubic; gfpgan-v1.3 fills 'gfpgan'), not the reference row."""
    run = tmp_path / "run"
    _summary_run(run, [("demo", m, "fid", 30.0 + i, 10) for i, m in
                       enumerate(("bicubic", "pmrf", "gfpgan-v1.3", "mine", "ground-truth"))])
    meta = json.loads((run / "run.json").read_text())
    meta["methods"] = {m: {} for m in ("bicubic", "pmrf", "gfpgan-v1.3", "mine", "ground-truth")}
    (run / "run.json").write_text(json.dumps(meta))
    assert main(["table", "5", str(run), "--dataset-map", "ffhq=demo", "--extra-methods", "auto"]) == 0
    header = (run / "table5.csv").read_text().splitlines()[0].split(",")
    assert header[-2:] == ["pmrf", "mine"] and "gfpgan-v1.3" not in header and "ground-truth" not in header
    md = (run / "table5.md").read_text()          # mine has FID on demo, not KID: said so, not "not implemented"
    assert "method mine was scored on demo in this run, but not with kid" in md and "mine is not implemented" not in md
    # so is a registered method (its files absent now were there for the run), and a plug-in registered now
    assert "method pmrf was scored on demo in this run, but not with kid" in md and "pmrf unavailable" not in md
    from scgan_bench.registries import METHODS

    monkeypatch.setitem(METHODS._entries, "mine", METHODS.get("bicubic"))
    assert main(["table", "5", str(run), "--dataset-map", "ffhq=demo", "--extra-methods", "auto"]) == 0
    assert "method mine was scored on demo in this run, but not with kid" in (run / "table5.md").read_text()
    assert main(["table", "5", "--paper", "--extra-methods", "auto"]) == 2
    assert "needs a run folder" in capsys.readouterr().err


def test_summary_footnotes_every_empty_cell_and_prints_no_nan_spread():
    from scgan_bench.run.summary import NOT_RUN, Cell, summary_markdown

    cells = [Cell("demo", "a", "psnr", True, values=(20.0, 22.0)),
             Cell("demo", "b", "ssim", True, values=(0.5, 0.7)),
             Cell("demo", "b", "fid", False, set_value=30.0, set_std=float("nan")),
             Cell("demo", "c", "psnr", True, set_value=21.0, set_std=1.0, n_set=2, std_shown=False)]
    md = summary_markdown(cells, {})
    assert "[?]" not in md and "nan" not in md
    row_a = next(ln for ln in md.splitlines() if ln.startswith("| a |"))
    mark = re.search(r"— \[(\d+)\]", row_a).group(1)
    assert f"[{mark}] {NOT_RUN}" in md
    assert next(ln for ln in md.splitlines() if ln.startswith("| c |")).split("|")[2].strip() == "21.0000"


def test_kept_cells_print_as_when_they_were_computed(tmp_path):
    """A rerun with another method keeps the earlier cells; they print exactly as before (no ``± nan``,
    no spread that a freshly computed per-image cell does not print)."""
    run = tmp_path / "run"
    base = ["--datasets", "demo", "--limit", "3", "--quiet", "--device", "cpu", "--out", str(run)]
    assert main(["run", "--methods", "bicubic", "--metrics", "psnr,ssim", *base]) == 0
    first = next(ln for ln in (run / "summary.md").read_text().splitlines() if ln.startswith("| bicubic |"))
    assert main(["run", "--methods", "nearest", "--metrics", "psnr", *base]) == 0
    md = (run / "summary.md").read_text()
    assert next(ln for ln in md.splitlines() if ln.startswith("| bicubic |")) == first
    assert "nan" not in md and "±" not in md
