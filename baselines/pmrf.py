"""PMRF (Ohayon, Michaeli & Elad, ICLR 2025) as an SR method: the posterior-mean predictor (DifFace's SwinIR,
through spandrel) estimates the clean face, Gaussian noise of std 0.1 is added, and a rectified flow (an
hourglass diffusion transformer, :mod:`scgan_bench.networks.hdit`) carries that sample to a photo-realistic
face in K Euler steps (25: inference.py's default; ``steps`` option). 512 px in, 512 px out: under
``bfr-512`` the face as it is, under SCGAN's protocol 16 -> bicubic 512 -> PMRF -> area 64. Card: pmrf.md.

The release is the Hugging Face file ``ohayonguy/PMRF_blind_face_image_restoration/model.safetensors``: the
training module's state dict, ``model.*`` (the flow network) and ``mmse_model.*`` (SwinIR); both load
strictly. Entries under ``fid.`` / ``inception_score.`` (the training module's evaluation metrics, not used
for restoration) are set aside and counted in the fingerprint; any other key is refused by name.

Seeding: each image's source noise comes from a CPU generator seeded by the sha256 of its 8-bit input
pixels (xor :data:`NOISE_SALT`), so an image gets the same output on every run, batch and batch size
(inference.py seeds one global generator per run instead: its outputs depend on the batch order).
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

from .adapter import Card, PretrainedSR, gpu_only_availability, gpu_only_text, holder, image_generator, register
from .bridge import Bridge
from .difface import official_swinir, swinir_keys
from .loading import check_official_size, load_strict, spandrel_build

ASSET = "pmrf-blind-face"
#: the official model's sizes: HDiT ``ImageNet256Sp4`` (PMRF's create_arch.py) and DifFace's SwinIR ``swinir_L``
FLOW_PARAMS = 160_460_210
MMSE_PARAMS = 15_792_587
LICENSE = "MIT (PMRF code and weights); the SwinIR predictor is DifFace's (S-Lab License 1.0, non-commercial)"
STEPS = 25               # inference.py --num_flow_steps default (the README's command too)
SOURCE_NOISE_STD = 0.1   # train_pmrf.sh --source_noise_std (the checkpoint's mmse_noise_std)
NOISE_SALT = 0x504D5246  # "PMRF"
#: state-dict prefixes of the training module that hold no restoration weights
SET_ASIDE = ("fid.", "inception_score.")

register_asset(Asset(
    ASSET, "PMRF_blind_face_image_restoration.safetensors",
    "https://huggingface.co/ohayonguy/PMRF_blind_face_image_restoration/resolve/main/model.safetensors",
    used_by="pmrf", license=LICENSE, caches=("scgan-bench",),
    source_note="the Hugging Face model of PMRF's README (saved as model.safetensors there; rename it); no sha256 "
                "is published: verified by trust-on-first-use"))


def hdit_config(sd: Mapping[str, Any]) -> dict[str, Any]:
    """The flow network's configuration read from its tensors (``model.`` stripped): widths, depths,
    feed-forward and head sizes, mapping network, patch size. Every level but the innermost uses 7 x 7
    neighborhood attention, the innermost global attention (PMRF's configuration; the keys cannot tell)."""
    from scgan_bench.networks.hdit import Level

    def count(prefix: str) -> int:
        return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})

    try:
        widths = [int(sd["patch_in.proj.weight"].shape[0])]
        widths += [int(sd[f"merges.{i}.proj.weight"].shape[0]) for i in range(count("merges."))]
        depths = [count(f"down_levels.{i}.") for i in range(len(widths) - 1)] + [count("mid_level.")]

        def level_key(i: int) -> str:
            return f"down_levels.{i}.0" if i < len(widths) - 1 else "mid_level.0"

        levels = []
        for i, (w, d) in enumerate(zip(widths, depths)):
            heads = int(sd[f"{level_key(i)}.self_attn.scale"].shape[0])
            d_ff = int(sd[f"{level_key(i)}.ff.up_proj.weight"].shape[0]) // 2
            levels.append(Level(d, w, d_ff, w // heads, 7 if i < len(widths) - 1 else 0))
        mw = int(sd["time_in_proj.weight"].shape[0])
        mapping = (count("mapping.blocks."), mw, int(sd["mapping.blocks.0.up_proj.weight"].shape[0]) // 2)
        patch = round((int(sd["patch_in.proj.weight"].shape[1]) // 3) ** 0.5)
        out = int(sd["patch_out.proj.weight"].shape[0]) // (patch * patch)
    except (KeyError, IndexError, ZeroDivisionError) as exc:
        raise WeightsError(f"pmrf: the flow network's tensors do not describe an HDiT ({exc} missing or malformed)") from None
    return {"levels": tuple(levels), "mapping": mapping, "in_channels": 3, "out_channels": out,
            "patch_size": (patch, patch)}


def official_networks() -> "nn.Module":
    """PMRF at the release's sizes with fresh weights (the benchmarks time it): HDiT ``ImageNet256Sp4`` and
    DifFace's SwinIR-L (embed 180, 8 x 6 blocks, 6 heads, window 8, unshuffle 8, nearest+conv x8)."""
    from scgan_bench.networks.hdit import HDiT

    return holder(model=HDiT(), mmse_model=official_swinir())


def split_release(sd: Mapping[str, "torch.Tensor"], path: Path | str) -> tuple[dict, dict, int]:
    """(flow tensors, SwinIR tensors, number set aside) of the training module's state dict."""
    flow = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
    mmse = {k[len("mmse_model."):]: v for k, v in sd.items() if k.startswith("mmse_model.")}
    aside = [k for k in sd if k.startswith(SET_ASIDE)]
    other = sorted(k for k in sd if not k.startswith(("model.", "mmse_model.") + SET_ASIDE))
    if not flow or not mmse:
        lack = " and ".join(p for p, part in (("model.*", flow), ("mmse_model.*", mmse)) if not part)
        raise WeightsError(f"pmrf: {path} has no {lack} tensors: not PMRF's released state dict (the Hugging Face "
                           "model.safetensors of ohayonguy/PMRF_blind_face_image_restoration)")
    if other:
        raise WeightsError(f"pmrf: {path}: unexpected entries {', '.join(other[:8])}"
                           + (f" (+{len(other) - 8} more)" if len(other) > 8 else "")
                           + "; PMRF's release holds model.*, mmse_model.* (and the training metrics' fid.*, "
                             "inception_score.*)")
    return flow, mmse, len(aside)


def load_network(sd: Mapping[str, "torch.Tensor"], path: Path | str, any_config: bool = False) -> tuple["nn.Module", dict]:
    """Both networks from the release, strictly; their sizes checked against the official ones."""
    from scgan_bench.networks.hdit import HDiT

    flow_sd, mmse_sd, aside = split_release(sd, path)
    cfg = hdit_config(flow_sd)
    flow = load_strict(HDiT(**cfg), flow_sd, path, "pmrf (flow network, model.*)")
    what = "pmrf (posterior-mean predictor, mmse_model.*)"
    mmse = load_strict(spandrel_build(dict(mmse_sd), "SwinIR", path, what), swinir_keys(mmse_sd), path, what)
    sizes = {part: check_official_size(n, want, path, f"pmrf ({part} network)", any_config)
             for part, n, want in (("flow", flow, FLOW_PARAMS), ("mmse", mmse, MMSE_PARAMS))}
    net = holder(model=flow, mmse_model=mmse)
    return net, {"params": sizes, "set_aside": aside, "flow_config": {
        "widths": [lv.width for lv in cfg["levels"]], "depths": [lv.depth for lv in cfg["levels"]],
        "attention": ["neighborhood 7x7" if lv.kernel_size else "global" for lv in cfg["levels"]],
        "patch": list(cfg["patch_size"])}}


def source_noise(keys: Sequence[str], shape: tuple[int, int, int]) -> "torch.Tensor":
    """One N(0, 1) image per input, from a CPU generator seeded by that input's pixel hash."""
    import torch

    return torch.stack([torch.randn(shape, generator=image_generator(k, NOISE_SALT)) for k in keys])


def make_forward(steps: int, noise_std: float = SOURCE_NOISE_STD):
    def forward(net: "nn.Module", y: "torch.Tensor", keys: Sequence[str]) -> "torch.Tensor":
        """inference.py's generate_reconstructions: x0 = clip(SwinIR(y)) + 0.1 n; K Euler steps of
        dx/dt = v(x, t) from t = 0; clip to [0, 1]."""
        import torch

        x = net.mmse_model(y).clamp(0, 1)
        x = x + source_noise(keys, tuple(x.shape[1:])).to(x) * noise_std
        ones = torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
        dt = 1.0 / steps
        for i in range(steps):
            x = x + net.model(x, ones * (i / steps)).to(x.dtype) * dt
        return x.clamp(0, 1)

    return forward


#: one face at 512 px with the release's sizes and 25 steps, 2 cores of an AMD EPYC, float32
#: (``python benchmarks/restorer_speed.py --method pmrf``; benchmarks/results/pmrf_speed.txt)
CPU_SECONDS_PER_FACE = (144, 165)   # two runs of the benchmark


def gpu_only_reason() -> str:
    return gpu_only_text("pmrf", f"{STEPS} flow steps of a 160 M-parameter transformer over 128 x 128 tokens plus "
                         "the SwinIR pass", CPU_SECONDS_PER_FACE)


def availability(**options: Any) -> "Availability":
    return gpu_only_availability(options, ((ASSET, "weights"),), gpu_only_reason,
                                 (("spandrel", "pip install spandrel"), ("safetensors", "pip install safetensors")))


def create(device: str = "cpu", steps: int = STEPS, bridge: str = "bicubic", allow_cpu: bool = False,
           any_config: bool = False, weights: str = "") -> PretrainedSR:
    from scgan_bench.assets.safeload import safetensors_load
    from scgan_bench.assets.weights import resolve

    steps = int(steps)
    if steps < 1:
        raise UsageError(f"pmrf: steps={steps}: the flow needs at least one Euler step (the release: {STEPS})")
    if not str(device).startswith("cuda") and not allow_cpu:
        raise UsageError(f"pmrf: {gpu_only_reason()}")
    r = resolve(ASSET, Path(weights) if weights else None)
    sd, _ = safetensors_load(r.path, "pmrf")
    net, info = load_network(sd, r.path, any_config)
    b = Bridge(512, bridge, "cv2-linear", "inference.py resize(): cv2 INTER_LINEAR when enlarging")
    return PretrainedSR("pmrf", net, make_forward(steps), "[0,1]", b, device=device, provenance={
        "weights": {ASSET: r.sha256}, "container": "safetensors state dict of MMSERectifiedFlow (model.*, mmse_model.*)",
        **info, "steps": steps, "source_noise_std": SOURCE_NOISE_STD,
        "seed_rule": f"per image: sha256(8-bit input)[:15] ^ {NOISE_SALT:#x}, CPU generator"})


register("pmrf", Card(
    "PMRF (official weights): posterior-mean SwinIR + rectified flow, 25 Euler steps; 512 px in and out "
    "(SCGAN protocol: 16 -> bicubic 512 -> area 64); CUDA by default",
    "Ohayon, Michaeli and Elad, ICLR 2025", LICENSE, "pmrf.md", (ASSET,)),
    create, availability,
    options=(("steps", STEPS, "Euler steps of the flow (inference.py --num_flow_steps; 25 by default)"),
             ("bridge", "bicubic", "16->512: bicubic (Pillow) or official (cv2 INTER_LINEAR)"),
             ("allow_cpu", False, "run without a GPU (2.4-2.8 min per face on 2 CPU cores)"),
             ("any_config", False, "accept another configuration of the architecture (recorded)"),
             ("weights", "", "explicit weight file (still sha256-checked)")))
