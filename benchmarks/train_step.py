"""One training step of each trainable model (published widths): ms/step, samples/s and achieved
TFLOP/s, eager fp32 vs the optimised path, and the projected time of each full recipe on 20,000 HR
faces: SCGAN 200 epochs at batch 64 (62,400 steps), LRGAN 50 epochs at batch 32 (31,250 steps),
CycleGAN 200 epochs at batch 1 (4,000,000 steps).

    python benchmarks/train_step.py [--models scgan,lrgan,cyclegan,cyclegan-16] [--batch N] [--width 1]
                                    [--device cpu|cuda] [--modes eager,fast,...] [--warmup 1] [--steps 2]
    python benchmarks/train_step.py --count-ops [--models ...] [--modes ...]   # host operations per step

``--count-ops`` counts, with torch's profiler on the CPU, the operations one step dispatches from the
host: every ``aten::`` call (nested ones included: each costs host time and, on a GPU, launches kernels
or casts) and the top-level ones. The count does not depend on width or batch (the same graph), so it
runs at width 1/16 and batch 4 unless given; it is what issue 28's "host-side operations per step" goal
is measured by.

``--models`` names variants (each trains with its method's engine model); ``--batch`` overrides every
model's recipe batch (the projection then scales by samples/s). Modes (:data:`MODES`): ``separate`` =
the step before issue 28 (fp32, two discriminator calls); ``eager`` = fp32, NCHW, fused discriminator
calls (the default step); ``bf16`` = bf16 autocast alone; ``fast`` = bf16 autocast + channels_last
(+ fused Adam on CUDA); ``compiled`` = ``fast`` + ``--speed compiled`` (inductor: minutes of
compilation on a few CPU cores); ``graph`` / ``compiled-graph`` = ``fast`` + the whole step replayed
as one CUDA graph (CUDA only; skipped elsewhere). The first mode is the baseline each other is
compared with. FLOPs are counted once per model with torch's
FlopCounterMode (forward + backward of every network in the step) and divided by the measured step
time. Random data: speed does not depend on image content. Writes benchmarks/out/train_step.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from scgan_bench.training.engine import Engine, TrainConfig
from scgan_bench.training.models import trainable_for

HERE = Path(__file__).resolve().parent
HR_FACES = 20_000


#: mode -> (amp, channels_last, speed, d_calls)
MODES = {"separate": ("none", False, "eager", "separate"), "eager": ("none", False, "eager", "fused"),
         "bf16": ("bf16", False, "eager", "fused"), "fast": ("bf16", True, "eager", "fused"),
         "compiled": ("bf16", True, "compiled", "fused"), "graph": ("bf16", True, "graph", "fused"),
         "compiled-graph": ("bf16", True, "compiled-graph", "fused")}
CUDA_ONLY = ("graph", "compiled-graph")


def runnable(model: str, mode: str, device: str) -> str | None:
    """Why ``mode`` cannot run here (None when it can)."""
    if mode not in MODES:
        return f"unknown mode (known: {', '.join(MODES)})"
    if mode in CUDA_ONLY and not device.startswith("cuda"):
        return "needs CUDA"
    if mode in CUDA_ONLY and not getattr(trainable_for(None, model).build, "capturable", True):
        return "the step makes host-side decisions (image pools)"
    return None


def make(model: str, mode: str, batch: int | None, width: float, device: str) -> Engine:
    spec = trainable_for(None, model)
    b = batch or spec.defaults["batch_size"]
    amp, channels_last, speed, d_calls = MODES[mode]
    cfg = TrainConfig(method=spec.name, variant=model, batch_size=b, width=width, device=device, progress=False,
                      amp=amp, channels_last=channels_last, speed=speed, d_calls=d_calls,
                      out="/tmp/scgan-bench-train-step")
    g = torch.Generator().manual_seed(0)
    hr = torch.randint(0, 256, (b * 2, 3, 64, 64), dtype=torch.uint8, generator=g)
    lr = torch.randint(0, 256, (b * 2, 3, 16, 16), dtype=torch.uint8, generator=g)
    return Engine(cfg, hr, lr)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def count_flops(trainer: Engine) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        trainer.train_step(*trainer.batch(1, 0))
    return float(fc.get_total_flops())


def aten_calls(run) -> dict[str, int]:
    """``aten::`` calls the host dispatches while ``run()`` runs (torch.profiler, CPU side): all, and
    those not nested in another ``aten::`` call."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    ids = {id(e) for e in events}
    top = [e for e in events if e.cpu_parent is None or id(e.cpu_parent) not in ids]
    return {"aten_calls": len(events), "top_level_aten_calls": len(top)}


def count_ops(trainer: Engine) -> dict[str, int]:
    """:func:`aten_calls` of one step after 4 warm-up steps (a graph mode records after 3 eager steps; a
    compiled one compiles in the first)."""
    for k in range(4):
        trainer.train_step(*trainer.batch(1, k % trainer.steps_per_epoch))
    return aten_calls(lambda: trainer.train_step(*trainer.batch(1, 4 % trainer.steps_per_epoch)))


def main_count_ops(args) -> None:
    out = {}
    for model in args.models.split(","):
        base = None
        for mode in args.modes.split(","):
            why = runnable(model, mode, args.device)
            if why:
                print(f"{model:<12} {mode:<15} skipped: {why}", flush=True)
                continue
            tr = make(model, mode, args.batch or 4, args.width if args.width != 1.0 else 1 / 16, args.device)
            n = out[f"{model}/{mode}"] = count_ops(tr)
            base = base or n
            print(f"{model:<12} {mode:<15} {n['aten_calls']:7,d} aten calls per step ({n['top_level_aten_calls']:,} "
                  f"top-level; {n['top_level_aten_calls'] / base['top_level_aten_calls']:.2f}x the first mode's)",
                  flush=True)
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "train_step_ops.json").write_text(json.dumps({"torch": torch.__version__, "ops": out}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="scgan,lrgan,cyclegan,cyclegan-16")
    ap.add_argument("--batch", type=int, default=None, help="default: each model's recipe batch")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--modes", default="separate,eager,fast,compiled,graph,compiled-graph")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--count-ops", action="store_true", help="count host operations per step (CPU profiler)")
    args = ap.parse_args()
    if args.count_ops:
        return main_count_ops(args)
    results: dict[str, dict] = {}
    for model in args.models.split(","):
        first = make(model, "eager", args.batch, args.width, args.device)
        flops, batch, epochs = count_flops(first), first.cfg.batch_size, first.cfg.epochs
        recipe_batch = trainable_for(None, model).defaults["batch_size"]
        results[model] = {"batch": batch, "recipe_batch": recipe_batch, "epochs": epochs, "flops_per_step": flops,
                          "full_recipe_steps": epochs * (HR_FACES // recipe_batch), "modes": {}}
        for mode in args.modes.split(","):
            why = runnable(model, mode, args.device)
            if why:
                print(f"{model} {mode}: skipped: {why}", flush=True)
                continue
            tr = first if mode == "eager" else make(model, mode, args.batch, args.width, args.device)
            for k in range(args.warmup + (3 if mode in CUDA_ONLY else 0)):
                tr.train_step(*tr.batch(1, k % tr.steps_per_epoch))
            sync(args.device)
            t = time.perf_counter()
            for k in range(args.steps):
                tr.train_step(*tr.batch(1, k % tr.steps_per_epoch))
            sync(args.device)
            sec = (time.perf_counter() - t) / args.steps
            samples = epochs * (HR_FACES // recipe_batch) * recipe_batch
            results[model]["modes"][mode] = {"ms_per_step": sec * 1e3, "samples_per_s": batch / sec,
                                             "tflops": flops / sec / 1e12,
                                             "full_recipe_hours": samples / (batch / sec) / 3600}
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "device": args.device,
               "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None, "width": args.width}
    print(f"machine: {machine}")
    for model, r in results.items():
        print(f"{model} (batch {r['batch']}, {r['flops_per_step'] / 1e9:.1f} GFLOP/step; full recipe "
              f"{r['full_recipe_steps']:,} steps at batch {r['recipe_batch']}):")
        first = next(iter(r["modes"].values()), None)
        for mode, m in r["modes"].items():
            print(f"  {mode:<15} {m['ms_per_step']:10.1f} ms/step ({first['ms_per_step'] / m['ms_per_step']:.2f}x "
                  f"the first mode's speed)  {m['samples_per_s']:8.2f} samples/s  "
                  f"{m['tflops']:7.3f} TFLOP/s  full recipe ~{m['full_recipe_hours']:.1f} h")
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "train_step.json").write_text(json.dumps({"machine": machine, "results": results}, indent=1))


if __name__ == "__main__":
    main()
