"""Throughput of every pretrained-baseline adapter at its official size (random weights: speed does not
depend on their values): images/s of ``upscale`` on 16 px faces, bridge included (16 -> 512 -> 64 for
the face restorers), fp32 (DiffBIR: float16 autocast on CUDA, as released). PULSE is timed over ``--pulse-steps`` search steps and projected to its 100.

    python benchmarks/baselines_throughput.py [--device cpu|cuda] [--images 4] [--batch 4]
                                              [--methods realesrgan,lrgan,...] [--pulse-steps 1]

Each adapter is built exactly as its factory builds it, except that the network comes from its class
with the official configuration instead of a weight file. One warm-up batch, then ``--images`` images
in batches of ``--batch``. Writes benchmarks/out/baselines_throughput.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def build(method: str, device: str):
    from scgan_bench.baselines import codeformer, gfpgan, gfpganv1_arch, lrgan, lrgan_arch, restoreformer_arch
    from scgan_bench.baselines.adapter import PretrainedSR
    from scgan_bench.baselines.bridge import Bridge
    from scgan_bench.baselines.restoreformer import _forward as rf_forward

    torch.manual_seed(0)
    if method == "realesrgan":
        from spandrel.architectures.ESRGAN import ESRGAN

        return PretrainedSR(method, ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4),
                            lambda n, x, k: n(x), "[0,1]", None, device=device)
    if method == "lrgan":
        return PretrainedSR(method, lrgan_arch.LRGANGenerator(), lrgan.make_forward(False), "[-1,1]", None, device=device)
    if method == "gfpgan-v1":
        return PretrainedSR(method, gfpganv1_arch.GFPGANv1(), gfpgan.make_forward(True, "seeded"), "[-1,1]",
                            Bridge(512), device=device)
    if method in ("gfpgan-v1.3", "gfpgan-v1.4"):
        from spandrel.architectures.GFPGAN import GFPGAN

        net = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None, fix_decoder=False,
                     num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)
        return PretrainedSR(method, net, gfpgan.make_forward(False, "seeded"), "[-1,1]", Bridge(512), device=device)
    if method == "codeformer":
        from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

        return PretrainedSR(method, CodeFormer(), codeformer.make_forward(0.5), "[-1,1]", Bridge(512), device=device)
    if method == "restoreformer":
        from spandrel.architectures.RestoreFormer import RestoreFormer

        return PretrainedSR(method, RestoreFormer(), rf_forward, "[-1,1]", Bridge(512), device=device)
    if method == "restoreformer++":
        return PretrainedSR(method, restoreformer_arch.RestoreFormerNet(), rf_forward, "[-1,1]", Bridge(512),
                            device=device)
    if method == "hifacegan":
        from scgan_bench.baselines import hifacegan, hifacegan_arch

        return PretrainedSR(method, hifacegan_arch.LIPSPADEGenerator(), hifacegan.make_forward("stored"), "[0,1]",
                            Bridge(512), device=device)
    if method == "dfdnet":
        from scgan_bench.baselines import dfdnet, dfdnet_arch

        net = dfdnet_arch.UNetDictFace().set_dictionaries(
            {f: {p: torch.randn(*dfdnet_arch.dictionary_shape(p, f, 64)) for p in dfdnet_arch.PARTS}
             for f in dfdnet_arch.FEATURE_SIZES})   # 64 atoms per dictionary (the released count is unknown here)
        try:
            boxes = dfdnet.LandmarkBoxes()
        except Exception:  # noqa: BLE001 (no dlib model: time the network with the canonical boxes)
            def boxes(img):
                return dict(dfdnet.CANONICAL_BOXES), "canonical"
        return dfdnet.DFDNetMethod(net, Bridge(512, official_resizer="pil-bicubic"), boxes, device=device)
    if method == "pmrf":
        from scgan_bench.baselines import pmrf

        return PretrainedSR(method, pmrf.official_networks(), pmrf.make_forward(PMRF_STEPS), "[0,1]", Bridge(512),
                            device=device)
    if method == "difface":
        from scgan_bench.baselines import difface

        return PretrainedSR(method, difface.official_networks(), difface.make_forward(start=DIFFACE_STEPS), "[0,1]",
                            Bridge(512), device=device)
    if method == "diffbir":
        from scgan_bench.baselines import diffbir

        precision = "fp16" if device.startswith("cuda") else "fp32"      # the release's default on CUDA
        return PretrainedSR(method, diffbir.official_networks(), diffbir.make_forward(DIFFBIR_STEPS, precision=precision),
                            "[0,1]", Bridge(512), device=device)
    if method == "pulse":
        from scgan_bench.baselines import pulse, pulse_arch

        return pulse.PulseMethod(pulse_arch.Synthesis(), torch.zeros(512), torch.ones(512),
                                 pulse.PulseSettings(steps=PULSE_STEPS), device=device)
    raise SystemExit(f"unknown method {method}")


METHODS = ("realesrgan", "lrgan", "gfpgan-v1", "gfpgan-v1.3", "codeformer", "restoreformer", "restoreformer++",
           "hifacegan", "dfdnet", "pulse", "pmrf", "difface", "diffbir")
PULSE_STEPS = 1
PMRF_STEPS = 25
DIFFACE_STEPS = 100
DIFFBIR_STEPS = 50


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--pulse-steps", type=int, default=1, help="PULSE steps timed (the method runs 100 per face; "
                                                               "its images/s is projected to 100 steps)")
    ap.add_argument("--pmrf-steps", type=int, default=25, help="PMRF flow steps (25 as released)")
    ap.add_argument("--difface-steps", type=int, default=100, help="DifFace DDIM steps (its starting step, 100 as released)")
    ap.add_argument("--diffbir-steps", type=int, default=50, help="DiffBIR spaced steps (50 as released)")
    args = ap.parse_args()
    global PULSE_STEPS, PMRF_STEPS, DIFFACE_STEPS, DIFFBIR_STEPS
    PULSE_STEPS, PMRF_STEPS, DIFFACE_STEPS = args.pulse_steps, args.pmrf_steps, args.difface_steps
    DIFFBIR_STEPS = args.diffbir_steps
    g = torch.Generator().manual_seed(0)
    lr = torch.randint(0, 256, (args.batch, 3, 16, 16), generator=g).float() / 255
    rows = []
    for m in args.methods.split(","):
        a = build(m, args.device)
        a.upscale(lr[:1])                              # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        done, t0 = 0, time.perf_counter()
        while done < args.images:
            a.upscale(lr[: min(args.batch, args.images - done)])
            done += min(args.batch, args.images - done)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        net = getattr(a, "net", None) or getattr(a, "synthesis")
        per_img = secs / done * (100 / PULSE_STEPS if m == "pulse" else 1)
        rows.append({"method": m, "images": done, "seconds": round(secs, 3), "images_per_s": round(1 / per_img, 5),
                     "params": sum(p.numel() for p in net.parameters()),
                     "note": (f"projected from {PULSE_STEPS} step(s) to 100" if m == "pulse" else
                              f"{PMRF_STEPS} flow steps" if m == "pmrf" else
                              f"{DIFFACE_STEPS} DDIM steps" if m == "difface" else
                              f"{DIFFBIR_STEPS} guided spaced steps" if m == "diffbir" else ""),
                     "bridge": a.bridge.describe()["up"] if getattr(a, "bridge", None) else "native / none"})
        print(f"{m:16} {1 / per_img:10.5f} img/s  ({secs:6.2f} s for {done}{' x %d step(s)' % PULSE_STEPS if m == 'pulse' else ''})",
              flush=True)
        del a
    info = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None, "batch": args.batch}
    out = HERE / "out" / "baselines_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": info, "results": rows}, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
