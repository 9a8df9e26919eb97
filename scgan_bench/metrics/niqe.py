"""NIQE (Mittal et al., IEEE SPL 2013), implemented here to agree with BasicSR / pyiqa, with the
standard pristine model (``niqe_pris_params.npz``) resolved by the weights manager.

Conventions as in pyiqa's ``calculate_niqe`` (its default, and MATLAB's ``rgb2gray``): luma
Y = 0.299 R + 0.587 G + 0.114 B of the uint8 image, rounded, in [0, 255]; MSCN with the model's 7x7 Gaussian window (``scipy.ndimage.convolve``, nearest border);
the window rounded to float32 as pyiqa applies it; 96x96 blocks at scale 1 and 48x48 at scale 2 after a MATLAB-style antialiased bicubic halving;
36 AGGD features per block; distance to the pristine MVG with ``pinv`` of the mean covariance.

64x64 faces hold no 96x96 block (pyiqa issue #43), so the 64 px protocol must be chosen:
* ``niqe`` (default): the SR image is upsampled x3 to 192x192 (Pillow bicubic) and scored with the
  standard 96x96 blocks (2x2 blocks);
* ``niqe-b32``: the native 64 px image with 32x32 blocks (2x2 blocks) and the same pristine model.
Neither matches the paper's unstated setting; both are labelled in every table.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from ..interfaces import MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs
from ..io.resize import resize_uint8


def _shape_grid() -> np.ndarray:
    """The AGGD shape grid 0.2:0.001:10, built exactly as pyiqa builds it (float32 torch arange)."""
    import torch

    return torch.arange(0.2, 10 + 0.001, 0.001).double().numpy()


@lru_cache(maxsize=1)
def _gamma_table() -> tuple[np.ndarray, np.ndarray]:
    """The shape grid and its ratio r(gamma), built on first use (not on import)."""
    from scipy.special import gammaln

    gam = _shape_grid()
    return gam, np.exp(2 * gammaln(2.0 / gam) - (gammaln(1.0 / gam) + gammaln(3.0 / gam)))


def _aggd(block: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit: (alpha, beta_left, beta_right)."""
    from scipy.special import gammaln

    x = block.ravel()
    left = np.sqrt(np.mean(x[x < 0] ** 2))
    right = np.sqrt(np.mean(x[x > 0] ** 2))
    gammahat = left / right
    rhat = np.mean(np.abs(x)) ** 2 / np.mean(x ** 2)
    rhatnorm = rhat * (gammahat ** 3 + 1) * (gammahat + 1) / (gammahat ** 2 + 1) ** 2
    gam, r_gam = _gamma_table()
    alpha = gam[np.argmin(np.abs(r_gam - rhatnorm))]
    k = np.sqrt(np.exp(gammaln(1.0 / alpha) - gammaln(3.0 / alpha)))
    return float(alpha), float(left * k), float(right * k)


def _block_features(block: np.ndarray) -> list[float]:
    from scipy.special import gammaln

    alpha, bl, br = _aggd(block)
    feats = [alpha, (bl + br) / 2.0]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a, l, r = _aggd(block * np.roll(block, shift, axis=(0, 1)))
        mean = (r - l) * np.exp(gammaln(2.0 / a) - gammaln(1.0 / a))
        feats += [a, mean, l, r]
    return feats


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return ((1.5 * ax ** 3 - 2.5 * ax ** 2 + 1) * (ax <= 1)
            + (-0.5 * ax ** 3 + 2.5 * ax ** 2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _imresize_axis(img: np.ndarray, scale: float, axis: int) -> np.ndarray:
    """MATLAB ``imresize`` (bicubic, antialiased) along one axis, float64, symmetric padding."""
    in_len = img.shape[axis]
    out_len = int(np.ceil(in_len * scale))
    width = 4.0 / scale if scale < 1 else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    p = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(p)[None, :]
    dist = u[:, None] - idx
    w = scale * _cubic(dist * scale) if scale < 1 else _cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    idx = aux[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    moved = np.moveaxis(img, axis, 0)
    out = np.einsum("op,op...->o...", w, moved[idx])
    return np.moveaxis(out, 0, axis)


def matlab_imresize(img: np.ndarray, scale: float) -> np.ndarray:
    return _imresize_axis(_imresize_axis(img, scale, 0), scale, 1)


def niqe_y(y: np.ndarray, mu_pris: np.ndarray, cov_pris: np.ndarray, window: np.ndarray,
           block: int = 96) -> float:
    """NIQE of a luma image (float, 0-255), block size ``block`` at scale 1."""
    from scipy.ndimage import convolve

    h, w = y.shape
    nh, nw = h // block, w // block
    if nh == 0 or nw == 0:
        raise ValueError(f"image {w}x{h} holds no {block}x{block} block")
    img = y[: nh * block, : nw * block].astype(np.float64)
    dist = []
    for scale in (1, 2):
        mu = convolve(img, window, mode="nearest")
        sigma = np.sqrt(np.abs(convolve(np.square(img), window, mode="nearest") - np.square(mu)))
        norm = (img - mu) / (sigma + 1)
        b = block // scale
        dist.append(np.array([_block_features(norm[i * b:(i + 1) * b, j * b:(j + 1) * b])
                              for j in range(nw) for i in range(nh)]))
        if scale == 1:
            img = matlab_imresize(img / 255.0, 0.5) * 255.0
    feats = np.concatenate(dist, axis=1)
    mu_d = np.nanmean(feats, axis=0)
    clean = feats[~np.isnan(feats).any(axis=1)]
    cov_d = np.cov(clean, rowvar=False)
    inv = np.linalg.pinv((cov_pris + cov_d) / 2.0)
    diff = mu_pris - mu_d
    return float(np.sqrt(np.squeeze(diff @ inv @ diff.T)))


#: pyiqa's YIQ luma weights, which it builds as float32 before casting to the image's dtype; using the
#: same values keeps the rounded luma (and so NIQE, which is sensitive to it) identical.
_YIQ_Y = np.array([0.299, 0.587, 0.114], dtype=np.float32).astype(np.float64)


def luma(img: np.ndarray) -> np.ndarray:
    """YIQ luma of an RGB uint8 image, rounded, float64 in [0, 255] (pyiqa's default for NIQE)."""
    return np.round((img.astype(np.float64) / 255.0) @ _YIQ_Y * 255.0)


@lru_cache(maxsize=4)
def _pristine(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from ..assets.safeload import loading_into

    with loading_into("niqe-pris-params", path, "NIQE's pristine model (an .npz of gaussian_window, "
                      "mu_pris_param, cov_pris_param)"), np.load(path, allow_pickle=False) as z:
        # pyiqa applies its 7x7 Gaussian (identical to the file's to 1e-17) in float32; rounding the
        # window the same way makes the MSCN maps, and so NIQE, agree with pyiqa to ~1e-7.
        window = z["gaussian_window"].astype(np.float32).astype(np.float64)
        return z["mu_pris_param"], z["cov_pris_param"], window


def pristine_params(path: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from ..assets.weights import resolve

    return _pristine(str(resolve("niqe-pris-params", path).path))


@dataclass
class NIQE:
    upsample: int = 3
    block: int = 96
    params_path: str | None = None

    def __post_init__(self) -> None:
        self.mu, self.cov, self.window = pristine_params(self.params_path)

    def score_images(self, sr: Sequence[np.ndarray]) -> list[float]:
        out = []
        for im in sr:
            if self.upsample != 1:
                h, w = im.shape[:2]
                im = resize_uint8(im, (h * self.upsample, w * self.upsample), "bicubic")
            out.append(niqe_y(luma(im), self.mu, self.cov, self.window, self.block))
        return out


_AVAIL = needs(weights=("niqe-pris-params",))
METRICS.register("niqe", MetricSpec(
    name="niqe", factory=lambda device="cpu": NIQE(upsample=3, block=96), higher_is_better=False,
    version="1", summary="NIQE on the SR image upsampled x3 to 192 px, standard 96 px blocks",
    needs_hr=False, availability=_AVAIL, backend="niqe-basicsr",
    convention="YIQ luma, 64 px -> x3 bicubic -> 96x96 blocks (2x2)"))
METRICS.register("niqe-b32", MetricSpec(
    name="niqe-b32", factory=lambda device="cpu": NIQE(upsample=1, block=32), higher_is_better=False,
    version="1", summary="NIQE on the native 64 px SR image with 32x32 blocks",
    needs_hr=False, availability=_AVAIL, backend="niqe-basicsr",
    convention="YIQ luma, native 64 px, 32x32 blocks (2x2)"))
