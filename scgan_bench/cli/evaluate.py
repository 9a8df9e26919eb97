"""``run`` and ``demo``: super-resolve test sets, score them, print the summary."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from ..io.image_io import DEFAULT_MAX_PIXELS
from .options import pairs, parse_dataset_options, parse_method_options


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Arguments of the run, demo commands."""
    r = sub.add_parser("run", help="super-resolve test sets with methods and score them")
    r.add_argument("--datasets", default=None, help="comma-separated dataset names")
    r.add_argument("--table", default=None, help="run what the paper's Table N needs (1-7)")
    r.add_argument("--methods", default="bicubic", help="comma-separated method names or 'all'")
    r.add_argument("--metrics", default="psnr,ssim", help="comma-separated metric names, 'all', or a preset "
                                                          "(preset:scgan, preset:bfr-synthetic, preset:ntire-rwfr)")
    r.add_argument("--out", type=Path, default=Path("results/latest"),
                   help="run folder (also the cache: rerunning recomputes nothing)")
    _add_run_options(r)
    d = sub.add_parser("demo", help="offline end-to-end demo on scikit-image's faces")
    d.add_argument("--out", type=Path, default=Path("results/demo"), help="run folder (default results/demo)")
    d.add_argument("--workers", type=int, default=2,
                   help="processes for decoding and the dlib metrics (one core each; default 2)")
    d.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    d.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_run_options(r: argparse.ArgumentParser) -> None:
    r.add_argument("--root", action="append", default=[], metavar="NAME=DIR",
                   help="where a dataset lives (else $SCGAN_BENCH_ROOT_<NAME> or $SCGAN_BENCH_DATA)")
    r.add_argument("--degradation", action="append", default=[], metavar="NAME=KIND",
                   help="override a synthetic set's degradation (simple, simple-bilinear, "
                        "simple-bicubic, complex)")
    r.add_argument("--dataset-opt", action="append", default=[], metavar="NAME:KEY=VALUE",
                   help="dataset option, e.g. widerface:max_size=48")
    r.add_argument("--method-opt", action="append", default=[], metavar="NAME:KEY=VALUE",
                   help="method option, e.g. codeformer:w=0.7 or gfpgan-v1.3:bridge=official "
                        "(`scgan-bench list methods` shows each method's options)")
    r.add_argument("--protocol", default="scgan-sr",
                   help="scgan-sr (default: the paper's, 16 px in, 64 px out) or bfr-512 (blind face restoration: 512 px "
                        "degraded faces in, 512 px out, synthetic sets degraded as GFPGAN's; x4 models get the 128 px "
                        "downsample); bfr-N for reduced-size runs (README 'Protocols')")
    r.add_argument("--seed", type=int, default=0, help="global degradation seed (default 0)")
    r.add_argument("--workers", type=int, default=1, help="processes for decoding and degrading, and for the dlib metrics (one core each)")
    r.add_argument("--batch-size", type=int, default=32, help="images per SR / metric network call (default 32)")
    r.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    r.add_argument("--limit", type=int, default=None, help="only the first N images of each set")
    r.add_argument("--accept-data-changes", action="store_true",
                   help="re-record source files whose sha256 changed since first preparation")
    r.add_argument("--max-pixels", type=int, default=None,
                   help=f"decompression-bomb guard (default {DEFAULT_MAX_PIXELS:,} pixels)")
    r.add_argument("--reference", action="append", default=[], metavar="NAME=DATASET",
                   help="HR set that FID/KID of a real-world set compare against "
                        "(defaults: widerface=ffhq, webface=ffhq, demo-real=demo)")
    r.add_argument("--offline", action="store_true", help="never download weights")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--follow-links", action="store_true",
                   help="read dataset files that symbolic links point to outside the dataset root (refused by "
                        "default; also $SCGAN_BENCH_FOLLOW_LINKS=1)")
    r.add_argument("--only-this-run", action="store_true",
                   help="also write this invocation's results alone to OUT/this_run/ (summary, results, run.json: "
                        "`table N OUT/this_run` reads them) and print that summary; the folder's own files still keep "
                        "every earlier still-valid result (nothing accumulated is dropped)")
    r.add_argument("--require-comparable", action="store_true",
                   help="exit with status 3 when some number is not comparable with published ones (a partial "
                        "test set: --limit or unreadable images; non-official weight files); the summary says why")
    r.add_argument("--wait", action="store_true",
                   help="if another scgan-bench process is using --out, wait for it instead of stopping")
    r.add_argument("--tf32", action="store_true",
                   help="CUDA: let float32 networks use TF32 (faster; outputs then differ from strict float32 by up "
                        "to hundreds of 8-bit levels for some methods, see README 'Protocol choices (the paper leaves "
                        "these open)', row 'GPU arithmetic'); default strict")


def cmd_run(args: argparse.Namespace) -> int:
    from ..methods.folder import expand_folder_methods
    from ..metrics.presets import expand as expand_presets
    from ..run.pipeline import RunConfig, run_benchmark
    from ..registries import DATASETS, METHODS, METRICS, load_plugins

    load_plugins()
    if args.table is not None:
        from ..tables.render import table_spec

        spec = table_spec(args.table)
        if args.datasets is None:
            args.datasets = ",".join(spec.datasets)
        if args.methods == "bicubic":
            missing = [m for m in spec.methods if m not in METHODS]
            if missing:
                print(f"Table {spec.number}: not implemented yet, footnoted in the table: {', '.join(missing)}")
            args.methods = ",".join(m for m in spec.methods if m in METHODS)
        if args.metrics == "psnr,ssim":
            args.metrics = ",".join(spec.metrics)
    if args.datasets is None:
        raise UsageError("give --datasets (or --table N)")
    if args.max_pixels is not None and args.max_pixels < 1:
        raise UsageError(f"--max-pixels must be a positive number of pixels, got {args.max_pixels}")
    cfg = RunConfig(
        datasets=DATASETS.resolve_list(args.datasets), methods=METHODS.resolve_list(expand_folder_methods(args.methods)),
        metrics=METRICS.resolve_list(expand_presets(args.metrics.split(","), lambda m: m in METRICS,
                                                    lambda s: print(s, file=sys.stderr))),
        out=args.out, seed=args.seed,
        workers=args.workers, batch_size=args.batch_size, device=args.device, limit=args.limit,
        roots={k: Path(v) for k, v in pairs(args.root, "--root").items()},
        degradations=pairs(args.degradation, "--degradation"),
        references=pairs(args.reference, "--reference"),
        dataset_options=parse_dataset_options(args.dataset_opt),
        method_options=parse_method_options(args.method_opt),
        accept_data_changes=args.accept_data_changes, progress=not args.quiet, wait=args.wait,
        only_this_run=args.only_this_run, tf32=args.tf32, max_pixels=args.max_pixels, protocol=args.protocol,
        offline=True if args.offline else None, follow_links=True if args.follow_links else None)
    return _report(run_benchmark(cfg), args.require_comparable)


def _restricted_licences(run: Path) -> list[str]:
    """Methods of a run whose code or weights carry a non-commercial / academic-only licence."""
    import json

    try:
        methods = json.loads((run / "run.json").read_text()).get("methods", {})
    except (OSError, ValueError):
        return []
    flags = ("non-commercial", "academic", "research")
    return [f"{m}: {info['license']}" for m, info in methods.items()
            if any(f in str(info.get("license", "")).lower() for f in flags)]


def _report(res, require_comparable: bool = False) -> int:
    print(res.summary_md)
    for k, why in res.unavailable.items():
        print(f"unavailable {k}: {why}")
    for line in _restricted_licences(res.out):
        print(f"licence (restricted use): {line}")
    if res.failures:
        print(f"{len(res.failures)} image(s) failed; reasons in {res.out / 'failures.csv'}:")
        for f in res.failures[:10]:
            print(f"  [{f.stage}] {f.dataset} {f.method} {f.image_id}: {f.reason}")
    done = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in res.recomputed.items())
    print(f"computed this run: {done}")
    if res.this_run is not None:
        print(f"this invocation only (--only-this-run): {res.this_run / 'summary.md'}, {res.this_run / 'summary.csv'}, "
              f"{res.this_run / 'results.csv'} (`scgan-bench table N {res.this_run}`); the folder's files keep every "
              f"still-valid result: {res.out / 'summary.md'}")
    else:
        print(f"tables: {res.out / 'summary.md'} and {res.out / 'summary.csv'}; "
              f"per-image results: {res.out / 'results.csv'}")
    lines = [line for group in res.caveats.values() for line in group]
    for line in lines:
        print(f"NOT COMPARABLE with published numbers: {line}")
    if lines and require_comparable:
        print("--require-comparable: exit status 3 (some numbers are not comparable with published ones)")
        return 3
    return 0


#: what the demo's tables read instead of the paper's test sets and backends (stated in every label)
DEMO_DATASETS = {"ls3dw": "demo", "ffhq": "demo", "widerface": "demo-real", "webface": "demo-real"}
DEMO_METRICS = {"fid": "fid-dlib", "kid": "kid-dlib", "facenet-verif": "dlib-verif"}


def demo_tables(run: Path) -> list[Path]:
    """The demo's Tables 5-7 (and their comparison with the paper) under ``run/tables``."""
    from ..tables.render import write_table

    return [p for n in (5, 6, 7) for p in write_table(n, run, run / "tables", compare_paper=True,
                                                      datasets=DEMO_DATASETS, metrics=DEMO_METRICS)]


def cmd_demo(args: argparse.Namespace) -> int:
    from ..run.pipeline import RunConfig, run_benchmark
    from ..registries import METHODS, METRICS, load_plugins

    load_plugins()
    methods = [n for n, spec in METHODS.items() if spec.availability().ok]
    cfg = RunConfig(datasets=["demo", "demo-real"], methods=methods, metrics=sorted(METRICS),
                    out=args.out, workers=args.workers, device=args.device, progress=not args.quiet)
    code = _report(run_benchmark(cfg))
    demo_tables(args.out)
    print(f"paper tables 5-7 (demo data, offline backends, stated under each): {args.out / 'tables'}")
    from ..reports.report import build_report

    print(f"HTML report (tables, t-SNE, qualitative grids, landmarks, per-image browser): "
          f"{build_report(args.out, per_dataset=20)}")
    return code


COMMANDS: dict[str, Callable[..., int]] = {"run": cmd_run, "demo": cmd_demo}
