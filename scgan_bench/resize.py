"""Resizing with Pillow's kernels (the released SCGAN test script resizes with PIL bicubic).

Pillow's filters are antialiased when shrinking (the kernel support scales with the factor, like
MATLAB's ``imresize``) and its bicubic kernel uses a = -0.5. Float images are resized per channel in
Pillow's 32-bit float mode, so no rounding happens until the caller quantises.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .errors import UsageError

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
