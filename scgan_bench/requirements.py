"""Availability checks shared by plug-ins: a missing package or weight file becomes a reason the
user can act on, shown by `scgan-bench list` and in every table cell it affects."""
from __future__ import annotations

import importlib.util
from typing import Callable

from .interfaces import Availability


def needs(*, modules: tuple[tuple[str, str], ...] = (), weights: tuple[str, ...] = ()
          ) -> Callable[[], Availability]:
    """An availability check: each ``(module, install hint)`` must import, each weight asset must be
    present and verify (see :mod:`scgan_bench.weights`)."""

    def check() -> Availability:
        for mod, hint in modules:
            if importlib.util.find_spec(mod) is None:
                return Availability(False, f"Python package '{mod}' is not installed ({hint})")
        from .weights import status

        for name in weights:
            st = status(name)
            if st.state == "missing":
                from .weights import ASSETS

                a = ASSETS.get(name)
                how = f"download {a.url}" if a.url.startswith("http") else a.url
                return Availability(False, f"weights '{name}' ({a.filename}) missing: {how} into "
                                           f"{a.download_target().parent} or set $SCGAN_BENCH_WEIGHTS "
                                           "(see `scgan-bench weights list`)")
            if st.state == "mismatch":
                return Availability(False, f"weights '{name}' at {st.path} fail the sha256 check")
        return Availability.yes()

    return check
