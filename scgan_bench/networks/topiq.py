"""TOPIQ's no-reference network (CFANet, Chen et al., TIP 2024) in the parameter names of pyiqa's checkpoints.

Written in-project from the paper (Sec. III) and the layout of the released files (``params`` of
``cfanet_nr_*_res50-*.pth`` / ``topiq_nr_*_res50-*.pth``): a ResNet-50 (torchvision's, whose names are
timm's ``features_only`` names) gives five feature maps (after the stem's ReLU and after each stage); each
goes through a gated local pooling (``weight_pool``: a 1x1 split into values and gate features, the gate a
small convolution stack ending in a sigmoid), is pooled to the coarsest grid when larger, reduced to 256
channels, given a learned 2-D position embedding (``h_emb`` / ``w_emb``, bicubically resized) and one
pre-norm self-attention layer. Top-down, the coarsest level's tokens query each finer level in turn through
a pre-norm cross-attention layer (``attn_blks``; the released layers also carry an unused self-attention,
kept so the file loads strictly); an attention layer and the token mean feed the score MLP.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..assets.backbones import IMAGENET_MEAN, IMAGENET_STD

RESNET50_CHANNELS = (64, 256, 512, 1024, 2048)


class ResNetFeatures(nn.Module):
    """torchvision's ResNet-50 without its head: the stem's ReLU output and the four stages' outputs."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(net, name))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        out = [x]
        x = self.maxpool(x)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            out.append(x)
        return out


class AttentionLayer(nn.Module):
    """Pre-norm attention + GELU MLP. Self-attention (``norm1``, ``norm2``) or, with ``cross``, the query
    tokens attend over normalised memory tokens (``norm1`` query, ``norm2`` memory, ``norm3`` MLP)."""

    def __init__(self, dim: int, heads: int, ffn: int, cross: bool = False) -> None:
        super().__init__()
        self.cross = cross
        self.self_attn = nn.MultiheadAttention(dim, heads)
        if cross:
            self.multihead_attn = nn.MultiheadAttention(dim, heads)
            self.norm3 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens L x N x C (sequence first, as ``nn.MultiheadAttention`` by default)."""
        q = self.norm1(x)
        if self.cross:
            m = self.norm2(memory)
            x = x + self.multihead_attn(q, m, m, need_weights=False)[0]
            last = self.norm3
        else:
            x = x + self.self_attn(q, q, q, need_weights=False)[0]
            last = self.norm2
        return x + self.linear2(F.gelu(self.linear1(last(x))))


class Stack(nn.Module):
    """pyiqa's one-layer encoder / decoder wrappers (``*.layers.0.*``)."""

    def __init__(self, layer: AttentionLayer) -> None:
        super().__init__()
        self.layers = nn.ModuleList([layer])

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, memory)
        return x


class GatedPool(nn.Module):
    """GELU(values) x sigmoid gate, both from one 1x1 convolution's halves."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.splitconv = nn.Conv2d(dim, dim * 2, 1)
        self.weight_blk = nn.Sequential(
            nn.Conv2d(dim, 64, 1), nn.GELU(), nn.Conv2d(64, 64, 3, padding=1), nn.GELU(),
            nn.Conv2d(64, 1, 3, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values, gate = self.splitconv(x).chunk(2, dim=1)
        return F.gelu(values) * self.weight_blk(gate)


class TOPIQNR(nn.Module):
    """TOPIQ-NR on RGB in [0, 1]: ImageNet normalisation, then (``test_size``) the shorter side resized to
    ``test_size`` (bilinear with antialiasing, torchvision's ``resize``), then the network; one score each."""

    def __init__(self, inter_dim: int = 256, heads: int = 4, test_size: int | None = None,
                 channels: tuple[int, ...] = RESNET50_CHANNELS) -> None:
        super().__init__()
        self.test_size = test_size
        self.semantic_model = ResNetFeatures()
        ffn = min(4 * inter_dim, 2048)
        self.weight_pool = nn.ModuleList(GatedPool(c) for c in channels)
        self.dim_reduce = nn.ModuleList(nn.Sequential(nn.Conv2d(c, inter_dim, 1), nn.GELU()) for c in channels)
        self.sa_attn_blks = nn.ModuleList(Stack(AttentionLayer(inter_dim, heads, ffn)) for _ in channels)
        self.attn_blks = nn.ModuleList(Stack(AttentionLayer(inter_dim, heads, ffn, cross=True))
                                       for _ in channels[1:])
        self.attn_pool = AttentionLayer(inter_dim, heads, ffn)
        self.score_linear = nn.Sequential(
            nn.LayerNorm(inter_dim), nn.Linear(inter_dim, inter_dim), nn.GELU(),
            nn.LayerNorm(inter_dim), nn.Linear(inter_dim, inter_dim), nn.GELU(), nn.Linear(inter_dim, 1))
        self.h_emb = nn.Parameter(torch.randn(1, inter_dim // 2, 32, 1) * 0.02)
        self.w_emb = nn.Parameter(torch.randn(1, inter_dim // 2, 1, 32) * 0.02)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.test_size is not None:
            from torchvision.transforms.functional import resize

            x = resize(x, self.test_size, antialias=True)
        feats = self.semantic_model((x - self.mean) / self.std)
        th, tw = feats[-1].shape[2:]
        pos = torch.cat((self.h_emb.expand(-1, -1, -1, self.w_emb.shape[3]),
                         self.w_emb.expand(-1, -1, self.h_emb.shape[2], -1)), dim=1)
        tokens = []
        for i in reversed(range(len(feats))):
            f = self.weight_pool[i](feats[i])
            if f.shape[2] > th and f.shape[3] > tw:
                f = F.adaptive_avg_pool2d(f, (th, tw))
            p = F.interpolate(pos, size=f.shape[2:], mode="bicubic", align_corners=False)
            t = self.dim_reduce[i](f).flatten(2).permute(2, 0, 1) + p.flatten(2).permute(2, 0, 1)
            tokens.append(self.sa_attn_blks[i](t))
        query = tokens[0]
        for blk, memory in zip(self.attn_blks, tokens[1:]):
            query = blk(query, memory)
        return self.score_linear(self.attn_pool(query).mean(dim=0)).squeeze(1)
