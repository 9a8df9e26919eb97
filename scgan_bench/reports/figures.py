"""The paper's figures from a run's stored images and results: qualitative grids (Figs. 6-9), Fig. 3
t-SNE of backbone features of HR vs each method's SR images, Fig. 10 landmark overlays with per-method
l1 errors, a metric-by-method bar chart, and training curves from a training run's log.csv. All read
the run's PNGs and CSVs; nothing is super-resolved again. :func:`write_figures` (``scgan-bench figures
RUN``) writes each as PNG and PDF under ``RUN/figures``; the ``*_figure`` functions return PNG bytes."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io.image_io import read_image
from ..io.resize import resize_uint8


def _records(run: Path, dataset: str) -> dict[str, dict]:
    recs = {}
    for p in sorted((run / "data" / dataset / "records").glob("*.json")):
        r = json.loads(p.read_text())
        recs[r["id"]] = r
    return recs


def _features(ext, run: Path, dataset: str, image_set: str, ids: Sequence[str]) -> np.ndarray:
    """Features of a set's images through the run's feature cache (the metrics' own cache, so what a
    metric already computed is reused). ``image_set`` is ``hr`` or a method name."""
    import hashlib

    from ..run.features import cached_features

    recs = _records(run, dataset)
    if image_set == "hr":
        imgs = {i: (run / "data" / dataset / recs[i]["hr"], recs[i]["hr_sha256"]) for i in ids}
    else:
        paths = {i: run / "sr" / dataset / image_set / f"{i}.png" for i in ids}
        imgs = {i: (p, hashlib.sha256(p.read_bytes()).hexdigest()) for i, p in paths.items()}
    feats = cached_features(ext, imgs, run / "features" / dataset / image_set, progress=False)
    return np.stack([feats[i] for i in ids])


def _sr(run: Path, dataset: str, method: str, image_id: str) -> np.ndarray | None:
    p = run / "sr" / dataset / method / f"{image_id}.png"
    return read_image(p) if p.exists() else None


def methods_in(run: Path, dataset: str) -> list[str]:
    """The methods with SR images of ``dataset`` in the run, pseudo-methods (ground-truth) last."""
    from ..registries import ordered_methods

    d = run / "sr" / dataset
    return ordered_methods(sorted(p.name for p in d.iterdir() if p.is_dir())) if d.exists() else []


def _png(fig) -> bytes:
    return _save(fig, "png")


def _save(fig, fmt: str, close: bool = True) -> bytes:
    buf = io.BytesIO()
    # PDFs carry no creation date, so the same figure gives the same bytes
    fig.savefig(buf, format=fmt, dpi=110, bbox_inches="tight", metadata={"CreationDate": None} if fmt == "pdf" else None)
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def qualitative_grid(run: Path, dataset: str, methods: Sequence[str] | None = None, n: int = 6) -> bytes:
    """Rows: images; columns: LR (nearest x4) | each method | HR (if any). PNG bytes."""
    return _png(_grid_fig(run, dataset, methods, n))


def _grid_fig(run: Path, dataset: str, methods: Sequence[str] | None = None, n: int = 6):
    plt = _plt()
    recs = _records(run, dataset)
    methods = list(methods or methods_in(run, dataset))
    ids = list(recs)[:n]
    has_hr = any(r["hr"] for r in recs.values())
    cols = ["LR"] + methods + (["HR"] if has_hr else [])
    fig, axes = plt.subplots(len(ids), len(cols), figsize=(1.3 * len(cols), 1.3 * len(ids)), squeeze=False)
    for i, image_id in enumerate(ids):
        rec = recs[image_id]
        lr = read_image(run / "data" / dataset / rec["lr"])
        tiles = [resize_uint8(lr, (64, 64), "nearest")] + [_sr(run, dataset, m, image_id) for m in methods]
        if has_hr:
            tiles.append(read_image(run / "data" / dataset / rec["hr"]))
        for j, (ax, tile) in enumerate(zip(axes[i], tiles)):
            ax.axis("off")
            if tile is not None:
                ax.imshow(tile)
            if i == 0:
                ax.set_title(cols[j], fontsize=7)
    fig.suptitle(f"{dataset}: LR | methods | HR", fontsize=8)
    return fig


def tsne_figure(run: Path, dataset: str, methods: Sequence[str] | None = None, *, seed: int = 0,
                device: str = "cpu") -> tuple[bytes, str]:
    """Fig. 3: t-SNE of backbone features of HR and of each method's SR images; colour = identity
    (image id), marker = set. The backbone is ResNet-101 (ImageNet) via the weights manager; when its
    weights are absent, dlib's face descriptor, and the figure says so. Returns (PNG, backbone label)."""
    fig, label = _tsne_fig(run, dataset, methods, seed=seed, device=device)
    return _png(fig), label


def _tsne_fig(run: Path, dataset: str, methods: Sequence[str] | None = None, *, seed: int = 0,
              device: str = "cpu"):
    from matplotlib.lines import Line2D
    from sklearn.manifold import TSNE

    from ..assets.requirements import needs

    if needs(weights=("resnet101",))().ok:
        from ..assets.backbones import ResNet101Features

        ext, label = ResNet101Features(device), "ResNet-101 (ImageNet) features"
    else:
        from ..metrics.identity import DlibDescriptor

        ext, label = DlibDescriptor(), "offline backbone: dlib face descriptor (ResNet-101 weights absent)"
    recs = _records(run, dataset)
    ids = [i for i, r in recs.items() if r["hr"]][:200]
    sets = {"HR": "hr"}
    for m in methods or methods_in(run, dataset):
        if all((run / "sr" / dataset / m / f"{i}.png").exists() for i in ids):
            sets[m] = m
    feats = np.concatenate([_features(ext, run, dataset, s, ids) for s in sets.values()])
    perp = max(2.0, min(30.0, (len(feats) - 1) / 3))
    emb = TSNE(n_components=2, perplexity=perp, random_state=seed, init="pca").fit_transform(feats)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5))
    markers = "o^sDvP*X<>"
    colours = np.arange(len(ids)) % 20
    handles = []
    for k, name in enumerate(sets):
        part = emb[k * len(ids):(k + 1) * len(ids)]
        marker = markers[k % len(markers)]
        ax.scatter(part[:, 0], part[:, 1], c=colours, cmap="tab20", marker=marker, s=14, alpha=0.8)
        handles.append(Line2D([], [], marker=marker, linestyle="", color="0.25", markersize=6, label=name))
    # the legend keys the marker (image set) in one neutral colour; colours are identities
    ax.legend(handles=handles, title="image set", title_fontsize=7, fontsize=7, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(f"t-SNE on {dataset} ({len(ids)} faces): {label}\ncolour = identity (one per face), "
                 "marker = image set", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig, label


def landmark_figure(run: Path, dataset: str, methods: Sequence[str] | None = None, n: int = 4) -> bytes:
    """Fig. 10: dlib 68-point landmarks (offline backend) on HR (green) and each SR (red) with the
    l1 error in pixels at 64 px."""
    return _png(_landmark_fig(run, dataset, methods, n))


def _landmark_fig(run: Path, dataset: str, methods: Sequence[str] | None = None, n: int = 4):
    from matplotlib.lines import Line2D

    from ..metrics.landmarks import Dlib68Landmarks

    ext = Dlib68Landmarks()
    recs = _records(run, dataset)
    ids = [i for i, r in recs.items() if r["hr"]][:n]
    methods = [m for m in (methods or methods_in(run, dataset))]
    plt = _plt()
    fig, axes = plt.subplots(len(ids), len(methods) + 1, figsize=(1.6 * (len(methods) + 1), 1.7 * len(ids)),
                             squeeze=False)
    methods = [m for m in methods if all((run / "sr" / dataset / m / f"{i}.png").exists() for i in ids)]
    hr_pts = _features(ext, run, dataset, "hr", ids)
    sr_pts = {m: _features(ext, run, dataset, m, ids) for m in methods}
    for i, image_id in enumerate(ids):
        hr = read_image(run / "data" / dataset / recs[image_id]["hr"])
        ref = hr_pts[i].reshape(-1, 2)
        tiles = [("HR", hr, ref, None)]
        for m in methods:
            pts = sr_pts[m][i].reshape(-1, 2)
            tiles.append((m, _sr(run, dataset, m, image_id), pts, float(np.mean(np.abs(pts - ref).sum(axis=1)))))
        for ax, (name, img, pts, err) in zip(axes[i], tiles):
            ax.imshow(img)
            if err is not None:
                ax.scatter(ref[:, 0], ref[:, 1], s=2, c="lime")
            ax.scatter(pts[:, 0], pts[:, 1], s=2, c="lime" if err is None else "red")
            what = name if err is None else f"{name}\n" + ("no face" if np.isnan(err) else f"l1 {err:.2f}px")
            ax.set_title(what, fontsize=6)
            ax.axis("off")
    fig.legend(handles=[Line2D([], [], marker="o", linestyle="", color="lime", label="landmarks on HR"),
                        Line2D([], [], marker="o", linestyle="", color="red", label="landmarks on the SR image")],
               loc="lower center", ncol=2, fontsize=7, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle("landmarks (dlib 68-point, offline backend); l1 = mean |dx|+|dy| to HR's points, px at 64 px",
                 fontsize=8)
    return fig


def training_curves(log_csv: Path) -> bytes:
    """Loss terms per step from a training run's log.csv."""
    return _png(_curves_fig(log_csv))


def _curves_fig(log_csv: Path):
    with open(log_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{log_csv} has no rows")
    keys = [k for k in rows[0] if k not in ("epoch", "step", "lr")]
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    steps = [int(r["step"]) for r in rows]
    for k in keys:
        vals = [float(r[k]) if r.get(k) not in (None, "") else np.nan for r in rows]
        (a if k.startswith("D_") else b).plot(steps, vals, label=k, lw=0.8)
    a.set_title("discriminator losses", fontsize=8)
    b.set_title("generator terms (weighted)", fontsize=8)
    for ax in (a, b):
        ax.set_xlabel("step", fontsize=7)
        ax.legend(fontsize=6)
    return fig


def _summary_rows(run: Path) -> list[dict[str, str]]:
    from ..run.summary import read_run_csv

    return read_run_csv(run / "summary.csv", ("dataset", "method", "metric", "status", "mean"), numeric=("mean", "std"))


def metric_bars(run: Path, dataset: str) -> bytes | None:
    """A bar chart of every scored metric by method for ``dataset`` (PNG; ``None`` when it has none)."""
    fig = _bars_fig(run, dataset)
    return None if fig is None else _png(fig)


#: bar colours: best / second / third (as the tables colour them), the other methods, pseudo-methods (hatched)
RANK_COLOURS = {1: "#c00000", 2: "#0030c0", 3: "0.15"}
OTHER_COLOUR = "#d2b48c"
PSEUDO_COLOUR = "0.8"


def _bars_fig(run: Path, dataset: str):
    """One panel per metric with a value for two or more methods: the methods' means in the tables'
    units (KID x100 with its std as an error bar), best / second / third in red / blue / black,
    the other methods in tan, pseudo-methods (ground-truth) last in hatched grey and unranked."""
    import math

    from .ranking import printed_ranks
    from ..registries import METRICS, is_pseudo, ordered_methods

    rows = [r for r in _summary_rows(run) if r["dataset"] == dataset and r["status"] == "ok"]
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    panels = []
    for m in metrics:
        vals = {r["method"]: r for r in rows if r["metric"] == m and math.isfinite(float(r["mean"]))}
        if len(vals) >= 2:
            panels.append((m, vals))
    if not panels:
        return None
    plt = _plt()
    cols = min(3, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 2.9 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (m, vals) in zip(axes.flat, panels):
        spec = METRICS.get(m) if m in METRICS else None
        scale = spec.display_scale if spec else 1.0
        higher = spec.higher_is_better if spec else (next(iter(vals.values()))["direction"] == "higher")
        names = ordered_methods(list(vals))
        means = [float(vals[n]["mean"]) * scale for n in names]
        stds = [float(vals[n]["std"]) * scale if spec is not None and spec.kind == "set" and vals[n]["std"]
                and math.isfinite(float(vals[n]["std"])) else 0.0 for n in names]
        # ranked as the summary prints the values (4 decimals, table units): equal printed values share a colour
        rank_of = printed_ranks({n: v for n, v in zip(names, means) if not is_pseudo(n)}, higher_is_better=higher,
                                decimals=4)
        colours = [PSEUDO_COLOUR if is_pseudo(n) else RANK_COLOURS.get(rank_of.get(n, 0), OTHER_COLOUR) for n in names]
        bars = ax.bar(range(len(names)), means, color=colours, yerr=stds if any(stds) else None, capsize=2)
        for b, n in zip(bars, names):
            if is_pseudo(n):
                b.set_hatch("///")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=7)
        unit = f" (x{scale:g})" if scale != 1 else ""
        ax.set_title(f"{m} {'↑' if higher else '↓'}{unit}", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"{dataset}: metrics by method (red / blue / black: best / second / third; tan: the other "
                 "methods; hatched grey: pseudo-method, not ranked)", fontsize=8)
    fig.tight_layout()
    return fig


def write_figures(run: Path, out: Path | None = None, *, train_run: Path | None = None,
                  datasets: Sequence[str] | None = None, tsne: bool = True) -> list[dict[str, str]]:
    """Every figure of a run as PNG and PDF under ``out`` (default ``RUN/figures``): per dataset the
    qualitative grid, the metric bar chart and, on sets with HR images, the t-SNE and the landmark
    overlays; the training curves of ``train_run``. Returns one entry per figure (``name``,
    ``title``, ``png``, ``pdf``, ``note``), in reading order; writes are atomic."""
    from ..io.image_io import atomic_write_bytes

    out = out or run / "figures"
    out.mkdir(parents=True, exist_ok=True)
    made: list[dict[str, str]] = []

    def emit(name: str, title: str, fig, note: str = "") -> None:
        paths = {}
        for fmt in ("png", "pdf"):
            paths[fmt] = out / f"{name}.{fmt}"
            atomic_write_bytes(paths[fmt], _save(fig, fmt, close=fmt == "pdf"))
        made.append({"name": name, "title": title, "png": str(paths["png"]), "pdf": str(paths["pdf"]), "note": note})

    names = list(datasets) if datasets is not None else sorted(p.name for p in (run / "data").iterdir() if p.is_dir())
    for ds in names:
        if not _records(run, ds):
            continue
        emit(f"grid_{ds}", f"{ds}: qualitative grid (LR | methods | HR)", _grid_fig(run, ds))
        bars = _bars_fig(run, ds) if (run / "summary.csv").exists() else None
        if bars is not None:
            emit(f"metrics_{ds}", f"{ds}: metrics by method", bars)
        has_hr = any(r["hr"] for r in _records(run, ds).values())
        if has_hr and methods_in(run, ds):
            if tsne:
                fig, label = _tsne_fig(run, ds)
                emit(f"tsne_{ds}", f"{ds}: t-SNE (Fig. 3)", fig, f"t-SNE backbone: {label}")
            emit(f"landmarks_{ds}", f"{ds}: landmarks (Fig. 10)", _landmark_fig(run, ds))
    if train_run is not None and (train_run / "log.csv").exists():
        emit("training_curves", f"training curves of {train_run}", _curves_fig(train_run / "log.csv"))
    return made
