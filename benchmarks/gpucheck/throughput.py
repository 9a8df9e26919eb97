"""Part 4 of the device check: images/s of every GPU feature network, a whole ``scgan-bench run`` over
thousands of faces, and FID / KID against torch-fidelity's own on the same folders."""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from .agreement import _metric_networks
from .common import load_faces, load_faces_like, timed


def part_metric_throughput(dev: str, faces: list, tmp: Path, n_run: int, repeat: int = 2,
                           smoke: bool = False) -> dict[str, Any]:
    """Images/s of each GPU feature network on all faces in one call, and a whole run of ~n_run faces
    with every GPU metric beside torch-fidelity's calculate_metrics on the same folders."""
    import torch_fidelity

    from scgan_bench.assets import weights as W
    from scgan_bench.io.image_io import write_png
    from scgan_bench.run.pipeline import RunConfig, run_benchmark
    from scgan_bench.run.precision import fp32_precision

    per: dict[str, float] = {}
    hr = faces[::-1]
    with fp32_precision(dev):  # what a run does
        for name, make, ext, _ in _metric_networks(smoke):
            m = make(dev)
            per[name] = len(faces) / timed(lambda: ext(m)(faces) if ext else m.score_pairs(faces, hr), dev,
                                           repeat=repeat)
    folder = tmp / "faces"
    for k, im in enumerate(load_faces(None, 0) if not faces else load_faces_like(faces, n_run)):
        write_png(folder / f"{k:05d}.png", im)
    metrics = ["fid", "kid", "lpips", "facenet-verif", "landmark-retinaface"]
    out = tmp / "run"
    t = time.perf_counter()
    run_benchmark(RunConfig(datasets=["folder"], methods=["bicubic", "nearest"], metrics=metrics, out=out,
                                  roots={"folder": str(folder)}, device=dev, progress=False))
    run_s = time.perf_counter() - t
    stages = json.loads((out / "run.json").read_text()).get("stages") or []
    # the second method's stages (SR, per-image metrics, set metrics), its references already cached
    further_s = sum(r["seconds"] for r in stages if r["stage"] in ("sr", "metrics", "metric")
                    and r["what"].split()[1:2] == ["nearest"])
    ours = {}
    import csv

    for r in csv.DictReader(open(out / "results.csv")):
        if r["image_id"] == "*" and r["method"] == "bicubic" and r["metric"] in ("fid", "kid", "kid:std"):
            ours[r["metric"]] = float(r["value"])
    sr_dir = out / "sr" / "folder" / "bicubic"
    hr_dir = tmp / "hr_only"
    for rec in (out / "data" / "folder" / "records").glob("*.json"):
        r = json.loads(rec.read_text())
        (hr_dir).mkdir(exist_ok=True)
        shutil.copy(out / "data" / "folder" / r["hr"], hr_dir / f"{r['id']}.png")
    n = len(list(sr_dir.glob("*.png")))
    path = W.resolve("inception-fid", allow_download=False).path
    t = time.perf_counter()
    ref = torch_fidelity.calculate_metrics(input1=str(sr_dir), input2=str(hr_dir), fid=True, kid=True,
                                           kid_subset_size=min(1000, max(2, n // 2)), cuda=dev.startswith("cuda"),
                                           feature_extractor_weights_path=str(path), verbose=False, cache=False)
    tf_s = time.perf_counter() - t
    fid_ref, kid_ref = ref["frechet_inception_distance"], ref["kernel_inception_distance_mean"]
    fid_rel = abs(ours.get("fid", math.nan) - fid_ref) / max(abs(fid_ref), 1e-12)
    kid_rel = abs(ours.get("kid", math.nan) - kid_ref) / max(abs(kid_ref), 1e-12)
    return {"per_network_images_per_s": per, "faces_per_call": len(faces),
            # images_per_s: the first method's whole run from cold caches (preparation, references, SR, metrics;
            # the 2026-11-27 figure's run), i.e. without the second method's stages
            "run": {"images": n, "methods": 2, "metrics": metrics, "seconds": run_s,
                    "images_per_s": n / (run_s - further_s),
                    "further_method_seconds": further_s,
                    "further_method_images_per_s": n / further_s if further_s else None,
                    "decoded_images": json.loads((out / "run.json").read_text()).get("decoded_images"),
                    "stages": stages},
            "torch_fidelity": {"seconds": tf_s, "fid": fid_ref, "kid": kid_ref, "ours_fid": ours.get("fid"),
                               "ours_kid": ours.get("kid"), "fid_relative_difference": fid_rel,
                               "kid_relative_difference": kid_rel, "ok": bool(fid_rel <= 1e-4 and kid_rel <= 1e-4)}}
