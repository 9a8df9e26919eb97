"""``scgan-bench report RUN``: one self-contained HTML page (no external files or network): the
summary tables, the paper tables written for the run (under ``RUN/tables`` or by ``table N RUN``), the
figures (also written as PNG and PDF under ``RUN/figures``), a per-image grid browser with each
method's output and scores, the protocol choices, and the versions, manifest digests and weight hashes
that produced the run."""
from __future__ import annotations

import base64
import csv
import html
import json
import math
from pathlib import Path
from typing import Any, Callable

from ..io.image_io import atomic_write_text
from .comparable import run_caveats
from ..run.summary import RESULT_COLUMNS, SUMMARY_COLUMNS, read_run_csv
from ..errors import UsageError
from .ranking import printed_ranks
from ..registries import METRICS, load_plugins

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0 .3em;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3}td.lead,th.lead{text-align:left}.r1{color:#c00;font-weight:bold}
.r2{color:#00c;font-weight:bold}.r3{font-weight:bold}.pseudo td{color:#777;background:#fafafa}
.notes{font-size:12px;color:#444;margin:0 0 1.2em;max-width:1100px}.notes div{margin:1px 0}
.legend{font-size:12px;color:#444}img.px{image-rendering:pixelated;width:96px;display:block;margin:auto}
#browser-grid{display:grid;gap:4px;align-items:start;overflow-x:auto}
.gh{font-size:11px;font-weight:bold;text-align:center;position:sticky;top:0;background:#fff}
.gc{font-size:10px;text-align:center;word-break:break-word}.gid{font-size:11px;align-self:center}
code{background:#f6f6f6;padding:1px 3px}details{margin:.5em 0}figure{margin:1em 0}figcaption{font-size:12px}
.caveat{border:2px solid #c60;background:#fff6ec;padding:.4em 1em;margin:1em 0;font-size:13px;max-width:1100px}"""

JS = """
const DATA = JSON.parse(document.getElementById('browser-data').textContent);
function cell(cls, text) { const d = document.createElement('div'); d.className = cls; d.textContent = text; return d; }
function show(ds) {
  const d = DATA[ds]; const grid = document.getElementById('browser-grid'); grid.innerHTML = '';
  document.getElementById('browser-count').textContent = d.count;
  grid.style.gridTemplateColumns = '8em repeat(' + d.columns.length + ', minmax(100px, 1fr))';
  grid.appendChild(cell('gh', 'image'));
  for (const col of d.columns) grid.appendChild(cell('gh', col));
  d.ids.forEach((id, idx) => {
    grid.appendChild(cell('gid', id));
    for (const col of d.columns) {
      const t = cell('gc', ''); const src = d.images[col][idx];
      if (src) { const im = document.createElement('img'); im.className = 'px'; im.alt = col + ' ' + id;
                 im.src = 'data:image/png;base64,' + src; t.appendChild(im); }
      else { t.textContent = 'no image'; }
      const sc = (d.scores[col] || {})[id];
      if (sc) t.appendChild(cell('', Object.entries(sc).map(([k, v]) => k + '=' + v).join(' ')));
      grid.appendChild(t);
    }
  });
}
function init() {
  const sel = document.getElementById('browser-dataset');
  for (const ds of Object.keys(DATA)) { const o = document.createElement('option'); o.value = ds; o.textContent = ds; sel.appendChild(o); }
  sel.addEventListener('change', () => show(sel.value));
  if (Object.keys(DATA).length) show(sel.value);
  document.body.dataset.ready = 'yes';
}
init();
"""

RANK_LEGEND = ("<p class='legend'>Best, second and third per metric in <span class='r1'>red</span>, "
               "<span class='r2'>blue</span> and <span class='r3'>bold</span>; ranked only where two or more "
               "methods have a value; pseudo-methods (ground-truth) are listed last, in grey, unranked.</p>")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _img_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_b64(png)}">'


def _notes_div(lines: list[str]) -> str:
    """Footnotes as a block under (never inside) the table they annotate."""
    return ("<div class='notes'>" + "".join(f"<div>{html.escape(x)}</div>" for x in lines) + "</div>") if lines else ""


def _rendered_table(data: dict) -> str:
    """A paper table from its ``tableN.json``: ranks as colours, footnotes and substitutions below."""
    lead = int(data.get("lead_columns", 1))
    cls = {1: "r1", 2: "r2", 3: "r3"}
    head = "".join(f"<th class='lead'>{html.escape(h)}</th>" if i < lead else f"<th>{html.escape(h)}</th>"
                   for i, h in enumerate(data["header"]))
    body = []
    for row, rk in zip(data["rows"], data["rank"]):
        tds = []
        for i, (t, r) in enumerate(zip(row, rk)):
            c = " ".join(x for x in ("lead" if i < lead else "", cls.get(r, "")) if x)
            tds.append(f"<td class='{c}'>{html.escape(t)}</td>" if c else f"<td>{html.escape(t)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    notes = [f"[{k}] {n}" for k, n in data.get("notes", [])] + [f"Note: {x}." for x in data.get("substitutions", [])]
    notes += list(data.get("conventions", []))
    return (f"<p><b>Table {data['number']}.</b> {html.escape(data['title'])}</p>"
            f"<table><tr>{head}</tr>{''.join(body)}</table>{_notes_div(notes)}")


def _csv_table(path: Path) -> str:
    """A table from a CSV written before tables carried their JSON: footnote rows moved below it."""
    rows = list(csv.reader(open(path, newline="")))
    if not rows:
        return ""
    data = [r for r in rows[1:] if r and not (r[0] == "note" or (r[0].startswith("[") and r[0].endswith("]")))]
    notes = [" ".join(r) for r in rows[1:] if r and r not in data]
    out = ["<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in rows[0]) + "</tr>"]
    for r in data:
        out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
    return "\n".join(out) + "</table>" + _notes_div(notes)


def _fmt_summary(r: dict[str, str], spec) -> str:
    scale = spec.display_scale if spec else 1.0
    txt = f"{float(r['mean']) * scale:.4f}"
    std = float(r["std"]) if r.get("std") else float("nan")
    if spec is not None and spec.kind == "set" and math.isfinite(std):
        txt += f" ± {std * scale:.4f}"  # e.g. KID over subsets, in the same x100 units
        if std == 0.0:
            txt += " (no spread measurable: every subset is the whole set)"
    return txt


def _summary_tables(run: Path) -> tuple[str, list[str]]:
    """One table per dataset: methods (pseudo-methods last) x metrics, KID x100 with its std, best /
    second / third coloured per metric where two or more methods have a value."""
    from ..registries import is_pseudo, ordered_methods

    rows = read_run_csv(run / "summary.csv", SUMMARY_COLUMNS, numeric=("mean", "std", "n"))
    parts, said = [], []
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        sub = [r for r in rows if r["dataset"] == ds]
        metrics = list(dict.fromkeys(r["metric"] for r in sub))
        methods = ordered_methods(list(dict.fromkeys(r["method"] for r in sub)))
        cell = {(r["method"], r["metric"]): r for r in sub}
        rank: dict[tuple[str, str], int] = {}
        for mt in metrics:
            spec = METRICS.get(mt) if mt in METRICS else None
            vals = {me: float(cell[(me, mt)]["mean"]) for me in methods if (me, mt) in cell
                    and cell[(me, mt)]["status"] == "ok" and not is_pseudo(me)
                    and math.isfinite(float(cell[(me, mt)]["mean"]))}
            if len(vals) >= 2:
                higher = spec.higher_is_better if spec else cell[(next(iter(vals)), mt)]["direction"] == "higher"
                scale = spec.display_scale if spec else 1.0   # ranked as _fmt_summary prints: 4 decimals, scaled
                rank.update({(me, mt): k for me, k in printed_ranks({me: v * scale for me, v in vals.items()},
                                                                     higher_is_better=higher, decimals=4).items()})
        notes: dict[str, int] = {}

        def head(m: str) -> str:
            spec = METRICS.get(m) if m in METRICS else None
            unit = f" (x{spec.display_scale:g})" if spec and spec.display_scale != 1 else ""
            return f"<th>{html.escape(m)} {spec.arrow if spec else ''}{unit}</th>"

        body = []
        for me in methods:
            tds = []
            for mt in metrics:
                r = cell.get((me, mt))
                if r is None:
                    tds.append("<td>—</td>")
                elif r["status"] == "ok":
                    k = rank.get((me, mt), 0)
                    c = f" class='r{k}'" if k else ""
                    tds.append(f"<td{c}>{_fmt_summary(r, METRICS.get(mt) if mt in METRICS else None)}</td>")
                else:
                    k = notes.setdefault(f"{r['status']}: {r['note']}", len(notes) + 1)
                    tds.append(f"<td>{'n/a' if r['status'] == 'n/a' else '—'} [{k}]</td>")
            pseudo = " class='pseudo'" if is_pseudo(me) else ""
            body.append(f"<tr{pseudo}><td class='lead'>{html.escape(me)}</td>{''.join(tds)}</tr>")
        parts.append(f"<h3>{html.escape(ds)}</h3><table><tr><th class='lead'>method</th>"
                     f"{''.join(head(m) for m in metrics)}</tr>{''.join(body)}</table>"
                     + _notes_div([f"[{k}] {n}" for n, k in notes.items()]))
        said.append(f"{ds} ({len(methods)} methods x {len(metrics)} metrics)")
    return "\n".join(parts), said


def find_tables(run: Path) -> list[Path]:
    """The tables written for ``run``: the paper's (by the run / the demo under ``RUN/tables`` and by
    `scgan-bench table N RUN` in ``RUN`` itself; a newer file of the same table wins) and the
    blind-face-restoration ones (``bfr-*``); their JSON where written, else their CSV."""
    found: dict[str, Path] = {}
    for folder in (run, run / "tables"):
        if not folder.is_dir():
            continue
        bfr = [p for p in sorted(folder.glob("bfr-*.json")) if not p.stem.endswith("_vs_paper")]
        for p in sorted(folder.glob("table?.json")) + sorted(folder.glob("table?.csv")) + bfr:
            if p.suffix == ".csv" and p.with_suffix(".json").exists():
                continue
            best = found.get(p.stem)
            if best is None or p.stat().st_mtime > best.stat().st_mtime:
                found[p.stem] = p
    return [found[k] for k in sorted(found)]


def script_json(obj: Any) -> str:
    """JSON to embed in a ``<script>`` element: ``<``, ``>`` and ``&`` written as ``\\u003c`` etc. (JSON string
    escapes, equal once parsed), so that no file name can close the element (``</script>``) or open an
    HTML comment (``<!--``) that swallows the closing tag."""
    return (json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _table_html(path: Path) -> str:
    if path.suffix == ".json":
        return _rendered_table(json.loads(path.read_text()))
    return _csv_table(path)


def _browser_data(run: Path, per_dataset: int) -> dict[str, Any]:
    from .figures import _records, methods_in

    scores: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    for r in read_run_csv(run / "results.csv", RESULT_COLUMNS, numeric=("value",)):
        if r["image_id"] != "*":
            scores.setdefault((r["dataset"], r["method"]), {}).setdefault(r["image_id"], {})[r["metric"]] = \
                f"{float(r['value']):.4g}"
    if (run / "method_notes.csv").exists():  # per-image method notes (PULSE convergence, fallback boxes ...)
        for r in read_run_csv(run / "method_notes.csv", ("dataset", "method", "image_id", "key", "value")):
            scores.setdefault((r["dataset"], r["method"]), {}).setdefault(r["image_id"], {})[
                f"note:{r['key']}"] = r["value"]
    data = {}
    for ds_dir in sorted((run / "data").iterdir()):
        ds = ds_dir.name
        recs = _records(run, ds)
        ids = list(recs)[:per_dataset]
        cols = {"LR": [_b64((ds_dir / recs[i]["lr"]).read_bytes()) for i in ids]}
        for m in methods_in(run, ds):  # pseudo-methods (ground-truth) last
            cols[m] = [_b64(p.read_bytes()) if (p := run / "sr" / ds / m / f"{i}.png").exists() else None
                       for i in ids]
        if all(recs[i]["hr"] for i in ids):
            cols["HR"] = [_b64((ds_dir / recs[i]["hr"]).read_bytes()) for i in ids]
        count = (f"{len(ids)} of {len(recs)} images" + (f" (the first {len(ids)} in id order; `scgan-bench report "
                                                          f"RUN --images N` shows more)" if len(ids) < len(recs) else ""))
        data[ds] = {"ids": ids, "columns": list(cols), "images": cols, "count": count,
                    "scores": {m: scores.get((ds, m), {}) for m in cols}}
    return data


def _protocol_html(meta: dict) -> str:
    """The run's protocol (what each method was given and returned), before any number."""
    rec = meta.get("protocol") or {"name": "scgan-sr", "lr_size": 16, "out_size": 64}
    return (f"<p>protocol <b>{html.escape(str(rec.get('name')))}</b>: {rec.get('lr_size')} px in, {rec.get('out_size')} "
            "px out (each method's bridge is in its fingerprint, under Provenance)</p>")


def build_report(run: Path, out: Path | None = None, *, train_run: Path | None = None,
                 per_dataset: int = 40, figures: bool = True, say: Callable[[str], None] | None = None,
                 tsne: bool = True) -> Path:
    """Write ``RUN/report.html`` (or ``out``) and return its path; the figures are also written as PNG
    and PDF under ``RUN/figures``. ``say`` is told each part as it is built."""
    from .figures import write_figures

    say = say or (lambda _: None)
    load_plugins()
    try:
        meta = json.loads((run / "run.json").read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{run / 'run.json'} is damaged ({exc}); rerun the same `scgan-bench run` command on "
                         f"{run} to rewrite it (nothing cached is recomputed)") from None
    summary, said = _summary_tables(run)
    say(f"summary: {', '.join(said) or 'no results'}")
    sections = [f"<h1>scgan-bench report: {html.escape(str(run))}</h1>",
                f"<p>status {html.escape(meta.get('status', '?'))}, started {html.escape(meta.get('started', '?'))}, "
                f"{meta.get('seconds', '?')} s; failures: {meta.get('failures', 0)} (see failures.csv)</p>",
                _protocol_html(meta), "<h2>Summary</h2>", RANK_LEGEND, summary]
    caveats = [line for group in run_caveats(meta).values() for line in group]
    if caveats:  # partial sets, non-official weights: said before any number is read
        sections.insert(3, "<div class='caveat'><b>Not comparable with published numbers:</b><ul>"
                        + "".join(f"<li>{html.escape(c)}</li>" for c in caveats) + "</ul></div>")
        say(f"caveats: {len(caveats)} reason(s) some numbers are not comparable with published ones")
    tables = find_tables(run)
    if tables:
        sections.append("<h2>Tables</h2>")
        for t in tables:
            sections.append(f"<h3>{t.stem} <small>({html.escape(str(t.relative_to(run)))})</small></h3>{_table_html(t)}")
            # a bfr table's comparison is a flat list (its CSV); a paper table's is a rendered grid (its JSON)
            kinds = ("csv",) if t.stem.startswith("bfr-") else ("json", "csv")
            cmp = next((c for c in (t.with_name(f"{t.stem}_vs_paper.{k}") for k in kinds) if c.exists()), None)
            if cmp is not None:
                sections.append(f"<details><summary>{t.stem} beside the paper (differences where comparable)</summary>"
                                f"{_table_html(cmp)}</details>")
            say(f"table: {t.stem} from {t}" + (f" (+ {cmp.name})" if cmp else ""))
    else:
        say("tables: none written for this run (`scgan-bench table N RUN` writes them)")
    if figures:
        sections.append("<h2>Figures</h2><p class='legend'>Each figure is also under "
                        f"<code>{html.escape(str(run / 'figures'))}</code> as PNG and PDF.</p>")
        for fig in write_figures(run, train_run=train_run, tsne=tsne):
            png = Path(fig["png"]).read_bytes()
            note = f"<br>{html.escape(fig['note'])}" if fig["note"] else ""
            sections.append(f"<figure>{_img_tag(png, fig['title'])}<figcaption>{html.escape(fig['title'])}{note}"
                            "</figcaption></figure>")
            say(f"figure: {fig['name']} -> {fig['png']}, {Path(fig['pdf']).name}")
    browser = _browser_data(run, per_dataset)
    say("browser: " + (", ".join(f"{ds} {d['count'].split(' (')[0]}" for ds, d in browser.items()) or "no images"))
    sections.append("<h2>Per-image browser</h2><label>dataset <select id='browser-dataset'></select></label> "
                    "<span id='browser-count'></span><div id='browser-grid'></div>")
    conv = "".join(f"<tr><td class='lead'>{html.escape(k)}</td><td class='lead'>{html.escape(str(v.get('convention', '')))}</td>"
                   f"<td>{html.escape(str(v.get('version', '')))}</td><td>{html.escape(str(v.get('backend', '')))}</td></tr>"
                   for k, v in meta.get("metrics", {}).items())
    sections.append(f"<h2>Protocol</h2><table><tr><th class='lead'>metric</th><th class='lead'>convention</th>"
                    f"<th>version</th><th>backend</th></tr>{conv}</table>")
    sections.append("<h2>Provenance</h2><details open><summary>versions, weight files (sha256), datasets "
                    "(manifest sha256), methods (fingerprints incl. checkpoint sha256), references</summary><pre>"
                    + html.escape(json.dumps({k: meta.get(k) for k in ("versions", "weights", "datasets", "methods",
                                                                        "references", "config")}, indent=1, default=str))
                    + "</pre></details>")
    data = script_json(browser)
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>scgan-bench report</title>"
            f"<style>{CSS}</style></head><body>{''.join(sections)}"
            f"<script type='application/json' id='browser-data'>{data}</script><script>{JS}</script></body></html>")
    path = out or run / "report.html"
    atomic_write_text(path, page)
    say(f"report: {path}")
    return path
