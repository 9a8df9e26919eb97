"""SCGAN training: ``scgan-bench train --variant NAME --hr DIR --lr DIR --out runs/NAME``.

* Data: HR faces (any size; centre square -> 64 px) and real LR faces (-> 16 px) are decoded once,
  bad files reported, and kept in memory as uint8 (20,000 x 64 px is 245 MB). Each epoch draws an HR
  order and an LR pairing from ``(seed, epoch)``; the noise z of a step from ``(seed, epoch, step)``:
  the data order and noise never depend on how the run was split into sessions, so ``--resume``
  continues exactly.
* Step (as the released train.py): all images of the step are generated once; the active
  discriminators take a hinge step on detached fakes; then one backward of the variant's generator
  terms updates D_HL, D_SL and R_LS (Adam over their unique parameters: identical to the released
  per-branch optimisers, and shared modules get one update from both cycles).
* Schedule: Adam(0.9, 0.999), lr 1e-4 cosine to 1e-5 over a 10-epoch period (CosineAnnealingLR
  T_max=10, stepped per epoch, as released), 200 epochs, batch 64.
* Speed: ``--amp bf16`` autocast, ``--channels-last``, ``--compile``, fused Adam on CUDA.
* Distributed: under ``torchrun`` each rank takes its slice of the global batch, gradients are averaged
  over ranks (one coalesced all-reduce per optimiser step) and R_LS's BatchNorm statistics span all
  ranks, so N processes equal one process over the whole batch.
* Outputs: ``checkpoints/last.safetensors`` (+ ``last-state.pt``: optimisers, schedulers, counters,
  RNG states; loads with ``weights_only=True``), ``rls.safetensors`` (the SR network) and
  ``config.json``; ``log.csv`` (and TensorBoard when installed); ``samples/epoch_NNN.png``.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..errors import ImageDecodeError, UsageError
from ..image_io import atomic_write_bytes, atomic_write_text, list_images, read_image, write_png
from ..resize import resize_uint8, to_square
from .model import RECIPES, SCGAN
from .variants import VARIANTS

CHECKPOINT_FORMAT = 1


@dataclass
class TrainConfig:
    variant: str = "scgan"
    recipe: str = "official"
    hr: str = ""
    lr: str = ""
    out: str = "runs/scgan"
    epochs: int = 200
    batch_size: int = 64
    learning_rate: float = 1e-4
    lr_min: float = 1e-5
    lr_period: int = 10
    betas: tuple[float, float] = (0.9, 0.999)
    seed: int = 2020
    width: float = 1.0
    amp: str = "none"           # none | bf16
    channels_last: bool = False
    compile: bool = False
    device: str = "cpu"
    max_steps: int | None = None  # stop after this many steps in total (tests, smoke runs)
    limit_hr: int | None = None
    limit_lr: int | None = None
    sample_count: int = 8
    roots: dict[str, str] = field(default_factory=dict)  # for dataset:NAME sources
    progress: bool = True
    failures: list[str] = field(default_factory=list)

    def check(self) -> None:
        VARIANTS.get(self.variant)
        if self.recipe not in RECIPES:
            raise UsageError(f"unknown recipe {self.recipe!r}; allowed: {', '.join(RECIPES)}")
        if self.amp not in ("none", "bf16"):
            raise UsageError(f"--amp must be none or bf16, got {self.amp!r}")
        if self.batch_size < 1 or self.epochs < 1:
            raise UsageError("--batch-size and --epochs must be >= 1")


# ------------------------------------------------------------------------------------------ data
def load_faces(folder: Path, size: int, limit: int | None = None) -> tuple[torch.Tensor, list[str]]:
    """uint8 N x 3 x size x size faces (centre square, Pillow bicubic) and the bad files' reasons."""
    files = list_images(folder)[:limit] if limit else list_images(folder)
    if not files:
        raise UsageError(f"no image files under {folder}")
    imgs, bad = [], []
    for p in tqdm(files, desc=f"decode {folder.name}", leave=False, disable=None):
        try:
            imgs.append(resize_uint8(to_square(read_image(p)), (size, size), "bicubic"))
        except ImageDecodeError as exc:
            bad.append(str(exc))
    if not imgs:
        raise UsageError(f"no readable image under {folder}: {bad[:3]}")
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous(), bad


def cached_faces(folder: Path, size: int, cache: Path, limit: int | None) -> tuple[torch.Tensor, list[str]]:
    """:func:`load_faces`, cached as ``.npy`` keyed by the folder listing (names, sizes, mtimes)."""
    listing = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in list_images(folder)][:limit]
    key = hashlib.sha256(json.dumps([listing, size]).encode()).hexdigest()[:16]
    path = cache / f"{folder.name}-{size}-{key}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return torch.from_numpy(z["faces"]), list(z["bad"])
    faces, bad = load_faces(folder, size, limit)
    buf = io.BytesIO()
    np.savez(buf, faces=faces.numpy(), bad=np.array(bad, dtype=str))
    atomic_write_bytes(path, buf.getvalue())
    return faces, bad


def epoch_order(seed: int, epoch: int, n_hr: int, n_lr: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HR order and the LR image paired with each position, from ``(seed, epoch)`` only."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    hr = torch.randperm(n_hr, generator=g)
    reps = -(-n_hr // n_lr)
    lr = torch.cat([torch.randperm(n_lr, generator=g) for _ in range(reps)])[:n_hr]
    return hr, lr


def step_noise(seed: int, epoch: int, step: int, batch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + step)
    return torch.randn(batch, 64, generator=g)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [-1, 1] (the networks' range; tanh outputs)."""
    return x.float().div(127.5).sub(1.0)


# ------------------------------------------------------------------------------------ checkpoints
def _dedup_state(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State dict without duplicate storage (shared modules) plus the alias map to rebuild it."""
    tensors, aliases, seen = {}, {}, {}
    for k, v in model.state_dict().items():
        ptr = (v.data_ptr(), v.shape, v.dtype) if v.numel() else None
        if ptr is not None and ptr in seen:
            aliases[k] = seen[ptr]
        else:
            if ptr is not None:
                seen[ptr] = k
            tensors[k] = v.detach().cpu().contiguous()
    return tensors, aliases


def save_checkpoint(out: Path, model: SCGAN, state: dict[str, Any], cfg: TrainConfig) -> None:
    from safetensors.torch import save

    ckpt = out / "checkpoints"
    tensors, aliases = _dedup_state(model)
    meta = {"format": str(CHECKPOINT_FORMAT), "aliases": json.dumps(aliases), "variant": cfg.variant,
            "recipe": cfg.recipe, "width": str(cfg.width)}
    atomic_write_bytes(ckpt / "last.safetensors", save(tensors, metadata=meta), durable=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(ckpt / "last-state.pt", buf.getvalue(), durable=True)
    rls = {k: v.detach().cpu().contiguous() for k, v in model.rls.state_dict().items()}
    data = save(rls, metadata={**meta, "aliases": "{}"})
    atomic_write_bytes(out / "rls.safetensors", data, durable=True)
    atomic_write_text(out / "rls.safetensors.sha256", hashlib.sha256(data).hexdigest() + "  rls.safetensors\n",
                      durable=True)
    atomic_write_text(out / "config.json", json.dumps(
        {**asdict(cfg), "variant_spec": _variant_json(cfg.variant), "recipe_spec": asdict(RECIPES[cfg.recipe])},
        indent=1, default=str), durable=True)


def _variant_json(name: str) -> dict[str, Any]:
    v = asdict(VARIANTS.get(name))
    v["adversarial"] = sorted(v["adversarial"])
    return v


def load_checkpoint(out: Path, model: SCGAN) -> dict[str, Any]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    ckpt = out / "checkpoints"
    with safe_open(str(ckpt / "last.safetensors"), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(ckpt / "last.safetensors"))
    for alias, orig in json.loads(meta["aliases"]).items():
        tensors[alias] = tensors[orig]
    model.load_state_dict(tensors, strict=True)
    return torch.load(ckpt / "last-state.pt", map_location="cpu", weights_only=True)


# ------------------------------------------------------------------------------------------ training
def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _rng_state() -> dict[str, Any]:
    """The global torch RNG states (data order and noise use their own seeded generators, and
    nothing in training draws from numpy's or Python's RNG)."""
    st: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


class Trainer:
    """Builds the model, optimisers and schedulers for a config; ``fit()`` trains (resumable)."""

    def __init__(self, cfg: TrainConfig, hr: torch.Tensor, lr: torch.Tensor) -> None:
        cfg.check()
        self.cfg = cfg
        self.rank, self.world = _rank_world()
        if cfg.batch_size % self.world:
            raise UsageError(f"batch size {cfg.batch_size} is not divisible by {self.world} processes")
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        random.seed(cfg.seed)
        self.device = torch.device(cfg.device)
        self.hr, self.lr = hr, lr
        model = SCGAN(VARIANTS.get(cfg.variant), RECIPES[cfg.recipe], cfg.width).to(self.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        fused = self.device.type == "cuda"
        self.g_opt = torch.optim.Adam(model.generator_parameters(), lr=cfg.learning_rate, betas=cfg.betas,
                                      fused=fused)
        self.d_opt = (torch.optim.Adam(model.disc.parameters(), lr=cfg.learning_rate, betas=cfg.betas,
                                       fused=fused) if len(model.disc) else None)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR
        self.g_sched = sched(self.g_opt, T_max=cfg.lr_period, eta_min=cfg.lr_min)
        self.d_sched = sched(self.d_opt, T_max=cfg.lr_period, eta_min=cfg.lr_min) if self.d_opt else None
        self.epoch, self.step_in_epoch, self.global_step = 1, 0, 0
        self._gen = torch.compile(model.generate) if cfg.compile else model.generate
        if self.world > 1:  # every rank starts from rank 0's weights
            for t in list(model.parameters()) + list(model.buffers()):
                dist.broadcast(t.data, 0)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.hr) // self.cfg.batch_size

    def batch(self, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's slice of global batch ``step`` of ``epoch``."""
        b = self.cfg.batch_size
        hr_idx, lr_idx = epoch_order(self.cfg.seed, epoch, len(self.hr), len(self.lr))
        sl = slice(step * b, (step + 1) * b)
        z = step_noise(self.cfg.seed, epoch, step, b)
        per = b // self.world
        mine = slice(self.rank * per, (self.rank + 1) * per)
        hr = to_unit(self.hr[hr_idx[sl]][mine]).to(self.device)
        lr = to_unit(self.lr[lr_idx[sl]][mine]).to(self.device)
        if self.cfg.channels_last:
            hr, lr = hr.contiguous(memory_format=torch.channels_last), lr.contiguous(memory_format=torch.channels_last)
        return hr, lr, z[mine].to(self.device)

    def _autocast(self):
        if self.cfg.amp == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    def _average_grads(self, params) -> None:
        """Data parallelism: average gradients over ranks in one coalesced all-reduce (what DDP
        does, without its per-forward hooks, which a GAN step with several backward passes
        through shared modules does not fit)."""
        if self.world == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(self.world)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def train_step(self, hr: torch.Tensor, lr: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
        m = self.model
        with self._autocast():
            fakes = self._gen(hr, lr, z)
        logs = {}
        if self.d_opt is not None:
            with self._autocast():
                d_terms = m.discriminator_loss(hr, lr, fakes)
            self.d_opt.zero_grad(set_to_none=True)
            sum(d_terms.values()).backward()
            self._average_grads(m.disc.parameters())
            self.d_opt.step()
            logs.update({k: float(v.detach()) for k, v in d_terms.items()})
        m.disc.requires_grad_(False)
        with self._autocast():
            g_terms = m.generator_loss(hr, lr, fakes)
        self.g_opt.zero_grad(set_to_none=True)
        sum(g_terms.values()).backward()
        self._average_grads(m.generator_parameters())
        self.g_opt.step()
        m.disc.requires_grad_(True)
        logs.update({k: float(v.detach()) for k, v in g_terms.items()})
        return logs

    def state(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step, "g_opt": self.g_opt.state_dict(),
                "d_opt": self.d_opt.state_dict() if self.d_opt else {},
                "g_sched": self.g_sched.state_dict(), "d_sched": self.d_sched.state_dict() if self.d_sched else {},
                "rng": _rng_state()}

    def load(self, out: Path) -> None:
        st = load_checkpoint(out, self.model)
        self.g_opt.load_state_dict(st["g_opt"])
        if self.d_opt:
            self.d_opt.load_state_dict(st["d_opt"])
            self.d_sched.load_state_dict(st["d_sched"])
        self.g_sched.load_state_dict(st["g_sched"])
        self.epoch, self.step_in_epoch, self.global_step = st["epoch"], st["step_in_epoch"], st["global_step"]
        _set_rng_state(st["rng"])

    def fit(self, out: Path, *, resume: bool = False, checkpoint_every: int = 0) -> list[dict[str, Any]]:
        """Train to ``cfg.epochs`` (or ``cfg.max_steps``); returns the log rows of this call."""
        cfg = self.cfg
        out.mkdir(parents=True, exist_ok=True)
        if resume:
            if not (out / "checkpoints" / "last.safetensors").exists():
                raise UsageError(f"--resume: no checkpoint under {out / 'checkpoints'}")
            self.load(out)
        writer = _tensorboard(out) if self.rank == 0 else None
        rows: list[dict[str, Any]] = []
        spe = self.steps_per_epoch
        if spe == 0:
            raise UsageError(f"{len(self.hr)} HR images are fewer than one batch of {cfg.batch_size}")
        bar = tqdm(total=cfg.epochs * spe, initial=(self.epoch - 1) * spe + self.step_in_epoch,
                   disable=None if (cfg.progress and self.rank == 0) else True, desc=f"train {cfg.variant}")
        self.model.train()
        done = False
        while self.epoch <= cfg.epochs and not done:
            t0 = time.perf_counter()
            while self.step_in_epoch < spe:
                logs = self.train_step(*self.batch(self.epoch, self.step_in_epoch))
                self.step_in_epoch += 1
                self.global_step += 1
                row = {"epoch": self.epoch, "step": self.global_step, "lr": self.g_opt.param_groups[0]["lr"], **logs}
                rows.append(row)
                bar.update()
                if self.rank == 0:
                    _append_csv(out / "log.csv", row)
                    if writer:
                        for k, v in logs.items():
                            writer.add_scalar(f"train/{k}", v, self.global_step)
                if checkpoint_every and self.global_step % checkpoint_every == 0 and self.rank == 0:
                    save_checkpoint(out, self.model, self.state(), cfg)
                if cfg.max_steps and self.global_step >= cfg.max_steps:
                    done = True
                    break
            if self.step_in_epoch >= spe:
                self.g_sched.step()
                if self.d_sched:
                    self.d_sched.step()
                if self.rank == 0:
                    self._samples(out, self.epoch)
                self.epoch += 1
                self.step_in_epoch = 0
            if self.rank == 0:
                save_checkpoint(out, self.model, self.state(), cfg)
                if writer:
                    writer.add_scalar("train/epoch_seconds", time.perf_counter() - t0, self.epoch)
        bar.close()
        if writer:
            writer.close()
        return rows

    @torch.no_grad()
    def _samples(self, out: Path, epoch: int) -> None:
        """A grid per epoch: bicubic-upsampled LR | R_LS output, for the first real LR faces."""
        n = min(self.cfg.sample_count, len(self.lr))
        lr = to_unit(self.lr[:n]).to(self.device)
        was = self.model.rls.training
        self.model.rls.eval()
        sr = self.model.rls(lr).float().clamp(-1, 1)
        self.model.rls.train(was)
        up = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(-1, 1)
        grid = torch.cat([torch.cat(list(up), 2), torch.cat(list(sr), 2)], 1)
        img = ((grid + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()
        write_png(out / "samples" / f"epoch_{epoch:03d}.png", np.ascontiguousarray(img))


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))


def training_faces(source: str, size: int, cfg: TrainConfig, out: Path, limit: int | None
                   ) -> tuple[torch.Tensor, list[str]]:
    """Faces from a folder, or from ``dataset:NAME``: that dataset's training split (FFHQ's 20,000
    training ids, WIDER FACE's 4,000 training crops), prepared like a run prepares its test sets."""
    if not source.startswith("dataset:"):
        return cached_faces(Path(source), size, out / "data-cache", limit)
    from ..prepare import prepare_dataset
    from ..registries import DATASETS, load_plugins

    load_plugins()
    name = source.split(":", 1)[1]
    opts = {"split": "train"} if "split" in DATASETS.get(name).create().options() else {}
    p = prepare_dataset(name, out=out / "data", seed=cfg.seed, root=cfg.roots.get(name), options=opts,
                        limit=limit, progress=cfg.progress)
    key = "hr" if size == 64 else "lr"
    if key == "hr" and p.kind != "synthetic":
        raise UsageError(f"dataset {name} has no HR images to train on")
    imgs = [read_image(p.dir / rec[key]) for rec in p.records.values()]
    imgs = [im if im.shape[0] == size else resize_uint8(im, (size, size), "bicubic") for im in imgs]
    bad = [f"{f.source}: {f.reason}" for f in p.failures]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous(), bad


def run_training(cfg: TrainConfig, *, resume: bool = False) -> Path:
    """Load the data, build a :class:`Trainer` and fit; returns the run folder."""
    cfg.check()
    out = Path(cfg.out)
    hr, bad_hr = training_faces(cfg.hr, 64, cfg, out, cfg.limit_hr)
    lr, bad_lr = training_faces(cfg.lr, 16, cfg, out, cfg.limit_lr)
    cfg.failures = bad_hr + bad_lr
    if cfg.failures:
        print(f"{len(cfg.failures)} unreadable training image(s) skipped, e.g. {cfg.failures[0]}")
    if dist.is_available() and "RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if cfg.device.startswith("cuda") else "gloo")
    trainer = Trainer(cfg, hr, lr)
    trainer.fit(out, resume=resume)
    return out
