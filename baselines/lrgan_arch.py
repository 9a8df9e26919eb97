"""LRGAN's generator ``GEN_DEEP`` with the official module names (the released ``model.pkl`` loads
strictly; :mod:`.lrgan` is the SR method around it, :mod:`scgan_bench.training.lrgan` retrains it)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from scgan_bench.scgan.networks import BilinearUp2x


class Block(nn.Module):
    """Pre-activation residual block with BatchNorm: ``conv2(relu(bn2(conv1(relu(bn1(x)))))) + skip(x)``;
    ``downsample`` average-pools by 2 before ``conv2`` and in the skip (the High-to-Low generator's
    blocks, ``BasicBlock(downsample=True)``: keys ``conv2.1`` and ``skip.1``)."""

    def __init__(self, cin: int, cout: int, downsample: bool = False) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), (nn.Sequential(nn.AvgPool2d(2, 2), conv2) if downsample else conv2)
        if downsample:
            self.skip: nn.Module | None = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1))
        else:
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        return out + (self.skip(x) if self.skip is not None else x)


def _up(c: int) -> nn.Sequential:
    # bilinear x2 with align_corners (the released nn.Upsample); its matmul form (deterministic CUDA
    # backward) is switched on by `train --deterministic`
    return nn.Sequential(BilinearUp2x(), nn.BatchNorm2d(c), nn.ReLU(), nn.ConvTranspose2d(c, c, 1, 1))


class LRGANGenerator(nn.Module):
    """``GEN_DEEP``: 16 px RGB in [-1, 1] -> 64 px, tanh. ``width`` scales every channel count
    (1 = the released network; reduced widths for CPU training tests)."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3 = (max(4, int(round(n * width))) for n in (256, 128, 96))
        self.layers_in = nn.Conv2d(3, c1, 3, 1, 1, bias=False)
        self.layers_set_final = nn.ModuleList([
            nn.Sequential(*[Block(c1, c1) for _ in range(12)]),
            nn.Sequential(Block(c1, c2), Block(c2, c2), Block(c2, c2))])
        self.layers_set_final_up = nn.ModuleList([_up(c1), _up(c2)])
        self.a1 = nn.Sequential(nn.Conv2d(c1, c2, 1))
        self.a2 = nn.Sequential(nn.Conv2d(c2, c3, 1))  # built, never used (as released)
        self.main = nn.Sequential(nn.Conv2d(c2, c3, 3, 1, 1, bias=False), nn.ReLU(), nn.Conv2d(c3, c3, 1), nn.ReLU(),
                                  nn.Conv2d(c3, 3, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers_in(x)
        x = self.layers_set_final_up[0](x + self.layers_set_final[0](x))
        x = self.layers_set_final_up[1](self.layers_set_final[1](x) + self.a1(x))
        return self.main(x)
