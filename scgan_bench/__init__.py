"""scgan-bench: benchmark and evaluation suite for real-world face super-resolution.

Public entry points: the registries (``DATASETS``, ``METHODS``, ``METRICS``), the interfaces in
:mod:`scgan_bench.interfaces` and :func:`scgan_bench.pipeline.run_benchmark`.
"""
from __future__ import annotations

__version__ = "0.1.0"
