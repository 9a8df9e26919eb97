"""LRGAN's released Low-to-High generator (``model.pkl`` of jingyang2017/Face-and-Image-super-resolution)
as an SR method: native 16 -> 64 px, RGB in [-1, 1], BatchNorm in eval mode. Card: lrgan.md.

The network (:mod:`.lrgan_arch`) is the official ``GEN_DEEP`` with the official module names (so the raw state dict loads
strictly): pre-activation residual blocks with BatchNorm, 12 at 16 px (identity skip around the group),
bilinear x2 + BN + ReLU + 1x1 transposed conv, 3 blocks to 128 channels with a 1x1 projection skip
(``a1``), the same up-sampling, then conv3x3 128->96, ReLU, 1x1, ReLU, 1x1 -> 3, tanh. ``a2`` is built but
unused, as released. Unlike SCGAN's R_LS (its BatchNorm-free fork), the blocks' ReLU acts on the BN
output, so the block input itself is never rectified.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: registering and listing need none of it
    import torch
    from torch import nn

from scgan_bench.assets.requirements import needs
from scgan_bench.assets.weights import Asset, register_asset

from .adapter import Card, PretrainedSR, register
from .loading import Container, expect_family, load_strict, read_official

ASSET = "lrgan-released"
PARAMS = 15_490_403
GIT_BLOB = "f55203fc9213e6f6824c1bf0a728f912814f9542"
CONTAINER = Container((), ("module.",), "raw GEN_DEEP state dict (torch.save of PyTorch 0.4.1, legacy format)")

register_asset(Asset(
    ASSET, "lrgan-model.pkl", "https://github.com/jingyang2017/Face-and-Image-super-resolution/raw/master/model.pkl",
    used_by="lrgan (the released Low-to-High generator)", license="MIT", git_blob=GIT_BLOB, caches=("scgan-bench",),
    source_note="the repository's model.pkl, saved as lrgan-model.pkl; verified by its published git blob id, "
                "then its sha256 is recorded on first use"))


def load_network(sd: dict[str, torch.Tensor], path: Path | str) -> nn.Module:
    """Strict load; BatchNorm's ``num_batches_tracked`` counters (unused in eval) may be absent."""
    from .lrgan_arch import LRGANGenerator

    expect_family(sd, "lrgan", path, "lrgan")
    net = LRGANGenerator()
    counters = [k for k in net.state_dict() if k.endswith("num_batches_tracked")]
    return load_strict(net, sd, path, "lrgan", allow_missing=counters)


def make_forward(minmax: bool):
    def forward(net: nn.Module, x: torch.Tensor, keys) -> torch.Tensor:
        y = net(x)
        if not minmax:
            return y
        # the released script saves with save_image(normalize=True): each image stretched to [-1, 1] here
        lo, hi = y.amin(dim=(1, 2, 3), keepdim=True), y.amax(dim=(1, 2, 3), keepdim=True)
        return (y - lo) / (hi - lo).clamp_min(1e-12) * 2 - 1

    return forward


def create(device: str = "cpu", minmax: bool = False, weights: str = "") -> PretrainedSR:
    sd, r = read_official(ASSET, CONTAINER, "lrgan", Path(weights) if weights else None)
    net = load_network(sd, r.path)
    return PretrainedSR("lrgan", net, make_forward(minmax), "[-1,1]", None, device=device, provenance={
        "weights": {ASSET: r.sha256}, "container": CONTAINER.label, "params": PARAMS, "channel_order": "rgb",
        "batchnorm": "eval (running statistics)", "minmax": minmax})


register("lrgan", Card(
    "LRGAN (Bulat et al.): the released Low-to-High generator model.pkl, native 16 -> 64 px",
    "Bulat, Yang, Tzimiropoulos, ECCV 2018", "MIT (code and model.pkl)", "lrgan.md", (ASSET,)),
    create, needs(weights=(ASSET,)),
    options=(("minmax", False, "per-image min-max output stretch, as the released test script saves"),
             ("weights", "", "explicit weight file (still verified)")))
