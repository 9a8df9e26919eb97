"""The hourglass diffusion transformer (HDiT, Crowson et al. 2024; k-diffusion's ``image_transformer_v2``) as
PMRF's flow network uses it, written here with the official module and parameter names (the checkpoint loads
strictly) and neighborhood attention computed in plain PyTorch (NATTEN's definition: each query attends to
the ``k x k`` keys of a window centred on it and shifted inward at the borders; no compiled extension).

Only what PMRF's checkpoint holds is built: levels of neighborhood or global self-attention (each
transformer layer: attention block then GEGLU feed-forward, both behind an adaptive RMS norm driven by the
mapping network), token merge / split between levels (the split lerps with the skip by a learned factor),
the time and (zero) augmentation Fourier embeddings, no class or mapping conditioning.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class Level:
    """One resolution of the hourglass: ``depth`` layers of width ``width``, feed-forward ``d_ff``;
    ``kernel_size`` 0 means global attention."""

    depth: int
    width: int
    d_ff: int
    d_head: int = 64
    kernel_size: int = 0


#: PMRF's flow network (``hdit_ImageNet256Sp4`` of its create_arch.py)
PMRF_LEVELS = (Level(2, 256, 768, 64, 7), Level(2, 512, 1536, 64, 7), Level(8, 1024, 3072, 64, 0))
PMRF_MAPPING = (2, 768, 2304)   # depth, width, d_ff


def rms_norm(x: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    dtype = torch.promote_types(torch.promote_types(x.dtype, scale.dtype), torch.float32)
    mean_sq = torch.mean(x.to(dtype) ** 2, dim=-1, keepdim=True)
    return x * (scale.to(dtype) * torch.rsqrt(mean_sq + eps)).to(x.dtype)


def cosine_sim_scale(q: torch.Tensor, k: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """q and k normalised to unit length along the head dimension, each times sqrt(scale)."""
    dtype = torch.promote_types(torch.promote_types(q.dtype, k.dtype), torch.promote_types(scale.dtype, torch.float32))
    root = torch.sqrt(scale.to(dtype))
    sq = root * torch.rsqrt(torch.sum(q.to(dtype) ** 2, dim=-1, keepdim=True) + eps)
    sk = root * torch.rsqrt(torch.sum(k.to(dtype) ** 2, dim=-1, keepdim=True) + eps)
    return q * sq.to(q.dtype), k * sk.to(k.dtype)


def rotary(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``2 d`` features of each head by ``theta`` (``d`` angles): pairs (i, d + i)."""
    d = theta.shape[-1]
    dtype = torch.promote_types(torch.promote_types(x.dtype, theta.dtype), torch.float32)
    x1, x2, rest = x[..., :d].to(dtype), x[..., d:2 * d].to(dtype), x[..., 2 * d:]
    cos, sin = torch.cos(theta.to(dtype)), torch.sin(theta.to(dtype))
    return torch.cat(((x1 * cos - x2 * sin).to(x.dtype), (x2 * cos + x1 * sin).to(x.dtype), rest), dim=-1)


def axial_pos(h: int, w: int, device=None) -> torch.Tensor:
    """(h, w, 2) positions: the centres of h (w) equal cells spanning [-1, 1] (square images)."""
    def centres(n: int) -> torch.Tensor:
        edges = torch.linspace(-1.0, 1.0, n + 1, device=device)
        return (edges[:-1] + edges[1:]) / 2

    return torch.stack(torch.meshgrid(centres(h), centres(w), indexing="ij"), dim=-1)


def downscale_pos(pos: torch.Tensor) -> torch.Tensor:
    """Positions of the 2 x 2-merged tokens: the mean of each 2 x 2 block."""
    h, w, e = pos.shape
    return pos.view(h // 2, 2, w // 2, 2, e).mean(dim=(1, 3))


def window_starts(length: int, kernel_size: int, device=None) -> torch.Tensor:
    """The first index of each position's window: centred, shifted inward at the borders (NATTEN)."""
    if length < kernel_size:
        raise ValueError(f"neighborhood attention: a {kernel_size} x {kernel_size} window does not fit a map of "
                         f"{length} tokens (inputs must be at least {kernel_size} x the patch size wide per level)")
    i = torch.arange(length, device=device)
    return (i - kernel_size // 2).clamp(0, length - kernel_size)


def neighborhood_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """softmax(q . k) v over each query's ``kernel_size`` x ``kernel_size`` neighborhood; q, k, v are
    (n, heads, h, w, e), the logits unscaled (HDiT scales q and k itself)."""
    n, nh, h, w, e = q.shape
    rows = window_starts(h, kernel_size, q.device)
    cols = window_starts(w, kernel_size, q.device)
    logits = []
    for a in range(kernel_size):
        kr = k.index_select(2, rows + a)
        for b in range(kernel_size):
            logits.append((q * kr.index_select(3, cols + b)).sum(-1))
    logits_t = torch.stack(logits, dim=-1)
    att = torch.softmax(logits_t.to(torch.promote_types(logits_t.dtype, torch.float32)), dim=-1).to(v.dtype)
    out = torch.zeros_like(q)
    for a in range(kernel_size):
        vr = v.index_select(2, rows + a)
        for b in range(kernel_size):
            out = out + att[..., a * kernel_size + b, None] * vr.index_select(3, cols + b)
    return out


class RMSNorm(nn.Module):
    def __init__(self, features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.scale, self.eps)


class AdaRMSNorm(nn.Module):
    """RMS norm whose scale is 1 + a linear map of the mapping network's output."""

    def __init__(self, features: int, cond_features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.linear = nn.Linear(cond_features, features, bias=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.linear(cond)[:, None, None, :] + 1, self.eps)


class LinearGEGLU(nn.Linear):
    """A linear layer to 2 x ``out_features``, the first half gated by GELU of the second."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features * 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = F.linear(x, self.weight).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FourierFeatures(nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.randn(out_features // 2, in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * x @ self.weight.T
        return torch.cat([f.cos(), f.sin()], dim=-1)


class AxialRoPE(nn.Module):
    """Rotary angles of a 2-d position: per head, ``dim // 4`` log-spaced frequencies in [pi, 10 pi] for
    each axis."""

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        freqs = torch.linspace(math.log(math.pi), math.log(10.0 * math.pi), n_heads * dim // 4 + 1)[:-1].exp()
        self.register_buffer("freqs", freqs.view(dim // 4, n_heads).T.contiguous())

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        f = self.freqs.to(pos.dtype)
        return torch.cat((pos[..., None, 0:1] * f, pos[..., None, 1:2] * f), dim=-1)


class SelfAttention(nn.Module):
    """Cosine-similarity attention with a learned per-head temperature and axial RoPE on q and k; global
    (``kernel_size`` 0) or over each token's neighborhood."""

    def __init__(self, d_model: int, d_head: int, cond_features: int, kernel_size: int = 0) -> None:
        super().__init__()
        self.d_head, self.n_heads, self.kernel_size = d_head, d_model // d_head, kernel_size
        self.norm = AdaRMSNorm(d_model, cond_features)
        self.qkv_proj = nn.Linear(d_model, d_model * 3, bias=False)
        self.scale = nn.Parameter(torch.full([self.n_heads], 10.0))
        self.pos_emb = AxialRoPE(d_head // 2, self.n_heads)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        skip = x
        n, h, w, _ = x.shape
        qkv = self.qkv_proj(self.norm(x, cond)).view(n, h, w, 3, self.n_heads, self.d_head)
        q, k, v = qkv.permute(3, 0, 4, 1, 2, 5)                      # each (n, heads, h, w, e)
        q, k = cosine_sim_scale(q, k, self.scale[:, None, None, None])
        theta = self.pos_emb(pos.to(qkv.dtype)).movedim(-2, -4)        # (heads, h, w, d)
        q, k = rotary(q, theta), rotary(k, theta)
        if self.kernel_size:
            y = neighborhood_attention(q, k, v, self.kernel_size)
        else:
            flat = [t.reshape(n, self.n_heads, h * w, self.d_head) for t in (q, k, v)]
            y = F.scaled_dot_product_attention(*flat, scale=1.0).view(n, self.n_heads, h, w, self.d_head)
        y = y.permute(0, 2, 3, 1, 4).reshape(n, h, w, self.n_heads * self.d_head)
        return self.out_proj(y) + skip


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, cond_features: int) -> None:
        super().__init__()
        self.norm = AdaRMSNorm(d_model, cond_features)
        self.up_proj = LinearGEGLU(d_model, d_ff)
        self.down_proj = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.up_proj(self.norm(x, cond))) + x


class TransformerLayer(nn.Module):
    def __init__(self, level: Level, cond_features: int) -> None:
        super().__init__()
        self.self_attn = SelfAttention(level.width, level.d_head, cond_features, level.kernel_size)
        self.ff = FeedForward(level.width, level.d_ff, cond_features)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.ff(self.self_attn(x, pos, cond), cond)


class Stage(nn.ModuleList):
    def forward(self, x: torch.Tensor, pos: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, pos, cond)
        return x


class MappingBlock(nn.Module):
    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.norm = RMSNorm(d_model)
        self.up_proj = LinearGEGLU(d_model, d_ff)
        self.down_proj = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.up_proj(self.norm(x))) + x


class MappingNetwork(nn.Module):
    def __init__(self, depth: int, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.in_norm = RMSNorm(d_model)
        self.blocks = nn.ModuleList([MappingBlock(d_model, d_ff) for _ in range(depth)])
        self.out_norm = RMSNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.in_norm(x)
        for block in self.blocks:
            x = block(x)
        return self.out_norm(x)


class TokenMerge(nn.Module):
    """Each ``ph`` x ``pw`` patch of tokens (channels last) to one token."""

    def __init__(self, in_features: int, out_features: int, patch: tuple[int, int] = (2, 2)) -> None:
        super().__init__()
        self.h, self.w = patch
        self.proj = nn.Linear(in_features * self.h * self.w, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, hh, ww, e = x.shape
        x = x.view(n, hh // self.h, self.h, ww // self.w, self.w, e).permute(0, 1, 3, 2, 4, 5)
        return self.proj(x.reshape(n, hh // self.h, ww // self.w, self.h * self.w * e))


def _split(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    n, h, w, c = x.shape
    e = c // (ph * pw)
    return x.view(n, h, w, ph, pw, e).permute(0, 1, 3, 2, 4, 5).reshape(n, h * ph, w * pw, e)


class TokenSplit(nn.Module):
    """Each token back to a ``2 x 2`` patch, then lerped with the skip by the learned ``fac``."""

    def __init__(self, in_features: int, out_features: int, patch: tuple[int, int] = (2, 2)) -> None:
        super().__init__()
        self.h, self.w = patch
        self.proj = nn.Linear(in_features, out_features * self.h * self.w, bias=False)
        self.fac = nn.Parameter(torch.ones(1) * 0.5)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.lerp(skip, _split(self.proj(x), self.h, self.w), self.fac.to(x.dtype))


class TokenSplitWithoutSkip(nn.Module):
    def __init__(self, in_features: int, out_features: int, patch: tuple[int, int]) -> None:
        super().__init__()
        self.h, self.w = patch
        self.proj = nn.Linear(in_features, out_features * self.h * self.w, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _split(self.proj(x), self.h, self.w)


class HDiT(nn.Module):
    """``ImageTransformerDenoiserModelV2`` (no class / mapping conditioning): ``forward(x, sigma)`` with x
    (n, c, H, W) and sigma (n,) the flow time; returns (n, out, H, W)."""

    def __init__(self, levels: Sequence[Level] = PMRF_LEVELS, mapping: tuple[int, int, int] = PMRF_MAPPING,
                 in_channels: int = 3, out_channels: int = 3, patch_size: tuple[int, int] = (4, 4)) -> None:
        super().__init__()
        depth, width, d_ff = mapping
        self.mapping_width = width
        self.patch_in = TokenMerge(in_channels, levels[0].width, patch_size)
        self.time_emb = FourierFeatures(1, width)
        self.time_in_proj = nn.Linear(width, width, bias=False)
        self.aug_emb = FourierFeatures(9, width)
        self.aug_in_proj = nn.Linear(width, width, bias=False)
        self.mapping = MappingNetwork(depth, width, d_ff)
        self.down_levels, self.up_levels = nn.ModuleList(), nn.ModuleList()
        for i, spec in enumerate(levels):
            if i < len(levels) - 1:
                self.down_levels.append(Stage([TransformerLayer(spec, width) for _ in range(spec.depth)]))
                self.up_levels.append(Stage([TransformerLayer(spec, width) for _ in range(spec.depth)]))
            else:
                self.mid_level = Stage([TransformerLayer(spec, width) for _ in range(spec.depth)])
        self.merges = nn.ModuleList([TokenMerge(a.width, b.width) for a, b in zip(levels[:-1], levels[1:])])
        self.splits = nn.ModuleList([TokenSplit(b.width, a.width) for a, b in zip(levels[:-1], levels[1:])])
        self.out_norm = RMSNorm(levels[0].width)
        self.patch_out = TokenSplitWithoutSkip(levels[0].width, out_channels, patch_size)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        x = self.patch_in(x.movedim(-3, -1))
        pos = axial_pos(x.shape[-3], x.shape[-2], device=x.device)
        time = self.time_in_proj(self.time_emb(sigma[..., None].to(x.dtype)))
        aug = self.aug_in_proj(self.aug_emb(x.new_zeros([x.shape[0], 9])))
        cond = self.mapping(time + aug)
        skips, poses = [], []
        for level, merge in zip(self.down_levels, self.merges):
            x = level(x, pos, cond)
            skips.append(x)
            poses.append(pos)
            x = merge(x)
            pos = downscale_pos(pos)
        x = self.mid_level(x, pos, cond)
        for level, split, skip, pos in reversed(list(zip(self.up_levels, self.splits, skips, poses))):
            x = level(split(x, skip), pos, cond)
        return self.patch_out(self.out_norm(x)).movedim(-1, -3)
