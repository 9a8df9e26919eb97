"""ImageNet backbones loaded through the weights manager (used by the t-SNE figure, Fig. 3)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .requirements import needs
from ..io.resize import resize_uint8

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNet101Features:
    """torchvision ResNet-101 (IMAGENET1K_V1) global-average-pooled 2048-d features of faces
    resized to 224 px (Pillow bicubic) and normalised with ImageNet statistics."""

    key = "resnet101-imagenet1k-v1-avgpool/224/v1"
    requirements = needs(modules=(("torchvision", "pip install torchvision"),), weights=("resnet101",))

    def __init__(self, device: str = "cpu", weights_path: Path | str | None = None) -> None:
        from torchvision.models import resnet101

        from .weights import load_state_dict

        sd, self.resolved = load_state_dict("resnet101", weights_path)
        net = resnet101(weights=None)
        net.load_state_dict(sd, strict=True)
        net.fc = torch.nn.Identity()
        self.net = net.eval().to(device)
        self.device = device

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        x = np.stack([resize_uint8(im, (224, 224), "bicubic") for im in images]).astype(np.float32) / 255.0
        x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
        t = torch.from_numpy(x).permute(0, 3, 1, 2).to(self.device)
        with torch.inference_mode():
            return self.net(t).double().cpu().numpy()
