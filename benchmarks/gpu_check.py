"""The prepared device check: on a lent GPU machine, in one call of about 5 minutes, everything issue 15
asks to measure, written as JSON + Markdown (also to $OUT when set), a short table printed last.

    python benchmarks/gpu_check.py [--budget-s 300] [--faces DIR] [--out benchmarks/results] [--smoke]
                                   [--parts env,train-profile,...] [--label b]

Parts (each timed, each failure recorded and the next part run):
1. environment and the measured bf16 matmul peak (the denominator of "% of peak");
2. correctness: every SR method that runs here and every torch metric's network, on the faces, on the
   GPU vs on the CPU, in strict float32 (what a run does) and with TF32 (differences in 8-bit levels for
   SR outputs, relative for features); one bf16
   training step's losses vs fp32 from the same weights and batch;
3. SCGAN's training step at batch 64 and released width, side by side (benchmarks/train_step.py's
   modes): separate (fp32, two discriminator calls: the step before issue 28), eager (fp32, fused
   calls), bf16, fast (bf16 + channels_last), graph (fast, the whole step replayed as one CUDA graph),
   and last of all compiled and compiled-graph (torch.compile: minutes of compilation): ms/step,
   samples/s, TFLOP/s (FLOPs counted by torch), % of the measured peak, the full recipe's projected
   hours, warm-up seconds, host operations per step (profiler), peak memory;
3b. where the step's time goes: torch.profiler over three steps per mode (wall vs GPU-kernel time, kernels
   per step, the top operators and kernels);
4. metric throughput: images/s of each GPU feature network on all faces at once, and a whole
   ``scgan-bench run`` over a folder of ~2,500 faces with every GPU metric, beside torch-fidelity's
   own ``calculate_metrics`` on the same folders (FID / KID must be equal);
5. the real ``scgan-bench train`` command at the recipe's batch for 330 steps in the fastest mode that
   needs no compilation (graph on CUDA), background-written checkpoints at the recipe's epoch
   frequency: steady ms/step (to compare with the step benchmark), the share of wall time checkpoints
   block, and its loss curve.

The report is rewritten after every part, so a call cut off at its time limit still brings back
everything that finished.

Networks whose official weights are absent (no network on the device machine) run with random
weights saved in the official key layout (speed and CUDA-vs-CPU agreement do not depend on the
values); the report says which. ``--smoke`` runs every part at tiny sizes on the CPU (a test runs it,
so the script cannot rot). ``--budget-s`` scales the parts' repeat counts.
See benchmarks/README.md for the one command that runs it on a device machine. The parts live in
``benchmarks/gpucheck/`` (common, agreement, training, throughput, report); this file runs them.
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from gpucheck.agreement import part_env, part_method_agreement, part_metric_agreement
from gpucheck.common import HERE, REPO, Clock, bootstrap, load_faces, weights_home
from gpucheck.report import summary, write_report
from gpucheck.throughput import part_metric_throughput
from gpucheck.training import part_bf16_losses, part_train_command, part_train_profile, part_train_speed

PARTS = ["env", "metric-agreement", "method-agreement", "bf16-losses", "train-speed", "train-profile",
         "metric-throughput", "train-command", "train-speed-compiled"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=300.0, help="wall seconds for the whole check (default 300)")
    ap.add_argument("--faces", type=Path, default=None,
                    help="a folder of face images (default: ../shared/data/hr_faces_128 or .gpu_data/hr_faces_128)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--device", default=None, help="default: cuda when there is one, else cpu")
    ap.add_argument("--smoke", action="store_true", help="every part at tiny sizes (CPU test)")
    ap.add_argument("--parts", default="all", help=f"comma-separated parts to run (default all): {', '.join(PARTS)}")
    ap.add_argument("--label", default="", help="added to the report's file name (a second check on one day)")
    args = ap.parse_args(argv)
    chosen = PARTS if args.parts == "all" else [x.strip() for x in args.parts.split(",")]
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        ap.error(f"--parts: unknown {', '.join(unknown)}; the parts are {', '.join(PARTS)}")
    bootstrap()
    import torch

    dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.smoke and dev == "cpu":  # tiny tensors: no more threads than 2 cores (oversubscribed OpenMP stalls)
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already fixed by an earlier parallel call in this process
            pass
    clock = Clock(args.budget_s)
    faces_dir = args.faces or next((p for p in (REPO.parent / "shared" / "data" / "hr_faces_128",
                                                REPO / ".gpu_data" / "hr_faces_128") if p.is_dir()), None)
    tmp = Path(tempfile.mkdtemp(prefix="scgan-gpu-check-"))
    # every temporary file of the check (the random official-layout weights: about 1 GB; the engines' runs), in
    # this process and its children, lives under tmp, removed when the process exits
    tempfile.tempdir = os.environ["TMPDIR"] = str(tmp)
    atexit.register(shutil.rmtree, tmp, True)
    os.environ["SCGAN_BENCH_WEIGHTS"] = str(tmp / "weights")
    os.environ["SCGAN_BENCH_HOME"] = str(tmp / "home")
    (tmp / "weights").mkdir()
    args.out.mkdir(parents=True, exist_ok=True)
    s = args.smoke
    faces = load_faces(faces_dir, 4 if s else 64)
    batch, width = (2, 1 / 32) if s else (64, 1.0)
    rep: dict[str, Any] = {"command": "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                           "faces": str(faces_dir) if faces_dir else "scikit-image LFW", "smoke": s, "parts": {},
                           "label": f"_{args.label}" if args.label else ""}
    rep["weights"] = weights_home(tmp, s)

    def part(name: str, fn: Callable[[], Any]) -> None:
        if name.replace(" ", "-") not in chosen:
            return
        t = time.perf_counter()
        try:
            rep["parts"][name] = {"result": fn()}
        except Exception as exc:  # noqa: BLE001 (a failed part is reported; the others still run)
            rep["parts"][name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        rep["parts"][name]["seconds"] = time.perf_counter() - t
        write_report(rep, args.out, dev)  # after every part: a call cut off at its limit still returns this much
        print(f"gpu-check: {name}: {'failed' if 'error' in rep['parts'][name] else 'done'} in "
              f"{rep['parts'][name]['seconds']:.1f} s ({clock.left():.0f} s of the budget left)", flush=True)

    part("env", lambda: part_env(dev, s))
    part("metric agreement", lambda: part_metric_agreement(dev, faces, s))
    part("method agreement", lambda: part_method_agreement(dev, faces, tmp, 2 if s else 16, width))
    part("bf16 losses", lambda: part_bf16_losses(dev, faces, batch, width))
    steps = 1 if s else 10
    part("train speed", lambda: part_train_speed(dev, faces, batch, width, steps,
                                                 ["separate", "eager", "bf16", "fast", "graph"]))
    part("train profile", lambda: part_train_profile(dev, faces, batch, width, ["eager", "fast"] if s else
                                                     ["eager", "fast", "graph"], steps=1 if s else 3))
    part("metric throughput", lambda: part_metric_throughput(dev, load_faces(faces_dir, 2 if s else 1024), tmp,
                                                             4 if s else 2500, repeat=1 if s else 2, smoke=s))
    fastest = "graph" if dev.startswith("cuda") else "eager"
    part("train command", lambda: part_train_command(dev, faces, tmp, args.out, 4 if s else 330, fastest, width,
                                                     n_faces=128 if s else 1024, flush=2 if s else 25))
    if not s:  # last: compiling may take minutes, and what ran before is already in the report
        part("train speed compiled", lambda: part_train_speed(dev, faces, batch, width, steps,
                                                              ["compiled", "compiled-graph"]))
    rep["seconds"] = args.budget_s - clock.left()
    stem = write_report(rep, args.out, dev)
    print("\n".join(summary(rep)))
    print(f"report: {args.out / stem}.md (+ .json)")
    return 0 if not any("error" in v for v in rep["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
