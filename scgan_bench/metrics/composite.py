"""Scores combined from other metrics' set values (``kind="composite"``), e.g. NTIRE's weighted score.

A composite names its parts; asking for it adds the parts to the run (each is reported alone too), and its
cell is computed from the parts' cells of the same dataset and method. It is unavailable, naming the part
and why, while any part is unregistered or unavailable; it fails, naming the part, when a part's cell did.

``ntire-rwfr-score``: the NTIRE 2025 Real-World Face Restoration ranking score,
CLIP-IQA + MANIQA + MUSIQ / 100 + Q-Align / 5 + max(0, (10 - NIQE) / 10) + max(0, (100 - FID) / 100),
FID against FFHQ (``fid-ffhq512``). The report typesets the last two terms as ``max(0, 10 - NIQE / 10)``
and ``max(0, 100 - FID / 100)``; read literally they would be about 10 and 100 against at most 1 for each
other term, so the normalised reading (every term on a 0-1 scale) is used. Q-Align is the built-in
``q-align`` (OneAlign's mPLUG-Owl2, :mod:`scgan_bench.metrics.qalign`; a GPU metric at full size).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..interfaces import Availability, MetricSpec
from ..registries import METRICS


@dataclass(frozen=True)
class PartsAvailable:
    """A composite's availability: each part registered and available; fingerprint = the parts'."""

    parts: tuple[str, ...]

    def __call__(self) -> Availability:
        from ..registries import load_plugins

        load_plugins()
        why = [f"{p!r}, which neither the suite nor an installed plug-in registers (README: 'Evaluate your own "
               f"method', Plugins)"
               for p in self.parts if p not in METRICS]
        for p in self.parts:
            a = METRICS.get(p).availability() if p in METRICS else Availability.yes()
            if not a.ok:
                why.append(f"{p} ({a.reason})")
        return Availability(False, "needs metric " + "; ".join(why)) if why else Availability.yes()

    @property
    def weights(self) -> tuple[str, ...]:
        ws = (w for p in self.parts if p in METRICS for w in getattr(METRICS.get(p).availability, "weights", ()))
        return tuple(dict.fromkeys(ws))

    def fingerprint(self) -> dict[str, dict[str, Any]]:
        return {"weights": {}, "packages": {},
                "parts": {p: METRICS.get(p).fingerprint() for p in self.parts if p in METRICS}}


def combine_cells(spec: MetricSpec, values: Mapping[str, float]) -> float:
    """The composite of the parts' set values (``values[part]`` = that part's mean or set value)."""
    assert spec.combine is not None
    return float(spec.combine({p: float(values[p]) for p in spec.parts}))


def with_parts(names: list[str], get: Callable[[str], MetricSpec]) -> list[str]:
    """``names`` with each composite's registered parts put before it (order kept, repeats dropped)."""
    out: list[str] = []
    for n in names:
        spec = get(n)
        if spec.kind == "composite":
            out += [p for p in spec.parts if p in METRICS]
        out.append(n)
    return list(dict.fromkeys(out))


NTIRE_PARTS = ("clip-iqa", "maniqa", "musiq", "q-align", "niqe", "fid-ffhq512")


def ntire_rwfr_score(v: Mapping[str, float]) -> float:
    """NTIRE 2025 RWFR's weighted score of the parts' set means (see the module docstring)."""
    return (v["clip-iqa"] + v["maniqa"] + v["musiq"] / 100 + v["q-align"] / 5
            + max(0.0, (10 - v["niqe"]) / 10) + max(0.0, (100 - v["fid-ffhq512"]) / 100))


def _no_factory(device: str = "cpu") -> Any:
    raise TypeError("a composite metric has no scorer: it is computed from its parts' cells")


METRICS.register("ntire-rwfr-score", MetricSpec(
    name="ntire-rwfr-score", factory=_no_factory, higher_is_better=True, version="1",
    summary="NTIRE 2025 real-world face restoration score: CLIP-IQA + MANIQA + MUSIQ/100 + Q-Align/5 + "
            "max(0, (10-NIQE)/10) + max(0, (100-FID to FFHQ)/100)",
    needs_hr=False, kind="composite", parts=NTIRE_PARTS, combine=ntire_rwfr_score, backend="composite",
    convention="the report's NIQE and FID terms read as normalised to 0-1; parts averaged over the set first",
    availability=PartsAvailable(NTIRE_PARTS)))
