"""Built-in SR methods (interpolation baselines; learned methods live in ``baselines/``)."""
from . import interpolation  # noqa: F401  (registers bicubic, bilinear, nearest)
