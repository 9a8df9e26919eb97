"""Training FLOPs per step of each trainable model at full width and its recipe's batch size: the numbers
behind ``scgan_bench.reproduce.TRAIN_FLOPS_PER_STEP`` (the reproduction plan's GPU-hours projection).

One real training step (forward, losses, backward, optimiser) is counted with torch's FlopCounterMode at
a small batch on CPU and scaled linearly to the recipe's batch (every layer's FLOPs are linear in the
batch). FLOPs do not depend on the hardware; the projection divides them by an assumed throughput until
``benchmarks/gpu_check.py`` measures a step.

    python benchmarks/plan_flops.py [--batch 2]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def count(method: str, variant: str, batch: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from scgan_bench.training.engine import Engine, TrainConfig
    from scgan_bench.training.models import TRAINABLE

    torch.manual_seed(0)
    hr = torch.randint(0, 256, (batch * 2, 3, 64, 64), dtype=torch.uint8)
    lr = torch.randint(0, 256, (batch * 2, 3, 16, 16), dtype=torch.uint8)
    cfg = TrainConfig(method=method, variant=variant, batch_size=batch, width=1.0, device="cpu", progress=False,
                      out=tempfile.mkdtemp(prefix="plan-flops-"))
    e = Engine(cfg, hr, lr)
    t = time.perf_counter()
    with FlopCounterMode(display=False) as fc:
        e._step(e.batch(1, 0))
    recipe_batch = TRAINABLE.get(method).defaults["batch_size"]
    flops = float(fc.get_total_flops())
    return {"method": method, "variant": variant, "counted_batch": batch, "recipe_batch": recipe_batch,
            "flops_counted": flops, "flops_per_recipe_step": flops * recipe_batch / batch,
            "seconds_on_this_cpu": round(time.perf_counter() - t, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=2)
    args = ap.parse_args()
    rows = [count("scgan", "scgan", args.batch), count("lrgan", "lrgan", args.batch),
            count("cyclegan", "cyclegan", 1)]
    for r in rows:
        print(f"{r['method']:<9} {r['flops_per_recipe_step']:.3e} FLOPs per step at batch {r['recipe_batch']} "
              f"(counted at batch {r['counted_batch']}, {r['seconds_on_this_cpu']} s here)")
    print(json.dumps({r["method"]: float(f"{r['flops_per_recipe_step']:.3g}") for r in rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
