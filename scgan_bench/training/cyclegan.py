"""CycleGAN (Zhu et al., ICCV 2017) trained on this project's data: ``scgan-bench train --method
cyclegan [--variant cyclegan-16]``; each run is the SR method of its variant's name.

Stock CycleGAN (junyanz/pytorch-CycleGAN-and-pix2pix, BSD) except the block count: ResNet generators
(c7s1-64, d128, d256, 6 residual blocks (upstream's default is 9; it uses 6 for 128 px images), u128,
u64, c7s1-3; reflection padding, instance norm without affine, tanh), 70x70 PatchGAN discriminators
(n_layers 3, ndf 64, instance norm; wider than a 64 px face, so effectively global), LSGAN (MSE to 1 / 0),
cycle weight 10, identity 0.5 (x the cycle weight), image pool of 50 fakes per discriminator, Adam 2e-4 (0.5, 0.999),
batch 1, 100 epochs constant + 100 linear decay to 0, weights N(0, 0.02). Per step: the generators
first (discriminators frozen), then both discriminators on pooled fakes (loss halved), as upstream.

* ``cyclegan`` (default): domain A = the 16 px LR face bicubic-upsampled to 64 px (``F.interpolate``
  bicubic, ``align_corners=False``, clamped; the same op at training and inference), domain B = HR
  64 px; both generators at 64 px. SR = bicubic x4, then G_A. Flips and crops are not used (faces stay
  aligned).
* ``cyclegan-16``: native 16 <-> 64 px as the paper's Fig. 2: G_A (16 -> 64) is the stock generator
  without its down-sampling (c7s1-256 at 16 px, 6 blocks at 256 channels, u128, u64, c7s1-3),
  G_B (64 -> 16) the stock one without its up-sampling (c7s1-64, d128, d256, 6 blocks, c7s1-3 at 16 px);
  the 16 px discriminator is a PatchGAN with ``d_layers_lr`` (1) layers; no identity loss (the domains
  differ in size); an optional SCGAN-style pixel term ``lambda_pix * l1(G_B(hr), avgpool4(hr))``.
* Both cycles pass through the same degradation generator G_B: the fully-cycled design SCGAN argues
  against.
* The image pool draws from a generator seeded by (seed, epoch, step) and is saved in the checkpoint;
  under data parallelism every rank gathers the whole batch's fakes and queries the same pool, so N
  processes equal one.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from ..errors import UsageError
from ..scgan.networks import _c
from .engine import CHECKPOINT_FORMAT, Batch, Engine, SRExport
from .models import TRAINABLE, TrainableSpec, adam, frozen, in_eval, judge, placed, seeded, unique_parameters

VARIANTS = ("cyclegan", "cyclegan-16")


class ReflectionPad(nn.Module):
    """``nn.ReflectionPad2d(p)``; with ``by_cat=True`` built from slices, flips and concatenation, whose
    CUDA backward is deterministic (reflection padding's own backward is not): ``train --deterministic``."""

    def __init__(self, p: int) -> None:
        super().__init__()
        self.p, self.by_cat = p, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p
        if not self.by_cat:
            return F.pad(x, (p, p, p, p), mode="reflect")
        x = torch.cat([x[..., :, 1:p + 1].flip(-1), x, x[..., :, -p - 1:-1].flip(-1)], -1)
        return torch.cat([x[..., 1:p + 1, :].flip(-2), x, x[..., -p - 1:-1, :].flip(-2)], -2)


class ResnetBlock(nn.Module):
    """Reflection-padded conv3x3 + IN + ReLU + conv3x3 + IN, plus the input (keys ``conv_block.1/5``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(ReflectionPad(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim),
                                        nn.ReLU(True), ReflectionPad(1), nn.Conv2d(dim, dim, 3),
                                        nn.InstanceNorm2d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator (upstream key names ``model.N``) with ``n_down`` stride-2 convs and
    ``n_up`` stride-2 transposed convs: (2, 2) is the stock generator; (0, 2) maps 16 -> 64 px, (2, 0)
    64 -> 16 px. Channels: ngf * 2**max(0, n_up - n_down) after the c7s1 head, doubled per down,
    halved per up."""

    def __init__(self, ngf: int = 64, n_blocks: int = 6, n_down: int = 2, n_up: int = 2) -> None:
        super().__init__()
        ch = ngf * 2 ** max(0, n_up - n_down)
        layers: list[nn.Module] = [ReflectionPad(3), nn.Conv2d(3, ch, 7), nn.InstanceNorm2d(ch), nn.ReLU(True)]
        for _ in range(n_down):
            layers += [nn.Conv2d(ch, ch * 2, 3, 2, 1), nn.InstanceNorm2d(ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [ResnetBlock(ch) for _ in range(n_blocks)]
        for _ in range(n_up):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(ch // 2),
                       nn.ReLU(True)]
            ch //= 2
        layers += [ReflectionPad(3), nn.Conv2d(ch, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN (upstream ``NLayerDiscriminator``, instance norm): n_layers 3 = the 70x70 PatchGAN."""

    def __init__(self, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1), nn.InstanceNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1), nn.InstanceNorm2d(ndf * mult), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@torch.no_grad()
def init_normal_(module: nn.Module, gain: float = 0.02) -> nn.Module:
    """Upstream ``init_weights('normal')``: conv / linear weights N(0, gain), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def upsample_a(lr: torch.Tensor) -> torch.Tensor:
    """Domain A of ``cyclegan``: the 16 px face bicubic-upsampled x4, clamped to [-1, 1]."""
    return F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(-1, 1)


class CycleGANSR(nn.Module):
    """The SR network of a CycleGAN run: G_A, after the bicubic x4 for ``cyclegan``."""

    def __init__(self, g: nn.Module, upsample: bool) -> None:
        super().__init__()
        self.g, self.upsample = g, upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g(upsample_a(x) if self.upsample else x)


def architecture(variant: str, width: float, opts: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that rebuilds the networks (recorded in ``sr.safetensors``)."""
    ngf = _c(64, width)
    native = variant == "cyclegan-16"
    return {"variant": variant, "ngf": ngf, "n_blocks": int(opts["n_blocks"]), "upsample": not native,
            "g_a": [0, 2] if native else [2, 2], "g_b": [2, 0] if native else [2, 2],
            "d_layers_a": int(opts["d_layers_lr"]) if native else int(opts["d_layers"]), "d_layers_b": int(opts["d_layers"])}


class CycleGANNets(nn.Module):
    """G_A (A -> B, the SR direction), G_B (B -> A, degradation), D_A (judges B), D_B (judges A)."""

    def __init__(self, arch: Mapping[str, Any], seed: int) -> None:
        super().__init__()

        def build(name: str, make):
            return seeded(seed, name, lambda: init_normal_(make()))

        ngf, nb = arch["ngf"], arch["n_blocks"]
        self.g_a = build("g_a", lambda: ResnetGenerator(ngf, nb, *arch["g_a"]))
        self.g_b = build("g_b", lambda: ResnetGenerator(ngf, nb, *arch["g_b"]))
        self.d_a = build("d_a", lambda: NLayerDiscriminator(ngf, arch["d_layers_b"]))  # on domain B (HR)
        self.d_b = build("d_b", lambda: NLayerDiscriminator(ngf, arch["d_layers_a"]))  # on domain A


class ImagePool:
    """Upstream's history of generated images: until full, each new fake is stored and used; then with
    probability 1/2 a stored fake is returned and replaced by the new one. Draws from ``gen``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif torch.rand((), generator=gen).item() > 0.5:
                k = int(torch.randint(self.size, (), generator=gen))
                out.append(self.images[k].clone())
                self.images[k] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)

    def state(self) -> torch.Tensor | None:
        return torch.stack(self.images).cpu() if self.images else None

    def load(self, t: torch.Tensor | None, device: torch.device) -> None:
        self.images = [] if t is None else [x.to(device) for x in t]


class LinearDecay:
    """Upstream's ``linear`` policy: factor 1 for ``constant`` epochs, then linearly to 0 over ``decay``
    (``1 - max(0, e + 1 - constant) / (decay + 1)`` for scheduler epoch e)."""

    def __init__(self, constant: int, decay: int) -> None:
        self.constant, self.decay = constant, decay

    def __call__(self, epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - self.constant) / float(self.decay + 1)


def lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    return F.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))


def _gather(x: torch.Tensor, ctx: Engine) -> torch.Tensor:
    """The whole global batch of ``x`` in rank order (every rank gets the same tensor)."""
    if ctx.world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(ctx.world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class CycleGANTraining:
    """CycleGAN's networks, optimisers (``g`` over G_A and G_B, ``d`` over D_A and D_B), linear-decay
    schedule, image pools and step."""

    def __init__(self, ctx: Engine) -> None:
        cfg = self.cfg = ctx.cfg
        self.opts = dict(cfg.options)
        self.arch = architecture(cfg.variant, cfg.width, self.opts)
        self.net = net = placed(CycleGANNets(self.arch, cfg.seed), ctx)
        for m in net.modules():
            if isinstance(m, ReflectionPad):
                m.by_cat = cfg.deterministic
        self.optimizers = {"g": adam(unique_parameters(net.g_a, net.g_b), ctx),
                           "d": adam(unique_parameters(net.d_a, net.d_b), ctx)}
        decay = self.opts["decay_epochs"] if self.opts["decay_epochs"] >= 0 else cfg.epochs // 2
        #: the schedule is fixed when the run starts: part of its identity, so --resume refuses another
        #: --epochs (a longer run would otherwise continue the old decay below zero)
        self.schedule = {"constant_epochs": cfg.epochs - decay, "decay_epochs": decay}
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, LinearDecay(cfg.epochs - decay, decay))
                           for k, o in self.optimizers.items()}
        self.pool_a, self.pool_b = ImagePool(self.opts["pool_size"]), ImagePool(self.opts["pool_size"])
        self.device = ctx.device
        self.fused_d = cfg.d_calls == "fused"

    capturable = False  # the image pools decide on the host every step

    def compiled_parts(self) -> list[tuple[Any, str]]:
        return [(self, "generate"), (self, "generator_terms"), (self, "discriminator_terms")]

    def domain_a(self, lr: torch.Tensor) -> torch.Tensor:
        return upsample_a(lr) if self.arch["upsample"] else lr

    def generate(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        n = self.net
        fake_b = n.g_a(real_a)
        fake_a = n.g_b(real_b)
        out = {"fake_b": fake_b, "rec_a": n.g_b(fake_b), "fake_a": fake_a, "rec_b": n.g_a(fake_a)}
        if self.opts["lambda_idt"] > 0:
            out["idt_a"], out["idt_b"] = n.g_a(real_b), n.g_b(real_a)
        return out

    def generator_terms(self, real_a: torch.Tensor, real_b: torch.Tensor, f: Mapping[str, torch.Tensor]
                        ) -> dict[str, torch.Tensor]:
        """LSGAN terms, cycle l1 (x lambda_cyc), identity l1 (x lambda_cyc x lambda_idt), pixel term."""
        lc, li, lp = self.opts["lambda_cyc"], self.opts["lambda_idt"], self.opts["lambda_pix"]
        t = {"G_A": lsgan(self.net.d_a(f["fake_b"]), True), "G_B": lsgan(self.net.d_b(f["fake_a"]), True),
             "cycle_A": lc * F.l1_loss(f["rec_a"], real_a), "cycle_B": lc * F.l1_loss(f["rec_b"], real_b)}
        if li > 0:
            t["idt_A"] = lc * li * F.l1_loss(f["idt_a"], real_b)
            t["idt_B"] = lc * li * F.l1_loss(f["idt_b"], real_a)
        if lp > 0:
            t["pix"] = lp * F.l1_loss(f["fake_a"], F.avg_pool2d(real_b, 4))
        return t

    def discriminator_terms(self, real_a: torch.Tensor, real_b: torch.Tensor, fake_a: torch.Tensor,
                            fake_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """LSGAN, halved (upstream ``backward_D_basic``), on real vs (pooled, detached) fakes; each
        discriminator judges both in one call with ``--d-calls fused`` (instance norm: per image, so
        the same values)."""
        a_real, a_fake = judge(self.net.d_a, real_b, fake_b, self.fused_d)
        b_real, b_fake = judge(self.net.d_b, real_a, fake_a, self.fused_d)
        return {"D_A": 0.5 * (lsgan(a_real, True) + lsgan(a_fake, False)),
                "D_B": 0.5 * (lsgan(b_real, True) + lsgan(b_fake, False))}

    def pool_generator(self, epoch: int, step: int) -> torch.Generator:
        key = hashlib.sha256(f"{self.cfg.seed}/pool/{epoch}/{step}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(key[:8], "big") >> 1)

    def pooled(self, pool: ImagePool, fake: torch.Tensor, gen: torch.Generator, ctx: Engine) -> torch.Tensor:
        """This rank's slice of the pool's answer for the whole global batch."""
        everything = pool.query(_gather(fake.detach(), ctx), gen)
        per = fake.shape[0]
        return everything[ctx.rank * per:(ctx.rank + 1) * per]

    def step(self, b: Batch, ctx: Engine) -> dict[str, torch.Tensor]:
        n = self.net
        real_a, real_b = self.domain_a(b.lr), b.hr
        with frozen(n.d_a, n.d_b):
            with ctx.autocast():
                f = self.generate(real_a, real_b)
                g_terms = self.generator_terms(real_a, real_b, f)
            ctx.optimise("g", g_terms, unique_parameters(n.g_a, n.g_b))
        gen = self.pool_generator(b.epoch, b.step)
        fake_b = self.pooled(self.pool_b, f["fake_b"], gen, ctx)
        fake_a = self.pooled(self.pool_a, f["fake_a"], gen, ctx)
        with ctx.autocast():
            d_terms = self.discriminator_terms(real_a, real_b, fake_a, fake_b)
        ctx.optimise("d", d_terms, unique_parameters(n.d_a, n.d_b))
        return {**g_terms, **d_terms}

    def identity(self) -> dict[str, Any]:
        return {"options": self.opts, "schedule": self.schedule}

    def sr_network(self) -> CycleGANSR:
        return CycleGANSR(self.net.g_a, self.arch["upsample"])

    def sample(self, lr: torch.Tensor) -> torch.Tensor:
        return in_eval(self.sr_network(), lr)

    def sr_export(self, step: int) -> SRExport:
        meta = {"format": str(CHECKPOINT_FORMAT), "channel_order": "rgb", "method": "cyclegan",
                "variant": self.cfg.variant, "architecture": json.dumps(self.arch, sort_keys=True),
                "width": str(self.cfg.width), "seed": str(self.cfg.seed), "step": str(step),
                "options": json.dumps(self.opts, sort_keys=True)}
        return SRExport("sr.safetensors", dict(self.sr_network().state_dict()), meta)

    def config_extra(self) -> dict[str, Any]:
        return {"architecture": self.arch, "recipe_source": SOURCE}

    def extra_state(self) -> dict[str, Any]:
        return {k: v for k, v in (("pool_a", self.pool_a.state()), ("pool_b", self.pool_b.state())) if v is not None}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.pool_a.load(state.get("pool_a"), self.device)
        self.pool_b.load(state.get("pool_b"), self.device)


def build_sr(meta: Mapping[str, str]) -> nn.Module:
    """The SR network an ``sr.safetensors`` of a CycleGAN run holds."""
    arch = json.loads(meta["architecture"])
    return CycleGANSR(ResnetGenerator(arch["ngf"], arch["n_blocks"], *arch["g_a"]), arch["upsample"])


def _check(cfg) -> None:
    o = cfg.options
    native = cfg.variant == "cyclegan-16"
    if o["lambda_idt"] < 0:
        o["lambda_idt"] = 0.0 if native else 0.5
    if native and o["lambda_idt"] > 0:
        raise UsageError("cyclegan-16 has no identity loss: its domains differ in size (16 vs 64 px); "
                         "leave lambda_idt unset or 0")
    if not native and o["lambda_pix"] > 0:
        raise UsageError("lambda_pix (l1 of G_B(hr) to the 4x4 average of hr) is a cyclegan-16 option")
    if o["decay_epochs"] > cfg.epochs:
        raise UsageError(f"decay_epochs {o['decay_epochs']} exceeds --epochs {cfg.epochs}")
    if o["pool_size"] < 0 or o["n_blocks"] < 1 or not (1 <= o["d_layers"] <= 4 and 1 <= o["d_layers_lr"] <= 2):
        raise UsageError("cyclegan options: pool_size >= 0, n_blocks >= 1, d_layers 1-4, d_layers_lr 1-2")


SOURCE = ("junyanz/pytorch-CycleGAN-and-pix2pix (BSD): resnet generator with 6 blocks (upstream default 9), "
          "70x70 PatchGAN, LSGAN, cycle 10, identity 0.5, pool 50, Adam 2e-4 (0.5, 0.999), batch 1, "
          "100 + 100 epochs linear decay")

TRAINABLE.register("cyclegan", TrainableSpec(
    name="cyclegan", summary="CycleGAN (Table 5): cyclegan on bicubic-upsampled LR at 64 px, cyclegan-16 native",
    source=SOURCE, variants=lambda: VARIANTS, default_variant="cyclegan",
    defaults={"epochs": 200, "batch_size": 1, "learning_rate": 2e-4, "betas": (0.5, 0.999)},
    build=CycleGANTraining, sr_method=lambda variant: variant, extra_check=_check,
    options=(("lambda_cyc", 10.0, "cycle-consistency weight"),
             ("lambda_idt", -1.0, "identity weight, times lambda_cyc (default 0.5; cyclegan-16: none)"),
             ("lambda_pix", 0.0, "cyclegan-16: l1(G_B(hr), avgpool4(hr)) weight (off as stock)"),
             ("pool_size", 50, "fakes kept per discriminator"),
             ("n_blocks", 6, "residual blocks per generator"),
             ("d_layers", 3, "PatchGAN layers on 64 px (3 = 70x70)"),
             ("d_layers_lr", 1, "cyclegan-16: PatchGAN layers on 16 px"),
             ("decay_epochs", -1, "epochs of linear decay at the end (default half of --epochs)"))))
