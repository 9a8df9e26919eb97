"""What every part of the device check uses: the checkout's paths, importing scgan_bench where it is
not installed, the time budget, device-synchronised timing, the faces and the weights folder."""
from __future__ import annotations

import hashlib
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parents[1]   # benchmarks/
REPO = HERE.parent


def bootstrap() -> None:
    """Import scgan_bench from this checkout also where it is not installed (the device machine):
    a copy laid out as installed (baselines/ and datasets/ inside the package); tests/ for the
    official-layout random weights."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import scgan_bench.baselines  # noqa: F401  (an editable install maps them)
        return
    except ImportError:
        pass
    root = Path(tempfile.mkdtemp(prefix="scgan-bench-src-"))
    shutil.copytree(REPO / "scgan_bench", root / "scgan_bench", ignore=shutil.ignore_patterns("__pycache__"))
    for sub in ("baselines", "datasets"):
        shutil.copytree(REPO / sub, root / "scgan_bench" / sub, ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(root))
    for name in [m for m in sys.modules if m == "scgan_bench" or m.startswith("scgan_bench.")]:
        del sys.modules[name]


class Clock:
    """The budget: each part gets a share; ``left()`` is what remains of the whole."""

    def __init__(self, seconds: float) -> None:
        self.total, self.t0 = seconds, time.perf_counter()

    def left(self) -> float:
        return self.total - (time.perf_counter() - self.t0)


def sync(dev: str) -> None:
    import torch

    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], dev: str, repeat: int = 3) -> float:
    """Best wall seconds of ``repeat`` calls after one warm-up, device synchronised."""
    fn()
    sync(dev)
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync(dev)
        best = min(best, time.perf_counter() - t)
    return best


def load_faces(folder: Path | None, n: int) -> list:
    """``n`` 64 px RGB faces: the given folder's images (cycled), else scikit-image's LFW faces."""
    import numpy as np
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")) if folder else []
    if files:
        ims = [np.asarray(Image.open(f).convert("RGB").resize((64, 64), Image.Resampling.BICUBIC)) for f in files]
    else:
        from skimage import data

        lfw = data.lfw_subset()[:100]
        ims = [np.repeat(np.asarray(Image.fromarray((f * 255).astype(np.uint8)).resize((64, 64)))[..., None], 3, 2)
               for f in lfw]
    return load_faces_like(ims, n)  # beyond the folder: flipped / shifted copies, no two equal


def load_faces_like(faces: list, n: int) -> list:
    """``n`` distinct faces from ``faces`` (flipped / shifted copies past its length)."""
    import numpy as np

    out = []
    for k in range(n):
        im, r = faces[k % len(faces)], k // len(faces)
        out.append(np.ascontiguousarray(np.roll(im[:, ::-1] if r % 2 else im, r, axis=1) if r else im))
    return out


def weights_home(tmp: Path, smoke: bool) -> dict[str, str]:
    """Point the weights manager at a scratch folder; put random official-layout files there for the
    metric networks whose real files are absent. Returns asset -> "official" | "random"."""
    import torch
    from facenet_pytorch import InceptionResnetV1
    from sb_testdata import random_inception_state_dict
    from torchvision.models import alexnet

    from scgan_bench.assets import weights as W
    from scgan_bench.networks.retinaface import RetinaFace

    made = {}
    makers = {"inception-fid": random_inception_state_dict, "alexnet": lambda: alexnet(weights=None).state_dict(),
              "facenet-vggface2": lambda: InceptionResnetV1(classify=True, num_classes=8631).state_dict(),
              "retinaface-mobilenet0.25": lambda: RetinaFace("mobilenet0.25").state_dict()}
    wdir = Path(os.environ["SCGAN_BENCH_WEIGHTS"])
    for name, make in makers.items():
        if W.status(name).state == "verified":
            made[name] = "official"
            continue
        path = wdir / W.ASSETS.get(name).filename
        torch.manual_seed(0)
        torch.save(make(), path)
        W.register_sha256(name, hashlib.sha256(path.read_bytes()).hexdigest())
        made[name] = "random weights, official layout"
    return made
