"""``python -m scgan_bench`` (and ``torchrun -m scgan_bench run ...``): the command line."""
import sys

from .cli import main

sys.exit(main())
