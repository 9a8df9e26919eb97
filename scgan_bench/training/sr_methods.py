"""The SR methods of trained baseline runs: ``lrgan-retrained`` (an LRGAN run's Low-to-High generator),
``cyclegan`` and ``cyclegan-16`` (a CycleGAN run's G_A). Checkpoints are found like SCGAN's: the
weights manager's ``<method>.safetensors`` (copy a run's ``sr.safetensors`` and its ``.sha256``
sidecar), or ``$SCGAN_BENCH_CKPT_<METHOD>`` naming the file or the run folder. The file's metadata
must name the method and variant it was trained as; the network is rebuilt from it and loaded
strictly. Fingerprints carry the checkpoint's sha256 and its training provenance (tables say
"retrained" for these cells)."""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import UsageError
from ..scgan.method import checkpoint_path, register_trained
from ..assets.weights import resolve

if TYPE_CHECKING:  # imported where a network is built: registering and listing need none of it
    import torch
    from torch import nn


@dataclass(frozen=True)
class TrainedKind:
    method: str        # the SR method's name
    trained: str       # the trainable method (metadata "method")
    variant: str       # the variant (metadata "variant")
    paper_name: str
    builder: str       # "module:function" under scgan_bench.training: metadata -> the SR network

    def build(self, meta: Mapping[str, str]) -> nn.Module:
        module, func = self.builder.split(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), func)(meta)


def _kinds() -> dict[str, TrainedKind]:
    return {k.method: k for k in (
        TrainedKind("lrgan-retrained", "lrgan", "lrgan", "LRGAN (retrained)", "lrgan:build_sr"),
        TrainedKind("cyclegan", "cyclegan", "cyclegan", "CycleGAN", "cyclegan:build_sr"),
        TrainedKind("cyclegan-16", "cyclegan", "cyclegan-16", "CycleGAN (16 <-> 64 px)", "cyclegan:build_sr"))}


def load_trained_sr(path: Path, kind: TrainedKind) -> tuple[nn.Module, dict[str, str]]:
    """The SR network of a trained run's ``sr.safetensors``: metadata checked, network rebuilt, strict load."""
    import torch

    from ..baselines.loading import layout_differences
    from ..assets.safeload import safetensors_load, safetensors_shapes

    shapes, meta = safetensors_shapes(path, f"{kind.method} checkpoint")
    if (meta.get("method"), meta.get("variant")) != (kind.trained, kind.variant):
        raise UsageError(f"{path}: trained as method {meta.get('method')!r} variant {meta.get('variant')!r}, not as "
                         f"{kind.trained} {kind.variant} (the SR method {kind.method} needs an "
                         f"`scgan-bench train --method {kind.trained} --variant {kind.variant}` run's sr.safetensors)")
    if meta.get("channel_order") != "rgb":
        raise UsageError(f"{path}: its metadata does not say channel_order=rgb")
    try:   # on the meta device first: the network the metadata implies is checked against the file's shapes
        with torch.device("meta"):
            probe = kind.build(meta)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise UsageError(f"{path}: its metadata cannot rebuild the network ({exc})") from None
    wrong = layout_differences(probe.state_dict(), {k: torch.empty(s, device="meta") for k, s in shapes.items()})
    if wrong:
        raise UsageError(f"{path}: its tensors do not fit the {kind.method} network its metadata describes: "
                         + "; ".join(wrong))
    net = kind.build(meta)
    sd, _ = safetensors_load(path, f"{kind.method} checkpoint")
    ours = set(net.state_dict())
    missing, unexpected = sorted(ours - set(sd)), sorted(set(sd) - ours)
    if missing or unexpected:
        raise UsageError(f"{path}: {len(missing)} missing keys ({', '.join(missing[:3])}), {len(unexpected)} "
                         f"unexpected ({', '.join(unexpected[:3])}) for the {kind.method} network")
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise UsageError(f"{path}: tensors do not fit the {kind.method} network: "
                         f"{str(exc).splitlines()[-1].strip()}") from None
    return net.eval(), meta


@dataclass
class TrainedSRMethod:
    """A trained run's SR network on 16 px RGB in [0, 1] -> 64 px in [0, 1]."""

    name: str
    device: str = "cpu"
    scale: int = 4
    path: Path | None = None
    _net: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        kind = _kinds()[self.name]
        self.path = self.path or checkpoint_path(self.name, "sr.safetensors")
        self._sha256 = resolve(self.name, self.path).sha256
        net, self.meta = load_trained_sr(self.path, kind)
        self._net = net.to(self.device)

    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad():
            y = self._net(lr.to(self.device) * 2 - 1)
        return ((y + 1) / 2).clamp(0, 1)

    def fingerprint(self) -> Mapping[str, Any]:
        m = self.meta
        return {"method": self.name, "checkpoint_sha256": self._sha256, "channel_order": "rgb", "version": 1,
                "retrained": {"method": m.get("method"), "variant": m.get("variant"), "step": m.get("step"),
                              "seed": m.get("seed"), "width": m.get("width"),
                              "options": json.loads(m.get("options", "{}"))}}


for _name, _kind in _kinds().items():
    _cmd = (f"scgan-bench train --method {_kind.trained}"
            + ("" if _kind.variant == _kind.trained else f" --variant {_kind.variant}"))
    register_trained(
        _name, lambda device="cpu", _n=_name: TrainedSRMethod(_n, device),
        f"{_kind.paper_name}: SR network of a run of `{_cmd}` (retrained here)",
        {"lrgan": "Bulat et al., ECCV 2018", "cyclegan": "Zhu et al., ICCV 2017"}[_kind.trained], _cmd,
        f"SR method {_name} ({_kind.paper_name})", "sr.safetensors",
        license="yours (trained locally); code: " + {"lrgan": "MIT (yoon28 recipe)",
                                                      "cyclegan": "BSD (CycleGAN recipe)"}[_kind.trained],
        card={"lrgan": "lrgan.md", "cyclegan": "cyclegan.md"}[_kind.trained])
