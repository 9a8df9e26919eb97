"""Identity similarity to the ground truth with InsightFace's ArcFace (``ids-arcface``, ``deg-arcface``).

Comparable with: numbers stated as ArcFace IResNet-100 cosine / angle on aligned faces. Not with the
"Deg" that VQFR, CodeFormer, RestoreFormer++ and most blind-face-restoration papers since print: that is
VQFR's script (another network, grayscale, unaligned, pairs under 1 degree left out): ``deg-vqfr``.

Network: InsightFace's ArcFace release most papers use, IResNet-100 trained on MS1MV3
(``ms1mv3_arcface_r100_fp16/backbone.pth``), written in-project (:mod:`scgan_bench.networks.iresnet`)
and loaded strictly with ``weights_only=True`` after the weights manager's sha256 check (trust on first
use: no official sha256 is published).

Alignment (fixed, documented; no detector, so no face can fail to be found): the test sets here are
FFHQ-style aligned crops, whose five points (eyes, nose tip, mouth corners) sit at the FFHQ template that
GFPGAN / CodeFormer align to (facexlib's 512 px template, scaled to the image size). One similarity
transform (least squares, as InsightFace estimates it) maps that template onto ArcFace's 112 x 112
template, and every image (SR and HR alike) is warped with it by ``cv2.warpAffine`` (bilinear, zeros
outside, uint8 in and out: InsightFace's ``norm_crop``), then fed as RGB / 127.5 - 1. Embeddings are
L2-normalised.
For crops that are not FFHQ-aligned (WIDER FACE boxes) the fixed geometry is an approximation.

* ``ids-arcface``: cosine similarity of the SR and HR embeddings, per image; the set value is the mean.
* ``deg-arcface``: the angle between them in degrees, ``arccos(clip(cos, -1, 1))``; all pairs averaged
  (a pair whose cosine rounds to 1 counts as 0 degrees).
* ``deg-arcface-excl``: the same mean with numerically identical pairs (cos >= 1 - 1e-7, where an
  unclipped ``arccos`` returns NaN) left out, as implementations that drop NaN angles report it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from ..interfaces import FeatureExtractor, MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs
from ..assets.weights import Asset, register_asset

if TYPE_CHECKING:
    import torch

ARCFACE_ASSET = "arcface-r100-ms1mv3"
#: ArcFace's 112 x 112 five-point template (InsightFace face_align.arcface_dst): left eye, right eye, nose
#: tip, left and right mouth corners, in image coordinates
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                        [70.7299, 92.2041]])
#: the same five points in a 512 x 512 FFHQ-aligned face (facexlib's FaceRestoreHelper template)
FFHQ_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                     [201.26117, 371.41043], [313.08905, 371.15118]])
SAME_PAIR = 1 - 1e-7


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2 x 3 least-squares similarity (rotation, uniform scale, translation) taking ``src`` to ``dst``
    (scikit-image's SimilarityTransform, which InsightFace's ``estimate_norm`` uses)."""
    from skimage.transform import SimilarityTransform

    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        t = SimilarityTransform.from_estimate(src, dst)
        ok = bool(t)
    else:
        t = SimilarityTransform()
        ok = t.estimate(src, dst)
    if not ok:
        raise ValueError("the five points do not define a similarity transform")
    return t.params[:2]


def align_112(images: Sequence[np.ndarray]) -> "torch.Tensor":
    """FFHQ-aligned uint8 faces (any square size) -> 112 x 112 float RGB in [-1, 1], N x 3 x 112 x 112:
    ``cv2.warpAffine`` of each uint8 face by the template similarity, as InsightFace's ``norm_crop``."""
    import cv2
    import torch

    matrices = {size: similarity_matrix(FFHQ_512 * size / 512.0, ARCFACE_112)
                for size in {im.shape[0] for im in images}}
    warped = [cv2.warpAffine(np.ascontiguousarray(im), matrices[im.shape[0]], (112, 112), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0) for im in images]
    return torch.from_numpy(np.stack(warped)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


class ArcFaceFeatures:
    """L2-normalised 512-d ArcFace (IResNet-100, MS1MV3) embeddings of FFHQ-aligned faces."""

    key = "arcface-iresnet100-ms1mv3/ffhq-template-112/cv2-warp"  # v1 (float bilinear warp) is stale

    def __init__(self, device: str = "cpu", weights_path: str | None = None, *, net=None) -> None:
        self.device = device
        self.requirements = _ARCFACE
        if net is None:
            net = load_arcface(weights_path)
        self.net = net.eval().to(device)

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            e = self.net(align_112(images).to(self.device)).double()
        return torch.nn.functional.normalize(e, dim=1).cpu().numpy()


def load_arcface(path: str | None = None, *, width: float = 1.0):
    """The IResNet-100 of the release, its state dict checked key by key and loaded strictly (``width`` < 1:
    the tests' reduced copies of the official layout)."""
    from ..baselines.loading import load_strict
    from ..networks.iresnet import IResNet
    from ..assets.weights import load_state_dict, strip_prefix

    sd, r = load_state_dict(ARCFACE_ASSET, path)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in strip_prefix(sd, "module.").items()}
    return load_strict(IResNet("r100", width=width), sd, r.path, "ArcFace IResNet-100")


def _cosines(sr: Mapping[str, np.ndarray], hr: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {i: float(np.clip(np.dot(sr[i], hr[i]), -1.0, 1.0)) for i in sorted(sr) if i in hr}


@dataclass
class IdentitySimilarity:
    extractor: FeatureExtractor

    def compute(self, sr: Mapping[str, np.ndarray], hr: Mapping[str, np.ndarray]):
        per = _cosines(sr, hr)
        if not per:
            raise ValueError("no SR image has its HR image")
        return per, {"": float(np.mean(list(per.values())))}


@dataclass
class IdentityAngle:
    extractor: FeatureExtractor
    exclude_identical: bool = False

    def compute(self, sr: Mapping[str, np.ndarray], hr: Mapping[str, np.ndarray]):
        cos = _cosines(sr, hr)
        per = {i: math.degrees(math.acos(c)) for i, c in cos.items()
               if not (self.exclude_identical and c >= SAME_PAIR)}
        if not per:
            raise ValueError("no pair left to average (every SR image equals its HR image in ArcFace's space)"
                             if cos else "no SR image has its HR image")
        return per, {"": float(np.mean(list(per.values()))), "excluded": float(len(cos) - len(per))}


register_asset(Asset(
    ARCFACE_ASSET, "ms1mv3_arcface_r100_fp16.pth",
    "no direct download (a web page, not the file): from the InsightFace model zoo page "
    "https://github.com/deepinsight/insightface/tree/master/model_zoo (arcface_torch, ms1mv3_arcface_r100_fp16) "
    "get backbone.pth, saved as ms1mv3_arcface_r100_fp16.pth",
    used_by="ids-arcface, deg-arcface (ArcFace IResNet-100, MS1MV3)",
    license="InsightFace pretrained models: non-commercial research use only (code MIT)",
    caches=("scgan-bench",),
    source_note="InsightFace model zoo (arcface_torch): ms1mv3_arcface_r100_fp16/backbone.pth, saved here as "
                "ms1mv3_arcface_r100_fp16.pth; no official sha256 is published: verified by trust-on-first-use"))
_ARCFACE = needs(weights=(ARCFACE_ASSET,))

_CONV = ("ArcFace IResNet-100 (MS1MV3) on the face warped from the FFHQ 5-point template to ArcFace's 112 px "
         "template (one fixed similarity by cv2.warpAffine, no detector), RGB/127.5-1, unit embeddings; not the "
         "Deg of VQFR / CodeFormer-style papers (that is deg-vqfr)")
for _name, _factory, _summary, _higher, _extra in (
        ("ids-arcface", lambda device="cpu": IdentitySimilarity(ArcFaceFeatures(device)),
         "identity similarity (IDS): ArcFace cosine of SR and HR, mean over images", True, ""),
        ("deg-arcface", lambda device="cpu": IdentityAngle(ArcFaceFeatures(device)),
         "identity angle (Deg): degrees between the ArcFace embeddings of SR and HR, every pair averaged", False,
         "; arccos of the clipped cosine, identical pairs count as 0 degrees"),
        ("deg-arcface-excl", lambda device="cpu": IdentityAngle(ArcFaceFeatures(device), exclude_identical=True),
         "identity angle (Deg) without numerically identical pairs (cos >= 1 - 1e-7)", False,
         "; pairs with cos >= 1 - 1e-7 left out of the mean (their count in the set values)")):
    METRICS.register(_name, MetricSpec(
        name=_name, factory=_factory, summary=_summary, higher_is_better=_higher, version="2", needs_hr=True,
        kind="set", reference="paired", availability=_ARCFACE, backend="arcface", convention=_CONV + _extra))
