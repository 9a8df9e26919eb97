"""DISTS (Ding et al., TPAMI 2020), written for its official files: torchvision's ImageNet VGG16 with its
max-pools replaced by L2 pooling (a Hanning-window 3 x 3 low-pass of the squared features, stride 2), and
the learned per-channel weights ``alpha`` / ``beta`` of ``DISTS_pytorch/weights.pt``. Module names follow
the official ``DISTS_pt.py`` (``stage1`` .. ``stage5`` holding VGG16's ``features`` indices)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: VGG16 ``features`` indices of each stage; 4, 9, 16 and 23 (the max-pools) become L2 pooling
STAGES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
CHANNELS = (3, 64, 128, 256, 512, 512)


#: VGG16's ``features`` (configuration D): conv 3x3 + ReLU pairs, "M" a 2 x 2 max-pool
VGG16_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` with the same indices (``features.0`` .. ``features.30``)."""
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG16_D:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            cin = int(v)
    return nn.Sequential(*layers)


class L2Pooling(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        a = np.hanning(5)[1:-1]
        g = torch.tensor(a[:, None] * a[None, :], dtype=torch.float32)
        self.register_buffer("filter", (g / g.sum())[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x ** 2, self.filter, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


class DISTSNet(nn.Module):
    """``net(x, y)``: the DISTS distance of RGB images in [0, 1] (N x 3 x H x W), one value per pair."""

    def __init__(self) -> None:
        super().__init__()
        features = vgg16_features()
        for k, (a, b) in enumerate(STAGES, start=1):
            stage = nn.Sequential()
            for i in range(a, b):
                stage.add_module(str(i), L2Pooling(CHANNELS[k - 1]) if i in (4, 9, 16, 23) else features[i])
            setattr(self, f"stage{k}", stage)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, -1, 1, 1))
        self.alpha = nn.Parameter(torch.zeros(1, sum(CHANNELS), 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, sum(CHANNELS), 1, 1))

    def load_official(self, vgg16_state: dict, weights: dict) -> None:
        """torchvision's ``vgg16-397923af.pth`` (its ``features.*``) and DISTS' ``weights.pt``, strictly."""
        conv = {}
        for k in range(1, 6):
            for name, _ in getattr(self, f"stage{k}").named_parameters():
                conv[f"stage{k}.{name}"] = vgg16_state[f"features.{name}"]
        own = {n: p for n, p in self.named_parameters() if n not in ("alpha", "beta")}
        if set(own) != set(conv):
            raise KeyError(f"VGG16 layers {sorted(set(own) ^ set(conv))[:4]}")
        with torch.no_grad():
            for n, p in own.items():
                if p.shape != conv[n].shape:
                    raise ValueError(f"{n}: {tuple(conv[n].shape)} for {tuple(p.shape)}")
                p.copy_(conv[n])
            for n in ("alpha", "beta"):
                if tuple(weights[n].shape) != tuple(getattr(self, n).shape):
                    raise ValueError(f"{n}: {tuple(weights[n].shape)} for {tuple(getattr(self, n).shape)}")
                getattr(self, n).copy_(weights[n])

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.mean) / self.std
        out = [x]
        for k in range(1, 6):
            h = getattr(self, f"stage{k}")(h)
            out.append(h)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        f0, f1 = self._features(x), self._features(y)
        w = self.alpha.sum() + self.beta.sum()
        alpha, beta = torch.split(self.alpha / w, CHANNELS, dim=1), torch.split(self.beta / w, CHANNELS, dim=1)
        c1 = c2 = 1e-6
        d1 = d2 = 0
        for k in range(len(CHANNELS)):
            mx, my = f0[k].mean([2, 3], keepdim=True), f1[k].mean([2, 3], keepdim=True)
            d1 = d1 + (alpha[k] * (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)).sum(1, keepdim=True)
            vx, vy = ((f0[k] - mx) ** 2).mean([2, 3], keepdim=True), ((f1[k] - my) ** 2).mean([2, 3], keepdim=True)
            cov = (f0[k] * f1[k]).mean([2, 3], keepdim=True) - mx * my
            d2 = d2 + (beta[k] * (2 * cov + c2) / (vx + vy + c2)).sum(1, keepdim=True)
        return (1 - (d1 + d2)).reshape(-1)
