"""DifFace (Yue & Loy, TPAMI 2024) as an SR method: a diffused estimator (SwinIR trained with L1 on
synthetic FFHQ degradations) predicts the clean face, the prediction is diffused to step N of the face
prior's process, and the pretrained face diffusion model (an improved-DDPM UNet,
:mod:`scgan_bench.networks.iddpm_unet`) carries it back to a face by DDIM. 512 px in, 512 px out. Card:
difface.md.

The official inference (``inference_difface.py`` + ``sampler.py`` + ``models/gaussian_diffusion.py``,
``models/respace.py``; configs/sample/iddpm_ffhq512_swinir.yaml), reproduced here:

* 1000-step linear beta schedule (1e-4 -> 0.02), respaced ``ddim250`` (every 4th step: 0, 4, ..., 996);
  the UNet is called with the original step (``timestep_map``), ``rescale_timesteps`` off;
* ``y`` resized to 512 px (``F.interpolate(bicubic, antialias=True)``) when it is not; ``x0 = clip(SwinIR(y),
  0, 1)`` mapped to [-1, 1]; ``x = q_sample(x0, N)`` with N = 100 (``_START_TIMESTEPS['restoration']``);
* DDIM with eta = 0.5 (the ``--eta`` default) over the respaced steps N-1, ..., 0 (the loop starts one
  step below the diffused one: ``range(start_timesteps)`` reversed, as released); per step the UNet's
  first three channels are the noise estimate (the other three, the learned variance, are unused by
  DDIM), x0 predicted and clipped to [-1, 1], ``x <- sqrt(a_prev) x0 + sqrt(1 - a_prev - s^2) eps + s z``
  (no noise at step 0);
* output mapped back to [0, 1] and clipped.

Seeding: the diffusion noise and every DDIM step's noise come from one CPU generator per image, seeded by
the sha256 of its 8-bit input pixels (xor :data:`NOISE_SALT`), drawn in that order: the same output on
every run, batch and batch size (the official script seeds one global generator per run: its outputs
depend on the batch order).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:  # imported where used: registering and listing need none of it
    import torch
    from torch import nn

    from scgan_bench.interfaces import Availability

from scgan_bench.assets.weights import Asset, register_asset
from scgan_bench.errors import UsageError, WeightsError

from .adapter import Card, NoiseStreams, PretrainedSR, gpu_only_availability, gpu_only_text, holder, register
from .bridge import Bridge
from .loading import check_official_size, load_strict, read_state_dict, refuse_layout, spandrel_build

DIFFUSION = "difface-diffusion"
ESTIMATOR = "difface-estimator"
#: the official model's sizes: the improved-DDPM UNet of iddpm_ffhq512_swinir.yaml and SwinIR ``swinir_L``
UNET_PARAMS = 159_788_454
SWINIR_PARAMS = 15_792_587
LICENSE = "NTU S-Lab License 1.0 (code and weights; non-commercial use)"
RELEASE = "https://github.com/zsyOAOA/DifFace/releases/download/V1.0/"
#: the official sampler (inference_difface.py, configs/sample/iddpm_ffhq512_swinir.yaml)
TRAIN_STEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02
RESPACING = 250          # 'ddim250'
START_STEP = 100         # _START_TIMESTEPS['restoration']
ETA = 0.5                # --eta default
SIZE = 512
NOISE_SALT = 0x44494646  # "DIFF"

register_asset(Asset(
    DIFFUSION, "iddpm_ffhq512_ema500000.pth", RELEASE + "iddpm_ffhq512_ema500000.pth", used_by="difface",
    license=LICENSE, caches=("scgan-bench",),
    source_note="DifFace's face diffusion prior (improved DDPM, FFHQ 512, EMA at 500k iterations), the file "
                "inference_difface.py downloads; no sha256 is published: verified by trust-on-first-use"))
register_asset(Asset(
    ESTIMATOR, "swinir_restoration512_L1.pth", RELEASE + "swinir_restoration512_L1.pth", used_by="difface",
    license=LICENSE, caches=("scgan-bench",),
    source_note="DifFace's diffused estimator (SwinIR, L1 on synthetic FFHQ degradations), the file "
                "inference_difface.py downloads; no sha256 is published: verified by trust-on-first-use"))


def swinir_keys(sd: Mapping[str, "torch.Tensor"]) -> dict:
    """DifFace's SwinIR keys as spandrel's SwinIR names them: its ``conv_first`` is (PixelUnshuffle, Conv2d),
    spandrel's the convolution alone (it unshuffles in forward). PMRF's predictor is this network."""
    out = dict(sd)
    for p in ("weight", "bias"):
        if f"conv_first.1.{p}" in out:
            out[f"conv_first.{p}"] = out.pop(f"conv_first.1.{p}")
    return out


def official_swinir() -> "nn.Module":
    """DifFace's SwinIR-L (embed 180, 8 x 6 blocks, 6 heads, window 8, unshuffle 8, nearest+conv x8) with
    fresh weights: the estimator here and PMRF's posterior-mean predictor."""
    from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR

    return SwinIR(img_size=64, patch_size=1, in_chans=3, embed_dim=180, depths=[6] * 8, num_heads=[6] * 8,
                  window_size=8, mlp_ratio=2, upscale=8, img_range=1.0, upsampler="nearest+conv",
                  resi_connection="1conv", start_unshuffle=8)


def official_networks() -> "nn.Module":
    """DifFace at the release's sizes with fresh weights (the benchmarks time it)."""
    from scgan_bench.networks.iddpm_unet import GuidedUNet

    return holder(model=GuidedUNet(), model_ir=official_swinir())


def load_unet(sd: Mapping[str, "torch.Tensor"], path: Path | str) -> tuple["nn.Module", dict]:
    """The diffusion UNet from its official tensors, through the key map, strictly (every official key
    must be taken by the map, every tensor of the network filled)."""
    from scgan_bench.networks.iddpm_unet import GuidedUNet, config_from_state_dict, official_key_map

    what = "difface (diffusion model)"
    if "layers.0.residual_group.blocks.0.attn.qkv.weight" in sd:
        raise WeightsError(f"{what}: {path} holds the estimator (SwinIR), not the diffusion model: the two files "
                           "are swapped (weights= is iddpm_ffhq512_ema500000.pth, estimator= swinir_restoration512_L1.pth)")
    try:
        cfg = config_from_state_dict(sd)
    except WeightsError as exc:
        raise WeightsError(f"{what}: {path}: {exc}; expected iddpm_ffhq512_ema500000.pth") from None
    if cfg.out_channels != 2 * cfg.in_channels:
        raise WeightsError(f"{what}: {path}: the UNet returns {cfg.out_channels} channels; DifFace's model learns "
                           f"its variance (learn_sigma: {2 * cfg.in_channels} channels)")
    km = official_key_map(sd, cfg)
    left = sorted(set(sd) - km.used)
    net = GuidedUNet(cfg)
    missing = sorted({km.source.get(k, k) for k in net.state_dict() if k not in km.mapped})
    refuse_layout(what, path, "the improved-DDPM UNet in DifFace's configuration", missing, left)
    net = load_strict(net, km.mapped, path, what)
    return net, {"channel_mult": list(cfg.channel_mult), "num_res_blocks": list(cfg.num_res_blocks),
                 "attention_levels": list(cfg.attention_levels), "model_channels": cfg.model_channels}


def load_estimator(sd: Mapping[str, "torch.Tensor"], path: Path | str) -> "nn.Module":
    what = "difface (estimator, SwinIR)"
    if "input_blocks.0.0.weight" in sd:
        raise WeightsError(f"{what}: {path} holds the diffusion model (a UNet), not the estimator: the two files "
                           "are swapped (weights= is iddpm_ffhq512_ema500000.pth, estimator= swinir_restoration512_L1.pth)")
    keyed = swinir_keys(sd)
    return load_strict(spandrel_build(dict(sd), "SwinIR", path, what), keyed, path, what)


def schedule(train_steps: int = TRAIN_STEPS, respacing: int = RESPACING) -> tuple[list[int], "torch.Tensor"]:
    """(the original steps kept, their cumulative alphas in float64): respace.py's ``ddimN`` striding of
    the linear schedule (gaussian_diffusion.get_named_beta_schedule)."""
    import numpy as np
    import torch

    stride = next((i for i in range(1, train_steps) if len(range(0, train_steps, i)) == respacing), None)
    if stride is None:
        raise UsageError(f"difface: respacing={respacing}: {train_steps} steps cannot be strided to exactly that many")
    scale = 1000 / train_steps
    betas = np.linspace(scale * BETA_START, scale * BETA_END, train_steps, dtype=np.float64)
    abar = np.cumprod(1.0 - betas)
    kept = list(range(0, train_steps, stride))
    return kept, torch.from_numpy(abar[kept])


def make_forward(start: int = START_STEP, eta: float = ETA, respacing: int = RESPACING, size: int = SIZE):
    """The sampler as an adapter forward; ``size`` is the network's input size (512 as released; the tests
    run reduced networks at less)."""
    import torch

    kept, abar = schedule(respacing=respacing)
    if not 1 <= start < len(kept):
        raise UsageError(f"difface: start={start}: the starting step must be in [1, {len(kept) - 1}] "
                         f"(the release: {START_STEP} of {RESPACING})")
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])

    def forward(net: "nn.Module", y: "torch.Tensor", keys: Sequence[str]) -> "torch.Tensor":
        """sample_func_ir_aligned + ddim_sample_loop (see the module docstring); y in [0, 1] at 512 px."""
        from torch.nn import functional as F

        if y.shape[-2:] != (size, size):
            y = F.interpolate(y, size=(size, size), mode="bicubic", antialias=True)
        x0 = net.model_ir(y).clamp(0, 1) * 2 - 1
        noise = NoiseStreams(keys, tuple(x0.shape[1:]), NOISE_SALT)
        a = abar[start].item()
        x = a ** 0.5 * x0 + (1 - a) ** 0.5 * noise.draw(x0)
        for i in range(start - 1, -1, -1):
            t = torch.full((x.shape[0],), kept[i], device=x.device, dtype=torch.long)
            eps = net.model(x, t)[:, :3].to(x.dtype)
            a, ap = abar[i].item(), abar_prev[i].item()
            pred = ((1 / a) ** 0.5 * x - (1 / a - 1) ** 0.5 * eps).clamp(-1, 1)
            sigma = eta * ((1 - ap) / (1 - a)) ** 0.5 * (1 - a / ap) ** 0.5
            x = pred * ap ** 0.5 + (1 - ap - sigma ** 2) ** 0.5 * eps
            if i:     # no noise at step 0 (its sigma is 0 anyway: the cumulative alpha before step 0 is 1)
                x = x + sigma * noise.draw(x)
        return ((x + 1) / 2).clamp(0, 1)

    return forward


#: one face at 512 px with the release's sizes (100 DDIM steps), 2 cores of an AMD EPYC, float32
#: (``python benchmarks/restorer_speed.py --method difface``; benchmarks/results/difface_speed.txt)
CPU_SECONDS_PER_FACE = (425, 445)   # two runs of the benchmark


def gpu_only_reason() -> str:
    return gpu_only_text("difface", f"{START_STEP} DDIM steps of a 160 M-parameter UNet at 512 px plus the SwinIR "
                         "pass", CPU_SECONDS_PER_FACE)


def availability(**options: Any) -> "Availability":
    return gpu_only_availability(options, ((DIFFUSION, "weights"), (ESTIMATOR, "estimator")), gpu_only_reason,
                                 (("spandrel", "pip install spandrel"), ("diffusers", "pip install diffusers")))


def create(device: str = "cpu", start: int = START_STEP, eta: float = ETA, respacing: int = RESPACING,
           bridge: str = "bicubic", allow_cpu: bool = False, any_config: bool = False, weights: str = "",
           estimator: str = "") -> PretrainedSR:
    from scgan_bench.assets.weights import resolve

    forward = make_forward(int(start), float(eta), int(respacing))
    if not str(device).startswith("cuda") and not allow_cpu:
        raise UsageError(f"difface: {gpu_only_reason()}")
    ru = resolve(DIFFUSION, Path(weights) if weights else None)
    unet, cfg = load_unet(read_state_dict(ru.path, "difface (diffusion model)"), ru.path)
    re_ = resolve(ESTIMATOR, Path(estimator) if estimator else None)
    swin = load_estimator(read_state_dict(re_.path, "difface (estimator)"), re_.path)
    sizes = {part: check_official_size(n, want, f"{ru.path} / {re_.path}", f"difface ({part})", any_config)
             for part, n, want in (("unet", unet, UNET_PARAMS), ("estimator", swin, SWINIR_PARAMS))}
    b = Bridge(SIZE, bridge, "torch-bicubic-aa", "sampler.py: F.interpolate(bicubic, antialias=True) in float")
    return PretrainedSR("difface", holder(model=unet, model_ir=swin), forward, "[0,1]", b, device=device, provenance={
        "weights": {DIFFUSION: ru.sha256, ESTIMATOR: re_.sha256}, "container": "torch state dicts (.pth)",
        "params": sizes, "unet_config": cfg, "start": int(start), "eta": float(eta),
        "respacing": f"ddim{int(respacing)}", "schedule": f"linear {BETA_START}-{BETA_END}, {TRAIN_STEPS} steps",
        "seed_rule": f"per image: sha256(8-bit input)[:15] ^ {NOISE_SALT:#x}, CPU generator; diffusion noise, "
                     "then one draw per DDIM step"})


register("difface", Card(
    "DifFace (official weights): SwinIR estimate diffused to step 100 of 250, DDIM back (eta 0.5); 512 px in and "
    "out (SCGAN protocol: 16 -> bicubic 512 -> area 64); CUDA by default",
    "Yue and Loy, TPAMI 2024", LICENSE, "difface.md", (DIFFUSION, ESTIMATOR)),
    create, availability,
    options=(("start", START_STEP, "the step the estimate is diffused to (N; 100 as released)"),
             ("eta", ETA, "DDIM eta (0.5 as released)"),
             ("respacing", RESPACING, "DDIM steps over the 1000-step process (250 as released)"),
             ("bridge", "bicubic", "16->512: bicubic (Pillow) or official (torch bicubic, antialiased, in float)"),
             ("allow_cpu", False, "run without a GPU (7.1-7.4 min per face on 2 CPU cores)"),
             ("any_config", False, "accept another configuration of the networks (recorded)"),
             ("weights", "", "explicit diffusion-model file (still sha256-checked)"),
             ("estimator", "", "explicit estimator (SwinIR) file (still sha256-checked)")))
