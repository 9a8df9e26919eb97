"""Executors of a reproduction plan (:mod:`.reproduce`): here (``local``) or through Slurm (``slurm``).

Both start every job as ``scgan-bench reproduce --out DIR --job ID`` (under ``torchrun`` when an
evaluation job asks for several GPUs), skip jobs already done, and let a job's own state file say how
it ended. Resubmitting a plan therefore redoes only what is not done.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import UsageError
from ..io.image_io import atomic_write_text
from .reproduce import Job, Plan, is_done, log_path, python_command


def job_command(plan: Plan, job: Job, gpus: int) -> list[str]:
    """The command that runs ``job``: torchrun with one process per GPU for a sharded evaluation."""
    cmd = [*python_command(), "reproduce", "--out", str(plan.out), "--job", job.id]
    if job.kind == "eval" and gpus > 1:
        cmd = [python_command()[0], "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus),
               *cmd[1:]]
    return cmd


def topological(plan: Plan) -> list[Job]:
    """The jobs in an order that runs every dependency first (the plan's order is one already)."""
    seen: set[str] = set()
    order: list[Job] = []
    for j in plan.jobs:
        missing = [d for d in j.deps if d not in seen]
        if missing:
            raise UsageError(f"plan job {j.id} depends on {', '.join(missing)}, which come later or do not exist")
        seen.add(j.id)
        order.append(j)
    return order


# ---------------------------------------------------------------------------------------------- local

@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen
    gpus: list[int]
    log: object


def run_local(plan: Plan, *, gpus: int | None = None, say: Callable[[str], None] = print,
              poll_s: float = 0.5) -> int:
    """Run the plan's pending jobs here: one job per free GPU at a time (an evaluation asking for several
    takes several, at most all), or one after another without GPUs. A failed job's dependents are not
    started; the others are. Returns 0 when every job is done."""
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
    order = topological(plan)
    free = list(range(gpus))
    running: list[_Running] = []
    blocked: dict[str, str] = {}
    todo = [j for j in order if not is_done(plan, j)]
    for j in order:
        if j not in todo:
            say(f"{j.id}: done already")
    while todo or running:
        for r in list(running):
            code = r.proc.poll()
            if code is None:
                continue
            running.remove(r)
            r.log.close()
            free += r.gpus
            ok = code == 0 and is_done(plan, r.job)
            say(f"{r.job.id}: {'done' if ok else f'failed (exit {code}); log {log_path(plan.out, r.job.id)}'}")
            if not ok:
                blocked[r.job.id] = f"exit {code}"
        started = False
        for j in list(todo):
            bad = [d for d in j.deps if d in blocked]
            if bad:
                todo.remove(j)
                blocked[j.id] = f"needs {bad[0]}, which failed"
                say(f"{j.id}: not started: {blocked[j.id]}")
                continue
            if any(not is_done(plan, plan.job(d)) for d in j.deps):
                continue
            want = min(j.gpus, gpus)  # 0 without GPUs, or for a CPU job (tables)
            if (gpus == 0 and running) or want > len(free):
                continue  # without GPUs: one job at a time
            mine, free = free[:want], free[want:]
            env = {**os.environ}
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, mine)) if mine else ""
            path = log_path(plan.out, j.id)
            path.parent.mkdir(parents=True, exist_ok=True)
            log = open(path, "a")  # noqa: SIM115 (closed when the job ends)
            log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} local: {shlex.join(job_command(plan, j, want))}\n")
            log.flush()
            running.append(_Running(j, subprocess.Popen(job_command(plan, j, want), env=env, stdout=log,
                                                        stderr=subprocess.STDOUT), mine, log))
            todo.remove(j)
            started = True
            say(f"{j.id}: started ({j.what}{f'; GPUs {mine}' if mine else ''})")
        if not started and running:
            time.sleep(poll_s)
        elif not started and not running and todo:
            raise UsageError(f"nothing can start: {', '.join(j.id for j in todo)} wait for jobs that are not done")
    failed = [j for j in order if not is_done(plan, j)]
    return 0 if not failed else 1


# ---------------------------------------------------------------------------------------------- slurm

@dataclass
class SlurmOptions:
    partition: str | None = None
    account: str | None = None
    time_train: str = "24:00:00"
    time_eval: str = "04:00:00"
    gpus_per_job: int = 1          # training jobs (torchrun DDP inside when > 1; 0 on a CPU cluster)
    cpus_per_task: int = 8
    max_parallel: int | None = None  # concurrent tasks of the training array
    extra: tuple[str, ...] = ()    # more #SBATCH lines, e.g. --qos=high
    test_only: bool = False        # sbatch --test-only: validate, submit nothing


SUBMITTED = "submitted.json"


def _header(plan: Plan, name: str, time_limit: str, gpus: int, opts: SlurmOptions, log: str,
            array: str | None = None) -> list[str]:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --output={log}", "#SBATCH --nodes=1",
             "#SBATCH --ntasks=1", f"#SBATCH --cpus-per-task={opts.cpus_per_task}", f"#SBATCH --time={time_limit}"]
    if gpus:
        lines.append(f"#SBATCH --gpus-per-node={gpus}")
    if opts.partition:
        lines.append(f"#SBATCH --partition={opts.partition}")
    if opts.account:
        lines.append(f"#SBATCH --account={opts.account}")
    if array:
        lines.append(f"#SBATCH --array={array}")
    lines += [f"#SBATCH {x}" for x in opts.extra]
    lines += ["set -euo pipefail", f"cd {shlex.quote(str(Path.cwd()))}"]
    return lines


def write_scripts(plan: Plan, jobs: Sequence[Job], opts: SlurmOptions) -> dict[str, Path]:
    """One sbatch script per evaluation / tables job and one job array for the training jobs, under
    ``<out>/slurm``; returns script -> path (``train-array`` for the array)."""
    d = plan.out / "slurm"
    d.mkdir(parents=True, exist_ok=True)
    scripts: dict[str, Path] = {}
    train = [j for j in jobs if j.kind == "train"]
    if train:
        ids = " ".join(shlex.quote(j.id) for j in train)
        throttle = f"%{opts.max_parallel}" if opts.max_parallel else ""
        lines = _header(plan, "sb-train", opts.time_train, opts.gpus_per_job, opts,
                        str(plan.out / "logs" / "slurm-%A_%a.out"), f"0-{len(train) - 1}{throttle}")
        run = shlex.join(job_command(plan, train[0], 1)).replace(shlex.quote(train[0].id), '"$ID"')
        if opts.gpus_per_job > 1:  # DDP training: one process per GPU
            run = run.replace(shlex.join(python_command()), shlex.join(
                [python_command()[0], "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                 str(opts.gpus_per_job), "-m", "scgan_bench"]), 1)
        lines += [f"IDS=({ids})", 'ID="${IDS[$SLURM_ARRAY_TASK_ID]}"',
                  f'exec {run} >> {shlex.quote(str(plan.out / "logs"))}/"$ID".log 2>&1']
        scripts["train-array"] = d / "train-array.sbatch"
        atomic_write_text(scripts["train-array"], "\n".join(lines) + "\n")
    for j in jobs:
        if j.kind == "train":
            continue
        gpus = j.gpus if j.kind == "eval" else 0
        lines = _header(plan, f"sb-{j.id}", opts.time_eval, gpus, opts, str(log_path(plan.out, j.id)))
        lines.append(f"exec {shlex.join(job_command(plan, j, gpus))}")
        scripts[j.id] = d / f"{j.id}.sbatch"
        atomic_write_text(scripts[j.id], "\n".join(lines) + "\n")
    return scripts


def _sbatch(args: list[str]) -> str:
    try:
        p = subprocess.run(["sbatch", *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise UsageError("sbatch not found: --executor slurm needs Slurm's client commands on this machine") from None
    if p.returncode != 0:
        raise UsageError(f"sbatch {' '.join(args)} failed: {(p.stderr or p.stdout).strip()}")
    return (p.stdout.strip() or p.stderr.strip())


def queue_states(ids: Sequence[str]) -> dict[str, str]:
    """Slurm's state of each job / array task id still known to squeue (absent: finished or unknown)."""
    base = sorted({i.split("_")[0] for i in ids if i})
    if not base:
        return {}
    try:
        p = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(base)], capture_output=True, text=True)
    except FileNotFoundError:
        return {}
    out = {}
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = parts[1]
    return out


def _gres_gpus(gres: str) -> int:
    """GPUs per node in sinfo's ``%G`` (``gpu:4``, ``gpu:a100:2(S:0-1)``, ``(null)``)."""
    return sum(int(n) for n in re.findall(r"(?:^|,)gpu(?::[^:,(]+)?:(\d+)", gres))


def partition_resources(partition: str | None) -> tuple[str, int, int] | None:
    """``(partition, most CPUs of one node, most GPUs of one node)`` as ``sinfo`` reports them for
    ``partition`` (None: the default partition); None when sinfo cannot tell. A partition sinfo does not
    list is a UsageError naming those it does."""
    try:
        p = subprocess.run(["sinfo", "-h", "-o", "%P|%c|%G"], capture_output=True, text=True, timeout=120)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    rows = [ln.strip().split("|") for ln in p.stdout.splitlines() if ln.count("|") == 2]
    if p.returncode != 0 or not rows:
        return None
    names = sorted({r[0].rstrip("*") for r in rows})
    mine = [r for r in rows if (r[0].rstrip("*") == partition if partition else r[0].endswith("*"))]
    if not mine:
        if partition:
            raise UsageError(f"--partition {partition}: sinfo lists no such partition (it lists: {', '.join(names)})")
        return None
    cpus = max(int(m.group()) for r in mine if (m := re.match(r"\d+", r[1])))
    return mine[0][0].rstrip("*"), cpus, max(_gres_gpus(r[2]) for r in mine)


def check_resources(jobs: Sequence[Job], opts: SlurmOptions) -> None:
    """Refuse, in one line each, a submission that the partition can never run: GPUs asked of a partition
    whose nodes have fewer (sbatch would say only "Invalid generic resource"), more CPUs per task than a
    node has (the jobs would wait forever). Unchecked when sinfo cannot tell."""
    res = partition_resources(opts.partition)
    if res is None:
        return
    name, cpus, gpus = res
    want = max([opts.gpus_per_job for j in jobs if j.kind == "train"] + [j.gpus for j in jobs if j.kind == "eval"],
               default=0)
    if want > gpus:
        fix = ("--gpus-per-train 0 --eval-gpus 0 --device cpu (a CPU partition)" if gpus == 0 else
               f"--gpus-per-train / --eval-gpus of at most {gpus}")
        raise UsageError(f"partition {name}: its nodes have {gpus or 'no'} GPU(s) (sinfo), the jobs ask for {want}: "
                         f"pass {fix}, or --partition of one with GPUs")
    if opts.cpus_per_task > cpus:
        raise UsageError(f"partition {name}: its nodes have at most {cpus} CPUs (sinfo), the jobs ask for "
                         f"{opts.cpus_per_task} per task and would wait forever: pass --cpus-per-task {cpus} or fewer")


def _array_tasks(spec: str) -> list[int]:
    """Slurm's ``ArrayTaskId`` (``3``, ``0-5``, ``0-7:2``, ``1,4-6%2``) as task numbers."""
    out: list[int] = []
    for part in spec.split("%")[0].split(","):
        rng, _, step = part.partition(":")
        a, _, b = rng.partition("-")
        if a.isdigit():
            out += list(range(int(a), int(b or a) + 1, int(step or 1)))
    return out


def final_states(ids: Sequence[str]) -> dict[str, str]:
    """The state of jobs that left the queue (``CANCELLED``, ``FAILED``, ``COMPLETED`` ...), by job id or
    ``ARRAY_TASK``: from ``scontrol show job`` while the controller remembers them, else ``sacct``."""
    out: dict[str, str] = {}
    for base in sorted({i.split("_")[0] for i in ids if i}):
        try:
            p = subprocess.run(["scontrol", "-o", "show", "job", base], capture_output=True, text=True, timeout=120)
        except (FileNotFoundError, subprocess.TimeoutExpired):
            p = None
        for line in (p.stdout.splitlines() if p is not None and p.returncode == 0 else []):
            f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            if not f.get("JobState"):
                continue
            if f.get("ArrayTaskId", "N/A") != "N/A" and "ArrayJobId" in f:  # one task, or the tasks never split off
                for task in _array_tasks(f["ArrayTaskId"]):
                    out[f"{f['ArrayJobId']}_{task}"] = f["JobState"]
            elif f.get("JobId"):
                out[f["JobId"]] = f["JobState"]
    missing = [i for i in ids if i and i not in out]
    if missing:
        try:
            p = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(sorted(set(missing)))],
                               capture_output=True, text=True, timeout=120)
        except (FileNotFoundError, subprocess.TimeoutExpired):
            return out
        if p.returncode == 0:
            for line in p.stdout.splitlines():
                jid, _, state = line.partition("|")
                if jid and state:
                    out.setdefault(jid, state.split()[0])
    return out


def submitted(plan: Plan) -> dict[str, str]:
    try:
        return json.loads((plan.out / "slurm" / SUBMITTED).read_text())
    except (OSError, ValueError):
        return {}


def submit_slurm(plan: Plan, opts: SlurmOptions, *, say: Callable[[str], None] = print) -> dict[str, str]:
    """Submit the plan's jobs that are neither done nor still queued: the training jobs as one array, each
    evaluation ``afterok`` on the training it needs, the tables ``afterok`` on the evaluations. Returns
    job -> Slurm id (``ARRAY_TASK`` for array tasks). With ``test_only``, ``sbatch --test-only`` checks every
    script and nothing is submitted."""
    order = topological(plan)
    known = submitted(plan)
    alive = queue_states(list(known.values())) if not opts.test_only else {}
    queued = {j: s for j, s in known.items() if s in alive or s.split("_")[0] in alive}
    todo = [j for j in order if not is_done(plan, j) and j.id not in queued]
    for j in order:
        if is_done(plan, j):
            say(f"{j.id}: done already")
        elif j.id in queued:
            say(f"{j.id}: still queued as Slurm job {queued[j.id]} ({alive.get(queued[j.id], 'pending')})")
    if not todo:
        return queued
    check_resources(todo, opts)
    scripts = write_scripts(plan, todo, opts)
    ids: dict[str, str] = dict(queued)
    (plan.out / "logs").mkdir(parents=True, exist_ok=True)
    test = ["--test-only"] if opts.test_only else []
    train = [j for j in todo if j.kind == "train"]
    if train:
        out = _sbatch([*test, "--parsable", str(scripts["train-array"])])
        say(f"training array ({len(train)} jobs): {out}")
        if not opts.test_only:
            array = out.split(";")[0]
            for k, j in enumerate(train):
                ids[j.id] = f"{array}_{k}"
    for j in todo:
        if j.kind == "train":
            continue
        deps = sorted({ids[d] for d in j.deps if d in ids})  # array tasks by ARRAY_TASK: each its own
        args = [*test, "--parsable", *([f"--dependency=afterok:{':'.join(deps)}"] if deps else []), str(scripts[j.id])]
        if opts.test_only:
            args = [a for a in args if not a.startswith("--dependency")]  # the ids do not exist in a test
        out = _sbatch(args)
        say(f"{j.id}: {out}")
        if not opts.test_only:
            ids[j.id] = out.split(";")[0]
    if not opts.test_only:
        atomic_write_text(plan.out / "slurm" / SUBMITTED, json.dumps({**known, **ids}, indent=1), durable=True)
    return ids


def slurm_status(plan: Plan) -> tuple[dict[str, str], dict[str, str]]:
    """Submitted job ids, and Slurm's state of each: queued ones from squeue, the others (cancelled,
    failed, timed out, completed) from scontrol / sacct."""
    ids = submitted(plan)
    states = queue_states(list(ids.values()))
    gone = [i for i in ids.values() if i not in states]
    if gone:
        states.update({k: v for k, v in final_states(gone).items() if k in gone})
    return ids, states
