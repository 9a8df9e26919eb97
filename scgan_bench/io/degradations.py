"""The paper's degradations (Sec. 4.1): simple (bilinear or bicubic x4) and complex
``((I conv k) down_s + n) -> JPEG_q``; GFPGAN's (the blind-face-restoration test sets' synthetic pairs).

Every random draw comes from a NumPy ``Generator`` seeded by :func:`derive_seed` from
``(global seed, dataset, image id)``: an image's LR bytes do not depend on run order, worker count
or machine, and the drawn parameters are returned so they can be saved per image.
"""
from __future__ import annotations

import hashlib
import io
import math
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter1d

from ..errors import UsageError
from ..registry import Registry
from .resize import resize_float, resize_uint8


def derive_seed(global_seed: int, dataset: str, image_id: str) -> int:
    """A 63-bit seed from ``sha256("{global_seed}/{dataset}/{image_id}")``."""
    digest = hashlib.sha256(f"{global_seed}/{dataset}/{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@runtime_checkable
class Degradation(Protocol):
    """Turns an HR ``HxWx3`` uint8 image into an LR one, ``scale`` times smaller."""

    name: str
    scale: int

    def config(self) -> dict[str, Any]:
        """Everything that determines the output (enters the cache key)."""

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        """Draw this image's parameters (JSON-serialisable)."""

    def apply(self, hr: np.ndarray, params: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        """Degrade ``hr`` with ``params``; ``rng`` continues the same stream (for noise)."""


def degrade(deg: Degradation, hr: np.ndarray, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Draw parameters and degrade ``hr`` from one seeded stream; returns ``(lr, params)``."""
    h, w = hr.shape[:2]
    if h % deg.scale or w % deg.scale:
        raise ValueError(f"HR size {w}x{h} is not divisible by the scale {deg.scale}")
    rng = np.random.Generator(np.random.PCG64(seed))
    params = deg.draw(rng)
    lr = deg.apply(hr, params, rng)
    return lr, {"seed": seed, **params}


def _check_range(name: str, lo: float, hi: float) -> None:
    if not (0 < lo <= hi):
        raise UsageError(f"{name} range must satisfy 0 < low <= high, got [{lo}, {hi}]")


_KERNELS = ("bilinear", "bicubic")


@dataclass(frozen=True)
class SimpleDegradation:
    """Bilinear or bicubic x``scale`` downsampling (LS3D-W protocol), kernel drawn per image.

    Pillow's antialiased filters are used on the uint8 image (see :mod:`scgan_bench.io.resize`).
    """

    kernels: tuple[str, ...] = _KERNELS
    scale: int = 4
    name: str = "simple"
    version: int = 1

    def __post_init__(self) -> None:
        bad = [k for k in self.kernels if k not in _KERNELS]
        if not self.kernels or bad:
            raise UsageError(f"simple degradation kernels must be from {_KERNELS}, got {self.kernels}")

    def config(self) -> dict[str, Any]:
        return {**asdict(self), "kernels": list(self.kernels)}

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"kernel": self.kernels[int(rng.integers(len(self.kernels)))]}

    def apply(self, hr: np.ndarray, params: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        h, w = hr.shape[:2]
        return resize_uint8(hr, (h // self.scale, w // self.scale), params["kernel"])


@dataclass(frozen=True)
class ComplexDegradation:
    """``((I conv k_sigma) down + n_delta) -> JPEG_q``, each parameter uniform in its range.

    * blur: isotropic Gaussian, sigma ~ U[0.5, 8] px at HR, truncated at 3 sigma, mirror borders;
    * down: bilinear or bicubic x4 (Pillow, antialiased), kernel drawn uniformly, in float;
    * noise: AWGN, delta ~ U[1, 25] on the 0-255 scale, independent per RGB channel, then
      rounded and clipped to uint8;
    * JPEG: quality q ~ U{30..95} (Pillow/libjpeg, 4:2:0 chroma subsampling), decoded back.
    """

    blur_sigma: tuple[float, float] = (0.5, 8.0)
    kernels: tuple[str, ...] = _KERNELS
    noise_sigma: tuple[float, float] = (1.0, 25.0)
    jpeg_quality: tuple[int, int] = (30, 95)
    blur_truncate: float = 3.0
    scale: int = 4
    name: str = "complex"
    version: int = 1

    def __post_init__(self) -> None:
        _check_range("blur sigma", *self.blur_sigma)
        _check_range("noise sigma", *self.noise_sigma)
        lo, hi = self.jpeg_quality
        if not (1 <= lo <= hi <= 100):
            raise UsageError(f"JPEG quality range must be within 1..100, got [{lo}, {hi}]")
        if not self.kernels or any(k not in _KERNELS for k in self.kernels):
            raise UsageError(f"kernels must be from {_KERNELS}, got {self.kernels}")

    def config(self) -> dict[str, Any]:
        cfg = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        sigma = float(rng.uniform(*self.blur_sigma))
        kernel = self.kernels[int(rng.integers(len(self.kernels)))]
        noise = float(rng.uniform(*self.noise_sigma))
        quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
        return {"blur_sigma": sigma, "kernel": kernel, "noise_sigma": noise, "jpeg_quality": quality}

    def apply(self, hr: np.ndarray, params: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        h, w = hr.shape[:2]
        x = hr.astype(np.float64)
        s = params["blur_sigma"]
        x = gaussian_filter1d(x, s, axis=0, mode="reflect", truncate=self.blur_truncate)
        x = gaussian_filter1d(x, s, axis=1, mode="reflect", truncate=self.blur_truncate)
        x = resize_float(x, (h // self.scale, w // self.scale), params["kernel"]).astype(np.float64)
        x = x + rng.standard_normal(x.shape) * params["noise_sigma"]
        q = np.clip(np.rint(x), 0, 255).astype(np.uint8)
        return jpeg_roundtrip(q, params["jpeg_quality"])


def bivariate_gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """A ``size`` x ``size`` Gaussian kernel with standard deviations ``sigma_x`` / ``sigma_y`` along axes
    rotated by ``theta`` (radians), summing to 1; pixel offsets ``-(size // 2) .. size // 2``."""
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    cov = rot @ np.diag([sigma_x ** 2, sigma_y ** 2]) @ rot.T
    inv = np.linalg.inv(cov)
    ax = np.arange(size) - size // 2
    xx, yy = np.meshgrid(ax, ax)
    k = np.exp(-0.5 * (inv[0, 0] * xx * xx + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy * yy))
    return k / k.sum()


@dataclass(frozen=True)
class GFPGANDegradation:
    """GFPGAN's synthetic low-quality faces (``gfpgan/data/ffhq_degradation_dataset.py`` with the ranges of
    ``options/train_gfpgan_v1.yml``, TencentARC/GFPGAN), the degradation behind CelebA-Test-like sets:

    * blur: a 41 x 41 Gaussian kernel, isotropic or anisotropic with probability 0.5 each; sigma_x (and,
      anisotropic, sigma_y) ~ U[0.1, 10] px, rotation ~ U[-pi, pi]; OpenCV ``filter2D`` (mirrored borders);
    * downsample: r ~ U[0.8, 8], bilinear (``cv2.INTER_LINEAR``) to ``floor(size / r)``;
    * noise: AWGN, sigma ~ U[0, 20] on the 0-255 scale, independent per pixel and channel, clipped to [0, 1];
    * JPEG: quality ``int(U[60, 100])`` (OpenCV's encoder), decoded back;
    * resize: bilinear to ``size / scale`` (``scale`` 1, ``gfpgan``: the input size, as GFPGAN trains and
      tests; ``gfpgan-x4``: a quarter of it, for the 16 -> 64 protocol), rounded to 8 bits.

    In float32 with OpenCV, as the official code computes it; its training-only colour jitter and grey
    conversion are left out. Parameters are drawn from the image's seeded stream (:func:`derive_seed`).
    """

    blur_sigma: tuple[float, float] = (0.1, 10.0)
    kernel_size: int = 41
    aniso_prob: float = 0.5
    downsample: tuple[float, float] = (0.8, 8.0)
    noise_sigma: tuple[float, float] = (0.0, 20.0)
    jpeg_quality: tuple[int, int] = (60, 100)
    scale: int = 1
    name: str = "gfpgan"
    version: int = 1

    def __post_init__(self) -> None:
        _check_range("blur sigma", *self.blur_sigma)
        _check_range("downsample", *self.downsample)
        lo, hi = self.noise_sigma
        if not 0 <= lo <= hi:
            raise UsageError(f"noise sigma range must satisfy 0 <= low <= high, got [{lo}, {hi}]")
        lo, hi = self.jpeg_quality
        if not (1 <= lo <= hi <= 100):
            raise UsageError(f"JPEG quality range must be within 1..100, got [{lo}, {hi}]")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise UsageError(f"blur kernel size must be odd and positive, got {self.kernel_size}")

    def config(self) -> dict[str, Any]:
        cfg = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        iso = bool(rng.uniform() >= self.aniso_prob)
        sigma_x = float(rng.uniform(*self.blur_sigma))
        sigma_y = sigma_x if iso else float(rng.uniform(*self.blur_sigma))
        theta = 0.0 if iso else float(rng.uniform(-math.pi, math.pi))
        return {"kernel": "iso" if iso else "aniso", "sigma_x": sigma_x, "sigma_y": sigma_y, "theta": theta,
                "downsample": float(rng.uniform(*self.downsample)), "noise_sigma": float(rng.uniform(*self.noise_sigma)),
                "jpeg_quality": int(rng.uniform(*self.jpeg_quality))}

    def apply(self, hr: np.ndarray, params: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        cv2 = _opencv("the gfpgan degradation")
        h, w = hr.shape[:2]
        x = hr.astype(np.float32) / np.float32(255.0)
        k = bivariate_gaussian_kernel(self.kernel_size, params["sigma_x"], params["sigma_y"], params["theta"])
        x = cv2.filter2D(x, -1, k)
        r = params["downsample"]
        x = cv2.resize(x, (int(w // r), int(h // r)), interpolation=cv2.INTER_LINEAR)
        noise = rng.standard_normal(x.shape).astype(np.float32) * np.float32(params["noise_sigma"] / 255.0)
        x = np.clip(x + noise, 0, 1)
        q8 = np.clip(np.rint(x * np.float32(255.0)), 0, 255).astype(np.uint8)   # = OpenCV's own float -> uint8
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(q8[..., ::-1]),
                               [int(cv2.IMWRITE_JPEG_QUALITY), int(params["jpeg_quality"])])
        if not ok:
            raise ValueError("OpenCV could not encode the image as JPEG")
        x = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / np.float32(255.0)
        x = cv2.resize(np.ascontiguousarray(x), (w // self.scale, h // self.scale), interpolation=cv2.INTER_LINEAR)
        return np.clip(np.rint(x * np.float32(255.0)), 0, 255).astype(np.uint8)


def _opencv(what: str):
    try:
        import cv2
    except ImportError:
        raise UsageError(f"{what} needs OpenCV (pip install opencv-python-headless), as the official code") from None
    return cv2


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode ``img`` as baseline JPEG (4:2:0) at ``quality`` with Pillow and decode it again."""
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format="JPEG", quality=int(quality), subsampling="4:2:0",
                                     optimize=False)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


DEGRADATIONS: Registry = Registry("degradation")
DEGRADATIONS.register("simple", SimpleDegradation)
DEGRADATIONS.register("simple-bilinear", lambda: SimpleDegradation(kernels=("bilinear",)))
DEGRADATIONS.register("simple-bicubic", lambda: SimpleDegradation(kernels=("bicubic",)))
DEGRADATIONS.register("complex", ComplexDegradation)
DEGRADATIONS.register("gfpgan", GFPGANDegradation)
DEGRADATIONS.register("gfpgan-x4", lambda: GFPGANDegradation(scale=4, name="gfpgan-x4"))


def make_degradation(name: str) -> Degradation:
    """Build a registered degradation by name (``simple``, ``simple-bilinear``, ``complex``, ...)."""
    return DEGRADATIONS.get(name)()
