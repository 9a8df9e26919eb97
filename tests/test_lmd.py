"""LMD (landmark distance) with face-alignment's 2DFAN-4: the network's official names and size, strict and
verified loading, face-alignment's crop and heatmap decoding written independently here, and the metric in
a run equal to the distance computed here. Random weights: geometry and formulas, not landmark quality."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from scgan_bench.assets import weights as W
from scgan_bench.errors import UsageError
from scgan_bench.metrics import lmd as L
from scgan_bench.networks.fan import FAN

from sb_testdata import tamper

WIDTH = 1 / 8


def test_fan_has_the_official_names_and_size():
    with torch.device("meta"):
        assert sum(p.numel() for p in FAN(4).parameters()) == 23_820_176
    names = [n for n, _ in FAN(4, width=WIDTH).named_children()]
    heads = [f"{p}{i}" for i in range(4) for p in ("m", "top_m_", "conv_last", "l", "bn_end", "bl", "al")
             if not (i == 3 and p in ("bl", "al"))]
    assert names == ["conv1", "bn1", "conv2", "conv3", "conv4", *heads]
    # face-alignment's HourGlass(depth 4) registers b1, b2, recurses, then b3; level 1 adds b2_plus
    hg = [n for n, _ in FAN(4, width=WIDTH).m0.named_children()]
    assert hg == ["b1_4", "b2_4", "b1_3", "b2_3", "b1_2", "b2_2", "b1_1", "b2_1", "b2_plus_1", "b3_1", "b3_2", "b3_3",
                  "b3_4"]
    keys = set(FAN(4, width=WIDTH).state_dict())
    assert {"conv2.downsample.2.weight", "conv4.downsample.0.running_var", "m0.b1_4.conv3.weight"} <= keys
    assert not any(k.startswith("conv3.downsample") for k in keys)  # 128 -> 128: identity shortcut
    assert FAN(4, width=WIDTH).eval()(torch.zeros(1, 3, 256, 256)).shape == (1, 68, 64, 64)


def _fa_transform(point, center, scale, resolution):
    """face-alignment's ``transform(..., invert=True)`` (float32 torch matrices, ``.int()`` truncation)."""
    h = 200.0 * scale
    t = torch.eye(3)
    t[0, 0] = t[1, 1] = resolution / h
    t[0, 2] = resolution * (-center[0] / h + 0.5)
    t[1, 2] = resolution * (-center[1] / h + 0.5)
    return (torch.inverse(t) @ torch.tensor([point[0], point[1], 1.0]))[0:2].int().tolist()


def _fa_crop(image, center, scale, resolution=256):
    """face-alignment's ``crop``: the integer box's uint8 region (1-based bounds as written there), zeros
    outside the image, ``cv2.resize`` bilinear."""
    import cv2

    ul = _fa_transform([1, 1], center, scale, resolution)
    br = _fa_transform([resolution, resolution], center, scale, resolution)
    new = np.zeros((br[1] - ul[1], br[0] - ul[0], image.shape[2]), np.uint8)
    ht, wd = image.shape[:2]
    new_x = [max(1, -ul[0] + 1), min(br[0], wd) - ul[0]]
    new_y = [max(1, -ul[1] + 1), min(br[1], ht) - ul[1]]
    old_x = [max(1, ul[0] + 1), min(br[0], wd)]
    old_y = [max(1, ul[1] + 1), min(br[1], ht)]
    new[new_y[0] - 1:new_y[1], new_x[0] - 1:new_x[1]] = image[old_y[0] - 1:old_y[1], old_x[0] - 1:old_x[1], :]
    return cv2.resize(new, (resolution, resolution), interpolation=cv2.INTER_LINEAR)


def test_crop_is_face_alignments_to_the_level():
    """The 256 px crop of real faces (64, 128 and 512 px: the box reaches outside the image at every
    size) equals face-alignment's ``crop`` written above, level for level."""
    from sb_testdata import HR_FACES, need

    from scgan_bench.io.image_io import read_image
    from scgan_bench.io.resize import resize_uint8

    face = read_image(sorted(need(HR_FACES).glob("*.png"))[0])
    for size in (64, 128, 512):
        im = resize_uint8(face, (size, size), "bicubic")
        center = [size / 2.0, size / 2.0 - 0.12 * size]  # the whole image as the box: (w + h) / 195
        want = _fa_crop(im, center, 2.0 * size / 195.0)
        got = np.rint(L.crop_256([im])[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        assert np.array_equal(got, want), size


def test_crop_and_decoding_follow_face_alignment():
    size = 64
    h, centre = 200 * 2 * size / 195, np.array([32.0, 32.0 - 0.12 * 64])  # scale = (w + h) / 195, box = image
    # a bright 3 x 3 dot at image point (40, 20) lands at (p - centre) * 256 / h + 128 in the crop
    im = np.zeros((size, size, 3), np.uint8)
    im[19:22, 39:42] = 255
    crop = L.crop_256([im])[0, 0].numpy()
    yy, xx = np.mgrid[0:256, 0:256]
    got = np.array([(crop * xx).sum(), (crop * yy).sum()]) / crop.sum()
    want = (np.array([40.0, 20.0]) - centre) * 256 / h + 128
    assert np.abs(got - want).max() < 1.0  # the integer box moves the crop by up to a pixel
    # decoding: peak at (20, 30) with larger right / lower neighbours -> + 0.25 each; an edge peak -> none
    hm = np.zeros((68, 64, 64), np.float32)
    hm[:, 30, 20], hm[:, 30, 21], hm[:, 30, 19], hm[:, 31, 20], hm[:, 29, 20] = 1.0, 0.5, 0.2, 0.4, 0.1
    hm[1] = 0
    hm[1, 0, 10] = 1.0
    pts = L.decode(hm, size)
    q0 = np.array([20 + 1 + 0.25 - 0.5, 30 + 1 + 0.25 - 0.5])
    q1 = np.array([10 + 1 - 0.5, 0 + 1 - 0.5])
    np.testing.assert_allclose(pts[0], (q0 - 32) * h / 64 + centre, atol=1e-9)
    np.testing.assert_allclose(pts[1], (q1 - 32) * h / 64 + centre, atol=1e-9)


def _install(weights_dir, sd) -> None:
    path = weights_dir / W.ASSETS.get(L.FAN_ASSET).filename
    torch.save(sd, path)
    W.register_sha256(L.FAN_ASSET, hashlib.sha256(path.read_bytes()).hexdigest())


def test_lmd_in_a_run_equals_the_distance_and_the_file_is_checked(weights_dir, tmp_path, monkeypatch):
    from scgan_bench.io.image_io import read_image
    from scgan_bench.run.pipeline import RunConfig, run_benchmark

    torch.manual_seed(0)
    sd = FAN(4, width=WIDTH).state_dict()
    _install(weights_dir, sd)
    real = L.load_fan
    monkeypatch.setattr(L, "load_fan", lambda path=None, width=1.0: real(path, width=WIDTH))
    res = run_benchmark(RunConfig(datasets=["demo"], methods=["bicubic"], metrics=["lmd"], out=tmp_path / "run",
                                  limit=3, progress=False, device="cpu"))
    (cell,) = res.cells
    assert cell.status == "ok", cell
    ex = L.FANLandmarks(net=L.load_fan())
    run = tmp_path / "run"
    ids = sorted(p.stem for p in (run / "sr" / "demo" / "bicubic").glob("*.png"))
    sr = ex.extract([read_image(run / "sr" / "demo" / "bicubic" / f"{i}.png") for i in ids]).reshape(3, 68, 2)
    hr = ex.extract([read_image(run / "data" / "demo" / "hr" / f"{i}.png") for i in ids]).reshape(3, 68, 2)
    want = np.sqrt(((sr - hr) ** 2).sum(axis=2)).mean(axis=1)
    assert sorted(cell.values) == pytest.approx(sorted(want), abs=1e-9)
    assert cell.set_value == pytest.approx(want.mean(), abs=1e-9)
    bad = dict(sd)
    bad.pop("l3.bias")
    _install(weights_dir, bad)
    with pytest.raises(UsageError, match=r"official key layout: 1 missing \(l3.bias\)"):
        real(width=WIDTH)
    path = weights_dir / W.ASSETS.get(L.FAN_ASSET).filename
    tamper(path)
    with pytest.raises(W.WeightsError, match="sha256"):
        real(width=WIDTH)
