"""Tables 1-7: golden rendering (ranking, ties, footnotes), the stored paper values against the
paper's printed cells, the CLI, and the HTML report in headless Chromium."""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np

import pytest

from scgan_bench.cli import main
from scgan_bench.tables.render import Value, paper_values, render, run_values, table_spec, write_table
from scgan_bench.tables.specs import TABLES, Cell, TableSpec

from sb_testdata import SHARED

PAPER = SHARED / "paper" / "scgan_paper.txt"

TOY = TableSpec(
    99, "Toy detection table", rows=(("bicubic", "Bicubic"), ("bilinear", "Bilinear"), ("nearest", "Nearest"),
                                     ("ground-truth", "GT"), ("edsr", "EDSR")),
    columns=(("ls3dw", "LS3D-W"), ("ffhq", "FFHQ")), cell=lambda r, c: Cell(c, r, "hog-detect"))


def _toy_values():
    v = {Cell("ls3dw", "bicubic", "hog-detect"): 50.0, Cell("ls3dw", "bilinear", "hog-detect"): 50.0,
         Cell("ls3dw", "nearest", "hog-detect"): 40.0, Cell("ls3dw", "ground-truth", "hog-detect"): 30.0,
         Cell("ffhq", "bicubic", "hog-detect"): 10.0, Cell("ffhq", "bilinear", "hog-detect"): 20.0,
         Cell("ffhq", "nearest", "hog-detect"): 30.0, Cell("ffhq", "ground-truth", "hog-detect"): 40.0}
    return {c: Value(x) for c, x in v.items()}


def test_golden_csv_and_latex_with_ties_and_footnotes():
    r = render(TOY, _toy_values(), {Cell("ffhq", "ground-truth", "hog-detect"): "ignored: value present"})
    assert r.csv() == (
        "Method,LS3D-W,FFHQ\n"
        "Bicubic,50.00%,10.00%\n"
        "Bilinear,50.00%,20.00%\n"
        "Nearest,40.00%,30.00%\n"
        "GT,30.00%,40.00%\n"
        "EDSR,—[1],—[1]\n"
        "[1],method edsr is not implemented in scgan-bench yet\n")
    # ties share a rank (both 50.00% red), the next distinct value is second (blue), then third (bold);
    # the ground-truth pseudo-method (GT) is never ranked
    assert r.rank == [[0, 1, 3], [0, 1, 2], [0, 2, 1], [0, 0, 0], [0, 0, 0]]
    tex = r.latex()
    assert "\\begin{tabular}{lcc}" in tex and "\\toprule" in tex and "\\bottomrule" in tex
    assert "Bicubic & \\textcolor{red}{50.00\\%} & \\textbf{10.00\\%} \\\\" in tex
    assert "Nearest & \\textcolor{blue}{40.00\\%} & \\textcolor{red}{30.00\\%} \\\\" in tex
    assert "GT & 30.00\\% & 40.00\\% \\\\" in tex
    assert "EDSR & --\\textsuperscript{1} & --\\textsuperscript{1} \\\\" in tex
    assert "\\textsuperscript{1}~method edsr is not implemented" in tex
    md = r.markdown()
    assert "| Bicubic | **50.00%** (1st) | **10.00%** (3rd) |" in md


def test_kid_cells_print_mean_and_std_x100_and_rank_lower_better():
    spec = table_spec(1)
    v = {Cell("ls3dw", "scgan", "kid"): Value(1.26, 0.06), Cell("ls3dw", "scgan-fc", "kid"): Value(1.99, 0.07)}
    r = render(spec, v)
    row = next(x for x in r.rows if x[1] == "SCGAN" and x[0] == "LS3D-W balanced")
    assert row[3] == "1.26±0.06"
    i = r.rows.index(row)
    assert r.rank[i][3] == 1 and r.rank[r.rows.index(next(x for x in r.rows if x[1] == "SCGAN-fc"))][3] == 2
    assert not any("KID subset" in n for n in r.notes)
    # KID over 2 images per set: every subset is the whole set, so its spread is exactly 0: footnoted
    from scgan_bench.metrics.distribution import kid_from_features

    rng = np.random.default_rng(1)
    mean, std, size = kid_from_features(rng.normal(size=(2, 16)), rng.normal(0.5, 1.0, size=(2, 16)))
    assert size == 2 and std == 0.0 and mean != 0.0
    r = render(spec, {**v, Cell("ls3dw", "scgan", "kid"): Value(mean * 100, std * 100)})
    row = next(x for x in r.rows if x[1] == "SCGAN" and x[0] == "LS3D-W balanced")
    k = next(k for n, k in r.notes.items() if "every KID subset gave the same value" in n)
    assert row[3] == f"{mean * 100:.2f}±0.00[{k}]"


@pytest.mark.parametrize("number", range(1, 8))
def test_stored_paper_values_fill_every_cell_of_each_table(number):
    spec = table_spec(number)
    vals = paper_values(number)
    assert set(vals) == set(spec.cells())
    assert not render(spec, vals).notes
    sizes = {1: 48, 2: 60, 3: 48, 4: 96, 5: 108, 6: 28, 7: 8}
    assert len(vals) == sizes[number]


def _paper_cells(number: int) -> list[str]:
    """The numeric cells of the paper's Table ``number``, in reading order, from the paper text."""
    text = PAPER.read_text().splitlines()
    start = text.index(f"Table {number}")
    nxt = [i for i, ln in enumerate(text) if re.fullmatch(r"Table \d", ln) and i > start]
    block = text[start:nxt[0] if nxt else start + 40]
    cells = []
    for ln in block:
        if "\t" in ln:
            cells += [c.strip() for c in ln.split("\t") if re.fullmatch(r"\d+(\.\d+)?(±\d+\.\d+)?%?", c.strip())]
    return cells


@pytest.mark.parametrize("number", range(1, 8))
def test_paper_values_reproduce_the_printed_tables_cell_for_cell(number):
    if not PAPER.exists():
        pytest.skip(f"the paper text {PAPER} is absent: put the project's shared/ folder beside the repository")
    spec = table_spec(number)
    r = render(spec, paper_values(number))
    ours = []
    for row in r.rows:
        ours += [c for c in row if re.fullmatch(r"\d+(\.\d+)?(±\d+\.\d+)?%?", c)]
    printed = _paper_cells(number)
    if number == 4:
        printed = [c for c in printed if not re.fullmatch(r"[0-4]", c)]  # the removal-number column
        ours = [c for c in ours if not re.fullmatch(r"[0-4]", c)]
    assert sorted(ours) == sorted(printed)
    assert ours == printed or number in (4, 7)  # same reading order where the layout is the paper's


def test_table_cli_paper_and_run(tmp_path, capsys):
    assert main(["table", "5", "--paper", "--out", str(tmp_path)]) == 0
    body = (tmp_path / "table5.tex").read_text().split("\\toprule")[1].split("\\bottomrule")[0]
    assert body.count("\\textcolor{red}") == 12  # one best per dataset-metric row
    assert "22.55" in (tmp_path / "table5.csv").read_text()
    assert main(["table", "9", "--paper", "--out", str(tmp_path)]) == 2
    assert "unknown table '9'" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["run", "--table", "6", "--datasets", "demo", "--out", str(run), "--limit", "4", "--quiet",
                 "--device", "cpu"]) == 0
    assert main(["table", "6", str(run), "--dataset-map", "ls3dw=demo", "--compare-paper"]) == 0
    text = (run / "table6.md").read_text()
    assert "column/row 'ls3dw' shows run dataset 'demo'" in text
    # one cause, one footnote: the run's unavailable gfpgan-v1.3 and the table's gfpgan column (its alias)
    # are footnoted once, in the run's name, without "unavailable: ... unavailable"
    gfpgan_notes = [ln for ln in text.splitlines() if ln.startswith("[") and "GFPGANv1.3.pth" in ln]
    assert len(gfpgan_notes) == 1 and "] method gfpgan-v1.3 unavailable: weights" in gfpgan_notes[0]
    values, _ = run_values(run)
    assert Cell("demo", "bicubic", "hog-detect") in values
    cmp = (run / "table6_vs_paper.md").read_text()
    # two reasons, both stated: another dataset, and 4 of its 101 images (--limit 4)
    assert ("(paper 57.60%; no Δ: run dataset demo, not LS3D-W balanced; partial set: 4 of 101 images of demo "
            "(--limit 4)") in cmp and ", Δ" not in cmp
    assert "| Method | LS3D-W balanced → demo | FFHQ |" in cmp
    # the same numbers stored under the paper's own dataset name: a difference, and plain labels
    rows = list(csv.reader(open(run / "results.csv")))
    with open(run / "results.csv", "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [[("ls3dw" if r[0] == "demo" else r[0])] + r[1:] for r in rows[1:]])
    assert main(["table", "6", str(run), "--compare-paper"]) == 0
    cmp = (run / "table6_vs_paper.md").read_text()
    assert re.search(r"\(paper 57\.60%, Δ [+-]\d+\.\d\d\)", cmp) and "→" not in cmp


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("headless Chromium is not installed: `apt-get install chromium` (make test does this as root)")
    return exe


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(tmp_path):
    from scgan_bench.run.pipeline import RunConfig, run_benchmark
    from scgan_bench.reports.report import build_report

    exe = _chromium()
    run = tmp_path / "run"
    run_benchmark(RunConfig(datasets=["demo", "demo-real"], methods=["bicubic", "nearest", "ground-truth"],
                            metrics=["psnr", "hog-detect", "dlib-cos"], out=run, limit=12, progress=False))
    # a table written by `table N RUN` (into RUN itself) is found by the report without options
    assert main(["table", "6", str(run), "--compare-paper", "--dataset-map", "ls3dw=demo", "--dataset-map",
                 "ffhq=demo", "--dataset-map", "widerface=demo-real", "--dataset-map", "webface=demo-real"]) == 0
    said: list[str] = []
    page = build_report(run, per_dataset=6, say=said.append)
    assert any(x.startswith("table: table6 from") for x in said) and any("grid_demo" in x for x in said)
    html = page.read_text()
    assert "t-SNE backbone: offline backbone: dlib face descriptor" in html and "Table 6.</b>" in html
    for name in ("grid_demo", "metrics_demo", "tsne_demo", "landmarks_demo", "grid_demo-real"):
        for ext, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF")):
            assert (run / "figures" / f"{name}.{ext}").read_bytes()[:4] == magic, (name, ext)
    assert "src=\"http" not in html and "href=\"http" not in html  # self-contained
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    dom = subprocess.run([exe, *flags, f"--user-data-dir={tmp_path / 'c1'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True)
    assert 'data-ready="yes"' in dom.stdout  # the page's script ran to the end
    tree = _Tree()
    tree.feed(dom.stdout)
    # the grid browser was built by the script: a header cell per column and an image per (face, column)
    assert tree.count_in("div", "browser-grid", "img") == 6 * 5  # LR, bicubic, nearest, ground-truth, HR
    assert "6 of 12 images (the first 6 in id order" in dom.stdout
    # footnotes sit under the tables, never inside one; the paper table and the summary carry rank classes
    assert tree.notes and all("table" not in anc for anc in tree.notes)
    assert any(n.startswith("[1] ") for n in tree.note_text)
    assert tree.classes_in_tables & {"r1", "r2"} == {"r1", "r2"}
    shot = tmp_path / "report.png"
    from scgan_bench.reports.report import RANK_LEGEND

    bare = page.with_name("bare.html")  # without the colour legend: red / blue pixels come from table cells
    bare.write_text(html.replace(RANK_LEGEND, ""))
    res = subprocess.run([exe, *flags, f"--user-data-dir={tmp_path / 'c2'}", "--enable-logging=stderr", "--v=0",
                          "--window-size=1280,2000", f"--screenshot={shot}", bare.as_uri()],
                         capture_output=True, text=True)
    assert shot.exists() and shot.stat().st_size > 10_000
    console = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    # the colours are painted: text pixels of the best (#c00) and second (#00c) values in the screenshot
    from PIL import Image

    px = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    red = (px[:, 0] > 150) & (px[:, 1] < 60) & (px[:, 2] < 60)
    blue = (px[:, 2] > 150) & (px[:, 0] < 60) & (px[:, 1] < 60)
    assert red.sum() > 20 and blue.sum() > 20, (red.sum(), blue.sum())


class _Tree(HTMLParser):
    """Where footnote blocks sit (their ancestor tags), the classes used inside tables, and how many
    of a tag sit under an element of a given id."""

    VOID = {"img", "br", "meta", "input", "hr", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict]] = []
        self.notes: list[list[str]] = []
        self.note_text: list[str] = []
        self.classes_in_tables: set[str] = set()
        self.under: dict[tuple[str, str, str], int] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = set((a.get("class") or "").split())
        if "notes" in cls:
            self.notes.append([t for t, _ in self.stack])
        if any(t == "table" for t, _ in self.stack):
            self.classes_in_tables |= cls
        for t, at in self.stack:
            if at.get("id"):
                key = (t, at["id"], tag)
                self.under[key] = self.under.get(key, 0) + 1
        if tag not in self.VOID:
            self.stack.append((tag, a))

    def handle_endtag(self, tag):
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break

    def handle_data(self, data):
        if any("notes" in (a.get("class") or "").split() for _, a in self.stack) and data.strip():
            self.note_text.append(data.strip())

    def count_in(self, tag: str, element_id: str, child: str) -> int:
        return self.under.get((tag, element_id, child), 0)


def test_training_curves_and_grid_figures(tmp_path):
    from scgan_bench.reports.figures import qualitative_grid, training_curves
    from scgan_bench.run.pipeline import RunConfig, run_benchmark

    log = tmp_path / "log.csv"
    with open(log, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "step", "lr", "D_L1", "dhl_pix"])
        w.writerows([[1, 1, 1e-4, 2.0, 0.5], [1, 2, 1e-4, 1.9, 0.4]])
    assert training_curves(log)[:8] == b"\x89PNG\r\n\x1a\n"
    run = tmp_path / "run"
    run_benchmark(RunConfig(datasets=["demo"], methods=["bicubic"], metrics=["psnr"], out=run, limit=3,
                            progress=False))
    assert qualitative_grid(run, "demo")[:8] == b"\x89PNG\r\n\x1a\n"
    assert TABLES.get("5").rank_by == "row"
    assert main(["figures", str(run), "--no-tsne", "--train-run", str(tmp_path)]) == 0
    made = sorted(p.name for p in (run / "figures").iterdir())
    assert made == ["grid_demo.pdf", "grid_demo.png", "landmarks_demo.pdf", "landmarks_demo.png",
                    "training_curves.pdf", "training_curves.png"]  # one method, one metric: no bar chart
    assert all((run / "figures" / n).read_bytes()[:4] in (b"%PDF", b"\x89PNG") for n in made)
    first = (run / "figures" / "grid_demo.pdf").read_bytes()
    assert main(["figures", str(run), "--no-tsne", "--datasets", "demo"]) == 0
    assert (run / "figures" / "grid_demo.pdf").read_bytes() == first  # no date inside: reruns are identical
    assert main(["figures", str(run), "--datasets", "ffhq"]) == 2


def test_variant_tables_state_each_checkpoints_recipe_and_mark_identical_networks(tmp_path):
    """Table 4 from a run whose SCGAN checkpoints carry their recipe: a Recipe column, and under the
    released recipe l_adv-1-2 is footnoted as SCGAN's SR network (and vice versa); a checkpoint trained
    with the paper recipe is not."""
    import json

    run = tmp_path / "run"
    run.mkdir()
    rows = [("widerface", m, "fid", "*", v) for m, v in
            (("scgan", 13.5), ("scgan-ladv-1-2", 13.5), ("scgan-ladv-2-1", 14.0), ("scgan-ladv-1-1", 15.0))]
    with open(run / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "method", "metric", "image_id", "value"])
        w.writerows(rows)
    from scgan_bench.scgan.model import RECIPES

    def fp(recipe, variant):
        return {"fingerprint": {"recipe": recipe, "recipe_spec": RECIPES[recipe].spec(), "trained_variant": variant}}

    (run / "run.json").write_text(json.dumps({"methods": {
        "scgan": fp("official", "scgan"), "scgan-ladv-1-2": fp("official", "scgan-ladv-1-2"),
        "scgan-ladv-2-1": fp("official", "scgan-ladv-2-1"), "scgan-ladv-1-1": fp("paper", "scgan-ladv-1-1")}}))
    write_table(4, run, run)
    table = list(csv.reader(open(run / "table4.csv")))
    header, body = table[0], {r[0]: r for r in table[1:] if r[0].startswith(("l_adv", "SCGAN"))}
    col = header.index("Recipe")
    fid = header.index("Widerface FID ↓")
    assert body["SCGAN"][col] == body["l_adv-1-2"][col] == "official" and body["l_adv-1-1"][col] == "paper"
    assert body["l_adv-3-1"][col] == "—"  # not in the run
    assert re.fullmatch(r"13\.50\[\d+\]", body["SCGAN"][fid]) and re.fullmatch(r"13\.50\[\d+\]", body["l_adv-1-2"][fid])
    assert body["l_adv-2-1"][fid] == "14.00" and body["l_adv-1-1"][fid] == "15.00"  # different recipes: no mark
    notes = {r[0]: r[1] for r in table if re.fullmatch(r"\[\d+\]", r[0])}
    k = body["SCGAN"][fid].split("[")[1].rstrip("]")
    assert "same SR network as l_adv-1-2's row under recipe official" in notes[f"[{k}]"]
    assert "dsl_adv" in notes[f"[{k}]"]


def test_a_single_value_is_not_ranked_and_pseudo_methods_never_are():
    alone = {Cell("ls3dw", "bicubic", "hog-detect"): Value(50.0), Cell("ffhq", "bicubic", "hog-detect"): Value(10.0),
             Cell("ffhq", "ground-truth", "hog-detect"): Value(40.0)}
    assert not any(any(row) for row in render(TOY, alone).rank)  # one method per column: nothing to rank


def test_report_summary_ranks_orders_and_prints_kid_x100_with_std(tmp_path):
    """The report's summary table from a summary.csv written by hand: ground-truth listed last and
    unranked even where it is best; KID in the tables' x100 units with its std over subsets (a std of 0
    said to be no measure of spread); a metric
    that one method has is not coloured; the footnote sits after the table."""
    from scgan_bench.reports.report import _summary_tables

    rows = [("demo", "ground-truth", "psnr", "higher", "inf", "nan", "4", "0", "ok", ""),
            ("demo", "nearest", "psnr", "higher", "20.0", "1.0", "4", "0", "ok", ""),
            ("demo", "ground-truth", "kid", "lower", "0.0001", "0.0", "2", "0", "ok", ""),
            ("demo", "bicubic", "psnr", "higher", "22.0", "1.0", "4", "0", "ok", ""),
            ("demo", "bicubic", "kid", "lower", "0.0123", "0.0004", "4", "0", "ok", ""),
            ("demo", "nearest", "kid", "lower", "0.0200", "0.0005", "4", "0", "ok", ""),
            ("demo", "bicubic", "lpips", "lower", "0.3", "0.1", "4", "0", "ok", ""),
            ("demo", "nearest", "lpips", "lower", "", "", "0", "0", "unavailable", "weights missing")]
    with open(tmp_path / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "method", "metric", "direction", "mean", "std", "n", "n_failed", "status", "note"])
        w.writerows(rows)
    page, said = _summary_tables(tmp_path)
    trs = re.findall(r"<tr[^>]*>.*?</tr>", page)
    assert [re.search(r"<td class='lead'>([^<]+)</td>", t).group(1) for t in trs[1:]] == ["nearest", "bicubic",
                                                                                        "ground-truth"]
    assert "kid ↓ (x100)" in trs[0]
    bicubic, gt = trs[2], trs[3]
    assert "<td class='r1'>22.0000</td>" in bicubic and "<td class='r1'>1.2300 ± 0.0400</td>" in bicubic
    assert "<td>0.3000</td>" in bicubic  # lpips: the only value, not ranked
    assert "class='pseudo'" in gt and "r1" not in gt  # over 2 images: a spread of 0, said to be no measure
    assert "0.0100 ± 0.0000 (no spread measurable: every subset is the whole set)" in gt
    assert "<td class='r2'>2.0000 ± 0.0500</td>" in trs[1]
    assert page.index("</table>") < page.index("[1] unavailable: weights missing")
    assert said == ["demo (3 methods x 3 metrics)"]
