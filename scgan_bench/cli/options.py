"""What the commands share: ``NAME=VALUE`` pairs, typed ``NAME:KEY=VALUE`` options checked against a
dataset's or method's own, and the SCGAN recipe's options."""
from __future__ import annotations

import argparse
import difflib
from typing import Any, Callable, Sequence

from ..errors import UsageError


def pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, sep, val = v.partition("=")
        if not sep or not name or not val:
            raise UsageError(f"{flag} expects NAME=VALUE, got {v!r}")
        out[name.strip()] = val.strip()
    return out


def convert(default: Any, raw: str, what: str) -> Any:
    if isinstance(default, bool):
        low = raw.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"{what}: expected true or false, got {raw!r}")
    for typ in (int, float):
        if isinstance(default, typ):
            try:
                return typ(raw)
            except ValueError:
                raise UsageError(f"{what}: expected {typ.__name__}, got {raw!r}") from None
    return raw


def _parse_options(values: Sequence[str], flag: str, kind: str,
                   lookup: Callable[[str], tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """``NAME:KEY=VALUE`` -> ``{NAME: {KEY: typed value}}``; ``lookup(name)`` gives the canonical name
    and the option defaults (their types convert the values)."""
    out: dict[str, dict[str, Any]] = {}
    for v in values:
        name, sep, rest = v.partition(":")
        key, sep2, raw = rest.partition("=")
        if not sep or not sep2 or not key:
            raise UsageError(f"{flag} expects NAME:KEY=VALUE, got {v!r}")
        name, defaults = lookup(name)
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=2)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise UsageError(f"{kind} {name!r} has no option {key!r}.{hint} "
                             f"Options: {', '.join(sorted(defaults)) or 'none'}.")
        out.setdefault(name, {})[key] = convert(defaults[key], raw, f"{name}:{key}")
    return out


def parse_dataset_options(values: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``NAME:KEY=VALUE`` -> ``{NAME: {KEY: typed value}}``, checked against the dataset's options."""
    from ..registries import DATASETS, load_plugins

    load_plugins()
    return _parse_options(values, "--dataset-opt", "dataset",
                          lambda n: (n, dict(DATASETS.get(n).create().options())))


def parse_method_options(values: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The same for methods (``scgan-bench list methods`` shows their options, e.g. ``codeformer:w=0.7``);
    aliases resolve to their method."""
    from ..registries import METHODS, load_plugins

    load_plugins()
    return _parse_options(values, "--method-opt", "method",
                          lambda n: (METHODS.get(n).name, METHODS.get(n).defaults()))


def add_recipe_options(p: argparse.ArgumentParser, recipe_help: str) -> None:
    from ..scgan.dataflow import CROSSINGS

    p.add_argument("--recipe", default="official", help=recipe_help)
    p.add_argument("--cross", action="append", default=[], metavar="CROSSING=WEIGHT",
                   help=f"override a crossing weight of the recipe (0 = detached): {', '.join(CROSSINGS)}")


def crossings(args: argparse.Namespace) -> dict[str, float]:
    return {k: convert(0.0, v, f"--cross {k}") for k, v in pairs(args.cross, "--cross").items()}
