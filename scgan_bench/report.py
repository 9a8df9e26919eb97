"""``scgan-bench report RUN``: one self-contained HTML page (no external files or network): the
summary tables, the paper tables written under ``RUN/tables``, the figures, a per-image browser with
each method's output and scores, the protocol choices, and the versions, manifest digests and weight
hashes that produced the run."""
from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path
from typing import Any

from .image_io import atomic_write_text
from .errors import UsageError
from .registries import METRICS, load_plugins

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.r1{color:#c00;font-weight:bold}
.r2{color:#00c;font-weight:bold}.r3{font-weight:bold}img.px{image-rendering:pixelated;width:128px}
.tile{display:inline-block;margin:4px;text-align:center;font-size:11px;vertical-align:top}
code{background:#f6f6f6;padding:1px 3px}details{margin:.5em 0}"""

JS = """
const DATA = JSON.parse(document.getElementById('browser-data').textContent);
function show(ds, idx) {
  const d = DATA[ds]; const id = d.ids[idx]; const out = document.getElementById('browser-view');
  out.innerHTML = '';
  const head = document.createElement('p'); head.textContent = ds + ' / ' + id + ' (' + (idx + 1) + ' of ' + d.ids.length + ')';
  out.appendChild(head);
  for (const col of d.columns) {
    const src = d.images[col][idx]; if (!src) continue;
    const t = document.createElement('div'); t.className = 'tile';
    const im = document.createElement('img'); im.className = 'px'; im.src = 'data:image/png;base64,' + src; im.alt = col;
    const cap = document.createElement('div'); cap.textContent = col;
    const sc = (d.scores[col] || {})[id]; if (sc) { cap.textContent += ' ' + Object.entries(sc).map(([k, v]) => k + '=' + v).join(' '); }
    t.appendChild(im); t.appendChild(cap); out.appendChild(t);
  }
}
function init() {
  const sel = document.getElementById('browser-dataset'); const rng = document.getElementById('browser-index');
  for (const ds of Object.keys(DATA)) { const o = document.createElement('option'); o.value = ds; o.textContent = ds; sel.appendChild(o); }
  function update() { const ds = sel.value; rng.max = DATA[ds].ids.length - 1; if (+rng.value > +rng.max) rng.value = 0; show(ds, +rng.value); }
  sel.addEventListener('change', update); rng.addEventListener('input', update);
  if (Object.keys(DATA).length) update();
  document.body.dataset.ready = 'yes';
}
init();
"""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _img_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_b64(png)}">'


def _csv_table(path: Path) -> str:
    rows = list(csv.reader(open(path, newline="")))
    if not rows:
        return ""
    out = ["<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in rows[0]) + "</tr>"]
    for r in rows[1:]:
        out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
    return "\n".join(out) + "</table>"


def _summary_tables(run: Path) -> str:
    rows = list(csv.DictReader(open(run / "summary.csv", newline="")))
    parts = []
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        sub = [r for r in rows if r["dataset"] == ds]
        metrics = list(dict.fromkeys(r["metric"] for r in sub))
        methods = list(dict.fromkeys(r["method"] for r in sub))
        cell = {(r["method"], r["metric"]): r for r in sub}
        notes: dict[str, int] = {}
        head = "".join(f"<th>{html.escape(m)} {METRICS.get(m).arrow if m in METRICS else ''}</th>" for m in metrics)
        body = []
        for me in methods:
            tds = []
            for mt in metrics:
                r = cell.get((me, mt))
                if r is None:
                    tds.append("<td>—</td>")
                elif r["status"] == "ok":
                    scale = METRICS.get(mt).display_scale if mt in METRICS else 1.0
                    tds.append(f"<td>{float(r['mean']) * scale:.4f}</td>")
                else:
                    k = notes.setdefault(f"{r['status']}: {r['note']}", len(notes) + 1)
                    tds.append(f"<td>{'n/a' if r['status'] == 'n/a' else '—'} [{k}]</td>")
            body.append(f"<tr><td>{html.escape(me)}</td>{''.join(tds)}</tr>")
        foot = "".join(f"<div>[{k}] {html.escape(n)}</div>" for n, k in notes.items())
        parts.append(f"<h3>{html.escape(ds)}</h3><table><tr><th>method</th>{head}</tr>{''.join(body)}</table>"
                     f"<details><summary>notes</summary>{foot}</details>")
    return "\n".join(parts)


def _browser_data(run: Path, per_dataset: int) -> dict[str, Any]:
    from .figures import _records, methods_in

    scores: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    with open(run / "results.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["image_id"] != "*":
                scores.setdefault((r["dataset"], r["method"]), {}).setdefault(r["image_id"], {})[r["metric"]] = \
                    f"{float(r['value']):.4g}"
    if (run / "method_notes.csv").exists():  # per-image method notes (PULSE convergence, fallback boxes ...)
        with open(run / "method_notes.csv", newline="") as f:
            for r in csv.DictReader(f):
                scores.setdefault((r["dataset"], r["method"]), {}).setdefault(r["image_id"], {})[
                    f"note:{r['key']}"] = r["value"]
    data = {}
    for ds_dir in sorted((run / "data").iterdir()):
        ds = ds_dir.name
        recs = _records(run, ds)
        ids = list(recs)[:per_dataset]
        cols = {"LR": [_b64((ds_dir / recs[i]["lr"]).read_bytes()) for i in ids]}
        for m in methods_in(run, ds):
            cols[m] = [_b64(p.read_bytes()) if (p := run / "sr" / ds / m / f"{i}.png").exists() else None
                       for i in ids]
        if all(recs[i]["hr"] for i in ids):
            cols["HR"] = [_b64((ds_dir / recs[i]["hr"]).read_bytes()) for i in ids]
        data[ds] = {"ids": ids, "columns": list(cols), "images": cols,
                    "scores": {m: scores.get((ds, m), {}) for m in cols}}
    return data


def build_report(run: Path, out: Path | None = None, *, train_run: Path | None = None,
                 per_dataset: int = 40, figures: bool = True) -> Path:
    """Write ``RUN/report.html`` (or ``out``) and return its path."""
    from . import figures as F

    load_plugins()
    try:
        meta = json.loads((run / "run.json").read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{run / 'run.json'} is damaged ({exc}); rerun the same `scgan-bench run` command on "
                         f"{run} to rewrite it (nothing cached is recomputed)") from None
    sections = [f"<h1>scgan-bench report: {html.escape(str(run))}</h1>",
                f"<p>status {html.escape(meta.get('status', '?'))}, started {html.escape(meta.get('started', '?'))}, "
                f"{meta.get('seconds', '?')} s; failures: {meta.get('failures', 0)} (see failures.csv)</p>",
                "<h2>Summary</h2>", _summary_tables(run)]
    tables = sorted((run / "tables").glob("table?.csv")) if (run / "tables").exists() else []
    if tables:
        sections.append("<h2>Paper tables</h2>")
        for t in tables:
            sections.append(f"<h3>{t.stem}</h3>{_csv_table(t)}")
            cmp = t.with_name(f"{t.stem}_vs_paper.csv")
            if cmp.exists():
                sections.append(f"<details><summary>{t.stem} beside the paper (deltas)</summary>{_csv_table(cmp)}</details>")
    if figures:
        sections.append("<h2>Figures</h2>")
        for ds_dir in sorted((run / "data").iterdir()):
            ds = ds_dir.name
            sections.append(f"<h3>{html.escape(ds)}</h3>")
            sections.append(_img_tag(F.qualitative_grid(run, ds), f"qualitative grid {ds}"))
            has_hr = any(json.loads(p.read_text()).get("hr") for p in list((ds_dir / "records").glob("*.json"))[:1])
            if has_hr and F.methods_in(run, ds):
                png, label = F.tsne_figure(run, ds)
                sections.append(f"<div>{_img_tag(png, 't-SNE ' + ds)}<p>t-SNE backbone: {html.escape(label)}</p></div>")
                sections.append(_img_tag(F.landmark_figure(run, ds), f"landmarks {ds}"))
        if train_run is not None and (train_run / "log.csv").exists():
            sections.append("<h3>Training curves</h3>" + _img_tag(F.training_curves(train_run / "log.csv"), "training"))
    sections.append("<h2>Per-image browser</h2><label>dataset <select id='browser-dataset'></select></label> "
                    "<label>image <input type='range' id='browser-index' min='0' value='0'></label>"
                    "<div id='browser-view'></div>")
    conv = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v.get('convention', '')))}</td>"
                   f"<td>{html.escape(str(v.get('version', '')))}</td><td>{html.escape(str(v.get('backend', '')))}</td></tr>"
                   for k, v in meta.get("metrics", {}).items())
    sections.append(f"<h2>Protocol</h2><table><tr><th>metric</th><th>convention</th><th>version</th><th>backend</th></tr>{conv}</table>")
    sections.append("<h2>Provenance</h2><details open><summary>versions, weight files (sha256), datasets "
                    "(manifest sha256), methods (fingerprints incl. checkpoint sha256), references</summary><pre>"
                    + html.escape(json.dumps({k: meta.get(k) for k in ("versions", "weights", "datasets", "methods",
                                                                        "references", "config")}, indent=1, default=str))
                    + "</pre></details>")
    data = json.dumps(_browser_data(run, per_dataset)).replace("</", "<\\/")
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>scgan-bench report</title>"
            f"<style>{CSS}</style></head><body>{''.join(sections)}"
            f"<script type='application/json' id='browser-data'>{data}</script><script>{JS}</script></body></html>")
    path = out or run / "report.html"
    atomic_write_text(path, page)
    return path
