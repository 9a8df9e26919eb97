"""PULSE's pieces, written here: the StyleGAN (v1) synthesis network in PULSE's key layout (a port of
lernapparat's, itself of NVIDIA's), its bicubic down-sampler, the geodesic cross loss and the spherical
optimiser (adamian98/pulse ``stylegan.py``, ``bicubic.py``, ``loss.py``, ``SphericalOptimizer.py``).

Synthesis: ``blocks.4x4`` (learned constant + bias, noise, style modulation, conv, noise, style), then one
block per resolution up to 1024 (``conv0_up``: nearest x2 + conv below 128 px, the fused transposed conv
at 128 px and above, then a [1, 2, 1] blur; epilogues of noise, leaky ReLU 0.2, instance norm, style),
``torgb`` 1x1. Equalised learning rate: every weight is scaled by gain / sqrt(fan_in) at run time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

SQRT2 = math.sqrt(2.0)


class ScaledConv(nn.Module):
    """``MyConv2d`` with ``use_wscale``: weight x gain / sqrt(fan_in); optional x2 upsampling and a blur
    (``intermediate``) between the convolution and the bias."""

    def __init__(self, cin: int, cout: int, k: int, gain: float = SQRT2, upscale: bool = False,
                 blur: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.w_mul = gain * (cin * k * k) ** -0.5
        self.k, self.upscale = k, upscale
        if blur:
            self.intermediate = Blur()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.w_mul
        if self.upscale and min(x.shape[2:]) * 2 >= 128:   # StyleGAN's fused upscale + conv
            w = F.pad(w.permute(1, 0, 2, 3), (1, 1, 1, 1))
            w = w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]
            x = F.conv_transpose2d(x, w, stride=2, padding=(w.size(-1) - 1) // 2)
        else:
            if self.upscale:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            if not hasattr(self, "intermediate"):
                return F.conv2d(x, w, self.bias, padding=self.k // 2)
            x = F.conv2d(x, w, None, padding=self.k // 2)
        if hasattr(self, "intermediate"):
            x = self.intermediate(x)
        return x + self.bias.view(1, -1, 1, 1)


class Blur(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :])[None, None]
        self.register_buffer("kernel", k / k.sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel.expand(x.size(1), -1, -1, -1), padding=1, groups=x.size(1))


class NoiseLayer(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(c))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight.view(1, -1, 1, 1) * noise


class StyleLinear(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.w_mul = cin ** -0.5  # gain 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.w_mul, self.bias)


class StyleMod(nn.Module):
    def __init__(self, dlatent: int, c: int) -> None:
        super().__init__()
        self.lin = StyleLinear(dlatent, 2 * c)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.lin(w).view(-1, 2, x.size(1), 1, 1)
        return x * (style[:, 0] + 1.0) + style[:, 1]


class Epilogue(nn.Module):
    """noise -> leaky ReLU 0.2 -> instance norm -> style modulation."""

    def __init__(self, c: int, dlatent: int) -> None:
        super().__init__()
        self.noise = NoiseLayer(c)
        self.style_mod = StyleMod(dlatent, c)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = F.instance_norm(F.leaky_relu(self.noise(x, noise), 0.2), eps=1e-5)
        return self.style_mod(x, w)


class InputBlock(nn.Module):
    def __init__(self, c: int, dlatent: int) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.ones(1, c, 4, 4))
        self.bias = nn.Parameter(torch.ones(c))
        self.epi1, self.conv, self.epi2 = Epilogue(c, dlatent), ScaledConv(c, c, 3), Epilogue(c, dlatent)

    def forward(self, w: torch.Tensor, noise: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.const.expand(w.size(0), -1, -1, -1) + self.bias.view(1, -1, 1, 1)
        return self.epi2(self.conv(self.epi1(x, w[:, 0], noise[0])), w[:, 1], noise[1])


class SynthesisBlock(nn.Module):
    def __init__(self, cin: int, cout: int, dlatent: int) -> None:
        super().__init__()
        self.conv0_up = ScaledConv(cin, cout, 3, upscale=True, blur=True)
        self.epi1, self.conv1, self.epi2 = Epilogue(cout, dlatent), ScaledConv(cout, cout, 3), Epilogue(cout, dlatent)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.epi1(self.conv0_up(x), w[:, 0], noise[0])
        return self.epi2(self.conv1(x), w[:, 1], noise[1])


@dataclass(frozen=True)
class SynthesisConfig:
    resolution: int = 1024
    fmap_base: int = 8192
    fmap_max: int = 512
    dlatent: int = 512

    def channels(self, res_log2: int) -> int:
        return min(int(self.fmap_base / 2.0 ** (res_log2 - 1)), self.fmap_max)

    @property
    def num_layers(self) -> int:
        return int(math.log2(self.resolution)) * 2 - 2


OFFICIAL_CONFIG = SynthesisConfig()


class Synthesis(nn.Module):
    """``G_synthesis``: per-layer latents (N, num_layers, 512) and one noise map per layer -> RGB in
    [-1, 1] (unclamped) at ``resolution``."""

    def __init__(self, cfg: SynthesisConfig = OFFICIAL_CONFIG) -> None:
        super().__init__()
        self.cfg = cfg
        blocks: dict[str, nn.Module] = {}
        last = 0
        for r in range(2, int(math.log2(cfg.resolution)) + 1):
            c = cfg.channels(r)
            name = f"{2 ** r}x{2 ** r}"
            blocks[name] = InputBlock(c, cfg.dlatent) if r == 2 else SynthesisBlock(last, c, cfg.dlatent)
            last = c
        self.blocks = nn.ModuleDict(blocks)
        self.torgb = ScaledConv(last, 3, 1, gain=1.0)

    def noise_shapes(self, batch: int = 1) -> list[tuple[int, int, int, int]]:
        return [(batch, 1, 2 ** (i // 2 + 2), 2 ** (i // 2 + 2)) for i in range(self.cfg.num_layers)]

    def forward(self, w: torch.Tensor, noise: Sequence[torch.Tensor]) -> torch.Tensor:
        x = None
        for i, block in enumerate(self.blocks.values()):
            sl, nz = w[:, 2 * i:2 * i + 2], noise[2 * i:2 * i + 2]
            x = block(sl, nz) if i == 0 else block(x, sl, nz)
        return self.torgb(x)


def config_from_state_dict(sd: Mapping[str, torch.Tensor]) -> SynthesisConfig:
    res = max(int(k.split(".")[1].split("x")[0]) for k in sd if k.startswith("blocks."))
    c4 = sd["blocks.4x4.const"].shape[1]
    dl = sd["blocks.4x4.epi1.style_mod.lin.weight"].shape[1]
    last = sd["torgb.weight"].shape[1]
    # channels(r) = min(fmap_base / 2^(r-1), fmap_max): the last block fixes fmap_base (when below the max)
    base = int(last * 2 ** (math.log2(res) - 1)) if last < c4 else int(c4 * 2 ** (math.log2(res) - 1))
    return SynthesisConfig(resolution=res, fmap_base=base, fmap_max=c4, dlatent=dl)


class BicubicDownSample(nn.Module):
    """PULSE's separable bicubic (a = -0.5) down-sampler by an integer factor: a 4 x factor tap kernel,
    reflect padding, stride ``factor`` (its loss compares this with the LR image)."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor
        size = 4 * factor

        def cubic(x: float, a: float = -0.5) -> float:
            x = abs(x)
            if x <= 1:
                return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1
            if x < 2:
                return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a
            return 0.0

        k = torch.tensor([cubic((i - size // 2 + 0.5) / factor) for i in range(size)], dtype=torch.float32)
        self.register_buffer("k", k / k.sum(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = 4 * self.factor
        pad = s - self.factor
        lo, hi = pad // 2, pad - pad // 2
        c = x.size(1)
        x = F.conv2d(F.pad(x, (0, 0, lo, hi), mode="reflect"), self.k.view(1, 1, s, 1).repeat(c, 1, 1, 1),
                     stride=(self.factor, 1), groups=c)
        return F.conv2d(F.pad(x, (lo, hi, 0, 0), mode="reflect"), self.k.view(1, 1, 1, s).repeat(c, 1, 1, 1),
                        stride=(1, self.factor), groups=c)


def geocross(latent: torch.Tensor) -> torch.Tensor:
    """Per-image sum of squared geodesic distances between the layer latents, as PULSE's GEOCROSS
    (``mean`` over the pairs x 512 / 8), returned per image."""
    n, layers, d = latent.shape
    x, y = latent.view(n, 1, layers, d), latent.view(n, layers, 1, d)
    a = ((x - y).pow(2).sum(-1) + 1e-9).sqrt()
    b = ((x + y).pow(2).sum(-1) + 1e-9).sqrt()
    dist = 2 * torch.atan2(a, b)
    return (dist.pow(2) * d).mean((1, 2)) / 8.0


class SphericalAdam:
    """Adam whose parameters are projected back after every step onto the sphere of their initial radius
    (per batch item and layer: the norm over the dimensions after the first two)."""

    def __init__(self, params: list[torch.Tensor], lr: float) -> None:
        self.params = params
        self.opt = torch.optim.Adam(params, lr=lr)
        with torch.no_grad():
            self.radii = [(p.pow(2).sum(tuple(range(2, p.ndim)), keepdim=True) + 1e-9).sqrt() for p in params]

    @torch.no_grad()
    def step(self) -> None:
        self.opt.step()
        for p, r in zip(self.params, self.radii):
            p.div_((p.pow(2).sum(tuple(range(2, p.ndim)), keepdim=True) + 1e-9).sqrt()).mul_(r)


def one_cycle_drop(step: int, steps: int) -> float:
    """``linear1cycledrop``: linear 0.1 -> 1 -> 0.1 over the first 90 % of the steps, then down to 1/1000."""
    if step < 0.9 * steps:
        return (9 * (1 - abs(step / (0.9 * steps) - 0.5) * 2) + 1) / 10
    return 1 / 10 + (step - 0.9 * steps) / (0.1 * steps) * (1 / 1000 - 1 / 10)
