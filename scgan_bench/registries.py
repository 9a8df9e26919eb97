"""The suite's registries. Plug-in modules register themselves on import; ``load_plugins()`` imports
them all (built-in methods and metrics, the datasets and the third-party baselines)."""
from __future__ import annotations

import importlib

from .interfaces import DatasetSpec, MethodSpec, MetricSpec
from .registry import Registry

DATASETS: Registry[DatasetSpec] = Registry("dataset")
METHODS: Registry[MethodSpec] = Registry("method")
METRICS: Registry[MetricSpec] = Registry("metric")

_PLUGIN_MODULES = ("scgan_bench.methods", "scgan_bench.metrics", "scgan_bench.datasets",
                   "scgan_bench.baselines", "scgan_bench.scgan.method",
                   "scgan_bench.training.sr_methods")
_loaded = False


def load_plugins() -> None:
    """Import every plug-in package once so that its registrations run."""
    global _loaded
    if _loaded:
        return
    for mod in _PLUGIN_MODULES:
        importlib.import_module(mod)
    _loaded = True
