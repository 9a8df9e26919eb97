"""Public entry of a library run (stable path; the stages live in :mod:`scgan_bench.run`)::

    from scgan_bench.pipeline import RunConfig, run_benchmark
    result = run_benchmark(RunConfig(datasets=["demo"], methods=["bicubic"], metrics=["psnr"], out="out"))
"""
from __future__ import annotations

from .run.pipeline import RunConfig, RunResult, run_benchmark

__all__ = ["RunConfig", "RunResult", "run_benchmark"]
