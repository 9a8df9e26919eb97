"""What a run reads: ``weights`` (status, verification, paths, downloads, pins) and ``prepare``
(a dataset's manifest and the sha256 of its files)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from ..errors import UsageError
from .options import parse_dataset_options


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Arguments of the weights, prepare commands."""
    w = sub.add_parser("weights", help="every pretrained file: status, verification, paths, downloads")
    w.add_argument("action", choices=("list", "verify", "path", "fetch", "unpin"),
                   help="list: status and source of each file; verify: check sha256 (exit 1 on a mismatch); "
                        "path: where each resolves; fetch: download what is missing (unless offline); "
                        "unpin NAME: forget a first-use pin (the next file that loads is pinned)")
    w.add_argument("names", nargs="*", help="asset names (default: all); see `weights list`")
    w.add_argument("--offline", action="store_true", help="never download (also $SCGAN_BENCH_OFFLINE=1)")
    pr = sub.add_parser("prepare", help="build a dataset's manifest and record its files' sha256")
    pr.add_argument("dataset", help="a dataset name (`scgan-bench list datasets`)")
    pr.add_argument("--root", type=Path, default=None, help="dataset folder")
    pr.add_argument("--dataset-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="a dataset option (e.g. split=test; `list datasets` and the card name them)")
    pr.add_argument("--workers", type=int, default=1, help="processes for decoding (one core each)")
    pr.add_argument("--accept-data-changes", action="store_true",
                    help="re-record source files whose sha256 changed since first preparation")


def cmd_weights(args: argparse.Namespace) -> int:
    from ..assets import weights as W
    from ..registries import load_plugins

    from ..settings import current, using

    load_plugins()  # plug-ins register their assets (the baselines' weight files)
    with using(current().overridden(offline=True if args.offline else None)):
        return _weights(args, W)


def _weights(args: argparse.Namespace, W: Any) -> int:
    names = args.names or list(W.ASSETS)
    for n in names:
        W.ASSETS.get(n)
    if args.action == "unpin":
        if not args.names:
            raise UsageError("weights unpin: name the assets whose first-use pin to forget (see `weights list`)")
        gone = W.unpin(names)
        for n in names:
            print(f"{n}: {'pin forgotten; the next file that loads is pinned' if n in gone else 'had no pin'}")
        return 0
    if args.action == "list":
        for n in names:
            a, st = W.ASSETS.get(n), W.status(n)
            kind, want = W.expected_hash(a)
            if kind == "first-use" and a.git_blob:
                kind, want = "git blob (published), then sha256 on first use", a.git_blob
            odd = "" if st.official else " — NOT the official file (not comparable with published numbers)"
            print(f"{n}: {st.state}{f' at {st.path}' if st.path else ''}{odd}\n"
                  f"  file {a.filename}; check: {kind} {want[:16]}{'...' if len(want) > 16 else ''}\n"
                  f"  url {a.url}\n  used by {a.used_by}; licence {a.license}"
                  + (f"\n  note: {a.source_note}" if a.source_note else "")
                  + (f"\n  {st.detail}" if st.state == "mismatch" or not st.official else ""))
        return 0
    if args.action == "path":
        for n in names:
            print(W.resolve(n, allow_download=False).path)
        return 0
    if args.action == "fetch":
        for n in names:
            r = W.resolve(n)
            print(f"{n}: {r.path} ({r.check}, {r.origin})")
        return 0
    bad = 0
    for n in names:
        st = W.status(n)
        print(f"{n}: {st.state} {st.detail}")
        bad += st.state == "mismatch" or (st.state == "missing" and bool(args.names))
    return 1 if bad else 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Build the manifest, record every source's sha256 and decode every image once (to report bad
    files now); the decoded images go to a temporary folder (a run makes its own)."""
    import tempfile

    from ..io.manifest import data_home
    from ..run.prepare import prepare_dataset

    opts = parse_dataset_options([f"{args.dataset}:{o}" for o in args.dataset_opt])
    with tempfile.TemporaryDirectory(prefix="scgan-bench-prepare-") as tmp:
        res = prepare_dataset(args.dataset, out=Path(tmp), seed=0, root=args.root,
                              options=opts.get(args.dataset), workers=args.workers,
                              accept_data_changes=args.accept_data_changes, progress=True)
    print(f"{args.dataset}: {len(res.manifest)} items in the manifest, {len(res.records)} decoded, "
          f"{len(res.failures)} failed; sha256 of every source recorded under {data_home() / 'locks'}")
    for f in res.failures[:20]:
        print(f"  {f.image_id} ({f.source}): {f.reason}")
    return 0


COMMANDS: dict[str, Callable[..., int]] = {"weights": cmd_weights, "prepare": cmd_prepare}
