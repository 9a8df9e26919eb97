"""``resnet_face18`` of ronghuaiyang/arcface-pytorch (MIT): the grayscale ArcFace network VQFR's
``calculate_cos_dist.py`` (the "Deg" script of VQFR, CodeFormer and later papers) runs with
``resnet18_110.pth``; GFPGAN's ``ResNetArcFace`` is the same network. Written with the checkpoint's
module names (``use_se=False``, the script's configuration).

1 x 128 x 128 input in [-1, 1]: conv 3x3 (64, no bias), BN, PReLU, max-pool 2; four stages of two
IR blocks (BN, conv 3x3, BN, PReLU, conv 3x3 with the stage's stride, BN, [SE], plus the input or a
1x1-conv + BN shortcut, PReLU; one PReLU shared by both activations of a block) at 64, 128, 256, 512
channels (strides 1, 2, 2, 2); BN, dropout, flatten 512 x 8 x 8, ``fc5`` to 512, BatchNorm1d."""
from __future__ import annotations

import torch
from torch import nn


def _c(n: int, width: float) -> int:
    return max(4, int(round(n * width)))


class SEBlock(nn.Module):
    def __init__(self, c: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(c, c // reduction), nn.PReLU(), nn.Linear(c // reduction, c), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(self.avg_pool(x).flatten(1))[:, :, None, None]


class IRBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, use_se: bool = False) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cin, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)
        self.se = SEBlock(cout) if use_se else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(self.bn0(x))))))
        if self.se is not None:
            out = self.se(out)
        return self.prelu(out + (self.downsample(x) if self.downsample is not None else x))


class ResNetFace(nn.Module):
    """``resnet_face18(use_se)``: 512-d embeddings of 128 px grayscale faces (``width`` < 1 only for tests)."""

    def __init__(self, layers: tuple[int, ...] = (2, 2, 2, 2), use_se: bool = False, width: float = 1.0) -> None:
        super().__init__()
        c = [_c(n, width) for n in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(1, c[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c[0])
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(2, 2)
        cin = c[0]
        for i, (n, cout, stride) in enumerate(zip(layers, c, (1, 2, 2, 2))):
            blocks = [IRBlock(cin, cout, stride, use_se)] + [IRBlock(cout, cout, 1, use_se) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        self.bn4 = nn.BatchNorm2d(c[3])
        self.dropout = nn.Dropout()
        self.fc5 = nn.Linear(c[3] * 8 * 8, 512)
        self.bn5 = nn.BatchNorm1d(512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.bn5(self.fc5(self.dropout(self.bn4(x)).flatten(1)))
