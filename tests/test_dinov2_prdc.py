"""FD-DINOv2 and precision / recall / density / coverage.

DINOv2: the in-project ViT loads the released layout strictly; its features equal torch-fidelity 0.4's
``dinov2-vit-l-14`` extractor (its resize and normalisation) around a DINOv2 forward written here with
plain tensor operations, on the same random weights (the released file is not offline; torch.hub is told
what to return). The k-NN metrics equal torch-fidelity's ``prc`` (precision, recall) and Naeem et al.'s
formulas written here in NumPy (density, coverage)."""
from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scgan_bench.assets import weights as W
from scgan_bench.metrics import dinov2 as _dinov2  # noqa: F401 (registers the asset)

from sb_testdata import shared_faces, tamper


def official_shapes(dim: int, depth: int, patch: int = 14, grid: int = 37) -> dict[str, tuple[int, ...]]:
    """The tensors of ``dinov2_vit*14_pretrain.pth`` as the release's DinoVisionTransformer holds them
    (block_chunks=0, LayerScale, MLP FFN, no register tokens)."""
    out = {"cls_token": (1, 1, dim), "pos_embed": (1, grid * grid + 1, dim), "mask_token": (1, dim),
           "patch_embed.proj.weight": (dim, 3, patch, patch), "patch_embed.proj.bias": (dim,),
           "norm.weight": (dim,), "norm.bias": (dim,)}
    for i in range(depth):
        b = f"blocks.{i}."
        out.update({b + "norm1.weight": (dim,), b + "norm1.bias": (dim,), b + "attn.qkv.weight": (3 * dim, dim),
                    b + "attn.qkv.bias": (3 * dim,), b + "attn.proj.weight": (dim, dim), b + "attn.proj.bias": (dim,),
                    b + "ls1.gamma": (dim,), b + "norm2.weight": (dim,), b + "norm2.bias": (dim,),
                    b + "mlp.fc1.weight": (4 * dim, dim), b + "mlp.fc1.bias": (4 * dim,),
                    b + "mlp.fc2.weight": (dim, 4 * dim), b + "mlp.fc2.bias": (dim,), b + "ls2.gamma": (dim,)})
    return out


def random_release(dim: int = 64, depth: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, s in official_shapes(dim, depth).items():
        t = torch.randn(s, generator=g)
        if k.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
            t = 1 + 0.2 * t
        elif "gamma" in k:
            t = 0.5 + 0.1 * t
        elif "weight" in k and len(s) >= 2:
            t = t / math.sqrt(np.prod(s[1:]))
        else:
            t = 0.1 * t
        sd[k] = t
    return sd


class ReferenceDINOv2(torch.nn.Module):
    """DINOv2's forward written with plain tensor operations from a state dict (heads of 64 channels... or
    ``heads``): patches, class token, the position grid resized bicubically with scale (n + 0.1) / 37,
    blocks x + g1 * attn(LN x), x + g2 * mlp(LN x), final LN, class token."""

    def __init__(self, sd: dict[str, torch.Tensor], heads: int) -> None:
        super().__init__()
        self.sd, self.heads = sd, heads
        self.depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sd = self.sd
        dim = sd["cls_token"].shape[-1]
        t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=14)
        gh, gw = t.shape[2:]
        t = torch.cat([sd["cls_token"].expand(len(x), 1, dim), t.flatten(2).transpose(1, 2)], 1)
        m = int(math.sqrt(sd["pos_embed"].shape[1] - 1))
        grid = sd["pos_embed"][0, 1:].T.reshape(1, dim, m, m)
        grid = F.interpolate(grid, scale_factor=((gh + 0.1) / m, (gw + 0.1) / m), mode="bicubic")
        t = t + torch.cat([sd["pos_embed"][0, :1], grid.reshape(dim, gh * gw).T])[None]

        def ln(v, p):
            return F.layer_norm(v, (dim,), sd[p + ".weight"], sd[p + ".bias"], eps=1e-6)

        for i in range(self.depth):
            b = f"blocks.{i}."
            h = ln(t, b + "norm1")
            q, k, v = F.linear(h, sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"]).chunk(3, dim=-1)
            split = lambda a: a.reshape(*a.shape[:2], self.heads, -1).transpose(1, 2)  # noqa: E731
            q, k, v = split(q), split(k), split(v)
            a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1) @ v
            a = F.linear(a.transpose(1, 2).reshape(t.shape), sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
            t = t + sd[b + "ls1.gamma"] * a
            h = F.gelu(F.linear(ln(t, b + "norm2"), sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"]))
            t = t + sd[b + "ls2.gamma"] * F.linear(h, sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
        return ln(t, "norm")[:, 0]


def _torch_fidelity_dinov2(sd, heads: int):
    """torch-fidelity 0.4's DINOv2 extractor, its hub model replaced by :class:`ReferenceDINOv2`."""
    import torch_fidelity.feature_extractor_dinov2 as fe

    hub = fe.torch.hub.load
    fe.torch.hub.load = lambda repo, name: ReferenceDINOv2(sd, heads)
    try:
        return fe.FeatureExtractorDinoV2("dinov2-vit-l-14", ["dinov2"])
    finally:
        fe.torch.hub.load = hub


def _install(weights_dir, sd) -> None:
    path = weights_dir / W.ASSETS.get("dinov2-vitl14").filename
    torch.save(sd, path)
    W.register_sha256("dinov2-vitl14", hashlib.sha256(path.read_bytes()).hexdigest())


def test_dinov2_full_size_layout():
    """ViT-L/14 at full size: the release's tensors, shapes and count (no forward pass)."""
    from scgan_bench.networks.dinov2 import DINOv2

    want = official_shapes(1024, 24)
    with torch.device("meta"):
        net = DINOv2(**DINOv2.shape_of({k: torch.empty(s, device="meta") for k, s in want.items()}))
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == want
    assert sum(p.numel() for p in net.parameters()) == sum(math.prod(s) for s in want.values()) == 304_368_640


def test_dinov2_features_equal_torch_fidelitys_extractor(weights_dir):
    """The registered extractor (built from a file in the release's layout, strictly) on 64 and 96 px shared
    faces (TF1 bilinear resize to 224: a 16 x 16 grid from the 37 x 37 embedding) equals torch-fidelity's
    extractor around the plain-operation DINOv2: 2e-5 absolute on unit-scale LayerNorm outputs (float32
    both; measured 1.5-1.7e-6 under ATEN_CPU_CAPABILITY default and avx2, 1 and 2 threads)."""
    from scgan_bench.metrics.dinov2 import DINOv2Features

    sd = random_release(dim=128, depth=2, seed=1)
    _install(weights_dir, sd)
    ours = DINOv2Features()
    ref = _torch_fidelity_dinov2(sd, heads=2)
    for size in (64, 96):
        faces = shared_faces(3, size)
        got = ours.extract(faces)
        (want,) = ref(torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).contiguous())
        assert got.shape == (3, 128)
        np.testing.assert_allclose(got, want.double().numpy(), atol=2e-5, rtol=0)
        assert np.abs(got[0] - got[1]).max() > 0.05  # the faces are told apart


def test_fd_dinov2_is_the_frechet_distance_of_the_features(weights_dir):
    """``fd-dinov2`` built by its factory: the Fréchet distance (written here) of the two sets' features."""
    from scipy import linalg

    from scgan_bench.registries import METRICS

    sd = random_release(dim=64, depth=1, seed=2)
    _install(weights_dir, sd)
    metric = METRICS.get("fd-dinov2").create()
    assert METRICS.get("fd-dinov2").higher_is_better is False
    faces = shared_faces(8)
    blurred = [np.ascontiguousarray(f[::2, ::2].repeat(2, 0).repeat(2, 1)) for f in faces]
    a, b = metric.extractor.extract(blurred), metric.extractor.extract(faces)
    _, got = metric.compute({str(i): v for i, v in enumerate(a)}, {str(i): v for i, v in enumerate(b)})
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(s1 @ s2).real
    want = float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root))
    assert got[""] == pytest.approx(want, rel=1e-6) and want > 0


def test_dinov2_file_refusals(weights_dir):
    """A missing tensor is named, a misshaped one too; a changed file is refused by its hash."""
    from scgan_bench.errors import UsageError
    from scgan_bench.metrics.dinov2 import load_dinov2

    sd = random_release(dim=64, depth=2)
    for bad in ({k: v for k, v in sd.items() if k != "blocks.1.ls2.gamma"},
                {**sd, "mask_token": sd["mask_token"][:, :32]}):
        _install(weights_dir, bad)
        with pytest.raises(UsageError, match=r"blocks\.1\.ls2\.gamma|mask_token"):
            load_dinov2()
    _install(weights_dir, {"model": sd})
    assert torch.equal(load_dinov2().state_dict()["blocks.1.ls2.gamma"], sd["blocks.1.ls2.gamma"])
    tamper(weights_dir / W.ASSETS.get("dinov2-vitl14").filename)
    with pytest.raises(W.WeightsError, match="sha256"):
        load_dinov2()


# --- precision / recall / density / coverage --------------------------------------------------------------

def _naeem(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Density and coverage as Naeem et al.'s ``prdc`` computes them, in NumPy."""
    def dist(a, b):
        return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0))

    radii = np.sort(dist(real, real), axis=1)[:, k]      # k-th neighbour, the point itself at index 0
    d = dist(real, fake)                                   # real x fake
    density = (d < radii[:, None]).sum(0).mean() / k
    coverage = (d.min(1) < radii).mean()
    return float(density), float(coverage)


@pytest.mark.parametrize("n_sr, n_ref, shift", [(40, 60, 0.0), (60, 40, 0.7), (25, 25, 2.0)])
def test_prdc_equals_torch_fidelity_and_naeems_formulas(n_sr, n_ref, shift):
    """On clustered features (so that the values are neither all 0 nor all 1): precision and recall equal
    torch-fidelity 0.4's ``prc`` (k = 3; it averages in float32), density and coverage the NumPy formulas
    (k = 5, float64)."""
    from torch_fidelity.metric_prc import prc_features_to_metric

    from scgan_bench.metrics.prdc import prdc

    rng = np.random.default_rng(n_sr + n_ref)
    centres = rng.normal(size=(4, 16))
    ref = centres[rng.integers(0, 4, n_ref)] + 0.6 * rng.normal(size=(n_ref, 16))
    sr = centres[rng.integers(0, 2, n_sr)] + (0.6 + 0.3 * shift) * rng.normal(size=(n_sr, 16)) + shift * 0.3
    got = prdc(sr, ref)
    tf = prc_features_to_metric(torch.from_numpy(sr), torch.from_numpy(ref), prc_neighborhood=3,
                                prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    density, coverage = _naeem(ref, sr, 5)
    # torch-fidelity takes the share of a count in float32: 1e-6 (one sample of 60 is 0.017)
    assert got["precision"] == pytest.approx(tf["precision"], abs=1e-6)
    assert got["recall"] == pytest.approx(tf["recall"], abs=1e-6)
    assert got["density"] == pytest.approx(density, abs=1e-12)
    assert got["coverage"] == pytest.approx(coverage, abs=1e-12)
    assert 0 < got["recall"] < 1 and 0 < got["coverage"] < 1


def test_prdc_boundaries_and_roles_on_a_line():
    """Points on a line with exact distances: a sample exactly on a ball's edge is inside for precision /
    recall (<=, torch-fidelity) and outside for density / coverage (<, Naeem et al.); swapping the sets'
    roles changes the values."""
    from scgan_bench.metrics.prdc import prdc

    ref = np.array([[0.0], [1], [2], [3], [4], [5], [6]])
    sr = np.array([[9.0], [10], [11], [12], [13], [14], [-3]])
    # reference 3-NN radii 3, 2, 2, 2, 2, 2, 3 and 5-NN radii 5, 4, 3, 3, 3, 4, 5; SR 3-NN radii 3, 2, 2, 2, 2, 3
    # and 14 (for -3)
    got = prdc(sr, ref)
    assert got["precision"] == pytest.approx(2 / 7)   # 9 and -3: exactly 3 from 6 and from 0 (<=)
    assert got["recall"] == pytest.approx(1.0)        # every reference point is within 14 of -3
    assert got["coverage"] == pytest.approx(2 / 7)    # 0 (-3 at 3 < 5) and 6 (9 at 3 < 5); 1 and 5 at 4, not < 4
    assert got["density"] == pytest.approx(3 / (5 * 7))  # 9 and 10 in 6's ball, -3 in 0's; 11 at 5 from 6, not < 5
    swapped = prdc(ref, sr)
    assert (swapped["precision"], swapped["recall"]) != (got["precision"], got["recall"])
    with pytest.raises(ValueError, match="at least 6 images"):
        prdc(sr[:5], ref)


def test_dinov2_metrics_in_a_run_share_one_cached_feature_pass(weights_dir, tmp_path, monkeypatch):
    """FD-DINOv2, DINOv2 precision and coverage in one run (a reduced ViT in the release's layout): each image's
    features are extracted once and cached in one file per set, every cell equals its formula on those
    cached features, and a second run reads them back without extracting."""
    from scgan_bench.metrics.dinov2 import DINOv2Features
    from scgan_bench.metrics.distribution import fid_from_features
    from scgan_bench.metrics.prdc import prdc
    from scgan_bench.run.pipeline import RunConfig, run_benchmark

    _install(weights_dir, random_release(dim=64, depth=1, seed=4))
    seen: list[int] = []
    extract = DINOv2Features.extract
    monkeypatch.setattr(DINOv2Features, "extract", lambda self, images: seen.append(len(images)) or extract(self, images))
    metrics = ["fd-dinov2", "precision-dinov2", "coverage-dinov2"]

    def run():
        return {c.metric: c for c in run_benchmark(RunConfig(datasets=["demo"], methods=["bicubic"], metrics=metrics,
                                                             out=tmp_path / "run", limit=8, progress=False,
                                                             device="cpu")).cells}

    cells = run()
    assert sum(seen) == 16  # 8 SR + 8 HR images, once each for the three metrics
    files = sorted((tmp_path / "run" / "features").rglob("*.npz"))
    assert len(files) == 2  # one cache file per set
    by_set = {}
    for f in files:
        with np.load(f) as z:
            by_set[f.parent.name] = z["feats"]
    sr, hr = by_set["bicubic"], by_set["hr"]
    assert sr.shape == hr.shape == (8, 64)
    assert cells["fd-dinov2"].mean == pytest.approx(fid_from_features(sr, hr), rel=1e-9)
    want = prdc(sr, hr)
    assert cells["precision-dinov2"].mean == pytest.approx(want["precision"], abs=1e-12)
    assert cells["coverage-dinov2"].mean == pytest.approx(want["coverage"], abs=1e-12)
    seen.clear()
    metrics.append("recall-dinov2")
    again = run()
    assert seen == [] and again["fd-dinov2"].mean == cells["fd-dinov2"].mean
    assert again["recall-dinov2"].mean == pytest.approx(want["recall"], abs=1e-12)
