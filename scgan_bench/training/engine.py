"""The training engine shared by every trainable model: ``scgan-bench train --method scgan|lrgan|cyclegan``.

The engine owns everything that is not the model: data, order, schedule stepping, resume, data
parallelism, logging, checkpoints and samples. A model (:mod:`.models`: SCGAN and its 25 variants,
LRGAN, CycleGAN) supplies its networks, optimisers, schedulers and one training step.

* Data: HR faces (any size; centre square -> 64 px) and real LR faces (-> 16 px) are decoded once,
  bad files reported, and kept in memory as uint8 (20,000 x 64 px is 245 MB). Each epoch draws an HR
  order and an LR pairing from ``(seed, epoch)`` (an epoch is one pass over the HR faces; LR faces
  cycle); the noise z of a step from ``(seed, epoch, step)``: the data order and noise never depend on
  how the run was split into sessions, so ``--resume`` continues exactly.
* Schedules are stepped once per epoch (each model defines its own).
* Speed: ``--amp bf16`` autocast, ``--channels-last``, ``--speed eager|compiled|graph|compiled-graph``
  (:mod:`.speed`), fused Adam on CUDA; discriminators judge real and fake in one call (``--d-calls``).
* Distributed: under ``torchrun`` each rank runs on ``cuda:LOCAL_RANK`` (NCCL; gloo on CPU), takes its
  slice of the global batch, gradients are averaged over ranks (one coalesced all-reduce per optimiser
  step) and BatchNorm statistics span all ranks (models make their BatchNorm syncable), so N processes
  equal one process over the whole batch. The logged losses are averaged over ranks (one all-reduce per
  log flush): the global batch's, not rank 0's half.
* Outputs: ``checkpoints/step-<N>-<tag>/`` holds ``model.safetensors`` and ``state.pt`` (optimisers,
  schedulers, counters, the model's extra state, RNG states; loads with ``weights_only=True``);
  ``checkpoints/latest.json``, replaced atomically after both are on disk, names that pair with both
  files' sha256 and the run's identity (method, variant, recipe, seed, batch, learning rate, width,
  options, data digest), so a crash never pairs new weights with old optimiser state and ``--resume``
  refuses a run with other settings. Checkpoints every ``save_every`` epochs and when the run stops,
  optionally written by a background thread from a copy of the step (``background_save``). The SR
  network alone (``rls.safetensors`` for SCGAN, ``sr.safetensors`` otherwise, with a ``.sha256``
  sidecar; channel order, method, variant and its architecture in the metadata) and ``config.json``;
  ``log.csv`` (and TensorBoard when installed); ``samples/epoch_NNN.png``.
* Determinism: ``--resume`` continues bit for bit on CPU. On CUDA only with ``--deterministic``.
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
from typing import Any, Mapping, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..errors import ImageDecodeError, TrainingDiverged, UsageError
from ..io.image_io import atomic_write_bytes, atomic_write_text, list_images, read_image, write_png
from ..io.manifest import sha256_bytes
from ..io.resize import resize_uint8, to_square
from ..assets.safeload import said, torch_load
from ..run.store import remove_temp_files
from .batch import Batch
from .speed import GRAPH_SPEEDS, SPEEDS, make_step

CHECKPOINT_FORMAT = 2
# the narrowest network whose thinnest layer keeps one channel; the widest that is still a sensible
# experiment
MIN_WIDTH, MAX_WIDTH = 1 / 32, 4.0
D_CALLS = ("fused", "separate")


@dataclass
class TrainConfig:
    """One training run. ``None`` fields take the method's recipe defaults (:meth:`resolve`)."""

    method: str | None = None   # scgan | lrgan | cyclegan (default: the variant's method, else scgan)
    variant: str | None = None  # the method's variant (default: the method's own name)
    recipe: str = "official"    # SCGAN only
    hr: str = ""
    lr: str = ""
    out: str = "runs/scgan"
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    lr_min: float = 1e-5        # SCGAN's cosine schedule
    lr_period: int = 10
    lr_schedule: str | None = None  # SCGAN: cosine (released: a 2 * lr_period wave) | restarts
    crossings: dict[str, float] = field(default_factory=dict)  # SCGAN recipe crossing overrides
    options: dict[str, Any] = field(default_factory=dict)      # the method's own options (--opt KEY=VALUE)
    deterministic: bool = False
    betas: tuple[float, float] | None = None
    seed: int = 2020
    width: float = 1.0
    amp: str = "none"           # none | bf16
    channels_last: bool = False
    #: how the step executes (:mod:`.speed`): eager | compiled | graph | compiled-graph
    speed: str = "eager"
    #: a discriminator judges real and fake images in one call ("fused": one spectral-norm power
    #: iteration per optimiser phase) or in two ("separate": two, as the released code); see
    #: :func:`.models.judge`
    d_calls: str = "fused"
    device: str = "cpu"
    max_steps: int | None = None  # stop after this many steps in total (tests, smoke runs)
    limit_hr: int | None = None
    limit_lr: int | None = None
    sample_count: int = 8
    overwrite: bool = False     # train into a folder that holds another run's checkpoint
    roots: dict[str, str] = field(default_factory=dict)  # for dataset:NAME sources
    progress: bool = True
    failures: list[str] = field(default_factory=list)
    #: losses reach the host (log.csv, the divergence check) every N steps: one device sync per N steps
    #: instead of one per step; no save happens between (default: 1 on CPU, 25 on GPU)
    log_every: int | None = None
    #: checkpoint every N epochs (and always when the run stops); a resume continues from the last one
    save_every: int = 1
    #: write checkpoints in a background thread (the step is copied first; at most one write in flight)
    background_save: bool = False

    def resolve(self) -> "TrainConfig":
        """Fill the method, variant and recipe defaults (idempotent) and check every setting."""
        from .models import trainable_for

        spec = trainable_for(self.method, self.variant)
        self.method = spec.name
        self.variant = self.variant or spec.default_variant
        for key, value in spec.defaults.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        self.betas = tuple(self.betas)
        spec.check(self)
        if self.log_every is not None and self.log_every < 1:
            raise UsageError(f"--log-every must be at least 1, got {self.log_every}")
        if self.save_every < 1:
            raise UsageError(f"--save-every must be at least 1 (epochs), got {self.save_every}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError(f"--max-steps must be at least 1, got {self.max_steps} (leave it out to train the "
                             "recipe's full length)")
        if self.speed not in SPEEDS:
            raise UsageError(f"--speed must be one of {', '.join(SPEEDS)}, got {self.speed!r}")
        if self.d_calls not in D_CALLS:
            raise UsageError(f"--d-calls must be one of {', '.join(D_CALLS)}, got {self.d_calls!r}")
        if self.amp not in ("none", "bf16"):
            raise UsageError(f"--amp must be none or bf16, got {self.amp!r}")
        if self.batch_size < 1 or self.epochs < 1:
            raise UsageError("--batch-size and --epochs must be >= 1")
        if not (MIN_WIDTH <= self.width <= MAX_WIDTH):
            raise UsageError(f"--width must be between {MIN_WIDTH} and {MAX_WIDTH} (1 = the published model), "
                             f"got {self.width}")
        if not self.learning_rate > 0:
            raise UsageError("the learning rate must be > 0")
        return self

    check = resolve

    def recipe_spec(self):
        """SCGAN's recipe with this run's crossing overrides."""
        from ..scgan.model import get_recipe

        return get_recipe(self.recipe, self.crossings)


class SRExport(NamedTuple):
    """What a model writes as its SR network: file name, tensors, safetensors metadata."""

    filename: str
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]


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


def _to_host(steps: list[dict[str, torch.Tensor | float]]) -> list[dict[str, float]]:
    """The logged terms of several steps as floats, through one device-to-host transfer."""
    tensors = [v.float().reshape(()) for t in steps for v in t.values() if isinstance(v, torch.Tensor)]
    values = iter(torch.stack(tensors).cpu().tolist() if tensors else [])
    return [{k: next(values) if isinstance(v, torch.Tensor) else float(v) for k, v in t.items()} for t in steps]


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



def canonical_safetensors(blob: bytes) -> bytes:
    """safetensors bytes with the header's keys sorted: the library writes metadata in hash-map order,
    which differs between processes, so two identical trainings would give checkpoints of different
    sha256. Tensor bytes and offsets are unchanged (offsets count from the end of the header)."""
    n = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8:8 + n]), sort_keys=True, separators=(",", ":"),
                        ensure_ascii=False).encode("utf-8")
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + blob[8 + n:]


def safetensors_metadata(blob: bytes) -> dict[str, str]:
    """The ``__metadata__`` of safetensors bytes (an 8-byte little-endian header length, then JSON)."""
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + n]).get("__metadata__", {}) or {}


@dataclass
class CheckpointPayload:
    """Everything one checkpoint writes, detached from the live run (``prepare_checkpoint``)."""

    step: int
    tensors: dict[str, torch.Tensor]
    meta: dict[str, str]
    state: dict[str, Any]
    identity: dict[str, Any]
    export: SRExport
    config: dict[str, Any]


def _copied(obj: Any) -> Any:
    """``obj`` with every tensor copied to the CPU (containers rebuilt): a snapshot training cannot change."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _copied(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copied(v) for v in obj)
    return obj


def prepare_checkpoint(out: Path, model: torch.nn.Module, state: dict[str, Any], cfg: TrainConfig,
                       identity: dict[str, Any], export: SRExport, config: Mapping[str, Any] | None = None, *,
                       copy: bool = False) -> CheckpointPayload:
    """What :func:`write_checkpoint` writes; refuses non-finite weights (nothing is saved). ``copy``: every
    tensor copied, so that a background writer saves this step while training goes on."""
    step = int(state["global_step"])
    tensors, aliases = _dedup_state(model)
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise TrainingDiverged(f"step {step}: non-finite weights in {len(bad)} tensor(s) (e.g. {bad[0]}); "
                               f"nothing was saved: {_last_good(out / 'checkpoints')}")
    meta = {"format": str(CHECKPOINT_FORMAT), "aliases": json.dumps(aliases), "method": str(cfg.method),
            "variant": str(cfg.variant), "recipe": export.metadata.get("recipe", ""), "width": str(cfg.width)}
    conf = json.loads(json.dumps({**asdict(cfg), **(config or {})}, default=str))
    if copy:
        tensors, state = _copied(tensors), _copied(state)
        export = SRExport(export.filename, _copied(dict(export.tensors)), dict(export.metadata))
    return CheckpointPayload(step, tensors, meta, state, json.loads(json.dumps(identity, default=str)), export, conf)


def write_checkpoint(out: Path, p: CheckpointPayload) -> Path:
    """Write weights + optimiser state into a new ``checkpoints/step-*`` folder, then point
    ``latest.json`` at it (atomic rename) with both files' sha256, then drop older folders; then the
    SR network (``export``) with its sha256 sidecar, and ``config.json``. A crash at any point leaves the
    previous pair in force."""
    from safetensors.torch import save

    ckpt = out / "checkpoints"
    folder = ckpt / f"step-{p.step:09d}-{secrets.token_hex(3)}"
    weights = canonical_safetensors(save(p.tensors, metadata=p.meta))
    buf = io.BytesIO()
    torch.save(p.state, buf)
    atomic_write_bytes(folder / "model.safetensors", weights, durable=True)
    atomic_write_bytes(folder / "state.pt", buf.getvalue(), durable=True)
    latest = {"format": CHECKPOINT_FORMAT, "folder": folder.name, "global_step": p.step,
              "sha256": {"model.safetensors": sha256_bytes(weights), "state.pt": sha256_bytes(buf.getvalue())},
              "identity": p.identity}
    atomic_write_text(ckpt / "latest.json", json.dumps(latest, indent=1, default=str), durable=True)
    for old in ckpt.glob("step-*"):
        if old.is_dir() and old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)
    data = canonical_safetensors(save({k: v.detach().cpu().contiguous() for k, v in p.export.tensors.items()},
                                      metadata=p.export.metadata))
    atomic_write_bytes(out / p.export.filename, data, durable=True)
    atomic_write_text(out / f"{p.export.filename}.sha256", f"{sha256_bytes(data)}  {p.export.filename}\n",
                      durable=True)
    atomic_write_text(out / "config.json", json.dumps(p.config, indent=1, default=str), durable=True)
    return folder


def save_checkpoint(out: Path, model: torch.nn.Module, state: dict[str, Any], cfg: TrainConfig,
                    identity: dict[str, Any], export: SRExport, config: Mapping[str, Any] | None = None) -> Path:
    """:func:`prepare_checkpoint` then :func:`write_checkpoint`, in this thread."""
    return write_checkpoint(out, prepare_checkpoint(out, model, state, cfg, identity, export, config))


def _last_good(ckpt: Path) -> str:
    try:
        latest = json.loads((ckpt / "latest.json").read_text())
        return (f"the last good checkpoint (step {latest['global_step']}, {ckpt / latest['folder']}) and "
                "rls.safetensors are intact")
    except (OSError, ValueError, KeyError):
        return "no earlier checkpoint exists"



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
            diffs.append(f"{k}: checkpoint {_describe(a) if k in stored else 'not recorded'}, now {_describe(b)}")
    return diffs



def load_checkpoint(out: Path, model: torch.nn.Module, identity: dict[str, Any] | None = None,
                    legacy: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Verify and load the checkpoint ``latest.json`` names: both files' sha256, then (when given) the
    run identity, then the weights (strict) and the optimiser state (``weights_only=True``). ``legacy``:
    identity entries newer than the checkpoint's format, taken as recorded when the checkpoint lacks them."""
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
        stored = {**(legacy or {}), **latest.get("identity", {})}
        diffs = identity_differences(stored, identity)
        if diffs:
            hint = ""
            if any(d.startswith("schedule") for d in diffs):
                hint = ("\nthis method's schedule (learning-rate decay or training stages) is set by the --epochs "
                        "the run started with, so --epochs cannot change on --resume (stop earlier with --max-steps)")
            raise UsageError(f"--resume: {out} was trained with other settings, so this would not continue "
                             "that run:\n  " + "\n  ".join(diffs) + hint
                             + "\nuse the original settings, or a new --out")
    try:
        meta = safetensors_metadata(blobs["model.safetensors"])
        tensors = st_load(blobs["model.safetensors"])
        for alias, orig in json.loads(meta.get("aliases", "{}")).items():
            tensors[alias] = tensors[orig]
        model.load_state_dict(tensors, strict=True)
    except Exception as exc:  # noqa: BLE001 (a damaged or foreign file: said with its name)
        raise UsageError(f"{folder / 'model.safetensors'}: not this run's model ({said(exc, 200)}); resume from an earlier "
                         f"checkpoint by pointing {latest_path} at it, or start a new --out") from None
    return torch_load(io.BytesIO(blobs["state.pt"]), "training state", name=str(folder / "state.pt"))



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
    deterministic without it. Off, cuDNN picks its fastest convolution per shape (the batch shape is
    fixed, so it benchmarks once)."""
    if not on:
        torch.backends.cudnn.benchmark = True
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



class Engine:
    """Builds a config's model (networks, optimisers, schedulers) and trains it; ``fit()`` is resumable.

    The model (:class:`.models.Trainable`) sees the engine as its step context: :meth:`autocast`,
    :meth:`average_grads`, ``rank`` / ``world`` / ``device`` / ``cfg``."""

    def __init__(self, cfg: TrainConfig, hr: torch.Tensor, lr: torch.Tensor) -> None:
        from .models import TRAINABLE

        cfg.resolve()
        self.cfg = cfg
        self.spec = TRAINABLE.get(cfg.method)
        self.rank, self.world = _rank_world()
        if cfg.batch_size % self.world:
            raise UsageError(f"batch size {cfg.batch_size} is not divisible by {self.world} processes")
        set_deterministic(cfg.deterministic)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        random.seed(cfg.seed)
        self.device = torch.device(cfg.device)
        self.hr, self.lr = hr, lr
        # the uint8 training set lives where the step runs: batches are gathered there (no host copies)
        self._hr_src, self._lr_src = (hr.to(self.device), lr.to(self.device)) if self.device.type == "cuda" else (hr, lr)
        self._order: tuple[int, torch.Tensor, torch.Tensor] | None = None
        self._identity: dict[str, Any] | None = None
        self._writer = None  # the background checkpoint writer (``background_save``), made on first use
        self._pending_save = None
        self.impl = self.spec.build(self)
        self.model: torch.nn.Module = self.impl.net
        self.optimizers: dict[str, torch.optim.Optimizer] = self.impl.optimizers
        self.schedulers: dict[str, Any] = self.impl.schedulers
        self._run_step = make_step(self)  # the step as --speed executes it
        self.epoch, self.step_in_epoch, self.global_step = 1, 0, 0
        if self.world > 1:  # every rank starts from rank 0's weights
            for t in list(self.model.parameters()) + list(self.model.buffers()):
                dist.broadcast(t.data, 0)

    # SCGAN's optimisers by their historical names (tests, notebooks)
    g_opt = property(lambda self: self.optimizers.get("g"))
    d_opt = property(lambda self: self.optimizers.get("d"))
    g_sched = property(lambda self: self.schedulers.get("g"))
    d_sched = property(lambda self: self.schedulers.get("d"))

    def identity(self) -> dict[str, Any]:
        """What a resume must share with the run it continues (``data``: a digest of the decoded
        training faces); recorded in every checkpoint."""
        if self._identity is None:
            c = self.cfg
            ident: dict[str, Any] = {} if c.method == "scgan" else {"method": c.method}
            ident.update({"variant": c.variant, **self.impl.identity(), "seed": c.seed, "batch_size": c.batch_size,
                          "learning_rate": c.learning_rate, "betas": list(c.betas), "width": c.width,
                          "speed": c.speed, "data": tensor_digest(self.hr, self.lr)})
            self._identity = ident
        return self._identity

    def _legacy_identity(self, out: Path) -> dict[str, Any]:
        """What a checkpoint written before an entry joined the run identity did: it stepped eagerly
        (``speed``) with separate discriminator calls (``d_calls``); its schedule is this run's when the
        ``config.json`` saved with it records the same ``--epochs`` (else it stays missing and the resume
        is refused)."""
        ident = self.identity()
        legacy: dict[str, Any] = {"speed": "eager"}
        if "d_calls" in ident:
            legacy["d_calls"] = "separate"
        if "schedule" in ident:
            try:
                epochs = json.loads((out / "config.json").read_text()).get("epochs")
            except (OSError, ValueError, AttributeError):
                epochs = None
            if epochs == self.cfg.epochs:
                legacy["schedule"] = ident["schedule"]
        return legacy

    @property
    def steps_per_epoch(self) -> int:
        return len(self.hr) // self.cfg.batch_size

    def batch(self, epoch: int, step: int) -> Batch:
        """This rank's slice of global batch ``step`` of ``epoch``."""
        b = self.cfg.batch_size
        if self._order is None or self._order[0] != epoch:  # once per epoch, on the data's device
            hr_idx, lr_idx = epoch_order(self.cfg.seed, epoch, len(self.hr), len(self.lr))
            self._order = (epoch, hr_idx.to(self._hr_src.device), lr_idx.to(self._lr_src.device))
        _, hr_idx, lr_idx = self._order
        z = step_noise(self.cfg.seed, epoch, step, b)  # drawn on the host: the same noise on every device
        per = b // self.world
        mine = slice(self.rank * per, (self.rank + 1) * per)  # this rank's part of the global batch
        at = slice(step * b + mine.start, step * b + mine.stop)
        hr = to_unit(self._hr_src[hr_idx[at]]).to(self.device, non_blocking=True)
        lr = to_unit(self._lr_src[lr_idx[at]]).to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            hr, lr = hr.contiguous(memory_format=torch.channels_last), lr.contiguous(memory_format=torch.channels_last)
        z = z[mine]
        if self.device.type == "cuda":  # pinned, so the copy is queued without blocking the host
            z = z.pin_memory().to(self.device, non_blocking=True)
        return Batch(hr, lr, z, epoch, step)

    def autocast(self):
        """The step's autocast region (bf16 with ``--amp bf16``; without its weight-cast cache when the
        step is captured as a CUDA graph, where cached casts would outlive the recording)."""
        if self.cfg.amp == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16,
                                  cache_enabled=self.cfg.speed not in GRAPH_SPEEDS)
        return torch.autocast(self.device.type, enabled=False)

    def average_grads(self, params) -> None:
        """Data parallelism: average gradients over ranks in one coalesced all-reduce (what DDP
        does, without its per-forward hooks, which a GAN step with several backward passes
        through shared modules does not fit)."""
        if self.world == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(self.world)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def optimise(self, name: str, terms: Mapping[str, torch.Tensor], params) -> None:
        """One update of optimiser ``name``: zero its gradients, backward the sum of ``terms``,
        average the gradients of ``params`` over ranks, step."""
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        self.average_grads(params)
        opt.step()

    def train_step(self, hr: torch.Tensor, lr: torch.Tensor, z: torch.Tensor, epoch: int = 1, step: int = 0
                   ) -> dict[str, float]:
        """One optimisation step of the model on this rank's batch; the logged losses."""
        return _to_host([self._step(Batch(hr, lr, z, epoch, step))])[0]

    def _step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        """One optimisation step; its logged terms still on the device (no host sync)."""
        return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in self._run_step(batch).items()}

    def _schedule_epoch(self) -> None:
        """Step every learning-rate schedule at an epoch's end (a captured step reads the new rates)."""
        for sched in self.schedulers.values():
            sched.step()
        sync = getattr(self._run_step, "sync_lr", None)
        if sync is not None:
            sync()

    def _rank_mean(self, steps: list[dict[str, torch.Tensor | float]]) -> list[dict[str, torch.Tensor | float]]:
        """Each step's loss terms averaged over ranks (each rank's is the mean over its equal slice of
        the global batch, so this is the global batch's mean), in one all-reduce."""
        if self.world == 1 or not steps:
            return steps
        keys = [(i, k) for i, t in enumerate(steps) for k, v in t.items() if isinstance(v, torch.Tensor)]
        if not keys:
            return steps
        flat = torch.stack([steps[i][k].float().reshape(()) for i, k in keys])
        dist.all_reduce(flat)
        flat.div_(self.world)
        out = [dict(t) for t in steps]
        for (i, k), v in zip(keys, flat):
            out[i][k] = v
        return out

    def state(self) -> dict[str, Any]:
        st: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                              "global_step": self.global_step, "rng": _rng_state()}
        for name, opt in self.optimizers.items():
            st[f"{name}_opt"] = opt.state_dict()
        for name, sched in self.schedulers.items():
            st[f"{name}_sched"] = sched.state_dict()
        extra = self.impl.extra_state()
        if extra:
            st["extra"] = extra
        return st

    def load(self, out: Path) -> None:
        st = load_checkpoint(out, self.model, self.identity(), self._legacy_identity(out))
        for name, opt in self.optimizers.items():
            opt.load_state_dict(st[f"{name}_opt"])
        for name, sched in self.schedulers.items():
            sched.load_state_dict(st[f"{name}_sched"])
        self.impl.load_extra_state(st.get("extra", {}))
        self.epoch, self.step_in_epoch, self.global_step = st["epoch"], st["step_in_epoch"], st["global_step"]
        _set_rng_state(st["rng"])

    def save(self, out: Path) -> None:
        """Checkpoint now (rank 0 only calls this). With ``background_save`` the step is copied here and
        written by one writer thread while training goes on (a save first waits for the one before, so at
        most one is in flight; :meth:`wait_for_saves` re-raises a writer's error)."""
        payload = prepare_checkpoint(out, self.model, self.state(), self.cfg, self.identity(),
                                     self.impl.sr_export(self.global_step), self.impl.config_extra(),
                                     copy=self.cfg.background_save)
        if not self.cfg.background_save:
            write_checkpoint(out, payload)
            return
        from concurrent.futures import ThreadPoolExecutor

        self.wait_for_saves()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending_save = self._writer.submit(write_checkpoint, out, payload)

    def _settle_saves(self) -> None:
        """Let a background checkpoint in flight finish, whatever its outcome (an error is on its way)."""
        try:
            self.wait_for_saves()
        except Exception as exc:  # noqa: BLE001 - the training error being raised is the one to report
            print(f"(the checkpoint written in the background failed too: {exc})", file=sys.stderr)
        finally:
            self._close_writer()

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def wait_for_saves(self) -> None:
        """Block until the background checkpoint in flight (if any) is on disk; its error, if any, raised."""
        pending, self._pending_save = self._pending_save, None
        if pending is not None:
            pending.result()

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
        first_opt = next(iter(self.optimizers.values()))
        log_every = cfg.log_every or (25 if self.device.type == "cuda" else 1)
        pending: list[tuple[dict[str, Any], dict[str, torch.Tensor | float]]] = []

        def flush() -> None:
            """Bring the pending steps' losses to the host in one transfer (averaged over ranks in one
            collective: the global batch's losses); log them; stop at the first non-finite one
            (nothing is saved between flushes, so no checkpoint holds it)."""
            for (meta, _), logs in zip(pending, _to_host(self._rank_mean([t for _, t in pending]))):
                bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
                if bad:
                    raise TrainingDiverged(
                        f"step {meta['step']} (epoch {meta['epoch']}): non-finite loss(es) "
                        f"{', '.join(f'{k}={v}' for k, v in bad.items())}; training stopped, nothing was saved: "
                        f"{_last_good(out / 'checkpoints')}. Check the training images, or start a new run "
                        "with a lower --learning-rate or --amp none")
                row = {**meta, **logs}
                rows.append(row)
                if self.rank == 0:
                    _append_csv(out / "log.csv", row)
                    if writer:
                        for k, v in logs.items():
                            writer.add_scalar(f"train/{k}", v, meta["step"])
            pending.clear()

        done = bool(cfg.max_steps and self.global_step >= cfg.max_steps)  # a resumed run already at its budget
        try:
            while self.epoch <= cfg.epochs and not done:
                t0 = time.perf_counter()
                while self.step_in_epoch < spe:
                    terms = self._step(self.batch(self.epoch, self.step_in_epoch))
                    self.step_in_epoch += 1
                    self.global_step += 1
                    pending.append(({"epoch": self.epoch, "step": self.global_step,
                                     "lr": first_opt.param_groups[0]["lr"]}, terms))
                    bar.update()
                    due = bool(checkpoint_every) and self.global_step % checkpoint_every == 0
                    if len(pending) >= log_every or due:  # every rank flushes at the same steps (a collective)
                        flush()
                    if due and self.rank == 0:
                        self.save(out)
                    if cfg.max_steps and self.global_step >= cfg.max_steps:
                        done = True
                        break
                flush()
                if self.step_in_epoch >= spe:
                    self._schedule_epoch()
                    if self.rank == 0:
                        self._samples(out, self.epoch)
                    self.epoch += 1
                    self.step_in_epoch = 0
                finished = done or self.epoch > cfg.epochs
                completed = self.epoch - 1 if self.step_in_epoch == 0 else 0  # the epoch this pass ended, if any
                if self.rank == 0 and (finished or (completed and completed % cfg.save_every == 0)):
                    self.save(out)
                if self.rank == 0 and writer:
                    writer.add_scalar("train/epoch_seconds", time.perf_counter() - t0, self.epoch)
        except BaseException:
            self._settle_saves()  # the training error is the one reported
            raise
        try:
            self.wait_for_saves()
        finally:
            self._close_writer()
        bar.close()
        if writer:
            writer.close()
        return rows

    @torch.no_grad()
    def _samples(self, out: Path, epoch: int) -> None:
        """A grid per epoch: bicubic-upsampled LR | the SR network's output, for the first real LR faces."""
        n = min(self.cfg.sample_count, len(self.lr))
        lr = to_unit(self.lr[:n]).to(self.device)
        sr = self.impl.sample(lr).float().clamp(-1, 1)
        up = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(-1, 1)
        grid = torch.cat([torch.cat(list(up), 2), torch.cat(list(sr), 2)], 1)
        img = ((grid + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()
        write_png(out / "samples" / f"epoch_{epoch:03d}.png", np.ascontiguousarray(img))


#: the name the SCGAN tests and scripts know the engine by
Trainer = Engine


RUN_OUTPUTS = ("checkpoints", "log.csv", "rls.safetensors", "rls.safetensors.sha256", "sr.safetensors",
               "sr.safetensors.sha256", "config.json", "samples", "tensorboard")


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
    """Append a log row under the file's header; a row with new columns (LRGAN's second stage logs
    other terms) rewrites the file once with the widened header (earlier rows leave them empty)."""
    header: list[str] = []
    if path.exists():
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
    if header and set(row) - set(header):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        header += [k for k in row if k not in header]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=header, restval="", lineterminator="\n")
        w.writeheader()
        w.writerows([*rows, row])
        atomic_write_text(path, buf.getvalue())
        return
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header or list(row), restval="", extrasaction="ignore",
                           lineterminator="\n")
        if not header:
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
    from ..run.prepare import prepare_dataset
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
    """Check the settings and the device, lock the run folder (rank 0), load the data, build a
    :class:`Trainer` and fit; returns the run folder."""
    from contextlib import nullcontext

    from ..run.runlock import run_lock
    from .models import TRAINABLE

    cfg.resolve()
    out = Path(cfg.out)
    device = rank_device(cfg.device)
    cfg.device = str(device)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    with run_lock(out) if rank0 else nullcontext():
        if rank0:
            if not resume:
                _refuse_existing_run(out, cfg.overwrite)  # before any data is loaded
            remove_temp_files(out)
            warning = TRAINABLE.get(cfg.method).warning(cfg)
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
        trainer = Engine(cfg, hr, lr)
        trainer.fit(out, resume=resume)
    return out
