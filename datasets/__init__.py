"""Dataset modules (installed as ``scgan_bench.datasets``). Each module registers its datasets and
has a card (``<name>.md``): where to get the data, the expected layout, the selection protocol."""
from . import demo, ffhq, folder, ls3dw, widerface  # noqa: F401
