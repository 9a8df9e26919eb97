"""Landmark distance (``lmd``): the mean Euclidean distance, in pixels at the 64 px output size, between the
68 landmarks found on the SR image and on its HR image by a heatmap landmark network.

Network: face-alignment's 2DFAN-4 (Bulat & Tzimiropoulos 2017; BSD-3-Clause), the heatmap network face
restoration papers use for LMD, written in-project (:mod:`scgan_bench.networks.fan`). Its weights are the
face-alignment 1.x release ``2DFAN4-11f355bf06.pth.tar``: a plain state dict, loadable with
``weights_only=True`` and checked against the sha256 prefix in its name (later releases ship TorchScript
archives, which cannot be loaded that safely). Protocol, face-alignment's with one documented change:
the face box is the whole (aligned) image instead of a detection (nothing can fail to be found): centre
``(s/2, s/2 - 0.12 s)``, scale ``2 s / 195``, the 256 px crop taken by bilinear sampling (zeros outside),
RGB in [0, 1]; each of the 68 heatmaps decoded at its maximum plus a quarter pixel towards the larger
neighbour, minus half a pixel, then mapped back to the image, kept as floats (face-alignment truncates
them to integers). Landmarks of SR and HR come from the same procedure; points are the 68 of 300W.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from ..interfaces import FeatureExtractor, MetricSpec
from ..registries import METRICS
from ..requirements import needs
from ..weights import Asset, register_asset

if TYPE_CHECKING:
    import torch

FAN_ASSET = "fan-2dfan4"
REFERENCE_SCALE = 195.0
CROP, HEATMAP = 256, 64


def box_of(size: int) -> tuple[np.ndarray, float]:
    """face-alignment's centre and scale for the box ``(0, 0, size, size)``."""
    return np.array([size / 2.0, size / 2.0 - 0.12 * size]), 2.0 * size / REFERENCE_SCALE


def crop_256(images: Sequence[np.ndarray]) -> "torch.Tensor":
    """Each face's 256 px crop (face-alignment's ``crop``: image point p = (q - 128) h / 256 + centre,
    h = 200 scale), bilinear, zeros outside; N x 3 x 256 x 256 in [0, 1]."""
    import torch
    import torch.nn.functional as F

    out = []
    for im in images:
        s = im.shape[0]
        centre, scale = box_of(s)
        h = 200.0 * scale
        q = np.arange(CROP, dtype=np.float64)
        px, py = (q - CROP / 2) * h / CROP + centre[0], (q - CROP / 2) * h / CROP + centre[1]
        gx, gy = np.meshgrid((2 * px + 1) / s - 1, (2 * py + 1) / s - 1)
        grid = torch.from_numpy(np.stack([gx, gy], axis=-1)).float()[None]
        x = torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None].float() / 255.0
        out.append(F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0])
    return torch.stack(out)


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
    from ..weights import load_state_dict, strip_prefix

    sd, r = load_state_dict(FAN_ASSET, path)
    return load_strict(FAN(4, width=width), strip_prefix(sd, "module."), r.path, "2DFAN-4")


class FANLandmarks:
    """68 landmarks (x, y in pixels of each image), flattened to 136 values per image."""

    key = "fan-2dfan4/whole-image-box"

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
    version="1", summary="landmark distance (LMD): mean pixel distance of 2DFAN-4's 68 landmarks, SR vs HR",
    needs_hr=True, kind="set", reference="paired", availability=_FAN, backend="fan",
    convention="2DFAN-4 on the whole aligned image as the face box (face-alignment's centre/scale rule), "
               "heatmap peak + quarter-pixel rule, float points; mean Euclidean distance over 68 points in pixels "
               "at 64 px"))
