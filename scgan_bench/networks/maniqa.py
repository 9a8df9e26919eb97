"""MANIQA (Yang et al., CVPRW 2022, NTIRE 2022 NR-IQA winner) with the parameter names of its released
checkpoints as the PyTorch port (pyiqa) loads them: ``vit.*`` (timm's ViT-B/8 at 224 px), ``tablock1/2``,
``conv1/2``, ``swintransformer1/2``, ``fc_score``, ``fc_weight``.

Input: RGB in [0, 1], N x 3 x H x W. Normalised with mean = std = 0.5; cut into ``crops`` 224 x 224 crops on
a uniform grid (an image whose shorter side is at most 224 is first scaled by (224 + 1) / shorter side,
bilinear); ViT-B/8 runs on each crop and the tokens of its blocks 6-9 (0-based) are concatenated (3,072
channels x 28 x 28); two stages of transposed attention over the 784 positions, a 1 x 1 convolution and
a residual Swin stage (window 4, its output scaled by ``scale``: 0.13 in the paper's code, 0.8 for the
KonIQ-10k checkpoint) follow; every position of every crop predicts a score and
a weight, and the image's score is the weighted mean over all its crops' positions.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .musiq import Mlp  # fc1 -> GELU -> fc2, the same names in both checkpoints

CROP, PATCH, GRID = 224, 8, 28  # 224 / 8 = 28 positions a side


# ------------------------------------------------------------------------------------ ViT-B/8 (timm's names)
class _ViTAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class _ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), _ViTAttention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, dim * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, PATCH, PATCH)


class ViTB8(nn.Module):
    """timm's ``vit_base_patch8_224`` layout; ``features`` returns the outputs of blocks 6-9 (the blocks
    after 9, the final norm and the ImageNet head are kept for the checkpoint but never run)."""

    def __init__(self, dim: int = 768, depth: int = 12, heads: int = 12) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, GRID * GRID + 1, dim))
        self.blocks = nn.ModuleList(_ViTBlock(dim, heads) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 1000)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self.pos_embed
        taken = []
        for i, block in enumerate(self.blocks[:10]):
            x = block(x)
            if i >= 6:
                taken.append(x[:, 1:])
        return torch.cat(taken, 2)  # N x 784 x 3072


# ------------------------------------------------------------------------------------ MANIQA's own parts
class TABlock(nn.Module):
    """Attention across channels with the 784 positions as features; the output's axes are regrouped as
    the released code does (``(attn @ v).transpose(1, 2).reshape(B, C, N)``), then a residual."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.c_q, self.c_k, self.c_v = nn.Linear(n, n), nn.Linear(n, n), nn.Linear(n, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        att = (self.c_q(x) @ self.c_k(x).transpose(-2, -1) / math.sqrt(n)).softmax(-1)
        return (att @ self.c_v(x)).transpose(1, 2).reshape(b, c, n) + x


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """B x H x W x C -> (B * H/w * W/w) x (w * w) x C, windows in row-major order."""
    b, h, wd, c = x.shape
    return x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)


def _unwindows(x: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    b = x.shape[0] // ((h // w) * (wd // w))
    return x.view(b, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, h, wd, -1)


class _WindowAttention(nn.Module):
    def __init__(self, dim: int, w: int, heads: int) -> None:
        super().__init__()
        self.heads, self.w = heads, w
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * w - 1) ** 2, heads))
        ij = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)  # 2 x w*w
        rel = (ij[:, :, None] - ij[:, None, :]).permute(1, 2, 0) + (w - 1)  # offsets made non-negative
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * w - 1) + rel[..., 1])
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        att = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)
        att = att + self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        if mask is not None:
            nw = mask.shape[0]
            att = (att.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None]).view(bw, self.heads, n, n)
        return self.proj((att.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, c))


class _SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, w: int, shift: int, mlp: int) -> None:
        super().__init__()
        self.w, self.shift = w, shift
        self.norm1, self.attn = nn.LayerNorm(dim), _WindowAttention(dim, w, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, mlp)
        mask = None
        if shift:
            region = torch.zeros(1, GRID, GRID, 1)
            bands = (slice(0, -w), slice(-w, -shift), slice(-shift, None))
            for r, (hs, ws) in enumerate((hs, ws) for hs in bands for ws in bands):
                region[:, hs, ws, :] = r
            m = _windows(region, w).squeeze(-1)
            mask = (m[:, None, :] - m[:, :, None]).ne(0).float() * -100.0
        self.register_buffer("attn_mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        y = self.norm1(x).view(b, GRID, GRID, c)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
        y = _unwindows(self.attn(_windows(y, self.w), self.attn_mask), self.w, GRID, GRID)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        x = x + y.reshape(b, n, c)
        return x + self.mlp(self.norm2(x))


class _SwinLayer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, w: int, mlp: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)
        self.blocks = nn.ModuleList(_SwinBlock(dim, heads, w, 0 if i % 2 == 0 else w // 2, mlp) for i in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        b, n, c = x.shape
        y = F.relu(self.conv(x.transpose(1, 2).reshape(b, c, GRID, GRID)))
        return y.flatten(2).transpose(1, 2)


class SwinStage(nn.Module):
    """Layers of Swin blocks, each added back scaled: x = scale * layer(x) + x (``downsample`` is in the
    checkpoint but unused, as in the released code)."""

    def __init__(self, dim: int, depths=(2, 2), heads=(4, 4), w: int = 4, mlp: int = 768, scale: float = 0.13) -> None:
        super().__init__()
        self.scale = scale
        self.downsample = nn.Conv2d(dim, dim, 3, 2, 1)
        self.layers = nn.ModuleList(_SwinLayer(dim, d, h, w, mlp) for d, h in zip(depths, heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        x = x.flatten(2).transpose(1, 2)
        for layer in self.layers:
            x = self.scale * layer(x) + x
        return x.transpose(1, 2).reshape(b, c, GRID, GRID)


def crop_offsets(h: int, w: int, crops: int) -> list[tuple[int, int]]:
    """Top-left corners of the uniform 224 px crops of an H x W image (after the small-image scaling):
    steps (H - 224) // floor(sqrt(crops)) and likewise for W; rows and columns 0 .. ceil(sqrt(crops)) - 1,
    row-major, the first ``crops`` of them."""
    k = math.isqrt(crops)
    sh, sw = (h - CROP) // k, (w - CROP) // k
    side = math.ceil(math.sqrt(crops))
    return [(i * sh, j * sw) for i in range(side) for j in range(side)][:crops]


class MANIQA(nn.Module):
    """``net(x)``: the quality score of each RGB image in [0, 1] (N x 3 x H x W), shape (N,)."""

    def __init__(self, crops: int = 20, scale: float = 0.13, dim: int = 768) -> None:
        super().__init__()
        self.crops = crops
        self.vit = ViTB8(dim)
        self.tablock1 = nn.ModuleList(TABlock(GRID * GRID) for _ in range(2))
        self.conv1 = nn.Conv2d(dim * 4, dim, 1)
        self.swintransformer1 = SwinStage(dim, scale=scale)
        self.tablock2 = nn.ModuleList(TABlock(GRID * GRID) for _ in range(2))
        self.conv2 = nn.Conv2d(dim, dim // 2, 1)
        self.swintransformer2 = SwinStage(dim // 2, scale=scale)
        half = dim // 2
        self.fc_score = nn.Sequential(nn.Linear(half, half), nn.ReLU(), nn.Dropout(0.1), nn.Linear(half, 1), nn.ReLU())
        self.fc_weight = nn.Sequential(nn.Linear(half, half), nn.ReLU(), nn.Dropout(0.1), nn.Linear(half, 1),
                                       nn.Sigmoid())

    def _scores_and_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = len(x)
        x = self.vit.features(x).transpose(1, 2)  # N x 3072 x 784
        for tab in self.tablock1:
            x = tab(x)
        x = self.swintransformer1(self.conv1(x.reshape(b, -1, GRID, GRID)))
        x = x.flatten(2)
        for tab in self.tablock2:
            x = tab(x)
        x = self.swintransformer2(self.conv2(x.reshape(b, -1, GRID, GRID)))
        x = x.flatten(2).transpose(1, 2)  # N x 784 x 384
        return self.fc_score(x)[..., 0], self.fc_weight(x)[..., 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) / 0.5
        h, w = x.shape[-2:]
        if min(h, w) <= CROP:
            x = F.interpolate(x, scale_factor=(CROP + 1) / min(h, w), mode="bilinear")
            h, w = x.shape[-2:]
        offsets = crop_offsets(h, w, self.crops)
        # identical crops (a small image: every step is 0) give identical positions: each distinct crop
        # once, counted as often as it occurs, which leaves the weighted mean as it is
        distinct = list(dict.fromkeys(offsets))
        times = torch.tensor([offsets.count(o) for o in distinct], dtype=x.dtype, device=x.device)
        crops = torch.stack([x[..., i:i + CROP, j:j + CROP] for i, j in distinct], 1)  # N x K x 3 x 224 x 224
        s, wt = self._scores_and_weights(crops.flatten(0, 1))
        s, wt = s.view(len(x), len(distinct), -1), wt.view(len(x), len(distinct), -1) * times[None, :, None]
        return (wt * s).sum((1, 2)) / (wt.sum((1, 2)) + 1e-8)
