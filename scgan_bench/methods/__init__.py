"""Built-in SR methods (interpolation baselines, the ground-truth pseudo-method); learned methods
live in ``baselines/``."""
from . import interpolation, oracle  # noqa: F401
