"""The SCGAN container (branches + discriminators of a variant), the two training recipes, and the
losses of one training step (Eqs. 1-13)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from .networks import DegradationNet, Discriminator, RestorationNet
from .variants import ADV_LOSSES, Variant


@dataclass(frozen=True)
class Recipe:
    """How the losses are weighted and wired. ``official`` = the released train.py (it trains);
    ``paper`` = the equations as printed."""

    name: str
    l1_weight: float        # on pixel / cycle l1 terms
    adv_weight: float       # on generator adversarial terms
    detach_dsl_input: bool  # True: D_SL sees a detached I_rS, so its losses never reach R_LS
    init: str               # "default" (PyTorch) or "kaiming"
    theta: float = 1.0      # R_LS forward-process weight (Eq. 6)
    gamma: float = 0.05     # R_LS backward-process weight (Eq. 6)


RECIPES = {
    # train.py: loss = alpha * l1 + beta * adv with alpha = 1, beta = 0.05; G_DSL(hr_gen_r.detach())
    "official": Recipe("official", l1_weight=1.0, adv_weight=0.05, detach_dsl_input=True, init="default"),
    # Eqs. 2-12: l = alpha * l_adv + beta * l_pix/cyc (alpha = 1, beta = 0.05); R_LS is regularised by
    # both cycles; Kaiming initialisation (Sec. 3.6)
    "paper": Recipe("paper", l1_weight=0.05, adv_weight=1.0, detach_dsl_input=False, init="kaiming"),
}


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: forward all-reduces the value, backward the gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        g = grad.clone()
        dist.all_reduce(g)
        return g


class SyncableBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics span every process of a distributed run (differentiable
    all-reduce), so a DDP run equals one process over the whole batch, on CPU (gloo) as on GPU.
    Same state-dict keys as ``nn.BatchNorm2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        n = torch.tensor(float(x.shape[0] * x.shape[2] * x.shape[3]), device=x.device)
        s = x.float().sum(dim=(0, 2, 3))
        ss = (x.float() ** 2).sum(dim=(0, 2, 3))
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            stacked = _AllReduceSum.apply(torch.cat([s, ss, n.reshape(1)]))
            s, ss, n = stacked[: s.numel()], stacked[s.numel(): 2 * s.numel()], stacked[-1]
        mean = s / n
        var = (ss / n - mean ** 2).clamp_min(0)
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
        y = (x - mean[None, :, None, None].to(x.dtype)) * torch.rsqrt(var + self.eps)[None, :, None, None].to(x.dtype)
        return y * self.weight[None, :, None, None] + self.bias[None, :, None, None]


def _syncable(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = SyncableBatchNorm2d(child.num_features, child.eps, child.momentum)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            _syncable(child)
    return module


def _kaiming(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            w = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.kaiming_normal_(w, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SCGAN(nn.Module):
    """D_HL, D_SL (with the variant's sharing), R_LS and the active discriminators."""

    def __init__(self, variant: Variant, recipe: Recipe, width: float = 1.0) -> None:
        super().__init__()
        self.variant, self.recipe = variant, recipe
        self.rls = _syncable(RestorationNet(width))
        self.dhl = DegradationNet(width) if variant.has_dhl else None
        self.dsl = self._build_dsl(width) if variant.has_dsl else None
        self.disc = nn.ModuleDict({k: Discriminator(16 if k[0] == "L" else 64, width)
                                   for k in ADV_LOSSES if variant.uses(k)})
        if recipe.init == "kaiming":
            _kaiming(self)

    def _build_dsl(self, width: float) -> DegradationNet | None:
        share = set(self.variant.share)
        if "all" in share and self.dhl is not None:
            return self.dhl
        dsl = DegradationNet(width)
        if self.dhl is None:
            return dsl
        if "in" in share:
            dsl.noise_fc, dsl.in_layer = self.dhl.noise_fc, self.dhl.in_layer
        if "encoder" in share:
            dsl.encoder = self.dhl.encoder
        if "decoder" in share:
            dsl.decoder = self.dhl.decoder
        if "middle" in share:
            for i in range(4, 8):
                dsl.encoder[i] = self.dhl.encoder[i]
            for j in range(3):
                dsl.decoder[j] = self.dhl.decoder[j]
        if "out" in share:
            dsl.out_layer = self.dhl.out_layer
        return dsl

    def generator_parameters(self) -> list[nn.Parameter]:
        seen: dict[int, nn.Parameter] = {}
        for m in (self.dhl, self.dsl, self.rls):
            if m is not None:
                for p in m.parameters():
                    seen.setdefault(id(p), p)
        return list(seen.values())

    # -------------------------------------------------------------------------------- one step
    def generate(self, hr: torch.Tensor, lr: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every image the step needs, each computed once: I_sL, I_sS, I_rS, I^_rL."""
        v, out = self.variant, {}
        if self.dhl is not None:
            out["lr_gen"] = self.dhl(hr, z)
        if v.forward_cycle:
            out["hr_gen"] = self.rls(out["lr_gen"].detach())
        if v.backward_restoration or v.has_dsl:
            out["hr_gen_r"] = self.rls(lr)
        if self.dsl is not None:
            src = out["hr_gen_r"].detach() if self.recipe.detach_dsl_input else out["hr_gen_r"]
            out["lr_real_2"] = self.dsl(src, z)
        return out

    _FAKE = {"L1": "lr_gen", "L2": "lr_real_2", "H1": "hr_gen", "H2": "hr_gen_r"}

    def discriminator_loss(self, hr: torch.Tensor, lr: torch.Tensor, fakes: Mapping[str, torch.Tensor]
                           ) -> dict[str, torch.Tensor]:
        """Hinge losses of the active discriminators on real vs detached fake images."""
        terms = {}
        for k, d in self.disc.items():
            real = lr if k[0] == "L" else hr
            terms[f"D_{k}"] = F.relu(1.0 - d(real)).mean() + F.relu(1.0 + d(fakes[self._FAKE[k]].detach())).mean()
        return terms

    def generator_loss(self, hr: torch.Tensor, lr: torch.Tensor, fakes: Mapping[str, torch.Tensor]
                       ) -> dict[str, torch.Tensor]:
        """The weighted generator terms of Eqs. 2-12 that this variant keeps (removed terms are never
        computed)."""
        v, r, t = self.variant, self.recipe, {}

        def adv(k: str) -> torch.Tensor:
            return -self.disc[k](fakes[self._FAKE[k]]).mean()

        if self.dhl is not None:
            if v.pixel:
                t["dhl_pix"] = r.l1_weight * F.l1_loss(fakes["lr_gen"], F.avg_pool2d(hr, 4))
            if v.uses("L1"):
                t["dhl_adv"] = r.adv_weight * adv("L1")
        if v.forward_cycle:
            if v.cycle:
                t["rls_cyc"] = r.theta * r.l1_weight * F.l1_loss(fakes["hr_gen"], hr)
            if v.uses("H1"):
                t["rls_adv1"] = r.theta * r.adv_weight * adv("H1")
        if v.backward_restoration:
            if v.pixel:
                ups = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=True)
                t["rls_pix"] = r.gamma * r.l1_weight * F.l1_loss(fakes["hr_gen_r"], ups)
            if v.uses("H2"):
                t["rls_adv2"] = r.gamma * r.adv_weight * adv("H2")
        if self.dsl is not None:
            if v.cycle:
                t["dsl_cyc"] = r.l1_weight * F.l1_loss(fakes["lr_real_2"], lr)
            if v.uses("L2"):
                t["dsl_adv"] = r.adv_weight * adv("L2")
        if not t:
            raise ValueError(f"variant {v.name} leaves no generator loss")
        return t
