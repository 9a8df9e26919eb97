"""Throughput of the foundation pipeline, in images/s: load (decode + crop + resize to 64 px),
complex degradation, bicubic x4, PSNR + SSIM; then a whole `scgan-bench run` cold and warm.

    python benchmarks/pipeline_throughput.py [--images DIR] [--n 146] [--repeat 3] [--workers 2]

Uses ../shared/data/hr_faces_128 when present, else the built-in demo faces. Prints a table and
writes benchmarks/out/pipeline_throughput.json. Numbers depend on the machine: quote them with it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from scgan_bench.io.degradations import ComplexDegradation, degrade, derive_seed
from scgan_bench.io.image_io import list_images, read_image
from scgan_bench.metrics.fidelity import psnr, ssim
from scgan_bench.methods.interpolation import Interpolation
from scgan_bench.run.pipeline import RunConfig, run_benchmark
from scgan_bench.io.resize import resize_uint8, to_square
from scgan_bench.run.superres import quantise, to_tensor

HERE = Path(__file__).resolve().parent
DEFAULT_IMAGES = HERE.parent.parent / "shared" / "data" / "hr_faces_128"


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    ap.add_argument("--n", type=int, default=146)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    if args.images.is_dir():
        files = list_images(args.images)[: args.n]
        source = str(args.images)
    else:
        files, source = [], "built-in demo faces (shared data absent)"
    n = len(files)
    results: dict[str, float] = {}
    if files:
        hrs: list[np.ndarray] = []

        def load():
            hrs.clear()
            hrs.extend(resize_uint8(to_square(read_image(p)), (64, 64), "bicubic") for p in files)

        results["load+crop+resize"] = n / best_of(load, args.repeat)
        deg = ComplexDegradation()
        lrs: list[np.ndarray] = []

        def degrade_all():
            lrs.clear()
            lrs.extend(degrade(deg, hr, derive_seed(0, "bench", str(i)))[0] for i, hr in enumerate(hrs))

        results["complex degradation"] = n / best_of(degrade_all, args.repeat)
        bic = Interpolation("bicubic", "bicubic")
        srs: list[np.ndarray] = []

        def sr_all():
            srs.clear()
            for k in range(0, n, 32):
                srs.extend(quantise(bic.upscale(to_tensor(lrs[k:k + 32]))))

        results["bicubic x4 (+quantise)"] = n / best_of(sr_all, args.repeat)
        results["psnr+ssim"] = n / best_of(lambda: [(psnr(s, h), ssim(s, h)) for s, h in zip(srs, hrs)],
                                           args.repeat)
        per_image = sum(1 / v for v in results.values())
        results["stages combined (in-process)"] = 1 / per_image

    tmp = Path(tempfile.mkdtemp(prefix="scgan-bench-bench-"))
    os.environ.setdefault("SCGAN_BENCH_HOME", str(tmp / "home"))
    ds, roots = (["folder"], {"folder": args.images}) if files else (["demo"], {})
    for workers in sorted({1, args.workers}):
        out = tmp / f"run{workers}"
        cfg = RunConfig(datasets=ds, methods=["bicubic"], metrics=["psnr", "ssim"], out=out,
                        roots=roots, workers=workers, progress=False, device="cpu")
        t = time.perf_counter()
        res = run_benchmark(cfg)
        cold = time.perf_counter() - t
        n_run = len(res.cells[0].values)
        results[f"scgan-bench run, cold, workers={workers}"] = n_run / cold
        t = time.perf_counter()
        run_benchmark(cfg)
        results[f"scgan-bench run, warm cache, workers={workers}"] = n_run / (time.perf_counter() - t)
    shutil.rmtree(tmp, ignore_errors=True)

    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
               "torch_threads": torch.get_num_threads(), "images": source, "n": n}
    width = max(map(len, results))
    print(f"machine: {machine}")
    for k, v in results.items():
        print(f"{k:<{width}}  {v:9.1f} images/s")
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "pipeline_throughput.json").write_text(
        json.dumps({"machine": machine, "images_per_s": results}, indent=1))


if __name__ == "__main__":
    main()
