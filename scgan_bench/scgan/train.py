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
* Schedule: Adam(0.9, 0.999), lr 1e-4 -> 1e-5, batch 64, 200 epochs; stepped per epoch.
  ``cosine`` (default, as released): ``CosineAnnealingLR(T_max=10)``, a 20-epoch wave (down for 10
  epochs, back up for 10); ``restarts``: ``CosineAnnealingWarmRestarts(T_0=10)``, 1e-4 -> 1e-5 in every
  10-epoch period (the other reading of the paper's "cosine annealing scheme at every 10 epochs").
* Speed: ``--amp bf16`` autocast, ``--channels-last``, ``--compile``, fused Adam on CUDA.
* Distributed: under ``torchrun`` each rank runs on ``cuda:LOCAL_RANK`` (NCCL; gloo on CPU), takes its
  slice of the global batch, gradients are averaged over ranks (one coalesced all-reduce per optimiser
  step) and R_LS's BatchNorm statistics span all ranks, so N processes equal one process over the whole
  batch.
* Outputs: ``checkpoints/step-<N>-<tag>/`` holds ``model.safetensors`` and ``state.pt`` (optimisers,
  schedulers, counters, RNG states; loads with ``weights_only=True``); ``checkpoints/latest.json``,
  replaced atomically after both are on disk, names that pair with both files' sha256 and the run's
  identity (variant, recipe, seed, batch, learning rate, width, data digest), so a crash never pairs new
  weights with old optimiser state and ``--resume`` refuses a run with other settings.
  ``rls.safetensors`` (the SR network; channel order, variant and recipe in its metadata) and
  ``config.json``; ``log.csv`` (and TensorBoard when installed); ``samples/epoch_NNN.png``.
* Determinism: ``--resume`` continues bit for bit on CPU. On CUDA only with ``--deterministic``
  (deterministic algorithms, cuDNN/cuBLAS settings, R_LS's up-sampling as a matmul).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import random
import secrets
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..errors import ImageDecodeError, TrainingDiverged, UsageError
from ..image_io import atomic_write_bytes, atomic_write_text, list_images, read_image, write_png
from ..manifest import sha256_bytes
from ..store import remove_temp_files
from ..resize import resize_uint8, to_square
from .model import SCGAN, Recipe, get_recipe
from .variants import VARIANTS

CHECKPOINT_FORMAT = 2


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
    lr_schedule: str = "cosine"  # cosine (released: a 2 * lr_period wave) | restarts (every lr_period)
    crossings: dict[str, float] = field(default_factory=dict)  # recipe crossing overrides
    deterministic: bool = False
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
    overwrite: bool = False     # train into a folder that holds another run's checkpoint
    roots: dict[str, str] = field(default_factory=dict)  # for dataset:NAME sources
    progress: bool = True
    failures: list[str] = field(default_factory=list)

    def check(self) -> None:
        VARIANTS.get(self.variant)
        self.recipe_spec()
        if self.lr_schedule not in SCHEDULES:
            raise UsageError(f"--lr-schedule must be one of {', '.join(SCHEDULES)}, got {self.lr_schedule!r}")
        if self.amp not in ("none", "bf16"):
            raise UsageError(f"--amp must be none or bf16, got {self.amp!r}")
        if self.batch_size < 1 or self.epochs < 1:
            raise UsageError("--batch-size and --epochs must be >= 1")
        if not (MIN_WIDTH <= self.width <= MAX_WIDTH):
            raise UsageError(f"--width must be between {MIN_WIDTH} and {MAX_WIDTH} (1 = the released model), "
                             f"got {self.width}")
        if not (self.learning_rate > 0 and self.lr_min >= 0 and self.lr_period >= 1):
            raise UsageError("the learning rate must be > 0, its minimum >= 0 and its period >= 1 epoch")

    def recipe_spec(self) -> Recipe:
        """The recipe with this run's crossing overrides."""
        return get_recipe(self.recipe, self.crossings)


SCHEDULES = ("cosine", "restarts")
# the narrowest network whose thinnest layer (D_HL's last decoder blocks, 512 * width / 16 channels)
# keeps one channel; the widest that is still a sensible experiment
MIN_WIDTH, MAX_WIDTH = 1 / 32, 4.0


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    """Per-epoch learning-rate schedule: ``cosine`` = ``CosineAnnealingLR(T_max=lr_period)`` (as
    released: lr_max at epochs 0, 2P, 4P..., lr_min at P, 3P...); ``restarts`` =
    ``CosineAnnealingWarmRestarts(T_0=lr_period)`` (lr_max -> lr_min within every period)."""
    if cfg.lr_schedule == "restarts":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=cfg.lr_period, eta_min=cfg.lr_min)
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.lr_period, eta_min=cfg.lr_min)


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


def safetensors_metadata(blob: bytes) -> dict[str, str]:
    """The ``__metadata__`` of safetensors bytes (an 8-byte little-endian header length, then JSON)."""
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + n]).get("__metadata__", {}) or {}


def rls_metadata(cfg: TrainConfig, step: int) -> dict[str, str]:
    """What ``rls.safetensors`` says about itself: channel order, variant, recipe, width, seed, step."""
    return {"format": str(CHECKPOINT_FORMAT), "channel_order": "rgb", "variant": cfg.variant,
            "recipe": cfg.recipe_spec().name, "recipe_spec": json.dumps(cfg.recipe_spec().spec(), sort_keys=True),
            "width": str(cfg.width), "seed": str(cfg.seed), "step": str(step)}


def save_checkpoint(out: Path, model: SCGAN, state: dict[str, Any], cfg: TrainConfig,
                    identity: dict[str, Any]) -> Path:
    """Write weights + optimiser state into a new ``checkpoints/step-*`` folder, then point
    ``latest.json`` at it (atomic rename) with both files' sha256, then drop older folders."""
    from safetensors.torch import save

    ckpt = out / "checkpoints"
    step = int(state["global_step"])
    folder = ckpt / f"step-{step:09d}-{secrets.token_hex(3)}"
    tensors, aliases = _dedup_state(model)
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise TrainingDiverged(f"step {step}: non-finite weights in {len(bad)} tensor(s) (e.g. {bad[0]}); "
                               f"nothing was saved: {_last_good(ckpt)}")
    meta = {"format": str(CHECKPOINT_FORMAT), "aliases": json.dumps(aliases), "variant": cfg.variant,
            "recipe": cfg.recipe_spec().name, "width": str(cfg.width)}
    weights = save(tensors, metadata=meta)
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(folder / "model.safetensors", weights, durable=True)
    atomic_write_bytes(folder / "state.pt", buf.getvalue(), durable=True)
    latest = {"format": CHECKPOINT_FORMAT, "folder": folder.name, "global_step": step,
              "sha256": {"model.safetensors": sha256_bytes(weights), "state.pt": sha256_bytes(buf.getvalue())},
              "identity": identity}
    atomic_write_text(ckpt / "latest.json", json.dumps(latest, indent=1, default=str), durable=True)
    for old in ckpt.glob("step-*"):
        if old.is_dir() and old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)
    rls = {k: v.detach().cpu().contiguous() for k, v in model.rls.state_dict().items()}
    data = save(rls, metadata=rls_metadata(cfg, step))
    atomic_write_bytes(out / "rls.safetensors", data, durable=True)
    atomic_write_text(out / "rls.safetensors.sha256", sha256_bytes(data) + "  rls.safetensors\n", durable=True)
    atomic_write_text(out / "config.json", json.dumps(
        {**asdict(cfg), "variant_spec": _variant_json(cfg.variant), "recipe_spec": cfg.recipe_spec().spec()},
        indent=1, default=str), durable=True)
    return folder


def _last_good(ckpt: Path) -> str:
    try:
        latest = json.loads((ckpt / "latest.json").read_text())
        return (f"the last good checkpoint (step {latest['global_step']}, {ckpt / latest['folder']}) and "
                "rls.safetensors are intact")
    except (OSError, ValueError, KeyError):
        return "no earlier checkpoint exists"


def _variant_json(name: str) -> dict[str, Any]:
    v = asdict(VARIANTS.get(name))
    v["adversarial"] = sorted(v["adversarial"])
    return v


def _describe(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else repr(v)


def identity_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between a checkpoint's run identity and this run's."""
    def same(a: Any, b: Any) -> bool:
        return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)

    diffs = []
    for k in sorted(set(stored) | set(current)):
        a, b = stored.get(k), current.get(k)
        if same(a, b):
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{k}.{f}: checkpoint {_describe(a.get(f))}, now {_describe(b.get(f))}"
                      for f in sorted(set(a) | set(b)) if not same(a.get(f), b.get(f))]
        else:
            diffs.append(f"{k}: checkpoint {_describe(a)}, now {_describe(b)}")
    return diffs


def load_checkpoint(out: Path, model: SCGAN, identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """Verify and load the checkpoint ``latest.json`` names: both files' sha256, then (when given) the
    run identity, then the weights (strict) and the optimiser state (``weights_only=True``)."""
    from safetensors.torch import load as st_load

    ckpt = out / "checkpoints"
    latest_path = ckpt / "latest.json"
    if not latest_path.exists():
        if (ckpt / "last.safetensors").exists():
            raise UsageError(f"{ckpt} holds a checkpoint of an older scgan-bench (last.safetensors without "
                             "latest.json) whose weights and optimiser state cannot be verified as a pair; "
                             "start a new run")
        raise UsageError(f"--resume: no checkpoint under {ckpt} (no latest.json)")
    try:
        latest = json.loads(latest_path.read_text())
        folder = ckpt / latest["folder"]
        recorded = latest["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{latest_path} is not a scgan-bench checkpoint pointer: {exc}") from None
    blobs = {}
    for name in ("model.safetensors", "state.pt"):
        path = folder / name
        if not path.is_file():
            raise UsageError(f"checkpoint file {path} named by {latest_path} is missing")
        blobs[name] = path.read_bytes()
        if sha256_bytes(blobs[name]) != recorded.get(name):
            raise UsageError(f"checkpoint file {path} is damaged: its sha256 {sha256_bytes(blobs[name])} differs from "
                             f"the {recorded.get(name)} recorded in {latest_path}")
    if identity is not None:
        diffs = identity_differences(latest.get("identity", {}), identity)
        if diffs:
            raise UsageError(f"--resume: {out} was trained with other settings, so this would not continue "
                             "that run:\n  " + "\n  ".join(diffs) + "\nuse the original settings, or a new --out")
    meta = safetensors_metadata(blobs["model.safetensors"])
    tensors = st_load(blobs["model.safetensors"])
    for alias, orig in json.loads(meta.get("aliases", "{}")).items():
        tensors[alias] = tensors[orig]
    model.load_state_dict(tensors, strict=True)
    return torch.load(io.BytesIO(blobs["state.pt"]), map_location="cpu", weights_only=True)


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


def rank_device(requested: str, env: Mapping[str, str] | None = None, cuda_count: int | None = None
                ) -> torch.device:
    """This process's device. ``cuda`` under torchrun is ``cuda:LOCAL_RANK`` (one GPU per rank); an
    explicit ``cuda:N`` is refused when several ranks share the node (they would all use GPU N)."""
    env = os.environ if env is None else env
    local = int(env.get("LOCAL_RANK", "0"))
    local_world = int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", "1")))
    if requested == "cpu":
        return torch.device("cpu")
    if not requested.startswith("cuda"):
        raise UsageError(f"--device must be cpu, cuda or cuda:N, got {requested!r}")
    n = torch.cuda.device_count() if cuda_count is None else cuda_count
    if n == 0:
        raise UsageError(f"--device {requested}: no CUDA device is visible")
    if requested == "cuda":
        if local >= n:
            raise UsageError(f"LOCAL_RANK is {local} but this node has {n} visible GPU(s): start at most {n} "
                             f"processes per node (torchrun --nproc_per_node {n})")
        return torch.device("cuda", local)
    try:
        idx = int(requested.split(":", 1)[1])
    except ValueError:
        raise UsageError(f"--device must be cpu, cuda or cuda:N, got {requested!r}") from None
    if local_world > 1:
        raise UsageError(f"--device {requested} with {local_world} processes on this node would put every rank "
                         "on the same GPU; use --device cuda (each rank takes cuda:LOCAL_RANK)")
    if not 0 <= idx < n:
        raise UsageError(f"--device {requested}: this node has {n} visible GPU(s)")
    return torch.device("cuda", idx)


def process_group_backend(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def set_deterministic(on: bool) -> None:
    """Deterministic kernels everywhere (what ``--deterministic`` promises on CUDA); CPU training is
    deterministic without it."""
    if not on:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha256 over the shapes and bytes of CPU tensors (the decoded training faces)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(json.dumps(list(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


class Trainer:
    """Builds the model, optimisers and schedulers for a config; ``fit()`` trains (resumable)."""

    def __init__(self, cfg: TrainConfig, hr: torch.Tensor, lr: torch.Tensor) -> None:
        cfg.check()
        self.cfg = cfg
        self.recipe = cfg.recipe_spec()
        self.rank, self.world = _rank_world()
        if cfg.batch_size % self.world:
            raise UsageError(f"batch size {cfg.batch_size} is not divisible by {self.world} processes")
        set_deterministic(cfg.deterministic)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        random.seed(cfg.seed)
        self.device = torch.device(cfg.device)
        self.hr, self.lr = hr, lr
        self._identity: dict[str, Any] | None = None
        model = SCGAN(VARIANTS.get(cfg.variant), self.recipe, cfg.width, seed=cfg.seed).to(self.device)
        if cfg.deterministic:
            model.rls.set_deterministic_upsampling(True)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        fused = self.device.type == "cuda"
        self.g_opt = torch.optim.Adam(model.generator_parameters(), lr=cfg.learning_rate, betas=cfg.betas,
                                      fused=fused)
        self.d_opt = (torch.optim.Adam(model.disc.parameters(), lr=cfg.learning_rate, betas=cfg.betas,
                                       fused=fused) if len(model.disc) else None)
        self.g_sched = make_scheduler(self.g_opt, cfg)
        self.d_sched = make_scheduler(self.d_opt, cfg) if self.d_opt else None
        self.epoch, self.step_in_epoch, self.global_step = 1, 0, 0
        self._gen = torch.compile(model.generate) if cfg.compile else model.generate
        if self.world > 1:  # every rank starts from rank 0's weights
            for t in list(model.parameters()) + list(model.buffers()):
                dist.broadcast(t.data, 0)

    def identity(self) -> dict[str, Any]:
        """What a resume must share with the run it continues (``data``: a digest of the decoded
        training faces); recorded in every checkpoint."""
        if self._identity is None:
            c = self.cfg
            self._identity = {"variant": c.variant, "recipe": self.recipe.spec(), "seed": c.seed,
                              "batch_size": c.batch_size, "learning_rate": c.learning_rate, "lr_min": c.lr_min,
                              "lr_period": c.lr_period, "lr_schedule": c.lr_schedule, "betas": list(c.betas),
                              "width": c.width, "data": tensor_digest(self.hr, self.lr)}
        return self._identity

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
        m.generator_backward(g_terms, fakes)
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
        st = load_checkpoint(out, self.model, self.identity())
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
            self.load(out)
            if self.rank == 0:
                _truncate_log(out / "log.csv", self.global_step)
        elif self.rank == 0:
            _refuse_existing_run(out, cfg.overwrite)
            _clear_run_outputs(out)
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
                bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
                if bad:
                    raise TrainingDiverged(
                        f"step {self.global_step + 1} (epoch {self.epoch}): non-finite loss(es) "
                        f"{', '.join(f'{k}={v}' for k, v in bad.items())}; training stopped, nothing was saved: "
                        f"{_last_good(out / 'checkpoints')}. Check the training images, or start a new run "
                        "with a lower --learning-rate or --amp none")
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
                    save_checkpoint(out, self.model, self.state(), cfg, self.identity())
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
                save_checkpoint(out, self.model, self.state(), cfg, self.identity())
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


RUN_OUTPUTS = ("checkpoints", "log.csv", "rls.safetensors", "rls.safetensors.sha256", "config.json", "samples",
               "tensorboard")


def _refuse_existing_run(out: Path, overwrite: bool) -> None:
    """A new run in ``out`` may not replace another run's checkpoint unless ``overwrite``."""
    ckpt = out / "checkpoints"
    if not overwrite and ((ckpt / "latest.json").exists() or (ckpt / "last.safetensors").exists()):
        raise UsageError(f"{out} already holds a training run (checkpoint in {ckpt}): continue it with "
                         "--resume, or replace it with --overwrite, or choose another --out")


def _clear_run_outputs(out: Path) -> None:
    """Remove an earlier run's outputs (not the decoded-data cache) before a new run starts."""
    for name in RUN_OUTPUTS:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _truncate_log(path: Path, last_step: int) -> None:
    """After a resume: drop log rows past the checkpoint's step (they are about to be redone)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    head, body = rows[0], rows[1:]
    step_col = head.index("step") if "step" in head else None
    keep = [r for r in body if step_col is None or (r[step_col].isdigit() and int(r[step_col]) <= last_step)]
    if len(keep) != len(body):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([head, *keep])
        atomic_write_text(path, buf.getvalue())


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


def equivalence_warning(cfg: TrainConfig) -> str | None:
    """A warning when the variant trains the same SR network as other variants under this recipe."""
    from .dataflow import explain, same_network_as

    recipe = cfg.recipe_spec()
    same = same_network_as(cfg.variant, recipe)
    if not same:
        return None
    return (f"warning: under recipe {recipe.name}, {cfg.variant} trains the same SR network as "
            f"{', '.join(same)}: from the same seed its R_LS is identical to theirs. "
            f"{explain(cfg.variant, same[0], recipe)}. `scgan-bench list variants --recipe {cfg.recipe}` "
            "lists every such group")


def run_training(cfg: TrainConfig, *, resume: bool = False) -> Path:
    """Check the settings and the device, lock the run folder (rank 0), load the data, build a
    :class:`Trainer` and fit; returns the run folder."""
    from contextlib import nullcontext

    from ..runlock import run_lock

    cfg.check()
    out = Path(cfg.out)
    device = rank_device(cfg.device)
    cfg.device = str(device)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    with run_lock(out) if rank0 else nullcontext():
        if rank0:
            if not resume:
                _refuse_existing_run(out, cfg.overwrite)  # before any data is loaded
            remove_temp_files(out)
            warning = equivalence_warning(cfg)
            if warning:
                print(warning, file=sys.stderr)
        hr, bad_hr = training_faces(cfg.hr, 64, cfg, out, cfg.limit_hr)
        lr, bad_lr = training_faces(cfg.lr, 16, cfg, out, cfg.limit_lr)
        cfg.failures = bad_hr + bad_lr
        if cfg.failures and rank0:
            print(f"{len(cfg.failures)} unreadable training image(s) skipped, e.g. {cfg.failures[0]}")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if dist.is_available() and "RANK" in os.environ and not dist.is_initialized():
            backend = process_group_backend(device)
            try:
                dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
            except TypeError:  # torch < 2.3 has no device_id
                dist.init_process_group(backend)
        trainer = Trainer(cfg, hr, lr)
        trainer.fit(out, resume=resume)
    return out
