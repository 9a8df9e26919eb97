"""The paper's degradations (Sec. 4.1): simple (bilinear or bicubic x4) and complex
``((I conv k) down_s + n) -> JPEG_q``.

Every random draw comes from a NumPy ``Generator`` seeded by :func:`derive_seed` from
``(global seed, dataset, image id)``: an image's LR bytes do not depend on run order, worker count
or machine, and the drawn parameters are returned so they can be saved per image.
"""
from __future__ import annotations

import hashlib
import io
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


def make_degradation(name: str) -> Degradation:
    """Build a registered degradation by name (``simple``, ``simple-bilinear``, ``complex``, ...)."""
    return DEGRADATIONS.get(name)()
