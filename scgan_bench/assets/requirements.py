"""Availability checks shared by plug-ins: a missing package or weight file becomes a reason the
user can act on, shown by `scgan-bench list` and in every table cell it affects."""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache

from ..interfaces import Availability


@dataclass(frozen=True)
class Requirements:
    """What a plug-in needs: Python modules (with an install hint) and weight assets. Calling it
    checks availability; :meth:`fingerprint` names the exact weights (sha256) and package versions in
    use, so that cached results follow them."""

    modules: tuple[tuple[str, str], ...] = ()
    weights: tuple[str, ...] = ()

    def __call__(self) -> Availability:
        for mod, hint in self.modules:
            if importlib.util.find_spec(mod) is None:
                return Availability(False, f"Python package '{mod}' is not installed ({hint})")
        from .weights import ASSETS, status

        missing: list[str] = []
        hows: dict[str, None] = {}  # each source and destination once, in order
        for name in self.weights:
            st = status(name)
            if st.state == "mismatch":  # the check that failed (sha256, git blob id) and how to pin the file
                return Availability(False, f"weights '{name}' at {st.path}: {st.detail}")
            if st.state == "missing":
                a = ASSETS.get(name)
                missing.append(f"'{name}' ({a.filename})")
                # one source (a release URL, or a shared folder whose note names each file) per destination
                how = f"download {a.url}" if a.url.startswith("http") else a.url
                if a.url.startswith("http") and a.url.rsplit("/", 1)[-1] != a.filename:
                    how += f" as {a.filename}"     # the release names it otherwise (Hugging Face's model.safetensors)
                if len(self.weights) > 1 and not a.url.startswith("http"):
                    how = how.split(": ")[0]
                hows.setdefault(f"{how} into {a.download_target().parent}")
        if not missing:
            return Availability.yes()
        what = f"weights {missing[0]} missing" if len(missing) == 1 else \
            f"{len(missing)} weight files missing: {', '.join(missing)}"
        return Availability(False, f"{what}: {'; '.join(hows)} or set $SCGAN_BENCH_WEIGHTS "
                                   "(see `scgan-bench weights list`)")

    def fingerprint(self) -> dict[str, dict[str, str]]:
        """``{"weights": {asset: sha256}, "packages": {module: version}}`` of what is installed here."""
        from .weights import resolve

        return {"weights": {w: resolve(w, allow_download=False).sha256 for w in self.weights},
                "packages": {m: module_version(m) for m, _ in self.modules}}


@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    from importlib import metadata

    return metadata.packages_distributions()


def module_version(module: str) -> str:
    """Version of the distribution that provides ``module`` (``?`` when it cannot be told)."""
    from importlib import metadata

    dists = _distributions().get(module.split(".")[0], [])
    versions = sorted({metadata.version(d) for d in dists})
    if versions:
        return ",".join(versions)
    mod = importlib.import_module(module)
    return str(getattr(mod, "__version__", "?"))


def needs(*, modules: tuple[tuple[str, str], ...] = (), weights: tuple[str, ...] = ()) -> Requirements:
    """An availability check: each ``(module, install hint)`` must import, each weight asset must be
    present and verify (see :mod:`scgan_bench.assets.weights`)."""
    return Requirements(tuple(modules), tuple(weights))
