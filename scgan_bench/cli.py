"""``scgan-bench`` command line. User errors exit with code 2 and say what is allowed."""
from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .errors import Interrupted, TrainingDiverged, UsageError, describe_os_error
from .io.image_io import DEFAULT_MAX_PIXELS

EXIT_USAGE = 2


def _pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, sep, val = v.partition("=")
        if not sep or not name or not val:
            raise UsageError(f"{flag} expects NAME=VALUE, got {v!r}")
        out[name.strip()] = val.strip()
    return out


def _convert(default: Any, raw: str, what: str) -> Any:
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
        out.setdefault(name, {})[key] = _convert(defaults[key], raw, f"{name}:{key}")
    return out


def parse_dataset_options(values: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``NAME:KEY=VALUE`` -> ``{NAME: {KEY: typed value}}``, checked against the dataset's options."""
    from .registries import DATASETS, load_plugins

    load_plugins()
    return _parse_options(values, "--dataset-opt", "dataset",
                          lambda n: (n, dict(DATASETS.get(n).create().options())))


def parse_method_options(values: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The same for methods (``scgan-bench list methods`` shows their options, e.g. ``codeformer:w=0.7``);
    aliases resolve to their method."""
    from .registries import METHODS, load_plugins

    load_plugins()
    return _parse_options(values, "--method-opt", "method",
                          lambda n: (METHODS.get(n).name, METHODS.get(n).defaults()))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scgan-bench", description=(
        "Benchmark real-world face super-resolution on the SCGAN protocol (16 px -> 64 px)."))
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import a module that registers methods, metrics or datasets (repeatable); installed "
                        "packages register through the 'scgan_bench.plugins' entry-point group")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    ls = sub.add_parser("list", help="what exists, and whether it is available here")
    ls.add_argument("what", choices=("datasets", "methods", "metrics", "degradations", "variants", "trainable"),
                    help="what to list, each with whether it is available here and why not")
    _add_recipe_options(ls, "variants: which of them train the same SR network under this recipe")
    ls.add_argument("--check", action="store_true",
                    help="methods: also load each available method's files (strict key and size checks), as a "
                         "run would; without it, available means present and verified, not yet loaded")

    t = sub.add_parser("train", help="train SCGAN (or one of its ablation variants), LRGAN or CycleGAN")
    t.add_argument("--method", default=None, help="scgan (default), lrgan or cyclegan: the model the engine trains "
                                                  "(`scgan-bench list trainable`)")
    t.add_argument("--variant", default=None, help="the method's variant: an SCGAN variant (`scgan-bench list "
                                                   "variants`), lrgan, cyclegan or cyclegan-16")
    _add_recipe_options(t, "SCGAN: official = the released train.py (default); paper = the equations as printed, R_LS "
                           "regularised by both cycles (README: SCGAN recipes)")
    t.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the method (lrgan: schedule=two-stage ...; cyclegan: lambda_cyc=10 ...; "
                        "`scgan-bench list trainable`)")
    t.add_argument("--hr", required=True, help="folder of HR faces (-> 64 px), or dataset:ffhq (its 20,000 "
                                               "training ids)")
    t.add_argument("--lr", required=True, help="folder of real LR faces (-> 16 px), or dataset:widerface "
                                               "(its 4,000 training crops)")
    t.add_argument("--root", action="append", default=[], metavar="NAME=DIR",
                   help="where a dataset:NAME source lives")
    t.add_argument("--out", type=Path, default=None, help="run folder (default runs/<SR method>)")
    t.add_argument("--epochs", type=int, default=None, help="default: the method's recipe (SCGAN 200, LRGAN 50, "
                                                            "CycleGAN 200)")
    t.add_argument("--batch-size", type=int, default=None, help="default: the method's recipe (SCGAN 64, LRGAN "
                                                                "32, CycleGAN 1)")
    t.add_argument("--learning-rate", type=float, default=None, help="default: the method's recipe")
    t.add_argument("--seed", type=int, default=2020, help="training seed: initialisation, data order, noise")
    t.add_argument("--width", type=float, default=1.0, help="channel-width factor (1 = the paper's model)")
    t.add_argument("--amp", default="none", choices=("none", "bf16"),
                   help="mixed precision: none (float32, default) or bf16 autocast")
    t.add_argument("--channels-last", action="store_true", help="NHWC memory format (faster convolutions with bf16)")
    t.add_argument("--speed", default=None, choices=("eager", "compiled", "graph", "compiled-graph"),
                   help="how the step executes: eager (default); compiled (torch.compile of the networks and "
                        "losses); graph (CUDA: the whole step recorded once as a CUDA graph and replayed); "
                        "compiled-graph (both). Recorded in the run: --resume keeps it")
    t.add_argument("--compile", action="store_true", help="same as --speed compiled")
    t.add_argument("--d-calls", default="fused", choices=("fused", "separate"),
                   help="a discriminator judges real and fake images in one call (fused, default: one "
                        "spectral-norm power iteration per optimiser phase) or two (separate: the released "
                        "code's two in the discriminator phase). Recorded in the run: --resume keeps it")
    t.add_argument("--log-every", type=int, default=None, metavar="N",
                   help="bring the losses to the host every N steps (default 1 on CPU, 25 on GPU: one sync per N)")
    t.add_argument("--save-every", type=int, default=1, metavar="N",
                   help="checkpoint every N epochs (default 1) and when the run stops; --resume continues from the "
                        "last checkpoint")
    t.add_argument("--background-save", action="store_true",
                   help="write checkpoints in a background thread while training goes on (same atomic files)")
    t.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda[:N]")
    t.add_argument("--max-steps", type=int, default=None, help="stop after N steps (smoke runs)")
    t.add_argument("--limit-hr", type=int, default=None, help="train on the first N HR faces only (smoke runs)")
    t.add_argument("--limit-lr", type=int, default=None, help="train on the first N real LR faces only (smoke runs)")
    t.add_argument("--lr-schedule", default=None, choices=("cosine", "restarts"),
                   help="SCGAN: cosine (default): CosineAnnealingLR(T_max=10) as released, a 20-epoch wave; "
                        "restarts: 1e-4 -> 1e-5 in every 10-epoch period")
    t.add_argument("--deterministic", action="store_true",
                   help="deterministic CUDA kernels (a resumed run then equals an uninterrupted one on GPU too; "
                        "CPU runs are deterministic anyway)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out exactly (refused if its "
                                                         "settings differ)")
    t.add_argument("--overwrite", action="store_true", help="replace the training run already in --out")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    ex = sub.add_parser("export-lr", help="write the exact LR inputs a run used (by image id), to run your own "
                                          "method on; score its outputs with --methods dir:NAME=DIR")
    ex.add_argument("run", type=Path, help="a `scgan-bench run` output folder")
    ex.add_argument("--dataset", required=True, help="a dataset the run prepared (its LR inputs are written)")
    ex.add_argument("--out", type=Path, required=True, help="folder for <id>.png and ids.tsv")

    tb = sub.add_parser("table", help="render the paper's Table N from a run (no recomputation)")
    tb.add_argument("number", help="1-7")
    tb.add_argument("run", type=Path, nargs="?", default=None,
                    help="run folder; omitted with --paper: the paper's own values")
    tb.add_argument("--out", type=Path, default=None, help="folder for tableN.{csv,md,tex} (default: the run)")
    tb.add_argument("--paper", action="store_true", help="render the paper's published values")
    tb.add_argument("--compare-paper", action="store_true", help="also write tableN_vs_paper with deltas")
    tb.add_argument("--dataset-map", action="append", default=[], metavar="TABLE_DATASET=RUN_DATASET",
                    help="read a table dataset from another run dataset (stated under the table)")
    tb.add_argument("--metric-map", action="append", default=[], metavar="TABLE_METRIC=RUN_METRIC",
                    help="read a table metric from another backend, e.g. fid=fid-dlib (stated under the table)")
    tb.add_argument("--extra-methods", default="", metavar="A,B",
                    help="run methods to add beside the paper's (your method, a baseline the paper lacks)")
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

    rq = sub.add_parser("reproduce", help="the paper's tables as a plan of jobs (training, evaluation, tables) run "
                                           "here or on Slurm; rerun to resume, --status to see where it stands")
    rq.add_argument("--out", type=Path, default=Path("reproduce"), help="plan folder (plan.json, train/, eval/, "
                                                                       "results/, state/, logs/)")
    rq.add_argument("--tables", default="1-4", help="which of the paper's tables: 1-4 (default), 1,5 or all")
    rq.add_argument("--smoke", action="store_true", help="1/8 width, 2 steps, 16 images, offline data and backends")
    rq.add_argument("--executor", default="local", choices=("local", "slurm", "none"),
                    help="local: run here (one job per GPU, or one at a time on CPU); slurm: submit sbatch jobs; "
                         "none: write the plan only")
    rq.add_argument("--status", action="store_true", help="print every job's state and stop")
    rq.add_argument("--job", default=None, metavar="ID", help="run one job of the plan in --out (what executors call)")
    rq.add_argument("--variants", default=None, metavar="A,B", help="only these methods (their cells alone)")
    rq.add_argument("--root", action="append", default=[], metavar="NAME=DIR", help="where a dataset lives")
    rq.add_argument("--dataset-map", action="append", default=[], metavar="TABLE_DATASET=RUN_DATASET",
                    help="evaluate a table's test set on another dataset (e.g. ffhq=folder; stated in the tables)")
    rq.add_argument("--train-hr", default=None, help="HR training faces (default dataset:ffhq; smoke: dataset:demo)")
    rq.add_argument("--train-lr", default=None, help="LR training faces (default dataset:widerface; smoke: "
                                                      "dataset:demo-real)")
    rq.add_argument("--seed", type=int, default=2020, help="training seed")
    rq.add_argument("--device", default="auto", help="device of every job (auto, cpu or cuda)")
    rq.add_argument("--gpus", type=int, default=None, help="local: GPUs to use (default: all visible)")
    rq.add_argument("--eval-gpus", type=int, default=1, help="GPUs per evaluation job (torchrun inside when > 1)")
    rq.add_argument("--workers", type=int, default=2, help="processes per evaluation job for dlib's metrics")
    rq.add_argument("--limit", type=int, default=None, help="only the first N images of each test set")
    rq.add_argument("--step-seconds", action="append", default=[], metavar="TRAINABLE=S",
                    help="measured seconds per training step (benchmarks/gpu_check.py) for the GPU-hours estimate")
    rq.add_argument("--train-equal-variants", action="store_true",
                    help="train every SCGAN variant on its own, also those that train the same SR network as another "
                         "under recipe official (by default each such group is trained once and its checkpoint "
                         "fills every row of the group; `list variants` names the groups)")
    rq.add_argument("--partition", default=None, help="slurm: partition")
    rq.add_argument("--account", default=None, help="slurm: account")
    rq.add_argument("--time-train", default="24:00:00", help="slurm: time limit of a training job")
    rq.add_argument("--time-eval", default="04:00:00", help="slurm: time limit of an evaluation / tables job")
    rq.add_argument("--gpus-per-train", type=int, default=1, help="slurm: GPUs per training job (DDP when > 1)")
    rq.add_argument("--cpus-per-task", type=int, default=8, help="slurm: CPUs per job")
    rq.add_argument("--max-parallel", type=int, default=None, help="slurm: training tasks running at once")
    rq.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG", help="slurm: one more #SBATCH line")
    rq.add_argument("--test-only", action="store_true", help="slurm: check the scripts with sbatch --test-only")

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
    return p


def _add_recipe_options(p: argparse.ArgumentParser, recipe_help: str) -> None:
    from .scgan.dataflow import CROSSINGS

    p.add_argument("--recipe", default="official", help=recipe_help)
    p.add_argument("--cross", action="append", default=[], metavar="CROSSING=WEIGHT",
                   help=f"override a crossing weight of the recipe (0 = detached): {', '.join(CROSSINGS)}")


def _crossings(args: argparse.Namespace) -> dict[str, float]:
    return {k: _convert(0.0, v, f"--cross {k}") for k, v in _pairs(args.cross, "--cross").items()}


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
    from .methods.folder import expand_folder_methods
    from .metrics.presets import expand as expand_presets
    from .run.pipeline import RunConfig, run_benchmark
    from .registries import DATASETS, METHODS, METRICS, load_plugins

    load_plugins()
    if args.table is not None:
        from .tables.render import table_spec

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
        roots={k: Path(v) for k, v in _pairs(args.root, "--root").items()},
        degradations=_pairs(args.degradation, "--degradation"),
        references=_pairs(args.reference, "--reference"),
        dataset_options=parse_dataset_options(args.dataset_opt),
        method_options=parse_method_options(args.method_opt),
        accept_data_changes=args.accept_data_changes, progress=not args.quiet, wait=args.wait,
        only_this_run=args.only_this_run, tf32=args.tf32, max_pixels=args.max_pixels,
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
    from .tables.render import write_table

    return [p for n in (5, 6, 7) for p in write_table(n, run, run / "tables", compare_paper=True,
                                                      datasets=DEMO_DATASETS, metrics=DEMO_METRICS)]


def cmd_demo(args: argparse.Namespace) -> int:
    from .run.pipeline import RunConfig, run_benchmark
    from .registries import METHODS, METRICS, load_plugins

    load_plugins()
    methods = [n for n, spec in METHODS.items() if spec.availability().ok]
    cfg = RunConfig(datasets=["demo", "demo-real"], methods=methods, metrics=sorted(METRICS),
                    out=args.out, workers=args.workers, device=args.device, progress=not args.quiet)
    code = _report(run_benchmark(cfg))
    demo_tables(args.out)
    print(f"paper tables 5-7 (demo data, offline backends, stated under each): {args.out / 'tables'}")
    from .reports.report import build_report

    print(f"HTML report (tables, t-SNE, qualitative grids, landmarks, per-image browser): "
          f"{build_report(args.out, per_dataset=20)}")
    return code


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
    from .assets.weights import unofficial_in_place

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
    from .registries import DATASETS, METHODS, METRICS, load_plugins

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
        from .scgan.variants import VARIANTS

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
        from .registries import PLUGIN_ERRORS

        for name, why in PLUGIN_ERRORS.items():
            rows.append((f"plugin:{name}", why, "failed to load"))
    elif args.what == "metrics":
        from .metrics.presets import PRESETS

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
            from .assets.weights import ASSETS

            licences = dict.fromkeys(ASSETS.get(w).license for w in getattr(spec.availability, "weights", ())
                                     if w in ASSETS)
            if licences:
                desc += f"\nlicence of its model files: {'; '.join(licences)}"
            rows.append((name, desc, _availability_text(a, getattr(spec.availability, "weights", ()))))
    elif args.what == "variants":
        from .scgan.dataflow import equivalence_classes
        from .scgan.model import get_recipe
        from .scgan.variants import VARIANTS

        recipe = get_recipe(args.recipe, _crossings(args))
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
        from .training.models import TRAINABLE

        for name, spec in TRAINABLE.items():
            d = spec.defaults
            desc = (f"{spec.summary}\nvariants: {', '.join(spec.variants()) if name != 'scgan' else 'scgan and its 25 '}"
                    f"{'ablations (list variants)' if name == 'scgan' else ''}"
                    f"\nSR methods: {', '.join(dict.fromkeys(spec.sr_method(v) for v in spec.variants())) if name != 'scgan' else 'the variant names'}"
                    f"\nrecipe: {d['epochs']} epochs, batch {d['batch_size']}, Adam {d['learning_rate']:g} "
                    f"betas {tuple(d['betas'])}; source: {spec.source}"
                    f"\noptions (--opt): {spec.option_help()}")
            rows.append((name, desc, f"train --method {name}"))
    else:
        from .io.degradations import DEGRADATIONS, make_degradation

        for name in DEGRADATIONS:
            rows.append((name, str(make_degradation(name).config()), "available"))
    width = max(len(r[0]) for r in rows)
    for name, desc, status in rows:
        desc = desc.replace("\n", "\n" + " " * (width + 2))
        print(f"{name:<{width}}  {status}\n{'':<{width}}  {desc}")
    if args.what == "variants":
        print("\n".join([""] + notes))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Build the manifest, record every source's sha256 and decode every image once (to report bad
    files now); the decoded images go to a temporary folder (a run makes its own)."""
    import tempfile

    from .io.manifest import data_home
    from .run.prepare import prepare_dataset

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


def cmd_table(args: argparse.Namespace) -> int:
    from .tables.render import write_table

    if args.run is None and not args.paper:
        raise UsageError("give a run folder, or --paper for the paper's own values")
    out = args.out or (args.run if args.run is not None else Path("."))
    for p in write_table(args.number, None if args.paper else args.run, out, compare_paper=args.compare_paper,
                         datasets=_pairs(args.dataset_map, "--dataset-map"),
                         metrics=_pairs(args.metric_map, "--metric-map"),
                         methods=_pairs(args.method_map, "--method-map"),
                         extra_methods=[m.strip() for m in args.extra_methods.split(",") if m.strip()]):
        print(p)
    md = out / f"table{int(args.number)}.md"
    if md.exists():
        print(md.read_text())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .reports.report import build_report

    if not (args.run / "run.json").exists():
        raise UsageError(f"{args.run} is not a scgan-bench run folder (no run.json)")
    if args.images < 1:
        raise UsageError(f"--images {args.images}: must be at least 1")
    build_report(args.run, args.out, train_run=args.train_run, per_dataset=args.images, say=print,
                 tsne=not args.no_tsne)
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from .reports.figures import write_figures

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


def _speed(speed: str | None, compile_flag: bool) -> str:
    """``--speed`` with the older ``--compile`` folded in (compiled; with ``--speed graph``: compiled-graph)."""
    speed = speed or "eager"
    return {"eager": "compiled", "graph": "compiled-graph"}.get(speed, speed) if compile_flag else speed


def cmd_train(args: argparse.Namespace) -> int:
    from .run.pipeline import resolve_device
    from .training.engine import TrainConfig, run_training
    from .training.models import trainable_for

    spec = trainable_for(args.method, args.variant)
    variant = args.variant or spec.default_variant
    if variant not in spec.variants():
        if spec.name == "scgan":
            from .scgan.variants import VARIANTS

            VARIANTS.get(variant)  # unknown SCGAN variant: did-you-mean
        raise UsageError(f"method {spec.name} has no variant {variant!r}; its variants: {', '.join(spec.variants())}")
    method = spec.sr_method(variant)
    out = args.out or Path("runs") / method
    cfg = TrainConfig(method=spec.name, variant=variant, recipe=args.recipe, hr=args.hr, lr=args.lr, out=str(out),
                      roots=_pairs(args.root, "--root"), crossings=_crossings(args), lr_schedule=args.lr_schedule,
                      options=_pairs(args.opt, "--opt"), deterministic=args.deterministic, overwrite=args.overwrite,
                      epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                      seed=args.seed, width=args.width, amp=args.amp, channels_last=args.channels_last,
                      speed=_speed(args.speed, args.compile), d_calls=args.d_calls,
                      device=resolve_device(args.device), max_steps=args.max_steps,
                      log_every=args.log_every, save_every=args.save_every, background_save=args.background_save,
                      limit_hr=args.limit_hr, limit_lr=args.limit_lr, progress=not args.quiet)
    run = run_training(cfg, resume=args.resume)
    sr_file = "rls.safetensors" if spec.name == "scgan" else "sr.safetensors"
    print(f"trained {spec.name} {variant}: checkpoint {run / 'checkpoints'}, SR network {run / sr_file}, "
          f"log {run / 'log.csv'}, samples {run / 'samples'}")
    print(f"score it: SCGAN_BENCH_CKPT_{method.upper().replace('-', '_')}={run} "
          f"scgan-bench run --methods {method} --datasets ...")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .plan import executors as X
    from .plan import reproduce as R

    if args.job:
        return R.run_job(args.out, args.job, main)
    if args.status:
        plan = R.load_plan(args.out)
        ids, states = X.slurm_status(plan)
        print(R.format_status(R.status_rows(plan, ids, states)))
        return 0
    from .run.runlock import run_lock

    # one executor per folder: a second is refused at once, naming the holder (jobs run by --job lock nothing
    # here; each evaluation locks its own run folder)
    with run_lock(Path(args.out) / "state"):
        return _reproduce(args, R, X)


def _reproduce(args: argparse.Namespace, R: Any, X: Any) -> int:
    steps = {k: _convert(0.0, v, f"--step-seconds {k}") for k, v in _pairs(args.step_seconds, "--step-seconds").items()}
    plan = R.build_plan(args.out, R.parse_tables(args.tables), smoke=args.smoke,
                        variants=[v for v in (args.variants or "").split(",") if v] or None,
                        roots=_pairs(args.root, "--root"), dataset_map=_pairs(args.dataset_map, "--dataset-map"),
                        train_hr=args.train_hr, train_lr=args.train_lr, seed=args.seed, device=args.device,
                        eval_gpus=args.eval_gpus, workers=args.workers, limit=args.limit, step_seconds=steps,
                        share_equal=not args.train_equal_variants)
    path = R.save_plan(plan)
    kinds = {k: sum(j.kind == k for j in plan.jobs) for k in ("train", "eval", "tables")}
    print(f"plan {path}: {kinds['train']} training, {kinds['eval']} evaluation and 1 tables job(s); "
          f"{sum(map(len, plan.covers.values()))} table cells covered; {plan.hours_basis}")
    shared = plan.maps.get("shared_checkpoints", {})
    if shared:
        print(f"  {len(shared)} variant(s) read the checkpoint of an equal variant (the same SR network under recipe "
              f"official; --train-equal-variants trains each): "
              + ", ".join(f"{m} <- {rep}" for m, rep in sorted(shared.items())))
    for why, n in R.uncovered_summary(plan).items():
        print(f"  {n} cell(s) not covered: {why}")
    if args.executor == "none":
        print(f"run it: scgan-bench reproduce --out {args.out} --executor local|slurm (same options), or one job: "
              f"scgan-bench reproduce --out {args.out} --job ID")
        return 0
    if args.executor == "local":
        code = X.run_local(plan, gpus=args.gpus)
    else:
        opts = X.SlurmOptions(partition=args.partition, account=args.account, time_train=args.time_train,
                              time_eval=args.time_eval, gpus_per_job=args.gpus_per_train,
                              cpus_per_task=args.cpus_per_task, max_parallel=args.max_parallel,
                              extra=tuple(args.sbatch_arg), test_only=args.test_only)
        X.submit_slurm(plan, opts)
        code = 0
    print(f"status: scgan-bench reproduce --out {args.out} --status; tables: {plan.out / 'results' / 'tables'}")
    return code


def cmd_export_lr(args: argparse.Namespace) -> int:
    from .run.export import export_lr, rerun_command

    n = export_lr(args.run, args.dataset, args.out)
    print(f"wrote {n} LR inputs of {args.dataset} to {args.out} (<id>.png, ids.tsv); put your x4 outputs as "
          f"<id>.png in a folder and score them (the run's root, degradation, seed, limit and metrics):\n  "
          f"{rerun_command(args.run, args.dataset, 'dir:NAME=FOLDER,bicubic')}")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from .assets import weights as W
    from .registries import load_plugins

    from .settings import current, using

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
    handlers = {"run": cmd_run, "demo": cmd_demo, "list": cmd_list, "prepare": cmd_prepare,
                "weights": cmd_weights, "train": cmd_train, "reproduce": cmd_reproduce, "export-lr": cmd_export_lr, "table": cmd_table, "report": cmd_report,
                "figures": cmd_figures}
    try:
        if args.plugin:
            from .registries import import_plugin

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


if __name__ == "__main__":
    sys.exit(main())
