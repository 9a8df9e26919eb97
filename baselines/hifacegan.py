"""HiFaceGAN (the released LIP-SPADE generator, ngf 48) as an SR method: 16 -> bicubic 512 -> network
(input [0, 1], as the official test script) -> area 64. Card: hifacegan.md."""
from __future__ import annotations

from pathlib import Path

from scgan_bench.errors import UsageError
from scgan_bench.assets.requirements import needs
from scgan_bench.assets.weights import Asset, register_asset

from .adapter import Card, PretrainedSR, register
from .bridge import Bridge
from .loading import Container, check_official_size, expect_family, load_strict, read_official

LICENSE = ("NON-COMMERCIAL research only (README: academic use only; LICENSE file GPL-3.0; SPADE-derived "
           "code CC BY-NC-SA 4.0)")
PARAMS = 72_223_660
CHECKPOINTS = ("x16", "face_renov", "face_renov_2")
CONTAINER = Container((), ("module.",), "raw state dict (util.load_network: checkpoints/<name>/latest_net_G.pth)")
URL = ("BaiduNetDisk https://pan.baidu.com/s/15_vhGQdkHIfLCRgo7xanpg (code cxp0) or YandexDisk "
       "https://yadi.sk/d/Pl_hxVZPa_PHew")


def asset_name(checkpoint: str) -> str:
    return f"hifacegan-{checkpoint}"


for _c in CHECKPOINTS:
    register_asset(Asset(
        asset_name(_c), f"hifacegan_{_c}_latest_net_G.pth",
        f"{URL}: folder {_c}/latest_net_G.pth, saved as hifacegan_{_c}_latest_net_G.pth", used_by="hifacegan",
        license=LICENSE, caches=("scgan-bench",),
        source_note="no hash is published: verified by trust-on-first-use"))


def make_forward(sn: str):
    def forward(net, x, keys):
        net.set_spectral_iteration(sn == "iterate")
        return net(x)

    return forward


def create(device: str = "cpu", checkpoint: str = "x16", bridge: str = "bicubic", sn: str = "stored",
           any_config: bool = False, weights: str = "") -> PretrainedSR:
    from . import hifacegan_arch as arch

    if checkpoint not in CHECKPOINTS:
        raise UsageError(f"hifacegan: checkpoint={checkpoint!r}; released LIP-SPADE checkpoints: "
                         f"{', '.join(CHECKPOINTS)} (x4sr is a plain SPADE generator, not supported)")
    if sn not in ("stored", "iterate"):
        raise UsageError(f"hifacegan: sn={sn!r}; allowed: stored, iterate")
    asset = asset_name(checkpoint)
    sd, r = read_official(asset, CONTAINER, "hifacegan", Path(weights) if weights else None)
    expect_family(sd, "hifacegan", r.path, "hifacegan")
    try:
        net = arch.LIPSPADEGenerator(arch.config_from_state_dict(sd))
    except KeyError as exc:
        raise UsageError(f"hifacegan: {r.path} lacks {exc.args[0]!r}, which every released checkpoint holds") from None
    load_strict(net, sd, r.path, "hifacegan")
    n = check_official_size(net, PARAMS, r.path, "hifacegan", any_config)
    b = Bridge(512, bridge, "cv2-linear", "test_nogt.py: cv2.resize to 512 (its INTER_CUBIC lands in `dst`, so "
                                          "INTER_LINEAR runs)")
    return PretrainedSR("hifacegan", net, make_forward(sn), "[0,1]", b, device=device, provenance={
        "weights": {asset: r.sha256}, "checkpoint": checkpoint, "container": CONTAINER.label, "params": n,
        "ngf": net.to_rgbs[-1].weight.shape[1], "param_free_norm": "per-sample instance norm (= official "
        "train-mode SyncBatchNorm at batch 1)", "spectral_norm": sn, "output": "tanh read as [0, 1], negatives "
        "clipped (as the official script)"})


register("hifacegan", Card(
    "HiFaceGAN (released LIP-SPADE generator, checkpoint x16 by default); 16 -> bicubic 512 -> area 64",
    "Yang et al., ACM MM 2020", LICENSE, "hifacegan.md", tuple(asset_name(c) for c in CHECKPOINTS)),
    create, lambda **options: needs(weights=() if options.get("weights") else
                                    (asset_name(options.get("checkpoint") or "x16"),))(),
    options=(("checkpoint", "x16", "released checkpoint: x16, face_renov or face_renov_2"),
             ("bridge", "bicubic", "16->512: bicubic (Pillow) or official (cv2 INTER_LINEAR, as test_nogt.py)"),
             ("sn", "stored", "spectral norm: stored u/v (eval) or iterate (one power iteration per call, as "
                              "the official train-mode call, not stored)"),
             ("any_config", False, "accept another width (recorded)"),
             ("weights", "", "explicit weight file (still verified)")))
