"""Fréchet distance on DINOv2 ViT-L/14 features (``fd-dinov2``), as torch-fidelity 0.4's ``dinov2-vit-l-14``
extractor computes them (Stein et al., NeurIPS 2023, argue it ranks generated images as people do, where
Inception's does not).

Features: uint8 RGB -> float32 -> 224 x 224 with torch-fidelity's TensorFlow-1-compatible bilinear resize
(the same as its Inception input path) -> ImageNet normalisation on the 0-255 scale -> DINOv2 ViT-L/14
(:mod:`scgan_bench.networks.dinov2`) -> the normalised class token (1024-d), float32, cached per image and
shared by every metric on them (``fd-dinov2``, the ``*-dinov2`` precision / recall / density / coverage).
dgm-eval (Stein et al.'s code) resizes with PIL's bicubic instead: its FD_DINOv2 numbers are close to,
not equal to, these. The distance: the FID formula on these features (torch-fidelity's functions on the
CPU, :func:`scgan_bench.metrics.distribution.fid_torch` on a GPU).

Weights: ``dinov2_vitl14_pretrain.pth`` (Apache-2.0, Meta), the file ``torch.hub`` downloads, loaded with
``weights_only=True`` and strictly; no hash is published: trust on first use, then pinned.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..interfaces import MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs
from ..assets.weights import Asset, register_asset

DINOV2_ASSET = "dinov2-vitl14"
INPUT_SIZE = 224


def load_dinov2(path: str | None = None):
    """DINOv2 from a released state dict (plain or under ``model`` / ``state_dict``), strictly; its size read
    from the file (ViT-L/14 by default)."""
    from ..baselines.loading import load_strict
    from ..networks.dinov2 import DINOv2
    from ..assets.weights import WeightsError, load_state_dict, strip_prefix

    sd, r = load_state_dict(DINOV2_ASSET, path, ("state_dict", "model"))
    sd = strip_prefix(sd, "module.")
    try:
        shape = DINOv2.shape_of(sd)
    except (KeyError, IndexError) as exc:
        raise WeightsError(f"DINOv2: {r.path} is not in DINOv2's released layout (no {exc})") from None
    return load_strict(DINOv2(**shape), sd, r.path, "DINOv2")


class DINOv2Features:
    """DINOv2 class-token features (1024-d for ViT-L/14) of uint8 RGB images, torch-fidelity's preprocessing."""

    key = "dinov2-vit-l-14/tf-fidelity-224"
    requirements = needs(modules=(("torch_fidelity", "pip install torch-fidelity"),), weights=(DINOV2_ASSET,))

    def __init__(self, device: str = "cpu", weights_path: str | None = None, *, net=None) -> None:
        import torch

        self.device = device
        self.net = (net if net is not None else load_dinov2(weights_path)).eval().to(device)
        from ..assets.backbones import IMAGENET_MEAN, IMAGENET_STD

        self.mean = torch.tensor([255 * m for m in IMAGENET_MEAN], device=device).view(1, 3, 1, 1)
        self.std = torch.tensor([255 * s for s in IMAGENET_STD], device=device).view(1, 3, 1, 1)

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(self.device, torch.float32)
        x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(INPUT_SIZE, INPUT_SIZE), align_corners=False)
        with torch.inference_mode():
            return self.net((x - self.mean) / self.std).double().cpu().numpy()


def dinov2_features(device: str = "cpu") -> DINOv2Features:
    """The process's one DINOv2 extractor for ``device`` (every DINOv2 metric shares its network)."""
    from ..run.features import shared_extractor

    return shared_extractor(DINOv2Features, (DINOV2_ASSET,), device=str(device))


register_asset(Asset(
    DINOV2_ASSET, "dinov2_vitl14_pretrain.pth",
    "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
    used_by="fd-dinov2, precision/recall/density/coverage-dinov2 (DINOv2 ViT-L/14)",
    license="Apache-2.0 (facebookresearch/dinov2)",
    source_note="the file torch.hub.load('facebookresearch/dinov2', 'dinov2_vitl14') downloads (torch-fidelity "
                "0.4's dinov2-vit-l-14); also found in $TORCH_HOME/hub/checkpoints"))


def _fd(device: str = "cpu"):
    from .distribution import FID

    return FID(dinov2_features(device), str(device))


METRICS.register("fd-dinov2", MetricSpec(
    name="fd-dinov2", factory=_fd, higher_is_better=False, version="1", needs_hr=False, kind="set",
    reference="hr-set", backend="dinov2-vitl14",
    summary="Fréchet distance on DINOv2 ViT-L/14 class-token features vs the HR reference set",
    convention="torch-fidelity 0.4's dinov2-vit-l-14: TF1-compatible bilinear resize to 224, ImageNet "
               "normalisation, normalised class token; the FID formula on float64 features",
    caveat="dgm-eval resizes with PIL bicubic, so its FD_DINOv2 differs slightly; a distance over a few hundred "
           "images is biased upwards (1024-d covariances): compare methods on the same sets",
    availability=DINOv2Features.requirements))
