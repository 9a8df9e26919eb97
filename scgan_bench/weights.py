"""Public entry of the weights manager for plug-ins (stable path; the manager lives in
:mod:`scgan_bench.assets.weights`): declare a weight file with :class:`Asset` and :func:`register_asset`,
find it with :func:`resolve` (URL + sha256 + cache dir + local override), load it with
:func:`load_state_dict`."""
from __future__ import annotations

from .assets.weights import (ASSETS, Asset, Resolved, WeightsError, load_state_dict, register_asset, resolve,
                             status, strip_prefix)

__all__ = ["ASSETS", "Asset", "Resolved", "WeightsError", "load_state_dict", "register_asset", "resolve",
           "status", "strip_prefix"]
