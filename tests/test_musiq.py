"""MUSIQ: the in-project network loads the port's file layout strictly and scores shared faces as pyiqa's
MUSIQ does (random weights in that layout: the KonIQ file is not offline), at 64 px and on a non-square
image whose resized scales need masked padding tokens."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from scgan_bench.assets import weights as W
from scgan_bench.metrics import musiq as _musiq  # noqa: F401 (registers the asset)

from sb_testdata import shared_faces, tamper

LAYERS = 3  # a reduced encoder (14 at full size): the same layout, a fraction of the time


def _installed_pyiqa_musiq(weights_dir, seed: int, **kw):
    """pyiqa's MUSIQ (``kw``: its constructor's options), random, its embeddings drawn large (so a wrong
    position or scale index shows), saved as the asset's file (sha256 registered)."""
    from pyiqa.archs.musiq_arch import MUSIQ as Ref

    torch.manual_seed(seed)
    ref = Ref(pretrained=False, **kw).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "emb" in name or name.endswith(".cls"):
                p.normal_(0, 0.5)
    path = weights_dir / W.ASSETS.get("musiq-koniq").filename
    torch.save(ref.state_dict(), path)
    W.register_sha256("musiq-koniq", hashlib.sha256(path.read_bytes()).hexdigest())
    return ref


@pytest.fixture
def pyiqa_musiq(weights_dir):
    return _installed_pyiqa_musiq(weights_dir, 0, num_layers=LAYERS)


def test_musiq_equals_pyiqa_on_faces(pyiqa_musiq):
    from scgan_bench.metrics.musiq import MUSIQScore, load_musiq

    faces = shared_faces(6)
    odd = np.ascontiguousarray(faces[0][8:48, :])  # 40 x 64: the 224 / 384 scales get masked padding
    m = MUSIQScore(net=load_musiq(layers=LAYERS), batch=4)  # chunks of 4: a chunk boundary inside the faces
    got = m.score_images(faces + [odd])
    with torch.no_grad():
        want = [float(v) for v in pyiqa_musiq(torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() / 255).flatten()]
        want.append(float(pyiqa_musiq(torch.from_numpy(odd.copy()).permute(2, 0, 1)[None].float() / 255)))
    # float32, the same operations: 1e-5 absolute on scores of magnitude ~1
    assert got == pytest.approx(want, abs=1e-5)
    assert len({round(v, 5) for v in got}) == len(got)  # the images' scores differ
    assert m.score_images(faces + [odd]) == got  # no random crop: a score never changes between runs


def test_registered_musiq_is_pyiqas_koniq_model(weights_dir):
    """The metric a run builds (``METRICS.get("musiq").create()``, full size from the weights file) scores
    faces as pyiqa's MUSIQ (KonIQ settings: the default 14 layers); higher is better (a MOS)."""
    from scgan_bench.registries import METRICS

    ref = _installed_pyiqa_musiq(weights_dir, 1)
    spec = METRICS.get("musiq")
    assert spec.higher_is_better is True
    faces = shared_faces(3)
    got = spec.create().score_images(faces)
    with torch.no_grad():
        want = [float(v) for v in ref(torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() / 255).flatten()]
    assert got == pytest.approx(want, abs=1e-5)  # as in the reduced test above
    assert len({round(v, 5) for v in got}) == len(got)


def test_musiq_size_and_strict_verified_loading(pyiqa_musiq, weights_dir):
    from pyiqa.archs.musiq_arch import MUSIQ as Ref

    from scgan_bench.errors import UsageError
    from scgan_bench.metrics.musiq import load_musiq
    from scgan_bench.networks.musiq import MUSIQ

    n = sum(p.numel() for p in MUSIQ().parameters())
    assert n == sum(p.numel() for p in Ref(pretrained=False).parameters()) == 27_125_825  # full size, pinned
    path = weights_dir / W.ASSETS.get("musiq-koniq").filename
    sd = pyiqa_musiq.state_dict()
    for bad in ({k: v for k, v in sd.items() if k != "transformer_encoder.cls"},
                {**sd, "head.weight": sd["head.weight"][:, :100]}):
        torch.save({"params": bad}, path)  # the "params" wrapper is accepted too
        W.register_sha256("musiq-koniq", hashlib.sha256(path.read_bytes()).hexdigest())
        with pytest.raises(UsageError, match="transformer_encoder.cls|head.weight"):
            load_musiq(layers=LAYERS)
    torch.save({"params": sd}, path)
    W.register_sha256("musiq-koniq", hashlib.sha256(path.read_bytes()).hexdigest())
    load_musiq(layers=LAYERS)
    tamper(path)
    with pytest.raises(W.WeightsError, match="sha256"):
        load_musiq(layers=LAYERS)


def test_musiq_hashes_patch_grids_onto_ten_by_ten():
    """Nearest-neighbour hashing written out by hand: 7 rows -> 0 1 2 4 5 7 8; 12 -> 0 0 1 2 3 4 5 5 6 7 8 9."""
    from scgan_bench.networks.musiq import hashed_positions

    rows7 = [0, 1, 2, 4, 5, 7, 8]
    rows12 = [0, 0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9]
    assert hashed_positions(10, 7, 12).tolist() == [r * 10 + c for r in rows7 for c in rows12]
    assert hashed_positions(10, 2, 2).tolist() == [0, 5, 50, 55]
