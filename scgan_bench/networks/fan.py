"""FAN (Bulat & Tzimiropoulos, ICCV 2017), the stacked-hourglass heatmap network of ``face-alignment``
(``1adrianb/face-alignment``, ``models.py``), written for its 2DFAN-4 state dict (``2DFAN4-11f355bf06.pth.tar``)
with the same module names: a stem (conv 7x7 / 2, BN, ConvBlocks 64 -> 128 -> 128 -> 256 with a max-pool),
four hourglasses of depth 4 with ConvBlocks (three pre-activated 3x3 convs of out/2, out/4, out/4 channels,
concatenated, plus the input or a BN-ReLU-1x1 shortcut), and per stack a 68-channel heatmap head; each
stack's heatmaps and features are added back into the next. Input 256 x 256 RGB in [0, 1]; output 68
heatmaps of 64 x 64 (the last stack's)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout // 2, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout // 2)
        self.conv2 = nn.Conv2d(cout // 2, cout // 4, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout // 4)
        self.conv3 = nn.Conv2d(cout // 4, cout // 4, 3, 1, 1, bias=False)
        self.downsample = (nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(True), nn.Conv2d(cin, cout, 1, bias=False))
                           if cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1 = self.conv1(F.relu(self.bn1(x)))
        o2 = self.conv2(F.relu(self.bn2(o1)))
        o3 = self.conv3(F.relu(self.bn3(o2)))
        return torch.cat((o1, o2, o3), 1) + (self.downsample(x) if self.downsample is not None else x)


class HourGlass(nn.Module):
    """A depth-``depth`` hourglass of ConvBlocks, down-sampling by ``pool`` (2DFAN: max; AWing: average)."""

    def __init__(self, depth: int, features: int, pool=F.max_pool2d) -> None:
        super().__init__()
        self.depth, self.pool = depth, pool
        self._build(depth, features)

    def _build(self, level: int, c: int) -> None:  # registration order = the official one
        self.add_module(f"b1_{level}", ConvBlock(c, c))
        self.add_module(f"b2_{level}", ConvBlock(c, c))
        if level > 1:
            self._build(level - 1, c)
        else:
            self.add_module(f"b2_plus_{level}", ConvBlock(c, c))
        self.add_module(f"b3_{level}", ConvBlock(c, c))

    def _forward(self, level: int, x: torch.Tensor) -> torch.Tensor:
        up1 = self._modules[f"b1_{level}"](x)
        low = self._modules[f"b2_{level}"](self.pool(x, 2, stride=2))
        low = self._forward(level - 1, low) if level > 1 else self._modules[f"b2_plus_{level}"](low)
        low = self._modules[f"b3_{level}"](low)
        return up1 + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(self.depth, x)


class FAN(nn.Module):
    """``FAN(4)``: 2DFAN-4 (``width`` < 1 only for tests)."""

    def __init__(self, stacks: int = 4, width: float = 1.0, points: int = 68) -> None:
        super().__init__()
        c64, c128, c256 = (max(4, int(round(c * width))) for c in (64, 128, 256))
        self.stacks = stacks
        self.conv1 = nn.Conv2d(3, c64, 7, 2, 3)
        self.bn1 = nn.BatchNorm2d(c64)
        self.conv2 = ConvBlock(c64, c128)
        self.conv3 = ConvBlock(c128, c128)
        self.conv4 = ConvBlock(c128, c256)
        for i in range(stacks):
            self.add_module(f"m{i}", HourGlass(4, c256))
            self.add_module(f"top_m_{i}", ConvBlock(c256, c256))
            self.add_module(f"conv_last{i}", nn.Conv2d(c256, c256, 1))
            self.add_module(f"l{i}", nn.Conv2d(c256, points, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(c256))
            if i < stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(c256, c256, 1))
                self.add_module(f"al{i}", nn.Conv2d(points, c256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.conv4(self.conv3(F.max_pool2d(self.conv2(x), 2)))
        previous, heat = x, x
        for i in range(self.stacks):
            ll = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](previous))
            ll = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](ll)))
            heat = self._modules[f"l{i}"](ll)
            if i < self.stacks - 1:
                previous = previous + self._modules[f"bl{i}"](ll) + self._modules[f"al{i}"](heat)
        return heat
