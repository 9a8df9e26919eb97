"""DINOv2's ViT (Oquab et al. 2023) in the parameter names of the released ``dinov2_vit*14_pretrain.pth`` files,
as ``torch.hub.load("facebookresearch/dinov2", "dinov2_vitl14")`` builds it (what torch-fidelity 0.4's
``dinov2-vit-l-14`` extractor runs).

Written in-project from the paper and the released layout: 14 px patches by one convolution, a class
token, a learned position embedding for a 37 x 37 grid (518 px) resized bicubically to the image's grid
with the release's scale factor (grid + 0.1) / 37, pre-norm blocks (LayerNorm eps 1e-6, multi-head
attention with one ``qkv`` projection, GELU MLP, each branch scaled by a learned per-channel LayerScale
``ls1`` / ``ls2``), a final LayerNorm; the feature is the normalised class token. ``mask_token`` (used only
in training) is kept so the file loads strictly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: ViT-L/14 (``dinov2_vitl14``): width, depth, heads
VIT_L14 = dict(dim=1024, depth=24, heads=16)


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * 4)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DINOv2(nn.Module):
    """DINOv2 ViT; ``forward`` takes ImageNet-normalised images, returns the normalised class token."""

    def __init__(self, dim: int = 1024, depth: int = 24, heads: int = 16, patch: int = 14, grid: int = 37) -> None:
        super().__init__()
        self.patch = patch
        self.patch_embed = PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    @staticmethod
    def shape_of(sd: dict[str, torch.Tensor]) -> dict[str, int]:
        """Constructor arguments read from a released state dict (ViT-S/B/L/g at 14 px, reduced copies)."""
        dim = sd["cls_token"].shape[-1]
        return dict(dim=dim, depth=len({k.split(".")[1] for k in sd if k.startswith("blocks.")}), heads=dim // 64,
                    patch=sd["patch_embed.proj.weight"].shape[-1], grid=round((sd["pos_embed"].shape[1] - 1) ** 0.5))

    def position(self, h: int, w: int) -> torch.Tensor:
        """The position embedding for an ``h`` x ``w`` patch grid: the release's bicubic resize with scale
        factor (grid + 0.1) / 37 on each axis (the output size is then the grid)."""
        n = self.pos_embed.shape[1] - 1
        side = round(n ** 0.5)
        if h * w == n and h == w:
            return self.pos_embed
        pos = self.pos_embed.float()
        grid = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=((h + 0.1) / side, (w + 0.1) / side), mode="bicubic")
        if grid.shape[-2:] != (h, w):
            raise ValueError(f"DINOv2's position embedding resized to {tuple(grid.shape[-2:])}, not {(h, w)}")
        return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)], 1).to(self.pos_embed.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2] // self.patch, x.shape[3] // self.patch
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.position(h, w)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 0]
