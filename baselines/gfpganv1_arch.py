"""GFPGAN v1 (the paper-era model, ``GFPGANv1.pth``), written here in pure PyTorch.

The original network (TencentARC/GFPGAN ``gfpganv1_arch.py`` on top of ``stylegan2_arch.py``) needs two
custom ops: the fused bias + leaky-ReLU (``fused_act``) and ``upfirdn2d``. spandrel ships the classes but
its fused activation has no fallback (its CUDA extension is absent), so v1 cannot run there. Here both are
ordinary tensor ops:

* fused leaky ReLU: ``leaky_relu(x + bias, 0.2) * sqrt(2)``;
* upfirdn2d: zero-insertion upsampling by ``up``, zero padding, a depthwise convolution with the flipped
  FIR kernel, subsampling by ``down``.

Module names follow the official state dict exactly (``conv_body_first.0.weight``, ``conv_body_down.N.
conv2.1.weight``, ``stylegan_decoder.style_convs.N.activate.bias`` ...), so ``GFPGANv1.pth`` loads strictly.
The configuration is read from a state dict by :func:`config_from_state_dict`, so reduced-size files in
the same layout load too (the tests use them); the official file is checked against
:data:`OFFICIAL_CONFIG`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

SQRT2 = math.sqrt(2.0)


def fir_kernel(k: Sequence[int]) -> torch.Tensor:
    """2-D FIR kernel: outer product of the 1-D taps, normalised to sum 1."""
    t = torch.tensor(k, dtype=torch.float32)
    t = t[None, :] * t[:, None]
    return t / t.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample (zero insertion), FIR-filter and downsample, per channel (non-negative pads only)."""
    b, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(b, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    p0, p1 = pad
    x = F.pad(x, (p0, p1, p0, p1))
    k = torch.flip(kernel, [0, 1]).to(x)
    x = F.conv2d(x, k.expand(c, 1, *k.shape), groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), 0.2) * SQRT2


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class ScaledLeakyReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.2) * SQRT2


class Smooth(nn.Module):
    """The FIR blur around a strided / transposed convolution (no parameters)."""

    def __init__(self, taps: Sequence[int], pad: tuple[int, int], gain: float = 1.0) -> None:
        super().__init__()
        self.pad = pad
        self.register_buffer("kernel", fir_kernel(taps) * gain, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class EqualConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale, self.stride, self.padding = 1 / math.sqrt(cin * k * k), stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)


class EqualLinear(nn.Module):
    def __init__(self, cin: int, cout: int, lr_mul: float = 1.0, activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(cin), lr_mul, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class ConvLayer(nn.Sequential):
    """[blur] + equalised conv + activation; indices match the official ``nn.Sequential``."""

    def __init__(self, cin: int, cout: int, k: int, downsample: bool = False, bias: bool = True,
                 activate: bool = True, taps: Sequence[int] = (1, 3, 3, 1)) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(taps) - 2) + (k - 1)
            layers.append(Smooth(taps, ((p + 1) // 2, p // 2)))
        layers.append(EqualConv2d(cin, cout, k, stride=2 if downsample else 1,
                                  padding=0 if downsample else k // 2, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(cout) if bias else ScaledLeakyReLU())
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(cin, cin, 3)
        self.conv2 = ConvLayer(cin, cout, 3, downsample=True)
        self.skip = ConvLayer(cin, cout, 1, downsample=True, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


class ConvUpLayer(nn.Module):
    """Bilinear x2, then an equalised conv (+ fused activation)."""

    def __init__(self, cin: int, cout: int, k: int, padding: int = 0, activate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.scale, self.padding = 1 / math.sqrt(cin * k * k), padding
        self.activation = FusedLeakyReLU(cout) if activate else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.conv2d(x, self.weight * self.scale, None, 1, self.padding)
        return self.activation(x) if self.activation is not None else x


class ResUpBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(cin, cin, 3)
        self.conv2 = ConvUpLayer(cin, cout, 3, padding=1)
        self.skip = ConvUpLayer(cin, cout, 1, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (per-sample weights as a grouped convolution)."""

    def __init__(self, cin: int, cout: int, k: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, taps: Sequence[int] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.cin, self.cout, self.k, self.demodulate, self.upsample = cin, cout, k, demodulate, upsample
        if upsample:
            p = (len(taps) - 2) - (k - 1)
            self.smooth = Smooth(taps, ((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)
        self.scale = 1 / math.sqrt(cin * k * k)
        self.modulation = EqualLinear(style_dim, cin)
        self.weight = nn.Parameter(torch.randn(1, cout, cin, k, k))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        weight = self.scale * self.weight * self.modulation(style).view(b, 1, c, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, self.cout, 1, 1, 1)
        x = x.reshape(1, b * c, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * c, self.cout, self.k, self.k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=b)
            return self.smooth(out.view(b, self.cout, *out.shape[2:]))
        out = F.conv2d(x, weight.reshape(b * self.cout, c, self.k, self.k), padding=self.k // 2, groups=b)
        return out.view(b, self.cout, *out.shape[2:])


class StyleConv(nn.Module):
    def __init__(self, cin: int, cout: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.modulated_conv = ModulatedConv2d(cin, cout, 3, style_dim, upsample=upsample)
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.activate = FusedLeakyReLU(cout)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.modulated_conv(x, style) + self.weight * noise)


class Upsample(nn.Module):
    """x2 FIR upsampling of the RGB skip path (no parameters)."""

    def __init__(self, taps: Sequence[int] = (1, 3, 3, 1)) -> None:
        super().__init__()
        p = len(taps) - 2
        self.pad = ((p + 1) // 2 + 1, p // 2)
        self.register_buffer("kernel", fir_kernel(taps) * 4.0, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=2, pad=self.pad)


class ToRGB(nn.Module):
    def __init__(self, cin: int, style_dim: int, upsample: bool = True) -> None:
        super().__init__()
        self.upsample = Upsample() if upsample else None
        self.modulated_conv = ModulatedConv2d(cin, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            out = out + (self.upsample(skip) if self.upsample is not None else skip)
        return out


class ConstantInput(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, channels, 4, 4))


def _channels(narrow: float, multiplier: int) -> dict[int, int]:
    return {4: int(512 * narrow), 8: int(512 * narrow), 16: int(512 * narrow), 32: int(512 * narrow),
            64: int(256 * multiplier * narrow), 128: int(128 * multiplier * narrow),
            256: int(64 * multiplier * narrow), 512: int(32 * multiplier * narrow),
            1024: int(16 * multiplier * narrow)}


class StyleGAN2DecoderSFT(nn.Module):
    """StyleGAN2 generator whose features are modulated by SFT conditions (``sft_half``: half the
    channels), fed per-layer latents (``input_is_latent``)."""

    def __init__(self, out_size: int, style_dim: int, num_mlp: int, multiplier: int, narrow: float) -> None:
        super().__init__()
        ch = _channels(narrow, multiplier)
        self.log_size = int(math.log2(out_size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.style_mlp = nn.Sequential(nn.Identity(), *[EqualLinear(style_dim, style_dim, 0.01, activate=True)
                                                        for _ in range(num_mlp)])  # unused: input is latent
        self.constant_input = ConstantInput(ch[4])
        self.style_conv1 = StyleConv(ch[4], ch[4], style_dim)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)
        self.style_convs, self.to_rgbs, self.noises = nn.ModuleList(), nn.ModuleList(), nn.Module()
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise{i}", torch.randn(1, 1, r, r))
        cin = ch[4]
        for i in range(3, self.log_size + 1):
            cout = ch[2 ** i]
            self.style_convs.append(StyleConv(cin, cout, style_dim, upsample=True))
            self.style_convs.append(StyleConv(cout, cout, style_dim))
            self.to_rgbs.append(ToRGB(cout, style_dim))
            cin = cout

    def stored_noise(self) -> list[torch.Tensor]:
        return [getattr(self.noises, f"noise{i}") for i in range(self.num_layers)]

    def forward(self, latent: torch.Tensor, conditions: list[torch.Tensor], noise: list[torch.Tensor]) -> torch.Tensor:
        out = self.constant_input.weight.repeat(latent.shape[0], 1, 1, 1)
        out = self.style_conv1(out, latent[:, 0], noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv1, conv2, n1, n2, to_rgb in zip(self.style_convs[::2], self.style_convs[1::2], noise[1::2],
                                                noise[2::2], self.to_rgbs):
            out = conv1(out, latent[:, i], n1)
            if i < len(conditions):
                same, sft = torch.split(out, out.size(1) // 2, dim=1)
                out = torch.cat([same, sft * conditions[i - 1] + conditions[i]], dim=1)
            out = conv2(out, latent[:, i + 1], n2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip


@dataclass(frozen=True)
class GFPGANv1Config:
    out_size: int = 512
    style_dim: int = 512
    channel_multiplier: int = 1
    num_mlp: int = 8
    narrow: float = 1.0


#: GFPGANer's ``arch='original'``: GFPGANv1(out_size=512, channel_multiplier=1, input_is_latent=True,
#: different_w=True, sft_half=True, fix_decoder=True, num_mlp=8)
OFFICIAL_CONFIG = GFPGANv1Config()


class GFPGANv1(nn.Module):
    """U-Net encoder -> per-layer latents + SFT conditions -> StyleGAN2 decoder. ``forward`` takes
    512 px RGB in [-1, 1] and returns the restored image in [-1, 1] (unclamped)."""

    def __init__(self, cfg: GFPGANv1Config = OFFICIAL_CONFIG) -> None:
        super().__init__()
        self.cfg = cfg
        unet = _channels(cfg.narrow * 0.5, cfg.channel_multiplier)
        self.log_size = int(math.log2(cfg.out_size))
        self.conv_body_first = ConvLayer(3, unet[cfg.out_size], 1)
        self.conv_body_down = nn.ModuleList()
        cin = unet[cfg.out_size]
        for i in range(self.log_size, 2, -1):
            self.conv_body_down.append(ResBlock(cin, unet[2 ** (i - 1)]))
            cin = unet[2 ** (i - 1)]
        self.final_conv = ConvLayer(cin, unet[4], 3)
        self.conv_body_up, self.toRGB = nn.ModuleList(), nn.ModuleList()
        cin = unet[4]
        for i in range(3, self.log_size + 1):
            self.conv_body_up.append(ResUpBlock(cin, unet[2 ** i]))
            self.toRGB.append(EqualConv2d(unet[2 ** i], 3, 1))
            cin = unet[2 ** i]
        self.num_latent = self.log_size * 2 - 2
        self.final_linear = EqualLinear(unet[4] * 16, self.num_latent * cfg.style_dim)
        self.stylegan_decoder = StyleGAN2DecoderSFT(cfg.out_size, cfg.style_dim, cfg.num_mlp,
                                                    cfg.channel_multiplier, cfg.narrow)
        self.condition_scale, self.condition_shift = nn.ModuleList(), nn.ModuleList()
        for i in range(3, self.log_size + 1):
            c = unet[2 ** i]
            self.condition_scale.append(nn.Sequential(EqualConv2d(c, c, 3, padding=1), ScaledLeakyReLU(),
                                                      EqualConv2d(c, c, 3, padding=1)))
            self.condition_shift.append(nn.Sequential(EqualConv2d(c, c, 3, padding=1), ScaledLeakyReLU(),
                                                      EqualConv2d(c, c, 3, padding=1)))

    def forward(self, x: torch.Tensor, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        skips, conditions = [], []
        feat = self.conv_body_first(x)
        for block in self.conv_body_down:
            feat = block(feat)
            skips.insert(0, feat)
        feat = self.final_conv(feat)
        latent = self.final_linear(feat.reshape(feat.size(0), -1)).view(feat.size(0), -1, self.cfg.style_dim)
        for i, up in enumerate(self.conv_body_up):
            feat = up(feat + skips[i])
            conditions.append(self.condition_scale[i](feat))
            conditions.append(self.condition_shift[i](feat))
        return self.stylegan_decoder(latent, conditions, noise or self.stylegan_decoder.stored_noise())


def config_from_state_dict(sd: Mapping[str, torch.Tensor]) -> GFPGANv1Config:
    """Read the configuration of a GFPGANv1 state dict from its tensor shapes."""
    n_down = len({k.split(".")[1] for k in sd if k.startswith("conv_body_down.")})
    out_size = 2 ** (n_down + 2)
    style_dim = int(sd["stylegan_decoder.style_conv1.modulated_conv.modulation.weight"].shape[1])
    narrow = sd["stylegan_decoder.constant_input.weight"].shape[1] / 512
    last = sd[f"stylegan_decoder.to_rgbs.{n_down - 1}.modulated_conv.weight"].shape[2]
    multiplier = round(last / (narrow * 16384 / out_size)) if out_size >= 64 else 1
    num_mlp = len({k.split(".")[2] for k in sd if k.startswith("stylegan_decoder.style_mlp.")})
    return GFPGANv1Config(out_size, style_dim, max(1, multiplier), num_mlp, narrow)


__all__ = ["GFPGANv1", "GFPGANv1Config", "OFFICIAL_CONFIG", "config_from_state_dict", "upfirdn2d"]
