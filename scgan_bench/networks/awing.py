"""AWing's FAN (Wang, Bo & Fuxin, "Adaptive Wing Loss for Robust Face Alignment via Heatmap
Regression", ICCV 2019; Apache-2.0), the 98-point WFLW landmark network of facexlib's ``awing_fan``
(``alignment_WFLW_4HG.pth``) that VQFR's ``calculate_landmark_distance.py`` runs for LMD; written with
the checkpoint's module names.

Differences from 2DFAN-4 (:mod:`.fan`): CoordConv layers (``conv1`` on the 256 px input and one
``coordconv`` at the entry of each hourglass) that append coordinate channels (x along rows, y along
columns, both in [-1, 1]; r = their norm over its maximum) and, from the second hourglass on, the
coordinates where the previous stack's boundary heatmap exceeds 0.05; average pooling in the
hourglasses; 98 landmark heatmaps + 1 boundary heatmap per stack. Input 256 x 256 RGB in [0, 1]; output
the last stack's 99 heatmaps of 64 x 64."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import fan
from .fan import ConvBlock

POINTS = 98


def coordinate_channels(n: int, size: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """AWing's x and y channels for a ``size`` x ``size`` map: x varies along rows (dim 2), y along
    columns (dim 3), each ``2 i / (size - 1) - 1``."""
    ramp = torch.arange(size, dtype=like.dtype, device=like.device) / (size - 1) * 2 - 1
    xx = ramp.view(1, 1, size, 1).expand(n, 1, size, size)
    yy = ramp.view(1, 1, 1, size).expand(n, 1, size, size)
    return xx, yy


class CoordConv(nn.Module):
    """``CoordConvTh``: the input with x, y, r channels (and, given the previous heatmaps, x and y where
    its boundary channel exceeds 0.05), then ``conv``."""

    def __init__(self, size: int, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0,
                 boundary: bool = False) -> None:
        super().__init__()
        self.size, self.boundary = size, boundary
        self.conv = nn.Conv2d(cin + 3 + (2 if boundary else 0), cout, kernel, stride, padding)

    def forward(self, x: torch.Tensor, heatmap: torch.Tensor | None = None) -> torch.Tensor:
        xx, yy = coordinate_channels(x.shape[0], self.size, x)
        rr = torch.sqrt(xx ** 2 + yy ** 2)
        parts = [x, xx, yy, rr / rr.max()]
        if self.boundary and heatmap is not None:
            edge = heatmap[:, -1:].clamp(0.0, 1.0) > 0.05
            parts += [torch.where(edge, xx, torch.zeros_like(xx)), torch.where(edge, yy, torch.zeros_like(yy))]
        return self.conv(torch.cat(parts, 1))


class HourGlass(fan.HourGlass):
    """2DFAN's hourglass with average pooling, entered through a 1 x 1 CoordConv (``first``: without the
    boundary channels, as the first stack has no previous heatmaps); the CoordConv is registered first,
    as in the checkpoint."""

    def __init__(self, depth: int, c: int, first: bool) -> None:
        nn.Module.__init__(self)
        self.depth, self.pool = depth, F.avg_pool2d
        self.coordconv = CoordConv(64, c, c, 1, boundary=not first)
        self._build(depth, c)

    def forward(self, x: torch.Tensor, heatmap: torch.Tensor | None) -> torch.Tensor:
        return self._forward(self.depth, self.coordconv(x, heatmap))


class AWingFAN(nn.Module):
    """Four stacked hourglasses, 98 landmarks + 1 boundary map (24,153,036 parameters)."""

    def __init__(self, stacks: int = 4, points: int = POINTS) -> None:
        super().__init__()
        self.stacks = stacks
        self.conv1 = CoordConv(256, 3, 64, 7, 2, 3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, 256)
        for i in range(stacks):
            self.add_module(f"m{i}", HourGlass(4, 256, first=i == 0))
            self.add_module(f"top_m_{i}", ConvBlock(256, 256))
            self.add_module(f"conv_last{i}", nn.Conv2d(256, 256, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(256))
            self.add_module(f"l{i}", nn.Conv2d(256, points + 1, 1))
            if i < stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(256, 256, 1))
                self.add_module(f"al{i}", nn.Conv2d(points + 1, 256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.conv4(self.conv3(F.avg_pool2d(self.conv2(x), 2, stride=2)))
        previous, heat = x, None
        for i in range(self.stacks):
            ll = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](previous, heat))
            ll = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](ll)))
            heat = self._modules[f"l{i}"](ll)
            if i < self.stacks - 1:
                previous = previous + self._modules[f"bl{i}"](ll) + self._modules[f"al{i}"](heat)
        return heat
