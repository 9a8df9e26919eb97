"""The paper's figures from a run's stored images: qualitative grids (Figs. 6-9), Fig. 3 t-SNE of
backbone features of HR vs each method's SR images, Fig. 10 landmark overlays with per-method l1
errors, and training curves from a training run's log.csv. All read the run's PNGs; nothing is
super-resolved again."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .image_io import read_image
from .resize import resize_uint8


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

    from .features import cached_features

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
    d = run / "sr" / dataset
    return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.exists() else []


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
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
    return _png(fig)


def tsne_figure(run: Path, dataset: str, methods: Sequence[str] | None = None, *, seed: int = 0,
                device: str = "cpu") -> tuple[bytes, str]:
    """Fig. 3: t-SNE of backbone features of HR and of each method's SR images; colour = identity
    (image id), marker = set. The backbone is ResNet-101 (ImageNet) via the weights manager; when its
    weights are absent, dlib's face descriptor, and the figure says so. Returns (PNG, backbone label)."""
    from sklearn.manifold import TSNE

    from .requirements import needs

    if needs(weights=("resnet101",))().ok:
        from .backbones import ResNet101Features

        ext, label = ResNet101Features(device), "ResNet-101 (ImageNet) features"
    else:
        from .metrics.identity import DlibDescriptor

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
    for k, name in enumerate(sets):
        part = emb[k * len(ids):(k + 1) * len(ids)]
        ax.scatter(part[:, 0], part[:, 1], c=colours, cmap="tab20", marker=markers[k % len(markers)], s=14,
                   label=name, alpha=0.8)
    ax.legend(fontsize=7, markerscale=1.2)
    ax.set_title(f"t-SNE on {dataset}: {label}\ncolour = identity, marker = image set", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig), label


def landmark_figure(run: Path, dataset: str, methods: Sequence[str] | None = None, n: int = 4) -> bytes:
    """Fig. 10: dlib 68-point landmarks (offline backend) on HR (green) and each SR (red) with the
    l1 error in pixels at 64 px."""
    from .metrics.landmarks import Dlib68Landmarks

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
            ax.scatter(pts[:, 0], pts[:, 1], s=2, c="lime" if err is None else "red")
            what = name if err is None else f"{name}\n" + ("no face" if np.isnan(err) else f"l1 {err:.2f}px")
            ax.set_title(what, fontsize=6)
            ax.axis("off")
    fig.suptitle("landmarks (dlib 68-point, offline backend)", fontsize=8)
    return _png(fig)


def training_curves(log_csv: Path) -> bytes:
    """Loss terms per step from a training run's log.csv."""
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
    return _png(fig)
