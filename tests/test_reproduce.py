"""`scgan-bench reproduce`: the plan (jobs, dependencies, GPU-hours), job states, Slurm scripts, and the smoke
plan end to end: locally (training -> evaluation -> filled tables) and resubmitted through a real Slurm."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scgan_bench.plan import executors as X
from scgan_bench.plan import reproduce as R
from scgan_bench.errors import UsageError

from sb_testdata import HR_FACES, SHARED, need
from sb_slurm import slurm_cluster, why_not

ABLATIONS_1_4 = {"scgan", "scgan-wo-dsl", "scgan-wo-dhl", "scgan-fc", "scgan-sa", "scgan-se", "scgan-sd", "scgan-sm",
                 "scgan-wo-al", "scgan-wo-pl", "scgan-wo-cl"} | {f"scgan-ladv-{r}-{k}" for r, k in (
                     (4, 1), (3, 1), (3, 2), (3, 3), (3, 4), (2, 1), (2, 2), (2, 3), (2, 4), (2, 5), (2, 6), (1, 1),
                     (1, 2), (1, 3), (1, 4))}


def test_parse_tables():
    assert R.parse_tables("1-4") == [1, 2, 3, 4] and R.parse_tables("5,1,2-3") == [1, 2, 3, 5]
    assert R.parse_tables("all") == list(range(1, 8))
    for bad in ("0-2", "8", "x", "4-2", ""):
        with pytest.raises(UsageError):
            R.parse_tables(bad)


#: the groups of variants that train one SR network under recipe official, written out here (not read from
#: the code): the full model with the one that drops D_L1's adversarial term only (D_L1 trains D_HL, which
#: R_LS never sees), and Table 4's rows whose removed terms never reach R_LS
EQUAL_UNDER_OFFICIAL = [["scgan", "scgan-ladv-1-2"], ["scgan-ladv-1-1", "scgan-ladv-2-1"],
                        ["scgan-ladv-1-3", "scgan-ladv-2-4"], ["scgan-ladv-1-4", "scgan-ladv-2-5"],
                        ["scgan-ladv-2-2", "scgan-ladv-3-1"], ["scgan-ladv-2-3", "scgan-ladv-3-2"],
                        ["scgan-ladv-2-6", "scgan-ladv-3-4"], ["scgan-ladv-3-3", "scgan-ladv-4-1", "scgan-wo-al"]]


def test_full_plan_trains_each_group_of_equal_variants_once(tmp_path):
    """Issue 26: 9 of the 26 variants train a network identical to another's under the default recipe:
    one training per group; every member's evaluation reads that checkpoint; the old plan on request."""
    plan = R.build_plan(tmp_path / "p", [1, 2, 3, 4])
    train = {j.id for j in plan.jobs if j.kind == "train"}
    reused = {m for g in EQUAL_UNDER_OFFICIAL for m in g[1:]}
    assert len(reused) == 9 and len(train) == 17 and train == {f"train-{v}" for v in ABLATIONS_1_4 - reused}
    assert plan.maps["shared_checkpoints"] == {m: g[0] for g in EQUAL_UNDER_OFFICIAL for m in g[1:]}
    ev = plan.job("eval-widerface")
    folder = str((tmp_path / "p" / "train" / "scgan-ladv-3-3").resolve())
    assert ev.env["SCGAN_BENCH_CKPT_SCGAN_WO_AL"] == ev.env["SCGAN_BENCH_CKPT_SCGAN_LADV_4_1"] == folder
    assert "train-scgan-wo-al" not in ev.deps and "train-scgan-ladv-3-3" in ev.deps
    assert "also fills scgan-ladv-4-1, scgan-wo-al" in plan.job("train-scgan-ladv-3-3").what
    per_run = 200 * 312 * R.TRAIN_FLOPS_PER_STEP["scgan"] / (R.ASSUMED_TFLOPS * 1e12) / 3600
    assert sum(j.hours for j in plan.jobs if j.kind == "train") == pytest.approx(17 * per_run, rel=1e-3)
    every = R.build_plan(tmp_path / "q", [1, 2, 3, 4], share_equal=False)
    assert len([j for j in every.jobs if j.kind == "train"]) == 26 and every.maps["shared_checkpoints"] == {}


def test_a_row_read_from_an_equal_variants_checkpoint_says_so_in_the_table(tmp_path):
    """The table labels a reused checkpoint (trained as another variant of its group) and warns when a
    checkpoint of a variant that trains another network fills a row."""
    import json

    from scgan_bench.scgan.model import get_recipe
    from scgan_bench.tables.render import table_spec, with_recipes

    spec = table_spec(3)
    rs = get_recipe("official").spec()
    prov = {"scgan-wo-al": {"trained_variant": "scgan-ladv-3-3", "recipe": "official", "recipe_spec": rs},
            "scgan-wo-pl": {"trained_variant": "scgan", "recipe": "official", "recipe_spec": rs}}
    spec2, marks = with_recipes(spec, prov)
    rows = dict(spec2.extra_columns)["Recipe"]
    assert rows["ffhq/scgan-wo-al"] == "official (trained as scgan-ladv-3-3)"
    assert "reused" in marks[spec.cell("ffhq/scgan-wo-al", "fid")]
    assert "not this variant's result" in marks[spec.cell("ffhq/scgan-wo-pl", "fid")]
    json.dumps({str(k): v for k, v in marks.items()})


def test_full_plan_of_tables_1_to_4_trains_every_variant_and_evaluates_each_test_set(tmp_path):
    plan = R.build_plan(tmp_path / "p", [1, 2, 3, 4], roots={"ffhq": "/data/ffhq"}, share_equal=False)
    train = {j.id: j for j in plan.jobs if j.kind == "train"}
    assert set(train) == {f"train-{v}" for v in ABLATIONS_1_4} and len(train) == 26
    evals = {j.id: j for j in plan.jobs if j.kind == "eval"}
    assert set(evals) == {"eval-ls3dw", "eval-ffhq", "eval-widerface", "eval-webface"}
    for j in evals.values():  # each variant on the sets of its tables (Table 4: the real sets), after its training
        a = j.argv
        want = ABLATIONS_1_4 if j.id in ("eval-widerface", "eval-webface") else {
            v for v in ABLATIONS_1_4 if "ladv" not in v}
        assert set(a[a.index("--methods") + 1].split(",")) == want and set(j.deps) == {f"train-{v}" for v in want}
        assert j.env["SCGAN_BENCH_CKPT_SCGAN_WO_DSL"] == str((tmp_path / "p" / "train" / "scgan-wo-dsl").resolve())
        assert "--root" in a and "ffhq=/data/ffhq" in a
    assert set(evals["eval-ffhq"].argv[evals["eval-ffhq"].argv.index("--metrics") + 1].split(",")) == {
        "fid", "kid", "lpips"}
    assert set(evals["eval-webface"].argv[evals["eval-webface"].argv.index("--metrics") + 1].split(",")) == {
        "fid", "kid", "niqe"}
    t = train["train-scgan-sa"].argv
    assert t[:4] == ["train", "--method", "scgan", "--variant"] and t[t.index("--hr") + 1] == "dataset:ffhq"
    assert "--max-steps" not in t and t[t.index("--seed") + 1] == "2020"  # the recipe's 200 epochs
    assert plan.job("tables").deps == sorted(evals)
    # GPU-hours: 200 epochs x (20,000 // 64) steps x FLOPs per step / the assumed throughput, 26 runs
    per_run = 200 * 312 * R.TRAIN_FLOPS_PER_STEP["scgan"] / (R.ASSUMED_TFLOPS * 1e12) / 3600
    assert sum(j.hours for j in train.values()) == pytest.approx(26 * per_run, rel=1e-3)
    assert "projection" in plan.hours_basis
    measured = R.build_plan(tmp_path / "q", [1], step_seconds={"scgan": 0.05})
    assert measured.job("train-scgan").hours == pytest.approx(62_400 * 0.05 / 3600, rel=1e-3)
    assert "measured" in measured.hours_basis
    # the plan on disk round-trips; a missing plan is a usage error naming the command
    R.save_plan(plan)
    assert R.load_plan(tmp_path / "p").to_json() == plan.to_json()
    with pytest.raises(UsageError, match="build the plan first"):
        R.load_plan(tmp_path / "none")


def test_tables_5_to_7_retrain_the_trainable_baselines(tmp_path):
    plan = R.build_plan(tmp_path, [5, 6, 7])
    assert {j.id for j in plan.jobs if j.kind == "train"} == {"train-scgan", "train-cyclegan", "train-lrgan-retrained"}
    lr = plan.job("train-lrgan-retrained").argv
    assert lr[lr.index("--method") + 1] == "lrgan" and lr[lr.index("--variant") + 1] == "lrgan"
    ffhq = plan.job("eval-ffhq").argv
    assert {"lrgan", "lrgan-retrained", "cyclegan", "bicubic", "ground-truth"} <= set(
        ffhq[ffhq.index("--methods") + 1].split(","))


def _state(out: Path, job: R.Job, status: str, started: float, finished: float) -> None:
    p = R.state_path(out, job.id)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"status": status, "fingerprint": job.fingerprint(), "started_ts": started,
                             "finished_ts": finished}))


def test_a_job_is_done_only_after_everything_it_needs(tmp_path):
    plan = R.build_plan(tmp_path, [1], smoke=True, variants=["scgan"])
    train, ev, tables = plan.job("train-scgan"), plan.job("eval-demo"), plan.job("tables")
    assert not R.is_done(plan, train)
    _state(tmp_path, train, "done", 1.0, 2.0)
    _state(tmp_path, ev, "done", 3.0, 4.0)
    assert R.is_done(plan, train) and R.is_done(plan, ev) and not R.is_done(plan, tables)
    _state(tmp_path, train, "done", 5.0, 6.0)  # the training ran again: its evaluation is pending again
    assert not R.is_done(plan, ev)
    _state(tmp_path, ev, "failed", 7.0, 8.0)
    assert not R.is_done(plan, ev)
    changed = R.build_plan(tmp_path, [1], smoke=True, variants=["scgan"], seed=7)  # another definition
    _state(tmp_path, train, "done", 5.0, 6.0)
    assert R.is_done(plan, plan.job("train-scgan")) and not R.is_done(changed, changed.job("train-scgan"))
    rows = {r[0]: r for r in R.status_rows(plan)}
    assert rows["train-scgan"][1] == "done" and rows["eval-demo"][1] == "failed"


def test_slurm_scripts_hold_the_array_the_dependencies_and_torchrun(tmp_path):
    plan = R.build_plan(tmp_path, [1], smoke=True, variants=["scgan", "scgan-fc"], eval_gpus=2)
    opts = X.SlurmOptions(partition="gpu", account="proj", time_train="02:00:00", gpus_per_job=1, cpus_per_task=4,
                          max_parallel=3, extra=("--qos=high",))
    scripts = X.write_scripts(plan, plan.jobs, opts)
    assert set(scripts) == {"train-array", "eval-demo", "eval-demo-real", "tables"}
    arr = scripts["train-array"].read_text()
    for line in ("#SBATCH --array=0-1%3", "#SBATCH --partition=gpu", "#SBATCH --account=proj", "#SBATCH --qos=high",
                 "#SBATCH --time=02:00:00", "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=4",
                 "IDS=(train-scgan train-scgan-fc)"):
        assert line in arr, line
    assert '--job "$ID"' in arr and "reproduce --out" in arr
    ev = scripts["eval-demo"].read_text()
    assert "#SBATCH --gpus-per-node=2" in ev and "torch.distributed.run --standalone --nproc_per_node 2" in ev
    assert "--gpus-per-node" not in scripts["tables"].read_text()  # the tables job needs no GPU
    for s in scripts.values():  # bash accepts every script
        assert subprocess.run(["bash", "-n", str(s)]).returncode == 0, s


def test_gather_links_each_test_set_from_the_folder_that_evaluated_it(tmp_path):
    a, b, dest = tmp_path / "eval" / "demo", tmp_path / "eval" / "demo-real", tmp_path / "results"
    for run, sets in ((a, ("demo",)), (b, ("demo-real", "demo"))):
        for d in sets:
            for stage in ("data", "sr", "metrics"):
                (run / stage / d).mkdir(parents=True)
                (run / stage / d / "x.json").write_text(f"{run.name}:{stage}:{d}")
    R.gather_runs([b, a], dest)
    assert (dest / "sr" / "demo" / "x.json").read_text() == "demo:sr:demo"  # demo-real's reference copy loses
    assert (dest / "data" / "demo-real" / "x.json").read_text() == "demo-real:data:demo-real"
    assert os.stat(dest / "sr" / "demo" / "x.json").st_ino == os.stat(a / "sr" / "demo" / "x.json").st_ino
    (a / "sr" / "demo" / "x.json").unlink()
    (a / "sr" / "demo" / "x.json").write_text("new")
    R.gather_runs([b, a], dest)  # gathered again: the new file replaces the old link
    assert (dest / "sr" / "demo" / "x.json").read_text() == "new"


# ---------------------------------------------------------------------------------------------- end to end

def _reproduce(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scgan_bench", "reproduce", *args], env=env, capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def smoke_plan(tmp_path_factory):
    """The smoke plan of Tables 1-4 for two variants, run by the local executor: training on the shared
    faces (HR) and the demo's LR faces, evaluation on the demo sets, 8 images each."""
    need(HR_FACES)
    out = tmp_path_factory.mktemp("reproduce") / "plan"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCGAN_BENCH_")}
    env["SCGAN_BENCH_HOME"] = str(tmp_path_factory.mktemp("home"))
    if (SHARED / "weights" / "niqe_pris_params.npz").is_file():
        env["SCGAN_BENCH_WEIGHTS"] = str(SHARED / "weights")
    args = ["--out", str(out), "--tables", "1-4", "--smoke", "--variants", "scgan,scgan-fc", "--train-hr",
            str(HR_FACES), "--device", "cpu", "--limit", "8", "--workers", "1"]
    first = _reproduce(args, env)
    return out, args, env, first


@pytest.mark.slow
def test_smoke_plan_runs_locally_and_fills_every_covered_cell(smoke_plan):
    out, args, env, first = smoke_plan
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    plan = R.load_plan(out)
    assert {j.id for j in plan.jobs} == {"train-scgan", "train-scgan-fc", "eval-demo", "eval-demo-real", "tables"}
    assert all(R.is_done(plan, j) for j in plan.jobs)
    covered = {n: len(c) for n, c in plan.covers.items()}
    niqe = "SCGAN_BENCH_WEIGHTS" in env
    # Table 1: both variants x 4 sets x (FID, KID) [+ NIQE on the 2 real sets]; Tables 2-4: the SCGAN row
    assert covered == {"1": 16 + 4 * niqe, "2": 8 + 2 * niqe, "3": 8 + 2 * niqe, "4": 4 + 2 * niqe}
    filled, missing = R.table_coverage(plan)
    assert not missing and filled == sum(covered.values())
    # every number comes from the trained checkpoints' evaluation: Table 1's FID of SCGAN-fc on FFHQ -> demo
    grid = json.loads((out / "results" / "tables" / "table1.json").read_text())
    cell = next(c for c in grid["cells"] if (c["dataset"], c["method"], c["metric"]) == ("ffhq", "scgan-fc", "fid"))
    rows = list(csv.DictReader(open(out / "eval" / "demo" / "results.csv")))
    want = next(float(r["value"]) for r in rows if (r["method"], r["metric"], r["image_id"]) == ("scgan-fc", "fid-dlib", "*"))
    assert cell["value"] == want
    meta = json.loads((out / "eval" / "demo" / "run.json").read_text())
    fp = meta["methods"]["scgan-fc"]["fingerprint"]
    ckpt = out / "train" / "scgan-fc" / "rls.safetensors"
    assert fp["checkpoint_sha256"] == (ckpt.parent / "rls.safetensors.sha256").read_text().split()[0]
    final = json.loads((out / "results" / "run.json").read_text())
    assert final["status"] == "complete" and {c["dataset"] for c in grid["cells"]} == {"ls3dw", "ffhq", "widerface",
                                                                                      "webface"}
    log = (out / "logs" / "tables.log").read_text()  # gathering recomputes nothing
    assert "recomputed: 0 images prepared, 0 images super resolved, 0 metric values" in log, log[-2000:]
    assert (out / "results" / "report.html").exists() and (out / "results" / "tables" / "table4.tex").exists()
    status = _reproduce(["--out", str(out), "--status"], env)
    assert status.returncode == 0 and "5 done" in status.stdout
    # submitted again: every job is done, nothing runs
    again = _reproduce(args, env)
    assert again.returncode == 0 and again.stdout.count("done already") == 5 and "started" not in again.stdout


@pytest.mark.slow
def test_smoke_plan_resubmitted_through_a_real_slurm_redoes_what_is_not_done(smoke_plan, tmp_path, monkeypatch):
    reason = why_not()
    if reason:
        pytest.skip(reason)
    out, args, env, first = smoke_plan
    assert first.returncode == 0
    plan = R.load_plan(out)
    R.state_path(out, "train-scgan-fc").unlink()  # a training job whose record was lost
    with slurm_cluster(tmp_path / "slurm") as senv:
        monkeypatch.setenv("SLURM_CONF", senv["SLURM_CONF"])  # for squeue here
        senv = {**env, "SLURM_CONF": senv["SLURM_CONF"]}
        sub = _reproduce([*args, "--executor", "slurm", "--cpus-per-task", "1", "--gpus-per-train", "0",
                          "--eval-gpus", "0", "--time-train", "00:30:00", "--time-eval", "00:30:00"], senv)
        assert sub.returncode == 0, sub.stdout + sub.stderr
        assert "train-scgan: done already" in sub.stdout and "training array (1 jobs)" in sub.stdout
        ids = json.loads((out / "slurm" / "submitted.json").read_text())
        assert set(ids) == {"train-scgan-fc", "eval-demo", "eval-demo-real", "tables"}
        while X.queue_states(list(ids.values())):  # until every job left the queue (Slurm's 30 min limit per job)
            time.sleep(1)
        states = {j.id: R.read_state(out, j).get("status") for j in plan.jobs}
        logs = {i: R.last_log_line(out, i) for i in ids}
        assert all(R.is_done(plan, j) for j in plan.jobs), (states, logs)
        for job_id, sid in ids.items():  # each ran inside its Slurm job
            assert R.read_state(out, plan.job(job_id))["slurm_job"] == sid.split("_")[0], job_id
        filled, missing = R.table_coverage(plan)
        assert not missing and filled == sum(len(c) for c in plan.covers.values())
        status = _reproduce(["--out", str(out), "--status"], senv)
        assert "slurm " + ids["tables"] in status.stdout and "5 done" in status.stdout
        # sbatch --test-only: the controller checks every script of a new plan, nothing is queued
        other = [*args, "--executor", "slurm", "--cpus-per-task", "1", "--gpus-per-train", "0", "--eval-gpus", "0",
                 "--test-only"]
        other[other.index("--out") + 1] = str(tmp_path / "other")
        test = _reproduce(other, senv)
        assert test.returncode == 0, test.stdout + test.stderr
        assert test.stdout.count("to start at") == 4 and not X.queue_states(["1", "2", "3", "4", "5", "6", "7", "8"])
        assert not (tmp_path / "other" / "slurm" / "submitted.json").exists()
        # issue 26: the defaults (1 GPU, 8 CPUs) on this GPU-less 2-CPU partition are refused in one line
        # each before anything is queued (sbatch would say "Invalid generic resource" / jobs would wait forever)
        defaults = [*args, "--executor", "slurm"]
        defaults[defaults.index("--out") + 1] = str(tmp_path / "defaults")
        refused = _reproduce(defaults, senv)
        assert refused.returncode == 2 and "its nodes have no GPU(s) (sinfo)" in refused.stderr, refused.stderr
        held = [a for a in other if a != "--test-only"] + ["--sbatch-arg=--hold"]
        held[held.index("--out") + 1] = str(tmp_path / "held")
        sub = _reproduce(held, senv)
        assert sub.returncode == 0, sub.stdout + sub.stderr
        hids = json.loads((tmp_path / "held" / "slurm" / "submitted.json").read_text())
        subprocess.run(["scancel", *sorted({i.split("_")[0] for i in hids.values()})], env=senv, check=True)
        while X.queue_states(list(hids.values())):
            time.sleep(1)
        status = _reproduce(["--out", str(tmp_path / "held"), "--status"], senv)
        rows = {ln.split()[0]: ln.split()[1] for ln in status.stdout.splitlines()[1:] if ln.strip()}
        assert rows["train-scgan"] == "cancelled" and rows["tables"] == "cancelled", status.stdout


def test_slurm_submission_chains_dependencies_and_skips_done_or_queued_jobs(tmp_path, monkeypatch):
    """Fast, with stand-in sbatch / squeue on PATH (the real Slurm runs in the slow test below)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    (bin_dir / "sbatch").write_text(f"""#!/bin/bash
n=$(( $(cat {calls} 2>/dev/null | wc -l) + 100 ))
echo "$@" >> {calls}
echo "$n"
""")
    queued = tmp_path / "queued.txt"
    queued.write_text("")
    (bin_dir / "squeue").write_text(f"#!/bin/bash\ncat {queued}\n")
    for f in ("sbatch", "squeue"):
        (bin_dir / f).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    plan = R.build_plan(tmp_path / "p", [1], smoke=True, variants=["scgan", "scgan-fc"])
    _state(plan.out, plan.job("train-scgan"), "done", 1.0, 2.0)  # done: not submitted, no dependency on it
    ids = X.submit_slurm(plan, X.SlurmOptions(gpus_per_job=0), say=lambda s: None)
    lines = calls.read_text().splitlines()
    assert len(lines) == 4 and lines[0].endswith("train-array.sbatch")  # one array: train-scgan-fc alone
    assert "IDS=(train-scgan-fc)" in (plan.out / "slurm" / "train-array.sbatch").read_text()
    assert ids["train-scgan-fc"] == "100_0"
    assert "--dependency=afterok:100_0" in lines[1] and lines[1].endswith("eval-demo.sbatch")
    assert "--dependency=afterok:100_0" in lines[2] and lines[2].endswith("eval-demo-real.sbatch")
    assert f"--dependency=afterok:{ids['eval-demo']}:{ids['eval-demo-real']}" in lines[3]
    assert json.loads((plan.out / "slurm" / "submitted.json").read_text()) == ids
    # submitted again while the tables job is still queued and the rest ran: nothing is submitted twice
    queued.write_text(f"{ids['tables']} PENDING\n")
    for k, j in enumerate(("train-scgan-fc", "eval-demo", "eval-demo-real")):
        _state(plan.out, plan.job(j), "done", 3.0 + 2 * k, 4.0 + 2 * k)
    said: list[str] = []
    X.submit_slurm(plan, X.SlurmOptions(gpus_per_job=0), say=said.append)
    assert len(calls.read_text().splitlines()) == 4 and any("still queued" in s for s in said)


def test_slurm_refuses_what_the_partition_cannot_run_and_reads_cancelled_jobs_back(tmp_path, monkeypatch):
    """Issue 26, with stand-in sinfo / sbatch / squeue / scontrol on PATH: GPUs asked of a CPU partition and
    more CPUs per task than a node has are refused in one line each before anything is submitted; a job
    cancelled while pending shows as cancelled in --status, not pending."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    scripts = {
        "sinfo": "echo 'cpu*|2|(null)'\necho 'gpu|64|gpu:a100:4(S:0-1)'\n",
        "sbatch": f"n=$(( $(cat {calls} 2>/dev/null | wc -l) + 100 ))\necho \"$@\" >> {calls}\necho $n\n",
        "squeue": "true\n",
        "scontrol": "echo 'JobId=104 ArrayJobId=100 ArrayTaskId=0 JobState=CANCELLED Reason=None'\n"
                    "echo 'JobId=101 JobState=CANCELLED Reason=Dependency'\n",
        "sacct": "exit 1\n"}
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/bash\n" + body)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    plan = R.build_plan(tmp_path / "p", [1], smoke=True, variants=["scgan"])
    with pytest.raises(UsageError) as e:
        X.submit_slurm(plan, X.SlurmOptions(cpus_per_task=1), say=lambda s: None)   # default: 1 GPU per job
    msg = str(e.value)
    assert "\n" not in msg and "partition cpu: its nodes have no GPU(s)" in msg and "--gpus-per-train 0" in msg
    with pytest.raises(UsageError, match="the jobs ask for 1: pass"):          # evaluation's GPU alone
        X.submit_slurm(plan, X.SlurmOptions(gpus_per_job=0, cpus_per_task=1), say=lambda s: None)
    cpu_plan = R.build_plan(tmp_path / "c", [1], smoke=True, variants=["scgan"], eval_gpus=0)
    with pytest.raises(UsageError, match="at most 2 CPUs .* --cpus-per-task 2 or fewer"):
        X.submit_slurm(cpu_plan, X.SlurmOptions(gpus_per_job=0, cpus_per_task=8), say=lambda s: None)
    with pytest.raises(UsageError, match="no such partition .* cpu, gpu"):
        X.submit_slurm(cpu_plan, X.SlurmOptions(partition="big", gpus_per_job=0, cpus_per_task=1), say=lambda s: None)
    assert not calls.exists()                                    # nothing was submitted
    ok = X.SlurmOptions(partition="gpu", gpus_per_job=4, cpus_per_task=64)   # what the GPU partition has
    plan = R.build_plan(tmp_path / "g", [1], smoke=True, variants=["scgan"])
    ids = X.submit_slurm(plan, ok, say=lambda s: None)
    assert ids["train-scgan"] == "100_0" and ids["eval-demo"] == "101"
    rows = {r[0]: r for r in R.status_rows(plan, *X.slurm_status(plan))}
    assert rows["train-scgan"][1] == "cancelled" and "slurm 100_0 cancelled" in rows["train-scgan"][2]
    assert rows["eval-demo"][1] == "cancelled"


def test_array_task_ranges_as_slurm_prints_them():
    assert X._array_tasks("3") == [3] and X._array_tasks("0-2") == [0, 1, 2]
    assert X._array_tasks("0-6:3") == [0, 3, 6] and X._array_tasks("1,4-5%2") == [1, 4, 5]


def test_partition_gpus_are_read_from_every_gres_form():
    assert X._gres_gpus("(null)") == 0 and X._gres_gpus("gpu:4") == 4
    assert X._gres_gpus("gpu:a100:2(S:0-1)") == 2 and X._gres_gpus("gpu:a100:2,gpu:v100:1,shard:8") == 3
