"""The metric suite. Each module registers its metrics with direction, version and requirements;
`scgan-bench list metrics` shows which are available here and why not."""
from . import (adaface, arcface, dists, distribution, fid_stats, fidelity, identity, landmarks,  # noqa: F401
               lmd, maniqa, musiq, niqe, perceptual)
