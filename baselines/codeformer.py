"""CodeFormer as an SR method (beyond the paper): 16 -> bicubic 512 -> CodeFormer(w) -> area 64. Card:
codeformer.md. The network is spandrel-extra-arches' CodeFormer class; it is called as
inference_codeformer.py calls it (512 px RGB in [-1, 1], fidelity weight ``w``, first output clamped to
[-1, 1]). spandrel names the fidelity argument ``weight`` (its ``w=`` is swallowed by ``**kwargs``), so
``weight=`` is passed here.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: registering and listing need none of it
    import torch
    from torch import nn

from scgan_bench.errors import UsageError
from scgan_bench.assets.requirements import needs
from scgan_bench.assets.weights import Asset, register_asset

from .adapter import Card, PretrainedSR, register
from .bridge import Bridge
from .loading import (Container, check_official_size, expect_family, load_strict, meta_shapes, read_official,
                      spandrel_build)

ASSET = "codeformer"
PARAMS = 94_112_707
LICENSE = "NTU S-Lab License 1.0 (NON-COMMERCIAL; code and weights)"
CONTAINER = Container(("params_ema",), label="{'params_ema': state dict} (inference_codeformer.py reads that key)")

register_asset(Asset(
    ASSET, "codeformer.pth", "https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth",
    used_by="codeformer", license=LICENSE,
    sha256="1009e537e0c2a07d4cabce6355f53cb66767cd4b4297ec7a4a64ca4b8a5684b7", size=376_637_898,
    caches=("scgan-bench", "torch-hub"), source_note="sha256 pinned by at least 8 third-party repositories"))


def _extra_arches() -> None:
    import spandrel
    import spandrel_extra_arches

    if "CodeFormer" not in {a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures()}:
        spandrel_extra_arches.install()


def expected_shapes(sd: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """CodeFormer's layout at the file's own size where its tensors tell it (codebook entries, embedding
    width, transformer layers; the release's 1024 / 512 / 9 otherwise), 8 heads as released."""
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    def dim(key: str, axis: int, default: int) -> int:
        t = sd.get(key)
        return int(t.shape[axis]) if getattr(t, "ndim", 0) > axis else default

    layers = len({k.split(".")[1] for k in sd if k.startswith("ft_layers.")}) or 9
    return meta_shapes(lambda: CodeFormer(dim_embd=dim("position_emb", 1, 512), n_head=8, n_layers=layers,
                                          codebook_size=dim("quantize.embedding.weight", 0, 1024)))


def load_network(sd: dict[str, torch.Tensor], path: Path | str, any_config: bool = False) -> tuple[nn.Module, int]:
    """CodeFormer through spandrel(-extra-arches), whose loader reads the configuration from the
    tensors; keys are checked strictly against the network it builds."""
    _extra_arches()
    expect_family(sd, "codeformer", path, "codeformer")
    net = load_strict(spandrel_build(sd, "CodeFormer", path, "codeformer", lambda: expected_shapes(sd)), sd, path,
                      "codeformer")
    return net, check_official_size(net, PARAMS, path, "codeformer", any_config)


def make_forward(w: float):
    def forward(net: nn.Module, x: torch.Tensor, keys) -> torch.Tensor:
        return net(x, weight=w, adain=True)[0]

    return forward


def create(device: str = "cpu", w: float = 0.5, bridge: str = "bicubic", any_config: bool = False,
           weights: str = "") -> PretrainedSR:
    if not 0.0 <= w <= 1.0:
        raise UsageError(f"codeformer: fidelity weight w={w} must lie in [0, 1] (0: quality, 1: fidelity)")
    sd, r = read_official(ASSET, CONTAINER, "codeformer", Path(weights) if weights else None)
    net, n = load_network(sd, r.path, any_config)
    b = Bridge(512, bridge, "cv2-linear", "inference_codeformer.py --has_aligned: cv2 INTER_LINEAR to 512")
    return PretrainedSR("codeformer", net, make_forward(float(w)), "[-1,1]", b, device=device, provenance={
        "weights": {ASSET: r.sha256}, "container": CONTAINER.label, "params": n, "w": float(w), "adain": True,
        "grey_input_rule": "not applied (the aligned script greys the output of grey inputs)"})


register("codeformer", Card(
    "CodeFormer (official weights), fidelity w = 0.5 by default; 16 -> bicubic 512 -> area 64",
    "Zhou et al., NeurIPS 2022", LICENSE, "codeformer.md", (ASSET,)),
    create, needs(modules=(("spandrel_extra_arches", "pip install spandrel-extra-arches"),), weights=(ASSET,)),
    options=(("w", 0.5, "fidelity weight in [0, 1] (inference_codeformer.py -w; 0.5 is its default)"),
             ("bridge", "bicubic", "16->512: bicubic (Pillow) or official (cv2 INTER_LINEAR)"),
             ("any_config", False, "accept another configuration of the architecture (recorded)"),
             ("weights", "", "explicit weight file (still sha256-checked)")))
