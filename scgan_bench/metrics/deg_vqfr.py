"""Identity angle as VQFR's ``metric_paper/calculate_cos_dist.py`` computes it (``deg-vqfr``): the "Deg"
that VQFR, CodeFormer, RestoreFormer++ and later blind-face-restoration papers print, which differs from
``deg-arcface`` in every step:

* network: arcface-pytorch's ``resnet_face18`` (``use_se=False``) with ``resnet18_110.pth`` (trained on
  CASIA-WebFace), not InsightFace's IResNet-100;
* input: the image file read as grayscale by OpenCV (``cv2.imread(path, 0)``; here each image goes
  through the same PNG decode, ``cv2.imdecode(..., IMREAD_GRAYSCALE)``, so an RGB array gives the gray
  levels the script gets from its file), ``cv2.resize`` to 128 x 128 (bilinear), ``(x - 127.5) / 127.5``;
  no alignment (the script feeds the whole aligned crop);
* score: the angle ``arccos(cos) * 180 / pi`` between the raw (not normalised) embeddings of the
  restored and ground-truth images; pairs under 1 degree are **left out** of the mean ("almost identical
  to original") and counted (set value ``excluded``).

Deviations, each stated: the cosine is clipped to [-1, 1] before ``arccos`` (the script's unclipped
``np.arccos`` gives NaN when float rounding puts an identical pair's cosine above 1, and one NaN makes its
printed mean NaN); embeddings and cosines are computed in float64 (the script: float32; the angle moves
by < 1e-3 degrees); when every pair is under 1 degree the metric fails with that reason (the script
divides by zero). Numbers are comparable with those papers only with the same file and the same image
size (they score 512 px faces; at 64 px the network sees a 4x bicubic-blurred 128 px input).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..interfaces import FeatureExtractor, MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs
from ..assets.weights import Asset, register_asset

ASSET = "arcface-resnet18-vqfr"
#: pairs closer than this many degrees are "almost identical to original" and left out (the script's rule)
IDENTICAL_BELOW = 1.0


def gray_128(images: Sequence[np.ndarray]):
    """RGB uint8 faces -> N x 1 x 128 x 128 float32 in [-1, 1], as the script reads and scales its files."""
    import cv2
    import torch

    out = []
    for im in images:
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(im[..., ::-1]))  # the file: BGR for OpenCV
        if not ok:
            raise ValueError("OpenCV could not encode the image as PNG")
        gray = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
        gray = cv2.resize(gray, (128, 128), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        out.append((gray - 127.5) / 127.5)
    return torch.from_numpy(np.stack(out))[:, None]


def load_resnet_face18(path: str | None = None, *, width: float = 1.0):
    """``resnet_face18`` from the script's file (DataParallel's ``module.`` prefix dropped), strictly."""
    from ..baselines.loading import load_strict
    from ..networks.resnet_face import ResNetFace
    from ..assets.weights import load_state_dict, strip_prefix

    sd, r = load_state_dict(ASSET, path)
    return load_strict(ResNetFace(width=width), strip_prefix(sd, "module."), r.path, "arcface-pytorch resnet_face18")


class VQFRArcFaceFeatures:
    """The raw 512-d ``resnet_face18`` embeddings of the gray 128 px faces (eval mode)."""

    key = "arcface-pytorch-resnet18/vqfr-gray-128"

    def __init__(self, device: str = "cpu", weights_path: str | None = None, *, net=None) -> None:
        self.device, self.requirements = device, _NEEDS
        self.net = (net if net is not None else load_resnet_face18(weights_path)).eval().to(device)

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.net(gray_128(images).to(self.device)).double().cpu().numpy()


@dataclass
class VQFRIdentityAngle:
    extractor: FeatureExtractor

    def compute(self, sr: Mapping[str, np.ndarray], hr: Mapping[str, np.ndarray]):
        angles = {}
        for i in sorted(sr):
            if i in hr:
                a, b = np.asarray(sr[i], np.float64), np.asarray(hr[i], np.float64)
                cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
                angles[i] = math.degrees(math.acos(min(1.0, max(-1.0, cos))))
        if not angles:
            raise ValueError("no SR image has its HR image")
        per = {i: v for i, v in angles.items() if v >= IDENTICAL_BELOW}
        if not per:
            raise ValueError(f"every pair is under {IDENTICAL_BELOW:g} degree (VQFR's rule leaves them out): no pair "
                             "left to average")
        return per, {"": float(np.mean(list(per.values()))), "excluded": float(len(angles) - len(per))}


register_asset(Asset(
    ASSET, "resnet18_110.pth",
    "no direct download (a web page, not the file): ronghuaiyang/arcface-pytorch's README links resnet18_110.pth "
    "on Baidu Pan; VQFR's script reads it from experiments/pretrained_models/metric_weights/",
    used_by="deg-vqfr (arcface-pytorch resnet_face18, VQFR's Deg script)",
    license="code MIT (arcface-pytorch); the weights state no licence (trained on CASIA-WebFace, research use)",
    caches=("scgan-bench",),
    source_note="arcface-pytorch resnet18_110.pth (DataParallel keys, 'module.' prefix); GFPGAN's "
                "arcface_resnet18.pth has the same layout without the prefix and also loads, but its README does not "
                "say it holds the same weights: papers' Deg is comparable only with resnet18_110.pth. No official "
                "sha256 is published: verified by trust-on-first-use"))
_NEEDS = needs(weights=(ASSET,))

METRICS.register("deg-vqfr", MetricSpec(
    name="deg-vqfr", factory=lambda device="cpu": VQFRIdentityAngle(VQFRArcFaceFeatures(device)),
    summary="identity angle (Deg) as VQFR's calculate_cos_dist.py: gray 128 px resnet_face18, pairs < 1 degree "
            "left out",
    higher_is_better=False, version="1", needs_hr=True, kind="set", reference="paired", availability=_NEEDS,
    backend="arcface-resnet18",
    convention="arcface-pytorch resnet_face18 (resnet18_110.pth) on the unaligned face read as OpenCV grayscale, "
               "bilinear 128 px, (x - 127.5) / 127.5; degrees between raw embeddings; pairs under 1 degree left out "
               "(count in the set values); the number VQFR / CodeFormer / RestoreFormer++ print as Deg (at their "
               "512 px)",
    caveat="comparable with the papers' Deg only with resnet18_110.pth and their image size (512 px); at 64 px "
           "the network sees an upsampled 64 px face"))
