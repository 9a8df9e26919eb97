"""MANIQA: the in-project network loads the released checkpoint's layout strictly and scores shared faces as
pyiqa's MANIQA does (random weights in that layout: the KonIQ file is not offline; pyiqa's ViT is built by
timm, told not to download); its crop grid equals pyiqa's uniform crops."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from scgan_bench.assets import weights as W
from scgan_bench.metrics import maniqa as _maniqa  # noqa: F401 (registers the asset)

from sb_testdata import shared_faces, tamper


@pytest.fixture(scope="module")
def pyiqa_maniqa():
    """pyiqa's MANIQA with the KonIQ model's settings (Swin scale 0.8), random, one crop (at 64 px its 20
    crops are one and the same, see the crop test)."""
    import timm

    real = timm.create_model
    timm.create_model = lambda name, pretrained=False, **kw: real(name, pretrained=False, **kw)
    try:
        from pyiqa.archs.maniqa_arch import MANIQA as Ref

        torch.manual_seed(0)
        ref = Ref(pretrained=False, scale=0.8, test_sample=1).eval()
        with torch.no_grad():  # sharper Swin attention than the init's near-uniform one, so that a window
            for name, p in ref.named_parameters():  # mask or a bias index that is wrong shows (tests/mutants.py)
                if "relative_position_bias_table" in name:
                    p.normal_(0, 1.0)
                if name.startswith("swintransformer") and "attn.qkv.weight" in name:
                    p.mul_(8)
        return ref
    finally:
        timm.create_model = real


def test_maniqa_equals_pyiqa_on_faces(pyiqa_maniqa, weights_dir):
    """The registered metric, built by its factory from a file in the checkpoint's layout (543 MB, loaded
    strictly into the in-project network), scores as pyiqa's MANIQA with the KonIQ model's settings."""
    from scgan_bench.registries import METRICS

    path = weights_dir / W.ASSETS.get("maniqa-koniq").filename
    torch.save(pyiqa_maniqa.state_dict(), path)
    W.register_sha256("maniqa-koniq", hashlib.sha256(path.read_bytes()).hexdigest())
    metric = METRICS.get("maniqa").create()
    path.unlink()
    assert METRICS.get("maniqa").higher_is_better is True
    assert sum(p.numel() for p in metric.net.parameters()) == sum(p.numel() for p in pyiqa_maniqa.parameters()) \
        == 135_747_530  # full size, pinned
    faces = shared_faces(2)
    got = metric.score_images(faces)
    with torch.no_grad():
        want = pyiqa_maniqa(torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() / 255).flatten().tolist()
    # float32, the same operations (attention through another kernel): 1e-6 absolute on scores ~0.01-1
    assert got == pytest.approx(want, abs=1e-6) and got[0] != got[1]


@pytest.mark.parametrize("h, w, crops", [(225, 225, 20), (300, 260, 20), (240, 232, 4), (500, 230, 9)])
def test_maniqa_crop_grid_equals_pyiqas_uniform_crops(h, w, crops):
    """Each pyiqa crop's top-left pixel, read from an image that holds its own coordinates."""
    from pyiqa.archs.arch_util import uniform_crop

    from scgan_bench.networks.maniqa import crop_offsets

    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    img = torch.stack([rows, cols, rows])[None]
    got = uniform_crop(img, 224, crops)
    assert crop_offsets(h, w, crops) == [(int(c[0, 0, 0]), int(c[1, 0, 0])) for c in got]
    if (h, w) == (225, 225):  # where a 64 px face lands: all 20 crops at the corner
        assert set(crop_offsets(h, w, crops)) == {(0, 0)}


def test_maniqa_file_loads_strictly_after_its_sha256(weights_dir):
    """A reduced copy of the layout (width 96 instead of 768: the file is 40 MB, not 540)."""
    from scgan_bench.errors import UsageError
    from scgan_bench.metrics.maniqa import load_maniqa
    from scgan_bench.networks.maniqa import MANIQA

    torch.manual_seed(0)
    sd = MANIQA(dim=96).state_dict()
    path = weights_dir / W.ASSETS.get("maniqa-koniq").filename

    def save(obj) -> None:
        torch.save(obj, path)
        W.register_sha256("maniqa-koniq", hashlib.sha256(path.read_bytes()).hexdigest())

    for bad in ({k: v for k, v in sd.items() if k != "swintransformer1.downsample.weight"},
                {**sd, "conv2.weight": sd["conv2.weight"][:10]}):
        save(bad)
        with pytest.raises(UsageError, match="swintransformer1.downsample.weight|conv2.weight"):
            load_maniqa(dim=96)
    save({"params": sd})  # the "params" wrapper is accepted too
    net = load_maniqa(dim=96)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in sd.items())
    tamper(path)
    with pytest.raises(W.WeightsError, match="sha256"):
        load_maniqa(dim=96)
