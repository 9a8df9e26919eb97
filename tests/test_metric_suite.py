"""The paper's metrics against their reference implementations (stated tolerances) and sanity checks
on real faces from ../shared/data."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scgan_bench.assets import weights as W
from scgan_bench.io.image_io import read_image, write_png
from scgan_bench.registries import METRICS, load_plugins

from sb_testdata import HR_FACES, ORL, SHARED, auc, need, random_inception_state_dict, rgb_face

load_plugins()
NIQE_PARAMS = SHARED / "weights" / "niqe_pris_params.npz"


def _pin(name: str, path: Path) -> None:
    W.register_sha256(name, hashlib.sha256(path.read_bytes()).hexdigest())


def _hr_lr_sr(n: int, lr_size: int = 16):
    """Real 64 px faces, their 16 px bicubic downsample and its bicubic upsample."""
    hrs = [rgb_face(k) for k in range(n)]
    srs = []
    for hr in hrs:
        lr = Image.fromarray(hr).resize((lr_size, lr_size), Image.Resampling.BICUBIC)
        srs.append(np.asarray(lr.resize((64, 64), Image.Resampling.BICUBIC)))
    return hrs, srs


# ------------------------------------------------------------------------------------ FID / KID
def test_fid_kid_equal_torch_fidelity_functions_on_identical_features():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    from scgan_bench.metrics.distribution import fid_from_features, kid_from_features

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 64)), rng.normal(0.3, 1.1, size=(250, 64))
    ref_fid = fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(a)),
                                       fid_features_to_statistics(torch.from_numpy(b)), False)
    assert abs(fid_from_features(a, b) - ref_fid["frechet_inception_distance"]) <= 1e-6 * ref_fid[
        "frechet_inception_distance"]
    # the documented protocol, written out: 100 subsets of half the smaller set (250 // 2), seed 2020,
    # polynomial kernel of degree 3, gamma 1/d, coef 1
    ref_kid = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=100, kid_subset_size=125,
                                     rng_seed=2020, kid_kernel="poly", kid_kernel_poly_degree=3,
                                     kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1, verbose=False)
    mean, std, size = kid_from_features(a, b)
    assert size == 125
    want_mean, want_std = ref_kid["kernel_inception_distance_mean"], ref_kid["kernel_inception_distance_std"]
    assert want_mean > 0.01 and want_std > 1e-4  # values large enough for a relative check to mean something
    assert abs(mean - want_mean) <= 1e-9 * want_mean and abs(std - want_std) <= 1e-9 * want_std
    assert kid_from_features(a, b) == (mean, std, size)  # same seed, same value


def test_the_gpu_fid_and_kid_equal_torch_fidelitys(monkeypatch):
    """What a GPU run computes (``fid_torch`` / ``kid_torch``: float64 torch on the metric's device; run
    here on the CPU) equals torch-fidelity's functions: FID to 1e-6 relative, also for rank-deficient
    covariances (30 and 24 images of 256-d features: measured 4e-8; full rank ~1e-15), KID mean and
    std to 1e-9 (measured ~1e-15: the same subsets, kernel and estimator). The metrics take that path
    on a GPU (the device test stubbed)."""
    import scgan_bench.metrics.distribution as D

    rng = np.random.default_rng(1)
    for n1, n2, d in ((300, 250, 64), (30, 24, 256)):
        a, b = rng.normal(size=(n1, d)) * 0.3 + rng.random(d), rng.normal(0.1, 0.35, size=(n2, d))
        want = D.fid_from_features(a, b)
        assert abs(D.fid_torch(a, b) - want) <= 1e-6 * want, (n1, n2, d)
        km, ks, kn = D.kid_from_features(a, b)
        gm, gs, gn = D.kid_torch(a, b)
        assert gn == kn and abs(gm - km) <= 1e-9 * abs(km) and abs(gs - ks) <= 1e-9 * ks, (n1, n2, d)
    sr = {f"{k:03d}": v for k, v in enumerate(a)}
    ref = {f"{k:03d}": v for k, v in enumerate(b)}
    called = []
    monkeypatch.setattr(D, "on_gpu", lambda device: True)
    monkeypatch.setattr(D, "fid_torch", lambda x, y, device: called.append("fid") or 1.0)
    monkeypatch.setattr(D, "kid_torch", lambda x, y, device: called.append("kid") or (2.0, 3.0, 12))
    assert D.FID(None, "cuda").compute(sr, ref)[1][""] == 1.0
    assert D.KID(None, "cuda").compute(sr, ref)[1] == {"": 2.0, "std": 3.0, "subset_size": 12.0}
    assert called == ["fid", "kid"]


def test_feature_batches_are_padded_to_one_shape(tmp_path):
    """On a GPU (or ``pad=True``) a network extractor gets only full batches: a short last batch is
    padded with copies of its last image and their rows dropped; dlib's per-image extractors are never
    padded; without padding the last batch is short."""
    from scgan_bench.run.features import cached_features

    class Recording:
        key = "recording/v1"

        def __init__(self, device="cpu"):
            self.device, self.calls = device, []

        def extract(self, images):
            self.calls.append(len(images))
            return np.stack([im.reshape(-1, 3).mean(0) for im in images]).astype(np.float64)

    rng = np.random.default_rng(2)
    images = {}
    for k in range(5):
        im = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        write_png(tmp_path / f"{k}.png", im)
        images[str(k)] = (tmp_path / f"{k}.png", f"sha{k}")
    want = {k: read_image(p).reshape(-1, 3).mean(0) for k, (p, _) in images.items()}
    for pad, cpu_parallel, calls in ((True, False, [4, 4]), (False, False, [4, 1]), (True, True, [4, 1])):
        ext = Recording()
        if cpu_parallel:
            ext.cpu_parallel = True
        got = cached_features(ext, images, tmp_path / f"c{pad}{cpu_parallel}", batch_size=4, progress=False, pad=pad)
        assert ext.calls == calls, (pad, cpu_parallel)
        assert got.keys() == want.keys() and all(np.allclose(got[k], want[k]) for k in want)


@pytest.mark.slow
def test_fid_kid_of_a_run_equal_torch_fidelity_calculate_metrics(weights_dir, tmp_path):
    """End to end: our cached-feature FID/KID on PNG folders equals torch-fidelity's own pipeline
    (its image loading, its feature extraction) with the same (random, official-layout) weights."""
    import torch_fidelity

    from scgan_bench.run.features import cached_features
    from scgan_bench.metrics.distribution import FID, KID, InceptionFeatures

    path = weights_dir / W.ASSETS.get("inception-fid").filename
    torch.save(random_inception_state_dict(), path)
    _pin("inception-fid", path)
    hrs, srs = _hr_lr_sr(12)
    dirs = {"sr": tmp_path / "sr", "hr": tmp_path / "hr"}
    imgs = {}
    for key, images in (("sr", srs), ("hr", hrs)):
        imgs[key] = {}
        for k, im in enumerate(images):
            p = dirs[key] / f"{k:03d}.png"
            write_png(p, im)
            imgs[key][f"{k:03d}"] = (p, hashlib.sha256(p.read_bytes()).hexdigest())
    ext = InceptionFeatures()
    f_sr = cached_features(ext, imgs["sr"], tmp_path / "cache" / "sr", progress=False)
    f_hr = cached_features(ext, imgs["hr"], tmp_path / "cache" / "hr", progress=False)
    ours_fid = FID(ext).compute(f_sr, f_hr)[1][""]
    ours_kid = KID(ext).compute(f_sr, f_hr)[1]
    ref = torch_fidelity.calculate_metrics(
        input1=str(dirs["sr"]), input2=str(dirs["hr"]), fid=True, kid=True, kid_subset_size=6,  # 12 // 2
        feature_extractor_weights_path=str(path), cuda=False, verbose=False, cache=False)
    want_fid, want_kid = ref["frechet_inception_distance"], ref["kernel_inception_distance_mean"]
    assert abs(want_kid) > 1e-9 and want_fid > 1e-6  # the relative tolerances below are not vacuous
    assert abs(ours_fid - want_fid) <= 1e-6 * want_fid   # 8e-8 relative at most (default / AVX2 ISAs, issue 26)
    # KID is a small mean of large cubic-kernel terms: float32 features computed in another order move it by
    # 1.1e-5 relative under ATEN_CPU_CAPABILITY=default (< 1e-6 natively; issue 26), so 1e-4; KID doubled: 1.0
    assert abs(ours_kid[""] - want_kid) <= 1e-4 * abs(want_kid)
    # the std is a spread of nearly equal subset values: float32 feature rounding in torch-fidelity's own
    # pipeline moves it on the scale of the kernel terms, i.e. of KID itself (measured: 2e-5 of the std with the
    # shared faces; 1.7e-8 absolute = 4.7e-6 of KID, 1.5e-4 of its small std, on the near-identical fallback
    # faces without ../shared), so 1e-4 of the larger of the two
    std = ref["kernel_inception_distance_std"]
    assert abs(ours_kid["std"] - std) <= 1e-4 * max(std, abs(want_kid))
    # the cache is reused: no image is recomputed on a second call
    calls = []
    orig = ext.extract
    ext.extract = lambda images: calls.append(len(images)) or orig(images)
    cached_features(ext, imgs["sr"], tmp_path / "cache" / "sr", progress=False)
    assert calls == []


# ------------------------------------------------------------------------------------ LPIPS
def test_lpips_equals_a_direct_lpips_call(weights_dir, tmp_path):
    import lpips
    from torchvision.models import alexnet

    from scgan_bench.metrics.perceptual import LPIPS

    torch.manual_seed(0)
    sd = alexnet(weights=None).state_dict()
    path = weights_dir / "alexnet-owt-7be5be79.pth"
    torch.save(sd, path)
    _pin("alexnet", path)
    # the direct call finds the same backbone file in torchvision's cache
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(sd, hub / "alexnet-owt-7be5be79.pth")
    direct = lpips.LPIPS(net="alex", version="0.1", verbose=False).eval()
    hrs, srs = _hr_lr_sr(5)
    ours = LPIPS().score_pairs(srs, hrs)

    def t(ims):
        return torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).float() / 127.5 - 1

    with torch.no_grad():
        ref = direct(t(srs), t(hrs)).reshape(-1).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)
    assert all(v > 0 for v in ours)
    assert max(LPIPS().score_pairs(hrs, hrs)) < 1e-6


# ------------------------------------------------------------------------------------ NIQE
def _pyiqa_niqe():
    try:
        from pyiqa.archs.niqe_arch import calculate_niqe
    except ImportError as exc:
        pytest.skip(f"pyiqa is not importable ({exc}); `make install` adds it with --no-deps")
    return calculate_niqe


def test_niqe_agrees_with_pyiqa_within_1e_3(monkeypatch):
    from skimage import data

    from scgan_bench.metrics.niqe import NIQE

    monkeypatch.setenv("SCGAN_BENCH_WEIGHTS", str(need(NIQE_PARAMS).parent))
    calculate_niqe = _pyiqa_niqe()
    ours = NIQE(upsample=1, block=96)
    images = [data.astronaut(), data.coffee(), data.chelsea()]
    if HR_FACES.exists():
        images += [np.asarray(Image.open(p).convert("RGB").resize((192, 192), Image.Resampling.BICUBIC))
                   for p in sorted(HR_FACES.glob("*.png"))[:3]]
    mu, cov = torch.from_numpy(ours.mu), torch.from_numpy(ours.cov)
    for img, val in zip(images, ours.score_images(images)):
        t = torch.from_numpy(img).permute(2, 0, 1)[None].double() / 255.0
        ref = float(calculate_niqe(t, 0, True, "yiq", mu, cov))
        assert abs(val - ref) < 1e-5, (val, ref)  # the issue asks 1e-3; measured < 1e-6


def test_niqe_64px_protocols_run_and_rank_blur_worse(monkeypatch):
    monkeypatch.setenv("SCGAN_BENCH_WEIGHTS", str(need(NIQE_PARAMS).parent))
    hrs, srs = _hr_lr_sr(6, lr_size=12)
    for name in ("niqe", "niqe-b32"):
        m = METRICS.get(name).create()
        sharp, blurry = np.mean(m.score_images(hrs)), np.mean(m.score_images(srs))
        assert np.isfinite(sharp) and blurry > sharp, name


# ------------------------------------------------------------------------------------ dlib backends
def test_hog_detects_hr_faces_far_more_often_than_bicubic_from_16px():
    from scgan_bench.io.degradations import ComplexDegradation, degrade, derive_seed

    need(HR_FACES)
    hrs, simple = _hr_lr_sr(40)
    complex_ = [np.asarray(Image.fromarray(degrade(ComplexDegradation(), h, derive_seed(0, "t", str(k)))[0])
                           .resize((64, 64), Image.Resampling.BICUBIC)) for k, h in enumerate(hrs)]
    det = METRICS.get("hog-detect").create()
    hr, s, c = (np.mean(det.score_images(x)) for x in (hrs, simple, complex_))
    # measured on the shared faces: 1.0 (HR), 0.88 (plain bicubic x4 down/up), 0.07 (FFHQ protocol)
    assert hr >= 0.9 and hr > s and c < hr - 0.5, (hr, s, c)


def test_dlib_descriptor_separates_orl_identities():
    from scgan_bench.io.image_io import read_image
    from scgan_bench.metrics.identity import DlibDescriptor
    from scgan_bench.io.resize import resize_uint8, to_square

    root = need(ORL)
    people = sorted(p for p in root.iterdir() if p.is_dir())[:12]
    faces = {p.name: [resize_uint8(to_square(read_image(p / f"{k}.pgm")), (64, 64), "bicubic")
                      for k in (1, 2, 3)] for p in people}
    ext = DlibDescriptor()
    emb = {k: ext.extract(v) for k, v in faces.items()}
    same, diff = [], []
    names = list(emb)
    for i, a in enumerate(names):
        same += [np.linalg.norm(emb[a][0] - emb[a][j]) for j in (1, 2)]
        diff += [np.linalg.norm(emb[a][0] - emb[b][0]) for b in names[i + 1:]]
    assert auc(np.r_[-np.array(same), -np.array(diff)], np.r_[np.ones(len(same)), np.zeros(len(diff))]) > 0.9


def test_landmark_error_is_zero_on_hr_and_grows_with_degradation():
    need(HR_FACES)
    from scgan_bench.metrics.landmarks import Dlib68Landmarks, LandmarkError

    ext = Dlib68Landmarks()
    hrs = [rgb_face(k) for k in range(10)]
    ref = dict(enumerate(ext.extract(hrs)))
    metric = LandmarkError(ext, normalised=False)
    errs = {}
    for lr_size in (32, 16, 8):
        srs = [np.asarray(Image.fromarray(h).resize((lr_size, lr_size), Image.Resampling.BICUBIC)
                          .resize((64, 64), Image.Resampling.BICUBIC)) for h in hrs]
        errs[lr_size] = metric.compute(dict(enumerate(ext.extract(srs))), ref)[1][""]
    assert metric.compute(ref, ref)[1][""] == 0.0
    assert 0 < errs[32] < errs[16] < errs[8], errs
    nio = LandmarkError(ext, normalised=True).compute(dict(enumerate(ext.extract(hrs))), ref)[1][""]
    assert nio == 0.0


def test_dlib_identity_fid_equals_torch_fidelity_with_the_registered_extractor(tmp_path):
    import torch_fidelity

    from scgan_bench.metrics.distribution import FID, KID
    from scgan_bench.metrics.identity import TORCH_FIDELITY_NAME, register_with_torch_fidelity

    register_with_torch_fidelity()
    hrs, srs = _hr_lr_sr(10)
    feats = {}
    m = METRICS.get("fid-dlib").create()
    for key, images in (("sr", srs), ("hr", hrs)):
        for k, im in enumerate(images):
            write_png(tmp_path / key / f"{k:03d}.png", im)
        feats[key] = dict(enumerate(m.extractor.extract(images)))
    ref = torch_fidelity.calculate_metrics(
        input1=str(tmp_path / "sr"), input2=str(tmp_path / "hr"), fid=True, kid=True, kid_subset_size=5,  # 10 // 2
        feature_extractor=TORCH_FIDELITY_NAME, cuda=False, verbose=False, cache=False, batch_size=5)
    ours_fid = FID(m.extractor).compute(feats["sr"], feats["hr"])[1][""]
    ours_kid = KID(m.extractor).compute(feats["sr"], feats["hr"])[1][""]
    want_fid, want_kid = ref["frechet_inception_distance"], ref["kernel_inception_distance_mean"]
    assert want_fid > 1e-3 and abs(want_kid) > 1e-7
    assert abs(ours_fid - want_fid) <= 1e-6 * want_fid
    assert abs(ours_kid - want_kid) <= 1e-6 * abs(want_kid)


def test_verification_protocol():
    from scgan_bench.metrics.identity import IdentityCosine, Verification, derangement

    ids = [f"{i:03d}" for i in range(50)]
    d = derangement(ids)
    assert sorted(d) == ids and sorted(d.values()) == ids and all(d[i] != i for i in ids)
    assert derangement(ids) == d  # seeded
    rng = np.random.default_rng(1)
    ref = {i: rng.normal(size=128) for i in ids}
    ref = {i: v / np.linalg.norm(v) for i, v in ref.items()}
    per, val = Verification(None, threshold=1.1).compute(ref, ref)
    assert val[""] == 1.0 and set(per.values()) == {1.0}
    per, val = Verification(None, threshold=1.1, rate="balanced").compute(ref, ref)
    assert val[""] == 1.0  # identical embeddings of distinct people: genuine accepted, impostors rejected
    noisy = {i: v + rng.normal(scale=0.2, size=128) for i, v in ref.items()}
    assert Verification(None, threshold=1.1, rate="balanced").compute(noisy, ref)[1][""] < 0.9
    cos = IdentityCosine(None).compute(ref, ref)[1][""]
    assert abs(cos - 1.0) < 1e-12


@pytest.mark.slow
def test_demo_run_shows_offline_metrics_and_marks_the_rest_unavailable(tmp_path, monkeypatch):
    from scgan_bench.run.pipeline import RunConfig, run_benchmark

    monkeypatch.setenv("SCGAN_BENCH_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    res = run_benchmark(RunConfig(
        datasets=["demo", "demo-real"], methods=["bicubic", "ground-truth"],
        metrics=["psnr", "hog-detect", "dlib-verif", "fid-dlib", "kid-dlib", "landmark-dlib68", "fid",
                 "facenet-verif"], out=tmp_path / "r", limit=30, progress=False))
    cell = {(c.dataset, c.method, c.metric): c for c in res.cells}
    assert cell[("demo", "ground-truth", "landmark-dlib68")].mean == 0.0
    assert cell[("demo", "ground-truth", "fid-dlib")].mean < 1e-6
    assert cell[("demo", "ground-truth", "hog-detect")].mean > cell[("demo", "bicubic", "hog-detect")].mean
    assert cell[("demo-real", "bicubic", "kid-dlib")].status == "ok"  # vs the demo HR set
    assert cell[("demo-real", "ground-truth", "psnr")].status == "n/a"
    for m in ("fid", "facenet-verif"):
        c = cell[("demo", "bicubic", m)]
        assert c.status == "unavailable" and "missing" in c.note and "https://" in c.note
    md = (tmp_path / "r" / "summary.md").read_text()
    assert "kid-dlib ↓ (x100)" in md and "FID/KID reference: HR of demo" in md
    again = run_benchmark(RunConfig(
        datasets=["demo", "demo-real"], methods=["bicubic", "ground-truth"],
        metrics=["psnr", "hog-detect", "dlib-verif", "fid-dlib", "kid-dlib", "landmark-dlib68", "fid",
                 "facenet-verif"], out=tmp_path / "r", limit=30, progress=False))
    assert again.recomputed == {"images_prepared": 0, "images_super_resolved": 0, "metric_values": 0}


def test_metrics_in_dlibs_space_share_one_descriptor_and_the_landmark_metrics_one_predictor():
    """dlib's models load once per process for all the metrics that read them (not once per metric)."""
    from scgan_bench.registries import METRICS, load_plugins

    load_plugins()
    ext = {n: METRICS.get(n).create().extractor for n in ("dlib-verif", "dlib-verif-balanced", "dlib-cos", "fid-dlib",
                                                          "kid-dlib", "landmark-dlib68", "landmark-dlib68-nio")}
    assert len({id(ext[n]) for n in ("dlib-verif", "dlib-verif-balanced", "dlib-cos", "fid-dlib", "kid-dlib")}) == 1
    assert ext["landmark-dlib68"] is ext["landmark-dlib68-nio"] and ext["landmark-dlib68"] is not ext["dlib-cos"]
