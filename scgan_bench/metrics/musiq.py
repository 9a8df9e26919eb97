"""MUSIQ (``musiq``): learned no-reference quality, the KonIQ-10k model (higher is better, MOS ~0-100).

Network: :mod:`scgan_bench.networks.musiq`, written in-project with the parameter names of the PyTorch
port (pyiqa), loading its file ``musiq_koniq_ckpt-e95806b9.pth`` strictly after the sha256 check (Google's
Apache-2.0 checkpoint, converted). Protocol: the port's: RGB in [0, 1] at native size, the longer side
also resized to 224 and 384 (bicubic; Google's TensorFlow code resizes with a Gaussian kernel, so scores
follow pyiqa's, not TensorFlow's), 32 px patches, no random crop: a score never changes between runs.
At 64 px the native scale is 2 x 2 patches; the resized scales dominate the sequence (49 + 144 tokens).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..interfaces import MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs
from ..assets.weights import Asset, register_asset

MUSIQ_ASSET = "musiq-koniq"


def load_musiq(path: str | None = None, *, layers: int = 14):
    """The KonIQ MUSIQ from the port's state dict (plain or under ``params``), strictly."""
    from ..baselines.loading import load_strict
    from ..networks.musiq import MUSIQ
    from ..assets.weights import load_state_dict, strip_prefix

    sd, r = load_state_dict(MUSIQ_ASSET, path, ("state_dict", "params"))
    return load_strict(MUSIQ(layers=layers), strip_prefix(sd, "module."), r.path, "MUSIQ (KonIQ-10k)")


class MUSIQScore:
    """One MUSIQ score per image; images of one size go through the network together."""

    requirements = needs(weights=(MUSIQ_ASSET,))

    def __init__(self, device: str = "cpu", weights_path: str | None = None, *, net=None, batch: int = 16) -> None:
        self.device, self.batch = device, batch
        self.net = (net if net is not None else load_musiq(weights_path)).eval().to(device)

    def score_images(self, sr: Sequence[np.ndarray]) -> list[float]:
        from .batching import scores_by_size

        return scores_by_size(self.net, sr, self.device, self.batch)


register_asset(Asset(
    MUSIQ_ASSET, "musiq_koniq_ckpt-e95806b9.pth",
    "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/musiq_koniq_ckpt-e95806b9.pth",
    used_by="musiq (KonIQ-10k model)", license="Apache-2.0 (google-research/musiq; PyTorch conversion by pyiqa)",
    sha256_prefix="e95806b9"))

METRICS.register("musiq", MetricSpec(
    name="musiq", factory=lambda device="cpu": MUSIQScore(device), higher_is_better=True, version="1",
    summary="MUSIQ no-reference quality (KonIQ-10k model, MOS scale ~0-100)", needs_hr=False, backend="musiq-koniq",
    convention="pyiqa's port: native size + longer side 224 and 384 (bicubic), 32 px patches, no crop",
    availability=MUSIQScore.requirements))
