"""LRGAN (Bulat, Yang & Tzimiropoulos, ECCV 2018) retrained on this project's data: ``scgan-bench train
--method lrgan``; its run is the SR method ``lrgan-retrained``.

The official repository releases no training script (its ``H2L.py`` and ``Discriminator.py`` hold
networks of other designs; ``baselines/lrgan.md`` says how they differ); the recipe is
yoon28/unpaired_face_sr's re-implementation (``yoon_train.py``, MIT), from which SCGAN's code is forked:

* High-to-Low ``G_h2l`` (:class:`High2Low`, 12,300,280 parameters): noise z (64) -> Linear -> a 1x64x64
  map concatenated to the HR face; conv 4->96; 8 pre-activation BatchNorm blocks [96, 96, 128, 128, 256,
  256, 512, 512] average-pooling in the even ones (64 -> 4 px); [PixelShuffle(2), 2 blocks] twice (128
  channels at 8 px, 32 at 16 px); conv 32->8, ReLU, conv 8->3, tanh. Key names as yoon's.
* Low-to-High ``G_l2h``: the released ``GEN_DEEP`` with BatchNorm
  (:class:`scgan_bench.baselines.lrgan_arch.LRGANGenerator`, 15,490,403 parameters).
* Discriminators at 16 and 64 px: SCGAN's spectral-norm residual discriminators (15,390,849 /
  15,456,641), average-pooling as yoon's ``BasicBlock_Discrim`` (SCGAN's released ones max-pool).
* Losses: hinge for D (real LR faces vs G_h2l's outputs; real HR vs G_l2h's); G_h2l:
  ``1 * MSE(G_h2l(hr, z), avgpool4(hr)) + 0.05 * -D_16(lr_gen)``; G_l2h: ``1 * MSE(G_l2h(lr_gen.detach()),
  hr) + 0.05 * -D_64(hr_gen)``. Each step generates once, takes one D step, then one G step.
* Adam lr 1e-4, betas (0, 0.9), no schedule, batch 32, 50 epochs, seed 2020.
* ``schedule=joint`` (yoon's, default): both GANs every step, G_l2h on detached H2L outputs;
  ``schedule=two-stage`` (the paper's abstract: first the High-to-Low GAN, then the Low-to-High GAN on
  its outputs): epochs 1..``stage1_epochs`` (default half) train G_h2l and D_16 only; later epochs train
  G_l2h and D_64 on a frozen G_h2l (eval mode, running BatchNorm statistics).
* BatchNorm statistics span all ranks (syncable BatchNorm), so data parallelism equals one process.

Open choices (the card): channel widths of H2L and the discriminators are yoon's; MSE (yoon) vs the
l1 that SCGAN cites for [LRGAN] (``pixel_loss=l1``); joint vs two-stage.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from ..baselines.lrgan_arch import Block, LRGANGenerator
from ..scgan.model import _syncable
from ..scgan.networks import BilinearUp2x, Discriminator, degradation_layers
from .engine import CHECKPOINT_FORMAT, Batch, Engine, SRExport
from .models import TRAINABLE, TrainableSpec, adam, frozen, hinge_d, in_eval, placed, seeded, unique_parameters

ARCHITECTURE = "lrgan-gen-deep"


class High2Low(nn.Module):
    """LRGAN's High-to-Low generator (yoon28's ``High2Low``): 64 px face + noise -> 16 px, tanh."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        self.noise_fc, self.in_layer, self.down_layers, self.up_layers, self.out_layer = degradation_layers(width, Block)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        noise = self.noise_fc(z.reshape(z.shape[0], -1)).view(-1, 1, 64, 64)
        return self.out_layer(self.up_layers(self.down_layers(self.in_layer(torch.cat([x, noise], 1)))))


class LRGANNets(nn.Module):
    """Every trained tensor of an LRGAN run."""

    def __init__(self, width: float, seed: int) -> None:
        super().__init__()
        self.h2l = seeded(seed, "h2l", lambda: _syncable(High2Low(width)))
        self.l2h = seeded(seed, "l2h", lambda: _syncable(LRGANGenerator(width)))
        self.d16 = seeded(seed, "disc.16", lambda: Discriminator(16, width, pool="avg"))
        self.d64 = seeded(seed, "disc.64", lambda: Discriminator(64, width, pool="avg"))


PIXEL_LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss}


class LRGANTraining:
    """LRGAN's networks, optimisers (generators ``g``, discriminators ``d``) and step."""

    def __init__(self, ctx: Engine) -> None:
        cfg = self.cfg = ctx.cfg
        self.opts = dict(cfg.options)
        self.net = net = placed(LRGANNets(cfg.width, cfg.seed), ctx)
        for m in net.l2h.modules():  # the up-sampling as a matmul: deterministic CUDA backward
            if isinstance(m, BilinearUp2x):
                m.matmul = cfg.deterministic
        self.optimizers = {"d": adam(unique_parameters(net.d16, net.d64), ctx),
                           "g": adam(unique_parameters(net.h2l, net.l2h), ctx)}
        self.schedulers: dict[str, Any] = {}  # constant learning rate (yoon_train.py)
        self.stage1 = self.opts["stage1_epochs"] or max(1, cfg.epochs // 2)
        self.fused_d = cfg.d_calls == "fused"

    capturable = True  # the stage is the only host decision: a new stage records a new graph

    def graph_key(self, b: Batch) -> tuple[bool, bool]:
        return self.stages(b.epoch)

    def compiled_parts(self) -> list[tuple[Any, str]]:
        return [(self, "generate"), (self, "discriminator_terms"), (self, "generator_terms")]

    def stages(self, epoch: int) -> tuple[bool, bool]:
        """(train the High-to-Low GAN, train the Low-to-High GAN) in this epoch."""
        if self.opts["schedule"] == "joint":
            return True, True
        return (True, False) if epoch <= self.stage1 else (False, True)

    def generate(self, hr: torch.Tensor, z: torch.Tensor, h2l: bool, l2h: bool
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """G_h2l's LR faces (from a frozen G_h2l in stage 2) and G_l2h's output on them (detached input)."""
        lr_gen = self.net.h2l(hr, z) if h2l else in_eval(self.net.h2l, hr, z)
        return lr_gen, (self.net.l2h(lr_gen.detach()) if l2h else None)

    def discriminator_terms(self, hr: torch.Tensor, lr: torch.Tensor, lr_gen: torch.Tensor,
                            hr_gen: torch.Tensor | None) -> dict[str, torch.Tensor]:
        t = {"D_h2l": hinge_d(self.net.d16, lr, lr_gen, self.fused_d)} if lr_gen.requires_grad else {}
        if hr_gen is not None:
            t["D_l2h"] = hinge_d(self.net.d64, hr, hr_gen, self.fused_d)
        return t

    def generator_terms(self, hr: torch.Tensor, lr_gen: torch.Tensor, hr_gen: torch.Tensor | None
                        ) -> dict[str, torch.Tensor]:
        """The weighted terms: pixel loss to the HR face's 4x4 average (H2L) / the HR face (L2H), and
        the generators' hinge terms."""
        pix, a, b = PIXEL_LOSSES[self.opts["pixel_loss"]], self.opts["pixel_weight"], self.opts["adv_weight"]
        t = {}
        if lr_gen.requires_grad:
            t["h2l_pix"] = a * pix(lr_gen, F.avg_pool2d(hr, 4))
            t["h2l_adv"] = b * -self.net.d16(lr_gen).mean()
        if hr_gen is not None:
            t["l2h_pix"] = a * pix(hr_gen, hr)
            t["l2h_adv"] = b * -self.net.d64(hr_gen).mean()
        return t

    def step(self, b: Batch, ctx: Engine) -> dict[str, torch.Tensor]:
        n = self.net
        h2l, l2h = self.stages(b.epoch)
        with ctx.autocast():
            lr_gen, hr_gen = self.generate(b.hr, b.z, h2l, l2h)
            d_terms = self.discriminator_terms(b.hr, b.lr, lr_gen, hr_gen)
        ctx.optimise("d", d_terms, unique_parameters(n.d16, n.d64))
        with frozen(n.d16, n.d64):
            with ctx.autocast():
                g_terms = self.generator_terms(b.hr, lr_gen, hr_gen)
            ctx.optimise("g", g_terms, unique_parameters(n.h2l, n.l2h))
        return {**d_terms, **g_terms}

    def identity(self) -> dict[str, Any]:
        """The options and, for ``two-stage``, the epoch at which the stages switch (fixed at the start:
        a resume with another ``--epochs`` must not move it)."""
        ident: dict[str, Any] = {"options": self.opts, "d_calls": self.cfg.d_calls}
        if self.opts["schedule"] == "two-stage":
            ident["schedule"] = {"stage1_epochs": self.stage1}
        return ident

    def sample(self, lr: torch.Tensor) -> torch.Tensor:
        return in_eval(self.net.l2h, lr)

    def sr_export(self, step: int) -> SRExport:
        meta = {"format": str(CHECKPOINT_FORMAT), "channel_order": "rgb", "method": "lrgan", "variant": "lrgan",
                "architecture": ARCHITECTURE, "width": str(self.cfg.width), "seed": str(self.cfg.seed),
                "step": str(step), "options": json.dumps(self.opts, sort_keys=True)}
        return SRExport("sr.safetensors", dict(self.net.l2h.state_dict()), meta)

    def config_extra(self) -> dict[str, Any]:
        return {"recipe_source": SOURCE}

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        pass  # nothing beyond weights and optimisers


def build_sr(meta: Mapping[str, str]) -> nn.Module:
    """The SR network an ``sr.safetensors`` of an LRGAN run holds (BatchNorm in eval)."""
    return LRGANGenerator(float(meta["width"]))


def _check(cfg) -> None:
    from ..errors import UsageError

    o = cfg.options
    if o["schedule"] not in ("joint", "two-stage"):
        raise UsageError(f"lrgan option schedule must be joint or two-stage, got {o['schedule']!r}")
    if o["pixel_loss"] not in PIXEL_LOSSES:
        raise UsageError(f"lrgan option pixel_loss must be one of {', '.join(PIXEL_LOSSES)}, got {o['pixel_loss']!r}")
    if o["schedule"] == "two-stage" and not (0 <= o["stage1_epochs"] < cfg.epochs):
        raise UsageError(f"lrgan option stage1_epochs must be below --epochs {cfg.epochs}")


SOURCE = ("yoon28/unpaired_face_sr yoon_train.py (MIT; LRGAN re-implementation SCGAN's code is forked from): "
          "MSE + hinge, weights 1 / 0.05, Adam 1e-4 betas (0, 0.9), batch 32, 50 epochs, joint")

TRAINABLE.register("lrgan", TrainableSpec(
    name="lrgan", summary="LRGAN retrained: High-to-Low GAN + the released Low-to-High generator (Table 5)",
    source=SOURCE, variants=lambda: ("lrgan",), default_variant="lrgan",
    defaults={"epochs": 50, "batch_size": 32, "learning_rate": 1e-4, "betas": (0.0, 0.9)},
    build=LRGANTraining, sr_method=lambda variant: "lrgan-retrained", extra_check=_check,
    options=(("schedule", "joint", "joint (yoon28) or two-stage (the paper's abstract)"),
             ("stage1_epochs", 0, "two-stage: epochs of the High-to-Low stage (0 = half of --epochs)"),
             ("pixel_loss", "mse", "mse (yoon28) or l1 (SCGAN's reading of LRGAN)"),
             ("pixel_weight", 1.0, "alpha on the pixel terms"),
             ("adv_weight", 0.05, "beta on the generators' hinge terms"))))
