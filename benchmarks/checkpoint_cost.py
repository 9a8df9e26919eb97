"""How long a checkpoint holds up training: ``Engine.save`` written in the training thread vs
``--background-save`` (the step copied, then written by a thread), for each trainable model at its
published width; and the size of what is written.

    python benchmarks/checkpoint_cost.py [--models scgan,lrgan,cyclegan] [--repeat 2] [--width 1]

The blocking time is what a step waits for; with ``background_save`` the next save also waits for the one
before, which this measures separately (``write`` = the background write's own duration).
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from scgan_bench.training.engine import Engine, TrainConfig
from scgan_bench.training.models import trainable_for


def engine(model: str, width: float, out: Path, background: bool) -> Engine:
    spec = trainable_for(None, model)
    cfg = TrainConfig(method=spec.name, variant=model, width=width, batch_size=2, out=str(out), progress=False,
                      background_save=background)
    hr = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    lr = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    return Engine(cfg, hr, lr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="scgan,lrgan,cyclegan")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    for model in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            for background in (False, True):
                out = Path(tmp) / ("bg" if background else "fg")
                tr = engine(model, args.width, out, background)
                tr.train_step(*tr.batch(1, 0))  # optimiser state exists, as in a real checkpoint
                blocked, waited = [], []
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    tr.save(out)
                    blocked.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    tr.wait_for_saves()
                    waited.append(time.perf_counter() - t)
                tr._close_writer()
                size = sum(p.stat().st_size for p in (out / "checkpoints").rglob("*") if p.is_file())
                label = "background" if background else "foreground"
                print(f"{model:<10} {label:<10} blocks training {min(blocked) * 1e3:8.1f} ms"
                      + (f" (then writes for {min(waited) * 1e3:8.1f} ms)" if background else "")
                      + f"; checkpoint {size / 1e6:7.1f} MB", flush=True)


if __name__ == "__main__":
    main()
