"""Throughput of each metric's per-image work, in images/s, on 64 px faces.

    python benchmarks/metrics_throughput.py [--n 64] [--device cpu|cuda] [--repeat 2] [--only NAME ...]

Networks whose official weights are absent are timed with random weights saved in the official key
layout (speed does not depend on the values); the output says which. NIQE uses
../shared/weights/niqe_pris_params.npz when the manager cannot find the file. Writes
benchmarks/out/metrics_throughput.json; its temporary weight files (2 GB with DINOv2 and LIQE) are removed at
exit. Q-Align is not timed here: at full size it is a GPU metric (8.2 B parameters).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"


def faces(n: int) -> list[np.ndarray]:
    from PIL import Image

    src = SHARED / "data" / "hr_faces_128"
    files = sorted(src.glob("*.png")) if src.exists() else []
    if files:
        return [np.asarray(Image.open(files[k % len(files)]).convert("RGB").resize((64, 64), Image.Resampling.BICUBIC))
                for k in range(n)]
    from skimage import data

    lfw = data.lfw_subset()[:100]
    return [np.repeat((np.asarray(Image.fromarray((lfw[k % 100] * 255).astype(np.uint8)).resize((64, 64)))
                       )[..., None], 3, 2) for k in range(n)]


def ensure(name: str, make_state_dict, folder: Path) -> str:
    """'official' when the real file verifies, else save random weights in its layout and pin them."""
    from scgan_bench.assets import weights as W

    if W.status(name).state == "verified":
        return "official weights"
    path = folder / W.ASSETS.get(name).filename
    torch.save(make_state_dict(), path)
    W.register_sha256(name, hashlib.sha256(path.read_bytes()).hexdigest())
    return "random weights, official layout"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", nargs="*", default=None, help="time only the metrics whose row names start so")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="scgan-bench-mbench-"))
    import atexit
    import shutil

    atexit.register(shutil.rmtree, tmp, True)
    os.environ.setdefault("SCGAN_BENCH_HOME", str(tmp / "home"))
    wdir = tmp / "weights"
    wdir.mkdir()
    os.environ["SCGAN_BENCH_WEIGHTS"] = str(wdir)
    if (SHARED / "weights" / "niqe_pris_params.npz").exists():
        (wdir / "niqe_pris_params.npz").write_bytes((SHARED / "weights" / "niqe_pris_params.npz").read_bytes())

    import sys

    sys.path.insert(0, str(HERE.parent / "tests"))
    from facenet_pytorch import InceptionResnetV1
    from sb_testdata import random_inception_state_dict
    from torchvision.models import alexnet

    from scgan_bench.metrics.distribution import InceptionFeatures
    from scgan_bench.metrics.fidelity import psnr, ssim
    from scgan_bench.metrics.identity import DlibDescriptor, FaceNetFeatures
    from scgan_bench.metrics.landmarks import Dlib68Landmarks, HogDetection, RetinaFaceLandmarks
    from scgan_bench.metrics.niqe import NIQE
    from scgan_bench.metrics.perceptual import LPIPS
    from scgan_bench.networks.retinaface import RetinaFace

    weights = {
        "inception-fid": ensure("inception-fid", random_inception_state_dict, wdir),
        "alexnet": ensure("alexnet", lambda: alexnet(weights=None).state_dict(), wdir),
        "facenet-vggface2": ensure("facenet-vggface2",
                                   lambda: InceptionResnetV1(classify=True, num_classes=8631).state_dict(), wdir),
        "retinaface-mobilenet0.25": ensure("retinaface-mobilenet0.25",
                                           lambda: RetinaFace("mobilenet0.25").state_dict(), wdir),
    }
    from scgan_bench.metrics.dinov2 import DINOv2Features
    from scgan_bench.metrics.liqe import LIQEScore
    from scgan_bench.metrics.prdc import prdc
    from scgan_bench.metrics.topiq import FACE_ASSET, KONIQ_ASSET, TOPIQScore
    from scgan_bench.networks.clip import CLIP
    from scgan_bench.networks.dinov2 import VIT_L14, DINOv2
    from scgan_bench.networks.topiq import TOPIQNR

    vit_b32 = dict(layers=12, width=768, embed_dim=512, text_width=512, text_layers=12, patch=32)
    weights.update({
        KONIQ_ASSET: ensure(KONIQ_ASSET, lambda: {"params": TOPIQNR().state_dict()}, wdir),
        FACE_ASSET: ensure(FACE_ASSET, lambda: {"params": TOPIQNR().state_dict()}, wdir),
        "liqe-koniq": ensure("liqe-koniq", lambda: {"params": {f"clip_model.{k}": v for k, v in
                                                               CLIP(**vit_b32).state_dict().items()}}, wdir),
        "dinov2-vitl14": ensure("dinov2-vitl14", lambda: DINOv2(**VIT_L14).state_dict(), wdir),
    })
    sr, hr = faces(args.n), faces(args.n)[::-1]
    dev = args.device

    def lazy(make, call):
        """Build the scorer once, when its row is first timed (its warm-up)."""
        box: dict = {}

        def run():
            if "m" not in box:
                box["m"] = make()
            return call(box["m"])
        return run

    jobs = {
        "psnr": lambda: [psnr(a, b) for a, b in zip(sr, hr)],
        "ssim": lambda: [ssim(a, b) for a, b in zip(sr, hr)],
        "lpips (alexnet)": (lambda m: lambda: m.score_pairs(sr, hr))(LPIPS(dev)),
        "niqe (x3 upsample, 96 px blocks)": (lambda m: lambda: m.score_images(sr))(NIQE()),
        "niqe-b32": (lambda m: lambda: m.score_images(sr))(NIQE(upsample=1, block=32)),
        "hog-detect (dlib)": (lambda m: lambda: m.score_images(sr))(HogDetection()),
        "inception features (fid/kid)": (lambda m: lambda: m.extract(sr))(InceptionFeatures(dev)),
        "facenet features (verif/cos)": (lambda m: lambda: m.extract(sr))(FaceNetFeatures(dev)),
        "dlib descriptor features": (lambda m: lambda: m.extract(sr))(DlibDescriptor()),
        "retinaface landmarks": (lambda m: lambda: m.extract(sr))(RetinaFaceLandmarks(dev)),
        "dlib 68 landmarks": (lambda m: lambda: m.extract(sr))(Dlib68Landmarks()),
        "topiq-nr (native size)": lazy(lambda: TOPIQScore(dev, KONIQ_ASSET), lambda m: m.score_images(sr)),
        "topiq-nr-face (512 px)": lazy(lambda: TOPIQScore(dev, FACE_ASSET), lambda m: m.score_images(sr)),
        "liqe (one 224 px patch)": lazy(lambda: LIQEScore(dev, "liqe-koniq"), lambda m: m.score_images(sr)),
        "dinov2 vit-l/14 features (fd/prdc)": lazy(lambda: DINOv2Features(dev), lambda m: m.extract(sr)),
        "precision/recall/density/coverage (2048-d, from features)":
            (lambda a, b: lambda: prdc(a, b, dev))(np.random.default_rng(0).normal(size=(len(sr), 2048)),
                                                   np.random.default_rng(1).normal(size=(len(sr), 2048))),
    }
    if args.only:
        jobs = {k: v for k, v in jobs.items() if any(k.startswith(o) for o in args.only)}
    results = {}
    for name, fn in jobs.items():
        fn()  # warm-up
        best = min(_timed(fn) for _ in range(args.repeat))
        results[name] = args.n / best
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
               "torch_threads": torch.get_num_threads(), "device": dev, "n": args.n, "weights": weights}
    print(f"machine: {machine}")
    width = max(map(len, results))
    for k, v in results.items():
        print(f"{k:<{width}}  {v:9.1f} images/s")
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "metrics_throughput.json").write_text(json.dumps({"machine": machine, "images_per_s": results},
                                                                     indent=1))


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
