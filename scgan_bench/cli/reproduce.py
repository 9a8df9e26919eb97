"""``reproduce``: the paper's tables as a plan of jobs, run here or on Slurm, resumed by a rerun."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Sequence

from .options import convert, pairs


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Arguments of the reproduce command."""
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


def cmd_reproduce(args: argparse.Namespace, main: Callable[[Sequence[str]], int]) -> int:
    """Build the plan in ``--out`` and run it; ``--job ID`` runs one job's command line through ``main``."""
    from ..plan import executors as X
    from ..plan import reproduce as R

    if args.job:
        return R.run_job(args.out, args.job, main)
    if args.status:
        plan = R.load_plan(args.out)
        ids, states = X.slurm_status(plan)
        print(R.format_status(R.status_rows(plan, ids, states)))
        return 0
    from ..run.runlock import run_lock

    # one executor per folder: a second is refused at once, naming the holder (jobs run by --job lock nothing
    # here; each evaluation locks its own run folder)
    with run_lock(Path(args.out) / "state"):
        return _reproduce(args, R, X)


def _reproduce(args: argparse.Namespace, R: Any, X: Any) -> int:
    steps = {k: convert(0.0, v, f"--step-seconds {k}") for k, v in pairs(args.step_seconds, "--step-seconds").items()}
    plan = R.build_plan(args.out, R.parse_tables(args.tables), smoke=args.smoke,
                        variants=[v for v in (args.variants or "").split(",") if v] or None,
                        roots=pairs(args.root, "--root"), dataset_map=pairs(args.dataset_map, "--dataset-map"),
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


COMMANDS: dict[str, Callable[..., int]] = {"reproduce": cmd_reproduce}
