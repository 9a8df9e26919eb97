"""PSNR and SSIM between SR and HR images.

Convention (stated in every table): uint8 images, data range 255, **no border crop** (faces are 64 px
and the whole face is scored). ``psnr`` / ``ssim`` use RGB (SSIM averaged over the three channels);
``psnr-y`` / ``ssim-y`` use the ITU-R BT.601 luma Y in [16, 235] (the common SR convention, as in
BasicSR). SSIM follows Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03,
population covariance; it is scikit-image's ``structural_similarity`` with those settings.
Identical images give PSNR = inf.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..interfaces import MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs

_SKIMAGE = needs(modules=(("skimage", "pip install scikit-image"),))  # its SSIM; its version is in the cache key


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB uint8 image, float64 in [16, 235]."""
    x = img.astype(np.float64)
    return 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0


def _check_pair(sr: np.ndarray, hr: np.ndarray) -> None:
    if sr.shape != hr.shape:
        raise ValueError(f"SR shape {sr.shape} differs from HR shape {hr.shape}")


def psnr(sr: np.ndarray, hr: np.ndarray, *, y_only: bool = False) -> float:
    _check_pair(sr, hr)
    a, b = (rgb_to_y(sr), rgb_to_y(hr)) if y_only else (sr, hr)
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0.0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def ssim(sr: np.ndarray, hr: np.ndarray, *, y_only: bool = False) -> float:
    from skimage.metrics import structural_similarity

    _check_pair(sr, hr)
    kw = dict(data_range=255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    if y_only:
        return float(structural_similarity(rgb_to_y(hr), rgb_to_y(sr), **kw))
    return float(structural_similarity(hr, sr, channel_axis=2, **kw))


@dataclass(frozen=True)
class Fidelity:
    """A paired metric wrapping :func:`psnr` or :func:`ssim`."""

    fn: str
    y_only: bool

    def score_pairs(self, sr: Sequence[np.ndarray], hr: Sequence[np.ndarray]) -> list[float]:
        f = psnr if self.fn == "psnr" else ssim
        return [f(s, h, y_only=self.y_only) for s, h in zip(sr, hr, strict=True)]


for _name, _fn, _y, _summary in (
        ("psnr", "psnr", False, "PSNR (dB) on RGB, range 255, no border crop"),
        ("ssim", "ssim", False, "SSIM (Wang 2004, Gaussian 11x11 sigma 1.5) on RGB, mean of channels"),
        ("psnr-y", "psnr", True, "PSNR (dB) on BT.601 luma Y, no border crop"),
        ("ssim-y", "ssim", True, "SSIM on BT.601 luma Y, no border crop")):
    METRICS.register(_name, MetricSpec(
        name=_name, factory=lambda device="cpu", _f=_fn, _yy=_y: Fidelity(_f, _yy), summary=_summary,
        higher_is_better=True, version="1", needs_hr=True, availability=_SKIMAGE,
        convention=("Y (BT.601)" if _y else "RGB") + ", uint8, data range 255, no border crop"))
