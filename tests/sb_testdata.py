"""Test-data helpers shared by the test modules (imported via pytest's ``pythonpath = tests``)."""
from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SCGAN_BENCH_SHARED", REPO.parent / "shared"))
HR_FACES = SHARED / "data" / "hr_faces_128"
WILD = SHARED / "data" / "wild_boxes"
ORL = SHARED / "data" / "orl_faces"


def need(path: Path) -> Path:
    """Skip the test when a shared test-data folder is missing, saying how to provide it."""
    if not path.exists():
        pytest.skip(f"test data {path} is absent: put the project's shared/ folder beside the "
                    f"repository or set SCGAN_BENCH_SHARED to it")
    return path


def shared_faces(n: int, size: int = 64) -> list[np.ndarray]:
    """The first ``n`` shared HR faces (sorted by name), Pillow-bicubic to ``size`` px (skip when absent)."""
    from scgan_bench.io.image_io import read_image
    from scgan_bench.io.resize import resize_uint8

    return [resize_uint8(read_image(p), (size, size), "bicubic") for p in sorted(need(HR_FACES).glob("*.png"))[:n]]


def wider_layout(dst: Path, subset: str = "val") -> Path:
    """Lay dlib's boxed wild photos out as WIDER FACE: ``WIDER_<subset>/images/<event>/*.jpg`` and
    ``wider_face_split/wider_face_<subset>_bbx_gt.txt`` converted from training.xml/testing.xml."""
    src = need(WILD)
    lines = []
    for xml_name, event in (("training.xml", "0--Parade"), ("testing.xml", "1--Handshaking")):
        root = ET.parse(src / xml_name).getroot()
        for img in root.iter("image"):
            f = img.get("file")
            if not (src / f).exists():
                continue
            (dst / f"WIDER_{subset}" / "images" / event).mkdir(parents=True, exist_ok=True)
            shutil.copy(src / f, dst / f"WIDER_{subset}" / "images" / event / Path(f).name)
            boxes = [b for b in img.iter("box")]
            lines.append(f"{event}/{Path(f).name}")
            lines.append(str(len(boxes)))
            if not boxes:
                lines.append("0 0 0 0 0 0 0 0 0 0")
            for b in boxes:
                # blur/expression/illumination/invalid/occlusion/pose: mark 'ignore' boxes invalid
                invalid = 1 if b.get("ignore") == "1" else 0
                lines.append(f"{b.get('left')} {b.get('top')} {b.get('width')} {b.get('height')} "
                             f"0 0 0 {invalid} 0 0 ")
    (dst / "wider_face_split").mkdir(parents=True, exist_ok=True)
    (dst / "wider_face_split" / f"wider_face_{subset}_bbx_gt.txt").write_text("\n".join(lines) + "\n")
    return dst


def tamper(path: Path) -> None:
    """Flip one bit of a file (its sha256 no longer matches) and forget the cached digests, so the weights
    manager checks the file again."""
    from scgan_bench.assets.weights import _DIGESTS

    data = bytearray(Path(path).read_bytes())
    data[-1] ^= 1
    Path(path).write_bytes(bytes(data))
    _DIGESTS.clear()


def rgb_face(seed: int = 0, size: int = 64) -> np.ndarray:
    """A real face from shared/data if present, else scikit-image's astronaut face, cropped a few pixels off
    and mirrored by ``seed`` (8 distinct images: tests that seed by image content need different faces)."""
    files = sorted(HR_FACES.glob("*.png")) if HR_FACES.exists() else []
    from PIL import Image

    if files:
        im = Image.open(files[seed % len(files)]).convert("RGB")
    else:
        from skimage import data

        s = seed % 8
        dx, dy = (s // 2 % 2) * 6, (s // 4) * 6
        im = Image.fromarray(data.astronaut()).crop((148 + dx, 58 + dy, 278 + dx, 188 + dy))
        if s % 2:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(im.resize((size, size), Image.Resampling.BICUBIC))


def lr_digest(name: str, image_id: str, seed: int = 0) -> str:
    """sha256 of the PNG of a degraded face (module-level so spawned workers can run it)."""
    import hashlib

    from scgan_bench.io.degradations import degrade, derive_seed, make_degradation
    from scgan_bench.io.image_io import encode_png

    hr = rgb_face(int(hashlib.md5(image_id.encode()).hexdigest(), 16) % 7)
    lr, _ = degrade(make_degradation(name), hr, derive_seed(seed, "ffhq", image_id))
    return hashlib.sha256(encode_png(lr)).hexdigest()


def random_inception_state_dict() -> dict:
    """torch-fidelity's InceptionV3 with random weights, in its official key layout."""
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as fe

    class Skeleton(fe.FeatureExtractorInceptionV3):
        def load_state_dict(self, *a, **k):  # keep the random init
            return None

    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}):
        sd = Skeleton("skeleton", ["2048"]).state_dict()
    # Kaiming-scaled convolutions (seeded): the default init shrinks activations through the ~100
    # layers to ~1e-7, which makes every feature, FID and KID degenerate (zero)
    import torch

    g = torch.Generator().manual_seed(0)
    for k, v in sd.items():
        if k.endswith("conv.weight") or k == "fc.weight":
            fan_in = v[0].numel()
            sd[k] = torch.randn(v.shape, generator=g) * (2.0 / fan_in) ** 0.5
    return sd


def auc(scores, labels) -> float:
    """ROC AUC via the Mann-Whitney statistic (ties count half)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    pos, neg = scores[labels], scores[~labels]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def dp_steps(trainer, steps: int = 3) -> dict:
    """Run ``steps`` training steps; return the logged losses, R_LS's first-step gradients (after the
    cross-rank average) and BatchNorm running statistics, and R_LS's final weights."""
    logs, grads = [], {}
    for k in range(steps):
        spe = trainer.steps_per_epoch
        logs.append(trainer.train_step(*trainer.batch(1 + k // spe, k % spe)))
        if k == 0:
            grads = {n: p.grad.clone() for n, p in trainer.model.rls.named_parameters() if p.grad is not None}
            stats = {n: b.clone() for n, b in trainer.model.rls.named_buffers() if "running" in n}
    return {"logs": logs, "grads": grads, "stats": stats,
            "weights": {n: p.detach().clone() for n, p in trainer.model.rls.named_parameters()}}


def ddp_train_worker(rank: int, world: int, port: int, tmp: str, hr, lr) -> None:
    """One rank of a 2-process gloo SCGAN run (module-level so spawned processes can import it)."""
    import torch
    import torch.distributed as dist

    from scgan_bench.scgan.train import Trainer, TrainConfig

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    tr = Trainer(TrainConfig(variant="scgan", width=0.125, batch_size=8, epochs=10, seed=3, out=tmp,
                             progress=False), hr, lr)
    out = dp_steps(tr)
    if rank == 0:
        Path(tmp).mkdir(parents=True, exist_ok=True)
        torch.save(out, Path(tmp) / "rank0.pt")
    dist.destroy_process_group()


def unpaired_faces(n: int = 16):
    """Training tensors from the shared faces: ``n`` HR faces (64 px) and ``n`` LR faces (16 px) of
    other people (the LR list reversed), uint8 NCHW as the trainer keeps them."""
    from scgan_bench.scgan.train import load_faces

    need(HR_FACES)
    hr, _ = load_faces(HR_FACES, 64, limit=n)
    lr, _ = load_faces(HR_FACES, 16, limit=n)
    return hr, lr.flip(0)


def small_train_cfg(tmp: Path, method: str, **kw):
    """A training config the step tests share: width 1/16, batch 4, seed 3, lr 1e-3, 3 steps."""
    from scgan_bench.training.engine import TrainConfig

    base = dict(method=method, width=1 / 16, batch_size=4, epochs=100, seed=3, out=str(tmp), progress=False,
                learning_rate=1e-3, max_steps=3)
    base.update(kw)
    return TrainConfig(**base)


def grads_at_step(tr) -> dict:
    """Hooks on an engine's optimisers: each one's gradients (by parameter name) when it steps, filled
    into the returned dict as steps run."""
    names = {id(p): n for n, p in tr.model.named_parameters()}
    seen: dict = {}

    def hook(name):
        def pre_step(opt, args, kwargs):
            seen[name] = {names[id(p)]: p.grad.detach().clone() for g in opt.param_groups for p in g["params"]
                          if p.grad is not None}
        return pre_step

    for name, opt in tr.optimizers.items():
        opt.register_step_pre_hook(hook(name))
    return seen


def spawn_ranks(target, port_base: int, tmp: Path, *args, world: int = 2) -> dict:
    """Run ``target(rank, world, port, str(tmp), *args)`` in ``world`` spawned processes, wait for all
    (no wall-clock limit: a slow or loaded machine is not a failure), require exit 0 from each, and
    return what rank 0 saved as ``tmp/rank0.pt``."""
    import torch
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    port = port_base + os.getpid() % 1000
    procs = [ctx.Process(target=target, args=(r, world, port, str(tmp), *args)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0] * world
    return torch.load(Path(tmp) / "rank0.pt", weights_only=True)


def ddp_model_worker(rank: int, world: int, port: int, tmp: str, runs: list, hr, lr) -> None:
    """One rank of 2-process gloo runs of trainable models, one after the other (``runs``: (config,
    SR network attribute) pairs); rank 0 saves their :func:`model_steps` results, in order."""
    import torch
    import torch.distributed as dist

    from scgan_bench.training.engine import Engine, TrainConfig

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    out = [model_steps(Engine(TrainConfig(out=tmp, progress=False, **cfg), hr, lr), sr) for cfg, sr in runs]
    if rank == 0:
        Path(tmp).mkdir(parents=True, exist_ok=True)
        torch.save(out, Path(tmp) / "rank0.pt")
    dist.barrier()  # no rank leaves while the other still talks to it
    dist.destroy_process_group()


def ddp_fit_worker(rank: int, world: int, port: int, tmp: str, cfg: dict, hr, lr) -> None:
    """One rank of a 2-process gloo ``Engine.fit`` into ``tmp/run`` (rank 0 writes the log and the
    checkpoints); rank 0 saves the rows ``fit`` returned."""
    import torch
    import torch.distributed as dist

    from scgan_bench.training.engine import Engine, TrainConfig

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    rows = Engine(TrainConfig(out=str(Path(tmp) / "run"), progress=False, **cfg), hr, lr).fit(Path(tmp) / "run",
                                                                                              checkpoint_every=2)
    if rank == 0:
        torch.save(rows, Path(tmp) / "rank0.pt")
    dist.barrier()
    dist.destroy_process_group()


def model_steps(trainer, sr_attr: str, steps: int = 3) -> dict:
    """``steps`` training steps of any model; the logs, the first-step gradients and BatchNorm running
    statistics of its SR network (``trainer.model.<sr_attr>``), and its final weights."""
    logs, grads, stats = [], {}, {}
    net = getattr(trainer.model, sr_attr)
    for k in range(steps):
        spe = trainer.steps_per_epoch
        logs.append(trainer.train_step(*trainer.batch(1 + k // spe, k % spe)))
        if k == 0:
            grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
            stats = {n: b.clone() for n, b in net.named_buffers() if "running" in n}
    return {"logs": logs, "grads": grads, "weights": {n: p.detach().clone() for n, p in net.named_parameters()},
            "buffers": stats}


def assert_compiles(tex_file: Path, workdir: Path) -> None:
    """``tex_file`` (one table environment) typeset by pdflatex on a letter page with 1 inch margins
    (``scgan_bench.tables.latex.document``): no error, no overfull box over 1 pt, no missing glyph."""
    import re
    import subprocess

    from scgan_bench.tables.latex import document

    exe = shutil.which("pdflatex")
    if exe is None:
        pytest.skip("pdflatex is not installed: `apt-get install texlive-latex-recommended texlive-latex-extra` "
                    "(make test does this as root)")
    workdir.mkdir(parents=True, exist_ok=True)
    doc = workdir / f"{tex_file.parent.name}_{tex_file.stem}.tex"
    doc.write_text(document([tex_file.read_text()]))
    res = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=workdir,
                         capture_output=True, text=True)
    log = doc.with_suffix(".log").read_text(errors="replace")
    assert res.returncode == 0, f"{tex_file} does not compile:\n{res.stdout[-3000:]}"
    over = [float(x) for x in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too (?:wide|high)\)", log)]
    assert not [x for x in over if x > 1.0], f"{tex_file}: overfull boxes {over}"
    assert "Missing character" not in log, tex_file


class MeanColour:
    """A feature extractor for the sharding tests: each image's mean colour (records what it saw)."""

    key = "mean-colour-test"
    device = "cpu"

    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def extract(self, images):
        self.seen.append([int(im[0, 0, 0]) for im in images])
        return [im.reshape(-1, 3).mean(0) for im in images]


def shard_features_worker(rank: int, world: int, port: int, tmp: str, images: dict) -> None:
    """One rank of a 2-process gloo :func:`scgan_bench.run.features.cached_features` call with ``Shard``; rank 0
    saves every rank's batches, its features, the cache folder's files and how ``from_main`` errors arrive."""
    import torch
    import torch.distributed as dist

    from scgan_bench.run.features import cached_features
    from scgan_bench.run.shard import Shard

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    shard = Shard(rank, world)
    ex = MeanColour()
    feats = cached_features(ex, images, Path(tmp) / "cache", batch_size=4, progress=False, shard=shard)
    try:
        shard.from_main(lambda: int("not a number"))
        raised = "nothing"
    except ValueError as exc:
        raised = f"{type(exc).__name__}: {exc}"
    seen = shard.gather(ex.seen)
    raised_all = shard.gather(raised)
    if rank == 0:
        torch.save({"seen": seen, "raised": raised_all, "feats": {k: torch.from_numpy(v) for k, v in feats.items()},
                    "files": sorted(p.name for p in (Path(tmp) / "cache").iterdir())}, Path(tmp) / "rank0.pt")
    else:
        assert feats == {}
    dist.barrier()
    dist.destroy_process_group()
