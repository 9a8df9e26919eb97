"""NIQE: scgan-bench vs pyiqa's ``calculate_niqe`` (96 px blocks, the only block size pyiqa's function
takes), relative differences on real images.

    SCGAN_BENCH_WEIGHTS=../shared/weights python benchmarks/niqe_agreement.py [FACES_DIR]

Two protocols: native 96 px blocks on scikit-image's photos and 192 px faces, and ``niqe``'s own
64 px -> x3 bicubic -> 96 px blocks on 64 px faces. Prints median and maximum relative difference, with
pyiqa fed float64 images (the precision scgan-bench's NIQE computes in) and float32 images (pyiqa's own
default: ``pyiqa.create_metric('niqe')`` hands its function float32 tensors).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

from scgan_bench.metrics.niqe import NIQE
from scgan_bench.io.resize import resize_uint8


def main() -> None:
    from pyiqa.archs.niqe_arch import calculate_niqe

    faces = sorted(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/hr_faces_128").glob("*.png"))[:20]
    cases = {
        "native 96 px blocks": (1, [data.astronaut(), data.coffee(), data.chelsea()] + [
            np.asarray(Image.open(p).convert("RGB").resize((192, 192), Image.Resampling.BICUBIC)) for p in faces[:10]]),
        "niqe protocol (64 px x3, 96 px blocks)": (3, [
            np.asarray(Image.open(p).convert("RGB").resize((64, 64), Image.Resampling.BICUBIC)) for p in faces]),
    }
    for what, (up, images) in cases.items():
        ours = NIQE(upsample=up, block=96)
        mu, cov = torch.from_numpy(ours.mu), torch.from_numpy(ours.cov)
        rel: dict[str, list[float]] = {"float64": [], "float32": []}
        for img, v in zip(images, ours.score_images(images)):
            x = img if up == 1 else resize_uint8(img, (img.shape[0] * up, img.shape[1] * up), "bicubic")
            for dtype, name in ((torch.float64, "float64"), (torch.float32, "float32")):
                t = torch.from_numpy(x).permute(2, 0, 1)[None].to(dtype) / 255.0
                ref = float(calculate_niqe(t, 0, True, "yiq", mu.to(dtype), cov.to(dtype)))
                rel[name].append(abs(v - ref) / abs(ref))
        for name, r in rel.items():
            print(f"{what}, pyiqa fed {name}: {len(r)} images, median relative difference {np.median(r):.1e}, "
                  f"max {np.max(r):.1e}")


if __name__ == "__main__":
    main()
