"""Built-in metrics (image fidelity); more arrive with the metric suite."""
from . import fidelity  # noqa: F401  (registers psnr, ssim, psnr-y, ssim-y)
