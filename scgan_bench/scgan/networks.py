"""SCGAN's networks (Fig. 5), in the released architecture (HaoHou-98/SCGAN ``model.py``), written here.

* degradation branch (D_HL, D_SL): noise z (64) -> Linear -> a 1x64x64 map, concatenated with the
  64 px image; "in" conv 4->96; encoder: 8 residual blocks [96, 96, 128, 128, 256, 256, 512, 512], the
  even ones average-pool by 2 (64 -> 4 px); decoder: [PixelShuffle(2), 2 blocks] x 2 with 128 and 32
  channels (4 -> 16 px); "out" head conv 32->8, ReLU, conv 8->3, tanh.
* restoration branch R_LS: conv 3->256; 12 residual blocks at 16 px (identity skip around the
  group); bilinear x2 (align_corners) + BatchNorm + ReLU + 1x1 transposed conv; 3 blocks to 128
  channels (+ a 1x1 projection skip); the same up-sampling; conv3x3 128->96, ReLU, 1x1 96->96, ReLU,
  1x1 96->3, tanh.
* discriminators (D_L1, D_L2 at 16 px; D_H1, D_H2 at 64 px): spectral-norm residual blocks
  [128, 128, 256, 256, 512, 512], max-pooling in the last 2 (16 px) or 4 (64 px) blocks down to 4 px,
  then SN Linear(8192, 512), ReLU, SN Linear(512, 1).

Residual blocks are pre-activation without BatchNorm: ``x = relu(x); out = conv2(relu(conv1(x)));
return out + skip(x)``. The released blocks apply an in-place ReLU to their input, so the identity
path, the skip and the caller's next use of the tensor all see relu(x); the explicit ReLUs here
reproduce that. A ``width`` factor scales every channel count (``width=1`` is the released model;
CPU tests use smaller widths).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import _SpectralNorm, spectral_norm as _torch_spectral_norm

DEGRADATION_BLOCKS = (96, 96, 128, 128, 256, 256, 512, 512, 128, 128, 32, 32)
DISCRIMINATOR_BLOCKS = (128, 128, 256, 256, 512, 512)
NOISE_DIM = 64


class FullPrecisionSpectralNorm(_SpectralNorm):
    """torch's spectral-norm parametrisation computed outside autocast: the power iteration and sigma
    in float32 under ``--amp bf16`` too (under autocast its small matrix-vector products would run in
    bf16, each with its casts); the normalised weight is cast once by the layer that uses it. Same
    buffers (``_u``, ``_v``), same state-dict keys; identical without autocast."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(weight.device.type, enabled=False):
            return super().forward(weight)


def spectral_norm(module: nn.Module) -> nn.Module:
    """``torch.nn.utils.parametrizations.spectral_norm`` (one power iteration per call in training
    mode) with :class:`FullPrecisionSpectralNorm`."""
    module = _torch_spectral_norm(module)
    for p in module.parametrizations.weight:
        if type(p) is _SpectralNorm:
            p.__class__ = FullPrecisionSpectralNorm
    return module


def _c(n: int, width: float) -> int:
    return max(4, int(round(n * width)))


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1, bias=False)


class ResBlock(nn.Module):
    """Generator residual block (no BatchNorm), optionally average-pooling by 2."""

    def __init__(self, cin: int, cout: int, downsample: bool = False) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout)
        self.conv2 = nn.Sequential(nn.AvgPool2d(2, 2), conv3x3(cout, cout)) if downsample else conv3x3(cout, cout)
        if downsample:
            self.skip: nn.Module | None = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, 1))
        elif cin != cout:
            self.skip = nn.Conv2d(cin, cout, 1, 1, 0)
        else:
            self.skip = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        out = self.conv2(F.relu(self.conv1(x)))
        return out + (self.skip(x) if self.skip is not None else x)


class SNResBlock(nn.Module):
    """Discriminator residual block with spectral norm, optionally pooling by 2 (``max`` as SCGAN's
    released discriminators, ``avg`` as LRGAN's re-implementation)."""

    def __init__(self, cin: int, cout: int, downsample: bool = False, pool: str = "max") -> None:
        super().__init__()
        pool_cls = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}[pool]
        self.conv1 = spectral_norm(nn.Conv2d(cin, cout, 3, 1, 1, bias=False))
        conv2 = spectral_norm(nn.Conv2d(cout, cout, 3, 1, 1, bias=False))
        self.conv2 = nn.Sequential(pool_cls(2, 2), conv2) if downsample else conv2
        if downsample:
            self.skip: nn.Module | None = nn.Sequential(pool_cls(2, 2), spectral_norm(nn.Conv2d(cin, cout, 1, 1)))
        elif cin != cout:
            self.skip = spectral_norm(nn.Conv2d(cin, cout, 1, 1, 0))
        else:
            self.skip = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(F.relu(x))))
        return out + (self.skip(x) if self.skip is not None else x)


def degradation_layers(width: float, block) -> tuple[nn.Linear, nn.Conv2d, nn.Sequential, nn.Sequential,
                                                      nn.Sequential]:
    """The degradation generator's parts, built in this order: noise Linear, "in" conv, the 8-block
    encoder (even blocks pool), the decoder ([PixelShuffle(2), 2 blocks] x 2), the "out" head; with
    ``block(cin, cout, downsample=...)`` as residual block. SCGAN's D_HL / D_SL (no BatchNorm) and
    LRGAN's High-to-Low generator (BatchNorm blocks) are this graph."""
    b = [_c(n, width) for n in DEGRADATION_BLOCKS]
    b[8], b[9], b[10], b[11] = b[7] // 4, b[7] // 4, b[7] // 16, b[7] // 16  # PixelShuffle(2) / 4
    noise_fc = nn.Linear(NOISE_DIM, 64 * 64)
    in_layer = nn.Conv2d(4, b[0], 3, 1, 1, bias=False)
    enc, cin = [], b[0]
    for i in range(8):
        enc.append(block(cin, b[i], downsample=i % 2 == 0))
        cin = b[i]
    decoder = nn.Sequential(nn.PixelShuffle(2), block(b[8], b[8]), block(b[9], b[9]),
                            nn.PixelShuffle(2), block(b[10], b[10]), block(b[11], b[11]))
    out_layer = nn.Sequential(nn.Conv2d(b[11], 8, 3, 1, 1, bias=False), nn.ReLU(),
                              nn.Conv2d(8, 3, 3, 1, 1, bias=False), nn.Tanh())
    return noise_fc, in_layer, nn.Sequential(*enc), decoder, out_layer


class DegradationNet(nn.Module):
    """D_HL / D_SL: 64 px image + noise -> 16 px degraded image. Parts, for partial sharing:
    ``head_in`` (noise_fc + in_layer), ``encoder`` (8 blocks), ``decoder`` (2 x [shuffle, 2 blocks]),
    ``head_out``."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        self.noise_fc, self.in_layer, self.encoder, self.decoder, self.out_layer = degradation_layers(width, ResBlock)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        noise = self.noise_fc(z.reshape(z.shape[0], -1)).view(-1, 1, 64, 64)
        return self.out_layer(self.decoder(self.encoder(self.in_layer(torch.cat([x, noise], 1)))))


class BilinearUp2x(nn.Module):
    """x2 bilinear up-sampling with ``align_corners=True`` (the released ``nn.Upsample``). With
    ``matmul=True`` it is computed as ``A x A^T`` with the interpolation matrix A: the same map, whose
    CUDA backward is deterministic (``F.interpolate``'s bilinear backward has no deterministic CUDA
    kernel), used by ``train --deterministic``."""

    def __init__(self, matmul: bool = False) -> None:
        super().__init__()
        self.matmul = matmul

    @staticmethod
    def matrix(n: int, device=None, dtype=None) -> torch.Tensor:
        src = torch.arange(2 * n, dtype=torch.float64) * (n - 1) / max(2 * n - 1, 1)
        lo = src.floor().clamp(max=n - 1).long()
        hi = (lo + 1).clamp(max=n - 1)
        frac = src - lo
        a = torch.zeros(2 * n, n, dtype=torch.float64)
        a[torch.arange(2 * n), lo] += 1 - frac
        a[torch.arange(2 * n), hi] += frac
        return a.to(device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.matmul:
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        ah = self.matrix(x.shape[-2], x.device, x.dtype)
        aw = ah if x.shape[-1] == x.shape[-2] else self.matrix(x.shape[-1], x.device, x.dtype)
        return torch.matmul(torch.matmul(ah, x), aw.t())


class _Up(nn.Sequential):
    def __init__(self, ch: int) -> None:
        super().__init__(BilinearUp2x(), nn.BatchNorm2d(ch), nn.ReLU(),
                         nn.ConvTranspose2d(ch, ch, kernel_size=1, stride=1))


class RestorationNet(nn.Module):
    """R_LS: 16 px LR -> 64 px SR, output in [-1, 1]."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3 = _c(256, width), _c(128, width), _c(96, width)
        self.layers_in = conv3x3(3, c1)
        self.group1 = nn.Sequential(*[ResBlock(c1, c1) for _ in range(12)])
        self.up1 = _Up(c1)
        self.group2 = nn.Sequential(ResBlock(c1, c2), ResBlock(c2, c2), ResBlock(c2, c2))
        self.proj2 = nn.Conv2d(c1, c2, 1, 1)
        self.up2 = _Up(c2)
        # the released model also builds an unused 128->96 projection ("a2"); it is kept so that the
        # parameter count and the released state dict match, and never called
        self.proj3_unused = nn.Conv2d(c2, c3, 1, 1)
        self.tail = nn.Sequential(conv3x3(c2, c3), nn.ReLU(), nn.Conv2d(c3, c3, 1, 1), nn.ReLU(),
                                  nn.Conv2d(c3, 3, 1, 1), nn.Tanh())

    def set_deterministic_upsampling(self, on: bool = True) -> "RestorationNet":
        """Use the matmul form of the x2 bilinear up-sampling (deterministic CUDA backward)."""
        for m in self.modules():
            if isinstance(m, BilinearUp2x):
                m.matmul = on
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.layers_in(x))
        x = self.up1(x + self.group1(x))
        x = F.relu(x)
        x = self.up2(self.group2(x) + self.proj2(x))
        return self.tail(x)


class Discriminator(nn.Module):
    def __init__(self, input_size: int, width: float = 1.0, pool: str = "max") -> None:
        super().__init__()
        if input_size not in (16, 64):
            raise ValueError(f"discriminator input size must be 16 or 64, got {input_size}")
        b = [_c(n, width) for n in DISCRIMINATOR_BLOCKS]
        pool_start = len(b) - (4 if input_size == 64 else 2)
        blocks, cin = [], 3
        for i, c in enumerate(b):
            blocks.append(SNResBlock(cin, c, downsample=i >= pool_start, pool=pool))
            cin = c
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(spectral_norm(nn.Linear(16 * b[-1], b[-1])), nn.ReLU(),
                                  spectral_norm(nn.Linear(b[-1], 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).flatten(1))


# ------------------------------------------------------------------------------------ initialisation
def weight_parametrizations(m: nn.Module):
    """The parametrisation list of ``m.weight`` (spectral norm), or None when it has none."""
    return getattr(getattr(m, "parametrizations", None), "weight", None)


@torch.no_grad()
def refresh_spectral_norm(module: nn.Module, iterations: int = 100) -> None:
    """Re-run the power iteration of every spectral-norm parametrisation on its current weight (from
    fresh random vectors), so the first forward after a re-initialisation divides by the true largest
    singular value, not by an estimate made for the weights that were replaced."""
    for m in module.modules():
        plist = weight_parametrizations(m)
        if plist is None:
            continue
        w = plist.original
        for p in plist:
            if not (hasattr(p, "_u") and hasattr(p, "_v")):
                continue
            mat = w.movedim(getattr(p, "dim", 0), 0).flatten(1)
            v = F.normalize(torch.randn(mat.shape[1], dtype=mat.dtype, device=mat.device), dim=0)
            u = F.normalize(mat @ v, dim=0)
            for _ in range(iterations):
                v = F.normalize(mat.t() @ u, dim=0)
                u = F.normalize(mat @ v, dim=0)
            p._u.copy_(u)
            p._v.copy_(v)


TANH_INPUT_GAIN = 0.25


@torch.no_grad()
def kaiming_zero_residual_(module: nn.Module) -> nn.Module:
    """The paper's Kaiming initialisation (Sec. 3.6), made trainable for the released generators,
    whose residual blocks have no normalisation: Kaiming-normal (fan-in, ReLU gain) on every conv and
    linear weight, zero biases; the last conv of every generator residual branch zero-initialised, so
    each block starts as its skip path (plain Kaiming stacks 8-12 un-normalised blocks and saturates
    D_HL's tanh); the conv feeding each output tanh gets the linear gain times ``TANH_INPUT_GAIN``
    (1/4), which keeps the first outputs in tanh's linear range (R_LS on real faces: 1-10 % of pixels
    past |0.99| at gain 1, none at 1/4, over 6 seeds). Spectral-norm power iterations are then re-run
    on the new weights (:func:`refresh_spectral_norm`)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            plist = weight_parametrizations(m)
            w = plist.original if plist is not None else m.weight
            nn.init.kaiming_normal_(w, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, ResBlock):
            last = m.conv2[-1] if isinstance(m.conv2, nn.Sequential) else m.conv2
            nn.init.zeros_(last.weight)
        if isinstance(m, nn.Sequential) and len(m) and isinstance(m[-1], nn.Tanh):
            convs = [c for c in m if isinstance(c, nn.Conv2d)]
            nn.init.kaiming_normal_(convs[-1].weight, nonlinearity="linear")
            convs[-1].weight.mul_(TANH_INPUT_GAIN)
    refresh_spectral_norm(module)
    return module


def count_trainable(module: nn.Module) -> int:
    """Trainable parameters (spectral-norm u/v are buffers, so they are not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# Released state-dict key names (model.py) -> ours, for loading the authors' R_LS checkpoints.
def released_rls_key(key: str) -> str:
    import re

    rules = [
        (r"^layers_set_final\.0\.(\d+)\.", r"group1.\1."),
        (r"^layers_set_final\.1\.(\d+)\.", r"group2.\1."),
        (r"^layers_set_final_up\.0\.", "up1."),
        (r"^layers_set_final_up\.1\.", "up2."),
        (r"^a1\.0\.", "proj2."),
        (r"^a2\.0\.", "proj3_unused."),
        (r"^main\.0\.", "tail.0."),
        (r"^main\.2\.", "tail.2."),
        (r"^main\.4\.", "tail.4."),
    ]
    for pat, rep in rules:
        new = re.sub(pat, rep, key)
        if new != key:
            return new
    return key
