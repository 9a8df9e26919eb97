"""What a finished run folder gives: ``export-lr`` (its LR inputs), ``table`` (the paper's tables),
``report`` (HTML) and ``figures``; none recomputes a number."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from .options import pairs


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Arguments of the export-lr, table, report, figures commands."""
    ex = sub.add_parser("export-lr", help="write the exact LR inputs a run used (by image id), to run your own "
                                          "method on; score its outputs with --methods dir:NAME=DIR")
    ex.add_argument("run", type=Path, help="a `scgan-bench run` output folder")
    ex.add_argument("--dataset", required=True, help="a dataset the run prepared (its LR inputs are written)")
    ex.add_argument("--out", type=Path, required=True, help="folder for <id>.png and ids.tsv")
    tb = sub.add_parser("table", help="render the paper's Table N, or a blind-face-restoration table, from a run "
                                      "(no recomputation)")
    tb.add_argument("number", help="1-7 (the SCGAN paper's), or bfr-synthetic, bfr-real, bfr-ntire (a --protocol "
                                   "bfr-512 run: the tables of 2022-2026 face-restoration papers and NTIRE)")
    tb.add_argument("run", type=Path, nargs="?", default=None,
                    help="run folder; omitted with --paper: the paper's own values")
    tb.add_argument("--out", type=Path, default=None, help="folder for tableN.{csv,md,tex} (default: the run)")
    tb.add_argument("--paper", action="store_true", help="render the paper's published values (bfr-*: list every "
                                                         "published number on record, with its source)")
    tb.add_argument("--compare-paper", action="store_true", help="also write tableN_vs_paper with deltas (bfr-*: the "
                                                                 "numbers GFPGAN, CodeFormer, VQFR, DifFace ... published)")
    tb.add_argument("--dataset-map", action="append", default=[], metavar="TABLE_DATASET=RUN_DATASET",
                    help="read a table dataset from another run dataset (stated under the table)")
    tb.add_argument("--metric-map", action="append", default=[], metavar="TABLE_METRIC=RUN_METRIC",
                    help="read a table metric from another backend, e.g. fid=fid-dlib (stated under the table)")
    tb.add_argument("--extra-methods", default="", metavar="A,B",
                    help="run methods to add beside the paper's (your method, a baseline the paper lacks); 'auto': "
                         "every method of the run that fills none of the table's columns (PMRF, CodeFormer, ...)")
    tb.add_argument("--method-map", action="append", default=[], metavar="TABLE_METHOD=RUN_METHOD",
                    help="fill a table column from another run method, e.g. gfpgan=gfpgan-v1 (default: gfpgan -> "
                         "gfpgan-v1.3, real-esrgan -> realesrgan; stated under the table)")
    rp = sub.add_parser("report", help="self-contained HTML report of a run")
    rp.add_argument("run", type=Path, help="a `scgan-bench run` output folder (holds run.json)")
    rp.add_argument("--out", type=Path, default=None, help="default RUN/report.html")
    rp.add_argument("--train-run", type=Path, default=None, help="a training run whose curves to include")
    rp.add_argument("--images", type=int, default=40, help="images per dataset in the browser")
    rp.add_argument("--no-tsne", action="store_true",
                    help="skip the t-SNE figures (ResNet-101 features of every image; the slowest figure)")
    fg = sub.add_parser("figures", help="every figure of a run as PNG and PDF under RUN/figures")
    fg.add_argument("run", type=Path, help="a `scgan-bench run` output folder")
    fg.add_argument("--out", type=Path, default=None, help="default RUN/figures")
    fg.add_argument("--train-run", type=Path, default=None, help="a training run whose curves to draw")
    fg.add_argument("--datasets", default=None, metavar="A,B", help="default: every dataset of the run")
    fg.add_argument("--no-tsne", action="store_true", help="skip the t-SNE (it extracts backbone features)")


def cmd_export_lr(args: argparse.Namespace) -> int:
    from ..run.export import export_lr, rerun_command

    n = export_lr(args.run, args.dataset, args.out)
    print(f"wrote {n} LR inputs of {args.dataset} to {args.out} (<id>.png, ids.tsv); put your x4 outputs as "
          f"<id>.png in a folder and score them (the run's root, degradation, seed, limit and metrics):\n  "
          f"{rerun_command(args.run, args.dataset, 'dir:NAME=FOLDER,bicubic')}")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from ..tables.render import write_table

    if args.run is None and not args.paper:
        raise UsageError("give a run folder, or --paper for the paper's own values")
    out = args.out or (args.run if args.run is not None else Path("."))
    if args.number.startswith("bfr"):
        return _bfr_table(args, out)
    for p in write_table(args.number, None if args.paper else args.run, out, compare_paper=args.compare_paper,
                         datasets=pairs(args.dataset_map, "--dataset-map"),
                         metrics=pairs(args.metric_map, "--metric-map"),
                         methods=pairs(args.method_map, "--method-map"),
                         extra_methods=[m.strip() for m in args.extra_methods.split(",") if m.strip()]):
        print(p)
    md = out / f"table{int(args.number)}.md"
    if md.exists():
        print(md.read_text())
    return 0


def _bfr_table(args: argparse.Namespace, out: Path) -> int:
    """``table bfr-*``: the blind-face-restoration tables (no --*-map, no --extra-methods: every run method and
    dataset of the table's kind is shown under its own name)."""
    from ..tables.bfr import NAMES, published_listing, write_bfr_table

    if args.number not in NAMES:
        raise UsageError(f"unknown table {args.number!r}: 1-7, or {', '.join(NAMES)}")
    given = [flag for flag, v in (("--dataset-map", args.dataset_map), ("--metric-map", args.metric_map),
                                  ("--method-map", args.method_map), ("--extra-methods", args.extra_methods)) if v]
    if given:
        raise UsageError(f"{', '.join(given)}: for Tables 1-7 only; {args.number} shows every method and dataset of "
                         "the run under its own name")
    if args.paper:
        print(published_listing())
        return 0
    for p in write_bfr_table(args.number, args.run, out, compare_paper=args.compare_paper):
        print(p)
        if p.suffix == ".md":
            print(p.read_text())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..reports.report import build_report

    if not (args.run / "run.json").exists():
        raise UsageError(f"{args.run} is not a scgan-bench run folder (no run.json)")
    if args.images < 1:
        raise UsageError(f"--images {args.images}: must be at least 1")
    build_report(args.run, args.out, train_run=args.train_run, per_dataset=args.images, say=print,
                 tsne=not args.no_tsne)
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from ..reports.figures import write_figures

    if not (args.run / "run.json").exists():
        raise UsageError(f"{args.run} is not a scgan-bench run folder (no run.json)")
    names = [d for d in args.datasets.split(",") if d] if args.datasets else None
    known = sorted(p.name for p in (args.run / "data").iterdir() if p.is_dir()) if (args.run / "data").is_dir() else []
    for d in names or []:
        if d not in known:
            raise UsageError(f"--datasets {d}: the run has no dataset {d!r} (it has: {', '.join(known) or 'none'})")
    made = write_figures(args.run, args.out, train_run=args.train_run, datasets=names, tsne=not args.no_tsne)
    for fig in made:
        print(f"{fig['title']}: {fig['png']} (+ .pdf)" + (f"; {fig['note']}" if fig["note"] else ""))
    if not made:
        print(f"no figures: {args.run} holds no prepared images")
    return 0


COMMANDS: dict[str, Callable[..., int]] = {"export-lr": cmd_export_lr, "table": cmd_table, "report": cmd_report, "figures": cmd_figures}
