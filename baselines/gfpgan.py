"""GFPGAN v1 (paper model), v1.3 (default ``gfpgan``) and v1.4 as SR methods. Card: gfpgan.md.

* v1: :mod:`.gfpganv1_arch` (pure PyTorch here; spandrel detects v1 files but cannot load them);
* v1.3 / v1.4: spandrel's ``GFPGANv1Clean`` class.

Both are called as GFPGANer calls them: 512 px RGB in [-1, 1], ``return_rgb=False``, the first output
clamped to [-1, 1]. GFPGANer draws fresh decoder noise on every call (``randomize_noise=True``); here the
noise is drawn per image from a generator seeded by the image's pixels (``noise=seeded``, the default:
same distribution as the official script, the same output on every run and in every batch), or the
noise maps stored in the file are used for every image (``noise=stored``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # imported where used: registering and listing need none of it
    import torch
    from torch import nn

from scgan_bench.errors import UsageError
from scgan_bench.assets.requirements import needs
from scgan_bench.assets.weights import Asset, WeightsError, register_asset

from .adapter import Card, PretrainedSR, image_generator, register
from .bridge import Bridge
from .loading import Container, check_official_size, expect_family, load_strict, read_official

CONTAINER = Container(("params_ema", "params"), label="{'params_ema' or 'params': state dict} (GFPGANer's order)")
NOISE_MODES = ("seeded", "stored")
NOISE_SALT = 0x5C6A7  # fixed: part of the method's definition (in the fingerprint)
LICENSE = "Apache-2.0 (code and weights; Tencent, with BasicSR / StyleGAN2 components)"


@dataclass(frozen=True)
class Version:
    method: str
    asset: str
    filename: str
    url: str
    sha256: str | None
    params: int
    family: str
    note: str


VERSIONS = {
    "gfpgan-v1": Version("gfpgan-v1", "gfpgan-v1", "GFPGANv1.pth",
                         "https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/GFPGANv1.pth", None,
                         76_207_244, "gfpgan-v1", "no sha256 is published anywhere: trust on first use"),
    "gfpgan-v1.3": Version("gfpgan-v1.3", "gfpgan-v1.3", "GFPGANv1.3.pth",
                           "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.3.pth",
                           "c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70", 86_444_252,
                           "gfpgan-clean", "sha256 pinned by at least 3 third-party repositories"),
    "gfpgan-v1.4": Version("gfpgan-v1.4", "gfpgan-v1.4", "GFPGANv1.4.pth",
                           "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",
                           "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad", 86_444_252,
                           "gfpgan-clean", "sha256 pinned by at least 6 third-party repositories (incl. the AUR "
                                           "python-gfpgan package); also served under .../v1.3.4/"),
}

for _v in VERSIONS.values():
    register_asset(Asset(_v.asset, _v.filename, _v.url, used_by=_v.method, license=LICENSE, sha256=_v.sha256,
                         caches=("scgan-bench", "torch-hub"), source_note=_v.note))


def clean_config(sd: dict[str, torch.Tensor]) -> dict[str, object]:
    """GFPGANv1Clean constructor arguments read from a state dict's shapes (the official files give
    out_size 512, channel_multiplier 2, narrow 1, num_mlp 8, sft_half, different_w)."""
    n_down = len({k.split(".")[1] for k in sd if k.startswith("conv_body_down.")})
    out_size = 2 ** (n_down + 2)
    style = int(sd["stylegan_decoder.style_conv1.modulated_conv.modulation.weight"].shape[1])
    narrow = sd["stylegan_decoder.constant_input.weight"].shape[1] / 512
    last = sd[f"stylegan_decoder.to_rgbs.{n_down - 1}.modulated_conv.weight"].shape[2]
    mult = max(1, round(last / (narrow * 16384 / out_size))) if out_size >= 64 else 1
    num_mlp = len({k.split(".")[2] for k in sd if k.startswith("stylegan_decoder.style_mlp.")})
    sft_half = sd["condition_scale.0.2.weight"].shape[0] == sd["condition_scale.0.0.weight"].shape[0]
    different_w = sd["final_linear.weight"].shape[0] == (int(math.log2(out_size)) * 2 - 2) * style
    return dict(out_size=out_size, num_style_feat=style, channel_multiplier=mult, decoder_load_path=None,
                fix_decoder=False, num_mlp=num_mlp, input_is_latent=True, different_w=different_w, narrow=narrow,
                sft_half=sft_half)


def load_network(method: str, sd: dict[str, torch.Tensor], path: Path | str, any_config: bool = False
                 ) -> tuple[nn.Module, int, dict]:
    """The network of ``method`` from a state dict in its official layout, loaded strictly."""
    from . import gfpganv1_arch as v1arch

    v = VERSIONS[method]
    expect_family(sd, v.family, path, method)
    try:
        if v.family == "gfpgan-v1":
            cfg = v1arch.config_from_state_dict(sd)
            net: nn.Module = v1arch.GFPGANv1(cfg)
            config = dict(cfg.__dict__)
        else:
            from spandrel.architectures.GFPGAN import GFPGAN as GFPGANv1Clean

            config = clean_config(sd)
            net = GFPGANv1Clean(**config)
    except KeyError as exc:
        raise WeightsError(f"{method}: {path} lacks {exc.args[0]!r}, which every {v.filename} holds") from None
    load_strict(net, sd, path, method)
    n = check_official_size(net, v.params, path, method, any_config)
    return net, n, config


def _noise_shapes(net: nn.Module) -> list[tuple[str, torch.Tensor]]:
    dec = net.stylegan_decoder
    return [(f"noise{i}", getattr(dec.noises, f"noise{i}")) for i in range(dec.num_layers)]


def seeded_noise(key: str, shapes: Sequence[torch.Size]) -> list[torch.Tensor]:
    """Decoder noise for one image, from a CPU generator seeded by the image's pixel hash."""
    import torch

    g = image_generator(key, NOISE_SALT)
    return [torch.randn(tuple(s), generator=g) for s in shapes]


def make_forward(v1: bool, noise: str):
    def run(net: nn.Module, x: torch.Tensor, noise_maps: list[torch.Tensor] | None) -> torch.Tensor:
        if v1:
            return net(x, noise=noise_maps)
        if noise_maps is None:
            return net(x, return_rgb=False, randomize_noise=False)[0]
        stored = _noise_shapes(net)
        try:
            for (name, _), n in zip(stored, noise_maps):
                setattr(net.stylegan_decoder.noises, name, n)
            return net(x, return_rgb=False, randomize_noise=False)[0]
        finally:
            for name, t in stored:
                setattr(net.stylegan_decoder.noises, name, t)

    def forward(net: nn.Module, x: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        import torch

        if noise == "stored":
            return run(net, x, None)
        shapes = [t.shape for _, t in _noise_shapes(net)]
        outs = [run(net, x[i:i + 1], [n.to(x) for n in seeded_noise(k, shapes)]) for i, k in enumerate(keys)]
        return torch.cat(outs)

    return forward


def factory(method: str):
    v = VERSIONS[method]

    def create(device: str = "cpu", bridge: str = "bicubic", noise: str = "seeded", any_config: bool = False,
               weights: str = "") -> PretrainedSR:
        if noise not in NOISE_MODES:
            raise UsageError(f"{method}: noise={noise!r}; allowed: {', '.join(NOISE_MODES)}")
        sd, r = read_official(v.asset, CONTAINER, method, Path(weights) if weights else None)
        net, n, config = load_network(method, sd, r.path, any_config)
        b = Bridge(int(config["out_size"]), bridge, "cv2-linear", "GFPGANer(has_aligned=True): cv2.resize to 512")
        return PretrainedSR(method, net, make_forward(v.family == "gfpgan-v1", noise), "[-1,1]", b, device=device,
                            provenance={"weights": {v.asset: r.sha256}, "container": CONTAINER.label, "params": n,
                                        "config": config, "noise": noise if noise == "stored" else
                                        f"seeded: sha256(image) ^ {NOISE_SALT:#x}", "call": "return_rgb=False, [0]"})

    return create


OPTIONS = (("bridge", "bicubic", "16->512: bicubic (Pillow) or official (cv2 INTER_LINEAR, as GFPGANer)"),
           ("noise", "seeded", "decoder noise: seeded (per image, from its pixels) or stored (the file's maps)"),
           ("any_config", False, "accept another configuration of the architecture (recorded)"),
           ("weights", "", "explicit weight file (still sha256-checked)"))

for _m, _label in (("gfpgan-v1", "GFPGAN v1 (the CVPR 2021 paper model; in-project pure-PyTorch network)"),
                   ("gfpgan-v1.3", "GFPGAN v1.3 (the CLI default when SCGAN was written)"),
                   ("gfpgan-v1.4", "GFPGAN v1.4")):
    register(_m, Card(f"{_label}, official weights, 16 -> bicubic 512 -> area 64", "Wang et al., CVPR 2021",
                      LICENSE, "gfpgan.md", (VERSIONS[_m].asset,)),
             factory(_m), needs(modules=(("spandrel", "pip install spandrel"),), weights=(VERSIONS[_m].asset,)),
             options=OPTIONS)
