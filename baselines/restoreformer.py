"""RestoreFormer and RestoreFormer++ as SR methods (beyond the paper): 16 -> bicubic 512 -> network -> area
64. Card: restoreformer.md.

* ``restoreformer``: spandrel's RestoreFormer class, from either released layout — ``RestoreFormer.pth``
  (GFPGAN's v1.3.4 release, ``params_ema``/``params``) or ``RestoreFormer.ckpt`` (the RF++ repository's
  Lightning checkpoint: ``state_dict`` with a ``vqvae.`` prefix). The first one found is used; its sha256
  and layout are in the fingerprint.
* ``restoreformer++``: the in-project :mod:`.restoreformer_arch` (spandrel cannot load RF++).

Lightning checkpoints also hold training-only modules (e.g. ``loss.*``); the official loader drops them
with ``strict=False``. Here only the ``vqvae.`` part is taken, loaded strictly, with one explicit
allow-list entry (``quantize.utility_counter``, a training statistic some checkpoints carry).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # imported where used: registering and listing need none of it
    import torch
    from torch import nn

from scgan_bench.interfaces import Availability
from scgan_bench.assets.requirements import needs
from scgan_bench.assets.weights import Asset, WeightsError, register_asset, status

from .adapter import Card, PretrainedSR, register
from .bridge import Bridge
from .loading import (
    Container,
    StateDict,
    check_official_size,
    expect_family,
    load_strict,
    meta_shapes,
    read_official,
    spandrel_build,
)

LICENSE = "Apache-2.0 (code and weights)"
PARAMS = {"restoreformer": 72_680_003, "restoreformer++": 73_472_579}
HEADS = {"restoreformer": 8, "restoreformer++": 4}
ALLOWED_EXTRA = ("quantize.utility_counter",)
PTH = Container(("params_ema", "params"), label="{'params_ema' or 'params': state dict} (GFPGAN release)")
CKPT = Container(("state_dict",), label="Lightning checkpoint: 'state_dict' with 'vqvae.'-prefixed keys")
OFFICIAL_SCRIPT = "RestoreFormer++ inference.py --aligned: cv2.resize to 512 (INTER_LINEAR)"

LAYOUTS: dict[str, list[tuple[str, Container]]] = {
    "restoreformer": [("restoreformer-pth", PTH), ("restoreformer-ckpt", CKPT)],
    "restoreformer++": [("restoreformer++", CKPT)],
}

register_asset(Asset(
    "restoreformer-pth", "RestoreFormer.pth",
    "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/RestoreFormer.pth", used_by="restoreformer",
    license=LICENSE, sha256="07404d446d62ca3d5ed38b1de09a947a1e77d46dbccec961a74d713a8f24ace0", size=290_785_322,
    caches=("scgan-bench", "torch-hub"), source_note="sha256 pinned by the AUR PKGBUILD and 2 other repositories"))
register_asset(Asset(
    "restoreformer-ckpt", "RestoreFormer.ckpt",
    "https://github.com/wzhouxiff/RestoreFormerPlusPlus/releases/download/v1.0.0/RestoreFormer.ckpt",
    used_by="restoreformer (the RF++ repository's layout)", license=LICENSE,
    sha256="4a193c716bc27cc0533d1b9307100c671e7b584ffa3ba6648182fea4b3228dff", size=290_861_237,
    caches=("scgan-bench",), source_note="sha256 pinned by one third-party repository"))
register_asset(Asset(
    "restoreformer++", "RestoreFormer++.ckpt",
    "https://github.com/wzhouxiff/RestoreFormerPlusPlus/releases/download/v1.0.0/RestoreFormer++.ckpt",
    used_by="restoreformer++", license=LICENSE,
    sha256="613fe52805f86bf8c2bffff08ae9f7a0b99f408be1bf221767af6183038be3a2",
    caches=("scgan-bench",), source_note="sha256 pinned by one third-party repository"))


def select_vqvae(sd: StateDict) -> tuple[StateDict, int]:
    """The network part of a Lightning state dict (``vqvae.`` keys, prefix removed); returns it and how
    many training-only entries were left out. A dict without the prefix is returned as is."""
    if not any(k.startswith("vqvae.") for k in sd):
        return sd, 0
    net = {k[len("vqvae."):]: v for k, v in sd.items() if k.startswith("vqvae.")}
    return net, len(sd) - len(net)


def load_network(method: str, sd: StateDict, path: Path | str, any_config: bool = False
                 ) -> tuple[nn.Module, int, dict]:

    from . import restoreformer_arch as arch

    expect_family(sd, method, path, method)
    sd = {k: v for k, v in sd.items() if k not in ALLOWED_EXTRA}
    try:
        cfg = arch.config_from_state_dict(sd, HEADS[method])
    except KeyError as exc:
        raise WeightsError(f"{method}: {path} lacks {exc.args[0]!r}, which the released files hold") from None
    if method == "restoreformer":
        net: nn.Module = spandrel_build(sd, "RestoreFormer", path, method,
                                        lambda: meta_shapes(lambda: arch.RestoreFormerNet(cfg)))
    else:
        net = arch.RestoreFormerNet(cfg)
    load_strict(net, sd, path, method)
    n = check_official_size(net, PARAMS[method], path, method, any_config)
    return net, n, {**cfg.__dict__, "ch_mult": list(cfg.ch_mult), "decoder_attn": list(cfg.decoder_attn)}


def _forward(net: nn.Module, x: torch.Tensor, keys) -> torch.Tensor:
    out = net(x)
    return out[0] if isinstance(out, (tuple, list)) else out


def _find(method: str, layout: str) -> list[tuple[str, Container]]:
    options = LAYOUTS[method]
    if layout == "auto":
        return options
    chosen = [(a, c) for a, c in options if a.endswith(layout)]
    if not chosen:
        raise WeightsError(f"{method}: layout={layout!r}; allowed: auto, "
                           f"{', '.join(a.rsplit('-', 1)[-1] for a, _ in options)}")
    return chosen


def factory(method: str) -> Callable[..., PretrainedSR]:
    def create(device: str = "cpu", bridge: str = "bicubic", layout: str = "auto", any_config: bool = False,
               weights: str = "", input_size: int = 512) -> PretrainedSR:
        if input_size < 64 or input_size % 64:
            raise WeightsError(f"{method}: input_size={input_size} must be a multiple of 64 (512: as trained)")
        candidates = _find(method, layout)
        asset, container = next(((a, c) for a, c in candidates if status(a).state != "missing"), candidates[0])
        if weights and len(candidates) > 1:
            asset, container = (candidates[1] if weights.endswith(".ckpt") else candidates[0])
        sd, r = read_official(asset, container, method, Path(weights) if weights else None)
        sd, dropped = select_vqvae(sd)
        net, n, config = load_network(method, sd, r.path, any_config)
        b = Bridge(input_size, bridge, "cv2-linear", OFFICIAL_SCRIPT)
        return PretrainedSR(method, net, _forward, "[-1,1]", b, device=device, provenance={
            "weights": {asset: r.sha256}, "container": container.label, "params": n, "config": config,
            "training_entries_ignored": dropped})

    return create


def available(method: str) -> Callable[..., Availability]:
    """Any released layout present (or the one ``layout`` names; none with ``weights=PATH``)."""
    modules = (("spandrel", "pip install spandrel"),)

    def check(**options: Any) -> Availability:
        if options.get("weights"):
            return needs(modules=modules)()
        layout = options.get("layout") or "auto"
        assets = [a for a, _ in LAYOUTS[method] if layout == "auto" or a.endswith(layout)] or \
            [a for a, _ in LAYOUTS[method]]
        results = [needs(modules=modules, weights=(a,))() for a in assets]
        if any(r.ok for r in results):
            return Availability.yes()
        return Availability(False, " or ".join(r.reason for r in results))

    return check


OPTIONS = (("bridge", "bicubic", "16->512: bicubic (Pillow) or official (cv2 INTER_LINEAR)"),
           ("any_config", False, "accept another configuration of the architecture (recorded)"),
           ("weights", "", "explicit weight file (still sha256-checked)"),
           ("input_size", 512, "size the face is bridged to (fully convolutional; trained at 512)"))

register("restoreformer", Card(
    "RestoreFormer (official weights, .pth or .ckpt layout); 16 -> bicubic 512 -> area 64",
    "Wang et al., CVPR 2022", LICENSE, "restoreformer.md", ("restoreformer-pth", "restoreformer-ckpt")),
    factory("restoreformer"), available("restoreformer"),
    options=OPTIONS + (("layout", "auto", "which released file: auto (the first found), pth or ckpt"),))
register("restoreformer++", Card(
    "RestoreFormer++ (official weights; in-project network); 16 -> bicubic 512 -> area 64",
    "Wang et al., TPAMI 2023", LICENSE, "restoreformer.md", ("restoreformer++",)),
    factory("restoreformer++"), available("restoreformer++"), options=OPTIONS)
