"""MANIQA (``maniqa``): learned no-reference quality, the KonIQ-10k model (higher is better, ~0-1).

Network: :mod:`scgan_bench.networks.maniqa`, written in-project with the parameter names of the released
checkpoint as the PyTorch port (pyiqa) loads it, from ``ckpt_koniq10k.pt`` (IIGROUP/MANIQA, Apache-2.0;
its ViT-B/8 inside), read with ``weights_only=True`` and loaded strictly (plain or under ``params``). No
sha256 is published for it: trust on first use, then pinned. Protocol: the port's settings for this
checkpoint (Swin residual scale 0.8, 20 uniform 224 px crops, mean = std = 0.5). A face of 64 px is first
scaled by 225 / 64 (bilinear) to 225 px, so every one of the 20 crops is the same top-left 224 px crop and
the score is that crop's weighted mean: no random crop, a score never changes between runs.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..interfaces import MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs
from ..assets.weights import Asset, register_asset

MANIQA_ASSET = "maniqa-koniq"
KONIQ_SCALE = 0.8  # the Swin residual scale the KonIQ-10k checkpoint was trained with (pyiqa's setting)


def load_maniqa(path: str | None = None, *, dim: int = 768):
    """The KonIQ MANIQA from its state dict (plain or under ``params``), strictly (``dim`` < 768: the tests'
    reduced copies of the layout)."""
    from ..baselines.loading import load_strict
    from ..networks.maniqa import MANIQA
    from ..assets.weights import load_state_dict, strip_prefix

    sd, r = load_state_dict(MANIQA_ASSET, path, ("state_dict", "params"))
    return load_strict(MANIQA(crops=20, scale=KONIQ_SCALE, dim=dim), strip_prefix(sd, "module."), r.path, "MANIQA (KonIQ-10k)")


class MANIQAScore:
    """One MANIQA score per image; images of one size go through the network together."""

    requirements = needs(weights=(MANIQA_ASSET,))

    def __init__(self, device: str = "cpu", weights_path: str | None = None, *, net=None, batch: int = 8) -> None:
        self.device, self.batch = device, batch
        self.net = (net if net is not None else load_maniqa(weights_path)).eval().to(device)

    def score_images(self, sr: Sequence[np.ndarray]) -> list[float]:
        from .batching import scores_by_size

        return scores_by_size(self.net, sr, self.device, self.batch)


register_asset(Asset(
    MANIQA_ASSET, "ckpt_koniq10k.pt", "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/ckpt_koniq10k.pt",
    used_by="maniqa (KonIQ-10k model)", license="Apache-2.0 (IIGROUP/MANIQA; ViT-B/8 from timm, Apache-2.0)"))

METRICS.register("maniqa", MetricSpec(
    name="maniqa", factory=lambda device="cpu": MANIQAScore(device), higher_is_better=True, version="1",
    summary="MANIQA no-reference quality (KonIQ-10k model, ~0-1)", needs_hr=False, backend="maniqa-koniq",
    convention="pyiqa's port and settings: mean = std = 0.5, images with a side <= 224 scaled by 225 / side "
               "(bilinear), 20 uniform 224 px crops (all equal at 64 px), Swin scale 0.8; no random crop",
    availability=MANIQAScore.requirements))
