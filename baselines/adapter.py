"""One SR adapter for every pretrained baseline: bridge in, the network on the range it was trained on,
bridge out. Each method module supplies the loaded network and a ``forward`` that calls it exactly as the
official inference script does (never a library descriptor's ``__call__``: spandrel's GFPGAN and
CodeFormer descriptors feed [0, 1] into [-1, 1] networks)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

if TYPE_CHECKING:  # imported where used: registering and listing need none of it
    import torch
    from torch import nn

    from scgan_bench.interfaces import Availability
    from scgan_bench.protocols import EvalProtocol

from scgan_bench.interfaces import MethodSpec
from scgan_bench.registries import METHODS

from .bridge import Bridge

#: forward(net, x, keys) -> y: ``x`` on the network's input range, ``keys`` one sha256 per image (of
#: its 8-bit LR pixels) for methods that seed per-image randomness from the input
Forward = Callable[["nn.Module", "torch.Tensor", Sequence[str]], "torch.Tensor"]

RANGES = {"[-1,1]": (lambda x: x * 2 - 1, lambda y: (y.clamp(-1, 1) + 1) / 2),
          "[0,1]": (lambda x: x, lambda y: y.clamp(0, 1))}


def image_keys(lr: torch.Tensor) -> list[str]:
    """sha256 of each image's 8-bit pixels (shape included): a seed source that does not depend on
    the batch an image lands in."""
    from scgan_bench.run.superres import quantise

    return [hashlib.sha256(str(im.shape).encode() + im.tobytes()).hexdigest() for im in quantise(lr)]


def image_generator(key: str, salt: int) -> torch.Generator:
    """A CPU generator for one image's random draws, seeded by its key (:func:`image_keys`) xor a
    per-method ``salt``: the same draws on every run, batch and batch size."""
    import torch

    return torch.Generator().manual_seed(int(key[:15], 16) ^ salt)


class NoiseStreams:
    """One CPU generator per input (:func:`image_generator` of its key and ``salt``); each :meth:`draw` is the
    next N(0, 1) tensor of ``shape`` for every input, stacked: drawn step by step, the same per image whatever
    the batch (the diffusion samplers' start noise and per-step noise)."""

    def __init__(self, keys: Sequence[str], shape: tuple[int, ...], salt: int) -> None:
        self.shape = shape
        self.gens = [image_generator(k, salt) for k in keys]

    def draw(self, like: "torch.Tensor") -> "torch.Tensor":
        import torch

        return torch.stack([torch.randn(self.shape, generator=g) for g in self.gens]).to(like)


def gpu_only_text(method: str, work: str, seconds: tuple[float, float]) -> str:
    """Why a method is GPU only here: ``work`` (what one face costs) takes ``seconds`` (the measured range) on 2
    CPU cores; the option that runs it anyway."""
    lo, hi = seconds
    return (f"GPU only here: no CUDA device is visible, and {work} take {lo / 60:.1f}-{hi / 60:.1f} min per face on "
            f"2 CPU cores (measured); --method-opt {method}:allow_cpu=true runs it anyway")


def gpu_only_availability(options: Mapping[str, Any], files: Sequence[tuple[str, str]],
                          reason: Callable[[], str], modules: Sequence[tuple[str, str]] = ()) -> "Availability":
    """A GPU-only method's state: its modules and the weight assets of ``files`` ((asset, file option): an
    asset whose option names a file is not needed), then, without CUDA and without ``allow_cpu``, ``reason()``."""
    from scgan_bench.assets.requirements import needs
    from scgan_bench.interfaces import Availability

    base = needs(modules=tuple(modules), weights=tuple(a for a, opt in files if not options.get(opt)))()
    if not base.ok:
        return base
    import torch

    if not torch.cuda.is_available() and not options.get("allow_cpu"):
        return Availability(False, reason())
    return base


def holder(**parts: nn.Module) -> nn.Module:
    """The networks of a multi-network method under the official module names (``model=``, ``mmse_model=``,
    ...): their state dict keys carry those prefixes, as in the release."""
    from torch import nn

    net = nn.Module()
    for name, part in parts.items():
        net.add_module(name, part)
    return net


@dataclass
class PretrainedSR:
    """An SR method around a pretrained network (see the module docstring).

    ``input_range`` is the range the network was trained on (``"[-1,1]"`` or ``"[0,1]"``); its output is
    read on the same range, clamped and mapped to [0, 1]. ``bridge`` is None for native 16 -> 64
    networks. ``provenance`` (weights sha256, container, configuration, options) enters the fingerprint.
    """

    name: str
    net: nn.Module
    forward: Forward
    input_range: str
    bridge: Bridge | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    scale: int = 4
    version: int = 1

    def __post_init__(self) -> None:
        if self.input_range not in RANGES:
            raise ValueError(f"{self.name}: input_range must be one of {', '.join(RANGES)}")
        self.net = self.net.to(self.device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        import torch

        if lr.ndim != 4 or lr.shape[1] != 3:
            raise ValueError(f"{self.name}: expected an Nx3xHxW tensor, got {tuple(lr.shape)}")
        out_size = lr.shape[-1] * self.scale
        keys = image_keys(lr)
        x = self.bridge.up(lr) if self.bridge is not None else lr.float()
        to_net, from_net = RANGES[self.input_range]
        with torch.inference_mode():
            y = self.forward(self.net, to_net(x.to(self.device)).contiguous(), keys)
        y = from_net(y.float())
        return self.bridge.down(y, out_size) if self.bridge is not None else y

    def fingerprint(self) -> Mapping[str, Any]:
        return {"method": self.name, "version": self.version, "input_range": self.input_range,
                "bridge": self.bridge.describe() if self.bridge is not None else "native 16->64 (none)",
                **self.provenance}


@dataclass(frozen=True)
class Card:
    """What ``list methods`` and the tables say about a method."""

    summary: str
    paper: str
    license: str
    card: str          # file name of the method card in baselines/
    weights: tuple[str, ...] = ()


#: method options that name a file standing in for an asset (``weights``: the network's file;
#: ``gaussian_fit``: PULSE's statistics; ``estimator``: DifFace's SwinIR; ``sd`` and ``cleaner``: DiffBIR's
#: Stable Diffusion and stage-1 files)
FILE_OPTIONS = ("weights", "gaussian_fit", "estimator", "sd", "cleaner")


def option_aware(name: str, availability: Callable) -> Callable[..., "Availability"]:
    """``availability`` seen through the run's method options: a file option (``weights=PATH``) must name
    an existing file, and then stands in for the asset it replaces (for a plain requirement list, its
    first weight asset: the network). An availability that takes ``**options`` decides the rest itself
    (HiFaceGAN's ``checkpoint``, RestoreFormer's ``layout``, PULSE's two files and ``allow_cpu``)."""
    import inspect
    from pathlib import Path

    from scgan_bench.interfaces import Availability
    from scgan_bench.assets.requirements import Requirements

    try:
        takes_options = any(p.kind is inspect.Parameter.VAR_KEYWORD
                            for p in inspect.signature(availability).parameters.values())
    except (TypeError, ValueError):
        takes_options = False

    def check(**options: Any) -> Availability:
        for opt in FILE_OPTIONS:
            given = options.get(opt)
            if given and not Path(str(given)).expanduser().is_file():
                return Availability(False, f"--method-opt {name}:{opt}={given}: no such file")
        if isinstance(availability, Requirements):
            if options.get("weights") and availability.weights:
                return Requirements(availability.modules, availability.weights[1:])()
            return availability()
        return availability(**options) if takes_options else availability()

    return check


def fit_protocol(method: PretrainedSR, protocol: EvalProtocol | None) -> PretrainedSR:
    """A bridged face restorer under ``protocol``: its bridge goes from the protocol's input size to the
    network's and back to the protocol's output size (at bfr-512 both are none: the 512 px input as it
    is). A native x4 network is left as it is: the runner gives it the protocol's input downsampled."""
    from dataclasses import replace

    if protocol is None or protocol.is_default or method.bridge is None:
        return method
    method.bridge = replace(method.bridge, lr_size=protocol.lr_size, out_size=protocol.out_size)
    method.scale = protocol.scale
    return method


def _protocol_aware(factory: Callable[..., PretrainedSR]) -> Callable[..., PretrainedSR]:
    def make(device: str = "cpu", protocol: EvalProtocol | None = None, **options: Any) -> PretrainedSR:
        return fit_protocol(factory(device=device, **options), protocol)

    make.__doc__ = factory.__doc__
    return make


def register(name: str, card: Card, factory: Callable[..., PretrainedSR], availability: Callable,
             options: tuple[tuple[str, Any, str], ...] = ()) -> None:
    """Register a pretrained baseline (options: ``(name, default, help)``); its availability follows the
    run's method options (:func:`option_aware`), its bridge the run's protocol (:func:`fit_protocol`)."""
    factory = _protocol_aware(factory)
    METHODS.register(name, MethodSpec(name=name, factory=factory, summary=card.summary, paper=card.paper,
                                      availability=option_aware(name, availability), license=card.license,
                                      card=card.card, options=options, weights=card.weights))
