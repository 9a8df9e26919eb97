"""SCGAN as a model of the training engine (:mod:`scgan_bench.training.engine`):
``scgan-bench train --variant NAME --hr DIR --lr DIR --out runs/NAME``.

* Step (as the released train.py): all images of the step are generated once; the active
  discriminators take a hinge step on detached fakes; then one backward of the variant's generator
  terms updates D_HL, D_SL and R_LS (Adam over their unique parameters: identical to the released
  per-branch optimisers, and shared modules get one update from both cycles). Each discriminator
  judges its real and fake batch in one call (``--d-calls fused``, default): its spectral norm runs one
  power iteration per optimiser phase where the released code runs two in the discriminator phase
  (``--d-calls separate`` keeps that count); nothing else changes (no BatchNorm in the discriminators).
* Schedule: Adam(0.9, 0.999), lr 1e-4 -> 1e-5, batch 64, 200 epochs; stepped per epoch.
  ``cosine`` (default, as released): ``CosineAnnealingLR(T_max=10)``, a 20-epoch wave (down for 10
  epochs, back up for 10); ``restarts``: ``CosineAnnealingWarmRestarts(T_0=10)``, 1e-4 -> 1e-5 in every
  10-epoch period (the other reading of the paper's "cosine annealing scheme at every 10 epochs").
* R_LS's BatchNorm statistics span all ranks (:class:`.model.SyncableBatchNorm2d`); ``--deterministic``
  also computes R_LS's up-sampling as a matmul (deterministic CUDA backward).
* Outputs beside the engine's: ``rls.safetensors`` (the SR network; channel order, variant and recipe
  in its metadata); ``config.json`` carries the variant's and recipe's full specification.

The engine's names are re-exported here (``Trainer``, ``TrainConfig``, ``load_faces`` ...) for the
code and notebooks that import them from this module.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Mapping

import torch

from ..errors import UsageError
from ..training.engine import (  # noqa: F401  (re-exported)
    CHECKPOINT_FORMAT, MAX_WIDTH, MIN_WIDTH, Batch, Engine, SRExport, TrainConfig, Trainer, cached_faces, epoch_order,
    identity_differences, load_checkpoint, load_faces, process_group_backend, rank_device, run_training,
    safetensors_metadata, save_checkpoint, set_deterministic, step_noise, tensor_digest, to_unit, training_faces)
from ..training.models import TRAINABLE, TrainableSpec, adam, frozen, in_eval, placed
from .model import SCGAN, RECIPES
from .variants import VARIANTS

SCHEDULES = ("cosine", "restarts")


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    """Per-epoch learning-rate schedule: ``cosine`` = ``CosineAnnealingLR(T_max=lr_period)`` (as
    released: lr_max at epochs 0, 2P, 4P..., lr_min at P, 3P...); ``restarts`` =
    ``CosineAnnealingWarmRestarts(T_0=lr_period)`` (lr_max -> lr_min within every period)."""
    if cfg.lr_schedule == "restarts":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=cfg.lr_period, eta_min=cfg.lr_min)
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.lr_period, eta_min=cfg.lr_min)


def rls_metadata(cfg: TrainConfig, step: int) -> dict[str, str]:
    """What ``rls.safetensors`` says about itself: channel order, variant, recipe, width, seed, step."""
    return {"format": str(CHECKPOINT_FORMAT), "channel_order": "rgb", "method": "scgan", "variant": cfg.variant,
            "recipe": cfg.recipe_spec().name, "recipe_spec": json.dumps(cfg.recipe_spec().spec(), sort_keys=True),
            "width": str(cfg.width), "seed": str(cfg.seed), "step": str(step)}


def _variant_json(name: str) -> dict[str, Any]:
    v = asdict(VARIANTS.get(name))
    v["adversarial"] = sorted(v["adversarial"])
    return v


class SCGANTraining:
    """SCGAN's networks, optimisers (generators ``g``, discriminators ``d``), schedules and step."""

    def __init__(self, ctx: Engine) -> None:
        cfg = self.cfg = ctx.cfg
        self.recipe = cfg.recipe_spec()
        self.net = model = placed(SCGAN(VARIANTS.get(cfg.variant), self.recipe, cfg.width, seed=cfg.seed), ctx)
        if cfg.deterministic:
            model.rls.set_deterministic_upsampling(True)
        self.optimizers = {"g": adam(model.generator_parameters(), ctx)}
        if len(model.disc):
            self.optimizers["d"] = adam(model.disc.parameters(), ctx)
        self.schedulers = {k: make_scheduler(o, cfg) for k, o in self.optimizers.items()}
        self.fused_d = cfg.d_calls == "fused"

    capturable = True  # no host decision inside a step

    def compiled_parts(self) -> list[tuple[Any, str]]:
        return [(self.net, "generate"), (self.net, "discriminator_loss"), (self.net, "generator_loss")]

    def step(self, b: Batch, ctx: Engine) -> dict[str, torch.Tensor]:
        m = self.net
        with ctx.autocast():
            fakes = m.generate(b.hr, b.lr, b.z)
        logs: dict[str, torch.Tensor] = {}
        if "d" in self.optimizers:
            with ctx.autocast():
                d_terms = m.discriminator_loss(b.hr, b.lr, fakes, self.fused_d)
            ctx.optimise("d", d_terms, m.disc.parameters())
            logs.update(d_terms)
        with frozen(m.disc):
            with ctx.autocast():
                g_terms = m.generator_loss(b.hr, b.lr, fakes)
            g_opt = self.optimizers["g"]
            g_opt.zero_grad(set_to_none=True)
            m.generator_backward(g_terms, fakes)  # routes crossing gradients (see .model)
            ctx.average_grads(m.generator_parameters())
            g_opt.step()
        logs.update(g_terms)
        return logs

    def identity(self) -> dict[str, Any]:
        c = self.cfg
        return {"recipe": self.recipe.spec(), "lr_min": c.lr_min, "lr_period": c.lr_period,
                "lr_schedule": c.lr_schedule, "d_calls": c.d_calls}

    def sample(self, lr: torch.Tensor) -> torch.Tensor:
        return in_eval(self.net.rls, lr)

    def sr_export(self, step: int) -> SRExport:
        return SRExport("rls.safetensors", dict(self.net.rls.state_dict()), rls_metadata(self.cfg, step))

    def config_extra(self) -> dict[str, Any]:
        return {"variant_spec": _variant_json(self.cfg.variant), "recipe_spec": self.recipe.spec()}

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        pass  # SCGAN keeps nothing beyond its weights, optimisers and schedules


def _check(cfg: TrainConfig) -> None:
    cfg.recipe_spec()
    if cfg.lr_schedule not in SCHEDULES:
        raise UsageError(f"--lr-schedule must be one of {', '.join(SCHEDULES)}, got {cfg.lr_schedule!r}")
    if not (cfg.lr_min >= 0 and cfg.lr_period >= 1):
        raise UsageError("the learning rate's minimum must be >= 0 and its period >= 1 epoch")


def equivalence_warning(cfg: TrainConfig) -> str | None:
    """A warning when the variant trains the same SR network as other variants under this recipe."""
    from .dataflow import explain, same_network_as

    recipe = cfg.recipe_spec()
    same = same_network_as(cfg.variant or "scgan", recipe)
    if not same:
        return None
    return (f"warning: under recipe {recipe.name}, {cfg.variant} trains the same SR network as "
            f"{', '.join(same)}: from the same seed its R_LS is identical to theirs "
            "(bit for bit at the same thread count on one machine). "
            f"{explain(cfg.variant, same[0], recipe)}. `scgan-bench list variants --recipe {cfg.recipe}"
            f"{''.join(f' --cross {k}={v:g}' for k, v in sorted(cfg.crossings.items()))}` lists every such group")


TRAINABLE.register("scgan", TrainableSpec(
    name="scgan", summary="SCGAN and its 25 ablation variants (Tables 1-4)",
    source="the released train.py (HaoHou-98/SCGAN) and the paper's Sec. 3.6; recipes `official` and `paper`",
    variants=lambda: tuple(VARIANTS), default_variant="scgan",
    defaults={"epochs": 200, "batch_size": 64, "learning_rate": 1e-4, "betas": (0.9, 0.999),
              "lr_schedule": "cosine"},
    build=SCGANTraining, sr_method=lambda variant: variant, extra_check=_check, warning_for=equivalence_warning))

__all__ = ["SCGANTraining", "RECIPES", "SCHEDULES", "make_scheduler", "rls_metadata", "equivalence_warning",
           "Trainer", "TrainConfig"]
