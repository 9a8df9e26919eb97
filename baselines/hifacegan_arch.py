"""HiFaceGAN's released generator (Lotayou/Face-Renovation ``LIPSPADEGenerator``, ngf 48), written here.

* encoder (``lip_encoder.model``): conv 3->ngf, InstanceNorm, ReLU, then 5 x [local-importance pooling
  (``SimplifiedLIP``: conv + affine InstanceNorm + 12 * sigmoid gate as pooling logits, 3x3 stride 2),
  conv, InstanceNorm, ReLU (not after the last)]: 512 -> 16 px, channels ngf x [2, 4, 8, 16, 16];
* decoder: ``head_0`` at 16 px, x2, ``G_middle_0/1`` at 32 px, then 4 x [x2 nearest, ``ups[i]``] to 512 px,
  ``to_rgbs[3]`` on leaky_relu(0.2), tanh. Every block is a SPADE residual block (spectral-norm convs)
  conditioned on the 512 px input itself, nearest-resized to the block's size;
* SPADE: parameter-free normalisation, then ``x_norm * gamma + beta`` from a 3x3 conv (``min(128, C)``
  hidden channels, ReLU) and two bias-free 3x3 convs — the form of the author's own BasicSR port
  (Face-Renovation's ``normalization.py`` could not be read; the released checkpoint's tensor shapes fix
  the sizes, and the parameter count, 72,223,660 at ngf 48, matches).

The released checkpoints were trained with SyncBatchNorm as the parameter-free norm and the official test
script runs the network in train mode ("Critical Bug" comment), so each image is normalised with its own
batch statistics; at batch size 1 that is exactly instance normalisation, which is what is computed here
for every image whatever the batch (the stored running statistics are loaded and unused). Spectral norm
uses the stored ``weight_u``/``weight_v`` (eval semantics) by default; ``sn="iterate"`` performs the one
power iteration the official train-mode call performs from the stored vectors, without storing it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn
from torch.nn import functional as F


class SNConv2d(nn.Module):
    """A conv whose weight is ``weight_orig / sigma`` with torch's spectral-norm buffers (old-style keys
    ``weight_orig``, ``weight_u``, ``weight_v``), computed functionally: nothing is updated in place."""

    def __init__(self, cin: int, cout: int, k: int, padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        self.weight_orig = nn.Parameter(torch.randn(cout, cin, k, k) / (cin * k * k) ** 0.5)
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.register_buffer("weight_u", F.normalize(torch.randn(cout), dim=0, eps=1e-12))
        self.register_buffer("weight_v", F.normalize(torch.randn(cin * k * k), dim=0, eps=1e-12))
        self.padding = padding
        self.iterate = False

    def weight(self) -> torch.Tensor:
        w = self.weight_orig.flatten(1)
        u, v = self.weight_u, self.weight_v
        if self.iterate:
            v = F.normalize(torch.mv(w.t(), u), dim=0, eps=1e-12)
            u = F.normalize(torch.mv(w, v), dim=0, eps=1e-12)
        sigma = torch.dot(u, torch.mv(w, v))
        return self.weight_orig / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight(), self.bias, padding=self.padding)


class ParamFreeNorm(nn.Module):
    """The checkpoint's affine-free (Sync)BatchNorm buffers, applied as per-sample instance norm."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, eps=1e-5)


class SPADE(nn.Module):
    def __init__(self, c: int, label_nc: int = 3) -> None:
        super().__init__()
        hidden = min(128, c)
        self.param_free_norm = ParamFreeNorm(c)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, c, 3, padding=1, bias=False)
        self.mlp_beta = nn.Conv2d(hidden, c, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        actv = self.mlp_shared(F.interpolate(seg, size=x.shape[2:], mode="nearest"))
        return self.param_free_norm(x) * self.mlp_gamma(actv) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    def __init__(self, fin: int, fout: int) -> None:
        super().__init__()
        mid = min(fin, fout)
        self.conv_0, self.conv_1 = SNConv2d(fin, mid, 3, 1), SNConv2d(mid, fout, 3, 1)
        self.norm_0, self.norm_1 = SPADE(fin), SPADE(mid)
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.conv_s, self.norm_s = SNConv2d(fin, fout, 1, 0, bias=False), SPADE(fin)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        xs = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        return xs + self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))


class SoftGate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * 12.0


class SimplifiedLIP(nn.Module):
    """Local importance-based pooling: ``avg_pool(x e^l) / avg_pool(e^l)``, 3x3 stride 2 pad 1."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.logit = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.InstanceNorm2d(c, affine=True),
                                   SoftGate())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.logit(x).exp()
        return F.avg_pool2d(x * w, 3, 2, 1) / F.avg_pool2d(w, 3, 2, 1)


class LIPEncoder(nn.Module):
    def __init__(self, ngf: int, n_down: int = 5) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, ngf, 3, padding=1, bias=False), nn.InstanceNorm2d(ngf), nn.ReLU()]
        cur = 1
        for i in range(n_down):
            nxt = min(cur * 2, 16)
            layers += [SimplifiedLIP(ngf * cur), nn.Conv2d(ngf * cur, ngf * nxt, 3, padding=1),
                       nn.InstanceNorm2d(ngf * nxt)]
            if i < n_down - 1:
                layers.append(nn.ReLU())
            cur = nxt
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@dataclass(frozen=True)
class LIPSPADEConfig:
    ngf: int = 48
    n_down: int = 5      # num_upsampling_layers 'normal': 512 -> 16 px


OFFICIAL_CONFIG = LIPSPADEConfig()


class LIPSPADEGenerator(nn.Module):
    """512 px RGB in [0, 1] -> tanh output (read as [0, 1] by the official script)."""

    def __init__(self, cfg: LIPSPADEConfig = OFFICIAL_CONFIG) -> None:
        super().__init__()
        nf = cfg.ngf
        self.fc = nn.Conv2d(3, 16 * nf, 3, padding=1)  # in the checkpoint, unused by LIPSPADE's forward
        self.head_0 = SPADEResnetBlock(16 * nf, 16 * nf)
        self.G_middle_0 = SPADEResnetBlock(16 * nf, 16 * nf)
        self.G_middle_1 = SPADEResnetBlock(16 * nf, 16 * nf)
        self.ups = nn.ModuleList([SPADEResnetBlock(16 * nf, 8 * nf), SPADEResnetBlock(8 * nf, 4 * nf),
                                  SPADEResnetBlock(4 * nf, 2 * nf), SPADEResnetBlock(2 * nf, nf)])
        self.to_rgbs = nn.ModuleList([nn.Conv2d(c * nf, 3, 3, padding=1) for c in (8, 4, 2, 1)])
        self.lip_encoder = LIPEncoder(nf, cfg.n_down)

    def set_spectral_iteration(self, on: bool) -> "LIPSPADEGenerator":
        for m in self.modules():
            if isinstance(m, SNConv2d):
                m.iterate = on
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seg = x
        h = self.head_0(self.lip_encoder(x), seg)
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.G_middle_1(self.G_middle_0(h, seg), seg)
        for up in self.ups:
            h = up(F.interpolate(h, scale_factor=2, mode="nearest"), seg)
        return torch.tanh(self.to_rgbs[-1](F.leaky_relu(h, 0.2)))


def config_from_state_dict(sd: Mapping[str, torch.Tensor]) -> LIPSPADEConfig:
    return LIPSPADEConfig(ngf=int(sd["to_rgbs.3.weight"].shape[1]))
