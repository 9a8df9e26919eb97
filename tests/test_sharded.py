"""Sharded evaluation (``torchrun -m scgan_bench run``): two gloo processes give the one-process results
bit for bit, write no file twice, and a run that loses a rank resumes to the same results."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scgan_bench.run.shard import SINGLE, Shard, world_from_env

from sb_testdata import HR_FACES, SHARED, need

SHARED_WEIGHTS = SHARED / "weights"


def test_shards_split_work_as_one_process_batches_it():
    ids = [f"{k:02d}" for k in range(11)]
    a, b = Shard(0, 2), Shard(1, 2)
    # per-image work: strided; batched work: the batches one process forms, strided
    assert a.own(ids) + b.own(ids) != ids and sorted(a.own(ids) + b.own(ids)) == ids
    assert [list(x) for x in a.own_batches(ids, 4)] == [ids[0:4], ids[8:11]]
    assert [list(x) for x in b.own_batches(ids, 4)] == [ids[4:8]]
    assert [list(x) for x in SINGLE.own_batches(ids, 4)] == [ids[0:4], ids[4:8], ids[8:11]]
    assert SINGLE.gather(3) == [3] and SINGLE.from_main(lambda: 5) == 5 and SINGLE.main and not b.main
    assert world_from_env({"RANK": "1", "WORLD_SIZE": "2"}) == (1, 2) and world_from_env({}) == (0, 1)
    with pytest.raises(Exception, match="not a rank"):
        world_from_env({"RANK": "2", "WORLD_SIZE": "2"})


def _trained_scgan(out: Path) -> Path:
    """A real SCGAN checkpoint (1/8 width, one training step) for a network method in the run."""
    from scgan_bench.training.engine import TrainConfig, Trainer
    from sb_testdata import unpaired_faces

    Trainer(TrainConfig(variant="scgan", width=0.125, batch_size=4, epochs=1, seed=3, out=str(out), progress=False,
                        max_steps=1), *unpaired_faces(8)).fit(out)
    return out


def _launch(args: list[str], out: Path, env: dict[str, str], ranks: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "scgan_bench", *args, "--out", str(out)]
    if ranks > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
               "-m", "scgan_bench", *args, "--out", str(out)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


def _features(run: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for f in sorted((run / "features").rglob("*.npz")):
        with np.load(f) as z:
            out[str(f.relative_to(run))] = {k: z[k] for k in ("ids", "shas", "feats")}
    return out


def _tree(run: Path, part: str) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted((run / part).rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_two_ranks_equal_one_process_bit_for_bit_and_resume_after_a_rank_dies(tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    for p in sorted(need(HR_FACES).glob("*.png"))[:40]:
        shutil.copy(p, faces / p.name)
    env = {**os.environ, "SCGAN_BENCH_CKPT_SCGAN": str(_trained_scgan(tmp_path / "train")),
           "OMP_NUM_THREADS": "1"}  # torchrun's default per rank; the one-process run uses the same
    # per-image metrics, and a set metric over cached features (dlib's 68 landmarks: per-image errors and the
    # set value computed by rank 0 from the merged features); FID / KID's merging is the same code (fast test below)
    metrics = ["psnr", "ssim", "landmark-dlib68"]
    if (SHARED_WEIGHTS / "niqe_pris_params.npz").is_file():
        env["SCGAN_BENCH_WEIGHTS"] = str(SHARED_WEIGHTS.resolve())
        metrics.append("niqe")
    args = ["run", "--datasets", "folder", "--root", f"folder={faces}", "--methods", "bicubic,scgan", "--metrics",
            ",".join(metrics), "--device", "cpu", "--quiet", "--batch-size", "8"]
    one = _launch(args, tmp_path / "one", env, 1)
    assert one.returncode == 0, one.stderr
    two = _launch(args, tmp_path / "two", env, 2)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = tmp_path / "one", tmp_path / "two"
    results = (a / "results.csv").read_text()
    rows = list(csv.DictReader(results.splitlines()))
    assert {r["metric"] for r in rows} >= set(metrics) and any(r["image_id"] == "*" for r in rows)
    assert {r["method"] for r in rows} == {"bicubic", "scgan"} and len({r["image_id"] for r in rows}) == 41
    assert (b / "results.csv").read_text() == results
    assert (b / "summary.csv").read_text() == (a / "summary.csv").read_text()
    for part in ("data", "sr", "metrics"):  # every image, record and metric file, byte for byte
        assert _tree(b, part) == _tree(a, part), part
    fa, fb = _features(a), _features(b)
    assert fa.keys() == fb.keys() and len(fa) == 3  # landmarks of the HR set and of both methods
    for k in fa:
        for field in ("ids", "shas", "feats"):
            assert np.array_equal(fa[k][field], fb[k][field], equal_nan=field == "feats"), (k, field)
    meta = json.loads((b / "run.json").read_text())
    assert meta["status"] == "complete" and meta["shards"] == 2
    assert not list(b.rglob("*.part-*")) and not list(b.rglob("*.tmp"))

    # rank 1 dies in the SR stage (after its 60 prepare writes and 4 SR images); torchrun stops rank 0
    c = tmp_path / "killed"
    killed = _launch(args, c, {**env, "SCGAN_BENCH_KILL_AFTER_WRITES": "68@1"}, 2)
    assert killed.returncode != 0 and not (c / "results.csv").exists()
    assert len(list((c / "data" / "folder" / "records").glob("*.json"))) == 40
    resumed = _launch(args, c, env, 2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (c / "results.csv").read_text() == results
    assert _tree(c, "sr") == _tree(a, "sr")
    done = json.loads((c / "run.json").read_text())["recomputed"]
    assert done["images_prepared"] == 0 and 0 < done["images_super_resolved"] < 80, done
    assert not list(c.rglob("*.part-*")) and not list(c.rglob("*.tmp"))


def test_two_gloo_ranks_extract_their_batches_and_rank_0_merges_the_parts(tmp_path):
    """Fast (one gloo pair): the batches one process forms, alternated; the parts merged into one cache and
    removed; a part an earlier killed run left is reused; rank 0's exception reaches both ranks as itself."""
    from scgan_bench.run.features import _save, cache_name
    from scgan_bench.io.image_io import write_png
    from scgan_bench.io.manifest import sha256_file

    from sb_testdata import MeanColour, shard_features_worker, spawn_ranks

    images = {}
    for k in range(10):
        im = np.full((8, 8, 3), 10 * k + 1, np.uint8)
        im[1:, :, 1] = 200  # a mean that is not the first pixel
        write_png(tmp_path / "img" / f"{k:02d}.png", im)
        images[f"{k:02d}"] = (tmp_path / "img" / f"{k:02d}.png", sha256_file(tmp_path / "img" / f"{k:02d}.png"))
    path = tmp_path / "run" / "cache" / cache_name(MeanColour())
    path.parent.mkdir(parents=True)
    # what a killed sharded run left: rank 1's part with image 00 (a marker value shows it is reused)
    _save(path.with_name(f"{path.stem}.part-1-of-3.npz"), {"00": (images["00"][1], np.full(3, -1.0))}, "x")
    out = spawn_ranks(shard_features_worker, 29400, tmp_path / "run", images)
    # todo = 01..09 in batches of 4: [01-04] rank 0, [05-08] rank 1, [09] rank 0
    firsts = {k: 10 * int(k) + 1 for k in images}
    assert out["seen"] == [[[firsts[i] for i in ("01", "02", "03", "04")], [firsts["09"]]],
                           [[firsts[i] for i in ("05", "06", "07", "08")]]]
    assert out["files"] == [path.name]  # one merged cache, no part left
    want = {k: np.array([10 * int(k) + 1, (10 * int(k) + 1 + 7 * 200) / 8, 10 * int(k) + 1]) for k in images}
    want["00"] = np.full(3, -1.0)
    assert set(out["feats"]) == set(images)
    for k, v in want.items():
        assert np.allclose(out["feats"][k].numpy(), v), k
    assert out["raised"] == ["ValueError: invalid literal for int() with base 10: 'not a number'"] * 2
