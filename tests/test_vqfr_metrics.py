"""``deg-vqfr`` and ``lmd-awing``: the Deg and LMD that VQFR's ``metric_paper`` scripts compute (the numbers
VQFR, CodeFormer and later papers print). Each network equals its authors' own architecture code on the
same random official-layout weights (GFPGAN's ``ResNetArcFace`` for arcface-pytorch's ``resnet_face18``,
read from the gfpgan wheel without its basicsr imports; facexlib's AWing ``FAN``), and each registered
metric, built by its factory from a weights file in the official layout, equals the script's procedure
written here step by step (files read by OpenCV, resizes, scaling, the score and its exclusion rule).
Random weights: geometry and formulas, not identity or landmark quality. gfpgan and facexlib come from
``make install`` (installed without their dependencies)."""
from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from scgan_bench.assets import weights as W
from scgan_bench.metrics import deg_vqfr as _deg_vqfr, lmd as _lmd  # noqa: F401 (register the assets)
from scgan_bench.registries import METRICS

from sb_testdata import HR_FACES, need


def _faces(n: int, size: int = 64) -> list[np.ndarray]:
    from scgan_bench.io.image_io import read_image
    from scgan_bench.io.resize import resize_uint8

    return [resize_uint8(read_image(p), (size, size), "bicubic") for p in sorted(need(HR_FACES).glob("*.png"))[:n]]


def _restored(faces: list[np.ndarray]) -> list[np.ndarray]:
    """Stand-ins for restored faces: blurred, shifted and brightened versions, and one equal to its HR face."""
    from scipy.ndimage import gaussian_filter

    out = [np.clip(gaussian_filter(faces[0].astype(float), (1.2, 1.2, 0)), 0, 255).round().astype(np.uint8),
           np.roll(faces[1], 2, axis=1),
           np.clip(faces[2].astype(int) + 25, 0, 255).astype(np.uint8),
           faces[3].copy()]
    return out + [f[::-1].copy() for f in faces[4:]]  # upside down: far from the HR face


def _draw_bn_statistics(net: torch.nn.Module) -> None:
    """Running statistics away from (0, 1), so a BatchNorm applied in the wrong place shows."""
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_mean"):
                t.normal_(0, 0.1)
            elif name.endswith("running_var"):
                t.uniform_(0.5, 1.5)


def _install(weights_dir: Path, asset: str, obj) -> Path:
    path = weights_dir / W.ASSETS.get(asset).filename
    torch.save(obj, path)
    W.register_sha256(asset, hashlib.sha256(path.read_bytes()).hexdigest())
    return path


# ---------------------------------------------------------------------------------------- deg-vqfr
def _gfpgan_arcface():
    """GFPGAN's ``arcface_arch`` module from the installed wheel, with a stand-in for the one basicsr name it
    imports (its registry decorator), so that the rest of gfpgan and basicsr are not needed."""
    spec = importlib.util.find_spec("gfpgan")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gfpgan is not installed: `make install` adds it (without dependencies) as the reference "
                    "architecture of resnet_face18")
    path = Path(spec.submodule_search_locations[0]) / "archs" / "arcface_arch.py"
    registry = types.ModuleType("basicsr.utils.registry")
    registry.ARCH_REGISTRY = types.SimpleNamespace(register=lambda *a, **k: (lambda cls: cls))
    saved = {k: sys.modules.get(k) for k in ("basicsr", "basicsr.utils", "basicsr.utils.registry")}
    sys.modules.update({"basicsr": types.ModuleType("basicsr"), "basicsr.utils": types.ModuleType("basicsr.utils"),
                        "basicsr.utils.registry": registry})
    try:
        module_spec = importlib.util.spec_from_file_location("gfpgan_arcface_reference", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


@pytest.fixture(scope="module")
def resnet_face18():
    torch.manual_seed(0)
    ref = _gfpgan_arcface().ResNetArcFace("IRBlock", (2, 2, 2, 2), use_se=False).eval()
    _draw_bn_statistics(ref)
    return ref


def test_resnet_face18_is_the_reference_architecture(resnet_face18):
    from scgan_bench.networks.resnet_face import ResNetFace

    net = ResNetFace().eval()
    assert list(net.state_dict()) == list(resnet_face18.state_dict())  # names and order
    assert sum(p.numel() for p in net.parameters()) == 25_627_081  # full size, pinned
    net.load_state_dict(resnet_face18.state_dict(), strict=True)
    x = torch.rand(3, 1, 128, 128) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(net(x), resnet_face18(x), rtol=0, atol=1e-5)


def _script_angles(hr_files: list[Path], sr_files: list[Path], net) -> tuple[list[float], int]:
    """VQFR's calculate_cos_dist.py: ``cv2.imread(path, 0)``, bilinear 128 px, (x - 127.5) / 127.5, the
    network on [gt, restored], float32 cosine, degrees; pairs under 1 degree counted, not averaged. The one
    change: the cosine is clipped to 1 before arccos (the script's NaN for identical pairs)."""
    import cv2

    def load(p):
        im = cv2.resize(cv2.imread(str(p), 0), (128, 128), interpolation=cv2.INTER_LINEAR)
        return torch.from_numpy((im[np.newaxis].astype(np.float32) - 127.5) / 127.5)

    kept, identical = [], 0
    for g, r in zip(hr_files, sr_files):
        with torch.no_grad():
            out = net(torch.stack([load(g), load(r)])).numpy()
        cos = np.dot(out[0], out[1]) / (np.linalg.norm(out[0]) * np.linalg.norm(out[1]))
        dist = float(np.arccos(min(cos, np.float32(1.0))) / math.pi * 180)
        if dist < 1:
            identical += 1
        else:
            kept.append(dist)
    return kept, identical


def test_deg_vqfr_equals_the_script(resnet_face18, weights_dir, tmp_path):
    import cv2

    _install(weights_dir, "arcface-resnet18-vqfr", {f"module.{k}": v for k, v in resnet_face18.state_dict().items()})
    metric = METRICS.get("deg-vqfr").create()
    assert METRICS.get("deg-vqfr").higher_is_better is False
    hr = _faces(6)
    sr = _restored(hr)
    files = {}
    for tag, ims in (("gt", hr), ("sr", sr)):
        files[tag] = []
        for k, im in enumerate(ims):
            files[tag].append(tmp_path / f"{tag}_{k}.png")
            cv2.imwrite(str(files[tag][-1]), im[..., ::-1])
    kept, identical = _script_angles(files["gt"], files["sr"], resnet_face18)
    ids = [str(k) for k in range(len(hr))]
    ex = metric.extractor
    per, values = metric.compute(dict(zip(ids, ex.extract(sr))), dict(zip(ids, ex.extract(hr))))
    assert identical == 1 and values["excluded"] == 1 and "3" not in per  # the identical pair
    # float32 (script) vs float64 (metric) cosines, two networks: measured worst 8.1e-5 degrees (default,
    # AVX2 and AVX-512 kernels, 1 and 2 threads) on angles of 1.1-5.8 degrees; 1e-3 allowed
    assert [per[i] for i in sorted(per)] == pytest.approx(kept, abs=1e-3)
    assert values[""] == pytest.approx(sum(kept) / len(kept), abs=1e-3)
    assert max(kept) - min(kept) > 1.0  # the pairs are told apart


def test_deg_vqfr_reads_faces_as_opencv_reads_their_files(tmp_path):
    """The gray levels are those of ``cv2.imread(file, 0)`` of the PNG the run writes (libpng's RGB-to-gray,
    not ``cv2.cvtColor``'s), for faces of 64 and 512 px."""
    import cv2

    from scgan_bench.metrics.deg_vqfr import gray_128

    for size in (64, 512):
        face = _faces(1, size)[0]
        path = tmp_path / f"face{size}.png"
        cv2.imwrite(str(path), face[..., ::-1])
        want = cv2.resize(cv2.imread(str(path), 0), (128, 128), interpolation=cv2.INTER_LINEAR)
        got = gray_128([face])[0, 0].numpy() * 127.5 + 127.5
        assert np.array_equal(np.rint(got).astype(np.uint8), want), size


def test_deg_vqfr_fails_when_every_pair_is_identical(resnet_face18):
    from scgan_bench.metrics.deg_vqfr import VQFRArcFaceFeatures, VQFRIdentityAngle

    m = VQFRIdentityAngle(VQFRArcFaceFeatures(net=resnet_face18))
    f = {"a": np.ones(512), "b": np.arange(512.0)}
    with pytest.raises(ValueError, match="under 1 degree"):
        m.compute(f, dict(f))


# --------------------------------------------------------------------------------------- lmd-awing
@pytest.fixture(scope="module")
def awing():
    Ref = pytest.importorskip("facexlib.alignment.awing_arch", reason="facexlib is not installed: `make install` "
                              "adds it (without dependencies) as the reference AWing network").FAN
    torch.manual_seed(1)
    ref = Ref(num_modules=4, num_landmarks=98, device="cpu").eval()
    _draw_bn_statistics(ref)
    return ref


def test_awing_fan_is_facexlibs(awing):
    from scgan_bench.networks.awing import AWingFAN

    net = AWingFAN().eval()
    assert list(net.state_dict()) == list(awing.state_dict())
    assert sum(p.numel() for p in net.parameters()) == 24_153_036  # full size, pinned
    net.load_state_dict(awing.state_dict(), strict=True)
    x = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        want, _ = awing(x)
        got = net(x)
    edge = want[-2][:, -1].clamp(0, 1) > 0.05  # the 3rd stack's boundary map, which the 4th stack reads
    assert edge.any() and not edge.all()  # so the boundary coordinates are a real mask here
    torch.testing.assert_close(got, want[-1], rtol=0, atol=1e-5)


def _calculate_points(heatmaps: np.ndarray) -> np.ndarray:
    """VQFR's / facexlib's ``calculate_points`` (B x N x 64 x 64 -> B x N x 2), written out: the arg-max,
    a quarter pixel towards the larger flat-index neighbour and vertical neighbour (with the script's rule
    for peaks near the top or bottom row of any point), plus half a pixel. One change, the metric's stated
    deviation: a peak on the very last pixel is its own right neighbour (the script's index runs past the
    end and raises; random networks peak there)."""
    b, n, h, w = heatmaps.shape
    line = heatmaps.reshape(b, n, h * w)
    idx = np.argmax(line, axis=2)
    preds = np.stack((idx % w, idx // w), axis=2).astype(np.float64)
    flat_idx = idx.ravel()
    line = line.reshape(b * n, h * w)
    rows = np.arange(b * n)
    x_up, x_down = line[rows, np.minimum(flat_idx + 1, h * w - 1)], line[rows, flat_idx - 1]
    y_up = line[rows, 4095] if any((flat_idx + w) >= 4096) else line[rows, flat_idx + w]
    y_down = line[rows, 0] if any((flat_idx - w) <= 0) else line[rows, flat_idx - w]
    preds += (np.sign(np.stack((x_up - x_down, y_up - y_down), axis=1)) * 0.25).reshape(b, n, 2)
    return preds + 0.5


def test_awing_points_follow_the_script_and_its_edge_rules():
    from scgan_bench.metrics.lmd import awing_points

    rng = np.random.default_rng(0)
    heat = rng.random((98, 64, 64)).astype(np.float32)
    for j, (y, x) in enumerate([(30, 20), (12, 50), (63, 5), (40, 0)]):  # interior peaks, one on the last row
        heat[j, y, x] = 5.0
    for case in (heat[:, :-1].copy(), heat):  # without, then with a point peaking on the last row
        case = np.ascontiguousarray(np.pad(case, ((0, 0), (0, 64 - case.shape[1]), (0, 0))))
        want = _calculate_points(case[None])[0] * np.array([96 / 64, 80 / 64])
        np.testing.assert_array_equal(awing_points(case, 80, 96), want)


def test_lmd_awing_equals_the_script(awing, weights_dir, tmp_path):
    """The registered metric against calculate_landmark_distance.py: files read by ``cv2.imread`` (BGR),
    ``get_landmarks`` (resize to 256, BGR -> RGB, / 255, the last stack's 98 landmark maps, points times
    size / 64), per-pair mean Euclidean distance; faces of 64 px."""
    import cv2

    _install(weights_dir, "awing-wflw-4hg", {"state_dict": awing.state_dict(), "epoch": 0})
    metric = METRICS.get("lmd-awing").create()
    assert METRICS.get("lmd-awing").higher_is_better is False
    hr = _faces(2)
    sr = _restored(hr + hr)[:2]

    def landmarks(img_bgr):
        h, w, _ = img_bgr.shape
        inp = cv2.resize(img_bgr, (256, 256))[..., ::-1]
        inp = torch.from_numpy(np.ascontiguousarray(inp.transpose((2, 0, 1)))).float().div(255.0)[None]
        with torch.no_grad():
            out = awing(inp)[0][-1][:, :-1].numpy()
        return _calculate_points(out).reshape(-1, 2) * np.array([w / 64, h / 64])

    want = []
    for k, (g, r) in enumerate(zip(hr, sr)):
        cv2.imwrite(str(tmp_path / f"gt{k}.png"), g[..., ::-1])
        cv2.imwrite(str(tmp_path / f"sr{k}.png"), r[..., ::-1])
        a, b = landmarks(cv2.imread(str(tmp_path / f"gt{k}.png"))), landmarks(cv2.imread(str(tmp_path / f"sr{k}.png")))
        want.append(float(np.sqrt(((a - b) ** 2).sum(1)).mean()))
    ids = [str(k) for k in range(2)]
    ex = metric.extractor
    per, values = metric.compute(dict(zip(ids, ex.extract(sr))), dict(zip(ids, ex.extract(hr))))
    # points are quarter pixels scaled by 1/4 (64 px faces): equal unless a heatmap arg-max flips between two
    # networks that agree to 1e-5 (measured: equal under default, AVX2 and AVX-512 kernels, 1 and 2 threads)
    assert [per[i] for i in ids] == pytest.approx(want, abs=1e-9)
    assert values[""] == pytest.approx(np.mean(want), abs=1e-9) and min(want) > 0
