"""The IR backbone of AdaFace (Kim et al., CVPR 2022; ``mk-minchul/AdaFace`` ``net.py``), written for its
released checkpoints (``adaface_ir50_ms1mv2.ckpt``: a Lightning checkpoint whose ``state_dict`` holds the
backbone under ``model.`` and the margin head under ``head.``): the same module names, loaded strictly.

``input_layer`` (conv 3x3, BN, PReLU) -> ``body`` (BasicBlockIR units: BN, conv 3x3, BN, PReLU, conv 3x3
with the stage's stride 2 on the first unit, BN; shortcut a 1x1 conv + BN where the width changes, else a
stride-only max-pool) -> ``output_layer`` (BN, dropout, flatten, Linear 512 x 7 x 7 -> 512, BatchNorm1d
without affine). 112 x 112 BGR faces in [-1, 1].
"""
from __future__ import annotations

import torch
from torch import nn

#: units per stage (IR-18 / 34 / 50 / 100)
UNITS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}


class BasicBlockIR(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.shortcut_layer = (nn.MaxPool2d(1, stride) if cin == cout else
                               nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))
        self.res_layer = nn.Sequential(nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
                                       nn.BatchNorm2d(cout), nn.PReLU(cout), nn.Conv2d(cout, cout, 3, stride, 1, bias=False),
                                       nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRBackbone(nn.Module):
    """``IRBackbone(50)``: 512-d embeddings (not normalised) of 112 x 112 faces (``width`` < 1: tests only)."""

    def __init__(self, layers: int = 50, width: float = 1.0) -> None:
        super().__init__()
        ch = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
        self.input_layer = nn.Sequential(nn.Conv2d(3, ch[0], 3, 1, 1, bias=False), nn.BatchNorm2d(ch[0]),
                                         nn.PReLU(ch[0]))
        units, cin = [], ch[0]
        for n, cout in zip(UNITS[layers], ch):
            units += [BasicBlockIR(cin, cout, 2)] + [BasicBlockIR(cout, cout, 1) for _ in range(n - 1)]
            cin = cout
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(ch[3]), nn.Dropout(0.4), nn.Flatten(),
                                          nn.Linear(ch[3] * 7 * 7, 512), nn.BatchNorm1d(512, affine=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(x)))
