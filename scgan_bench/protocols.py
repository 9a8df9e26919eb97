"""Evaluation protocols as data: the image size a method is given, the size it must return, and how a
method built for another size is bridged.

* ``scgan-sr`` (the default, SCGAN's protocol): 16 px LR in, 64 px out; synthetic LR made by each dataset's
  own degradation (simple / complex); the 512 px face restorers go through their bicubic x32 bridge and
  are averaged back down (``baselines/bridge.py``).
* ``bfr-512`` (blind face restoration, GFPGAN, VQFR, CodeFormer, RestoreFormer++, DifFace, DiffBIR, PMRF,
  NTIRE 2025/2026): 512 px degraded face in, 512 px out; synthetic LQ made by GFPGAN's degradation
  (``gfpgan``). The face restorers take the 512 px input as it is; an x4 SR model is given the input
  downsampled to 128 px (Pillow bicubic, antialiased, on 8 bits) and returns 512 px.
* ``bfr-N`` (N a multiple of 16, at least 64): the same at N px, for demo-sized and test runs; its numbers
  are not the published protocol's.

The protocol enters every stage's cache key and ``run.json`` (``scgan-sr`` adds nothing to either, so
earlier runs and their caches stay valid), and each method's fingerprint states its bridge.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UsageError

DEFAULT = "scgan-sr"


@dataclass(frozen=True)
class EvalProtocol:
    """What a method gets and returns under one protocol (square images, pixels)."""

    name: str
    lr_size: int
    out_size: int
    summary: str
    #: the degradation of synthetic sets (None: each dataset's own default, SCGAN's protocol)
    degradation: str | None = None
    #: the published protocol (its numbers may stand beside papers'), not a reduced-size stand-in
    published: bool = True

    @property
    def scale(self) -> int:
        """Output over input size (4 for ``scgan-sr``, 1 for ``bfr-*``)."""
        return self.out_size // self.lr_size

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT

    def record(self) -> dict[str, object]:
        """What ``run.json`` and the cache keys say of the protocol."""
        return {"name": self.name, "lr_size": self.lr_size, "out_size": self.out_size,
                "degradation": self.degradation, "published": self.published}

    def input_for(self, method_scale: int) -> int:
        """The input size an x``method_scale`` method is given so that it returns ``out_size``; a UsageError
        when the protocol's sizes cannot be reached that way."""
        if method_scale == self.scale:
            return self.lr_size
        if self.out_size % method_scale or method_scale < self.scale:
            raise UsageError(f"an x{method_scale} method cannot return {self.out_size} px from the {self.lr_size} px "
                             f"input of protocol {self.name}")
        return self.out_size // method_scale


SCGAN_SR = EvalProtocol(DEFAULT, 16, 64, "SCGAN's protocol: 16 px LR in, 64 px out (Tables 1-7)")
_BFR = re.compile(r"bfr-(\d+)")


def bfr(size: int) -> EvalProtocol:
    """The blind-face-restoration protocol at ``size`` px (512: the published one)."""
    return EvalProtocol(f"bfr-{size}", size, size,
                        f"blind face restoration: {size} px degraded face in, {size} px out"
                        + ("" if size == 512 else " (reduced size: not the published protocol)"),
                        degradation="gfpgan", published=size == 512)


def get_protocol(name: str | None) -> EvalProtocol:
    """``scgan-sr``, ``bfr-512`` or ``bfr-N``; None is the default."""
    if name is None or name == DEFAULT:
        return SCGAN_SR
    m = _BFR.fullmatch(name)
    if m:
        size = int(m.group(1))
        if size < 64 or size % 16:
            raise UsageError(f"protocol {name}: the size must be a multiple of 16, at least 64 (bfr-512 is the "
                             "published one)")
        return bfr(size)
    raise UsageError(f"unknown protocol {name!r}; protocols: {DEFAULT} (16 -> 64, the default), bfr-512 (512 -> 512; "
                     "bfr-N at N px for reduced-size runs)")


def protocol_names() -> list[str]:
    return [DEFAULT, "bfr-512"]
