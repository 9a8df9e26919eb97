"""OpenAI CLIP with the modified-ResNet image tower (RN50 at full size) or the ViT one (ViT-B/32, LIQE's), in
OpenAI's parameter names.

Written in-project from the CLIP paper's description (Radford et al. 2021, Sec. 2.4) and the layout of
the released files: a three-convolution stem with average pooling, bottlenecks that pool before their
strided step (``avgpool``) and in their shortcut (``downsample.-1``), and an attention pool that lets the
mean token attend over the grid; a 12-layer causal text transformer whose end-of-text token, projected,
is the text embedding. ``positional=False`` (CLIP-IQA's choice) runs the attention pool without its
positional embedding, so that any image size works. The ViT tower: non-overlapping patches by one
convolution, a class token, the positional embedding, ``ln_pre``, the same pre-norm blocks as the text
tower's (no mask), ``ln_post`` of the class token, projected.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

#: OpenAI's image normalisation
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> (average pool when strided) -> 1x1 (x4), shortcut pooled then projected."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * 4, 1, bias=False)),
                ("1", nn.BatchNorm2d(planes * 4))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.relu2(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(self.avgpool(y)))
        return self.relu3(y + (x if self.downsample is None else self.downsample(x)))


class AttentionPool2d(nn.Module):
    """The grid's mean token queries [mean, grid] with multi-head attention; its output, projected."""

    def __init__(self, grid: int, dim: int, heads: int, out_dim: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, dim) / dim ** 0.5)
        self.k_proj, self.q_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.c_proj = nn.Linear(dim, out_dim)
        self.heads = heads

    def forward(self, x: torch.Tensor, positional: bool = True) -> torch.Tensor:
        n, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)                        # N x HW x C
        tokens = torch.cat([tokens.mean(1, keepdim=True), tokens], 1)  # N x (1 + HW) x C
        if positional:
            if tokens.shape[1] != self.positional_embedding.shape[0]:
                raise ValueError(f"the attention pool's positional embedding covers "
                                 f"{self.positional_embedding.shape[0] - 1} cells, the image gives {h} x {w}")
            tokens = tokens + self.positional_embedding.to(tokens.dtype)
        d = c // self.heads
        q = self.q_proj(tokens[:, :1]).view(n, 1, self.heads, d).transpose(1, 2)
        k = self.k_proj(tokens).view(n, -1, self.heads, d).transpose(1, 2)
        v = self.v_proj(tokens).view(n, -1, self.heads, d).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
        return self.c_proj((att @ v).transpose(1, 2).reshape(n, c))


class ModifiedResNet(nn.Module):
    """CLIP's image tower: stem of three 3x3 convolutions + average pool, four bottleneck stages, the
    attention pool (RN50: layers 3-4-6-3, width 64)."""

    def __init__(self, layers: tuple[int, int, int, int] = (3, 4, 6, 3), width: int = 64, out_dim: int = 1024,
                 resolution: int = 224) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        inplanes = width
        for i, (n, planes) in enumerate(zip(layers, (width, width * 2, width * 4, width * 8))):
            blocks = []
            for b in range(n):
                blocks.append(Bottleneck(inplanes, planes, stride=(1 if i == 0 or b > 0 else 2)))
                inplanes = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.attnpool = AttentionPool2d(resolution // 32, width * 32, width * 32 // 64, out_dim)

    def forward(self, x: torch.Tensor, positional: bool = True) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.avgpool(self.relu3(self.bn3(self.conv3(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x, positional)


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the GELU approximation CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1 x), then x + mlp(ln_2 x)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, width * 4)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(width * 4, width))]))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class VisionTransformer(nn.Module):
    """CLIP's ViT image tower (ViT-B/32: width 768, 12 layers, patch 32, 224 px)."""

    def __init__(self, resolution: int = 224, patch: int = 32, width: int = 768, layers: int = 12,
                 out_dim: int = 512) -> None:
        super().__init__()
        scale = width ** -0.5
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((resolution // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, width // 64)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, out_dim))

    def forward(self, x: torch.Tensor, positional: bool = True) -> torch.Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)                        # N x grid^2 x width
        x = torch.cat([self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1), x], 1)
        if x.shape[1] != self.positional_embedding.shape[0]:
            raise ValueError(f"the ViT's positional embedding covers {self.positional_embedding.shape[0] - 1} "
                             f"patches, the image gives {x.shape[1] - 1}")
        x = self.ln_pre(x + self.positional_embedding.to(x.dtype))
        x = self.transformer(x.transpose(0, 1), None).transpose(0, 1)
        return self.ln_post(x[:, 0]) @ self.proj


class CLIP(nn.Module):
    """Image and text towers with OpenAI's names (``visual.*``, ``transformer.resblocks.*``,
    ``token_embedding``, ``positional_embedding``, ``ln_final``, ``text_projection``, ``logit_scale``).
    ``patch`` > 0: the ViT image tower with ``layers`` blocks of ``width`` (ViT-B/32: patch 32, 12, 768)."""

    def __init__(self, *, embed_dim: int = 1024, layers: tuple[int, int, int, int] | int = (3, 4, 6, 3),
                 width: int = 64, resolution: int = 224, context: int = 77, vocab: int = 49408,
                 text_width: int = 512, text_layers: int = 12, patch: int = 0) -> None:
        super().__init__()
        if patch:
            assert isinstance(layers, int)
            self.visual: nn.Module = VisionTransformer(resolution, patch, width, layers, embed_dim)
        else:
            assert not isinstance(layers, int)
            self.visual = ModifiedResNet(layers, width, embed_dim, resolution)
        self.transformer = Transformer(text_width, text_layers, text_width // 64)
        self.token_embedding = nn.Embedding(vocab, text_width)
        self.positional_embedding = nn.Parameter(torch.randn(context, text_width) * 0.01)
        self.ln_final = nn.LayerNorm(text_width)
        self.text_projection = nn.Parameter(torch.randn(text_width, embed_dim) / text_width ** 0.5)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @staticmethod
    def shape_of(sd: dict[str, torch.Tensor]) -> dict[str, object]:
        """Constructor arguments read from a state dict in OpenAI's layout (RN50, RN101, ViT-B/32, reduced
        copies)."""
        def count(prefix: str) -> int:
            return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})

        text = dict(context=sd["positional_embedding"].shape[0], vocab=sd["token_embedding.weight"].shape[0],
                    text_width=sd["ln_final.weight"].shape[0], text_layers=count("transformer.resblocks."))
        if "visual.proj" in sd:
            patch = sd["visual.conv1.weight"].shape[-1]
            grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
            return dict(embed_dim=sd["text_projection"].shape[1], layers=count("visual.transformer.resblocks."),
                        width=sd["visual.conv1.weight"].shape[0], resolution=grid * patch, patch=patch, **text)
        grid = round((sd["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
        return dict(embed_dim=sd["text_projection"].shape[1],
                    layers=tuple(count(f"visual.layer{i}.") for i in range(1, 5)),
                    width=sd["visual.layer1.0.conv1.weight"].shape[0], resolution=grid * 32, **text)

    def encode_image(self, x: torch.Tensor, positional: bool = True) -> torch.Tensor:
        """Embeddings of normalised images (see :data:`MEAN`, :data:`STD`), not unit length."""
        return self.visual(x, positional)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Embeddings of token rows (start token, BPE tokens, end token = the row's largest id, zeros)."""
        n = tokens.shape[1]
        causal = torch.full((n, n), float("-inf"), device=tokens.device).triu(1)
        x = self.token_embedding(tokens) + self.positional_embedding[:n]
        x = self.transformer(x.transpose(0, 1), causal).transpose(0, 1)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ self.text_projection

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities, images x texts."""
        a = F.normalize(image_features, dim=-1)
        b = F.normalize(text_features, dim=-1)
        return self.logit_scale.exp() * a @ b.t()
