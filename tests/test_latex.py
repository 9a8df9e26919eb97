"""LaTeX that compiles as printed: escaping written out by hand, the paper's layouts, substitution
labels, and every table of the demo (and of the paper) through pdflatex on a 1-inch-margin page."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from scgan_bench.cli import demo_tables
from scgan_bench.tables.latex import tex
from scgan_bench.tables.render import write_table

from sb_testdata import assert_compiles

#: a run note as a user's method may produce it: every LaTeX special, a doubled hyphen, a code span
NASTY = "cost $5 & 10% off #1 ~ ^x_y \\path -- see `scgan-bench run --table 5` “quoted” é"


def test_tex_escapes_every_special_character():
    assert tex("a_b") == "a\\_b"
    assert tex("$ & % # { }") == "\\$ \\& \\% \\# \\{ \\}"
    assert tex("~^\\") == "\\~{}\\^{}$\\backslash$"
    assert tex("x--y") == "x-{}-y"  # not an en dash
    assert tex("run `a--b_c` now") == "run \\texttt{a-{}-b\\_c} now"
    assert tex("FFHQ → demo, 1.26±0.06, KID ↓, —") == "FFHQ $\\rightarrow$ demo, 1.26$\\pm$0.06, KID $\\downarrow$, --"
    assert tex("l_adv^D_L1") == "$l_{adv}^{D_{\\mathrm{L1}}}$"
    assert tex("l_adv-1-2 and SCGAN-w/o-D_SL") == "$l_{adv}$-1-2 and SCGAN-w/o-$D_{\\mathrm{SL}}$"
    assert tex("dsl_adv") == "dsl\\_adv"  # only the paper's symbols become math
    assert tex("café “x”") == "cafe ``x''"
    assert all(ord(c) < 128 for c in tex(NASTY))


def _fake_run(run: Path) -> None:
    """A run folder as the demo leaves it (demo / demo-real, the offline backends), plus a plugin
    method with an underscore in its name and a failed cell whose note is full of LaTeX specials."""
    run.mkdir(parents=True)
    methods = ["bicubic", "ground-truth", "scgan", "my_method"]
    rows = []
    for i, m in enumerate(methods):
        for d in ("demo", "demo-real"):
            rows += [(d, m, "fid-dlib", "*", 0.5 + i / 10), (d, m, "kid-dlib", "*", 0.01 * (i + 1)),
                     (d, m, "kid-dlib:std", "*", 0.001), (d, m, "hog-detect", "a", float(i % 2))]
            if d == "demo":
                rows += [(d, m, "lpips", "a", 0.3 - i / 50), (d, m, "dlib-verif", "*", 0.5 + i / 20)]
            elif m != "my_method":
                rows += [(d, m, "niqe", "a", 7.0 - i / 10)]
    with open(run / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "method", "metric", "image_id", "value"])
        w.writerows(rows)
    with open(run / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "method", "metric", "status", "note"])
        w.writerow(["demo-real", "my_method", "niqe", "failed", NASTY])
    (run / "run.json").write_text(json.dumps({"methods": {}}))


def _all_tables(tmp_path: Path) -> list[Path]:
    """The demo's tables of a demo-like run, Tables 1-4 of it with a plugin method beside the paper's
    rows, and the paper's own Tables 1-7: every layout with and without substitutions."""
    run = tmp_path / "run"
    _fake_run(run)
    texs = [p for p in demo_tables(run) if p.suffix == ".tex"]
    maps = dict(datasets={"ls3dw": "demo", "ffhq": "demo", "widerface": "demo-real", "webface": "demo-real"},
                metrics={"fid": "fid-dlib", "kid": "kid-dlib"})
    for n in (1, 2, 3, 4):
        texs += [p for p in write_table(n, run, tmp_path / "more", extra_methods=["my_method"], **maps)
                 if p.suffix == ".tex"]
    for n in range(1, 8):
        texs += [p for p in write_table(n, None, tmp_path / "paper") if p.suffix == ".tex"]
    return texs


def test_substitutions_and_layouts_are_printed_where_numbers_are_read(tmp_path):
    texs = _all_tables(tmp_path)
    assert len(texs) == 14
    run = tmp_path / "run"
    t5 = (run / "tables" / "table5.tex").read_text()
    assert "FID (dlib) $\\downarrow$" in t5 and "FFHQ $\\rightarrow$ demo" in t5 and "my\\_method" not in t5
    assert "\\multirow{3}{*}{LS3D-W balanced $\\rightarrow$ demo}" in t5
    assert t5.count("Table 5") == 0  # the caption does not repeat LaTeX's own "Table N:"
    t7 = (run / "tables" / "table7.tex").read_text()
    assert "FaceNet" not in t7.split("% --- footnotes")[0] and "dlib verification accuracy" in t7
    assert t7.count("Accuracy (dlib)") == 2  # the paper's layout: two stacked halves of four methods
    t3 = (tmp_path / "more" / "table3.tex").read_text()
    assert "my\\_method" in t3 and "\\$5 \\& 10\\% off \\#1" in t3 and "\\texttt{scgan-bench run -{}-table 5}" in t3
    body, notes = t3.split("% --- footnotes")
    assert "\\$5" not in body and "\\end{tabular}}" in body  # footnotes are a separate block after the table
    assert notes.rstrip().endswith("% --- end footnotes ---\n\\end{table}".rstrip())
    md = (run / "tables" / "table5.md").read_text()
    assert "| LS3D-W balanced → demo | FID (dlib) ↓ |" in md and "(LS3D-W balanced, FFHQ → demo; " in md
    cmp = (run / "tables" / "table5_vs_paper.md").read_text()
    assert "; no Δ: run dataset demo, not FFHQ; fid-dlib (dlib), not the paper's fid)" in cmp and ", Δ" not in cmp
    paper5 = (tmp_path / "paper" / "table5.tex").read_text()
    assert "FID $\\downarrow$" in paper5 and "$\\rightarrow$" not in paper5 and "(dlib)" not in paper5


@pytest.mark.slow
def test_every_generated_tex_compiles_without_overfull_boxes(tmp_path):
    texs = _all_tables(tmp_path)
    for tex_file in texs:  # one page per table: a failure names the file
        assert_compiles(tex_file, tmp_path / "doc")
