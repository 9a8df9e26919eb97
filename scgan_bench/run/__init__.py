"""A benchmark run's stages and their storage: ``pipeline`` orchestrates ``prepare`` (LR/HR pairs),
``superres`` (SR images), ``scoring`` (per-image and set metrics, with ``features``' cache), ``accumulate`` and
``summary`` (the run's tables); ``store`` / ``runlock`` / ``shard`` / ``parallel`` hold the keyed folders, the
one-process lock, torchrun ranks and worker pools; ``precision`` the float32 arithmetic on CUDA.
``scgan_bench.pipeline`` is the public entry (``RunConfig``, ``run_benchmark``)."""
