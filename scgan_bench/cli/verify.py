"""``verify-method``: run a method with its real weights on a published test set and check it against the numbers
its paper printed (:mod:`scgan_bench.reports.verify`)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from .options import pairs, parse_method_options


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Arguments of the verify-method command."""
    v = sub.add_parser("verify-method", help="check an adapter with real weights against its paper's published "
                                             "numbers (bfr-512 protocol), metric by metric")
    v.add_argument("method", help="a registered method (e.g. codeformer, gfpgan-v1)")
    v.add_argument("--dataset", required=True, help="a published test set (celeba-test, lfw-test, wider-test, ...)")
    v.add_argument("--root", action="append", default=[], metavar="NAME=DIR", help="where the test set lies")
    v.add_argument("--out", type=Path, default=None, help="run folder (default results/verify-METHOD-DATASET)")
    v.add_argument("--method-opt", action="append", default=[], metavar="NAME:KEY=VALUE",
                   help="a method option, e.g. NAME:weights=PATH")
    v.add_argument("--protocol", default="bfr-512", help="bfr-512 (default; the published one); a reduced bfr-N "
                                                         "runs but compares nothing (stated)")
    v.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    v.add_argument("--batch-size", type=int, default=8, help="images per network call (default 8)")
    v.add_argument("--workers", type=int, default=1, help="processes for decoding (one core each)")
    v.add_argument("--limit", type=int, default=None, help="only the first N images (then nothing is compared: a "
                                                           "partial set is no reference; stated)")
    v.add_argument("--offline", action="store_true", help="never download weights")
    v.add_argument("--quiet", action="store_true", help="no progress bars")


def cmd_verify_method(args: argparse.Namespace) -> int:
    """Exit 0 when every checked number is reproduced, 1 otherwise; 2 when nothing can be checked."""
    from ..io.image_io import atomic_write_text
    from ..reports.verify import published_for, render, verify_method

    _, skipped = published_for(args.method, args.dataset)   # refuses before anything runs
    out = args.out or Path("results") / f"verify-{args.method}-{args.dataset}"
    v = verify_method(args.method, args.dataset, out, protocol=args.protocol, device=args.device,
                      batch_size=args.batch_size, workers=args.workers, limit=args.limit,
                      roots={k: Path(p) for k, p in pairs(args.root, "--root").items()},
                      method_options=parse_method_options(args.method_opt), progress=not args.quiet,
                      offline=True if args.offline else None)
    text = render(v, skipped)
    atomic_write_text(out / f"verify-{v.method}-{v.dataset}.md", text)
    print(text)
    return 0 if v.ok else 1


COMMANDS: dict[str, Callable[..., int]] = {"verify-method": cmd_verify_method}
