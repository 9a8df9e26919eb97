"""The metric suite. Each module registers its metrics with direction, version and requirements;
`scgan-bench list metrics` shows which are available here and why not."""
from . import (adaface, arcface, clipiqa, composite, deg_vqfr, dists, distribution, fid_stats,  # noqa: F401
               dinov2, fidelity, identity, landmarks, liqe, lmd, maniqa, musiq, niqe, perceptual, prdc, qalign,
               topiq)
