"""One SCGAN training step (released widths): ms/step, samples/s and achieved TFLOP/s, eager fp32 vs
the optimised path, and the projected time of the paper's full recipe (200 epochs x 20,000 HR faces
at batch 64 = 62,400 steps).

    python benchmarks/train_step.py [--batch 64] [--width 1] [--device cpu|cuda] [--modes eager,fast]
                                    [--warmup 1] [--steps 2]

Modes: ``eager`` = fp32, NCHW, no compile; ``fast`` = bf16 autocast + channels_last (+ fused Adam on
CUDA); ``compiled`` = ``fast`` + torch.compile of the generator forward. FLOPs are counted once with
torch's FlopCounterMode (forward + backward of every network in the step) and divided by the
measured step time. Random data: speed does not depend on image content. Writes
benchmarks/out/train_step.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from scgan_bench.scgan.train import Trainer, TrainConfig

HERE = Path(__file__).resolve().parent
FULL_RECIPE_STEPS = 200 * (20_000 // 64)


def make(mode: str, batch: int, width: float, device: str) -> Trainer:
    cfg = TrainConfig(variant="scgan", batch_size=batch, width=width, device=device, progress=False,
                      amp="bf16" if mode != "eager" else "none", channels_last=mode != "eager",
                      compile=mode == "compiled", out="/tmp/scgan-bench-train-step")
    g = torch.Generator().manual_seed(0)
    hr = torch.randint(0, 256, (batch * 2, 3, 64, 64), dtype=torch.uint8, generator=g)
    lr = torch.randint(0, 256, (batch * 2, 3, 16, 16), dtype=torch.uint8, generator=g)
    return Trainer(cfg, hr, lr)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def count_flops(trainer: Trainer) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        trainer.train_step(*trainer.batch(1, 0))
    return float(fc.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--modes", default="eager,fast")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()
    flops = count_flops(make("eager", args.batch, args.width, args.device))
    results = {}
    for mode in args.modes.split(","):
        tr = make(mode, args.batch, args.width, args.device)
        for k in range(args.warmup):
            tr.train_step(*tr.batch(1, k % tr.steps_per_epoch))
        sync(args.device)
        t = time.perf_counter()
        for k in range(args.steps):
            tr.train_step(*tr.batch(1, k % tr.steps_per_epoch))
        sync(args.device)
        sec = (time.perf_counter() - t) / args.steps
        results[mode] = {"ms_per_step": sec * 1e3, "samples_per_s": args.batch / sec,
                         "tflops": flops / sec / 1e12,
                         "full_recipe_hours": FULL_RECIPE_STEPS * sec * 64 / args.batch / 3600}
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "device": args.device,
               "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
               "batch": args.batch, "width": args.width, "flops_per_step": flops}
    print(f"machine: {machine}")
    for mode, r in results.items():
        print(f"{mode:<9} {r['ms_per_step']:10.1f} ms/step  {r['samples_per_s']:8.2f} samples/s  "
              f"{r['tflops']:7.3f} TFLOP/s  full recipe ~{r['full_recipe_hours']:.1f} h")
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "train_step.json").write_text(json.dumps({"machine": machine, "results": results}, indent=1))


if __name__ == "__main__":
    main()
