"""TOPIQ-NR (``topiq-nr``) and TOPIQ-NR-face (``topiq-nr-face``): learned no-reference quality (Chen et al.,
TIP 2024), higher is better, about 0-1.

Network: :mod:`scgan_bench.networks.topiq`, written in-project with the parameter names of pyiqa's
checkpoints, loaded strictly (plain or under ``params``) after the sha256 check (the hash prefix in the
official file name). Protocol: pyiqa 0.1.16's ``topiq_nr`` (KonIQ-10k model, image at its own size) and
``topiq_nr-face`` (the CGFIQA-40k face model; the shorter side resized to 512, bilinear with antialiasing).

``topiq_nr-face`` in pyiqa first detects, aligns and crops the face with facexlib (RetinaFace + FFHQ
template, one face per call). The suite's images are aligned face crops already (every protocol's data
is), so the metric scores them as given, resized to 512 px: pyiqa's ``align_crop_face=False``. A user's
unaligned photos are not what this metric reads.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..interfaces import MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs
from ..assets.weights import Asset, register_asset

KONIQ_ASSET = "topiq-nr-koniq"
FACE_ASSET = "topiq-nr-face-cgfiqa"
FACE_SIZE = 512  # pyiqa's test_img_size for topiq_nr-face
_BASE = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/"
_LICENSE = ("PolyForm Noncommercial 1.0.0 (chaofengc/IQA-PyTorch, which trained and publishes the file); "
            "ResNet-50 ImageNet initialisation (timm, Apache-2.0)")


def load_topiq(asset: str, path: str | None = None, *, test_size: int | None = None):
    """A TOPIQ-NR checkpoint (``params`` of pyiqa's file, or a plain state dict), strictly."""
    from ..baselines.loading import load_strict
    from ..networks.topiq import TOPIQNR
    from ..assets.weights import load_state_dict, strip_prefix

    sd, r = load_state_dict(asset, path, ("state_dict", "params"))
    return load_strict(TOPIQNR(test_size=test_size), strip_prefix(sd, "module."), r.path, f"TOPIQ-NR ({asset})")


class TOPIQScore:
    """One TOPIQ-NR score per image; images of one size go through the network together."""

    def __init__(self, device: str = "cpu", asset: str = KONIQ_ASSET, *, net=None, batch: int = 8) -> None:
        self.device, self.batch = device, batch
        size = FACE_SIZE if asset == FACE_ASSET else None
        self.net = (net if net is not None else load_topiq(asset, test_size=size)).eval().to(device)

    def score_images(self, sr: Sequence[np.ndarray]) -> list[float]:
        from .batching import scores_by_size

        return scores_by_size(self.net, sr, self.device, self.batch)


register_asset(Asset(
    KONIQ_ASSET, "cfanet_nr_koniq_res50-9a73138b.pth", _BASE + "cfanet_nr_koniq_res50-9a73138b.pth",
    used_by="topiq-nr (KonIQ-10k model)", license=_LICENSE, sha256_prefix="9a73138b"))
register_asset(Asset(
    FACE_ASSET, "topiq_nr_cgfiqa_res50-0a8b8e4f.pth", _BASE + "topiq_nr_cgfiqa_res50-0a8b8e4f.pth",
    used_by="topiq-nr-face (CGFIQA-40k face model)", license=_LICENSE, sha256_prefix="0a8b8e4f",
))

METRICS.register("topiq-nr", MetricSpec(
    name="topiq-nr", factory=lambda device="cpu": TOPIQScore(device, KONIQ_ASSET), higher_is_better=True,
    version="1", summary="TOPIQ-NR no-reference quality (KonIQ-10k model, ~0-1)", needs_hr=False,
    backend="topiq-nr-koniq", convention="pyiqa 0.1.16's topiq_nr: ImageNet normalisation, the image at its own size",
    caveat="at 64 px the coarsest ResNet level is a 2 x 2 grid: compare methods at one output size within a run",
    availability=needs(weights=(KONIQ_ASSET,))))
METRICS.register("topiq-nr-face", MetricSpec(
    name="topiq-nr-face", factory=lambda device="cpu": TOPIQScore(device, FACE_ASSET), higher_is_better=True,
    version="1", summary="TOPIQ-NR-face no-reference face quality (CGFIQA-40k model, ~0-1)", needs_hr=False,
    backend="topiq-nr-face-cgfiqa",
    convention="pyiqa 0.1.16's topiq_nr-face with align_crop_face=False: the aligned crop as given, shorter side "
               "resized to 512 (bilinear, antialiased), ImageNet normalisation",
    caveat="pyiqa's default re-detects and re-aligns the face with facexlib first; the suite's images are aligned "
           "crops, so it scores them as they are (numbers on unaligned photos differ from pyiqa's default)",
    availability=needs(weights=(FACE_ASSET,))))
