"""What one training step reads: the batch every model's ``step`` takes (below the engine and the
speed modes that both build it)."""
from __future__ import annotations

from typing import NamedTuple

import torch


class Batch(NamedTuple):
    """This rank's slice of one global batch: HR and real LR faces in [-1, 1], the step's noise."""

    hr: torch.Tensor
    lr: torch.Tensor
    z: torch.Tensor
    epoch: int = 1
    step: int = 0
