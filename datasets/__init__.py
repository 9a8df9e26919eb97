"""Dataset modules (installed as ``scgan_bench.datasets``). Each module registers its datasets and
has a card (``<name>.md``): where to get the data, the expected layout, the selection protocol."""
from . import bfr_sets, demo, ffhq, folder, ls3dw, ntire_rwfr, widerface  # noqa: F401
