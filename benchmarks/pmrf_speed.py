"""Seconds per face of PMRF at the release's sizes (random weights: the time does not depend on their values),
the way the adapter runs it: SwinIR-L on the 512 px face, then K flow steps of the 160 M-parameter HDiT.

    python benchmarks/pmrf_speed.py [--device cpu|cuda] [--steps 25] [--measure 1,2]

On a CPU the full 25 steps take minutes: one face is timed at the ``--measure`` step counts (default 1 and 2)
and the time per step and the fixed part (SwinIR, bridge) are solved from the two, then projected to
``--steps``. Writes benchmarks/results/pmrf_speed.txt (appending) and prints the line.
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


def main() -> None:
    from scgan_bench.baselines import pmrf
    from scgan_bench.baselines.adapter import PretrainedSR
    from scgan_bench.baselines.bridge import Bridge

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--measure", default="1,2")
    args = ap.parse_args()
    torch.manual_seed(0)
    net = pmrf.official_networks()
    lr = torch.rand(1, 3, 16, 16)
    times = {}
    for k in (int(s) for s in args.measure.split(",")):
        a = PretrainedSR("pmrf", net, pmrf.make_forward(k), "[0,1]", Bridge(512), device=args.device)
        t0 = time.perf_counter()
        a.upscale(lr)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times[k] = time.perf_counter() - t0
    (k1, t1), (k2, t2) = sorted(times.items())[:2]
    per_step = (t2 - t1) / (k2 - k1)
    fixed = t1 - k1 * per_step
    total = fixed + args.steps * per_step
    line = (f"{datetime.date.today()} {args.device} {platform.processor() or platform.machine()} cores={os.cpu_count()} "
            f"threads={torch.get_num_threads()} torch={torch.__version__}: measured {times}; per step {per_step:.2f} s, "
            f"fixed {fixed:.2f} s -> {total:.1f} s per face at {args.steps} steps")
    print(line)
    out = HERE / "results" / "pmrf_speed.txt"
    with open(out, "a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    main()
