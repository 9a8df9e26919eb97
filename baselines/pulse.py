"""PULSE (Menon et al., CVPR 2020) as an SR method: a latent search in StyleGAN's space for a 1024 px face
whose bicubic 16 px version matches the input, then an exact 16 x 16 area average to 64 px. Card: pulse.md.

The released procedure (run.py defaults): 18 latents drawn from N(0, 1), mapped by
``leaky_relu(latent * std + mean, 0.2)`` with the released Gaussian fit; noise maps drawn per layer, the
first 5 optimised, layer 17 zeroed; spherical Adam (lr 0.4) for 100 steps with the ``linear1cycledrop``
schedule; loss ``100 * L2 + 0.05 * GEOCROSS`` with L2 = per-image MSE at 16 px clamped at eps = 2e-3. The
released code returns the last iterate only when the smallest L2 reached eps and nothing otherwise; here
every image gets the last iterate and a per-image note ``pulse_converged``. Randomness is drawn per image
from a generator seeded by the image's pixels, and each image is searched on its own (run.py's batch size
1), so an image's result never depends on its batch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # imported where used: registering and listing need none of it
    import torch

    from . import pulse_arch as arch

from scgan_bench.errors import UsageError
from scgan_bench.interfaces import Availability
from scgan_bench.assets.weights import Asset, WeightsError, register_asset

from .adapter import Card, gpu_only_availability, image_generator, image_keys, register
from .loading import Container, check_official_size, expect_family, load_strict, param_count, read_official

LICENSE = ("PULSE code: no licence (all rights reserved); StyleGAN FFHQ weights: CC BY-NC 4.0 "
           "(NON-COMMERCIAL)")
PARAMS = 24_110_771  # learnable parameters; + 72 blur-kernel buffer elements = the 24,110,843 tensor elements
SYNTH = "pulse-synthesis"
FIT = "pulse-gaussian-fit"
SEED_SALT = 0x9A15E

register_asset(Asset(
    SYNTH, "synthesis.pt", "Google Drive (no direct download) https://drive.google.com/uc?id=1TCViX1YpQyRsklTVYEJwdbmK91vklCo8",
    used_by="pulse", license="CC BY-NC 4.0 (NVIDIA StyleGAN FFHQ weights)", caches=("scgan-bench",),
    source_note="no hash is published: verified by trust-on-first-use; PULSE caches the file as "
                "cache/6b943ee69b8491ac40e8e9ced6175659_synthesis.pt: save it as synthesis.pt"))
register_asset(Asset(
    FIT, "gaussian_fit.pt", "https://github.com/adamian98/pulse/raw/master/gaussian_fit.pt", used_by="pulse",
    license="no licence stated (PULSE repository)", size=4_566,
    sha256="6c638855d24ea56d40512cc6d8e7a6cac4c3db6fec232a0bf58e0f78d6336d16", caches=("scgan-bench",),
    source_note="committed to the PULSE repository; sha256 computed from that file"))

RAW = Container((), ("module.",), "raw G_synthesis state dict")


@dataclass
class PulseSettings:
    steps: int = 100
    lr: float = 0.4
    eps: float = 2e-3
    l2_weight: float = 100.0
    geocross_weight: float = 0.05
    trainable_noise: int = 5
    zero_noise_layers: tuple[int, ...] = (17,)
    time_budget_s: float = 0.0  # per image; 0 = none

    def spec(self) -> dict[str, Any]:
        return {"steps": self.steps, "lr": self.lr, "schedule": "linear1cycledrop", "optimizer": "spherical adam",
                "eps": self.eps, "loss": f"{self.l2_weight:g}*L2+{self.geocross_weight:g}*GEOCROSS",
                "noise": f"trainable first {self.trainable_noise}, zero {list(self.zero_noise_layers)}",
                "time_budget_s": self.time_budget_s, "output": "last iterate"}


@dataclass
class PulseMethod:
    """PULSE's latent search behind the SR interface (an annotating method: one note dict per image)."""

    synthesis: arch.Synthesis
    mean: torch.Tensor
    std: torch.Tensor
    settings: PulseSettings = field(default_factory=PulseSettings)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    name: str = "pulse"
    scale: int = 4

    def __post_init__(self) -> None:
        self.synthesis = self.synthesis.to(self.device).eval()
        for p in self.synthesis.parameters():
            p.requires_grad_(False)
        self.mean, self.std = self.mean.to(self.device), self.std.to(self.device)

    def _initial(self, keys: list[str]) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Latents and noise maps drawn per image (latent first, then every layer's noise in order)."""
        import torch

        layers, shapes = self.synthesis.cfg.num_layers, self.synthesis.noise_shapes(1)
        lat, noise = [], [[] for _ in range(layers)]
        for k in keys:
            g = image_generator(k, SEED_SALT)
            lat.append(torch.randn(1, layers, self.synthesis.cfg.dlatent, generator=g))
            for i, s in enumerate(shapes):
                noise[i].append(torch.zeros(s) if i in self.settings.zero_noise_layers else torch.randn(s, generator=g))
        latent = torch.cat(lat).to(self.device).requires_grad_(True)
        maps = [torch.cat(n).to(self.device) for n in noise]
        trainable = [m.requires_grad_(True) for i, m in enumerate(maps)
                     if i < self.settings.trainable_noise and i not in self.settings.zero_noise_layers]
        return latent, maps, trainable

    def upscale_with_notes(self, lr: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        import torch

        res, n = self.synthesis.cfg.resolution, lr.shape[0]
        if lr.shape[-1] != lr.shape[-2] or res % lr.shape[-1]:
            raise ValueError(f"pulse: a {tuple(lr.shape[-2:])} input does not divide the {res} px synthesis")
        outs, notes = [], []
        with torch.inference_mode(False), torch.enable_grad():   # the runner calls methods in inference mode
            for i in range(n):   # one search per image (as run.py's batch size 1): batch-independent to the bit
                out, note = self._search(lr[i:i + 1].detach().to(self.device).float().clone())
                outs.append(out)
                notes += note
        return torch.cat(outs), notes

    def _search(self, lr: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        import torch
        from torch.nn import functional as F

        from . import pulse_arch as arch

        res, n = self.synthesis.cfg.resolution, lr.shape[0]
        s = self.settings
        ref = lr
        down = arch.BicubicDownSample(res // lr.shape[-1]).to(self.device)
        latent, maps, noise_vars = self._initial(image_keys(lr))
        opt = arch.SphericalAdam([latent] + noise_vars, lr=s.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt.opt, lambda j: arch.one_cycle_drop(j, s.steps))
        min_l2 = torch.full((n,), float("inf"), device=self.device)
        gen = first = last = None
        t0, done = time.perf_counter(), 0
        for _ in range(s.steps):
            if s.time_budget_s and done and time.perf_counter() - t0 > s.time_budget_s * n:
                break
            opt.opt.zero_grad()
            w = F.leaky_relu(latent * self.std + self.mean, 0.2)
            gen = (self.synthesis(w, maps) + 1) / 2
            l2 = (down(gen) - ref).pow(2).mean((1, 2, 3)).clamp(min=s.eps)
            per_image = s.l2_weight * l2 + s.geocross_weight * arch.geocross(w)
            loss = per_image.sum()
            min_l2 = torch.minimum(min_l2, l2.detach())
            first = per_image.detach() if first is None else first
            last = per_image.detach()
            loss.backward()
            opt.step()
            sched.step()
            done += 1
        out = gen.detach().clamp(0, 1)
        out = F.avg_pool2d(out, res // (lr.shape[-1] * self.scale)) if res > lr.shape[-1] * self.scale else out
        notes = [{"pulse_converged": bool(m <= s.eps), "pulse_min_l2": float(m), "pulse_steps": done,
                  "pulse_loss_first": float(a), "pulse_loss_last": float(b)}
                 for m, a, b in zip(min_l2.cpu(), first.cpu(), last.cpu())]
        return out, notes

    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        return self.upscale_with_notes(lr)[0]

    def fingerprint(self) -> Mapping[str, Any]:
        return {"method": self.name, "version": 1, **self.settings.spec(), "seed": f"sha256(image) ^ {SEED_SALT:#x}",
                "bridge": {"up": "none: the loss compares PULSE's bicubic down-sampling of the output with the "
                                 "16 px input", "down": f"area {self.synthesis.cfg.resolution // 64}x to 64 in float"},
                **self.provenance}


def load_synthesis(sd: dict[str, torch.Tensor], path: Path | str, any_config: bool = False) -> arch.Synthesis:
    from . import pulse_arch as arch

    expect_family(sd, "pulse", path, "pulse")
    try:
        net = arch.Synthesis(arch.config_from_state_dict(sd))
    except KeyError as exc:
        raise WeightsError(f"pulse: {path} lacks {exc.args[0]!r}, which the released synthesis.pt holds") from None
    load_strict(net, sd, path, "pulse")
    check_official_size(net, PARAMS, path, "pulse", any_config)
    return net


def load_gaussian_fit(path: Path | None = None) -> tuple[torch.Tensor, torch.Tensor, str]:
    from scgan_bench.assets.safeload import torch_load
    from scgan_bench.assets.weights import resolve

    r = resolve(FIT, path, allow_download=None)
    fit = torch_load(r.path, "pulse gaussian fit")
    if not isinstance(fit, dict) or not {"mean", "std"} <= set(fit):
        raise WeightsError(f"pulse: {r.path} is not PULSE's gaussian_fit.pt (a dict with 'mean' and 'std')")
    return fit["mean"].float(), fit["std"].float(), r.sha256


def gpu_only_reason() -> str:
    return ("GPU only here: no CUDA device is visible, and the search costs 100 forward + backward passes of the "
            "1024 px synthesis per face (~3 s each on a 2-core CPU, measured: ~5 min per face, ~8.5 days for a "
            "2,500-face test set); --method-opt pulse:allow_cpu=true runs it anyway")


def create(device: str = "cpu", steps: int = 100, time_budget_s: float = 0.0, allow_cpu: bool = False,
           any_config: bool = False, weights: str = "", gaussian_fit: str = "") -> PulseMethod:
    if not str(device).startswith("cuda") and not allow_cpu:
        raise UsageError(f"pulse: {gpu_only_reason()}")
    if steps < 1 or time_budget_s < 0:
        raise UsageError(f"pulse: steps must be >= 1 and time_budget_s >= 0 (got {steps}, {time_budget_s})")
    sd, r = read_official(SYNTH, RAW, "pulse", Path(weights) if weights else None)
    net = load_synthesis(sd, r.path, any_config)
    mean, std, fit_sha = load_gaussian_fit(Path(gaussian_fit) if gaussian_fit else None)
    if mean.shape != (net.cfg.dlatent,) or std.shape != (net.cfg.dlatent,):
        raise WeightsError(f"pulse: the Gaussian fit has shape {tuple(mean.shape)}, the synthesis needs "
                           f"({net.cfg.dlatent},)")
    settings = PulseSettings(steps=steps, time_budget_s=time_budget_s)
    return PulseMethod(net, mean, std, settings, device=device, provenance={
        "weights": {SYNTH: r.sha256, FIT: fit_sha}, "resolution": net.cfg.resolution,
        "params": param_count(net)})


def availability(**options: Any) -> Availability:
    return gpu_only_availability(options, ((SYNTH, "weights"), (FIT, "gaussian_fit")), gpu_only_reason)


register("pulse", Card(
    "PULSE (latent search in StyleGAN v1, released synthesis.pt + gaussian_fit.pt); 16 px in, area 1024 -> 64",
    "Menon et al., CVPR 2020", LICENSE, "pulse.md", (SYNTH, FIT)),
    create, availability,
    options=(("steps", 100, "optimisation steps (100 as released)"),
             ("time_budget_s", 0.0, "seconds per image before the search stops (0 = none; then results depend on "
                                    "the machine's speed, and the steps done are in the notes)"),
             ("allow_cpu", False, "run without a GPU (~5 min per face on 2 CPU cores)"),
             ("any_config", False, "accept another synthesis size (recorded)"),
             ("weights", "", "explicit synthesis.pt (still verified)"),
             ("gaussian_fit", "", "explicit gaussian_fit.pt (still sha256-checked)")))
