"""Start-up time of the commands a user types most (`list`, `table`): wall seconds of a fresh
process, median of N runs, and which heavy modules each one imported (none, by design: torch alone
takes over a second to import on 2 cores).

    python benchmarks/startup.py [--runs 5]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = (["list", "methods"], ["list", "metrics"], ["list", "datasets"], ["table", "5", "--paper", "--out", "{tmp}"])
PROBE = ("import sys; from scgan_bench.cli import main; rc = main(sys.argv[1:]); "
         "print('HEAVY', ','.join(m for m in ('torch', 'scipy', 'sklearn', 'matplotlib') if m in sys.modules) or '-', "
         "file=sys.stderr); sys.exit(rc)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, {args.runs} runs each")
    base = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        base.append(time.perf_counter() - t0)
    print(f"{'python -c pass':40s} {statistics.median(base):6.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        for cmd in COMMANDS:
            argv = [a.replace("{tmp}", tmp) for a in cmd]
            times, heavy = [], ""
            for _ in range(args.runs):
                t0 = time.perf_counter()
                res = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True)
                times.append(time.perf_counter() - t0)
                if res.returncode:
                    print(res.stderr[-1000:], file=sys.stderr)
                    return 1
                heavy = res.stderr.strip().splitlines()[-1].removeprefix("HEAVY ")
            print(f"{'scgan-bench ' + ' '.join(cmd[:2]):40s} {statistics.median(times):6.2f} s   heavy modules: {heavy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
