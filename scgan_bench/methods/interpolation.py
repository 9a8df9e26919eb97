"""Interpolation baselines: bicubic (the paper's "Bicubic Interpolation"), bilinear and nearest.

Pillow's kernels, as in the released SCGAN test script (``Image.resize(..., BICUBIC)``; bicubic
uses a = -0.5). Upscaling runs in float per channel, so the only rounding is the runner's single
quantisation of the SR output to uint8.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

if TYPE_CHECKING:
    import torch

from ..interfaces import MethodSpec
from ..registries import METHODS
from ..io.resize import resize_float


@dataclass
class Interpolation:
    """Upscale by ``scale`` with one of Pillow's filters."""

    name: str
    filter: str
    scale: int = 4

    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        import torch

        if lr.ndim != 4 or lr.shape[1] != 3:
            raise ValueError(f"{self.name}: expected an Nx3xHxW tensor, got {tuple(lr.shape)}")
        x = lr.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).numpy()
        h, w = x.shape[1] * self.scale, x.shape[2] * self.scale
        out = np.stack([resize_float(img, (h, w), self.filter) for img in x])
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(lr.device)

    def fingerprint(self) -> Mapping[str, Any]:
        import PIL

        return {"method": self.name, "filter": self.filter, "scale": self.scale,
                "impl": "pillow-float", "pillow": PIL.__version__, "version": 1}


for _name, _filter, _summary in (
        ("bicubic", "bicubic", "Bicubic interpolation x4 (Pillow, a=-0.5), the paper's baseline"),
        ("bilinear", "bilinear", "Bilinear interpolation x4 (Pillow): sanity baseline"),
        ("nearest", "nearest", "Nearest-neighbour x4: sanity baseline (pixel replication)")):
    METHODS.register(_name, MethodSpec(
        name=_name, summary=_summary,
        factory=lambda device="cpu", _n=_name, _f=_filter: Interpolation(_n, _f)))
