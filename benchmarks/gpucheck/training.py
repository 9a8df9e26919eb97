"""Parts 2-3 and 5 of the device check: a bf16 step's losses against fp32, SCGAN's training step in every
execution mode (speed, FLOPs, host operations, profile), and the real ``scgan-bench train`` command."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from .common import load_faces_like, sync

FULL_RECIPE_STEPS = 62_400  # 200 epochs x 312 steps of batch 64 on 20,000 HR faces


def step_modes() -> dict[str, tuple[str, bool, str, str]]:
    """mode -> (amp, channels_last, speed, d_calls): benchmarks/train_step.py's modes."""
    from train_step import MODES

    return MODES


def _engine(dev: str, mode: str, batch: int, width: float, hr, lr, **kw):
    from scgan_bench.training.engine import Engine, TrainConfig

    amp, channels_last, speed, d_calls = step_modes()[mode]
    cfg = TrainConfig(variant="scgan", batch_size=batch, width=width, device=dev, progress=False, seed=7,
                      amp=amp, channels_last=channels_last, speed=speed, d_calls=d_calls,
                      out=str(Path(tempfile.mkdtemp(prefix="scgan-gpu-check-"))), **kw)
    return Engine(cfg, hr, lr)


def _warmup_steps(mode: str) -> int:
    """Steps before timing: 2; a compiled step compiles in its first; a graph mode records after 3."""
    return 5 if "graph" in mode else 3 if mode == "compiled" else 2


def host_ops_per_step(e, k: int = 0) -> int:
    """Top-level ``aten::`` calls the host dispatches in one step (no loss sync: as ``--log-every`` runs)."""
    from train_step import aten_calls

    return aten_calls(lambda: e._step(e.batch(1, k % e.steps_per_epoch)))["top_level_aten_calls"]


def _train_data(faces: list, n_hr: int):
    import numpy as np
    import torch

    hr = torch.from_numpy(np.stack([faces[k % len(faces)] for k in range(n_hr)])).permute(0, 3, 1, 2).contiguous()
    # unpaired "real" LR: other faces, area-downsampled (the real LR set is not on the device machine)
    lr = torch.nn.functional.avg_pool2d(hr.flip(0).float(), 4).round().to(torch.uint8)
    return hr, lr


def part_bf16_losses(dev: str, faces: list, batch: int, width: float) -> dict[str, Any]:
    """One step from the same weights and batch: bf16 autocast's losses vs fp32's."""
    hr, lr = _train_data(faces, batch * 2)
    out = {}
    for mode in ("eager", "fast"):
        e = _engine(dev, mode, batch, width, hr, lr)
        out[mode] = e.train_step(*e.batch(1, 0))
    # bf16 keeps 8 significant bits (a loss near 2 rounds by up to 0.008) and adversarial terms near zero
    # are differences of nearly equal numbers: 5 % of the fp32 value plus 0.01 absolute
    excess = {k: abs(out["fast"][k] - v) - (0.05 * abs(v) + 0.01) for k, v in out["eager"].items()}
    rel = {k: abs(out["fast"][k] - v) / max(abs(v), 1e-6) for k, v in out["eager"].items()}
    return {"fp32": out["eager"], "bf16": out["fast"], "max_relative_difference": max(rel.values()),
            "tolerance": "|bf16 - fp32| <= 0.05 |fp32| + 0.01", "worst": max(excess, key=excess.get),
            "ok": max(excess.values()) <= 0}


def part_train_speed(dev: str, faces: list, batch: int, width: float, steps: int, modes: list[str]) -> dict[str, Any]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from train_step import runnable

    hr, lr = _train_data(faces, batch * 4)
    rows: dict[str, Any] = {}
    flops = None
    for mode in modes:
        why = runnable("scgan", mode, dev)
        if why:
            rows[mode] = {"skipped": why}
            continue
        try:
            e = _engine(dev, mode, batch, width, hr, lr)
            if flops is None and "graph" not in mode:
                with FlopCounterMode(display=False) as fc:
                    e._step(e.batch(1, 0))
                flops = float(fc.get_total_flops())
            t_warm = time.perf_counter()
            for k in range(_warmup_steps(mode)):  # warm-up (compilation, graph recording included)
                e._step(e.batch(1, k % e.steps_per_epoch))
            sync(dev)
            warm_s = time.perf_counter() - t_warm
            if dev.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            sync(dev)
            t = time.perf_counter()
            for k in range(steps):
                terms = e._step(e.batch(1, k % e.steps_per_epoch))
            float(next(iter(terms.values())))  # the losses reach the host once, as --log-every does
            sync(dev)
            sec = (time.perf_counter() - t) / steps
            rows[mode] = {"ms_per_step": sec * 1e3, "samples_per_s": batch / sec,
                          "tflops": flops / sec / 1e12 if flops else None,
                          "full_recipe_hours": FULL_RECIPE_STEPS * sec * (64 / batch) / 3600,
                          "warmup_seconds": warm_s, "host_ops_per_step": host_ops_per_step(e),
                          "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if dev.startswith("cuda") else None}
        except Exception as exc:  # noqa: BLE001
            rows[mode] = {"error": f"{type(exc).__name__}: {exc}"}
    return {"batch": batch, "width": width, "flops_per_step": flops, "steps_timed": steps, "modes": rows}


def part_train_profile(dev: str, faces: list, batch: int, width: float, modes: list[str], steps: int = 3,
                       top: int = 15) -> dict[str, Any]:
    """Where a training step's time goes (torch.profiler over ``steps`` steps after warm-up): wall ms per
    step, device-busy ms per step (kernel time summed: far under the wall time means the host cannot
    feed the GPU), and the ``top`` operators by their own device time."""
    from torch.profiler import ProfilerActivity, profile

    cuda = dev.startswith("cuda")
    hr, lr = _train_data(faces, batch * 4)
    out: dict[str, Any] = {"batch": batch, "width": width, "steps": steps}
    from train_step import runnable

    for mode in modes:
        if runnable("scgan", mode, dev):
            out[mode] = {"skipped": runnable("scgan", mode, dev)}
            continue
        try:
            e = _engine(dev, mode, batch, width, hr, lr)
            for k in range(_warmup_steps(mode)):
                e._step(e.batch(1, k % e.steps_per_epoch))
            sync(dev)
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
            with profile(activities=acts) as prof:
                t = time.perf_counter()
                for k in range(steps):
                    e._step(e.batch(1, k % e.steps_per_epoch))
                sync(dev)
                wall = (time.perf_counter() - t) / steps
            events = prof.key_averages()

            def on_device(ev) -> bool:
                return cuda and str(getattr(ev, "device_type", "")).endswith("CUDA")

            def own(ev) -> float:  # microseconds of the event's own time on the device (host on the CPU)
                if cuda:
                    return float(getattr(ev, "self_device_time_total", getattr(ev, "self_cuda_time_total", 0.0)))
                return float(ev.self_cpu_time_total)

            kernels = [ev for ev in events if on_device(ev)]
            ops = [ev for ev in events if not on_device(ev)]
            busy = sum(own(ev) for ev in (kernels if cuda else ops))

            def listing(evs: list) -> list[dict[str, Any]]:
                return [{"name": ev.key[:100], "calls_per_step": ev.count / steps, "ms_per_step": own(ev) / 1e3 / steps}
                        for ev in sorted(evs, key=own, reverse=True)[:top]]

            out[mode] = {"wall_ms_per_step": wall * 1e3, "busy_ms_per_step": busy / 1e3 / steps,
                         "busy_is": "kernel time on the GPU" if cuda else "operator time on the CPU",
                         "kernels_per_step": sum(ev.count for ev in kernels) / steps,
                         "top_operators": listing(ops), "top_kernels": listing(kernels)}
        except Exception as exc:  # noqa: BLE001
            out[mode] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def part_train_command(dev: str, faces: list, tmp: Path, out: Path, steps: int, speed: str, width: float,
                       n_faces: int = 1024, flush: int = 25) -> dict[str, Any]:
    """The real ``scgan-bench train`` (CLI parsing, folders decoded, ``run_training``) at the recipe's
    batch 64 on ``n_faces`` faces, ``--speed`` as given with bf16 + channels_last, a background-written
    checkpoint every 312 steps (the recipe's epoch on 20,000 faces) and at the stop, for ``steps`` steps.
    Timed from inside: each step's return (the host blocks at each ``--log-every`` flush), so the
    steady pace is the time between two flushes after the first; and each ``Engine.save`` call (what
    a checkpoint costs the training thread). Its log's loss curve is written beside the report."""
    import numpy as np
    import torch

    from scgan_bench.cli import main as cli_main
    from scgan_bench.reports.figures import training_curves
    from scgan_bench.io.image_io import write_png
    from scgan_bench.training import engine as E

    hr_dir, lr_dir, run = tmp / "train_hr", tmp / "train_lr", tmp / "train_run"
    many = load_faces_like(faces, n_faces)
    for k, im in enumerate(many):
        write_png(hr_dir / f"{k:05d}.png", im)
        small = torch.from_numpy(np.array(many[-1 - k])).permute(2, 0, 1)[None].float()
        lr_im = torch.nn.functional.avg_pool2d(small, 4)[0].round().byte().permute(1, 2, 0).numpy()
        write_png(lr_dir / f"{k:05d}.png", np.ascontiguousarray(lr_im))
    per_epoch = n_faces // 64
    save_every = max(1, round(312 / per_epoch))
    stamps: list[float] = []
    saves: list[float] = []
    orig_step, orig_save = E.Engine._step, E.Engine.save

    def step(self, b):
        r = orig_step(self, b)
        stamps.append(time.perf_counter())
        return r

    def save(self, o):
        t = time.perf_counter()
        orig_save(self, o)
        saves.append(time.perf_counter() - t)

    argv = ["train", "--hr", str(hr_dir), "--lr", str(lr_dir), "--out", str(run), "--device", dev,
            "--width", str(width), "--amp", "bf16", "--channels-last", "--speed", speed, "--background-save",
            "--save-every", str(save_every), "--log-every", str(flush), "--max-steps", str(steps), "--quiet"]
    E.Engine._step, E.Engine.save = step, save
    t0 = time.perf_counter()
    try:
        rc = cli_main(argv)
    finally:
        E.Engine._step, E.Engine.save = orig_step, orig_save
    wall = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"scgan-bench {' '.join(argv)} exited {rc}")
    steady = None
    if len(stamps) > 2 * flush:
        first, last = flush, (len(stamps) - 1) // flush * flush  # returns right after a flush's sync
        steady = (stamps[last] - stamps[first]) / (last - first) * 1e3 if last > first else None
    (out / "gpu_check_loss_curve.png").write_bytes(training_curves(run / "log.csv"))
    import csv

    rows = list(csv.DictReader(open(run / "log.csv")))
    keys = [k for k in rows[0] if k not in ("epoch", "step", "lr")]
    return {"command": "scgan-bench " + " ".join(argv), "steps": len(stamps), "wall_seconds": wall,
            "steady_ms_per_step": steady, "steps_per_epoch": per_epoch, "save_every_epochs": save_every,
            "checkpoints": len(saves), "checkpoint_blocking_seconds": sum(saves),
            "checkpoint_share_of_wall": sum(saves) / wall,
            "first": {k: float(rows[0][k]) for k in keys if rows[0][k]},
            "last": {k: float(rows[-1][k]) for k in keys if rows[-1][k]}, "curve": "gpu_check_loss_curve.png"}
