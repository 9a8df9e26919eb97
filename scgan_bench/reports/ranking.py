"""Best / second / third as a reader sees them: ranks computed on values as printed.

Every place that colours or bolds ranks (the paper tables in CSV / Markdown / LaTeX / JSON, the HTML
report's summary tables, the bar charts) ranks through :func:`printed_ranks`, so two values that print
the same share a rank and a colour, and a difference below the printed precision never decides one.
"""
from __future__ import annotations

import math
from typing import Hashable, Mapping, TypeVar

K = TypeVar("K", bound=Hashable)


def as_printed(value: float, decimals: int) -> float:
    """``value`` rounded exactly as ``f"{value:.{decimals}f}"`` prints it."""
    return float(f"{value:.{decimals}f}")


def printed_ranks(values: Mapping[K, float], *, higher_is_better: bool, decimals: int, top: int = 3
                  ) -> dict[K, int]:
    """Dense ranks ``1..top`` of the finite ``values`` compared as printed with ``decimals`` decimals
    (equal printed values share a rank; the next distinct value takes the next rank). Fewer than two
    entries: no ranks (a lone value is not "best")."""
    shown = {k: as_printed(v, decimals) for k, v in values.items() if math.isfinite(v)}
    if len(shown) < 2:
        return {}
    distinct = sorted(set(shown.values()), reverse=higher_is_better)
    out = {}
    for k, v in shown.items():
        r = distinct.index(v) + 1
        if r <= top:
            out[k] = r
    return out
