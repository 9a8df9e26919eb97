"""``scgan-bench`` command line: one module per command group (``evaluate``: run, demo; ``listing``: list;
``train``; ``outputs``: export-lr, table, report, figures; ``reproduce``; ``inputs``: weights, prepare;
``verify``: verify-method), each
giving its arguments (``add_parsers``) and handlers (``COMMANDS``). User errors exit with code 2 and say
what is allowed."""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import sys
import threading
from typing import Any, Iterator, Sequence

from ..errors import Interrupted, TrainingDiverged, UsageError, describe_os_error
from . import evaluate, inputs, listing, outputs, reproduce, train, verify
from .evaluate import demo_tables
from .options import parse_dataset_options, parse_method_options

__all__ = ["main", "build_parser", "demo_tables", "parse_dataset_options", "parse_method_options"]

EXIT_USAGE = 2
#: the command groups, in the order `scgan-bench --help` lists their commands
GROUPS = (evaluate, listing, train, outputs, reproduce, inputs, verify)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scgan-bench", description=(
        "Benchmark real-world face super-resolution on the SCGAN protocol (16 px -> 64 px)."))
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import a module that registers methods, metrics or datasets (repeatable); installed "
                        "packages register through the 'scgan_bench.plugins' entry-point group")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_parsers(sub)
    return p


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def _stop_signals_as_interrupts() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Interrupted` while a command runs (main thread only; handlers a
    host program installed are kept), so that run.json and job states say ``interrupted``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            saved[sig] = signal.signal(sig, _raise_interrupted)
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def main(argv: Sequence[str] | None = None) -> int:
    with _stop_signals_as_interrupts():
        return _main(argv)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {name: run for group in GROUPS for name, run in group.COMMANDS.items()}
    # a plan's job runs its command line in this process, through this entry
    handlers["reproduce"] = functools.partial(reproduce.cmd_reproduce, main=main)
    try:
        if args.plugin:
            from ..registries import import_plugin

            for module in args.plugin:
                import_plugin(module)
        return handlers[args.command](args)
    except UsageError as exc:
        print(f"scgan-bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingDiverged as exc:
        print(f"scgan-bench: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `scgan-bench list methods | head`: the reader left, nothing is wrong
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (the interpreter flushes stdout at exit)
        return 0
    except OSError as exc:  # the environment, not the input: full or read-only disk, permissions
        print(f"scgan-bench: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        why = f" ({exc})" if isinstance(exc, Interrupted) else ""
        print(f"scgan-bench: interrupted{why}; rerun the same command to resume", file=sys.stderr)
        return 128 + exc.signum if isinstance(exc, Interrupted) else 130
