"""DISTS: the in-project network on the official files equals the official DISTS_pytorch code and pyiqa's
DISTS on real faces (the official learned weights, bundled in DISTS_pytorch; a random VGG16 in torchvision's
key layout, since ImageNet's is not available offline); strict, verified loading."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from scgan_bench.assets import weights as W
from scgan_bench.metrics import dists as _dists  # noqa: F401 (registers the dists assets)

from sb_testdata import shared_faces, tamper


@pytest.fixture
def random_vgg(weights_dir, monkeypatch):
    """A random VGG16 ``features`` state dict saved as torchvision's file (pinned), and torchvision's
    ``vgg16`` patched to build that network for the reference implementations (they ask for ImageNet's)."""
    import torchvision

    from types import SimpleNamespace

    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    sd = {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}  # torchvision's own layers
    path = weights_dir / W.ASSETS.get("vgg16").filename
    torch.save(sd, path)
    W.register_sha256("vgg16", hashlib.sha256(path.read_bytes()).hexdigest())

    def patched(*args, **kwargs):  # the references use .features only
        features = make_layers(cfgs["D"])
        features.load_state_dict({k[len("features."):]: v for k, v in sd.items()})
        return SimpleNamespace(features=features)

    monkeypatch.setattr(torchvision.models, "vgg16", patched)
    return sd


def test_dists_equals_the_official_code_and_pyiqa(random_vgg):
    from DISTS_pytorch import DISTS_pt
    from pyiqa.archs.dists_arch import DISTS as PyiqaDISTS

    from scgan_bench.registries import METRICS
    from scgan_bench.assets.weights import resolve

    ours = METRICS.get("dists").create()  # what a run builds
    assert ours.weights.sha256 == W.ASSETS.get("dists-weights").sha256  # the official file, found in the wheel
    ab = torch.load(resolve("dists-weights", allow_download=False).path, weights_only=True)
    official = DISTS_pt.DISTS(load_weights=False).eval()
    pyiqa = PyiqaDISTS(pretrained=False).eval()
    for ref in (official, pyiqa):
        ref.alpha.data, ref.beta.data = ab["alpha"].clone(), ab["beta"].clone()
    hr = shared_faces(6)
    sr = [np.ascontiguousarray(np.clip(h.astype(int) + (k - 3) * 12, 0, 255).astype(np.uint8)) for k, h in enumerate(hr)]
    got = ours.score_pairs(sr, hr)
    x = torch.from_numpy(np.stack(sr)).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(np.stack(hr)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        want_official = official(x, y).reshape(-1).tolist()
        want_pyiqa = pyiqa(x, y).reshape(-1).tolist()
    # tolerance: float32 networks, the same operations in another order: 1e-6 absolute on values ~0.01-0.3
    assert got == pytest.approx(want_official, abs=1e-6) and got == pytest.approx(want_pyiqa, abs=1e-6)
    assert len(set(np.round(got, 6))) == 6  # the six pairs differ
    assert ours.score_pairs(hr[:2], hr[:2]) == pytest.approx([0.0, 0.0], abs=1e-5)  # an image equals itself
    assert ours.score_pairs(sr, hr) == got  # no random crop: a score never changes between runs


def test_dists_files_are_checked(random_vgg, weights_dir):
    from scgan_bench.errors import UsageError
    from scgan_bench.metrics.dists import DISTS

    path = weights_dir / W.ASSETS.get("vgg16").filename
    bad = dict(random_vgg)
    bad["features.0.weight"] = bad["features.0.weight"][:32]
    torch.save(bad, path)
    W.register_sha256("vgg16", hashlib.sha256(path.read_bytes()).hexdigest())
    with pytest.raises(UsageError, match="features.0.weight|stage1.0.weight"):
        DISTS()
    tamper(path)
    with pytest.raises(W.WeightsError, match="sha256"):
        DISTS()
