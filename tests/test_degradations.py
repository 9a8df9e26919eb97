"""Degradations: seeded per image, byte-identical across runs and processes, parameters in range."""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import pytest

from scgan_bench.io.degradations import (ComplexDegradation, SimpleDegradation, degrade, derive_seed,
                                      jpeg_roundtrip, make_degradation)
from scgan_bench.errors import UnknownNameError, UsageError
from scgan_bench.io.image_io import encode_png

from sb_testdata import lr_digest as _lr_digest, rgb_face


def test_seed_derivation_is_stable_and_distinct():
    # Pinned: changing the derivation would silently change every LR image of every user.
    assert derive_seed(0, "demo", "astronaut") == 6219915936462531851
    seeds = {derive_seed(0, "ffhq", f"{i:05d}") for i in range(1000)}
    assert len(seeds) == 1000
    assert derive_seed(1, "ffhq", "00001") != derive_seed(0, "ffhq", "00001")
    assert derive_seed(0, "ls3dw", "00001") != derive_seed(0, "ffhq", "00001")


@pytest.mark.parametrize("name", ["simple", "complex"])
def test_same_id_and_seed_give_same_bytes(name):
    hr = rgb_face(3)
    a, pa = degrade(make_degradation(name), hr, 12345)
    b, pb = degrade(make_degradation(name), hr.copy(), 12345)
    assert a.tobytes() == b.tobytes() and pa == pb
    assert encode_png(a) == encode_png(b)


def test_different_ids_or_seeds_differ():
    hr = rgb_face(3)
    deg = ComplexDegradation()
    outs = {degrade(deg, hr, derive_seed(0, "ffhq", i))[0].tobytes() for i in ("a", "b", "c", "d")}
    assert len(outs) == 4
    assert (degrade(deg, hr, derive_seed(0, "ffhq", "a"))[0].tobytes()
            != degrade(deg, hr, derive_seed(1, "ffhq", "a"))[0].tobytes())


def test_identical_across_processes_and_worker_counts():
    ids = [f"{i:05d}" for i in range(8)]
    here = [_lr_digest("complex", i) for i in ids]
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        there = list(pool.map(_lr_digest, ["complex"] * 8, ids))
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        reversed_order = list(pool.map(_lr_digest, ["complex"] * 8, ids[::-1]))[::-1]
    assert here == there == reversed_order


def test_complex_parameters_stay_in_the_papers_ranges():
    deg = ComplexDegradation()
    draws = [deg.draw(np.random.Generator(np.random.PCG64(s))) for s in range(2000)]
    sig = np.array([d["blur_sigma"] for d in draws])
    noise = np.array([d["noise_sigma"] for d in draws])
    q = np.array([d["jpeg_quality"] for d in draws])
    assert 0.5 <= sig.min() and sig.max() <= 8.0 and sig.max() - sig.min() > 7.0
    assert 1.0 <= noise.min() and noise.max() <= 25.0 and noise.max() - noise.min() > 23.0
    assert q.min() == 30 and q.max() == 95  # both ends reachable (inclusive integer range)
    kernels = {d["kernel"] for d in draws}
    assert kernels == {"bilinear", "bicubic"}


def test_params_are_returned_and_drive_the_output():
    hr = rgb_face(1)
    lr, params = degrade(ComplexDegradation(), hr, 7)
    assert lr.shape == (16, 16, 3) and lr.dtype == np.uint8
    assert set(params) == {"seed", "blur_sigma", "kernel", "noise_sigma", "jpeg_quality"}
    assert params["seed"] == 7
    # more blur and noise -> further from a clean downsample
    clean, _ = degrade(SimpleDegradation(kernels=("bicubic",)), hr, 7)
    gentle = ComplexDegradation(blur_sigma=(0.5, 0.5), noise_sigma=(1, 1), jpeg_quality=(95, 95),
                                kernels=("bicubic",))
    harsh = ComplexDegradation(blur_sigma=(8, 8), noise_sigma=(25, 25), jpeg_quality=(30, 30),
                               kernels=("bicubic",))
    d_gentle = np.abs(degrade(gentle, hr, 7)[0].astype(int) - clean).mean()
    d_harsh = np.abs(degrade(harsh, hr, 7)[0].astype(int) - clean).mean()
    assert d_gentle < 4 < d_harsh


def test_jpeg_step_is_real():
    img = rgb_face(2, 16)
    assert jpeg_roundtrip(img, 95).tobytes() != img.tobytes()
    assert np.abs(jpeg_roundtrip(img, 30).astype(int) - img).mean() > \
        np.abs(jpeg_roundtrip(img, 95).astype(int) - img).mean()


def test_simple_kernels_and_sizes():
    hr = rgb_face(4)
    for name, kernel in (("simple-bilinear", "bilinear"), ("simple-bicubic", "bicubic")):
        lr, p = degrade(make_degradation(name), hr, 1)
        assert p["kernel"] == kernel and lr.shape == (16, 16, 3)
    drawn = {degrade(SimpleDegradation(), hr, s)[1]["kernel"] for s in range(40)}
    assert drawn == {"bilinear", "bicubic"}


def test_bad_configs_and_names():
    with pytest.raises(UsageError):
        ComplexDegradation(blur_sigma=(8, 0.5))
    with pytest.raises(UsageError):
        ComplexDegradation(jpeg_quality=(0, 101))
    with pytest.raises(UsageError):
        SimpleDegradation(kernels=("lanczos",))
    with pytest.raises(UnknownNameError, match="Did you mean 'complex'"):
        make_degradation("complx")
    with pytest.raises(ValueError, match="not divisible"):
        degrade(SimpleDegradation(), np.zeros((30, 30, 3), np.uint8), 0)


# ------------------------------------------------------------------ GFPGAN's degradation (issue 30)
def _shared_face(i: int = 0) -> np.ndarray:
    from PIL import Image

    from sb_testdata import HR_FACES, need

    return np.asarray(Image.open(need(HR_FACES) / f"{i:05d}.png").convert("RGB"))


def _kernel_by_formula(size: int, sx: float, sy: float, theta: float) -> np.ndarray:
    """Written here from the definition: exp(-(u^2 / 2 sx^2 + v^2 / 2 sy^2)) with (u, v) a pixel offset
    (x to the right, y down) projected on the axes rotated by theta, normalised to sum 1."""
    half = size // 2
    k = np.zeros((size, size))
    for row in range(size):
        for col in range(size):
            x, y = col - half, row - half
            u = x * np.cos(theta) + y * np.sin(theta)
            v = -x * np.sin(theta) + y * np.cos(theta)
            k[row, col] = np.exp(-(u * u / (2 * sx * sx) + v * v / (2 * sy * sy)))
    return k / k.sum()


@pytest.mark.parametrize("sx,sy,theta", [(2.0, 2.0, 0.0), (1.5, 4.0, 0.7), (6.0, 0.8, -2.3), (0.1, 0.1, 0.0)])
def test_gfpgan_blur_kernel_equals_the_rotated_gaussian_formula(sx, sy, theta):
    from scgan_bench.io.degradations import bivariate_gaussian_kernel

    got = bivariate_gaussian_kernel(41, sx, sy, theta)
    want = _kernel_by_formula(41, sx, sy, theta)
    assert got.shape == (41, 41) and abs(got.sum() - 1) < 1e-12
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_gfpgan_parameters_follow_the_released_training_ranges():
    """options/train_gfpgan_v1.yml: iso / aniso 0.5 each, sigma in [0.1, 10], rotation in [-pi, pi] (0 when
    isotropic, with sigma_y = sigma_x), downsample in [0.8, 8], noise in [0, 20], JPEG int(U[60, 100])."""
    deg = make_degradation("gfpgan")
    draws = [deg.draw(np.random.Generator(np.random.PCG64(derive_seed(0, "t", str(i))))) for i in range(2000)]
    iso = [d for d in draws if d["kernel"] == "iso"]
    aniso = [d for d in draws if d["kernel"] == "aniso"]
    assert 850 < len(iso) < 1150 and len(iso) + len(aniso) == 2000
    assert all(d["sigma_y"] == d["sigma_x"] and d["theta"] == 0.0 for d in iso)
    assert all(0.1 <= d["sigma_x"] <= 10 and 0.1 <= d["sigma_y"] <= 10 for d in draws)
    assert any(abs(d["sigma_x"] - d["sigma_y"]) > 1 for d in aniso)
    thetas = [d["theta"] for d in aniso]
    assert -np.pi <= min(thetas) < -2.5 and 2.5 < max(thetas) <= np.pi
    assert all(0.8 <= d["downsample"] <= 8 and 0 <= d["noise_sigma"] <= 20 for d in draws)
    qs = {d["jpeg_quality"] for d in draws}
    assert qs <= set(range(60, 100)) and {60, 99} <= qs and all(isinstance(q, int) for q in qs)
    assert min(d["downsample"] for d in draws) < 1 < max(d["downsample"] for d in draws) > 7


def _gfpgan_by_hand(hr: np.ndarray, p: dict, out_size: int) -> np.ndarray:
    """The noise-free chain written from the official dataset's order: blur (correlation, mirrored
    borders), bilinear to floor(size / r), JPEG at q (OpenCV), bilinear back, 8-bit rounding."""
    import cv2

    h, w = hr.shape[:2]
    x = hr.astype(np.float32) / 255
    x = cv2.filter2D(x, -1, _kernel_by_formula(41, p["sigma_x"], p["sigma_y"], p["theta"]),
                     borderType=cv2.BORDER_REFLECT_101)
    x = cv2.resize(x, (int(np.floor(w / p["downsample"])), int(np.floor(h / p["downsample"]))),
                   interpolation=cv2.INTER_LINEAR)
    q8 = np.clip(np.round(np.clip(x, 0, 1) * 255), 0, 255).astype(np.uint8)
    _, buf = cv2.imencode(".jpg", q8[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, p["jpeg_quality"]])
    x = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255
    x = cv2.resize(x.copy(), (out_size, out_size), interpolation=cv2.INTER_LINEAR)
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name,scale", [("gfpgan", 1), ("gfpgan-x4", 4)])
def test_gfpgan_chain_equals_the_official_order_step_by_step(name, scale):
    """With the noise range at 0 (the one random step after the draws), the output equals the chain written
    in the test to within one 8-bit level (kernel sums and resampling weights in float32)."""
    from dataclasses import replace

    hr = _shared_face(3)
    deg = replace(make_degradation(name), noise_sigma=(0.0, 0.0))
    for seed in (1, 2, 3, 4):
        lr, params = degrade(deg, hr, seed)
        want = _gfpgan_by_hand(hr, params, 128 // scale)
        assert lr.shape == (128 // scale, 128 // scale, 3)
        diff = np.abs(lr.astype(int) - want.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (seed, params, diff.max(), (diff > 0).mean())


def test_gfpgan_noise_is_its_sigma_on_the_0_255_scale_and_seeded():
    """Blur ~ none, no resize, JPEG 100: the luma of the output minus the clean chain has the drawn sigma
    (10 levels per channel, independent: 10 x |(0.299, 0.587, 0.114)| = 6.68 in luma, which JPEG keeps at
    full resolution; its 4:2:0 chroma averages the rest), and the same seed gives the same bytes, another
    seed other noise."""
    from dataclasses import replace

    hr = _shared_face(5)
    deg = replace(make_degradation("gfpgan"), blur_sigma=(0.1, 0.1), downsample=(1.0, 1.0), jpeg_quality=(100, 100),
                  noise_sigma=(10.0, 10.0))
    clean = replace(deg, noise_sigma=(0.0, 0.0))
    lr, _ = degrade(deg, hr, 7)
    ref, _ = degrade(clean, hr, 7)
    inner = (slice(8, -8), slice(8, -8))   # away from clipping at the borders' dark background
    d = (lr[inner].astype(float) - ref[inner].astype(float)) @ np.array([0.299, 0.587, 0.114])
    want = 10 * np.sqrt(0.299 ** 2 + 0.587 ** 2 + 0.114 ** 2)
    assert abs(d.std() - want) < 0.6 and abs(d.mean()) < 0.5, (d.std(), want, d.mean())
    again, _ = degrade(deg, hr, 7)
    other, _ = degrade(deg, hr, 8)
    assert again.tobytes() == lr.tobytes() and other.tobytes() != lr.tobytes()


def test_gfpgan_x4_prepares_a_folder_in_the_16_to_64_protocol(tmp_path):
    """``--degradation folder=gfpgan-x4``: 16 px LR from 64 px HR, its drawn parameters in each record."""
    import json

    from PIL import Image

    from scgan_bench.run.prepare import prepare_dataset

    root = tmp_path / "faces"
    root.mkdir()
    for i in range(3):
        Image.fromarray(_shared_face(i)).save(root / f"f{i}.png")
    res = prepare_dataset("folder", out=tmp_path / "run", seed=0, root=root, degradation="gfpgan-x4", progress=False)
    assert len(res.records) == 3 and res.degradation["name"] == "gfpgan-x4"
    for rid, rec in res.records.items():
        lr = np.asarray(Image.open(res.dir / rec["lr"]))
        assert lr.shape == (16, 16, 3) and rec["degradation"]["name"] == "gfpgan-x4"
        assert {"sigma_x", "downsample", "noise_sigma", "jpeg_quality"} <= set(rec["degradation"]), json.dumps(rec)


def test_a_degradation_of_another_scale_than_the_datasets_is_refused(tmp_path):
    from PIL import Image

    from scgan_bench.run.prepare import prepare_dataset

    root = tmp_path / "faces"
    root.mkdir()
    Image.fromarray(_shared_face(0)).save(root / "f0.png")
    with pytest.raises(UsageError, match="x1.*x4.*gfpgan-x4"):
        prepare_dataset("folder", out=tmp_path / "run", seed=0, root=root, degradation="gfpgan", progress=False)
