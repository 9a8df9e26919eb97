"""The suite's registries. Plug-in modules register themselves on import; ``load_plugins()`` imports
them all (built-in methods and metrics, the datasets and the third-party baselines)."""
from __future__ import annotations

import importlib
import sys

from .interfaces import DatasetSpec, MethodSpec, MetricSpec
from .registry import Registry

DATASETS: Registry[DatasetSpec] = Registry("dataset")
METHODS: Registry[MethodSpec] = Registry("method")
METRICS: Registry[MetricSpec] = Registry("metric")

#: installed packages add methods, metrics and datasets through this entry-point group; each entry
#: names a module (imported: its registrations run) or a ``module:function`` (called once)
ENTRY_POINT_GROUP = "scgan_bench.plugins"

_PLUGIN_MODULES = ("scgan_bench.methods", "scgan_bench.metrics", "scgan_bench.datasets",
                   "scgan_bench.baselines", "scgan_bench.scgan.method",
                   "scgan_bench.training.sr_methods")
_loaded = False


def load_plugins() -> None:
    """Import every built-in plug-in package once so that its registrations run, then the installed
    packages' ``scgan_bench.plugins`` entry points (a broken one is reported on stderr, by name, and
    the others still load)."""
    global _loaded
    if _loaded:
        return
    for mod in _PLUGIN_MODULES:
        importlib.import_module(mod)
    _loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if callable(obj):
                obj()
        except Exception as exc:  # noqa: BLE001 (someone else's package must not stop the suite)
            PLUGIN_ERRORS[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
            print(f"scgan-bench: warning: plugin {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: "
                  f"{exc}", file=sys.stderr)


def import_plugin(module: str) -> None:
    """``--plugin module.path``: import a module that registers methods / metrics / datasets (after
    the built-in ones, so it may use and extend them)."""
    from .errors import UsageError

    load_plugins()
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(f"--plugin {module}: cannot import it ({exc}); is it installed or on PYTHONPATH?") from None


def ordered_methods(names: list[str]) -> list[str]:
    """``names`` with the pseudo-methods (``ground-truth``) moved last, order otherwise kept."""
    return [m for m in names if not is_pseudo(m)] + [m for m in names if is_pseudo(m)]


def is_pseudo(name: str) -> bool:
    """Whether ``name`` is a reference row (never ranked), not an SR method."""
    load_plugins()
    return name in METHODS and METHODS.get(name).pseudo


#: entry point name -> why it failed to load (``list methods`` shows them)
PLUGIN_ERRORS: dict[str, str] = {}
