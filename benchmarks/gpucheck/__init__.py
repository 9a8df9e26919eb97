"""The parts of the device check (``benchmarks/gpu_check.py`` runs them): ``common``, ``agreement``,
``training``, ``throughput``, ``report``."""
