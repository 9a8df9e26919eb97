"""Float32 arithmetic of a run's networks on CUDA: strict IEEE float32 by default, TF32 on request.

PyTorch runs float32 convolutions on NVIDIA GPUs in TF32 (10-bit mantissa) unless told otherwise. The
device check (benchmarks/results/gpu_check_NVIDIA-H200_2026-11-27.md) measured what that does to a
benchmark's numbers on an H200: with TF32, CodeFormer's outputs differed from the CPU's by up to 221 of
255 levels (mean 1.5), RestoreFormer's by 61, CycleGAN's by a mean of 0.16 levels, Inception features
by 7e-4 of their largest value; with TF32 off every SR method was within 1 level of the CPU and every
metric network within 2e-6. So ``scgan-bench run`` turns TF32 off on CUDA (``--tf32`` turns it on for
speed) and every cache key made under TF32 says so, so that a folder never mixes the two.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_ACTIVE: dict[str, Any] = {}


def tag() -> dict[str, Any]:
    """What cache keys add for the arithmetic in force: ``{}`` for strict float32 (and on the CPU),
    ``{"fp32": "tf32"}`` while a run on CUDA allows TF32."""
    return dict(_ACTIVE)


@contextmanager
def fp32_precision(device: str, tf32: bool = False) -> Iterator[None]:
    """Within the block, float32 convolutions and matrix products on CUDA use TF32 only if ``tf32``;
    torch's switches are restored afterwards. No effect on the CPU."""
    global _ACTIVE
    if not str(device).startswith("cuda"):
        yield
        return
    import torch

    prev = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, _ACTIVE)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    _ACTIVE = {"fp32": "tf32"} if tf32 else {}
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, _ACTIVE = prev
