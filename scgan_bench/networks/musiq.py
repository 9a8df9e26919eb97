"""MUSIQ (Ke et al., ICCV 2021): a multi-scale image quality transformer, with the parameter names of the
PyTorch port most users have (pyiqa's ``musiq_*_ckpt-*.pth``, converted from Google's checkpoints).

Input: RGB in [0, 1], N x 3 x H x W (one size per call). The image is represented at three scales: its
longer side resized to 224 and to 384 (bicubic, aspect kept; the port's stand-in for TensorFlow's
Gaussian resize), and the original resolution. Each scale is cut into 32 x 32 patches (TensorFlow's
SAME padding); each patch carries a hashed spatial position on a 10 x 10 grid and its scale index; the
two resized scales are padded with masked patches to ceil(L / 32)^2. A ResNet stem embeds each patch,
a 14-layer transformer reads the sequence, and the class token's head gives the score (one value for
the KonIQ / SPAQ / PaQ-2-PiQ models; a 10-bin distribution whose mean is the score for AVA).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LONGER_SIDES = (224, 384)


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow's SAME padding with zeros (the extra row / column, if any, at the bottom / right)."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    pw = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class StdConv(nn.Conv2d):
    """Convolution with weight standardisation (per output channel, unbiased std + 1e-5), SAME padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(same_pad(x, self.kernel_size[0], self.stride[0]), w, self.bias, self.stride)


class Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1, self.gn1 = StdConv(cin, cin, 1, bias=False), nn.GroupNorm(32, cin, eps=1e-4)
        self.conv2, self.gn2 = StdConv(cin, cin, 3, bias=False), nn.GroupNorm(32, cin, eps=1e-4)
        self.conv3, self.gn3 = StdConv(cin, cout, 1, bias=False), nn.GroupNorm(32, cout, eps=1e-4)
        self.conv_proj, self.gn_proj = StdConv(cin, cout, 1, bias=False), nn.GroupNorm(32, cout, eps=1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.gn_proj(self.conv_proj(x))
        y = F.relu(self.gn1(self.conv1(x)))
        y = F.relu(self.gn2(self.conv2(y)))
        return F.relu(self.gn3(self.conv3(y)) + skip)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, c // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        logits = q @ k.transpose(-2, -1) / math.sqrt(c // self.heads)
        pair = (mask[:, None, :, None] & mask[:, None, None, :])  # both tokens real
        att = logits.masked_fill(~pair, -1e3).softmax(-1)
        return self.out((att @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, mlp: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attention = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, mlp)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class _PositionEmbs(nn.Module):
    def __init__(self, grid: int, dim: int) -> None:
        super().__init__()
        self.position_emb = nn.Parameter(torch.zeros(1, grid * grid, dim))


class _ScaleEmbs(nn.Module):
    def __init__(self, scales: int, dim: int) -> None:
        super().__init__()
        self.scale_emb = nn.Parameter(torch.zeros(scales, dim))


class Encoder(nn.Module):
    def __init__(self, dim: int, mlp: int, heads: int, layers: int, scales: int, grid: int) -> None:
        super().__init__()
        self.posembed_input, self.scaleembed_input = _PositionEmbs(grid, dim), _ScaleEmbs(scales, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder_norm = nn.LayerNorm(dim, eps=1e-6)
        self.transformer = nn.ModuleDict({f"encoderblock_{i}": EncoderBlock(dim, mlp, heads) for i in range(layers)})

    def forward(self, x: torch.Tensor, pos: torch.Tensor, scale: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.posembed_input.position_emb[0][pos] + self.scaleembed_input.scale_emb[scale]
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1)
        mask = torch.cat([torch.ones_like(mask[:, :1]), mask], 1)
        for block in self.transformer.values():
            x = block(x, mask)
        return self.encoder_norm(x)


def hashed_positions(grid: int, rows: int, cols: int) -> torch.Tensor:
    """Row-major grid index of each of rows x cols patches: patch (i, j) -> (i * grid // rows) * grid +
    j * grid // cols (nearest-neighbour hashing of any patch grid onto grid x grid)."""
    i = torch.arange(rows) * grid // rows
    j = torch.arange(cols) * grid // cols
    return (i[:, None] * grid + j[None, :]).reshape(-1)


def multiscale_tokens(x: torch.Tensor, patch: int = 32, grid: int = 10, sides: tuple[int, ...] = LONGER_SIDES
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Patches (N, T, 3, patch, patch), hashed positions (T,), scale ids (T,) and the mask (N, T) of
    ``x`` in [-1, 1]: each resized scale padded (or cut) to ceil(side / patch)^2 tokens, padding tokens
    all zero (position 0, scale 0, masked) as in the port, then the original resolution's patches."""
    n, _, h, w = x.shape
    patches, pos, scale, mask = [], [], [], []

    def add(img: torch.Tensor, sid: int, length: int | None) -> None:
        rh, rw = img.shape[-2:]
        cols = F.unfold(same_pad(img, patch, patch), patch, stride=patch)  # N x (3 * p * p) x P
        p = hashed_positions(grid, math.ceil(rh / patch), math.ceil(rw / patch))
        real = cols.shape[-1]
        length = real if length is None else length
        keep = min(real, length)
        padded = cols.new_zeros(n, cols.shape[1], length)
        padded[..., :keep] = cols[..., :keep]
        patches.append(padded.transpose(1, 2).reshape(n, length, 3, patch, patch))
        pos.append(torch.cat([p[:keep], p.new_zeros(length - keep)]))
        scale.append(torch.cat([torch.full((keep,), sid, dtype=torch.long), torch.zeros(length - keep, dtype=torch.long)]))
        mask.append(torch.cat([torch.ones(keep, dtype=torch.bool), torch.zeros(length - keep, dtype=torch.bool)]))

    for sid, side in enumerate(sorted(sides)):
        r = side / max(h, w)
        img = F.interpolate(x, (round(h * r), round(w * r)), mode="bicubic", align_corners=False)
        add(img, sid, math.ceil(side / patch) ** 2)
    add(x, len(sides), None)
    dev = x.device
    return (torch.cat(patches, 1), torch.cat(pos).to(dev), torch.cat(scale).to(dev),
            torch.cat(mask)[None].expand(n, -1).to(dev))


class MUSIQ(nn.Module):
    """``net(x)``: the quality score of each RGB image in [0, 1] (N x 3 x H x W), shape (N,)."""

    def __init__(self, num_classes: int = 1, hidden: int = 384, mlp: int = 1152, heads: int = 6, layers: int = 14,
                 grid: int = 10, patch: int = 32) -> None:
        super().__init__()
        self.patch, self.grid, self.num_classes = patch, grid, num_classes
        self.conv_root = StdConv(3, 64, 7, 2, bias=False)
        self.gn_root = nn.GroupNorm(32, 64, eps=1e-6)
        self.block1 = Bottleneck(64, 256)
        self.embedding = nn.Linear(256 * (patch // 4) ** 2, hidden)
        self.transformer_encoder = Encoder(hidden, mlp, heads, layers, len(LONGER_SIDES) + 1, grid)
        self.head = nn.Linear(hidden, num_classes) if num_classes == 1 else \
            nn.Sequential(nn.Linear(hidden, num_classes), nn.Softmax(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches, pos, scale, mask = multiscale_tokens(x * 2 - 1, self.patch, self.grid)
        n, t = mask.shape
        y = patches.reshape(n * t, 3, self.patch, self.patch)
        y = F.relu(self.gn_root(self.conv_root(y)))
        y = F.max_pool2d(same_pad(y, 3, 2), 3, 2)  # zeros pad a non-negative map: as -inf would
        y = self.block1(y).permute(0, 2, 3, 1).reshape(n, t, -1)  # channels last: the checkpoint's order
        y = self.transformer_encoder(self.embedding(y), pos[None].expand(n, -1), scale[None].expand(n, -1), mask)
        q = self.head(y[:, 0])
        return q[:, 0] if self.num_classes == 1 else (q * torch.arange(1, self.num_classes + 1, device=q.device)).sum(-1)
