"""How much a face restorer's 64 px output depends on the 16 -> 512 px bridge: the default (Pillow
bicubic) against ``bridge=official`` (each method's own script: cv2 INTER_LINEAR for CodeFormer and
GFPGAN), in 8-bit levels (max, mean) on real 16 px faces, with random weights in each method's official
layout (tests/baseline_weights.py; the values of trained weights differ, the sensitivity is what is
shown). A method whose numbers are to be compared with its paper needs the bridge its paper used.

    python benchmarks/bridge_sensitivity.py [--methods codeformer,gfpgan-v1.3,restoreformer] [--faces 4]

Writes benchmarks/out/bridge_sensitivity.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def files(method: str):
    """(asset, container object) of a random official-layout file for ``method``."""
    import baseline_weights as B

    return {"codeformer": ("codeformer", lambda: {"params_ema": B.codeformer_state_dict()}),
            "gfpgan-v1.3": ("gfpgan-v1.3", lambda: {"params_ema": B.gfpgan_clean_state_dict()}),
            "restoreformer": ("restoreformer-pth", lambda: {"params_ema": B.restoreformer_state_dict()}),
            }[method]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="codeformer")
    ap.add_argument("--faces", type=int, default=4)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="scgan-bench-bridge-"))
    os.environ.update(SCGAN_BENCH_WEIGHTS=str(home), SCGAN_BENCH_OFFLINE="1", SCGAN_BENCH_HOME=str(home / "home"))
    import numpy as np

    from baseline_weights import lr_faces, save
    from scgan_bench.assets import weights as W
    from scgan_bench.io.manifest import sha256_file
    from scgan_bench.registries import METHODS, load_plugins
    from scgan_bench.run.superres import quantise

    load_plugins()
    lr = lr_faces(args.faces)
    out = {"machine": platform.platform(), "faces": args.faces, "methods": {}}
    for method in args.methods.split(","):
        asset, make = files(method)
        path = save(make(), home / W.ASSETS.get(asset).filename)
        W.register_sha256(asset, sha256_file(path))
        spec = METHODS.get(method)
        extra = {"input_size": 512} if method.startswith("restoreformer") else {}
        a = quantise(spec.create(any_config=True, **extra).upscale(lr)).astype(int)
        b = quantise(spec.create(any_config=True, bridge="official", **extra).upscale(lr)).astype(int)
        diff = np.abs(a - b)
        out["methods"][method] = {"max_levels": int(diff.max()), "mean_levels": float(diff.mean())}
        print(f"{method:<14} bicubic vs official bridge: max {diff.max()} levels, mean {diff.mean():.1f}", flush=True)
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "bridge_sensitivity.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
