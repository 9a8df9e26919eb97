"""Resizing with Pillow's kernels (the released SCGAN test script resizes with PIL bicubic).

Pillow's filters are antialiased when shrinking (the kernel support scales with the factor, like
MATLAB's ``imresize``) and its bicubic kernel uses a = -0.5. Float images are resized per channel in
Pillow's 32-bit float mode, so no rounding happens until the caller quantises.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..errors import UsageError

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


def _filter(name: str) -> Image.Resampling:
    try:
        return FILTERS[name]
    except KeyError:
        raise UsageError(f"unknown resize filter {name!r}; allowed: {', '.join(FILTERS)}") from None


def resize_uint8(img: np.ndarray, size: tuple[int, int], method: str = "bicubic") -> np.ndarray:
    """Resize an ``HxWx3`` uint8 image to ``size = (height, width)`` with Pillow (rounds, clips)."""
    h, w = size
    return np.asarray(Image.fromarray(img, "RGB").resize((w, h), _filter(method)), dtype=np.uint8)


def resize_float(img: np.ndarray, size: tuple[int, int], method: str = "bicubic") -> np.ndarray:
    """Resize an ``HxWxC`` float image to ``size = (height, width)``; no clipping, float32 out."""
    h, w = size
    f = _filter(method)
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c], dtype=np.float32), "F")
                        .resize((w, h), f), dtype=np.float32) for c in range(img.shape[2])]
    return np.stack(chans, axis=2)


def square_crop_box(x: float, y: float, w: float, h: float, scale: float = 1.0
                    ) -> tuple[int, int, int, int]:
    """A square ``(left, top, right, bottom)`` box of side ``scale*max(w, h)`` centred on a box."""
    side = max(1, int(round(max(w, h) * scale)))
    cx, cy = x + w / 2.0, y + h / 2.0
    left = int(round(cx - side / 2.0))
    top = int(round(cy - side / 2.0))
    return left, top, left + side, top + side


def crop_with_padding(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Crop ``box`` from ``img``; parts outside the image replicate the nearest edge pixel."""
    left, top, right, bottom = box
    hh, ww = img.shape[:2]
    ys = np.clip(np.arange(top, bottom), 0, hh - 1)
    xs = np.clip(np.arange(left, right), 0, ww - 1)
    return np.ascontiguousarray(img[ys][:, xs])


def to_square(img: np.ndarray) -> np.ndarray:
    """Centre-crop an image to a square (the shorter side)."""
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return np.ascontiguousarray(img[top:top + s, left:left + s])


# ------------------------------------------------------------------ Pillow's resampling as matrices
#: Pillow's filters (``libImaging/Resample.c``): support and kernel, evaluated in double precision
def _box(x: float) -> float:
    return 1.0 if -0.5 < x <= 0.5 else 0.0


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


def _bicubic(x: float) -> float:
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


KERNELS = {"box": (0.5, _box), "bilinear": (1.0, _bilinear), "bicubic": (2.0, _bicubic), "lanczos": (3.0, _lanczos)}
#: Pillow's fixed-point precision for 8-bit images (``PRECISION_BITS = 32 - 8 - 2``)
PRECISION_BITS = 22


def pillow_weights(n_in: int, n_out: int, method: str = "bicubic") -> np.ndarray:
    """The ``n_out x n_in`` integer weights with which Pillow resamples one axis of an 8-bit image
    (``precompute_coeffs`` + ``normalize_coeffs_8bpc``: the kernel in double precision, normalised per
    output pixel, rounded half away from zero to ``PRECISION_BITS`` fixed point)."""
    if method not in KERNELS:
        raise UsageError(f"no exact port of Pillow's {method!r} filter; ported: {', '.join(KERNELS)}")
    support, kernel = KERNELS[method]
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support *= filterscale
    ss = 1.0 / filterscale
    out = np.zeros((n_out, n_in), np.int64)
    for xx in range(n_out):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), n_in) - xmin
        w = [kernel((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        total = 0.0
        for v in w:
            total += v
        for x, v in enumerate(w):
            v = v / total if total != 0.0 else v
            out[xx, xmin + x] = int(-0.5 + v * (1 << PRECISION_BITS)) if v < 0 else int(0.5 + v * (1 << PRECISION_BITS))
    return out


def _fixed_point_pass(x, weights):
    """One axis (the last) of Pillow's 8-bit pass: integer sum in float64 (exact), + half, >> bits, clip."""
    import torch

    acc = torch.matmul(x, weights.transpose(0, 1)) + float(1 << (PRECISION_BITS - 1))
    return torch.floor(acc / float(1 << PRECISION_BITS)).clamp_(0, 255)


def resize_uint8_torch(x, size: tuple[int, int], method: str = "bicubic"):
    """``N x C x H x W`` uint8 images (any device) resized to ``size = (height, width)`` exactly as
    :func:`resize_uint8` (Pillow) does, as float64 matrix products on the tensor's device: the horizontal
    pass, rounded to 8 bits, then the vertical one. Returns uint8.

    Only for resizes that keep the aspect ratio or change one axis (what the metrics do: square faces to
    square inputs): for others Pillow 13 may run the vertical pass first (python-pillow/Pillow#9549, when
    the height shrinks much more than the width), whose rounding differs, so they are refused."""
    import torch

    h, w = size
    n_h, n_w = x.shape[-2:]
    if n_h != h and n_w != w and h * n_w != w * n_h:
        raise UsageError(f"resize_uint8_torch: {n_h} x {n_w} -> {h} x {w} changes the aspect ratio, where Pillow's "
                         "pass order depends on its version; use resize_uint8")
    y = x.to(torch.float64)
    if n_w != w:
        y = _fixed_point_pass(y, torch.from_numpy(pillow_weights(n_w, w, method)).to(y))
    if n_h != h:
        vertical = torch.from_numpy(pillow_weights(n_h, h, method)).to(y)
        y = _fixed_point_pass(y.transpose(-1, -2), vertical).transpose(-1, -2)
    return y.to(torch.uint8)


def resized_batch(images: Sequence[np.ndarray], size: tuple[int, int], device: Any = "cpu", method: str = "bicubic"):
    """``HxWx3`` uint8 images -> one ``N x 3 x h x w`` uint8 tensor on ``device``, each resized exactly as
    :func:`resize_uint8` (Pillow) resizes it. Images of one size whose resize keeps the aspect ratio go
    to the device as uint8 and are resized there (:func:`resize_uint8_torch`: the same pixels, and a
    quarter of the bytes crossing to a GPU); any others are resized on the host by Pillow."""
    import torch

    h, w = size
    shapes = {im.shape[:2] for im in images}
    if len(shapes) == 1:
        (n_h, n_w), = shapes
        if (n_h, n_w) == (h, w) or h * n_w == w * n_h or n_h == h or n_w == w:
            x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
            x = x.to(device, non_blocking=True) if str(device) != "cpu" else x
            return resize_uint8_torch(x, size, method) if (n_h, n_w) != (h, w) else x
    x = torch.from_numpy(np.stack([resize_uint8(im, size, method) for im in images])).permute(0, 3, 1, 2)
    return x.to(device)
