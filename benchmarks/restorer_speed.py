"""Seconds per face of an iterative restorer at the release's sizes (random weights: the time does not depend on
their values), the way the adapter runs it: PMRF (SwinIR-L on the 512 px face, then K flow steps of the
160 M-parameter HDiT), DifFace (SwinIR-L, then K DDIM steps of the 160 M-parameter UNet at 512 px) or DiffBIR v2
(SwinIR-L, the autoencoder, then K guided steps of SD 2.1's UNet with the IRControlNet on 64 px latents).

    python benchmarks/restorer_speed.py --method pmrf|difface|diffbir [--device cpu|cuda] [--steps K] [--measure 1,2]

On a CPU the full run takes minutes: one face is timed at the ``--measure`` step counts (default 1 and 2)
and the time per step and the fixed part (SwinIR, bridge) are solved from the two, then projected to
``--steps`` (the release's count by default: PMRF 25 flow steps, DifFace 100 DDIM steps, DiffBIR 50 steps). Appends the line
to benchmarks/results/METHOD_speed.txt and prints it.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def adapter(method: str, net: torch.nn.Module, steps: int, device: str):
    from scgan_bench.baselines import diffbir, difface, pmrf
    from scgan_bench.baselines.adapter import PretrainedSR
    from scgan_bench.baselines.bridge import Bridge

    forward = {"pmrf": lambda: pmrf.make_forward(steps), "difface": lambda: difface.make_forward(start=steps),
               "diffbir": lambda: diffbir.make_forward(steps, precision="fp16" if device.startswith("cuda") else "fp32"),
               }[method]()
    return PretrainedSR(method, net, forward, "[0,1]", Bridge(512), device=device)


def main() -> None:
    from scgan_bench.baselines import diffbir, difface, pmrf

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", choices=("pmrf", "difface", "diffbir"), required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--measure", default="1,2")
    args = ap.parse_args()
    module = {"pmrf": pmrf, "difface": difface, "diffbir": diffbir}[args.method]
    steps = args.steps or {"pmrf": pmrf.STEPS, "difface": difface.START_STEP, "diffbir": diffbir.STEPS}[args.method]
    torch.manual_seed(0)
    net = module.official_networks()
    lr = torch.rand(1, 3, 16, 16)
    times = {}
    for k in (int(s) for s in args.measure.split(",")):
        a = adapter(args.method, net, k, args.device)
        t0 = time.perf_counter()
        a.upscale(lr)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times[k] = time.perf_counter() - t0
    (k1, t1), (k2, t2) = sorted(times.items())[:2]
    per_step = (t2 - t1) / (k2 - k1)
    fixed = t1 - k1 * per_step
    total = fixed + steps * per_step
    line = (f"{datetime.date.today()} {args.device} {platform.processor() or platform.machine()} cores={os.cpu_count()} "
            f"threads={torch.get_num_threads()} torch={torch.__version__}: measured {times}; per step {per_step:.2f} s, "
            f"fixed {fixed:.2f} s -> {total:.1f} s per face at {steps} steps")
    print(line)
    out = HERE / "results" / f"{args.method}_speed.txt"
    with open(out, "a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    main()
