"""``scgan-bench export-lr RUN --dataset D --out DIR``: the exact LR inputs a run used, by image id,
for a method run outside scgan-bench; its outputs come back with ``--methods dir:NAME=DIR``."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UsageError
from ..io.image_io import atomic_write_bytes, atomic_write_text
from ..io.manifest import sha256_bytes
from .store import read_record, safe_name


def export_lr(run: Path, dataset: str, out: Path) -> int:
    """Copy the LR PNGs of ``dataset`` in ``run`` (the images its last run scored, in order) to
    ``out/<id>.png`` with ``out/ids.tsv`` (id, file, sha256, size); each file is checked against the
    sha256 its record holds. Returns the number of images."""
    ddir = run / "data" / dataset
    ids_file = ddir / "ids.txt"
    if not ids_file.is_file():
        have = sorted(p.parent.name for p in (run / "data").glob("*/ids.txt")) if (run / "data").is_dir() else []
        raise UsageError(f"{run}: no dataset {dataset!r} prepared by a run ({ids_file} is missing); "
                         f"{'datasets here: ' + ', '.join(have) if have else 'run `scgan-bench run` on it first'}")
    try:
        ids = [line for line in ids_file.read_text(encoding="utf-8").splitlines() if line]
    except UnicodeDecodeError:
        raise UsageError(f"{ids_file} is not UTF-8 text (damaged): rerun `scgan-bench run` on {run} to rewrite it") from None
    rows = ["id\tfile\tlr_sha256\tsize"]
    for line_no, image_id in enumerate(ids, 1):
        try:
            name = safe_name(image_id)
        except ValueError as exc:
            raise UsageError(f"{ids_file}, line {line_no}: {exc} (the file was edited or damaged): rerun "
                             f"`scgan-bench run` on {run} to rewrite it") from None
        rec = read_record(ddir / "records" / f"{name}.json")
        if rec is None:
            raise UsageError(f"{ddir / 'records' / name}.json is missing or unreadable: rerun `scgan-bench run` "
                             f"on {run} to repair it")
        src = ddir / rec["lr"]
        data = src.read_bytes() if src.is_file() else b""
        if sha256_bytes(data) != rec["lr_sha256"]:
            raise UsageError(f"{src} is missing or differs from the sha256 recorded when it was prepared: rerun "
                             f"`scgan-bench run` on {run} to repair it")
        atomic_write_bytes(out / f"{name}.png", data)
        h, w = rec.get("lr_size", ["?", "?"])
        rows.append(f"{image_id}\t{name}.png\t{rec['lr_sha256']}\t{w}x{h}")
    atomic_write_text(out / "ids.tsv", "\n".join(rows) + "\n")
    atomic_write_text(out / "export.json", json.dumps({"run": str(run.resolve()), "dataset": dataset,
                                                       "images": len(ids)}, indent=1))
    return len(ids)


def rerun_command(run: Path, dataset: str, methods: str) -> str:
    """The ``scgan-bench run`` command that scores ``methods`` on ``dataset`` exactly as ``run`` prepared it:
    the same root, degradation, dataset options, seed, limit and metrics (read from its ``run.json``), so
    that it works as printed and reuses the run's prepared images."""
    import shlex

    try:
        cfg = json.loads((run / "run.json").read_text()).get("config", {})
    except (OSError, ValueError):
        cfg = {}
    args = ["scgan-bench", "run", "--datasets", dataset]
    root = (cfg.get("roots") or {}).get(dataset)
    if root:
        args += ["--root", f"{dataset}={Path(root).resolve()}"]
    deg = (cfg.get("degradations") or {}).get(dataset)
    if deg:
        args += ["--degradation", f"{dataset}={deg}"]
    for k, v in ((cfg.get("dataset_options") or {}).get(dataset) or {}).items():
        args += ["--dataset-opt", f"{dataset}:{k}={v}"]
    ref = (cfg.get("references") or {}).get(dataset)
    if ref:
        args += ["--reference", f"{dataset}={ref}"]
    if cfg.get("seed") not in (None, 0):
        args += ["--seed", str(cfg["seed"])]
    if cfg.get("limit") is not None:
        args += ["--limit", str(cfg["limit"])]
    if cfg.get("metrics"):
        args += ["--metrics", ",".join(cfg["metrics"])]
    args += ["--methods", methods, "--out", str(run)]
    return " ".join(a if a in ("dir:NAME=FOLDER,bicubic",) else shlex.quote(a) for a in args)
