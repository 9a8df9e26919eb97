"""Third-party SR methods (installed as ``scgan_bench.baselines``): one module and one card per method,
each loading the authors' released weight files through the weights manager.

* ``realesrgan`` (Real-ESRGAN x4plus), ``gfpgan-v1`` / ``gfpgan-v1.3`` / ``gfpgan-v1.4`` (``gfpgan`` =
  v1.3), ``lrgan`` (the released model.pkl), ``hifacegan`` (the released LIP-SPADE generator),
  ``pulse`` (latent search in the released StyleGAN synthesis), ``dfdnet``, ``codeformer``, ``restoreformer``, ``restoreformer++``;
  ``pmrf`` (posterior-mean rectified flow, 2025), ``difface`` (diffused estimator + face diffusion prior, 2024),
  ``diffbir`` (DiffBIR v2 face path: stage-1 SwinIR + SD 2.1 with IRControlNet, 2024);
* :mod:`.bridge` (16 px <-> a restorer's input size), :mod:`.loading` (verified, strict loading),
  :mod:`.adapter` (the one SR adapter).

Methods of the paper's Tables 5-7 that are not implemented yet are listed in :data:`PLANNED`, so that
``scgan-bench list methods`` and the tables can say so.
"""
from scgan_bench.registries import METHODS

from . import codeformer, dfdnet, diffbir, difface, gfpgan, hifacegan, lrgan, pmrf, pulse, realesrgan, restoreformer  # noqa: F401

#: the names the paper's tables use -> the method that fills them by default
METHODS.alias("gfpgan", "gfpgan-v1.3")
METHODS.alias("real-esrgan", "realesrgan")

#: Table 5-7 methods without an implementation yet -> what is missing (none left: CycleGAN and a
#: retrained LRGAN are trained by the engine, scgan_bench.training)
PLANNED: dict[str, str] = {}
