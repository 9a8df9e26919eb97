"""``scgan-bench reproduce``: the paper's tables as a plan of jobs with dependencies.

A plan (``<out>/plan.json``) holds one training job per SCGAN variant / trainable baseline the requested
tables need (its recipe, seed and step budget), one evaluation job per test set (every method of those
tables on that set, in ``<out>/eval/<dataset>``), and a final ``tables`` job that gathers the evaluation
folders into ``<out>/results`` (hard links), confirms them with a cached ``run`` (it recomputes nothing),
and writes Tables N, their comparison with the paper and the HTML report.

Every job runs as ``scgan-bench reproduce --out DIR --job ID`` (:func:`run_job`), whichever executor
starts it (:mod:`.executors`: here, or Slurm), and records its state in ``<out>/state/ID.json``. Jobs are
idempotent: training resumes from its checkpoint (and does nothing once at its budget), evaluation reuses
the run folder's caches, and a job whose state says ``done`` for the same job definition is skipped when
the plan is run again.

``--smoke`` builds the same plan at 1/8 width, a few steps and a few images, on data that needs no
download (scikit-image's faces by default), so the chain from training to filled tables runs on a CPU.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import UsageError
from ..io.image_io import atomic_write_text
from ..io.manifest import stable_hash

PLAN_FORMAT = 1
PLAN_NAME = "plan.json"

#: Training data of the paper (Sec. 4.1): FFHQ's 20,000 training faces (HR) and WIDER FACE's training crops (LR)
PAPER_TRAIN_HR, PAPER_TRAIN_LR, PAPER_TRAIN_HR_COUNT = "dataset:ffhq", "dataset:widerface", 20_000
#: What a smoke plan reads instead (offline; stated in every table label it fills)
SMOKE_DATASETS = {"ls3dw": "demo", "ffhq": "demo", "widerface": "demo-real", "webface": "demo-real"}
SMOKE_METRICS = {"fid": "fid-dlib", "kid": "kid-dlib", "facenet-verif": "dlib-verif"}
SMOKE_TRAIN = {"width": "0.125", "batch-size": "4", "epochs": "1", "max-steps": "2", "limit-hr": "16",
               "limit-lr": "16"}
SMOKE_LIMIT = 16

#: The trainable baselines the paper's comparison tables (5-7) retrain: SR method -> (trainable, variant)
TRAINED_BASELINES = {"cyclegan": ("cyclegan", "cyclegan"), "lrgan-retrained": ("lrgan", "lrgan")}

#: Training FLOPs per step at the recipe's batch size and full width, counted with torch's FlopCounterMode by
#: ``python benchmarks/train_step.py`` (hardware-independent; the projection below divides by a throughput)
TRAIN_FLOPS_PER_STEP = {"scgan": 1.82e13, "lrgan": 4.56e12, "cyclegan": 8.41e10}
#: The sustained training throughput the projection assumes until ``benchmarks/gpu_check.py`` has measured one
#: (bf16 on one H100: about 10 % of its 989 TFLOP/s dense peak, usual for 64 px convolution stacks)
ASSUMED_TFLOPS = 100.0


@dataclass
class Job:
    """One unit of work: ``scgan-bench reproduce --out DIR --job ID`` runs it."""

    id: str
    kind: str                      # train | eval | tables
    what: str                      # one line for --status
    argv: list[str] = field(default_factory=list)   # the scgan-bench command (train / run)
    deps: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # SCGAN_BENCH_CKPT_<METHOD> for evaluation
    gpus: int = 1                  # GPUs it uses (evaluation over several: torchrun inside the job)
    hours: float | None = None     # estimated GPU hours (None: not estimated)
    out: str = ""                  # the folder it fills

    def fingerprint(self) -> str:
        """What defines the job (a job done under another definition is not done)."""
        return stable_hash({"id": self.id, "kind": self.kind, "argv": self.argv, "env": self.env}, 24)


@dataclass
class Plan:
    out: Path
    tables: list[int]
    smoke: bool
    jobs: list[Job]
    covers: dict[str, list[list[str]]]      # table -> [dataset, method, metric] cells the plan fills
    uncovered: dict[str, str]               # "table N dataset method metric" -> why not
    maps: dict[str, dict[str, str]]         # datasets / metrics the tables read from other run names
    hours_basis: str
    created: str = ""

    def job(self, job_id: str) -> Job:
        for j in self.jobs:
            if j.id == job_id:
                return j
        raise UsageError(f"the plan in {self.out} has no job {job_id!r}; its jobs: {', '.join(j.id for j in self.jobs)}")

    def to_json(self) -> str:
        d = {"format": PLAN_FORMAT, "created": self.created, "out": str(self.out), "tables": self.tables,
             "smoke": self.smoke, "maps": self.maps, "hours_basis": self.hours_basis, "covers": self.covers,
             "uncovered": self.uncovered, "jobs": [asdict(j) for j in self.jobs]}
        return json.dumps(d, indent=1)


def uncovered_summary(plan: Plan) -> dict[str, int]:
    """Why cells are not covered -> how many (one line per cause, the first line of its reason)."""
    out: dict[str, int] = {}
    for why in plan.uncovered.values():
        key = why.split(": download")[0].split(" missing:")[0]
        out[key] = out.get(key, 0) + 1
    return out


def parse_tables(text: str) -> list[int]:
    """``1-4``, ``1,2,5`` or ``all`` -> sorted table numbers (1-7)."""
    out: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if part == "all":
            out |= set(range(1, 8))
            continue
        a, sep, b = part.partition("-")
        try:
            lo, hi = int(a), int(b) if sep else int(a)
        except ValueError:
            raise UsageError(f"--tables expects numbers 1-7 like 1-4 or 1,2,5, got {text!r}") from None
        if not 1 <= lo <= hi <= 7:
            raise UsageError(f"--tables: the paper has Tables 1-7, got {part!r}")
        out |= set(range(lo, hi + 1))
    if not out:
        raise UsageError("--tables names no table")
    return sorted(out)


def _steps(trainable: str, smoke: bool) -> int:
    from ..training.models import TRAINABLE

    if smoke:
        return int(SMOKE_TRAIN["max-steps"])
    d = TRAINABLE.get(trainable).defaults
    return d["epochs"] * (PAPER_TRAIN_HR_COUNT // d["batch_size"])


def _train_hours(trainable: str, smoke: bool, step_seconds: Mapping[str, float]) -> tuple[float, str]:
    steps = _steps(trainable, smoke)
    if trainable in step_seconds:
        return steps * step_seconds[trainable] / 3600, "measured"
    return steps * TRAIN_FLOPS_PER_STEP[trainable] / (ASSUMED_TFLOPS * 1e12) / 3600, "projection"


def build_plan(out: Path, tables: Sequence[int], *, smoke: bool = False, variants: Sequence[str] | None = None,
               roots: Mapping[str, str] | None = None, dataset_map: Mapping[str, str] | None = None,
               train_hr: str | None = None, train_lr: str | None = None, seed: int = 2020, eval_seed: int = 0,
               device: str = "auto", eval_gpus: int = 1, workers: int = 2, limit: int | None = None,
               step_seconds: Mapping[str, float] | None = None, share_equal: bool = True) -> Plan:
    """The jobs that regenerate ``tables`` (module docstring). ``variants`` restricts the methods trained and
    evaluated (their cells alone are covered); ``dataset_map`` reads a table's test set from another dataset
    (``ffhq=folder``); ``step_seconds`` (trainable -> measured seconds per step) replaces the projection.
    ``share_equal``: SCGAN variants that train the same SR network under the training recipe (official) are
    trained once, and the others of their group read that checkpoint (``maps["shared_checkpoints"]``,
    stated in each job's line and in the tables); False trains every variant on its own."""
    from ..registries import DATASETS, METHODS, METRICS, load_plugins
    from ..scgan.method import _env_key
    from ..scgan.variants import VARIANTS
    from ..tables.render import table_spec

    load_plugins()
    out = Path(out).resolve()
    roots = dict(roots or {})
    dmap = {**(SMOKE_DATASETS if smoke else {}), **dict(dataset_map or {})}
    kmap = dict(SMOKE_METRICS) if smoke else {}
    limit = limit if limit is not None else (SMOKE_LIMIT if smoke else None)
    step_seconds = dict(step_seconds or {})
    for name in dmap.values():
        DATASETS.get(name)
    wanted = set(variants) if variants else None
    if wanted:
        for v in wanted:
            METHODS.get(v)

    # every table cell -> the run cell that fills it, or why the plan leaves it empty
    per_dataset: dict[str, dict[str, set[str]]] = {}
    covers: dict[str, list[list[str]]] = {}
    uncovered: dict[str, str] = {}
    trained: dict[str, tuple[str, str]] = {}  # SR method -> (trainable, variant)
    for n in tables:
        spec = table_spec(n)
        covers[str(n)] = []
        for cell in spec.cells():
            d, m, k = dmap.get(cell.dataset, cell.dataset), cell.method, kmap.get(cell.metric, cell.metric)
            where = f"table {n} {cell.dataset} {cell.method} {cell.metric}"
            if wanted is not None and m not in wanted:
                uncovered[where] = "not in --variants"
                continue
            if m not in METHODS:
                uncovered[where] = f"method {m} is not implemented"
                continue
            if m in VARIANTS:
                trained[m] = ("scgan", m)
            elif m in TRAINED_BASELINES:
                trained[m] = TRAINED_BASELINES[m]
            elif m == "lrgan":
                trained["lrgan-retrained"] = TRAINED_BASELINES["lrgan-retrained"]
            # evaluated whatever is available where the plan is built (the cluster may hold other weights);
            # covered are the cells that can be filled here
            slot = per_dataset.setdefault(d, {"methods": set(), "metrics": set()})
            slot["methods"].add(m)
            slot["metrics"].add(k)
            if m == "lrgan" and "lrgan-retrained" in trained:
                slot["methods"].add("lrgan-retrained")
            avail = METRICS.get(k).availability()
            method_ok = m in trained or m == "lrgan" and "lrgan-retrained" in trained or METHODS.get(m).availability().ok
            if not avail.ok:
                uncovered[where] = f"metric {k} unavailable where the plan was built: {avail.reason}"
            elif not method_ok:
                uncovered[where] = f"method {m} unavailable where the plan was built: " \
                                   f"{METHODS.get(m).availability().reason}"
            else:
                covers[str(n)].append([cell.dataset, m, cell.metric])

    shared = _shared_checkpoints(trained) if share_equal else {}
    jobs: list[Job] = []
    basis: set[str] = set()
    common_roots = [a for k, v in sorted(roots.items()) for a in ("--root", f"{k}={v}")]
    hr = train_hr or ("dataset:demo" if smoke else PAPER_TRAIN_HR)
    lr = train_lr or ("dataset:demo-real" if smoke else PAPER_TRAIN_LR)
    ckpt_env: dict[str, str] = {}
    for method, (trainable, variant) in sorted(trained.items()):
        if method in shared:
            continue
        folder = out / "train" / method
        argv = ["train", "--method", trainable, "--variant", variant, "--hr", hr, "--lr", lr, "--out", str(folder),
                "--seed", str(seed), "--device", device, "--quiet", *common_roots]
        if smoke:
            argv += [a for k, v in SMOKE_TRAIN.items() for a in (f"--{k}", v)]
        hours, how = _train_hours(trainable, smoke, step_seconds)
        basis.add(how)
        serves = sorted(m for m, rep in shared.items() if rep == method)
        what = f"train {trainable} {variant} ({_steps(trainable, smoke):,} steps)" + (
            f"; its checkpoint also fills {', '.join(serves)} (the same SR network under recipe official)"
            if serves else "")
        jobs.append(Job(f"train-{method}", "train", what, argv, [], {}, 1, round(hours, 3), str(folder)))
        for m in [method, *serves]:
            ckpt_env[_env_key(m)] = str(folder)
    train_ids = [j.id for j in jobs]
    eval_ids = []
    for d, slot in sorted(per_dataset.items()):
        methods = sorted(slot["methods"])
        folder = out / "eval" / d
        argv = ["run", "--datasets", d, "--methods", ",".join(methods), "--metrics", ",".join(sorted(slot["metrics"])),
                "--out", str(folder), "--seed", str(eval_seed), "--device", device, "--workers", str(workers),
                "--quiet", *common_roots]
        if limit:
            argv += ["--limit", str(limit)]
        env = {k: v for k, v in ckpt_env.items() if any(_env_key(m) == k for m in methods)}
        deps = sorted({f"train-{shared.get(m, m)}" for m in methods if f"train-{shared.get(m, m)}" in train_ids})
        jobs.append(Job(f"eval-{d}", "eval", f"evaluate {len(methods)} methods on {d}", argv, deps, env,
                        max(0, eval_gpus), None, str(folder)))
        eval_ids.append(jobs[-1].id)
    jobs.append(Job("tables", "tables", f"gather {len(eval_ids)} evaluation folders; Tables "
                    f"{', '.join(map(str, tables))} and the report", [], eval_ids, dict(ckpt_env), 0, None,
                    str(out / "results")))
    train_hours = sum(j.hours or 0 for j in jobs)
    how = "measured step time" if basis == {"measured"} else (
        f"projection: training FLOPs per step (benchmarks/train_step.py) x steps / an assumed {ASSUMED_TFLOPS:g} "
        "TFLOP/s sustained per GPU; pass --step-seconds METHOD=S from benchmarks/gpu_check.py to use a measurement")
    return Plan(out, list(tables), smoke, jobs, covers, uncovered,
                {"datasets": {k: v for k, v in dmap.items() if k != v}, "metrics": kmap, "shared_checkpoints": shared},
                f"{train_hours:.1f} GPU-hours of training ({how}); evaluation not estimated",
                datetime.now(timezone.utc).isoformat(timespec="seconds"))


def _shared_checkpoints(trained: Mapping[str, tuple[str, str]]) -> dict[str, str]:
    """SCGAN variant -> the variant whose training it reuses: within each group of variants that train the
    same SR network under recipe official (:func:`scgan_bench.scgan.dataflow.equivalence_classes`; from one
    seed their R_LS is bit-identical on one machine and thread count), the full model ``scgan`` if present, else the first in registry order."""
    from ..scgan.dataflow import equivalence_classes
    from ..scgan.model import get_recipe
    from ..scgan.variants import VARIANTS

    names = [n for n in VARIANTS if trained.get(n, ("", ""))[0] == "scgan"]
    out = {}
    for group in equivalence_classes(get_recipe("official"), names):
        rep = "scgan" if "scgan" in group else group[0]
        out.update({m: rep for m in group if m != rep})
    return out


# ---------------------------------------------------------------------------------------------- the plan on disk

def save_plan(plan: Plan) -> Path:
    path = plan.out / PLAN_NAME
    plan.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, plan.to_json(), durable=True)
    return path


def load_plan(out: Path) -> Plan:
    path = Path(out) / PLAN_NAME
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist: build the plan first (scgan-bench reproduce --out {out} "
                         "--tables 1-4 --executor none)") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not a plan: {exc}") from None
    if d.get("format") != PLAN_FORMAT:
        raise UsageError(f"{path}: plan format {d.get('format')!r}, this version reads {PLAN_FORMAT}")
    return Plan(Path(d["out"]), d["tables"], d["smoke"], [Job(**j) for j in d["jobs"]], d["covers"],
                d["uncovered"], d["maps"], d["hours_basis"], d.get("created", ""))


def state_path(out: Path, job_id: str) -> Path:
    return Path(out) / "state" / f"{job_id}.json"


def log_path(out: Path, job_id: str) -> Path:
    return Path(out) / "logs" / f"{job_id}.log"


def read_state(out: Path, job: Job) -> dict[str, Any]:
    """The job's last recorded state; ``done`` only for this job definition (else ``pending``)."""
    try:
        st = json.loads(state_path(out, job.id).read_text())
    except (OSError, ValueError):
        return {"status": "pending"}
    if st.get("fingerprint") != job.fingerprint():
        return {"status": "pending", "note": "the job changed since it last ran"}
    return st


def is_done(plan: Plan, job: Job) -> bool:
    """Done for this definition, after every job it needs was done (a dependency that ran again since
    makes its dependents pending again, as ``make`` would)."""
    st = read_state(plan.out, job)
    if st.get("status") != "done":
        return False
    for d in job.deps:
        dep = plan.job(d)
        if not is_done(plan, dep) or read_state(plan.out, dep).get("finished_ts", 0) > st.get("started_ts", 0):
            return False
    return True


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (Linux: field 22 of /proc/PID/stat, in clock ticks since boot), so that
    a recycled pid is not taken for the job's process; ``None`` where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def job_process_alive(st: Mapping[str, Any]) -> bool | None:
    """Whether the process a ``running`` state names still runs: ``None`` when it ran on another host."""
    if st.get("host") != socket.gethostname() or not isinstance(st.get("pid"), int):
        return None
    pid = st["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's process holds the pid: not ours
        return False
    started = process_start(pid)
    return st.get("pid_start") is None or started is None or started == st["pid_start"]


def _write_state(out: Path, job: Job, **fields: Any) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun, rank 0 records the job
    st = {"job": job.id, "fingerprint": job.fingerprint(), "host": socket.gethostname(), "pid": os.getpid(),
          "pid_start": process_start(os.getpid()), "slurm_job": os.environ.get("SLURM_JOB_ID"), **fields}
    atomic_write_text(state_path(out, job.id), json.dumps(st, indent=1), durable=True)


# ---------------------------------------------------------------------------------------------- running one job

def run_job(out: Path, job_id: str, command: Callable[[Sequence[str]], int]) -> int:
    """Run one job of the plan in ``out`` here (what every executor calls); 0 when it is done.
    ``command`` runs a job's command line in this process (the CLI's ``main``, passed in by the CLI:
    the plan only builds command lines)."""
    plan = load_plan(out)
    job = plan.job(job_id)
    for dep in job.deps:
        if not is_done(plan, plan.job(dep)):
            raise UsageError(f"job {job_id} needs {dep}, which is not done (scgan-bench reproduce --out {out} --status)")
    started = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "started_ts": time.time()}
    _write_state(plan.out, job, status="running", **started)
    t0 = time.perf_counter()
    saved = {k: os.environ.get(k) for k in job.env}
    os.environ.update(job.env)
    try:
        if job.kind == "train":
            resume = (Path(job.out) / "checkpoints" / "latest.json").exists()
            code = command([*job.argv, *(["--resume"] if resume else [])])
        elif job.kind == "eval":
            code = command(job.argv)
        else:
            code = build_tables(plan)
    except BaseException as exc:
        stopped = isinstance(exc, KeyboardInterrupt)
        _write_state(plan.out, job, status="interrupted" if stopped else "failed", **started,
                     error=(f"interrupted ({exc or 'Ctrl-C'})" if stopped else f"{type(exc).__name__}: {exc}"),
                     seconds=round(time.perf_counter() - t0, 1))
        raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    stopped = code in (129, 130, 143)   # the command's own exit after SIGHUP, Ctrl-C, SIGTERM
    _write_state(plan.out, job, status="done" if code == 0 else "interrupted" if stopped else "failed", **started,
                 finished=datetime.now(timezone.utc).isoformat(timespec="seconds"), finished_ts=time.time(),
                 seconds=round(time.perf_counter() - t0, 1), **({} if code == 0 else {"error": f"exit code {code}"}))
    return code


def gather_runs(sources: Sequence[Path], dest: Path) -> None:
    """Hard-link (copy across filesystems) each evaluation folder's stage folders into ``dest``: a test
    set's ``data``, ``sr``, ``metrics`` and ``features`` come from the folder that evaluated it (a
    reference set's, from the first folder holding it). Earlier links are replaced."""
    import shutil

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    owner: dict[str, Path] = {}
    for src in sources:
        for d in sorted(p.name for p in (src / "data").iterdir() if p.is_dir()) if (src / "data").is_dir() else []:
            if d == src.name or d not in owner:
                owner[d] = src
    for d, src in owner.items():
        for stage in ("data", "sr", "metrics", "features"):
            s, t = src / stage / d, dest / stage / d
            if not s.is_dir():
                continue
            if t.exists():
                shutil.rmtree(t)
            t.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(s, t, copy_function=link, ignore=shutil.ignore_patterns(".*.tmp"))


def build_tables(plan: Plan) -> int:
    """The ``tables`` job: gather, confirm with a cached run, write the tables and the report."""
    from ..run.pipeline import RunConfig, run_benchmark
    from ..tables.render import write_table

    evals = [plan.job(i) for i in plan.job("tables").deps]
    results = plan.out / "results"
    gather_runs([Path(j.out) for j in evals], results)
    for name in ("run.json", "results.csv", "summary.csv", "summary.md", "failures.csv", "method_notes.csv"):
        (results / name).unlink(missing_ok=True)  # the folder's outputs are rebuilt from the evaluations alone
    recomputed: dict[str, int] = {}
    for j in evals:  # each evaluation again, in the gathered folder: everything is cached, the outputs accumulate
        a = _argv_options(j.argv)
        cfg = RunConfig(datasets=a["--datasets"].split(","), methods=a["--methods"].split(","),
                        metrics=a["--metrics"].split(","), out=results, seed=int(a["--seed"]), workers=int(a["--workers"]),
                        device="cpu", limit=int(a["--limit"]) if "--limit" in a else None,
                        roots={k: Path(v) for k, v in (r.split("=", 1) for r in a.get("--root*", []))}, progress=False)
        for k, v in run_benchmark(cfg).recomputed.items():
            recomputed[k] = recomputed.get(k, 0) + v
    print(f"gathered {len(evals)} evaluation folders into {results}; recomputed: "
          + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in recomputed.items()))
    tables_dir = results / "tables"
    for n in plan.tables:
        for p in write_table(n, results, tables_dir, compare_paper=True, datasets=plan.maps["datasets"],
                             metrics=plan.maps["metrics"]):
            print(p)
    from ..reports.report import build_report

    print(f"report: {build_report(results, per_dataset=20)}")
    filled, missing = table_coverage(plan)
    for line in missing:
        print(f"not filled: {line}")
    print(f"{filled} of {filled + len(missing)} covered cells filled")
    return 0 if not missing else 1


def _argv_options(argv: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    it = iter(argv[1:])
    for a in it:
        if a.startswith("--") and a not in ("--quiet",):
            v = next(it)
            if a == "--root":
                out.setdefault("--root*", []).append(v)
            else:
                out[a] = v
    return out


def table_coverage(plan: Plan) -> tuple[int, list[str]]:
    """How many of the plan's covered cells the rendered tables (``tableN.json``) hold a number for, and
    the ones they do not."""
    import math

    filled, missing = 0, []
    for n, cells in plan.covers.items():
        path = plan.out / "results" / "tables" / f"table{n}.json"
        try:
            grid = json.loads(path.read_text())
        except (OSError, ValueError):
            missing += [f"table {n}: {path} missing"]
            continue
        values = {(c["dataset"], c["method"], c["metric"]): c.get("value") for c in grid.get("cells", [])}
        for d, m, k in cells:
            v = values.get((d, m, k))
            if v is None or not math.isfinite(v):
                missing.append(f"table {n} {d} {m} {k}")
            else:
                filled += 1
    return filled, missing


# ---------------------------------------------------------------------------------------------- status

#: Slurm job states that end a job without it finishing its work (``--status`` shows them)
ENDED = ("CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE")


def status_rows(plan: Plan, slurm_ids: Mapping[str, str] | None = None,
                slurm_states: Mapping[str, str] | None = None) -> list[tuple[str, str, str, str]]:
    """(job, state, detail, last log line) for every job."""
    rows = []
    for j in plan.jobs:
        st = read_state(plan.out, j)
        status = st.get("status", "pending")
        if status == "done" and not is_done(plan, j):
            status, st = "pending", {**st, "note": "a job it needs ran again since"}
        sid = (slurm_ids or {}).get(j.id)
        detail = []
        if sid:
            queue = (slurm_states or {}).get(sid)
            detail.append(f"slurm {sid}" + (f" {queue.lower()}" if queue else ""))
            if status in ("pending", "running") and queue in ("RUNNING", "COMPLETING"):
                status = "running"
            elif status in ("pending", "running") and queue in ENDED:   # left the queue without doing its work
                status = queue.lower().replace("_", " ")
        if status == "running" and not (sid and (slurm_states or {}).get(sid)):
            alive = job_process_alive(st)
            if alive is False:
                status = "killed"
                detail.append(f"its process {st.get('pid')} on {st.get('host')} ended without recording an end "
                              f"(killed?): rerun `scgan-bench reproduce --out {plan.out}` to run it again")
            elif alive is None and st.get("host"):
                detail.append(f"running on {st['host']} (pid {st.get('pid')}), not checkable from here")
        if st.get("seconds") is not None:
            detail.append(f"{st['seconds']:.0f} s")
        if st.get("error"):
            detail.append(str(st["error"])[:120])
        if st.get("note"):
            detail.append(st["note"])
        rows.append((j.id, status, "; ".join(detail), last_log_line(plan.out, j.id)))
    return rows


def last_log_line(out: Path, job_id: str) -> str:
    try:
        with open(log_path(out, job_id), "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").replace("\r", "\n").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln]
    return lines[-1][:160] if lines else ""


def format_status(rows: Sequence[tuple[str, str, str, str]]) -> str:
    w = max([len(r[0]) for r in rows] + [3])
    out = [f"{'job':<{w}}  {'state':<8}  detail / last log line"]
    for job, state, detail, last in rows:
        out.append(f"{job:<{w}}  {state:<8}  {detail}{' | ' if detail and last else ''}{last}")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r[1]] = counts.get(r[1], 0) + 1
    out.append(", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    return "\n".join(out)


def python_command() -> list[str]:
    """How a job calls this installation (the same interpreter, wherever the job runs)."""
    return [sys.executable, "-m", "scgan_bench"]
