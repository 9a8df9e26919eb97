"""The device check's report: JSON + Markdown after every part (and to ``$OUT``), and the summary table
against the goals."""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

GOALS = {"step_ms": 57.0, "recipe_hours": 1.0, "metric_images_per_s": 2000.0, "host_ops": 3000,
         "run_images_per_s": 600.0}


def markdown(rep: dict[str, Any]) -> str:
    env = rep["parts"].get("env", {}).get("result", {})
    lines = [f"# GPU check: {env.get('gpu', env.get('device', '?'))}, {env.get('date', '')}", "",
             f"torch {env.get('torch')}, Python {env.get('python')}, {env.get('cpus')} CPUs; measured bf16 matmul "
             f"peak {env.get('bf16_matmul_tflops', float('nan')):.0f} TFLOP/s ({env.get('bf16_matmul_size')}^3). "
             f"Command: `{rep['command']}`; weights: {rep.get('weights')}.", ""]
    for name, part in rep["parts"].items():
        lines.append(f"## {name} ({part['seconds']:.1f} s)")
        lines.append("")
        lines.append("```json")
        lines.append(json.dumps(part.get("result", part.get("error")), indent=1, default=str))
        lines.append("```")
        lines.append("")
    lines += ["## Summary", "", *summary(rep)]
    return "\n".join(lines) + "\n"


def summary(rep: dict[str, Any]) -> list[str]:
    p = rep["parts"]
    out = ["| what | value | goal |", "|---|---|---|"]
    env = p.get("env", {}).get("result", {})
    speed = {**p.get("train speed", {}).get("result", {}).get("modes", {}),
             **p.get("train speed compiled", {}).get("result", {}).get("modes", {})}
    for mode, r in speed.items():
        if "ms_per_step" in r:
            tf = r.get("tflops") or float("nan")
            pct = 100 * tf / env["bf16_matmul_tflops"] if env.get("bf16_matmul_tflops") else float("nan")
            out.append(f"| SCGAN step {mode} | {r['ms_per_step']:.1f} ms, {tf:.1f} TFLOP/s ({pct:.0f}% of peak), "
                       f"full recipe {r['full_recipe_hours']:.2f} h; {r.get('host_ops_per_step', 0):,} host ops/step | "
                       f"<= {GOALS['step_ms']:.0f} ms, <= 1 h; <= {GOALS['host_ops']:,} ops |")
        else:
            out.append(f"| SCGAN step {mode} | {r.get('error') or 'skipped: ' + str(r.get('skipped'))} | |")
    cmd = p.get("train command", {}).get("result")
    if cmd:
        bench = speed.get(cmd["command"].split("--speed ")[1].split()[0], {}).get("ms_per_step")
        pace = cmd.get("steady_ms_per_step")
        gap = f"{100 * (pace / bench - 1):+.0f}% vs the step benchmark" if pace and bench else "no comparison"
        out.append(f"| `scgan-bench train`, {cmd['steps']} steps | steady {pace or float('nan'):.1f} ms/step ({gap}); "
                   f"checkpoints {100 * cmd['checkpoint_share_of_wall']:.1f}% of wall ({cmd['checkpoints']} saves) | "
                   f"within 15%; <= 5% |")
    thr = p.get("metric throughput", {}).get("result", {})
    if thr:
        run = thr["run"]
        out.append(f"| whole run, {len(run['metrics'])} GPU metrics, cold caches | {run['images_per_s']:.0f} images/s "
                   f"({run['images']} images) | >= {GOALS['run_images_per_s']:.0f} images/s |")
        if run.get("further_method_images_per_s"):
            out.append(f"| a further method, references cached | {run['further_method_images_per_s']:.0f} images/s | "
                       f">= {GOALS['metric_images_per_s']:.0f} images/s |")
        tf = thr["torch_fidelity"]
        out.append(f"| FID/KID vs torch-fidelity | rel. diff {tf['fid_relative_difference']:.1e} / "
                   f"{tf['kid_relative_difference']:.1e}; {tf['seconds']:.1f} s vs our run's {run['seconds']:.1f} s | equal |")
    for name in ("metric agreement", "method agreement", "bf16 losses"):
        res = p.get(name, {}).get("result")
        if isinstance(res, dict):
            items = res.values() if name != "bf16 losses" else [res]
            bad = [k for k, v in (res.items() if name != "bf16 losses" else [("step", res)])
                   if isinstance(v, dict) and v.get("ok") is False]
            out.append(f"| {name} | {'all within tolerance' if not bad else 'OUTSIDE tolerance: ' + ', '.join(bad)} "
                       f"({sum(1 for v in items if isinstance(v, dict) and v.get('ok'))} checked) | stated per row |")
    failed = [k for k, v in p.items() if "error" in v]
    if failed:
        out.append(f"| parts that failed | {', '.join(failed)} | none |")
    return out


def write_report(rep: dict[str, Any], out: Path, dev: str) -> str:
    """``gpu_check_<card>_<date>.{json,md}`` under ``out`` (and ``$OUT`` with the loss curve); the stem."""
    tag = "smoke" if rep["smoke"] else rep["parts"].get("env", {}).get("result", {}).get("gpu", dev).replace(" ", "-")
    stem = f"gpu_check_{tag}_{_dt.date.today().isoformat()}{rep.get('label', '')}"
    (out / f"{stem}.json").write_text(json.dumps(rep, indent=1, default=str))
    (out / f"{stem}.md").write_text(markdown(rep))
    if os.environ.get("OUT"):
        for p in (out / f"{stem}.json", out / f"{stem}.md", out / "gpu_check_loss_curve.png"):
            if p.exists():
                shutil.copy(p, Path(os.environ["OUT"]) / p.name)
    return stem
