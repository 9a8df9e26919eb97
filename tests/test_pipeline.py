"""`scgan-bench run` end to end: outputs, the cache (an identical rerun recomputes nothing), resume after
a kill at any point, invalidation when the configuration changes, and per-image failure isolation."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scgan_bench.io.image_io import read_image
from scgan_bench.run.pipeline import RunConfig, run_benchmark
from scgan_bench.run.prepare import prepare_dataset
from scgan_bench.run.superres import run_method

from sb_testdata import HR_FACES


def _cfg(out: Path, faces: Path, wider: Path, **kw) -> RunConfig:
    return RunConfig(datasets=["folder", "widerface"], methods=["bicubic", "nearest"],
                     metrics=["psnr", "ssim"], out=out, roots={"folder": faces, "widerface": wider},
                     progress=False, **kw)


def _snapshot(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(out)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in out.rglob("*") if p.is_file() and p.parent != out}


def test_run_writes_images_results_and_summary(hr_faces, wider_root, tmp_path):
    out = tmp_path / "run"
    res = run_benchmark(_cfg(out, hr_faces, wider_root))
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 24 * 2 * 2  # folder: 24 images x 2 methods x 2 metrics; widerface has no HR
    assert {r["dataset"] for r in rows} == {"folder"}
    for r in rows:
        sr = read_image(out / "sr" / r["dataset"] / r["method"] / f"{r['image_id']}.png")
        assert sr.shape == (64, 64, 3)
    # SR images exist for the real-world set too; its full-reference cells are marked n/a
    n_wider = len(list((out / "data" / "widerface" / "lr").glob("*.png")))
    assert n_wider > 5 and len(list((out / "sr" / "widerface" / "bicubic").glob("*.png"))) == n_wider
    summary = {(c.dataset, c.method, c.metric): c for c in res.cells}
    assert summary[("widerface", "bicubic", "psnr")].status == "n/a"
    bic, nn = summary[("folder", "bicubic", "psnr")], summary[("folder", "nearest", "psnr")]
    assert bic.status == "ok" and len(bic.values) == 24 and bic.mean > nn.mean  # bicubic beats NN
    md = (out / "summary.md").read_text()
    assert "| bicubic |" in md and "psnr ↑" in md and "n/a" in md
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "complete" and meta["datasets"]["folder"]["images"] == 24
    assert meta["methods"]["bicubic"]["fingerprint"]["filter"] == "bicubic"


def test_identical_rerun_recomputes_nothing(hr_faces, wider_root, tmp_path):
    out = tmp_path / "run"
    first = run_benchmark(_cfg(out, hr_faces, wider_root))
    assert first.recomputed["images_super_resolved"] > 0
    before = _snapshot(out)
    results = (out / "results.csv").read_text()
    second = run_benchmark(_cfg(out, hr_faces, wider_root))
    assert second.recomputed == {"images_prepared": 0, "images_super_resolved": 0, "metric_values": 0}
    assert _snapshot(out) == before  # not one cached file was rewritten
    assert (out / "results.csv").read_text() == results


def test_changing_the_seed_recomputes_only_what_depends_on_it(hr_faces, wider_root, tmp_path):
    out = tmp_path / "run"
    run_benchmark(_cfg(out, hr_faces, wider_root))
    res = run_benchmark(_cfg(out, hr_faces, wider_root, seed=1))
    n_wider = len(list((out / "data" / "widerface" / "records").glob("*.json")))
    assert res.recomputed["images_prepared"] == 24  # widerface LR does not depend on the seed
    assert res.recomputed["images_super_resolved"] == 24 * 2
    assert n_wider > 0


def _cli(args: list[str], env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "scgan_bench.cli", *args], env=env,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_resume_after_kill_at_any_point_gives_identical_results(hr_faces, tmp_path):
    base = ["run", "--datasets", "folder,demo-real", "--methods", "bicubic,bilinear",
            "--metrics", "psnr,ssim-y", "--root", f"folder={hr_faces}", "--quiet", "--device", "cpu"]
    ref = _cli([*base, "--out", str(tmp_path / "ref")])
    assert ref.returncode == 0, ref.stderr
    ref_results = (tmp_path / "ref" / "results.csv").read_text()
    ref_summary = (tmp_path / "ref" / "summary.csv").read_text()
    ref_work = sum(json.loads((tmp_path / "ref" / "run.json").read_text())["recomputed"].values())
    # kill points cover the prepare, SR and metric stages, between and in the middle of writes
    for kill in ("3", "40:torn", "150", "290:torn", "330"):
        out = tmp_path / f"k{kill.replace(':', '_')}"
        killed = _cli([*base, "--out", str(out)], {"SCGAN_BENCH_KILL_AFTER_WRITES": kill})
        assert killed.returncode == 137, (kill, killed.stderr)
        assert not (out / "results.csv").exists()
        resumed = _cli([*base, "--out", str(out)])
        assert resumed.returncode == 0, resumed.stderr
        assert (out / "results.csv").read_text() == ref_results, kill
        assert (out / "summary.csv").read_text() == ref_summary, kill
        assert not [p for p in out.rglob("*.tmp")], kill
        done = sum(json.loads((out / "run.json").read_text())["recomputed"].values())
        # the resumed run reused what the killed one finished (kill "3" dies before any image)
        assert (0 < done < ref_work) if kill != "3" else done == ref_work, (kill, done, ref_work)


class _Flaky:
    """An SR method that fails on dark images (to test per-image failure isolation)."""

    name, scale = "flaky", 4

    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        if (lr.mean(dim=(1, 2, 3)) < 0.35).any():
            raise RuntimeError("cannot handle dark inputs")
        return torch.nn.functional.interpolate(lr, scale_factor=4, mode="nearest")

    def fingerprint(self):
        return {"method": "flaky"}


def test_a_failing_image_does_not_sink_its_batch(tmp_path):
    data = prepare_dataset("demo-real", out=tmp_path, seed=0, progress=False)
    means = {i: read_image(data.dir / r["lr"]).mean() / 255 for i, r in data.records.items()}
    dark = {i for i, m in means.items() if m < 0.35}
    assert 0 < len(dark) < len(means)
    res = run_method(_Flaky(), data, tmp_path, fingerprint={"method": "flaky"}, batch_size=16,
                     progress=False)
    assert set(res.records) == set(means) - dark
    assert {f.image_id for f in res.failures} == dark
    assert all("cannot handle dark inputs" in f.reason for f in res.failures)


def test_bad_method_output_is_reported(tmp_path):
    class Wrong(_Flaky):
        def upscale(self, lr):
            return lr  # wrong size

    data = prepare_dataset("demo-real", out=tmp_path, seed=0, limit=3, progress=False)
    res = run_method(Wrong(), data, tmp_path, fingerprint={"m": 1}, progress=False)
    assert not res.records and len(res.failures) == 3
    assert "returned shape (1, 3, 16, 16), expected (1, 3, 64, 64)" in res.failures[0].reason


def test_folder_with_bad_files_runs_to_the_end(hr_faces, tmp_path):
    (hr_faces / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (hr_faces / "empty.jpg").write_bytes(b"")
    out = tmp_path / "run"
    res = run_benchmark(RunConfig(datasets=["folder"], methods=["bicubic"], metrics=["psnr"], out=out,
                                  roots={"folder": hr_faces}, progress=False))
    assert {f.image_id for f in res.failures} == {"broken", "empty"}
    failures = list(csv.DictReader(open(out / "failures.csv")))
    assert {r["image_id"] for r in failures} == {"broken", "empty"}
    assert all(r["reason"] and r["stage"] == "load" for r in failures)
    assert res.cells[0].status == "ok" and len(res.cells[0].values) == 24
    assert res.cells[0].n_failed == 2


def test_sr_output_is_quantised_once_from_the_method_output(tmp_path):
    from scgan_bench.methods.interpolation import Interpolation
    from scgan_bench.run.superres import quantise, to_tensor

    data = prepare_dataset("demo-real", out=tmp_path, seed=0, limit=4, progress=False)
    m = Interpolation("bicubic", "bicubic")
    res = run_method(m, data, tmp_path, fingerprint=m.fingerprint(), progress=False)
    lrs = [read_image(data.dir / r["lr"]) for r in data.records.values()]
    expect = quantise(m.upscale(to_tensor(lrs)))
    for k, i in enumerate(res.records):
        np.testing.assert_array_equal(read_image(res.dir / f"{i}.png"), expect[k])


def test_shared_data_is_present_for_ci():
    """CI has ../shared; this fails loudly there (instead of skipping) if the data went missing."""
    if os.environ.get("CI") and not HR_FACES.exists():
        pytest.fail(f"CI runs without {HR_FACES}: the shared test data is not where the tests look")


def test_foreign_folder_in_the_way_is_refused_not_deleted(tmp_path):
    from scgan_bench.errors import UsageError

    precious = tmp_path / "run" / "data" / "demo" / "thesis.tex"
    precious.parent.mkdir(parents=True)
    precious.write_text("do not delete")
    with pytest.raises(UsageError, match="not made by scgan-bench"):
        run_benchmark(RunConfig(datasets=["demo"], methods=["bicubic"], metrics=["psnr"],
                                out=tmp_path / "run", progress=False, limit=2))
    assert precious.read_text() == "do not delete"


def test_dlib_metrics_over_worker_processes_equal_one_process(tmp_path):
    """--workers 2 spreads dlib's detector, landmarks and descriptor over two processes
    (scgan_bench.run.parallel): every per-image and set value is the same as in one process, and a run
    with a pool open leaves no pool behind."""
    from scgan_bench.run import parallel

    kw = dict(datasets=["demo"], methods=["bicubic", "nearest"], metrics=["hog-detect", "dlib-cos", "landmark-dlib68"],
              limit=6, progress=False)
    run_benchmark(RunConfig(out=tmp_path / "one", workers=1, **kw))
    run_benchmark(RunConfig(out=tmp_path / "two", workers=2, **kw))
    one, two = (tmp_path / "one" / "results.csv").read_text(), (tmp_path / "two" / "results.csv").read_text()
    assert one == two and one.count("\n") > 6 * 2 * 2
    assert parallel._POOL is None and parallel._WORKERS == 1


def test_prefetched_loads_in_a_thread_and_keeps_order_values_and_errors():
    import threading

    from scgan_bench.run.parallel import prefetched

    where = []

    def load(chunk):
        where.append(threading.current_thread() is threading.main_thread())
        if chunk == ["bad"]:
            raise OSError("cannot read bad.png")
        return [c.upper() for c in chunk]

    chunks = [["a", "b"], ["c"], ["d", "e"]]
    assert list(prefetched(chunks, load)) == [(c, [x.upper() for x in c]) for c in chunks]
    assert where == [False, False, False]  # decoding never blocks the caller's thread
    assert list(prefetched([], load)) == []
    with pytest.raises(OSError, match="bad.png"):
        list(prefetched([["a"], ["bad"], ["c"]], load))


def test_a_run_decodes_each_image_once(hr_faces, tmp_path, monkeypatch):
    """Every file a run reads is decoded once (counted at the decoder): the source faces in preparation;
    the HR, LR and SR PNGs the run writes are kept as written and never decoded, though the SR stage,
    two per-image metrics and a set metric all read them. run.json reports the counts. A second run
    on the same folder with a new metric reads the HR and both methods' SR faces from disk: once each."""
    import scgan_bench.io.image_io as image_io

    decoded: list[str] = []
    real = image_io._read_file

    def counting(path, max_pixels):
        decoded.append(str(Path(path).resolve()))
        return real(path, max_pixels)

    monkeypatch.setattr(image_io, "_read_file", counting)
    cfg = dict(datasets=["folder"], methods=["bicubic", "nearest"], metrics=["psnr", "lpips", "fid-dlib"],
               roots={"folder": hr_faces}, progress=False, workers=1)
    run_benchmark(RunConfig(out=tmp_path / "run", **cfg))
    sources = {str(p.resolve()) for p in hr_faces.glob("*.png")}
    assert sorted(decoded) == sorted(sources), "each source once; nothing the run wrote"
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["decoded_images"]["files_decoded"] == meta["decoded_images"]["decodes"] == len(sources)
    assert meta["decoded_images"]["kept_as_written"] == 24 * 2 + 24 * 2  # HR + LR, two methods' SR
    decoded.clear()
    run_benchmark(RunConfig(out=tmp_path / "run", **{**cfg, "metrics": ["ssim"]}))  # reads HR and SR from disk
    assert len(decoded) == len(set(decoded)) == 24 * 3, "a second run decodes each file it reads once"


def test_the_decode_cache_follows_the_file_on_disk(tmp_path):
    """Inside a run's cache a file replaced on disk is decoded anew (path, size, time and inode name it);
    a reader gets a copy it may write into; an image over the pixel limit of a later read still raises;
    a budget too small for two images keeps the newest."""
    from scgan_bench.errors import ImageDecodeError
    from scgan_bench.io.image_io import decode_cache, remember, write_png

    a = np.full((8, 8, 3), 10, np.uint8)
    b = np.full((8, 8, 3), 200, np.uint8)
    p = tmp_path / "x.png"
    with decode_cache(budget_bytes=300) as cache:
        write_png(p, a)
        first = read_image(p)
        first[:] = 0  # the reader's copy
        assert (read_image(p) == 10).all()
        write_png(p, b)
        assert (read_image(p) == 200).all()
        with pytest.raises(ImageDecodeError):
            read_image(p, max_pixels=10)
        q = tmp_path / "y.png"
        write_png(q, a)
        remember(q, a)
        assert cache.stats()["files_decoded"] == 1 and cache.stats()["decodes"] == 2
        assert cache.bytes <= 300
