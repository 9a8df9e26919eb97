"""FID against published statistics (fid-ffhq512) and the streaming float64 moments behind reference
statistics: formulas written here, BasicSR's file format, torch-fidelity's network as the reference."""
from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from scgan_bench.assets import weights as W
from scgan_bench.errors import UsageError
from scgan_bench.metrics.fid_stats import STATS_ASSET, Moments, load_reference_stats

from sb_testdata import random_inception_state_dict, rgb_face, tamper


def _pin(name: str, path: Path) -> None:
    W.register_sha256(name, hashlib.sha256(path.read_bytes()).hexdigest())


def test_moments_merged_across_shards_equal_one_pass_and_numpy(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (257, 16))  # an offset mean: the sums' cancellation is exercised
    one = Moments().add(x)
    parts = [Moments().add(x[a:b]) for a, b in ((0, 100), (100, 101), (101, 257))]
    merged = parts[0].merged(parts[1]).merged(parts[2])
    for m in (one, merged):
        assert m.n == 257
        np.testing.assert_allclose(m.mean(), x.mean(axis=0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(m.cov(), np.cov(x, rowvar=False), rtol=0, atol=1e-11)
    Moments().merged(one).save(tmp_path / "ref.npz", name="test")
    back = Moments.load(tmp_path / "ref.npz")
    assert back.n == 257 and np.array_equal(back.ss, one.ss)
    mu, sigma = load_reference_stats(tmp_path / "ref.npz")
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), atol=1e-11)
    np.savez(tmp_path / "mu_sigma.npz", mu=mu, sigma=sigma)
    with pytest.raises(UsageError, match="cannot be merged"):
        Moments.load(tmp_path / "mu_sigma.npz")
    with pytest.raises(ValueError, match="width"):
        one.add(np.zeros((2, 3)))


def test_reference_stats_read_basicsr_files_safely(tmp_path):
    rng = np.random.default_rng(1)
    mean, a = rng.normal(size=8), rng.normal(size=(8, 8))
    cov = a @ a.T
    path = tmp_path / "inception_FFHQ_512-test.pth"
    torch.save({"name": "FFHQ", "size": 512, "mean": mean, "cov": cov}, path)  # BasicSR's layout (NumPy arrays)
    got_mean, got_cov = load_reference_stats(path)
    assert np.array_equal(got_mean, mean) and np.array_equal(got_cov, cov)

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    buf = io.BytesIO()
    torch.save({"mean": mean, "cov": cov, "x": Evil()}, buf)
    (tmp_path / "evil.pth").write_bytes(buf.getvalue())
    with pytest.raises(UsageError, match=r"evil.pth pickles objects other than tensors .*never runs pickled code"):
        load_reference_stats(tmp_path / "evil.pth")
    (tmp_path / "bad.pth").write_bytes(pickle.dumps({"mean": mean}))
    with pytest.raises(UsageError):
        load_reference_stats(tmp_path / "bad.pth")


def _fid_low_rank(x1: np.ndarray, x2: np.ndarray) -> float:
    """The Fréchet distance of the two sets' Gaussians written here from the features themselves:
    with centred rows X1, X2 and c = (n1 - 1)(n2 - 1), the non-zero eigenvalues of S1 S2 are those of
    G G^T, G = X1 X2^T / sqrt(c), so tr sqrt(S1 S2) is G's nuclear norm (no 2048 x 2048 square root)."""
    c1, c2 = x1 - x1.mean(axis=0), x2 - x2.mean(axis=0)
    g = c1 @ c2.T / np.sqrt((len(x1) - 1) * (len(x2) - 1))
    d = x1.mean(axis=0) - x2.mean(axis=0)
    tr1, tr2 = (c1 ** 2).sum() / (len(x1) - 1), (c2 ** 2).sum() / (len(x2) - 1)
    return float(d @ d + tr1 + tr2 - 2 * np.linalg.svd(g, compute_uv=False).sum())


@pytest.mark.slow
def test_fid_to_published_stats_in_a_run_equals_the_formula(weights_dir, tmp_path):
    """A real-world set (no HR) scored against a BasicSR-format statistics file (random official-layout
    Inception weights): the run's value equals the formula on the same features; a tampered file is
    refused; the BasicSR-path features run torch-fidelity's own layers (checked on 299 px inputs)."""
    from scgan_bench.metrics.fid_stats import InceptionBasicSRPath
    from scgan_bench.run.pipeline import RunConfig, run_benchmark

    inc = weights_dir / W.ASSETS.get("inception-fid").filename
    torch.save(random_inception_state_dict(), inc)
    _pin("inception-fid", inc)
    ex = InceptionBasicSRPath()
    # its layers are torch-fidelity's: on 299 px inputs its features track torch-fidelity's own forward
    # (which differs only by (x - 128) / 128 against x / 127.5 - 1)
    faces = [np.asarray(torch.nn.functional.interpolate(torch.from_numpy(rgb_face(k)).permute(2, 0, 1)[None].float(),
                                                        size=(299, 299), mode="nearest")[0].permute(1, 2, 0).byte())
             for k in range(3)]
    ours = ex.extract(faces)
    theirs = ex.net(torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2))[0].double().numpy()
    assert ours.shape == theirs.shape == (3, 2048)
    assert np.abs(ours - theirs).max() <= 0.02 * np.abs(theirs).max()
    # the reference: BasicSR's file layout, statistics of other faces' features
    ref = ex.extract([rgb_face(k) for k in range(20, 28)])
    stats = weights_dir / W.ASSETS.get(STATS_ASSET).filename
    torch.save({"name": "test", "size": 64, "mean": ref.mean(axis=0), "cov": np.cov(ref, rowvar=False)}, stats)
    _pin(STATS_ASSET, stats)
    res = run_benchmark(RunConfig(datasets=["demo-real"], methods=["bicubic"], metrics=["fid-ffhq512"],
                                  out=tmp_path / "run", limit=6, progress=False, device="cpu"))
    (cell,) = [c for c in res.cells if c.metric == "fid-ffhq512"]
    assert cell.status == "ok" and cell.note == "vs published reference statistics", cell
    from scgan_bench.io.image_io import read_image

    srs = [read_image(p) for p in sorted((tmp_path / "run" / "sr" / "demo-real" / "bicubic").glob("*.png"))]
    f = ex.extract(srs)
    assert cell.set_value == pytest.approx(_fid_low_rank(f, ref), rel=1e-6)
    tamper(stats)  # its sha256 no longer matches
    from scgan_bench.registries import METRICS

    avail = METRICS.get("fid-ffhq512").availability()  # what the run checks first: the cell is unavailable
    assert not avail.ok and "sha256" in avail.reason
