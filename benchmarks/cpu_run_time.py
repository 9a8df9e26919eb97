"""Wall time of the offline demo (and so of a CPU `scgan-bench run` with the dlib metrics) with the
dlib metrics in one process vs spread over worker processes, measured back to back in one call on
the same machine, with images/s per stage (from run.json's ``stages``).

    python benchmarks/cpu_run_time.py [--workers 1,2]

Each configuration runs `scgan-bench demo --workers W` into a fresh folder (nothing cached). Results
are identical across W (the per-image values are computed the same way; compared here). Writes
benchmarks/out/cpu_run_time.json.
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

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args()
    out: dict[str, dict] = {}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for w in [int(x) for x in args.workers.split(",")]:
            run = Path(tmp) / f"w{w}"
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "scgan_bench.cli", "demo", "--workers", str(w), "--out", str(run),
                            "--quiet"], check=True, capture_output=True)
            wall = time.perf_counter() - t
            stages = json.loads((run / "run.json").read_text()).get("stages", [])
            dlib = sum(s["seconds"] for s in stages if s["stage"].startswith("metric") and any(
                k in s["what"] for k in ("hog", "dlib", "landmark")))
            out[f"workers={w}"] = {"demo_wall_s": wall, "run_stages_s": sum(s["seconds"] for s in stages),
                                   "dlib_metric_s": dlib,
                                   "stages": [{**s, "images_per_s": s["count"] / s["seconds"] if s["seconds"] else None}
                                              for s in stages]}
            results[w] = (run / "results.csv").read_text()
    same = len(set(results.values())) == 1
    machine = {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()}
    print(f"machine: {machine}")
    for k, v in out.items():
        print(f"{k}: demo {v['demo_wall_s']:.1f} s (run stages {v['run_stages_s']:.1f} s, of which dlib metrics "
              f"{v['dlib_metric_s']:.1f} s)")
    print(f"results.csv identical across workers: {same}")
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "cpu_run_time.json").write_text(json.dumps({"machine": machine, "runs": out,
                                                                "identical": same}, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
