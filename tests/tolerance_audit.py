"""Run the suite under several CPU instruction sets and thread counts, recording how close every
numeric check comes to its limit, and write one table of the worst cases (issue 26).

    python tests/tolerance_audit.py [--configs default:1,default:2,avx2:1,avx2:2] [-m "not slow"]
                                    [--slow-configs default:2,avx2:1]
                                    [--out benchmarks/results/tolerance_audit.md] [pytest args...]

Each configuration is ``ISA:THREADS``: ``ATEN_CPU_CAPABILITY=ISA`` (``native`` leaves it unset) and
``OMP_NUM_THREADS=THREADS``; ``--slow-configs`` runs the slow tests (``-m slow``) under those too, as
columns of their own. A check whose worst ratio (observed / allowed) over all configurations is
above 0.5 is listed first: its limit leaves less than a factor of 2 for a CPU not measured here. Before
changing a tolerance, run this (or at least ``make test-isa``) and set the limit from every column.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:   # not Linux
        lines = []
    names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown CPU"


def run_config(isa: str, threads: int, marker: str | None, extra: list[str], log_dir: Path) -> tuple[Path, int, float]:
    suffix = "_slow" if marker == "slow" else ""
    out = log_dir / f"margins_{isa}_{threads}{suffix}.jsonl"
    out.unlink(missing_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if isa == "native":
        env.pop("ATEN_CPU_CAPABILITY", None)
    else:
        env["ATEN_CPU_CAPABILITY"] = isa
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--record-margins", str(out)]
    cmd += (["-m", marker] if marker else []) + extra
    t0 = time.monotonic()
    with open(log_dir / f"pytest_{isa}_{threads}{suffix}.log", "w") as log:
        rc = subprocess.call(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    return out, rc, time.monotonic() - t0


def merge(files: dict[str, Path]) -> tuple[dict[str, dict], dict[str, str]]:
    """``where`` -> the worst record per configuration (and the test that made it); and the checks whose
    margin could not be computed (``where`` -> why)."""
    worst: dict[str, dict] = {}
    unmeasured: dict[str, str] = {}
    for cfg, path in files.items():
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r["kind"] == "unmeasured":
                unmeasured[r["where"]] = r["error"]
                continue
            if r.get("op") in (">", ">="):
                continue          # lower bounds (a std above a floor, an accuracy above a level) are not tolerances
            w = worst.setdefault(r["where"], {"expr": r.get("expr", r["kind"]), "by": {}})
            prev = w["by"].get(cfg)
            if prev is None or r["ratio"] > prev["ratio"]:
                w["by"][cfg] = {"ratio": r["ratio"], "observed": r["observed"], "limit": r["limit"], "test": r["test"]}
    return worst, unmeasured


def report(worst: dict[str, dict], configs: list[str], meta: list[str], unmeasured: dict[str, str] | None = None
           ) -> str:
    rows = sorted(worst.items(), key=lambda kv: -max(v["ratio"] for v in kv[1]["by"].values()))
    out = ["# Tolerance audit", "", *meta, "",
           "Worst observed / allowed per check and configuration (ISA:threads); 1.0 is the limit. `moves`: the",
           "ratio differs between configurations, i.e. float noise of the CPU's kernels decides it (a check",
           "whose ratio is the same everywhere compares deterministic values: a property, not a tolerance).", "",
           "| check | " + " | ".join(configs) + " | worst | moves | observed at worst | limit | test |",
           "|---|" + "---|" * (len(configs) + 5)]
    for where, w in rows:
        by = w["by"]
        top_cfg = max(by, key=lambda c: by[c]["ratio"])
        top = by[top_cfg]
        cells = [f"{by[c]['ratio']:.3g}" if c in by else "" for c in configs]
        ratios = [v["ratio"] for v in by.values()]
        moves = "yes" if len(ratios) > 1 and max(ratios) - min(ratios) > 1e-3 * max(ratios) else ""
        out.append(f"| {where} | " + " | ".join(cells) + f" | {top['ratio']:.3g} | {moves} | {top['observed']:.3g} | "
                   f"{top['limit']:.3g} | {top['test'].split('::', 1)[-1][:70]} |")
    if unmeasured:
        out += ["", "Passing checks whose margin could not be computed (not in the table):", ""]
        out += [f"- {where}: {why}" for where, why in sorted(unmeasured.items())]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="default:1,default:2,avx2:1,avx2:2")
    ap.add_argument("-m", dest="marker", default=None, help="pytest marker expression (e.g. 'not slow')")
    ap.add_argument("--slow-configs", default="", help="configurations for the slow tests (-m slow), e.g. default:2")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "tolerance_audit.md"))
    ap.add_argument("--logs", default=None, help="folder for the per-configuration logs (default: a temporary one)")
    args, extra = ap.parse_known_args(argv)
    runs = [(c.strip(), args.marker) for c in args.configs.split(",") if c.strip()]
    runs += [(c.strip(), "slow") for c in args.slow_configs.split(",") if c.strip()]
    configs = [c + (" slow" if m == "slow" else "") for c, m in runs]
    log_dir = Path(args.logs or tempfile.mkdtemp(prefix="tolerance_audit_"))
    log_dir.mkdir(parents=True, exist_ok=True)
    files, meta, bad = {}, [], 0
    import torch

    meta.append(f"CPU: {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}; "
                f"native ISA {torch.backends.cpu.get_cpu_capability()}; {time.strftime('%Y-%m-%d')}.")
    meta.append(f"Command: `python tests/tolerance_audit.py --configs {args.configs}"
                f"{' -m ' + repr(args.marker) if args.marker else ''}"
                f"{' --slow-configs ' + args.slow_configs if args.slow_configs else ''}"
                f"{' ' + ' '.join(extra) if extra else ''}`.")
    for label, (cfg, marker) in zip(configs, runs):
        isa, _, threads = cfg.partition(":")
        path, rc, secs = run_config(isa, int(threads or 2), marker, extra, log_dir)
        files[label] = path
        tail = path.with_name(path.name.replace("margins_", "pytest_").replace(".jsonl", ".log")).read_text()
        tail = tail.strip().splitlines()[-1:]
        meta.append(f"- {label}: pytest exit {rc} in {secs:.0f} s: {tail[0] if tail else ''}")
        print(meta[-1], flush=True)
        bad += rc != 0
    worst, unmeasured = merge(files)
    text = report(worst, configs, meta, unmeasured)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(f"wrote {args.out} (logs in {log_dir})")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
