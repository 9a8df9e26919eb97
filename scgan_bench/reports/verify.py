"""Self-check of a method adapter: run it with its real weights on a published test set under the ``bfr-512``
protocol and say, metric by metric, whether it reproduces the numbers its paper printed
(``scgan-bench verify-method NAME --dataset celeba-test``): the way to trust an adapter once its weights are
downloaded.

Only published numbers that can be a reference are checked (:func:`scgan_bench.tables.published.not_comparable`:
the released file list); the others are listed with the reason, and a method with none is refused before
anything runs. The verdict of each number is ``reproduced`` (within the stated tolerance), ``differs``,
``no Δ`` (the run's value is no full-set, official-weights, 512 px number: the reason) or ``not in run``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError


@dataclass
class Verification:
    method: str
    dataset: str
    out: Path
    checks: list  # scgan_bench.tables.published.Check

    @property
    def ok(self) -> bool:
        """Every checked number reproduced."""
        return bool(self.checks) and all(c.verdict == "reproduced" for c in self.checks)


def published_for(method: str, dataset: str) -> tuple[list, list[str]]:
    """The comparable published numbers of ``method`` on ``dataset``, and a line for each one that is not."""
    from ..registries import METHODS, load_plugins
    from ..tables.published import not_comparable, published

    load_plugins()
    name = METHODS.canonical(method)
    rows = [p for p in published() if METHODS.canonical(p.method) == name and p.dataset == dataset]
    usable = [p for p in rows if not_comparable(p) is None]
    skipped = [f"{p.metric} {p.value:g} ({p.source}): {not_comparable(p)}" for p in rows if p not in usable]
    if not usable:
        on_record = sorted({f"{p.dataset}" for p in published() if METHODS.canonical(p.method) == name})
        raise UsageError(
            f"verify-method {method} --dataset {dataset}: no published number to check it against"
            + (": " + "; ".join(skipped) if skipped else "")
            + (f" (published numbers of {name} on record for: {', '.join(on_record)})" if on_record else
               f" ({name} has no published number on record; `scgan-bench table bfr-real --paper` lists them all)"))
    return usable, skipped


def verify_method(method: str, dataset: str, out: Path, *, protocol: str = "bfr-512", **run: Any) -> Verification:
    """Run ``method`` on ``dataset`` with the metrics its published numbers need, then compare."""
    from ..pipeline import RunConfig, run_benchmark
    from ..registries import METHODS
    from ..tables.bfr import comparison, load_run

    usable, _ = published_for(method, dataset)
    name = METHODS.canonical(method)
    if name not in METHODS:
        raise UsageError(f"verify-method {method}: no such method in scgan-bench (`scgan-bench list methods`)")
    avail = METHODS.get(name).check(**run.get("method_options", {}).get(name, {}))
    if not avail.ok:   # nothing to verify without the real weights: said before anything runs
        raise UsageError(f"verify-method {method}: the method is unavailable: {avail.reason}")
    metrics = sorted({p.metric for p in usable})
    run_benchmark(RunConfig(datasets=[dataset], methods=[name], metrics=metrics, out=out, protocol=protocol, **run))
    data = load_run(out)
    checks = [c for c in comparison(data, [dataset]) if c.published in usable]
    return Verification(name, dataset, out, checks)


def render(v: Verification, skipped: list[str]) -> str:
    """The verdicts as Markdown: one line per published number, then what could not be checked."""
    from ..tables.bfr import COMPARISON_NOTE, comparison_rows

    rows = comparison_rows(v.checks)
    lines = [f"**verify-method {v.method} on {v.dataset}** ({v.out})", "", COMPARISON_NOTE, "",
             "| metric | published | run | Δ | tolerance | verdict | why | source |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['metric']} | {r['published']} | {r['run']} | {r['delta']} | {r['tolerance']} | {r['verdict']} | "
              f"{r['why']} | {r['source']} |" for r in rows]
    if skipped:
        lines += ["", "Not checked (no reference for a run of this project):"] + [f"- {s}" for s in skipped]
    n = sum(c.verdict == "reproduced" for c in v.checks)
    lines += ["", f"{n} of {len(v.checks)} published number(s) reproduced within tolerance: "
                  + ("the adapter reproduces its paper." if v.ok else "NOT verified (see each verdict).")]
    return "\n".join(lines) + "\n"
