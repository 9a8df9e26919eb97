"""The resolution bridge: the one place where a 16 px LR face reaches a face restorer's input size and
its output comes back to the benchmark's 64 px.

* into the network: the LR image as the 8-bit image it is (the runner's LR PNGs) resized to the
  network's input size. ``bicubic`` (default): Pillow bicubic (a = -0.5) on uint8, x32 for the 512 px
  restorers — DFDNet's own step and the design card's "16 px -> bicubic 512"; ``official``: each official
  script's own "already aligned face" resize (cv2 INTER_LINEAR on uint8 for GFPGANer, CodeFormer and
  RestoreFormer(++); DifFace's torch bicubic with antialiasing on the float image).
* out of the network: an exact k x k area average in float (``avg_pool2d``; = cv2 INTER_AREA for integer
  factors, no ringing). The runner then quantises once.

Native 16 -> 64 methods (Real-ESRGAN, LRGAN) use no bridge. Every adapter's fingerprint carries
:meth:`Bridge.describe`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where used: registering and listing need none of it
    import torch

from scgan_bench.errors import UsageError

MODES = ("bicubic", "official")
RESIZERS = ("pil-bicubic", "cv2-linear", "torch-bicubic-aa")


def resize_batch(x: torch.Tensor, size: int, resizer: str) -> torch.Tensor:
    """Resize an NCHW [0, 1] batch to ``size`` x ``size`` through uint8 with ``resizer`` (the runner's
    LR inputs are 8-bit values, so the conversion is exact for them)."""
    import torch

    from scgan_bench.run.superres import quantise

    imgs = quantise(x)
    if resizer == "pil-bicubic":
        from scgan_bench.io.resize import resize_uint8

        out = [resize_uint8(im, (size, size), "bicubic") for im in imgs]
    elif resizer == "cv2-linear":
        try:
            import cv2
        except ImportError:
            raise UsageError("bridge=official needs OpenCV (pip install opencv-python-headless): the official "
                             "scripts resize with cv2.INTER_LINEAR") from None
        out = [cv2.resize(im, (size, size), interpolation=cv2.INTER_LINEAR) for im in imgs]
    elif resizer == "torch-bicubic-aa":     # DifFace's sampler: on the float image, not re-quantised
        from torch.nn import functional as F

        t = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div_(255.0)
        return F.interpolate(t, size=(size, size), mode="bicubic", antialias=True).to(x.device)
    else:
        raise UsageError(f"unknown resizer {resizer!r}; allowed: {', '.join(RESIZERS)}")
    t = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
    return t.to(x.device)


@dataclass(frozen=True)
class Bridge:
    """16 px -> ``input_size`` (``mode``) and back to ``4 x 16`` px by area averaging."""

    input_size: int
    mode: str = "bicubic"
    official_resizer: str = "cv2-linear"
    official_script: str = ""
    #: the protocol's sizes (:mod:`scgan_bench.protocols`): SCGAN's 16 -> 64 unless a run says otherwise
    lr_size: int = 16
    out_size: int = 64

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"bridge={self.mode!r}: allowed {', '.join(MODES)}")

    @property
    def resizer(self) -> str:
        return "pil-bicubic" if self.mode == "bicubic" else self.official_resizer

    def up(self, lr: torch.Tensor) -> torch.Tensor:
        if lr.shape[-1] == lr.shape[-2] == self.input_size:   # already the network's size (bfr-512)
            return lr.float()
        return resize_batch(lr, self.input_size, self.resizer)

    def down(self, y: torch.Tensor, out_size: int) -> torch.Tensor:
        from torch.nn import functional as F

        if y.shape[-1] % out_size or y.shape[-2] % out_size:
            raise ValueError(f"network output {tuple(y.shape[-2:])} is not a multiple of {out_size}")
        k = y.shape[-1] // out_size
        return F.avg_pool2d(y, k) if k > 1 else y

    def describe(self) -> dict[str, object]:
        up = ("none (the input is the network's size)" if self.lr_size == self.input_size else
              f"{self.resizer} uint8 {self.lr_size}->{self.input_size}"
              + (f" (as {self.official_script})" if self.mode == "official" and self.official_script else ""))
        down = ("none" if self.out_size == self.input_size else
                f"area (avg_pool {self.input_size // self.out_size}x) {self.input_size}->{self.out_size} in float")
        return {"mode": self.mode, "up": up, "down": down}
