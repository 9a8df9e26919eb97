"""Real-ESRGAN (RealESRGAN_x4plus) as an SR method: native x4 from 16 px, fp32. Card: realesrgan.md."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # imported where used: registering and listing need none of it
    import torch

from scgan_bench.assets.requirements import needs
from scgan_bench.assets.weights import Asset, WeightsError, register_asset

from .adapter import Card, PretrainedSR, register
from .loading import Container, check_keys, check_official_size, expect_family, read_official, spandrel_build

ASSET = "realesrgan-x4plus"
PARAMS = 16_697_987  # RRDBNet(num_feat=64, num_block=23, num_grow_ch=32, scale=4)
CONTAINER = Container(("params_ema", "params"), label="{'params_ema': RRDBNet state dict} (BasicSR release)")

register_asset(Asset(
    ASSET, "RealESRGAN_x4plus.pth",
    "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
    used_by="realesrgan (RRDBNet x4)", license="BSD-3-Clause",
    sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1", size=67_040_989,
    caches=("scgan-bench", "torch-hub"),
    source_note="sha256 pinned by OpenModelDB and 2 other repositories; the release page publishes none"))


def rrdb_shapes(sd: Mapping[str, Any], blocks: int) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in BasicSR's RRDBNet at the file's own width (``nf`` from ``conv_first``,
    ``gc`` from the first dense block's first conv; the release's 64 / 32 when they cannot be read)."""
    def out_channels(key: str, default: int) -> int:
        t = sd.get(key)
        return int(t.shape[0]) if getattr(t, "ndim", 0) == 4 else default

    nf, gc = out_channels("conv_first.weight", 64), out_channels("body.0.rdb1.conv1.weight", 32)
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int) -> None:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin, 3, 3), (cout,)

    conv("conv_first", 3, nf)
    for i in range(blocks):
        for r in (1, 2, 3):
            for c in range(1, 6):
                conv(f"body.{i}.rdb{r}.conv{c}", nf + (c - 1) * gc, gc if c < 5 else nf)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        conv(name, nf, nf)
    conv("conv_last", nf, 3)
    return shapes


def load_network(sd: dict[str, torch.Tensor], path: Path | str, any_config: bool = False) -> tuple[torch.nn.Module, int]:
    """RRDBNet from a state dict in the official layout, through spandrel's ESRGAN architecture
    (which converts the keys to its own layout); keys are checked strictly here first, because
    spandrel's conversion drops unknown keys silently."""
    what = "realesrgan"
    expect_family(sd, "realesrgan", path, what)
    blocks = len({k.split(".")[1] for k in sd if k.startswith("body.")})
    check_keys(rrdb_shapes(sd, blocks), sd, path, what)  # in the release's names (spandrel renames them)
    net = spandrel_build(sd, "ESRGAN", path, what, lambda: rrdb_shapes(sd, blocks))
    if net.spandrel_scale != 4:
        raise WeightsError(f"{what}: {path} is an x{net.spandrel_scale} RRDBNet, not x4")
    return net, check_official_size(net, PARAMS, path, what, any_config)


def _forward(net, x, keys):
    return net(x)


def create(device: str = "cpu", any_config: bool = False, weights: str = "") -> PretrainedSR:
    sd, r = read_official(ASSET, CONTAINER, "realesrgan", Path(weights) if weights else None)
    net, n = load_network(sd, r.path, any_config)
    return PretrainedSR("realesrgan", net, _forward, "[0,1]", None, device=device, provenance={
        "weights": {ASSET: r.sha256}, "container": CONTAINER.label, "params": n, "precision": "fp32",
        "pre_pad": 0, "tiling": "none"})


register("realesrgan", Card(
    "Real-ESRGAN x4plus (official weights), native 16 -> 64 px, fp32", "Wang et al., ICCVW 2021",
    "BSD-3-Clause (code and weights)", "realesrgan.md", (ASSET,)),
    create, needs(modules=(("spandrel", "pip install spandrel"),), weights=(ASSET,)),
    options=(("any_config", False, "accept an RRDBNet of another size (recorded in the fingerprint)"),
             ("weights", "", "explicit weight file (still sha256-checked)")))
