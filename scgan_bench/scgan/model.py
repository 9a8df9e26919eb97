"""The SCGAN container (branches + discriminators of a variant), the two training recipes, and the
losses of one training step (Eqs. 1-13)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from ..errors import UsageError
from ..training.models import judge, network_seed
from .dataflow import CROSSINGS, FAKE_OF, active_images, active_terms
from .networks import DegradationNet, Discriminator, RestorationNet, kaiming_zero_residual_
from .variants import ADV_LOSSES, Variant


@dataclass(frozen=True)
class Recipe:
    """How the losses are weighted, wired and initialised. ``official`` = the released train.py (it
    trains); ``paper`` = the equations as printed, with R_LS regularised by both cycles.

    The four crossing weights (see :mod:`.dataflow`) scale a term's gradient where it passes from the
    branch that owns it into the branch that made its input; 0 detaches (each equation then trains
    only its own branch, as printed and as released)."""

    name: str
    l1_weight: float        # on pixel / cycle l1 terms
    adv_weight: float       # on generator adversarial terms
    init: str               # "default" (PyTorch's) or "kaiming-zero-residual"
    theta: float = 1.0      # R_LS forward-process weight (Eq. 6)
    gamma: float = 0.05     # R_LS backward-process weight (Eq. 6)
    forward_cycle_to_dhl: float = 0.0   # R_LS's forward cycle l1 (I_sS vs I_rH) into D_HL
    forward_adv_to_dhl: float = 0.0     # D_H1's term on I_sS into D_HL
    backward_cycle_to_rls: float = 0.0  # D_SL's cycle l1 (^I_rL vs I_rL) into R_LS
    backward_adv_to_rls: float = 0.0    # D_L2's term on ^I_rL into R_LS
    note: str = ""

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise UsageError(f"recipe {self.name}: init must be one of {', '.join(INITS)}, got {self.init!r}")
        for k in CROSSINGS:
            w = getattr(self, k)
            if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
                raise UsageError(f"recipe {self.name}: crossing {k} must be a finite number >= 0, got {w!r}")

    def with_crossings(self, overrides: Mapping[str, float]) -> "Recipe":
        """This recipe with some crossing weights changed; the name records the changes."""
        bad = set(overrides) - set(CROSSINGS)
        if bad:
            raise UsageError(f"unknown crossing(s) {', '.join(sorted(bad))}; allowed: {', '.join(CROSSINGS)}")
        changed = {k: float(w) for k, w in overrides.items() if float(w) != getattr(self, k)}
        if not changed:
            return self
        label = ",".join(f"{k}={w:g}" for k, w in sorted(changed.items()))
        return replace(self, name=f"{self.name}[{label}]", note="", **changed)

    def spec(self) -> dict[str, Any]:
        """Everything that changes training (the note is prose, left out)."""
        d = asdict(self)
        d.pop("note")
        return d

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "Recipe":
        kw = {f.name: spec[f.name] for f in fields(cls) if f.name in spec and f.name != "note"}
        known = RECIPES.get(kw.get("name", ""))
        return cls(**kw, note=known.note if known is not None and known.spec() == spec else "")


INITS = ("default", "kaiming-zero-residual")

RECIPES = {
    # train.py: loss = alpha * l1 + beta * adv with alpha = 1, beta = 0.05; G_RLS(lr_gen.detach()) and
    # G_DSL(hr_gen_r.detach()): no crossings; PyTorch's default initialisation
    "official": Recipe("official", l1_weight=1.0, adv_weight=0.05, init="default",
                       note="as released, D_SL sees a detached I_rS and R_LS a detached I_sL"),
    # Eqs. 2-12 as printed: alpha = 1 on the adversarial terms, beta = 0.05 on l1/cycle; R_LS
    # "regularized by both the forward and backward cycle-consistent learning processes" (abstract):
    # the backward cycle l1 reaches R_LS weighted like R_LS's backward process (gamma, Eq. 6); D_L2's
    # term is not among R_LS's losses (Eqs. 6-8) and stays in D_SL; D_HL keeps its own Eq. 2.
    # Kaiming initialisation (Sec. 3.6), made trainable (see networks.kaiming_zero_residual_).
    "paper": Recipe("paper", l1_weight=0.05, adv_weight=1.0, init="kaiming-zero-residual",
                    backward_cycle_to_rls=0.05,
                    note="D_SL's cycle l1 reaches R_LS at gamma; D_L2's term and R_LS's forward terms "
                         "stay in their own branch"),
}


def get_recipe(name: str, crossings: Mapping[str, float] | None = None) -> Recipe:
    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}; allowed: {', '.join(RECIPES)}")
    return RECIPES[name].with_crossings(crossings or {})


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient passing back is multiplied by ``scale`` (a crossing weight)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    return _ScaleGrad.apply(x, scale)


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
        if not self.training or not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)  # one process: the fused (cuDNN) kernel, same statistics
        n = torch.tensor(float(x.shape[0] * x.shape[2] * x.shape[3]), device=x.device)
        s = x.float().sum(dim=(0, 2, 3))
        ss = (x.float() ** 2).sum(dim=(0, 2, 3))
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


class SCGAN(nn.Module):
    """D_HL, D_SL (with the variant's sharing), R_LS and the active discriminators; the step's images
    and terms come from :mod:`.dataflow`."""

    def __init__(self, variant: Variant, recipe: Recipe, width: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        self.variant, self.recipe, self.seed = variant, recipe, seed
        self.rls = self._build("rls", lambda: _syncable(RestorationNet(width)))
        self.dhl = self._build("dhl", lambda: DegradationNet(width)) if variant.has_dhl else None
        self.dsl = self._build_dsl(width) if variant.has_dsl else None
        self.disc = nn.ModuleDict({k: self._build(f"disc.{k}", lambda k=k: Discriminator(16 if k[0] == "L" else 64,
                                                                                      width))
                                   for k in ADV_LOSSES if variant.uses(k)})

    def _build(self, name: str, make):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(network_seed(self.seed, name))
            net = make()
            if self.recipe.init == "kaiming-zero-residual":
                kaiming_zero_residual_(net)
        return net

    def _build_dsl(self, width: float) -> DegradationNet:
        share = set(self.variant.share)
        if "all" in share and self.dhl is not None:
            return self.dhl
        dsl = self._build("dsl", lambda: DegradationNet(width))
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
        """Every image the step needs, each computed once (see :func:`.dataflow.active_images`). Where
        a recipe weights the terms reading an image differently, the image is computed from a detached
        leaf ``fakes["_leaf:<image>"]`` and :meth:`generator_backward` routes each term's gradient."""
        out: dict[str, torch.Tensor] = {}
        terms = active_terms(self.variant, self.recipe)
        nets = {"dhl": self.dhl, "rls": self.rls, "dsl": self.dsl}
        for name, spec in active_images(self.variant).items():
            if spec.source is None:
                x = hr if spec.network == "dhl" else lr
            else:
                x = self._crossing_input(out, name, out[spec.source], terms)
            out[name] = nets[spec.network](x) if spec.network == "rls" else nets[spec.network](x, z)
        return out

    def _crossing_input(self, out: dict[str, torch.Tensor], name: str, src: torch.Tensor, terms) -> torch.Tensor:
        weights = {t.route(self.recipe) for t in terms.values() if t.image == name}
        if not weights or weights == {0.0}:
            return src.detach()
        if len(weights) == 1:
            w = weights.pop()
            return src if w == 1.0 else scale_grad(src, w)
        leaf = src.detach().requires_grad_(True)
        out["_leaf:" + name] = leaf
        return leaf

    def discriminator_loss(self, hr: torch.Tensor, lr: torch.Tensor, fakes: Mapping[str, torch.Tensor],
                           fused: bool = True) -> dict[str, torch.Tensor]:
        """Hinge losses of the active discriminators on real vs detached fake images (``fused``: each
        discriminator judges both in one call, see :func:`scgan_bench.training.models.judge`)."""
        terms = {}
        for k, d in self.disc.items():
            d_real, d_fake = judge(d, lr if k[0] == "L" else hr, fakes[FAKE_OF[k]], fused)
            terms[f"D_{k}"] = F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
        return terms

    def generator_loss(self, hr: torch.Tensor, lr: torch.Tensor, fakes: Mapping[str, torch.Tensor]
                       ) -> dict[str, torch.Tensor]:
        """The weighted generator terms of Eqs. 2-12 that this variant keeps (removed terms are never
        computed)."""
        targets = {"dhl_pix": lambda: F.avg_pool2d(hr, 4), "rls_cyc": lambda: hr,
                   "rls_pix": lambda: F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=True),
                   "dsl_cyc": lambda: lr}
        t: dict[str, torch.Tensor] = {}
        for name, spec in active_terms(self.variant, self.recipe).items():
            img = fakes[spec.image]
            raw = -self.disc[spec.disc](img).mean() if spec.disc else F.l1_loss(img, targets[name]())
            t[name] = spec.weight * raw
        if not t:
            raise ValueError(f"variant {self.variant.name} leaves no generator loss")
        return t

    def generator_backward(self, terms: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]) -> None:
        """One backward of the generator terms. An image computed from a crossing leaf gets each
        reading term's gradient times that term's crossing weight (one extra input-gradient pass)."""
        total = sum(terms.values())
        specs = active_terms(self.variant, self.recipe)
        for name, img in active_images(self.variant).items():
            leaf = fakes.get("_leaf:" + name)
            if leaf is None:
                continue
            routed = [spec.route(self.recipe) * terms[n] for n, spec in specs.items()
                      if spec.image == name and n in terms and spec.route(self.recipe)]
            if not routed:
                continue
            (g,) = torch.autograd.grad(sum(routed), leaf, retain_graph=True)
            total = total + (fakes[img.source] * g.detach()).sum()
        total.backward()
