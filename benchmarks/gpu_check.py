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
See benchmarks/README.md for the one command that runs it on a device machine.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FULL_RECIPE_STEPS = 62_400  # 200 epochs x 312 steps of batch 64 on 20,000 HR faces
PARTS = ["env", "metric-agreement", "method-agreement", "bf16-losses", "train-speed", "train-profile",
         "metric-throughput", "train-command", "train-speed-compiled"]
GOALS = {"step_ms": 57.0, "recipe_hours": 1.0, "metric_images_per_s": 2000.0, "host_ops": 3000,
         "run_images_per_s": 600.0}


def bootstrap() -> None:
    """Import scgan_bench from this checkout also where it is not installed (the device machine):
    a copy laid out as installed (baselines/ and datasets/ inside the package); tests/ for the
    official-layout random weights."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import scgan_bench.baselines  # noqa: F401  (an editable install maps them)
        return
    except ImportError:
        pass
    root = Path(tempfile.mkdtemp(prefix="scgan-bench-src-"))
    shutil.copytree(REPO / "scgan_bench", root / "scgan_bench", ignore=shutil.ignore_patterns("__pycache__"))
    for sub in ("baselines", "datasets"):
        shutil.copytree(REPO / sub, root / "scgan_bench" / sub, ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(root))
    for name in [m for m in sys.modules if m == "scgan_bench" or m.startswith("scgan_bench.")]:
        del sys.modules[name]


class Clock:
    """The budget: each part gets a share; ``left()`` is what remains of the whole."""

    def __init__(self, seconds: float) -> None:
        self.total, self.t0 = seconds, time.perf_counter()

    def left(self) -> float:
        return self.total - (time.perf_counter() - self.t0)


def sync(dev: str) -> None:
    import torch

    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], dev: str, repeat: int = 3) -> float:
    """Best wall seconds of ``repeat`` calls after one warm-up, device synchronised."""
    fn()
    sync(dev)
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync(dev)
        best = min(best, time.perf_counter() - t)
    return best


# ------------------------------------------------------------------------------------------ inputs
def load_faces(folder: Path | None, n: int) -> list:
    """``n`` 64 px RGB faces: the given folder's images (cycled), else scikit-image's LFW faces."""
    import numpy as np
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")) if folder else []
    if files:
        ims = [np.asarray(Image.open(f).convert("RGB").resize((64, 64), Image.Resampling.BICUBIC)) for f in files]
    else:
        from skimage import data

        lfw = data.lfw_subset()[:100]
        ims = [np.repeat(np.asarray(Image.fromarray((f * 255).astype(np.uint8)).resize((64, 64)))[..., None], 3, 2)
               for f in lfw]
    return load_faces_like(ims, n)  # beyond the folder: flipped / shifted copies, no two equal


def load_faces_like(faces: list, n: int) -> list:
    """``n`` distinct faces from ``faces`` (flipped / shifted copies past its length)."""
    import numpy as np

    out = []
    for k in range(n):
        im, r = faces[k % len(faces)], k // len(faces)
        out.append(np.ascontiguousarray(np.roll(im[:, ::-1] if r % 2 else im, r, axis=1) if r else im))
    return out


def weights_home(tmp: Path, smoke: bool) -> dict[str, str]:
    """Point the weights manager at a scratch folder; put random official-layout files there for the
    metric networks whose real files are absent. Returns asset -> "official" | "random"."""
    import torch
    from facenet_pytorch import InceptionResnetV1
    from sb_testdata import random_inception_state_dict
    from torchvision.models import alexnet

    from scgan_bench.assets import weights as W
    from scgan_bench.networks.retinaface import RetinaFace

    made = {}
    makers = {"inception-fid": random_inception_state_dict, "alexnet": lambda: alexnet(weights=None).state_dict(),
              "facenet-vggface2": lambda: InceptionResnetV1(classify=True, num_classes=8631).state_dict(),
              "retinaface-mobilenet0.25": lambda: RetinaFace("mobilenet0.25").state_dict()}
    wdir = Path(os.environ["SCGAN_BENCH_WEIGHTS"])
    for name, make in makers.items():
        if W.status(name).state == "verified":
            made[name] = "official"
            continue
        path = wdir / W.ASSETS.get(name).filename
        torch.manual_seed(0)
        torch.save(make(), path)
        W.register_sha256(name, hashlib.sha256(path.read_bytes()).hexdigest())
        made[name] = "random weights, official layout"
    return made


# ------------------------------------------------------------------------------------------ parts
def part_env(dev: str, smoke: bool) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                           "device": dev, "date": _dt.date.today().isoformat()}
    if dev.startswith("cuda"):
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, capability=f"{p.major}.{p.minor}", gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   multiprocessors=p.multi_processor_count)
    n = 256 if smoke else 8192
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    sec = timed(lambda: a @ b, dev, repeat=3 if smoke else 10)
    out["bf16_matmul_tflops"] = 2 * n ** 3 / sec / 1e12
    out["bf16_matmul_size"] = n
    return out


class _DISTSScorer:
    """DISTS from a network object (the check's random VGG16 + positive alpha / beta)."""

    def __init__(self, net, device: str) -> None:
        self.net, self.device = net.eval().to(device), device

    def score_pairs(self, sr: list, hr: list) -> list[float]:
        import numpy as np
        import torch

        def t(images):
            return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().to(self.device) / 255.0

        with torch.inference_mode():
            return [float(v) for v in self.net(t(sr), t(hr)).cpu()]


def _metric_networks(smoke: bool) -> list[tuple[str, Callable[[str], Any], Callable[[Any], Any], float]]:
    """(name, make(device), run(model), tolerance) for every torch metric network (``run`` None: a paired
    scorer). Networks whose official files are not on the device machine (issue 17's) are built once
    from a seeded random init and copied per device, so both devices hold the same weights."""
    import copy

    import torch

    from scgan_bench.metrics.adaface import AdaFaceFeatures
    from scgan_bench.metrics.arcface import ArcFaceFeatures
    from scgan_bench.metrics.distribution import InceptionFeatures
    from scgan_bench.metrics.fid_stats import InceptionBasicSRPath
    from scgan_bench.metrics.identity import FaceNetFeatures
    from scgan_bench.metrics.landmarks import RetinaFaceLandmarks
    from scgan_bench.metrics.lmd import FANLandmarks
    from scgan_bench.metrics.perceptual import LPIPS
    from scgan_bench.networks.adaface import IRBackbone
    from scgan_bench.networks.dists import DISTSNet
    from scgan_bench.networks.fan import FAN
    from scgan_bench.networks.iresnet import IResNet

    from scgan_bench.metrics.clipiqa import CLIPIQAScore
    from scgan_bench.metrics.maniqa import KONIQ_SCALE, MANIQAScore
    from scgan_bench.metrics.musiq import MUSIQScore
    from scgan_bench.networks.clip import CLIP
    from scgan_bench.networks.maniqa import MANIQA
    from scgan_bench.networks.musiq import MUSIQ

    width = 0.25 if smoke else 1.0  # the CPU smoke run: reduced widths of the same layouts
    torch.manual_seed(0)
    arc, ada, fan = IResNet("r100", width=width), IRBackbone(50, width=width), FAN(4, width=width)
    musiq, maniqa = MUSIQ(layers=2 if smoke else 14), MANIQA(scale=KONIQ_SCALE, dim=96 if smoke else 768)
    clip = CLIP(layers=(1, 1, 1, 1), width=16, embed_dim=64, text_width=128, text_layers=2) if smoke else CLIP()
    dists = DISTSNet()
    with torch.no_grad():
        dists.alpha.uniform_(0.1, 1.0)
        dists.beta.uniform_(0.1, 1.0)

    def shared(cls, net):
        return lambda d: cls(d, net=copy.deepcopy(net))

    def ext(m):
        return m.extract

    def nr(m):
        return m.score_images

    return [("inception (fid/kid)", InceptionFeatures, ext, 1e-3),
            ("inception basicsr path (fid-ffhq512)", InceptionBasicSRPath, ext, 1e-3),
            ("facenet (verif/cos)", FaceNetFeatures, ext, 1e-3),
            ("retinaface landmarks (px, random)", RetinaFaceLandmarks, ext, 0.05),
            ("lpips", LPIPS, None, 1e-3),
            ("dists (random vgg16)", lambda d: _DISTSScorer(copy.deepcopy(dists), d), None, 1e-3),
            ("arcface iresnet-100 (random)", shared(ArcFaceFeatures, arc), ext, 1e-3),
            ("adaface ir-50 (random)", shared(AdaFaceFeatures, ada), ext, 1e-3),
            ("fan 2dfan-4 landmarks (px, random)", shared(FANLandmarks, fan), ext, 0.05),
            ("musiq (random)", shared(MUSIQScore, musiq), nr, 1e-3),
            ("maniqa (random)", shared(MANIQAScore, maniqa), nr, 1e-3),
            ("clip-iqa rn50 (random, fixed token rows)",
             lambda d: CLIPIQAScore(d, net=copy.deepcopy(clip), tokenizer=_FixedTokens()), nr, 1e-3)]


class _FixedTokens:
    """Token rows without the vocabulary file (not on the device machine): start id, a few ids drawn from
    the text's characters, end id. The device check compares arithmetic, not tokenization."""

    def tokenize(self, texts: list[str]):
        import torch

        rows = torch.zeros(len(texts), 77, dtype=torch.long)
        for r, t in enumerate(texts):
            ids = [49406, *[(ord(c) * 131 + k) % 49000 + 1 for k, c in enumerate(t[:20])], 49407]
            rows[r, :len(ids)] = torch.tensor(ids)
        return rows


def _raw_outputs(name: str, model: Any, faces: list):
    """The network's own output before arg-max decoding (landmark networks), float64 on the host; None
    for the others. With random weights the decoded points are the arg-max of near-flat maps, which
    the last bit of rounding moves; the raw maps show whether the arithmetic agrees."""
    import numpy as np
    import torch

    from scgan_bench.metrics.landmarks import UPSAMPLE, resize_uint8
    from scgan_bench.metrics.lmd import crop_256
    from scgan_bench.networks.retinaface import BGR_MEAN

    with torch.inference_mode():
        if name.startswith("fan"):
            return model.net(crop_256(faces).to(model.device)).double().cpu().numpy()
        if name.startswith("retinaface"):
            dev = next(model.net.parameters()).device
            big = np.stack([resize_uint8(f, (f.shape[0] * UPSAMPLE, f.shape[1] * UPSAMPLE), "bicubic") for f in faces])
            x = torch.from_numpy(big[..., ::-1].astype(np.float32) - np.array(BGR_MEAN, np.float32)).permute(0, 3, 1, 2)
            return np.concatenate([t.double().cpu().numpy().reshape(len(faces), -1) for t in model.net(x.to(dev))], 1)
    return None


def fp32_modes(dev: str) -> tuple[tuple[str, bool], ...]:
    """(label, tf32) of the float32 modes compared on ``dev``: a run's strict float32 and ``--tf32``
    (scgan_bench.run.precision) on CUDA; on the CPU, which has no TF32, strict only."""
    return (("strict_fp32", False), ("tf32", True)) if dev.startswith("cuda") else (("strict_fp32", False),)


def part_metric_agreement(dev: str, faces: list, smoke: bool = False) -> dict[str, Any]:
    """Each torch metric network on the faces on ``dev`` vs on the CPU, in strict float32 (what a run
    does: scgan_bench.run.precision) and with ``--tf32`` (TF32 convolutions and matrix products), side by side.
    The 2026-11-27 reports' "tf32" column is torch's default instead (TF32 convolutions only)."""
    import numpy as np

    from scgan_bench.run.precision import fp32_precision

    nets = _metric_networks(smoke)
    hr = faces[::-1]
    rows = {}
    for name, make, ext, tol in nets:
        def run(m, ext=ext):
            return np.asarray(ext(m)(faces) if ext else m.score_pairs(faces, hr), np.float64)

        try:
            cpu_model = make("cpu")
            cpu, cpu_raw = run(cpu_model), _raw_outputs(name, cpu_model, faces)
            row: dict[str, Any] = {"tolerance": tol}
            for label, tf32 in fp32_modes(dev):
                with fp32_precision(dev, tf32):
                    gpu_model = make(dev)
                    gpu, gpu_raw = run(gpu_model), _raw_outputs(name, gpu_model, faces)
                ok = np.isfinite(cpu) & np.isfinite(gpu)
                diff = np.abs(cpu - gpu)[ok]
                absolute = "(px" in name
                scale = np.abs(cpu[ok]).max() if ok.any() else 1.0
                value = float(diff.max() if absolute else diff.max() / scale) if diff.size else 0.0
                same_nan = bool((np.isfinite(cpu) == np.isfinite(gpu)).all())
                row[label] = {"max_diff": value, "same_nan_pattern": same_nan, "ok": bool(value <= tol and same_nan)}
                if cpu_raw is not None:  # relative, like the feature networks
                    raw = float(np.abs(cpu_raw - gpu_raw).max() / max(np.abs(cpu_raw).max(), 1e-12))
                    row[label].update(raw_output_max_diff=raw, raw_ok=raw <= 1e-3)
            row["kind"] = "absolute px" if "(px" in name else "relative to the largest value"
            # what a run does (strict float32 since the first check); with random weights a landmark
            # network is judged on its raw maps, the decoded points being the arg-max of noise
            strict = row["strict_fp32"]
            row["ok"] = strict["raw_ok"] if "random" in name and "raw_ok" in strict else strict["ok"]
            rows[name] = row
        except Exception as exc:  # noqa: BLE001 (one network's failure is a finding, not the end of the check)
            rows[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return rows


def _install_random_methods(tmp: Path, faces: list, width: float) -> dict[str, Callable[[str], Any]]:
    """Every SR method that can run here, built from random official-layout files (baselines) or from
    a fresh training engine's export (SCGAN, LRGAN retrained, CycleGAN): name -> make(device)."""
    from baseline_weights import (codeformer_state_dict, gfpgan_clean_state_dict, gfpgan_v1_state_dict,
                                  hifacegan_state_dict, lightning, lrgan_state_dict, restoreformer_state_dict,
                                  rrdb_state_dict, save)

    from scgan_bench.assets import weights as W
    from scgan_bench.registries import METHODS, load_plugins
    from scgan_bench.training.engine import Engine, TrainConfig

    load_plugins()
    wdir = Path(os.environ["SCGAN_BENCH_WEIGHTS"])
    files = {"realesrgan-x4plus": {"params_ema": rrdb_state_dict()}, "lrgan-released": lrgan_state_dict(),
             "gfpgan-v1": {"params_ema": gfpgan_v1_state_dict()}, "gfpgan-v1.3": {"params_ema": gfpgan_clean_state_dict()},
             "restoreformer-pth": {"params_ema": restoreformer_state_dict()},
             "restoreformer++": lightning(restoreformer_state_dict(plus=True)),
             "hifacegan-x16": hifacegan_state_dict(module_prefix=True), "codeformer": {"params_ema": codeformer_state_dict()}}
    for asset, obj in files.items():
        if W.status(asset).state != "verified":
            path = save(obj, wdir / W.ASSETS.get(asset).filename)
            W.register_sha256(asset, hashlib.sha256(path.read_bytes()).hexdigest())
    hr, lr = _train_data(faces, 8)
    for variant in ("scgan", "lrgan", "cyclegan", "cyclegan-16"):  # a fresh engine's SR export: random init
        out = tmp / "runs" / variant
        eng = Engine(TrainConfig(variant=variant, width=width, batch_size=2, out=str(out), progress=False), hr, lr)
        eng.save(out)
        method = eng.spec.sr_method(variant)
        os.environ["SCGAN_BENCH_CKPT_" + method.upper().replace("-", "_")] = str(out)
    plain = ("bicubic", "bilinear", "nearest", "scgan", "lrgan-retrained", "cyclegan", "cyclegan-16", "lrgan")
    reduced = ("realesrgan", "gfpgan-v1", "gfpgan-v1.3", "restoreformer", "restoreformer++", "hifacegan", "codeformer")
    makers: dict[str, Callable[[str], Any]] = {m: (lambda d, m=m: METHODS.get(m).create(device=d)) for m in plain}
    # a smaller RestoreFormer bridge in the CPU smoke run only (fully convolutional; the check uses 512)
    small = {"input_size": 128} if width < 1 else {}
    makers.update({m: (lambda d, m=m: METHODS.get(m).create(device=d, any_config=True,
                                                           **(small if m.startswith("restoreformer") else {})))
                   for m in reduced})
    return makers


def part_method_agreement(dev: str, faces: list, tmp: Path, n: int, width: float) -> dict[str, Any]:
    """Each SR method's output for ``n`` LR faces on ``dev`` vs on the CPU, in 8-bit levels after the
    runner's quantisation (what is saved), in strict float32 (what a run does) and with TF32 (``--tf32``).
    Tolerance: max 2 levels, mean 0.05 levels."""
    import numpy as np
    import torch

    from scgan_bench.run.precision import fp32_precision
    from scgan_bench.run.superres import quantise

    hr = torch.from_numpy(np.stack(faces[:n])).permute(0, 3, 1, 2).float() / 255
    lr = (torch.nn.functional.avg_pool2d(hr, 4) * 255).round() / 255
    rows: dict[str, Any] = {}
    skipped = {"pulse": "an iterative latent search: CPU and GPU float paths diverge by design; not compared",
               "dfdnet": "needs dlib (part boxes), absent on the device machine"}
    if width < 1:  # the CPU smoke run: CodeFormer's fixed 512 px grid is the slowest part, left out
        skipped["codeformer"] = "smoke run: not compared (512 px on the CPU twice)"
    for name, make in _install_random_methods(tmp, faces, width).items():
        if name in skipped:
            continue
        try:
            t = time.perf_counter()
            a = np.stack(quantise(make("cpu").upscale(lr))).astype(np.int16)
            row: dict[str, Any] = {}
            for label, tf32 in fp32_modes(dev):
                with fp32_precision(dev, tf32):
                    b = np.stack(quantise(make(dev).upscale(lr.to(dev)).cpu())).astype(np.int16)
                d = np.abs(a - b)
                row[label] = {"max_levels": int(d.max()), "mean_levels": float(d.mean()),
                              "ok": bool(d.max() <= 2 and d.mean() <= 0.05)}
            rows[name] = {**row, "ok": row["strict_fp32"]["ok"], "seconds": time.perf_counter() - t}
        except Exception as exc:  # noqa: BLE001 (one method's failure is a finding, not the end of the check)
            rows[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    rows.update({k: {"ok": None, "skipped": v} for k, v in skipped.items()})
    return rows


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


def part_metric_throughput(dev: str, faces: list, tmp: Path, n_run: int, repeat: int = 2,
                           smoke: bool = False) -> dict[str, Any]:
    """Images/s of each GPU feature network on all faces in one call, and a whole run of ~n_run faces
    with every GPU metric beside torch-fidelity's calculate_metrics on the same folders."""
    import torch_fidelity

    from scgan_bench.assets import weights as W
    from scgan_bench.io.image_io import write_png
    from scgan_bench.run.pipeline import RunConfig, run_benchmark
    from scgan_bench.run.precision import fp32_precision

    per: dict[str, float] = {}
    hr = faces[::-1]
    with fp32_precision(dev):  # what a run does
        for name, make, ext, _ in _metric_networks(smoke):
            m = make(dev)
            per[name] = len(faces) / timed(lambda: ext(m)(faces) if ext else m.score_pairs(faces, hr), dev,
                                           repeat=repeat)
    folder = tmp / "faces"
    for k, im in enumerate(load_faces(None, 0) if not faces else load_faces_like(faces, n_run)):
        write_png(folder / f"{k:05d}.png", im)
    metrics = ["fid", "kid", "lpips", "facenet-verif", "landmark-retinaface"]
    out = tmp / "run"
    t = time.perf_counter()
    run_benchmark(RunConfig(datasets=["folder"], methods=["bicubic", "nearest"], metrics=metrics, out=out,
                                  roots={"folder": str(folder)}, device=dev, progress=False))
    run_s = time.perf_counter() - t
    stages = json.loads((out / "run.json").read_text()).get("stages") or []
    # the second method's stages (SR, per-image metrics, set metrics), its references already cached
    further_s = sum(r["seconds"] for r in stages if r["stage"] in ("sr", "metrics", "metric")
                    and r["what"].split()[1:2] == ["nearest"])
    ours = {}
    import csv

    for r in csv.DictReader(open(out / "results.csv")):
        if r["image_id"] == "*" and r["method"] == "bicubic" and r["metric"] in ("fid", "kid", "kid:std"):
            ours[r["metric"]] = float(r["value"])
    sr_dir = out / "sr" / "folder" / "bicubic"
    hr_dir = tmp / "hr_only"
    for rec in (out / "data" / "folder" / "records").glob("*.json"):
        r = json.loads(rec.read_text())
        (hr_dir).mkdir(exist_ok=True)
        shutil.copy(out / "data" / "folder" / r["hr"], hr_dir / f"{r['id']}.png")
    n = len(list(sr_dir.glob("*.png")))
    path = W.resolve("inception-fid", allow_download=False).path
    t = time.perf_counter()
    ref = torch_fidelity.calculate_metrics(input1=str(sr_dir), input2=str(hr_dir), fid=True, kid=True,
                                           kid_subset_size=min(1000, max(2, n // 2)), cuda=dev.startswith("cuda"),
                                           feature_extractor_weights_path=str(path), verbose=False, cache=False)
    tf_s = time.perf_counter() - t
    fid_ref, kid_ref = ref["frechet_inception_distance"], ref["kernel_inception_distance_mean"]
    fid_rel = abs(ours.get("fid", math.nan) - fid_ref) / max(abs(fid_ref), 1e-12)
    kid_rel = abs(ours.get("kid", math.nan) - kid_ref) / max(abs(kid_ref), 1e-12)
    return {"per_network_images_per_s": per, "faces_per_call": len(faces),
            # images_per_s: the first method's whole run from cold caches (preparation, references, SR, metrics;
            # the 2026-11-27 figure's run), i.e. without the second method's stages
            "run": {"images": n, "methods": 2, "metrics": metrics, "seconds": run_s,
                    "images_per_s": n / (run_s - further_s),
                    "further_method_seconds": further_s,
                    "further_method_images_per_s": n / further_s if further_s else None,
                    "decoded_images": json.loads((out / "run.json").read_text()).get("decoded_images"),
                    "stages": stages},
            "torch_fidelity": {"seconds": tf_s, "fid": fid_ref, "kid": kid_ref, "ours_fid": ours.get("fid"),
                               "ours_kid": ours.get("kid"), "fid_relative_difference": fid_rel,
                               "kid_relative_difference": kid_rel, "ok": bool(fid_rel <= 1e-4 and kid_rel <= 1e-4)}}


# ------------------------------------------------------------------------------------------ report
def markdown(rep: dict[str, Any]) -> str:
    env = rep["parts"].get("env", {}).get("result", {})
    lines = [f"# GPU check: {env.get('gpu', env.get('device', '?'))}, {env.get('date', '')}", "",
             f"torch {env.get('torch')}, Python {env.get('python')}, {env.get('cpus')} CPUs; measured bf16 matmul "
             f"peak {env.get('bf16_matmul_tflops', float('nan')):.0f} TFLOP/s ({env.get('bf16_matmul_size')}^3). "
             f"Command: `{rep['command']}`; weights: {rep.get('weights')}.", ""]
    for name, part in rep["parts"].items():
        lines.append(f"## {name} ({part['seconds']:.1f} s)")
        lines.append("")
        lines.append("```json")
        lines.append(json.dumps(part.get("result", part.get("error")), indent=1, default=str))
        lines.append("```")
        lines.append("")
    lines += ["## Summary", "", *summary(rep)]
    return "\n".join(lines) + "\n"


def summary(rep: dict[str, Any]) -> list[str]:
    p = rep["parts"]
    out = ["| what | value | goal |", "|---|---|---|"]
    env = p.get("env", {}).get("result", {})
    speed = {**p.get("train speed", {}).get("result", {}).get("modes", {}),
             **p.get("train speed compiled", {}).get("result", {}).get("modes", {})}
    for mode, r in speed.items():
        if "ms_per_step" in r:
            tf = r.get("tflops") or float("nan")
            pct = 100 * tf / env["bf16_matmul_tflops"] if env.get("bf16_matmul_tflops") else float("nan")
            out.append(f"| SCGAN step {mode} | {r['ms_per_step']:.1f} ms, {tf:.1f} TFLOP/s ({pct:.0f}% of peak), "
                       f"full recipe {r['full_recipe_hours']:.2f} h; {r.get('host_ops_per_step', 0):,} host ops/step | "
                       f"<= {GOALS['step_ms']:.0f} ms, <= 1 h; <= {GOALS['host_ops']:,} ops |")
        else:
            out.append(f"| SCGAN step {mode} | {r.get('error') or 'skipped: ' + str(r.get('skipped'))} | |")
    cmd = p.get("train command", {}).get("result")
    if cmd:
        bench = speed.get(cmd["command"].split("--speed ")[1].split()[0], {}).get("ms_per_step")
        pace = cmd.get("steady_ms_per_step")
        gap = f"{100 * (pace / bench - 1):+.0f}% vs the step benchmark" if pace and bench else "no comparison"
        out.append(f"| `scgan-bench train`, {cmd['steps']} steps | steady {pace or float('nan'):.1f} ms/step ({gap}); "
                   f"checkpoints {100 * cmd['checkpoint_share_of_wall']:.1f}% of wall ({cmd['checkpoints']} saves) | "
                   f"within 15%; <= 5% |")
    thr = p.get("metric throughput", {}).get("result", {})
    if thr:
        run = thr["run"]
        out.append(f"| whole run, {len(run['metrics'])} GPU metrics, cold caches | {run['images_per_s']:.0f} images/s "
                   f"({run['images']} images) | >= {GOALS['run_images_per_s']:.0f} images/s |")
        if run.get("further_method_images_per_s"):
            out.append(f"| a further method, references cached | {run['further_method_images_per_s']:.0f} images/s | "
                       f">= {GOALS['metric_images_per_s']:.0f} images/s |")
        tf = thr["torch_fidelity"]
        out.append(f"| FID/KID vs torch-fidelity | rel. diff {tf['fid_relative_difference']:.1e} / "
                   f"{tf['kid_relative_difference']:.1e}; {tf['seconds']:.1f} s vs our run's {run['seconds']:.1f} s | equal |")
    for name in ("metric agreement", "method agreement", "bf16 losses"):
        res = p.get(name, {}).get("result")
        if isinstance(res, dict):
            items = res.values() if name != "bf16 losses" else [res]
            bad = [k for k, v in (res.items() if name != "bf16 losses" else [("step", res)])
                   if isinstance(v, dict) and v.get("ok") is False]
            out.append(f"| {name} | {'all within tolerance' if not bad else 'OUTSIDE tolerance: ' + ', '.join(bad)} "
                       f"({sum(1 for v in items if isinstance(v, dict) and v.get('ok'))} checked) | stated per row |")
    failed = [k for k, v in p.items() if "error" in v]
    if failed:
        out.append(f"| parts that failed | {', '.join(failed)} | none |")
    return out


def write_report(rep: dict[str, Any], out: Path, dev: str) -> str:
    """``gpu_check_<card>_<date>.{json,md}`` under ``out`` (and ``$OUT`` with the loss curve); the stem."""
    tag = "smoke" if rep["smoke"] else rep["parts"].get("env", {}).get("result", {}).get("gpu", dev).replace(" ", "-")
    stem = f"gpu_check_{tag}_{_dt.date.today().isoformat()}{rep.get('label', '')}"
    (out / f"{stem}.json").write_text(json.dumps(rep, indent=1, default=str))
    (out / f"{stem}.md").write_text(markdown(rep))
    if os.environ.get("OUT"):
        for p in (out / f"{stem}.json", out / f"{stem}.md", out / "gpu_check_loss_curve.png"):
            if p.exists():
                shutil.copy(p, Path(os.environ["OUT"]) / p.name)
    return stem


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
