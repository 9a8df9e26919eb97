"""DISTS (structure and texture similarity, Ding et al. 2020): a full-reference perceptual distance,
lower is better. The network is written in-project (:mod:`scgan_bench.networks.dists`) and loads the
official files, both sha256-checked by the weights manager: torchvision's ImageNet VGG16
(``vgg16-397923af.pth``, BSD-3-Clause) and DISTS' learned weights ``weights.pt`` (MIT; shipped in the
``DISTS_pytorch`` wheel, found there offline). SR and HR in [0, 1] at their own size (64 px; the official
``prepare_image`` only shrinks images above 256 px), no random crop: a score never changes between runs.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..interfaces import MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs
from ..assets.weights import Asset, register_asset


class DISTS:
    def __init__(self, device: str = "cpu", vgg_path: str | None = None, weights_path: str | None = None) -> None:
        import torch

        from ..networks.dists import DISTSNet
        from ..assets.weights import load_state_dict

        vgg, self.vgg = load_state_dict("vgg16", vgg_path)
        ab, self.weights = load_state_dict("dists-weights", weights_path)
        net = DISTSNet()
        try:
            net.load_official(vgg, ab)
        except (KeyError, ValueError) as exc:
            from ..errors import UsageError

            raise UsageError(f"DISTS: {self.vgg.path} / {self.weights.path} do not fit the network: {exc}") from None
        self.net, self.device = net.eval().to(device), device
        self._torch = torch

    def score_pairs(self, sr: Sequence[np.ndarray], hr: Sequence[np.ndarray]) -> list[float]:
        torch = self._torch

        def t(images: Sequence[np.ndarray]):
            return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().to(self.device) / 255.0

        with torch.inference_mode():
            d = self.net(t(sr), t(hr))
        return [float(v) for v in d.cpu()]


register_asset(Asset(
    "vgg16", "vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
    used_by="dists (VGG16 backbone)", license="BSD-3-Clause (torchvision)", sha256_prefix="397923af"))
register_asset(Asset(
    "dists-weights", "weights.pt", "https://github.com/dingkeyan93/DISTS/raw/master/DISTS_pytorch/weights.pt",
    used_by="dists (learned alpha / beta)", license="MIT (DISTS, Keyan Ding)",
    sha256="f5e65c96230b7f6ca995691647d482237e4cab8a50c5c4a5784f219ef0748218", caches=("scgan-bench",),
    bundled=("DISTS_pytorch", "weights.pt"),
    source_note="also inside the DISTS_pytorch wheel on PyPI (pip install DISTS-pytorch)"))

METRICS.register("dists", MetricSpec(
    name="dists", factory=lambda device="cpu": DISTS(device), higher_is_better=False, version="1",
    summary="DISTS (structure + texture similarity), SR vs HR", needs_hr=True, backend="vgg16",
    convention="DISTS (official network and weights), RGB in [0, 1] at native size, no crop",
    availability=needs(modules=(("torchvision", "pip install torchvision"),), weights=("vgg16", "dists-weights"))))
