"""``ground-truth``: a pseudo-method that returns the HR image, so every metric can be read on HR
itself (Table 7's "Ground Truth" column; FID of HR vs HR is 0, PSNR is inf). Real-world sets have no
HR, so it is not applicable there."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import torch

from ..interfaces import MethodSpec
from ..registries import METHODS


@dataclass
class GroundTruth:
    name: str = "ground-truth"
    scale: int = 4

    def upscale_reference(self, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if hr.shape[-2:] != (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale):
            raise ValueError(f"HR {tuple(hr.shape)} is not x{self.scale} of LR {tuple(lr.shape)}")
        return hr.clone()

    def fingerprint(self) -> Mapping[str, Any]:
        return {"method": self.name, "version": 1}


METHODS.register("ground-truth", MethodSpec(
    name="ground-truth", factory=lambda device="cpu": GroundTruth(),
    summary="the HR image itself (pseudo-method; synthetic sets only)", pseudo=True))
