"""Landmark distance: the mean Euclidean distance, in pixels of the scored image, between the landmarks
found on the SR image and on its HR image by a heatmap landmark network. Two networks and protocols:

* ``lmd-awing``: VQFR's ``metric_paper/calculate_landmark_distance.py``, the LMD that VQFR, CodeFormer and
  later blind-face-restoration papers print: AWing's FAN (98 WFLW points, facexlib's
  ``alignment_WFLW_4HG.pth``) on the whole image resized to 256 px (``cv2.resize``, bilinear), RGB / 255;
  each heatmap's maximum plus a quarter pixel towards the larger neighbour (the script's rule, including
  its quirks: the horizontal neighbours are flat-index neighbours, and when any point of the face peaks
  on the first or last heatmap row the vertical neighbours of every point become the heatmap's first and
  last pixels), plus half a pixel, times the image size / 64. One deviation: a peak on the very last
  heatmap pixel uses itself as its right neighbour (the script indexes past the end and stops).
* ``lmd``: face-alignment's 2DFAN-4 (68 points of 300W), below.

``lmd`` in detail.

Network: face-alignment's 2DFAN-4 (Bulat & Tzimiropoulos 2017; BSD-3-Clause; comparable with LMDs stated as
face-alignment's, not with the VQFR-style LMD of most BFR papers, which is ``lmd-awing``), written
in-project (:mod:`scgan_bench.networks.fan`). Its weights are the
face-alignment 1.x release ``2DFAN4-11f355bf06.pth.tar``: a plain state dict, loadable with
``weights_only=True`` and checked against the sha256 prefix in its name (later releases ship TorchScript
archives, which cannot be loaded that safely). Protocol, face-alignment's with two documented changes:
the face box is the whole (aligned) image instead of a detection (nothing can fail to be found): centre
``(s/2, s/2 - 0.12 s)``, scale ``2 s / 195``; the crop exactly as face-alignment's ``crop``: the box
corners ``transform([1, 1])`` and ``transform([256, 256])`` truncated to integers, that uint8 region
(zeros outside the image) resized to 256 px by ``cv2.resize`` (bilinear), RGB in [0, 1]; each of the 68
heatmaps decoded at its maximum plus a quarter pixel towards the larger neighbour, minus half a pixel,
then mapped back to the image with the exact (not truncated) box, kept as floats (face-alignment
truncates the points to integers). Landmarks of SR and HR come from the same procedure.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from ..interfaces import FeatureExtractor, MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs
from ..assets.weights import Asset, register_asset

if TYPE_CHECKING:
    import torch

FAN_ASSET = "fan-2dfan4"
REFERENCE_SCALE = 195.0
CROP, HEATMAP = 256, 64


def box_of(size: int) -> tuple[np.ndarray, float]:
    """face-alignment's centre and scale for the box ``(0, 0, size, size)``."""
    return np.array([size / 2.0, size / 2.0 - 0.12 * size]), 2.0 * size / REFERENCE_SCALE


def box_corners(size: int) -> tuple[int, int, int, int]:
    """face-alignment's crop box of a ``size`` px face: ``transform([1, 1])`` and ``transform([256, 256])``
    inverted (crop point q -> image point ``(q / 256 - 1/2) h + centre``, h = 200 scale), each coordinate
    truncated towards zero as its ``.int()``: (x0, y0, x1, y1)."""
    centre, scale = box_of(size)
    h = 200.0 * scale
    (x0, y0), (x1, y1) = ((q / CROP - 0.5) * h + centre for q in (1.0, float(CROP)))
    return int(x0), int(y0), int(x1), int(y1)


def crop_256(images: Sequence[np.ndarray]) -> "torch.Tensor":
    """Each face's 256 px crop as face-alignment's ``crop``: the uint8 region between the integer box
    corners (zeros outside the image), resized by ``cv2.resize`` (bilinear); N x 3 x 256 x 256 in [0, 1]."""
    import cv2
    import torch

    out = []
    for im in images:
        hgt, wid = im.shape[:2]
        x0, y0, x1, y1 = box_corners(hgt)
        region = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        sx, sy = max(0, x0), max(0, y0)  # the part of the box inside the image
        ex, ey = min(x1, wid), min(y1, hgt)
        region[sy - y0:ey - y0, sx - x0:ex - x0] = im[sy:ey, sx:ex]
        out.append(cv2.resize(region, (CROP, CROP), interpolation=cv2.INTER_LINEAR))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0


def decode(heatmaps: np.ndarray, size: int) -> np.ndarray:
    """68 x 64 x 64 heatmaps of one face -> 68 x 2 image points (x, y) of a ``size`` px face."""
    n, hh, ww = heatmaps.shape
    idx = heatmaps.reshape(n, -1).argmax(axis=1)
    px, py = idx % ww, idx // ww
    pts = np.stack([px + 1.0, py + 1.0], axis=1)  # face-alignment's 1-based peak
    for j in range(n):
        x, y = px[j], py[j]
        if 0 < x < ww - 1 and 0 < y < hh - 1:
            hm = heatmaps[j]
            pts[j] += 0.25 * np.sign([hm[y, x + 1] - hm[y, x - 1], hm[y + 1, x] - hm[y - 1, x]])
    pts -= 0.5
    centre, scale = box_of(size)
    return (pts - HEATMAP / 2) * (200.0 * scale) / HEATMAP + centre


def load_fan(path: str | None = None, *, width: float = 1.0):
    """2DFAN-4 from the release's state dict, strictly."""
    from ..baselines.loading import load_strict
    from ..networks.fan import FAN
    from ..assets.weights import load_state_dict, strip_prefix

    sd, r = load_state_dict(FAN_ASSET, path)
    return load_strict(FAN(4, width=width), strip_prefix(sd, "module."), r.path, "2DFAN-4")


class FANLandmarks:
    """68 landmarks (x, y in pixels of each image), flattened to 136 values per image."""

    key = "fan-2dfan4/whole-image-box/integer-crop"  # v1 (bilinear sampling of the exact box) is stale

    def __init__(self, device: str = "cpu", weights_path: str | None = None, *, net=None) -> None:
        self.device, self.requirements = device, _FAN
        self.net = (net if net is not None else load_fan(weights_path)).eval().to(device)

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            heat = self.net(crop_256(images).to(self.device)).float().cpu().numpy()
        return np.stack([decode(h, im.shape[0]).reshape(-1) for h, im in zip(heat, images)]).astype(np.float64)


@dataclass
class LandmarkDistance:
    extractor: FeatureExtractor

    def compute(self, sr: Mapping[str, np.ndarray], hr: Mapping[str, np.ndarray]):
        per = {i: float(np.linalg.norm(sr[i].reshape(-1, 2) - hr[i].reshape(-1, 2), axis=1).mean())
               for i in sorted(sr) if i in hr}
        if not per:
            raise ValueError("no SR image has its HR image")
        return per, {"": float(np.mean(list(per.values())))}


register_asset(Asset(
    FAN_ASSET, "2DFAN4-11f355bf06.pth.tar", "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
    used_by="lmd (face-alignment 2DFAN-4, 68 landmarks)", license="BSD-3-Clause (face-alignment)",
    sha256_prefix="11f355bf06"))
_FAN = needs(weights=(FAN_ASSET,))

METRICS.register("lmd", MetricSpec(
    name="lmd", factory=lambda device="cpu": LandmarkDistance(FANLandmarks(device)), higher_is_better=False,
    version="2", summary="landmark distance (LMD): mean pixel distance of 2DFAN-4's 68 landmarks, SR vs HR",
    needs_hr=True, kind="set", reference="paired", availability=_FAN, backend="fan",
    convention="2DFAN-4 on the whole aligned image as the face box (face-alignment's centre/scale rule and its "
               "integer-corner crop resized by cv2), "
               "heatmap peak + quarter-pixel rule, float points; mean Euclidean distance over 68 points in pixels "
               "at 64 px"))


# ------------------------------------------------------------------------------- lmd-awing (VQFR's LMD)
AWING_ASSET = "awing-wflw-4hg"


def awing_points(heatmaps: np.ndarray, height: int, width: int) -> np.ndarray:
    """98 x 64 x 64 landmark heatmaps of one face -> 98 x 2 points (x, y) of a ``height`` x ``width`` image,
    by VQFR's / facexlib's ``calculate_points`` for one image (its neighbour rules included)."""
    n, hh, ww = heatmaps.shape
    size = hh * ww
    flat = heatmaps.reshape(n, size)
    rows = np.arange(n)
    idx = flat.argmax(axis=1)
    pts = np.stack([idx % ww, idx // ww], axis=1).astype(np.float64)
    right = flat[rows, np.minimum(idx + 1, size - 1)]
    left = flat[rows, idx - 1]  # index -1 is the last pixel, as in the script
    below = flat[rows, size - 1] if np.any(idx + ww >= size) else flat[rows, idx + ww]
    above = flat[rows, 0] if np.any(idx - ww <= 0) else flat[rows, idx - ww]
    pts += 0.25 * np.sign(np.stack([right - left, below - above], axis=1))
    pts += 0.5
    return pts * np.array([width / ww, height / hh])


def load_awing(path: str | None = None):
    """AWing's FAN from facexlib's checkpoint (its ``state_dict`` entry), strictly."""
    from ..baselines.loading import load_strict
    from ..networks.awing import AWingFAN
    from ..assets.weights import load_state_dict, strip_prefix

    sd, r = load_state_dict(AWING_ASSET, path)
    return load_strict(AWingFAN(), strip_prefix(sd, "module."), r.path, "AWing FAN (WFLW, 4 hourglasses)")


class AWingLandmarks:
    """98 WFLW landmarks (x, y in pixels of each image), flattened to 196 values per image."""

    key = "awing-wflw-4hg/resize-256"

    def __init__(self, device: str = "cpu", weights_path: str | None = None, *, net=None) -> None:
        self.device, self.requirements = device, _AWING
        self.net = (net if net is not None else load_awing(weights_path)).eval().to(device)

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import cv2
        import torch

        x = np.stack([cv2.resize(np.ascontiguousarray(im), (CROP, CROP), interpolation=cv2.INTER_LINEAR)
                      for im in images])
        with torch.inference_mode():
            heat = self.net(torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255.0).to(self.device))
        heat = heat[:, :-1].float().cpu().numpy()  # the last channel is the boundary map
        return np.stack([awing_points(h, *im.shape[:2]).reshape(-1) for h, im in zip(heat, images)])


register_asset(Asset(
    AWING_ASSET, "alignment_WFLW_4HG.pth",
    "https://github.com/xinntao/facexlib/releases/download/v0.1.0/alignment_WFLW_4HG.pth",
    used_by="lmd-awing (AWing FAN, 98 WFLW landmarks; VQFR's LMD script)",
    license="code Apache-2.0 (protossw512/AdaptiveWingLoss) and MIT (facexlib); the weights state no licence "
            "(trained on WFLW, research use)",
    caches=("scgan-bench",),
    source_note="facexlib v0.1.0 release asset (the file VQFR's script reads from experiments/pretrained_models/"
                "metric_weights/); no official sha256 is published: verified by trust-on-first-use"))
_AWING = needs(weights=(AWING_ASSET,))

METRICS.register("lmd-awing", MetricSpec(
    name="lmd-awing", factory=lambda device="cpu": LandmarkDistance(AWingLandmarks(device)), higher_is_better=False,
    version="1", summary="landmark distance (LMD) as VQFR's calculate_landmark_distance.py: AWing FAN, 98 WFLW points",
    needs_hr=True, kind="set", reference="paired", availability=_AWING, backend="awing",
    convention="AWing FAN (alignment_WFLW_4HG.pth) on the whole image resized to 256 px (cv2 bilinear), RGB/255; "
               "heatmap peak + quarter-pixel rule + 0.5, times size / 64; mean Euclidean distance over 98 points in "
               "pixels of the scored image; the LMD VQFR / CodeFormer print (at their 512 px)",
    caveat="in pixels of the scored image: at 64 px a distance is 1/8 of the same error at the papers' 512 px"))
