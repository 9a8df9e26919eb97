"""``--speed compiled`` with inductor (the backend a real run uses) against eager, from the same weights
and batch: the first step's logged terms (relative difference) and every gradient at its optimiser's
step (largest difference over each tensor's scale, floor 1e-2 of the optimiser's largest gradient), at
width 1/16, batch 4, on the CPU. The test suite checks the same with the ``aot_eager`` backend (dynamo's
capture and AOT autograd without inductor's code generation, which takes minutes per model on two CPU
cores); this script is the inductor check, and the device check times the compiled modes on a GPU.

    python benchmarks/compiled_step_agreement.py [--models cyclegan-16,lrgan,scgan] [--backend inductor]

Prints one line per model (compile seconds, worst term, worst gradient) and writes
benchmarks/out/compiled_step_agreement.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def compare(variant: str, backend: str) -> dict:
    import scgan_bench.training.speed as speed
    from sb_testdata import grads_at_step, unpaired_faces
    from scgan_bench.training.engine import Engine, TrainConfig
    from scgan_bench.training.models import trainable_for

    speed.COMPILE_OPTIONS = {"backend": backend}
    method = trainable_for(None, variant).name
    faces = unpaired_faces(16)

    def engine(mode: str) -> Engine:
        return Engine(TrainConfig(method=method, variant=variant, width=1 / 16, batch_size=4, epochs=100, seed=3,
                                  out="/tmp/scgan-bench-compiled-agreement", progress=False, learning_rate=1e-3,
                                  speed=mode), *faces)

    eager, comp = engine("eager"), engine("compiled")
    ge, gc = grads_at_step(eager), grads_at_step(comp)
    te = eager._step(eager.batch(1, 0))
    t = time.perf_counter()
    tc = comp._step(comp.batch(1, 0))
    compile_s = time.perf_counter() - t
    terms = max(float((tc[k] - te[k]).abs() / te[k].abs().clamp_min(1e-12)) for k in te)
    worst = (0.0, "")
    for opt, want in ge.items():
        top = max(float(v.abs().max()) for v in want.values())
        for k, v in want.items():
            d = float((gc[opt][k] - v).abs().max()) / max(float(v.abs().max()), 1e-2 * top)
            worst = max(worst, (d, f"{opt}: {k}"))
    return {"compile_seconds": compile_s, "worst_term_relative": terms, "worst_gradient_of_scale": worst[0],
            "worst_gradient_tensor": worst[1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="cyclegan-16,lrgan,scgan")
    ap.add_argument("--backend", default="inductor")
    args = ap.parse_args()
    out = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "backend": args.backend}, "models": {}}
    for variant in args.models.split(","):
        r = out["models"][variant] = compare(variant, args.backend)
        print(f"{variant:<12} compiled in {r['compile_seconds']:.0f} s; worst term {r['worst_term_relative']:.1e} "
              f"relative; worst gradient {r['worst_gradient_of_scale']:.1e} of its scale ({r['worst_gradient_tensor']})",
              flush=True)
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "compiled_step_agreement.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
