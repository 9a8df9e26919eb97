"""DiffBIR v2 (Lin et al., ECCV 2024), face path, as an SR method: a stage-1 SwinIR (DifFace's, retrained by
DiffBIR: ``face_swinir_v1.ckpt``) removes the degradations; Stable Diffusion 2.1-base, steered by the IRControlNet
``v2.pth`` from the stage-1 image's latent, regenerates the details; a wavelet colour fix takes the low
frequencies back from the stage-1 image. 512 px in, 512 px out. Networks: :mod:`scgan_bench.networks.controlldm`.
Card: diffbir.md.

The official inference (``inference.py --task face --version v2``: ``BFRInferenceLoop`` + ``SwinIRPipeline`` +
``ControlLDM`` + ``SpacedSampler``; configs/inference/cldm.yaml, diffusion.yaml), reproduced here:

* stage 1: the 512 px face (resized to 512 on its short side when smaller: ``F.interpolate(bicubic,
  antialias=True)``) through SwinIR; its output is not clipped;
* condition: ``c_img = VAE.encode(2 * stage1 - 1).mode() * 0.18215``; text: OpenCLIP's penultimate layer on
  the positive prompt ``""`` and the negative prompt ``"low quality, blurry, low-resolution, noisy, unsharp,
  weird textures"`` (the v2 defaults);
* sampler ``spaced``, 50 steps: the 1000-step LDM schedule (betas ``linspace(sqrt 0.00085, sqrt 0.012)^2``)
  respaced by ``space_timesteps(1000, "50")`` (0, 20, 41, ..., 999), started from pure noise; per step the
  ControlLDM's epsilon for the prompt and for the negative prompt (the IRControlNet's 13 residuals times the
  strength 1.0 added to the UNet's skips and middle), combined with the guidance scale 4.0, x0 predicted
  (not clipped), the posterior mean and variance of the respaced process, noise except at the last step;
* the latent decoded, mapped to [0, 1], the wavelet colour fix against the stage-1 image (5 levels of the
  dilated 3x3 binomial blur: high frequencies of the sample + lowest band of the stage-1 image), then
  ``(x * 255).clamp(0, 255).to(uint8)``: truncated to 8-bit levels, as the official file is written.

Seeding: the start noise and every step's noise come from one CPU generator per image, seeded by the sha256 of
its 8-bit input pixels (xor :data:`NOISE_SALT`), drawn in that order (the official script seeds one global
generator: its outputs depend on the batch). Precision: float16 autocast on CUDA (``--precision fp16``, the
v2 default), float32 on the CPU; ``precision=`` changes it.
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
from .loading import check_official_size, load_strict, read_state_dict, refuse_layout

SD = "diffbir-sd21"
CONTROL = "diffbir-controlnet-v2"
CLEANER = "diffbir-face-swinir"
#: the official sizes (cldm.yaml, swinir.yaml): SD 2.1-base UNet, IRControlNet, autoencoder, OpenCLIP ViT-H/14
#: text tower (all 24 blocks; the penultimate output is used), stage-1 SwinIR
PARAMS = {"unet": 865_910_724, "controlnet": 363_153_280, "vae": 83_653_863, "text": 354_032_640,
          "cleaner": 15_792_587}
CODE_LICENSE = "Apache-2.0 (DiffBIR code)"
LICENSE = ("DiffBIR code Apache-2.0; IRControlNet and stage-1 weights released with it; Stable Diffusion 2.1 "
           "weights CreativeML Open RAIL++-M")
HF = "https://huggingface.co/"
#: the v2 face defaults (inference.py, configs/inference/diffusion.yaml, cldm.yaml)
STEPS = 50
CFG_SCALE = 4.0
STRENGTH = 1.0
POS_PROMPT = ""
NEG_PROMPT = "low quality, blurry, low-resolution, noisy, unsharp, weird textures"
LINEAR_START, LINEAR_END, TRAIN_STEPS = 0.00085, 0.0120, 1000
LATENT_SCALE = 0.18215
SIZE = 512
NOISE_SALT = 0x44424952  # "DBIR"
#: the keys of SD 2.1's file that DiffBIR's load_pretrained_sd leaves unused: LatentDiffusion's schedule
#: buffers, the EMA bookkeeping, CLIP's logit scale
SD_UNUSED = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
             "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
             "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
             "cond_stage_model.model.logit_scale")
PREFIX = {"unet": "model.diffusion_model.", "vae": "first_stage_model.", "text": "cond_stage_model.model."}

register_asset(Asset(
    SD, "v2-1_512-ema-pruned.ckpt",
    HF + "stabilityai/stable-diffusion-2-1-base/resolve/main/v2-1_512-ema-pruned.ckpt", used_by="diffbir",
    license="CreativeML Open RAIL++-M", caches=("scgan-bench",),
    source_note="Stable Diffusion 2.1-base (512 px, EMA, pruned), MODELS['sd_v2.1'] of DiffBIR's "
                "pretrained_models.py (about 5.2 GB; the .safetensors export is read too); no sha256 is "
                "published with DiffBIR: verified by trust-on-first-use"))
register_asset(Asset(
    CONTROL, "v2.pth", HF + "lxq007/DiffBIR-v2/resolve/main/v2.pth", used_by="diffbir", license=CODE_LICENSE,
    caches=("scgan-bench",),
    source_note="DiffBIR v2's IRControlNet (shared by all v2 tasks), MODELS['v2']; no sha256 is published: "
                "verified by trust-on-first-use"))
register_asset(Asset(
    CLEANER, "face_swinir_v1.ckpt", HF + "lxq007/DiffBIR/resolve/main/face_swinir_v1.ckpt", used_by="diffbir",
    license=CODE_LICENSE, caches=("scgan-bench",),
    source_note="DiffBIR's stage-1 face model (DifFace's SwinIR), MODELS['swinir_face']; no sha256 is "
                "published: verified by trust-on-first-use"))


def split_sd(sd: Mapping[str, "torch.Tensor"], path: Path | str) -> dict[str, dict]:
    """SD 2.1's file split into its UNet, autoencoder and text tower (prefixes removed); any key outside them
    but the ones DiffBIR leaves unused (:data:`SD_UNUSED`, ``model_ema.*``) is refused, named."""
    what = "diffbir (Stable Diffusion 2.1)"
    if "input_blocks.0.0.weight" in sd and "zero_convs.0.0.weight" in sd:
        raise WeightsError(f"{what}: {path} holds the IRControlNet, not Stable Diffusion: the files are swapped "
                           "(sd= is v2-1_512-ema-pruned.ckpt, weights= v2.pth)")
    parts: dict[str, dict] = {name: {} for name in PREFIX}
    left = []
    for k, v in sd.items():
        name = next((n for n, p in PREFIX.items() if k.startswith(p)), None)
        if name is not None and k not in SD_UNUSED:
            parts[name][k[len(PREFIX[name]):]] = v
        elif k not in SD_UNUSED and not k.startswith("model_ema."):
            left.append(k)
    if not parts["unet"]:
        raise WeightsError(f"{what}: {path} has no model.diffusion_model.* tensors: not a Stable Diffusion "
                           "checkpoint (expected v2-1_512-ema-pruned.ckpt)")
    refuse_layout(what, path, "Stable Diffusion 2.1 (model.diffusion_model, first_stage_model, cond_stage_model)",
                  [], left)
    if "alphas_cumprod" in sd:
        import torch

        want = schedule_alphas().float()
        got = sd["alphas_cumprod"].float()
        if got.shape != want.shape or not torch.allclose(got, want, rtol=0, atol=1e-6):
            raise WeightsError(f"{what}: {path} was trained with another noise schedule (its alphas_cumprod is not "
                               f"the linear {LINEAR_START}-{LINEAR_END} schedule of 1000 steps DiffBIR v2 samples "
                               "with): another model, e.g. the zero-SNR model of DiffBIR v2.1")
    return parts


def load_networks(sd_parts: Mapping[str, Mapping], control: Mapping[str, "torch.Tensor"],
                  cleaner: Mapping[str, "torch.Tensor"], paths: Mapping[str, str]) -> tuple["nn.Module", dict]:
    """The five networks from their official tensors, each strictly (every tensor of the network from the file,
    every tensor of the file taken: a missing one is named as the release names it)."""
    from scgan_bench.networks import controlldm as C

    from .difface import swinir_keys
    from .loading import spandrel_build

    def build(name, sd, cfg_of, make, sources, layout, path):
        what = f"diffbir ({name})"
        try:
            cfg = cfg_of(sd)
        except (KeyError, ValueError, IndexError) as exc:
            raise WeightsError(f"{what}: {path}: the tensors do not describe {layout} ({exc})") from None
        net = make(cfg)
        own = net.state_dict()
        taken = C.take(sd, sources(list(own), cfg), own)
        refuse_layout(what, path, layout, taken.missing, set(sd) - taken.used)
        return load_strict(net, taken.mapped, path, what), cfg

    if "zero_convs.0.0.weight" not in control:
        swapped = any(k.startswith("model.diffusion_model.") for k in control)
        raise WeightsError(f"diffbir (IRControlNet): {paths['control']} has no zero_convs: not DiffBIR's IRControlNet "
                           "(expected v2.pth" + ("; it holds Stable Diffusion: the files are swapped)" if swapped
                                                 else ")"))
    unet, ucfg = build("UNet", sd_parts["unet"], C.unet_config_from_state_dict, C.build_unet, C.unet_sources,
                       "SD 2.1's UNetModel", paths["sd"])
    ctrl, ccfg = build("IRControlNet", control, C.unet_config_from_state_dict, C.IRControlNet, C.controlnet_sources,
                       "DiffBIR's ControlNet", paths["control"])
    vae, vcfg = build("autoencoder", sd_parts["vae"], C.vae_config_from_state_dict, C.build_vae, C.vae_sources,
                      "SD 2.1's AutoencoderKL", paths["sd"])
    text, tcfg = build("text encoder", sd_parts["text"], C.text_config_from_state_dict, C.build_text,
                       lambda keys, cfg: {k: k for k in keys}, "OpenCLIP's text tower", paths["sd"])
    if ccfg.context_dim != ucfg.context_dim or tcfg.width != ucfg.context_dim:
        raise WeightsError(f"diffbir: {paths['control']} / {paths['sd']}: text width {tcfg.width}, UNet context "
                           f"{ucfg.context_dim}, IRControlNet context {ccfg.context_dim}: the files do not belong "
                           "together")
    what = "diffbir (stage-1 SwinIR)"
    if "input_blocks.0.0.weight" in cleaner or "model.diffusion_model.input_blocks.0.0.weight" in cleaner:
        raise WeightsError(f"{what}: {paths['cleaner']} holds a diffusion network, not the stage-1 SwinIR "
                           "(cleaner= is face_swinir_v1.ckpt)")
    swin = load_strict(spandrel_build(dict(cleaner), "SwinIR", paths["cleaner"], what), swinir_keys(cleaner),
                       paths["cleaner"], what)
    net = holder(cleaner=swin, unet=unet, controlnet=ctrl, vae=vae, text=text)
    config = {"unet": {"model_channels": ucfg.model_channels, "channel_mult": list(ucfg.channel_mult),
                       "num_res_blocks": ucfg.num_res_blocks, "attention_levels": list(ucfg.attention_levels)},
              "vae": {"ch": vcfg.ch, "ch_mult": list(vcfg.ch_mult)},
              "text": {"width": tcfg.width, "layers": tcfg.layers}}
    return net, config


def official_networks() -> "nn.Module":
    """DiffBIR v2's face networks at the release's sizes with fresh weights (the benchmarks time them)."""
    from scgan_bench.networks import controlldm as C

    from .difface import official_swinir

    return holder(cleaner=official_swinir(), unet=C.build_unet(), controlnet=C.IRControlNet(), vae=C.build_vae(),
                  text=C.build_text())


def schedule_alphas() -> "torch.Tensor":
    """The training schedule's cumulative alphas (float64): LDM's "linear" betas, ``linspace(sqrt(start),
    sqrt(end), 1000) ** 2``."""
    import torch

    betas = torch.linspace(LINEAR_START ** 0.5, LINEAR_END ** 0.5, TRAIN_STEPS, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


def space_timesteps(num_timesteps: int, count: int) -> list[int]:
    """guided-diffusion's ``space_timesteps(T, str(count))`` for one section: ``count`` steps evenly rounded
    over [0, T - 1]."""
    if not 1 <= count <= num_timesteps:
        raise UsageError(f"diffbir: steps={count}: must be in [1, {num_timesteps}]")
    stride = 1 if count <= 1 else (num_timesteps - 1) / (count - 1)
    return sorted({round(i * stride) for i in range(count)})


def spaced_schedule(steps: int) -> dict[str, "torch.Tensor"]:
    """SpacedSampler.make_schedule in float64, stored float32 as the official sampler registers its buffers:
    the kept steps and, per respaced step, the x0 and posterior coefficients."""
    import torch

    kept = space_timesteps(TRAIN_STEPS, steps)
    abar = schedule_alphas()[kept]
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    betas = 1 - abar / abar_prev
    f = {"sqrt_recip": (1 / abar).sqrt(), "sqrt_recipm1": (1 / abar - 1).sqrt(),
         "variance": betas * (1 - abar_prev) / (1 - abar),
         "coef1": betas * abar_prev.sqrt() / (1 - abar), "coef2": (1 - abar_prev) * (1 - betas).sqrt() / (1 - abar)}
    out = {k: v.float() for k, v in f.items()}
    out["timesteps"] = torch.tensor(kept)
    return out


def wavelet_blur(x: "torch.Tensor", radius: int) -> "torch.Tensor":
    """The 3x3 binomial kernel (1 2 1)^2 / 16, dilated by ``radius``, per channel, replicate padding."""
    import torch
    from torch.nn import functional as F

    k = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    kernel = (k[:, None] * k[None, :] / 16).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(x, (radius,) * 4, mode="replicate"), kernel, groups=x.shape[1], dilation=radius)


def wavelet_colour_fix(content: "torch.Tensor", style: "torch.Tensor", levels: int = 5) -> "torch.Tensor":
    """``wavelet_reconstruction``: the high frequencies of ``content`` (summed over ``levels`` bands of radius
    1, 2, 4, ...) plus the lowest band of ``style``."""
    import torch

    def split(x):
        high = torch.zeros_like(x)
        for i in range(levels):
            low = wavelet_blur(x, 2 ** i)
            high = high + (x - low)
            x = low
        return high, x

    return split(content)[0] + split(style)[1]


def make_forward(steps: int = STEPS, cfg_scale: float = CFG_SCALE, strength: float = STRENGTH,
                 pos_prompt: str = POS_PROMPT, neg_prompt: str = NEG_PROMPT, size: int = SIZE,
                 precision: str = "fp32"):
    """The pipeline as an adapter forward (see the module docstring); ``size`` is the stage-1 size (512 as
    released; the tests run reduced networks at less)."""
    from contextlib import nullcontext

    import torch

    sched = spaced_schedule(int(steps))
    kept = sched["timesteps"].tolist()
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, "bad")
    if dtype == "bad":
        raise UsageError(f"diffbir: precision={precision}: one of fp32, fp16, bf16")
    prompts = [pos_prompt] if cfg_scale == 1.0 else [pos_prompt, neg_prompt]
    cache: dict[tuple, torch.Tensor] = {}

    def contexts(net: "nn.Module", like: torch.Tensor) -> torch.Tensor:
        from scgan_bench.networks.controlldm import encode_text, tokenize

        key = (like.device, id(net.text))
        if key not in cache:
            cache[key] = encode_text(net.text, tokenize(prompts).to(like.device))
        return cache[key]

    def eps(net, x, t, c_img, ctx):
        n = x.shape[0]
        xs = x.repeat(len(prompts), 1, 1, 1)
        tt = torch.full((xs.shape[0],), t, device=x.device, dtype=torch.long)
        c = ctx.repeat_interleave(n, dim=0)
        down, mid = net.controlnet(xs, c_img.repeat(len(prompts), 1, 1, 1), tt, c)
        out = net.unet(xs, tt, encoder_hidden_states=c, down_block_additional_residuals=[d * strength for d in down],
                       mid_block_additional_residual=mid * strength).sample.float()
        if len(prompts) == 1:
            return out
        e_pos, e_neg = out[:n], out[n:]
        return e_neg + cfg_scale * (e_pos - e_neg)

    def forward(net: "nn.Module", y: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        from torch.nn import functional as F

        if min(y.shape[-2:]) < size:
            y = F.interpolate(y, size=(size, size), mode="bicubic", antialias=True)
        with torch.autocast(y.device.type, dtype=dtype) if dtype is not None else nullcontext():
            stage1 = net.cleaner(y).float()
            c_img = net.vae.encode(stage1 * 2 - 1).latent_dist.mode().float() * LATENT_SCALE
            ctx = contexts(net, y)
            noise = NoiseStreams(keys, tuple(c_img.shape[1:]), NOISE_SALT)
            x = noise.draw(c_img)
            for j, t in enumerate(reversed(kept)):
                i = len(kept) - 1 - j
                e = eps(net, x, t, c_img, ctx)
                x0 = sched["sqrt_recip"][i].item() * x - sched["sqrt_recipm1"][i].item() * e
                mean = sched["coef1"][i].item() * x0 + sched["coef2"][i].item() * x
                z = noise.draw(x)
                x = mean + sched["variance"][i].sqrt().item() * z if i else mean
            sample = net.vae.decode(x / LATENT_SCALE).sample.float()
        out = wavelet_colour_fix((sample + 1) / 2, stage1)
        return torch.floor((out * 255).clamp(0, 255)) / 255       # .to(torch.uint8): truncation

    return forward


#: one face at 512 px with the release's sizes (50 steps, each the ControlLDM on both prompts), 2 cores of an AMD
#: EPYC, float32 (``python benchmarks/restorer_speed.py --method diffbir``; benchmarks/results/diffbir_speed.txt)
CPU_SECONDS_PER_FACE = (573, 595)   # two runs of the benchmark


def gpu_only_reason() -> str:
    return gpu_only_text("diffbir", f"{STEPS} guided steps of SD 2.1's 866 M-parameter UNet with the 363 M-parameter "
                         "IRControlNet", CPU_SECONDS_PER_FACE)


def availability(**options: Any) -> "Availability":
    return gpu_only_availability(options, ((CONTROL, "weights"), (SD, "sd"), (CLEANER, "cleaner")), gpu_only_reason,
                                 (("spandrel", "pip install spandrel"), ("diffusers", "pip install diffusers"),
                                  ("open_clip", "pip install open_clip_torch")))


def create(device: str = "cpu", steps: int = STEPS, cfg_scale: float = CFG_SCALE, strength: float = STRENGTH,
           pos_prompt: str = POS_PROMPT, neg_prompt: str = NEG_PROMPT, precision: str = "", bridge: str = "bicubic",
           allow_cpu: bool = False, any_config: bool = False, weights: str = "", sd: str = "",
           cleaner: str = "") -> PretrainedSR:
    from scgan_bench.assets.weights import resolve

    cuda = str(device).startswith("cuda")
    precision = precision or ("fp16" if cuda else "fp32")
    forward = make_forward(int(steps), float(cfg_scale), float(strength), str(pos_prompt), str(neg_prompt),
                           precision=precision)
    if not cuda and not allow_cpu:
        raise UsageError(f"diffbir: {gpu_only_reason()}")
    r = {name: resolve(asset, Path(opt) if opt else None)
         for name, asset, opt in (("control", CONTROL, weights), ("sd", SD, sd), ("cleaner", CLEANER, cleaner))}
    paths = {k: str(v.path) for k, v in r.items()}
    parts = split_sd(read_state_dict(r["sd"].path, "diffbir (Stable Diffusion 2.1)"), r["sd"].path)
    net, config = load_networks(parts, read_state_dict(r["control"].path, "diffbir (IRControlNet)"),
                                read_state_dict(r["cleaner"].path, "diffbir (stage-1 SwinIR)"), paths)
    del parts
    sizes = {part: check_official_size(getattr(net, part), want, " / ".join(paths.values()), f"diffbir ({part})",
                                       any_config) for part, want in PARAMS.items()}
    b = Bridge(SIZE, bridge, "torch-bicubic-aa", "pipeline.py resize_short_edge_to: F.interpolate(bicubic, "
               "antialias=True) in float")
    return PretrainedSR("diffbir", net, forward, "[0,1]", b, device=device, provenance={
        "weights": {SD: r["sd"].sha256, CONTROL: r["control"].sha256, CLEANER: r["cleaner"].sha256},
        "container": "Lightning checkpoint / state dicts", "params": sizes, "config": config, "version": "v2",
        "sampler": f"spaced, {int(steps)} steps of LDM's linear {LINEAR_START}-{LINEAR_END} schedule, from noise",
        "cfg_scale": float(cfg_scale), "strength": float(strength), "pos_prompt": str(pos_prompt),
        "neg_prompt": str(neg_prompt), "precision": precision, "colour_fix": "wavelet (5 levels)",
        "output": "truncated to 8-bit levels at 512 px",
        "seed_rule": f"per image: sha256(8-bit input)[:15] ^ {NOISE_SALT:#x}, CPU generator; start noise, then one "
                     "draw per step"})


register("diffbir", Card(
    "DiffBIR v2, face path (official weights): stage-1 SwinIR, then SD 2.1 + IRControlNet, 50 spaced steps, "
    "guidance 4.0, wavelet colour fix; 512 px in and out (SCGAN protocol: 16 -> bicubic 512 -> area 64); CUDA by "
    "default", "Lin et al., ECCV 2024", LICENSE, "diffbir.md", (CONTROL, SD, CLEANER)),
    create, availability,
    options=(("steps", STEPS, "sampling steps of the spaced sampler (50 as released)"),
             ("cfg_scale", CFG_SCALE, "classifier-free guidance scale (4.0 as released; 1.0: no negative prompt)"),
             ("strength", STRENGTH, "control strength of the IRControlNet (1.0 as released)"),
             ("pos_prompt", POS_PROMPT, "positive prompt (empty as released)"),
             ("neg_prompt", NEG_PROMPT, "negative prompt (the release's default)"),
             ("precision", "", "fp16 (CUDA default, as released), bf16 or fp32 (the CPU default)"),
             ("bridge", "bicubic", "16->512: bicubic (Pillow) or official (torch bicubic, antialiased, in float)"),
             ("allow_cpu", False, "run without a GPU (9.6-9.9 min per face on 2 CPU cores)"),
             ("any_config", False, "accept another configuration of the networks (recorded)"),
             ("weights", "", "explicit IRControlNet file (v2.pth; still sha256-checked)"),
             ("sd", "", "explicit Stable Diffusion 2.1-base file (.ckpt or .safetensors; still sha256-checked)"),
             ("cleaner", "", "explicit stage-1 SwinIR file (face_swinir_v1.ckpt; still sha256-checked)")))
