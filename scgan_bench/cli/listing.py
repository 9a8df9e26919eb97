"""``list``: what exists (datasets, methods, metrics, degradations, SCGAN variants, trainable
models) and whether it is available here, with the reason when not."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from ..errors import UsageError
from .options import add_recipe_options, crossings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Arguments of the list command."""
    ls = sub.add_parser("list", help="what exists, and whether it is available here")
    ls.add_argument("what", choices=("datasets", "methods", "metrics", "degradations", "variants", "trainable",
                                     "protocols"),
                    help="what to list, each with whether it is available here and why not")
    add_recipe_options(ls, "variants: which of them train the same SR network under this recipe")
    ls.add_argument("--check", action="store_true",
                    help="methods: also load each available method's files (strict key and size checks), as a "
                         "run would; without it, available means present and verified, not yet loaded")


def _availability_text(a, weights: tuple[str, ...], load: Any = None) -> str:
    """``available`` / ``unavailable: why``; an available plug-in whose weight files are not the official
    release says so (its numbers are not comparable with published ones). With ``load`` (a callable
    that builds the method) a file that fails to load is unavailable with the loader's reason; without
    it, a plug-in with weight files says they are present and verified but not yet loaded."""
    if not a.ok:
        return f"unavailable: {a.reason}"
    if load is not None:
        try:
            load()
        except Exception as exc:  # noqa: BLE001 (a file that does not load: the method's state, not a crash)
            return f"unavailable: its files do not load: {type(exc).__name__}: {exc}"
    from ..assets.weights import unofficial_in_place

    if weights and load is None:
        state = "available (files present and verified; loaded by a run, or now with `list methods --check`)"
    else:
        state = "available" + (" (loaded)" if load is not None and weights else "")
    odd = unofficial_in_place(weights)
    if odd:
        return (state.replace("available", "available with NON-OFFICIAL weights", 1)
                + " (not comparable with published numbers): " + "; ".join(f"{k}: {v}" for k, v in odd.items()))
    return state


def cmd_list(args: argparse.Namespace) -> int:
    from ..registries import DATASETS, METHODS, METRICS, load_plugins

    load_plugins()
    rows: list[tuple[str, str, str]] = []
    if args.what == "datasets":
        import scgan_bench.datasets as dpkg

        cards = Path(dpkg.__file__).resolve().parent
        for name, spec in DATASETS.items():
            if not spec.needs_root:
                status = "available (built in)"
            else:
                try:
                    status = f"available at {spec.create().locate(None)}"
                except UsageError:
                    status = (f"unavailable: root not found; pass --root {name}=DIR or set "
                              f"$SCGAN_BENCH_ROOT_{name.upper().replace('-', '_')}")
            rows.append((name, f"{spec.kind}: {spec.summary} [card: {cards / spec.card}]", status))
    elif args.what == "methods":
        import scgan_bench.baselines as bpkg

        cards = Path(bpkg.__file__).resolve().parent
        aliases: dict[str, list[str]] = {}
        for alias, target in METHODS.aliases().items():
            aliases.setdefault(target, []).append(alias)
        from ..scgan.variants import VARIANTS

        untrained = [n for n in VARIANTS if n in METHODS and not METHODS.get(n).availability().ok]
        for name, spec in METHODS.items():
            if name in untrained:
                continue
            a = spec.availability()
            desc = spec.summary + (f" (also: {', '.join(aliases[name])})" if name in aliases else "")
            if spec.license:
                desc += f"\nlicence: {spec.license}"
            if spec.options:
                desc += "\noptions: " + "; ".join(f"{k}={v!r}" for k, v, _ in spec.options)
            if spec.card:
                desc += f"\ncard: {cards / spec.card}"
            rows.append((name, desc, _availability_text(a, spec.weights,
                                                         spec.create if getattr(args, "check", False) else None)))
        if untrained:  # one line for the SCGAN variants without a checkpoint, not 26 alike
            rows.append((f"scgan variants ({len(untrained)})", ", ".join(untrained) + "\nHou et al., arXiv 2205.03777: R_LS "
                         "of a trained checkpoint (Tables 1-5); `scgan-bench list variants` describes each",
                         "unavailable: no checkpoint: train one (`scgan-bench train --variant NAME ...`) and set "
                         "$SCGAN_BENCH_CKPT_<NAME> to the run folder, or copy its rls.safetensors (+ .sha256) to "
                         "$SCGAN_BENCH_WEIGHTS/NAME.safetensors"))
        for name, why in bpkg.PLANNED.items():
            rows.append((name, f"a method of the paper's Tables 5-7: {why}", "not implemented yet"))
        from ..registries import PLUGIN_ERRORS

        for name, why in PLUGIN_ERRORS.items():
            rows.append((f"plugin:{name}", why, "failed to load"))
    elif args.what == "metrics":
        from ..metrics.presets import PRESETS

        for name, (what, members) in PRESETS.items():
            todo = [m for m in members if m not in METRICS]
            rows.append((f"preset:{name}", f"{what}: {', '.join(members)}"
                         + (f"\nnot implemented yet: {', '.join(todo)}" if todo else ""), "preset"))
        for name, spec in METRICS.items():
            a = spec.availability()
            desc = f"{spec.arrow} {spec.summary} (v{spec.version}{', needs HR' if spec.needs_hr else ''})"
            if spec.backend:
                desc += f"\nbackend: {spec.backend}"
            if spec.caveat:
                desc += f"\ncaveat: {spec.caveat}"
            from ..assets.weights import ASSETS

            licences = dict.fromkeys(ASSETS.get(w).license for w in getattr(spec.availability, "weights", ())
                                     if w in ASSETS)
            if licences:
                desc += f"\nlicence of its model files: {'; '.join(licences)}"
            rows.append((name, desc, _availability_text(a, getattr(spec.availability, "weights", ()))))
    elif args.what == "variants":
        from ..scgan.dataflow import equivalence_classes
        from ..scgan.model import get_recipe
        from ..scgan.variants import VARIANTS

        recipe = get_recipe(args.recipe, crossings(args))
        groups = equivalence_classes(recipe)
        group_of = {n: g for g in groups for n in g}
        for name, v in VARIANTS.items():
            desc = f"{v.paper_name}: {v.description}"
            if name in group_of:
                desc += f"\n  same SR network as: {', '.join(n for n in group_of[name] if n != name)}"
            rows.append((name, desc, f"Table {v.table}" if v.table else "full model"))
        notes = [f"{len(groups)} group{'s' if len(groups) != 1 else ''} of variants train the same SR network under "
                 f"recipe {recipe.name} ({recipe.note or 'custom crossings'}); from the same seed their R_LS is "
                 "identical (bit for bit at one thread count on one machine), so their table rows can only differ by "
                 "training seed:"]
        notes += [f"  {' = '.join(g)}" for g in groups]
    elif args.what == "trainable":
        from ..training.models import TRAINABLE

        for name, spec in TRAINABLE.items():
            d = spec.defaults
            desc = (f"{spec.summary}\nvariants: {', '.join(spec.variants()) if name != 'scgan' else 'scgan and its 25 '}"
                    f"{'ablations (list variants)' if name == 'scgan' else ''}"
                    f"\nSR methods: {', '.join(dict.fromkeys(spec.sr_method(v) for v in spec.variants())) if name != 'scgan' else 'the variant names'}"
                    f"\nrecipe: {d['epochs']} epochs, batch {d['batch_size']}, Adam {d['learning_rate']:g} "
                    f"betas {tuple(d['betas'])}; source: {spec.source}"
                    f"\noptions (--opt): {spec.option_help()}")
            rows.append((name, desc, f"train --method {name}"))
    elif args.what == "protocols":
        from ..protocols import get_protocol, protocol_names

        for name in protocol_names():
            pr = get_protocol(name)
            rows.append((name, f"{pr.summary}; synthetic LR: "
                         + (f"degradation {pr.degradation}" if pr.degradation else "each dataset's own degradation"),
                         f"run --protocol {name}"))
    else:
        from ..io.degradations import DEGRADATIONS, make_degradation

        for name in DEGRADATIONS:
            rows.append((name, str(make_degradation(name).config()), "available"))
    width = max(len(r[0]) for r in rows)
    for name, desc, status in rows:
        desc = desc.replace("\n", "\n" + " " * (width + 2))
        print(f"{name:<{width}}  {status}\n{'':<{width}}  {desc}")
    if args.what == "variants":
        print("\n".join([""] + notes))
    return 0


COMMANDS: dict[str, Callable[..., int]] = {"list": cmd_list}
