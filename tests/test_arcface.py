"""ArcFace identity (ids-arcface, deg-arcface, deg-arcface-excl): IResNet in the official key layout and at
its published size, strict verified loading, the fixed 5-point alignment, the metrics against formulas
written here. No real ArcFace weights exist offline: on real faces (ORL) the test checks plumbing only."""
from __future__ import annotations

import hashlib
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from scgan_bench.assets import weights as W
from scgan_bench.errors import UsageError
from scgan_bench.metrics.arcface import (ARCFACE_112, ARCFACE_ASSET, FFHQ_512, ArcFaceFeatures, align_112,
                                         load_arcface, similarity_matrix)
from scgan_bench.networks.iresnet import IResNet

from sb_testdata import ORL, need, rgb_face, tamper

WIDTH = 1 / 16  # the official layout at 1/16 of the channels: the same keys, a small file


def test_iresnet_has_the_official_keys_and_published_sizes():
    with torch.device("meta"):
        r100, r50 = IResNet("r100"), IResNet("r50")
    # InsightFace's model zoo: IResNet-100 65.2 M and IResNet-50 43.6 M parameters
    assert sum(p.numel() for p in r100.parameters()) == 65_156_160
    assert sum(p.numel() for p in r50.parameters()) == 43_590_848
    keys = set(IResNet("r18", width=WIDTH).state_dict())
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    want = {"conv1.weight", "prelu.weight", "fc.weight", "fc.bias", *(f"bn1.{k}" for k in bn),
            *(f"bn2.{k}" for k in bn), *(f"features.{k}" for k in bn)}
    for stage in range(1, 5):  # arcface_torch's iresnet: every stage opens with a stride-2 block and a shortcut
        for b in range(2):
            p = f"layer{stage}.{b}"
            want |= {f"{p}.conv1.weight", f"{p}.conv2.weight", f"{p}.prelu.weight"}
            want |= {f"{p}.{n}.{k}" for n in ("bn1", "bn2", "bn3") for k in bn}
        want |= {f"layer{stage}.0.downsample.0.weight", *(f"layer{stage}.0.downsample.1.{k}" for k in bn)}
    assert keys == want
    net = IResNet("r18", width=WIDTH).eval()
    assert net(torch.zeros(2, 3, 112, 112)).shape == (2, 512)
    assert net.layer1[0].conv2.stride == (2, 2) and net.layer1[0].conv1.stride == (1, 1)  # stride on conv2


def test_alignment_puts_the_ffhq_points_on_arcface_template():
    m = similarity_matrix(FFHQ_512 * 64 / 512, ARCFACE_112)
    mapped = (m[:, :2] @ (FFHQ_512 * 64 / 512).T).T + m[:, 2]
    assert np.abs(mapped - ARCFACE_112).max() < 2.5  # the two templates agree up to a similarity
    assert abs(m[0, 0] - m[1, 1]) < 1e-9 and abs(m[0, 1] + m[1, 0]) < 1e-9  # rotation + uniform scale
    for size in (64, 128):
        im = np.zeros((size, size, 3), np.uint8)
        pts = FFHQ_512 * size / 512
        for x, y in np.round(pts).astype(int):
            im[y - size // 64: y + size // 64 + 1, x - size // 64: x + size // 64 + 1] = 255
        out = (align_112([im])[0, 0].numpy() + 1) * 127.5
        m = similarity_matrix(pts, ARCFACE_112)
        for (x, y) in np.round(pts):  # each bright dot lands where the transform sends its centre
            ex, ey = m[:, :2] @ np.array([x, y]) + m[:, 2]
            y0, x0 = int(round(ey)) - 7, int(round(ex)) - 7
            w = out[y0: y0 + 15, x0: x0 + 15]
            yy, xx = np.mgrid[0:15, 0:15]
            cy, cx = (w * yy).sum() / w.sum() + y0, (w * xx).sum() / w.sum() + x0  # the blob's centroid
            assert abs(cx - ex) <= 0.5 and abs(cy - ey) <= 0.5, (size, cx, ex, cy, ey)
    # InsightFace's norm_crop written here: skimage's least-squares similarity from the five points to the
    # 112 px template, cv2.warpAffine of the uint8 face (bilinear, zeros outside); equal to the level
    import cv2
    from skimage.transform import SimilarityTransform

    insightface_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                                [70.7299, 92.2041]])  # face_align.arcface_dst
    facexlib_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                             [201.26117, 371.41043], [313.08905, 371.15118]])  # FaceRestoreHelper's template
    for size in (64, 128, 512):
        with warnings.catch_warnings():  # estimate() is deprecated for from_estimate() in scikit-image 0.26
            warnings.simplefilter("ignore")
            t = SimilarityTransform()
            assert t.estimate(facexlib_512 * size / 512, insightface_112)
        face = rgb_face(3, size)
        want = cv2.warpAffine(face, t.params[0:2, :], (112, 112), borderValue=0.0)
        got = np.rint((align_112([face])[0].permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8)
        assert np.array_equal(got, want), size
    batch = align_112([rgb_face(0, 64), rgb_face(1, 128), rgb_face(2, 64)])  # mixed sizes keep their order
    assert batch.shape == (3, 3, 112, 112) and torch.equal(batch[2], align_112([rgb_face(2, 64)])[0])
    assert batch.min() >= -1 and batch.max() <= 1


def _install(weights_dir: Path, sd: dict) -> Path:
    path = weights_dir / W.ASSETS.get(ARCFACE_ASSET).filename
    torch.save(sd, path)
    W.register_sha256(ARCFACE_ASSET, hashlib.sha256(path.read_bytes()).hexdigest())
    return path


def test_official_file_loads_strictly_and_is_verified(weights_dir):
    torch.manual_seed(0)
    ref = IResNet("r100", width=WIDTH).eval()
    sd = {f"module.{k}": v.half() if v.is_floating_point() else v for k, v in ref.state_dict().items()}
    path = _install(weights_dir, sd)  # DataParallel prefix, fp16 tensors: as released files come
    net = load_arcface(width=WIDTH).eval()
    x = torch.randn(2, 3, 112, 112)
    ref.load_state_dict({k[7:]: v.float() for k, v in sd.items()})
    torch.testing.assert_close(net(x), ref(x))
    bad = dict(sd)
    bad.pop("module.fc.bias")
    _install(weights_dir, bad)
    with pytest.raises(UsageError, match=r"official key layout: 1 missing \(fc.bias\)"):
        load_arcface(width=WIDTH)
    _install(weights_dir, sd)
    tamper(path)
    with pytest.raises(W.WeightsError, match="sha256"):
        load_arcface(width=WIDTH)


def test_ids_and_deg_equal_the_formulas(weights_dir, monkeypatch):
    """The three registered metrics, built by their factories (the network at reduced width), against the
    formulas: mean cosine; mean angle of every pair; mean angle without numerically identical pairs."""
    import scgan_bench.metrics.arcface as A
    from scgan_bench.registries import METRICS

    torch.manual_seed(1)
    _install(weights_dir, IResNet("r100", width=WIDTH).state_dict())
    real = A.load_arcface
    monkeypatch.setattr(A, "load_arcface", lambda path=None, width=1.0: real(path, width=WIDTH))
    made = {n: METRICS.get(n).create() for n in ("ids-arcface", "deg-arcface", "deg-arcface-excl")}
    ex = made["ids-arcface"].extractor
    hr = {f"{k}": rgb_face(k) for k in range(5)}
    sr = {k: np.clip(v.astype(int) + 10 + 15 * (int(k) % 2), 0, 255).astype(np.uint8) for k, v in hr.items()}
    sr["0"] = hr["0"].copy()  # one SR image equal to its HR: cosine 1
    fs, fh = ({k: e for k, e in zip(d, ex.extract(list(d.values())))} for d in (sr, hr))
    assert all(abs(np.linalg.norm(v) - 1) < 1e-9 for v in fs.values())
    cos = {k: float(np.dot(fs[k], fh[k])) for k in hr}
    per, val = made["ids-arcface"].compute(fs, fh)
    assert per == pytest.approx(cos, abs=1e-12) and val[""] == pytest.approx(np.mean(list(cos.values())))
    ang = {k: math.degrees(math.acos(min(1.0, c))) for k, c in cos.items()}
    per, val = made["deg-arcface"].compute(fs, fh)
    assert per == pytest.approx(ang, abs=1e-9) and per["0"] == pytest.approx(0, abs=1e-3)
    assert val[""] == pytest.approx(np.mean(list(ang.values()))) and val["excluded"] == 0
    per, val = made["deg-arcface-excl"].compute(fs, fh)
    assert set(per) == set(hr) - {"0"} and val["excluded"] == 1
    assert val[""] == pytest.approx(np.mean([a for k, a in ang.items() if k != "0"]))


def test_orl_faces_run_through_the_metric_plumbing_only(weights_dir):
    """Random weights: this checks that real faces go through alignment and the network to finite unit
    embeddings, with a face identical to itself; it says nothing about identity (no real weights offline)."""
    from PIL import Image

    root = need(ORL)
    torch.manual_seed(2)
    _install(weights_dir, IResNet("r100", width=WIDTH).state_dict())
    ex = ArcFaceFeatures(net=load_arcface(width=WIDTH))
    faces = []
    for s in (1, 2):
        for k in (1, 2):
            g = np.asarray(Image.open(root / f"s{s}" / f"{k}.pgm").convert("L").crop((0, 10, 92, 102)).resize((64, 64)))
            faces.append(np.repeat(g[..., None], 3, axis=2))
    e = ex.extract(faces)
    assert np.isfinite(e).all() and np.allclose(np.linalg.norm(e, axis=1), 1)
    assert float(e[0] @ ex.extract([faces[0]])[0]) == pytest.approx(1.0, abs=1e-6)
