"""``python -m scgan_bench.cli``: the ``scgan-bench`` command."""
import sys

from . import main

sys.exit(main())
