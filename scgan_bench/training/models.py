"""What a trainable model gives the engine (:class:`Trainable`), how it is described
(:class:`TrainableSpec`: variants, recipe defaults, options, source) and the one registry of them:
``scgan`` (SCGAN and its 25 ablation variants), ``lrgan`` (LRGAN retrained), ``cyclegan``
(``cyclegan`` at 64 px on bicubic-upsampled LR, ``cyclegan-16`` native 16 <-> 64 px)."""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol

import torch
from torch import nn

from ..errors import UsageError
from ..registry import Registry

if TYPE_CHECKING:
    from .engine import Batch, Engine, SRExport, TrainConfig


class Trainable(Protocol):
    """A model as the engine trains it. ``net`` holds every trained tensor (saved in the checkpoint);
    ``step`` runs one optimisation step on a batch (using the engine's ``autocast()`` and
    ``average_grads()``) and returns the weighted loss terms to log. ``compiled_parts`` names the
    tensor-only functions ``--speed compiled`` compiles (``(owner, attribute)``); ``capturable`` says
    whether the step makes no host-side decision, so ``--speed graph`` may record it once."""

    net: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    capturable: bool

    def compiled_parts(self) -> list[tuple[Any, str]]: ...

    def step(self, batch: "Batch", ctx: "Engine") -> Mapping[str, torch.Tensor]: ...

    def identity(self) -> dict[str, Any]: ...

    def sample(self, lr: torch.Tensor) -> torch.Tensor: ...

    def sr_export(self, step: int) -> "SRExport": ...

    def config_extra(self) -> dict[str, Any]: ...

    def extra_state(self) -> dict[str, Any]: ...

    def load_extra_state(self, state: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class TrainableSpec:
    """A trainable method: its variants, recipe defaults (``epochs``, ``batch_size``,
    ``learning_rate``, ``betas``...), its own options (name, default, help), where the recipe comes
    from, the SR method each variant's run becomes, and ``build(engine) -> Trainable``."""

    name: str
    summary: str
    source: str
    variants: Callable[[], tuple[str, ...]]
    default_variant: str
    defaults: Mapping[str, Any]
    build: Callable[["Engine"], Trainable]
    sr_method: Callable[[str], str]
    options: tuple[tuple[str, Any, str], ...] = ()
    extra_check: Callable[["TrainConfig"], None] | None = None
    warning_for: Callable[["TrainConfig"], str | None] | None = None

    def check(self, cfg: "TrainConfig") -> None:
        """The variant, the options (typed like their defaults) and the settings this method has."""
        if cfg.variant not in self.variants():
            raise UsageError(f"method {self.name} has no variant {cfg.variant!r}; its variants: "
                             f"{', '.join(self.variants())}")
        cfg.options = self.parse_options(cfg.options)
        if self.name != "scgan":
            used = [k for k, empty in (("recipe", "official"), ("crossings", {}), ("lr_schedule", None))
                    if getattr(cfg, k) != empty]
            if used:
                raise UsageError(f"{', '.join('--' + k.replace('_', '-') for k in used)} belong(s) to SCGAN's recipes; "
                                 f"method {self.name} takes --opt KEY=VALUE ({self.option_help()})")
        if self.extra_check:
            self.extra_check(cfg)

    def option_help(self) -> str:
        return "; ".join(f"{k}={d!r}: {h}" for k, d, h in self.options) or "no options"

    def parse_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` (strings from the command line, or typed values) -> every option, typed."""
        known = {k: d for k, d, _ in self.options}
        bad = sorted(set(given) - set(known))
        if bad:
            raise UsageError(f"method {self.name} has no option {', '.join(bad)}; its options: {self.option_help()}")
        out = {}
        for k, default in known.items():
            v = given.get(k, default)
            if isinstance(v, str) and not isinstance(default, str):
                try:
                    v = (v.lower() in ("1", "true", "yes")) if isinstance(default, bool) else type(default)(v)
                except ValueError:
                    raise UsageError(f"option {k}={v!r} of method {self.name}: expected a "
                                     f"{type(default).__name__}") from None
            out[k] = v
        return out

    def warning(self, cfg: "TrainConfig") -> str | None:
        return self.warning_for(cfg) if self.warning_for else None


#: the trainable models; the built-in ones register themselves when their module is imported (on first lookup)
TRAINABLE: Registry[TrainableSpec] = Registry("trainable method", members=(
    "scgan_bench.scgan.train", "scgan_bench.training.cyclegan", "scgan_bench.training.lrgan"))


def trainable_for(method: str | None, variant: str | None) -> TrainableSpec:
    """The method named, else the one whose variants include ``variant``, else SCGAN."""
    if method:
        return TRAINABLE.get(method)
    if variant:
        for _, spec in TRAINABLE.items():
            if variant in spec.variants():
                return spec
    return TRAINABLE.get("scgan")


def adam(params, ctx: "Engine") -> torch.optim.Adam:
    """Adam with the run's learning rate and betas (fused on CUDA; capturable when the step is
    recorded as a CUDA graph)."""
    from .speed import GRAPH_SPEEDS

    c = ctx.cfg
    return torch.optim.Adam(params, lr=c.learning_rate, betas=tuple(c.betas), fused=ctx.device.type == "cuda",
                            capturable=c.speed in GRAPH_SPEEDS)


def placed(net: nn.Module, ctx: "Engine") -> nn.Module:
    """``net`` on the run's device, in channels-last memory format when the run asks for it."""
    net = net.to(ctx.device)
    return net.to(memory_format=torch.channels_last) if ctx.cfg.channels_last else net


def unique_parameters(*modules: nn.Module | None) -> list[nn.Parameter]:
    """Parameters of several modules, each once (shared modules are optimised once)."""
    seen: dict[int, nn.Parameter] = {}
    for m in modules:
        if m is not None:
            for p in m.parameters():
                seen.setdefault(id(p), p)
    return list(seen.values())


def batch_independent(module: nn.Module) -> bool:
    """True when no layer's output depends on the other samples of its batch (no BatchNorm computing
    batch statistics): then one call on a concatenated batch computes what separate calls compute."""
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or not m.track_running_stats)
                   for m in module.modules())


def judge(d: nn.Module, real: torch.Tensor, fake: torch.Tensor, fused: bool = True
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """``d``'s outputs on real and on detached fake images. ``fused``: one call on both (half the
    launches, and a spectral-norm layer normalises its weight once, with one power iteration, for both
    halves: "once per optimiser phase"); only where ``d`` is batch-independent (else two calls, which is
    what the recipe computes). ``fused=False``: two calls, two power iterations (the released code's
    count)."""
    fake = fake.detach()
    if fused and real.shape[1:] == fake.shape[1:] and batch_independent(d):
        out = d(torch.cat([real, fake.to(real.dtype)]))
        return out[: len(real)], out[len(real):]
    return d(real), d(fake)


def hinge_d(d: nn.Module, real: torch.Tensor, fake: torch.Tensor, fused: bool = True) -> torch.Tensor:
    """Hinge discriminator loss on real vs detached fake images (:func:`judge`)."""
    d_real, d_fake = judge(d, real, fake, fused)
    return torch.relu(1.0 - d_real).mean() + torch.relu(1.0 + d_fake).mean()


def network_seed(seed: int, name: str) -> int:
    """The seed a network is built from: each network's initial weights depend only on the run seed
    and its own name, never on which other networks a variant has."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "big") >> 1


def seeded(seed: int, name: str, make: Callable[[], nn.Module]) -> nn.Module:
    """``make()`` under the seed of network ``name`` (:func:`network_seed`): a network's initial weights
    depend only on the run seed and its name, and the global RNG is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(network_seed(seed, name))
        return make()


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """The modules' parameters need no gradient inside the block (discriminators during a generator
    step); restored after."""
    for m in modules:
        m.requires_grad_(False)
    try:
        yield
    finally:
        for m in modules:
            m.requires_grad_(True)


@torch.no_grad()
def in_eval(module: nn.Module, *args: torch.Tensor) -> torch.Tensor:
    """``module(*args)`` in eval mode (BatchNorm's running statistics), restoring its mode after."""
    was = module.training
    module.eval()
    try:
        return module(*args)
    finally:
        module.train(was)

