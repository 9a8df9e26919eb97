"""SCGAN (and each ablation variant) as an SR method: R_LS from a checkpoint.

Checkpoints are found by the weights manager as ``<method>.safetensors`` (e.g. ``scgan.safetensors``,
``scgan-wo-dsl.safetensors``; copy a run's ``rls.safetensors`` and its ``.sha256`` sidecar), or given
explicitly with ``$SCGAN_BENCH_CKPT_<METHOD>`` (a file, or a training run folder). Formats:
* ours: safetensors with R_LS keys (``rls.safetensors``) or a full training checkpoint (``rls.`` prefix),
  whose metadata records the channel order (``channel_order``), the variant and the recipe;
* the released code's: a ``torch.save`` dict with the R_LS state dict under ``"G_RLS"`` (train.py) or
  ``"G_l2h"`` (test.py), loaded with ``weights_only=True``. The released model was trained on BGR
  images (cv2), so its input and output channels are swapped around R_LS. A file whose blocks carry
  BatchNorm (the LRGAN-fork layout) is refused with that cause.
``minmax=True`` reproduces the released test script's per-image min-max output normalisation (off by
default: it changes colours).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import UsageError
from ..interfaces import Availability, MethodSpec
from ..registries import METHODS
from ..assets.weights import ASSETS, Asset, register_asset, resolve, status
from .variants import VARIANTS

if TYPE_CHECKING:  # imported where used: registering and listing need none of it
    import torch

    from .networks import RestorationNet


def _env_key(method: str) -> str:
    return "SCGAN_BENCH_CKPT_" + "".join(c if c.isalnum() else "_" for c in method.upper())


def checkpoint_path(method: str, filename: str = "rls.safetensors") -> Path:
    """Explicit ``$SCGAN_BENCH_CKPT_<METHOD>`` (a file, or a training run folder holding ``filename``),
    else the weights manager."""
    env = os.environ.get(_env_key(method))
    if env:
        p = Path(env).expanduser()
        if p.is_dir():
            p = p / filename
        if not p.is_file():
            raise UsageError(f"${_env_key(method)} points to {p}, which does not exist")
        return resolve(method, p).path
    return resolve(method, allow_download=False).path


def _released_layout_error(path: Path, keys: list[str]) -> None:
    """Refuse, with the cause, an R_LS whose residual blocks carry BatchNorm: the LRGAN-fork layout
    (``BasicBlock_G(nobn=False)``: ``layers_set_final.0.0.bn1.weight``), which SCGAN's released
    R_LS (``nobn=True``) and this network do not have."""
    bn = [k for k in keys if re.search(r"\.bn[12]\.", k)]
    if bn:
        raise UsageError(
            f"{path}: its residual blocks carry BatchNorm ({len(bn)} keys such as {bn[0]!r}): this is the "
            "LRGAN-fork layout (BasicBlock_G with nobn=False, the network of LRGAN's released model.pkl), not "
            "SCGAN's released R_LS (nobn=True); it cannot be loaded as an SCGAN checkpoint")


def _load_strict(net: RestorationNet, sd: dict[str, torch.Tensor], path: Path) -> None:
    ours = set(net.state_dict())
    missing, unexpected = sorted(ours - set(sd)), sorted(set(sd) - ours)
    if missing or unexpected:
        raise UsageError(f"{path}: not an SCGAN R_LS state dict: {len(missing)} missing keys "
                         f"({', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}), {len(unexpected)} "
                         f"unexpected ({', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''})")
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as exc:  # shape mismatches
        raise UsageError(f"{path}: tensors do not fit SCGAN's R_LS: {str(exc).splitlines()[-1].strip()}") from None


def load_rls(path: Path) -> tuple[RestorationNet, str, dict[str, str]]:
    """R_LS from any supported checkpoint; returns (network, channel order, metadata)."""
    import torch

    from ..baselines.loading import layout_differences
    from ..assets.safeload import safetensors_load, torch_load
    from .networks import RestorationNet, released_rls_key

    if path.suffix == ".safetensors":
        sd, meta = safetensors_load(path, "SCGAN checkpoint")
        if any(k.startswith("rls.") for k in sd):
            sd = {k[4:]: v for k, v in sd.items() if k.startswith("rls.")}
        order = meta.get("channel_order")
        if order not in ("rgb", "bgr"):
            raise UsageError(
                f"{path}: its metadata does not record the channel order the network was trained on "
                f"(channel_order={order!r}; scgan-bench's trainer writes 'rgb'). Re-save it with metadata "
                "{'channel_order': 'rgb'} or {'channel_order': 'bgr'} (safetensors.torch.save_file(tensors, "
                "path, metadata=...)); it is never assumed")
    else:
        raw = torch_load(path, "SCGAN checkpoint")
        key = next((k for k in ("G_RLS", "G_l2h") if isinstance(raw, dict) and k in raw), None)
        if key is None:
            raise UsageError(f"{path}: not a released SCGAN checkpoint (no 'G_RLS' or 'G_l2h' entry)")
        sd = {released_rls_key(k.removeprefix("module.")): v for k, v in raw[key].items()}
        meta, order = {"format": f"released ({key})", "recipe": "official", "variant": "scgan"}, "bgr"
    _released_layout_error(path, list(sd))
    if "layers_in.weight" not in sd:
        raise UsageError(f"{path}: not an SCGAN R_LS state dict (no 'layers_in.weight')")
    width = sd["layers_in.weight"].shape[0] / 256
    try:   # the width the file implies, checked against its every shape before anything is allocated
        with torch.device("meta"):
            probe = RestorationNet(width)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise UsageError(f"{path}: its layers_in.weight of shape {tuple(sd['layers_in.weight'].shape)} implies no "
                         f"SCGAN R_LS ({exc})") from None
    wrong = layout_differences(probe.state_dict(), sd)
    if wrong:
        raise UsageError(f"{path}: not an SCGAN R_LS state dict of width {width:g}: " + "; ".join(wrong))
    net = RestorationNet(width)
    _load_strict(net, sd, path)
    return net.eval(), order, meta


@dataclass
class SCGANMethod:
    name: str
    device: str = "cpu"
    minmax: bool = False
    scale: int = 4
    path: Path | None = None
    _net: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.path = self.path or checkpoint_path(self.name)
        self._sha256 = resolve(self.name, self.path).sha256
        net, self.order, self.meta = load_rls(self.path)
        self._net = net.to(self.device)

    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        x = lr * 2 - 1
        if self.order == "bgr":
            x = x.flip(1)
        y = self._net(x.to(self.device))
        if self.order == "bgr":
            y = y.flip(1)
        if self.minmax:
            lo = y.amin(dim=(1, 2, 3), keepdim=True)
            hi = y.amax(dim=(1, 2, 3), keepdim=True)
            return (y - lo) / (hi - lo).clamp_min(1e-12)
        return (y + 1) / 2

    def fingerprint(self) -> Mapping[str, Any]:
        return {"method": self.name, "checkpoint_sha256": self._sha256, "channel_order": self.order,
                "minmax": self.minmax, "version": 2, **checkpoint_provenance(self.meta)}


def checkpoint_provenance(meta: Mapping[str, str]) -> dict[str, Any]:
    """The variant and recipe a checkpoint was trained with, from its metadata (tables state them)."""
    from .model import RECIPES

    out: dict[str, Any] = {"trained_variant": meta.get("variant"), "recipe": meta.get("recipe")}
    if meta.get("recipe_spec"):
        try:
            out["recipe_spec"] = json.loads(meta["recipe_spec"])
        except ValueError:
            pass
    elif meta.get("recipe") in RECIPES:
        out["recipe_spec"] = RECIPES[meta["recipe"]].spec()
    return out


def _availability(name: str, train: str = "", filename: str = "rls.safetensors"):
    """Available when ``$SCGAN_BENCH_CKPT_<NAME>`` is set or the weights manager holds a verified
    ``<name>.safetensors``; otherwise says how to train one and where to put it."""
    train = train or f"scgan-bench train --variant {name} ..."

    def check() -> Availability:
        if os.environ.get(_env_key(name)):
            return Availability.yes()
        st = status(name)
        if st.state == "missing":
            return Availability(False, f"no checkpoint: train one (`{train}`) and copy its {filename} (+ .sha256) "
                                       f"to $SCGAN_BENCH_WEIGHTS/{name}.safetensors, or set "
                                       f"${_env_key(name)} to the file or run folder")
        if st.state == "mismatch":
            return Availability(False, st.detail)
        return Availability.yes()

    return check


def register_trained(name: str, factory, summary: str, paper: str, train_cmd: str, used_by: str,
                     filename: str = "rls.safetensors", **spec: Any) -> None:
    """An SR method read from a training run of this project: its checkpoint asset
    (``<name>.safetensors`` with a sha256 sidecar, no download) and its registry entry, available once
    a checkpoint is found (see :func:`checkpoint_path`)."""
    if name not in ASSETS:
        register_asset(Asset(name, f"{name}.safetensors", f"no public checkpoint: train it with `{train_cmd}`",
                             used_by=used_by, license="yours (trained locally)", caches=("scgan-bench",),
                             sidecar=True))
    METHODS.register(name, MethodSpec(name=name, factory=factory, summary=summary, paper=paper,
                                      availability=_availability(name, f"{train_cmd} ...", filename), **spec))


for _name, _v in VARIANTS.items():
    register_trained(_name, lambda device="cpu", _n=_name: SCGANMethod(_n, device),
                     f"{_v.paper_name}: R_LS of a trained checkpoint" + (f" (Table {_v.table} ablation)" if _v.table else ""),
                     "Hou et al., arXiv 2205.03777", f"scgan-bench train --variant {_name}",
                     f"SR method {_name} ({_v.paper_name})")
