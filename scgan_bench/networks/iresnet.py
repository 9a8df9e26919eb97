"""IResNet, the backbone of InsightFace's ArcFace release (``recognition/arcface_torch``), written here for
its official state dicts (``backbone.pth``): the same module names, so those files load strictly.

A pre-activation residual stack on 112 x 112 faces: stem conv 3x3 / BN / PReLU, four stages of
IBasicBlocks (BN, conv 3x3, BN, PReLU, conv 3x3 with the stage's stride 2 on the first block, BN; a
1x1 conv + BN shortcut where the shape changes), BN, flatten (512 x 7 x 7), Linear to 512, BatchNorm1d.
"""
from __future__ import annotations

import torch
from torch import nn

#: blocks per stage of the released depths
DEPTHS = {"r18": (2, 2, 2, 2), "r34": (3, 4, 6, 3), "r50": (3, 4, 14, 3), "r100": (3, 13, 30, 3)}


class IBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
    """``IResNet("r100")``: 512-d embeddings of 112 x 112 RGB faces in [-1, 1] (``width`` < 1 only for tests)."""

    def __init__(self, depth: str = "r100", width: float = 1.0, num_features: int = 512) -> None:
        super().__init__()
        ch = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch[0], eps=1e-5)
        self.prelu = nn.PReLU(ch[0])
        cin = ch[0]
        for k, (n, cout) in enumerate(zip(DEPTHS[depth], ch), start=1):
            blocks = [IBasicBlock(cin, cout, 2)] + [IBasicBlock(cout, cout) for _ in range(n - 1)]
            setattr(self, f"layer{k}", nn.Sequential(*blocks))
            cin = cout
        self.bn2 = nn.BatchNorm2d(ch[3], eps=1e-5)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(ch[3] * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.dropout(torch.flatten(self.bn2(x), 1))))
