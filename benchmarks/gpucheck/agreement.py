"""Parts 1-2 of the device check: the environment with its measured bf16 peak, and every SR method's and
metric network's outputs on the GPU against the CPU (strict float32 and TF32)."""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

from .common import timed
from .training import _train_data


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
    from scgan_bench.metrics.dinov2 import DINOv2Features
    from scgan_bench.metrics.liqe import LIQEScore
    from scgan_bench.metrics.topiq import FACE_ASSET, KONIQ_ASSET, TOPIQScore
    from scgan_bench.networks.dinov2 import DINOv2, VIT_L14
    from scgan_bench.networks.topiq import TOPIQNR
    from scgan_bench.metrics.qalign import QAlignScore
    from scgan_bench.networks.mplug_owl2 import AbstractorConfig, MPLUGOwl2, VisionConfig, llama_config

    width = 0.25 if smoke else 1.0  # the CPU smoke run: reduced widths of the same layouts
    torch.manual_seed(0)
    arc, ada, fan = IResNet("r100", width=width), IRBackbone(50, width=width), FAN(4, width=width)
    musiq, maniqa = MUSIQ(layers=2 if smoke else 14), MANIQA(scale=KONIQ_SCALE, dim=96 if smoke else 768)
    clip = CLIP(layers=(1, 1, 1, 1), width=16, embed_dim=64, text_width=128, text_layers=2) if smoke else CLIP()
    topiq, topiq_face = TOPIQNR(), TOPIQNR(test_size=128 if smoke else 512)
    vit = (CLIP(layers=1, width=64, embed_dim=32, text_width=64, text_layers=1, patch=32) if smoke else
           CLIP(layers=12, width=768, embed_dim=512, text_width=512, text_layers=12, patch=32))  # LIQE's ViT-B/32
    dino = DINOv2(dim=64, depth=1, heads=1) if smoke else DINOv2(**VIT_L14)
    with torch.no_grad():
        dino.pos_embed.normal_(0, 0.1)  # zeros at init
    # Q-Align: OneAlign's widths with fewer layers (the full 8.2 B model would take minutes on the CPU side)
    owl = (MPLUGOwl2(llama_config(vocab_size=400, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                                  num_attention_heads=4, num_key_value_heads=4),
                     VisionConfig(width=32, layers=1, heads=2, mlp=64, image=56, patch=14),
                     AbstractorConfig(width=32, layers=1, heads=2, mlp=48, queries=8, encoder_width=32, grid=4))
           if smoke else
           MPLUGOwl2(llama_config(num_hidden_layers=2, vocab_size=1024), VisionConfig(layers=4), AbstractorConfig(layers=2)))
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
             lambda d: CLIPIQAScore(d, net=copy.deepcopy(clip), tokenizer=_FixedTokens()), nr, 1e-3),
            ("topiq-nr (random)", lambda d: TOPIQScore(d, KONIQ_ASSET, net=copy.deepcopy(topiq)), nr, 1e-3),
            ("topiq-nr-face (random)", lambda d: TOPIQScore(d, FACE_ASSET, net=copy.deepcopy(topiq_face)), nr, 1e-3),
            ("liqe vit-b/32 (random, fixed token rows)",
             lambda d: LIQEScore(d, "liqe-koniq", net=copy.deepcopy(vit), tokenizer=_FixedTokens()), nr, 1e-3),
            ("liqe-mix vit-b/32 (random, fixed token rows)",
             lambda d: LIQEScore(d, "liqe-mix", net=copy.deepcopy(vit), tokenizer=_FixedTokens()), nr, 1e-3),
            ("dinov2 vit-l/14 (fd/prdc, random)", shared(DINOv2Features, dino), ext, 1e-3),
            ("q-align mplug-owl2 (random, fewer layers, fixed token ids)",
             lambda d: QAlignScore(d, net=copy.deepcopy(owl), tokens=_FixedQAlignTokens(), dtype=torch.float32),
             nr, 1e-3)]


class _FixedQAlignTokens:
    """Q-Align's prompt and level ids without the SentencePiece file (not on the device machine): BOS, a few
    fixed ids, and five level ids. The device check compares arithmetic, not tokenization."""

    def prompt(self) -> tuple[list[int], list[int]]:
        return [1, 11, 42, 97, 13], [13, 200, 7, 31, 58]

    def levels(self) -> list[int]:
        return [101, 102, 103, 104, 105]


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
    from baseline_weights import (codeformer_state_dict, diffbir_files, difface_files, gfpgan_clean_state_dict,
                                  gfpgan_v1_state_dict,
                                  hifacegan_state_dict, lightning, lrgan_state_dict, pmrf_state_dict,
                                  restoreformer_state_dict, rrdb_state_dict, save)

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
    if W.status("pmrf-blind-face").state != "verified":   # safetensors, as released
        from safetensors.torch import save_file

        path = wdir / W.ASSETS.get("pmrf-blind-face").filename
        save_file(pmrf_state_dict(), str(path))
        W.register_sha256("pmrf-blind-face", hashlib.sha256(path.read_bytes()).hexdigest())
    if W.status("difface-diffusion").state != "verified":  # two .pth files, as released
        for asset, path in zip(("difface-diffusion", "difface-estimator"), difface_files(wdir)[:2]):
            W.register_sha256(asset, hashlib.sha256(path.read_bytes()).hexdigest())
    if W.status("diffbir-sd21").state != "verified":   # SD 2.1's Lightning checkpoint, v2.pth, the stage-1 ckpt
        paths = diffbir_files(wdir)[0]
        for asset, key in (("diffbir-sd21", "sd"), ("diffbir-controlnet-v2", "control"), ("diffbir-face-swinir", "cleaner")):
            W.register_sha256(asset, hashlib.sha256(paths[key].read_bytes()).hexdigest())
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
    # PMRF reduced (two HDiT levels, a small SwinIR), 3 flow steps: the sampler and both networks on the device
    makers["pmrf"] = lambda d: METHODS.get("pmrf").create(device=d, any_config=True, allow_cpu=True, steps=3)
    # DifFace reduced (six UNet levels at 512 px, a small SwinIR), diffused to step 2: one DDIM step with noise, one
    # without (the CPU smoke run: step 1, one UNet call, as its 512 px UNet is the costliest network there)
    start = 1 if width < 1 else 2
    makers["difface"] = lambda d: METHODS.get("difface").create(device=d, any_config=True, allow_cpu=True, start=start)
    # DiffBIR reduced (SD-shaped UNet / IRControlNet of two levels, 64 px latents), 2 guided steps (1 in the smoke
    # run), in float32 on both devices: the float path is compared (its CUDA default is float16 autocast)
    makers["diffbir"] = lambda d: METHODS.get("diffbir").create(device=d, any_config=True, allow_cpu=True,
                                                                steps=start, precision="fp32")
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
