"""The weights manager: real loading code exercised with random weights saved in each official key
layout (Inception, AlexNet, FaceNet, RetinaFace, ResNet-101), sha256 checks, tampering, offline errors."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from scgan_bench.assets import weights as W
from scgan_bench.cli import main

from sb_testdata import random_inception_state_dict, rgb_face


@pytest.fixture(autouse=True)
def _weights_dir(weights_dir):
    return weights_dir


def save_official(name: str, state_dict: dict, folder: Path) -> Path:
    """Save a state dict under the asset's official file name and pin its sha256 (as a user would
    for a file they trust)."""
    path = folder / W.ASSETS.get(name).filename
    torch.save(state_dict, path)
    W.register_sha256(name, hashlib.sha256(path.read_bytes()).hexdigest())
    return path


def _faces(n: int, size: int = 64) -> list[np.ndarray]:
    return [rgb_face(k, size) for k in range(n)]


def test_inception_loads_from_official_layout_and_runs(_weights_dir):
    from scgan_bench.metrics.distribution import InceptionFeatures

    save_official("inception-fid", random_inception_state_dict(), _weights_dir)
    feats = InceptionFeatures().extract(_faces(3))
    assert feats.shape == (3, 2048) and np.isfinite(feats).all()


def test_alexnet_resnet101_load_and_run(_weights_dir):
    from torchvision.models import alexnet, resnet101

    from scgan_bench.assets.backbones import ResNet101Features

    save_official("alexnet", alexnet(weights=None).state_dict(), _weights_dir)
    sd, r = W.load_state_dict("alexnet")
    assert "features.0.weight" in sd and r.check == "override"
    save_official("resnet101", resnet101(weights=None).state_dict(), _weights_dir)
    f = ResNet101Features().extract(_faces(2))
    assert f.shape == (2, 2048) and np.isfinite(f).all()


def test_facenet_loads_official_layout_with_logits(_weights_dir):
    from facenet_pytorch import InceptionResnetV1

    from scgan_bench.metrics.identity import FaceNetFeatures

    save_official("facenet-vggface2", InceptionResnetV1(classify=True, num_classes=8631).state_dict(),
                  _weights_dir)
    emb = FaceNetFeatures().extract(_faces(3))
    assert emb.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-6)


def test_retinaface_loads_dataparallel_layout_and_detects(_weights_dir):
    from scgan_bench.metrics.landmarks import RetinaFaceLandmarks
    from scgan_bench.networks.retinaface import RetinaFace, detect, priors

    net = RetinaFace("mobilenet0.25")
    sd = {f"module.{k}": v for k, v in net.state_dict().items()}  # as biubug6 saved it
    assert "module.body.stage1.0.0.weight" in sd and "module.LandmarkHead.2.conv1x1.bias" in sd
    save_official("retinaface-mobilenet0.25", sd, _weights_dir)
    lm = RetinaFaceLandmarks()
    with torch.inference_mode():
        loc, conf, ldm = lm.net(torch.zeros(1, 3, 256, 256))
    assert loc.shape[1] == conf.shape[1] == ldm.shape[1] == len(priors(256, 256))
    boxes, scores, lms = detect(lm.net, rgb_face(0, 256), conf_threshold=0.0)
    assert boxes.shape[1] == 4 and lms.shape[1:] == (5, 2) and (np.diff(scores) <= 0).all()
    out = lm.extract(_faces(2))
    assert out.shape == (2, 10)
    r50 = RetinaFace("resnet50")
    assert "body.layer4.2.conv3.weight" in r50.state_dict() and "fpn.output1.0.weight" in r50.state_dict()


def test_tampered_file_is_rejected(_weights_dir):
    from torchvision.models import alexnet

    path = save_official("alexnet", alexnet(weights=None).state_dict(), _weights_dir)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(W.WeightsError, match=r"has sha256 .* expected override .*tampered"):
        W.load_state_dict("alexnet")


def test_official_hash_is_checked_without_override(_weights_dir):
    (_weights_dir / "alexnet-owt-7be5be79.pth").write_bytes(b"not the real alexnet")
    with pytest.raises(W.WeightsError, match="expected sha256 7be5be79"):
        W.resolve("alexnet")


def test_offline_missing_file_names_file_url_and_place(_weights_dir):
    with pytest.raises(W.WeightsError) as ei:
        W.resolve("facenet-vggface2")
    msg = str(ei.value)
    assert "20180402-114759-vggface2.pt" in msg and "offline mode" in msg
    assert "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/" in msg
    assert str(_weights_dir / "20180402-114759-vggface2.pt") in msg


def test_trust_on_first_use_records_then_enforces(_weights_dir):
    """A first-use file is pinned only when the block that loads it succeeds (issue 33)."""
    net_sd = {"w": torch.zeros(3)}
    path = _weights_dir / "Resnet50_Final.pth"
    torch.save(net_sd, path)
    assert W.resolve("retinaface-resnet50").check == "first-use (not pinned yet)"
    with pytest.raises(RuntimeError, match="layout check failed"), W.pin_after_load():
        assert W.resolve("retinaface-resnet50").check == "first-use (pinned once it loads)"
        raise RuntimeError("layout check failed")
    assert W.resolve("retinaface-resnet50").check == "first-use (not pinned yet)"
    with W.pin_after_load():
        W.load_state_dict("retinaface-resnet50")
    assert W.resolve("retinaface-resnet50").check == "first-use (recorded earlier)"
    torch.save({"w": torch.ones(3)}, path)
    W._DIGESTS.clear()
    with pytest.raises(W.WeightsError, match="expected first-use"):
        W.resolve("retinaface-resnet50")


def test_search_order_explicit_then_env_then_caches(tmp_path, _weights_dir, monkeypatch):
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save({"a": torch.zeros(1)}, hub / "resnet101-63fe2227.pth")
    W.register_sha256("resnet101", hashlib.sha256((hub / "resnet101-63fe2227.pth").read_bytes()).hexdigest())
    assert W.resolve("resnet101").origin == "torch-hub"
    explicit = tmp_path / "mine.pth"
    explicit.write_bytes((hub / "resnet101-63fe2227.pth").read_bytes())
    assert W.resolve("resnet101", explicit).origin == "explicit path"


def test_pickled_code_is_never_executed(_weights_dir):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = _weights_dir / "alexnet-owt-7be5be79.pth"
    torch.save({"x": Evil()}, path)
    W.register_sha256("alexnet", hashlib.sha256(path.read_bytes()).hexdigest())
    with pytest.raises(W.WeightsError, match=r"alexnet-owt-7be5be79.pth pickles objects other than tensors \(print\); "
                                             "scgan-bench never runs pickled code"):
        W.load_state_dict("alexnet")


def test_weights_cli(capsys, _weights_dir):
    from torchvision.models import alexnet

    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "inception-fid: missing" in out and "dlib-shape-68: verified" in out
    path = save_official("alexnet", alexnet(weights=None).state_dict(), _weights_dir)
    assert main(["weights", "path", "alexnet"]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    assert main(["weights", "verify", "facenet-vggface2"]) == 1
    assert main(["weights", "fetch", "facenet-vggface2", "--offline"]) == 2
    assert "not found (offline mode)" in capsys.readouterr().err
    assert main(["weights", "path", "alexnt"]) == 2
    assert "Did you mean 'alexnet'" in capsys.readouterr().err


def test_one_default_folder_for_every_asset_and_pyiqas_cache_searched(tmp_path, monkeypatch):
    """Issue 26: a user copies any weight file into one folder ($SCGAN_BENCH_HOME/weights, where downloads
    go), whatever cache its library uses; pyiqa's cache ($TORCH_HOME/hub/pyiqa) is searched too."""
    from scgan_bench.io.manifest import data_home

    monkeypatch.delenv("SCGAN_BENCH_WEIGHTS")
    home = data_home() / "weights"
    home.mkdir(parents=True)
    torch.save({"a": torch.zeros(1)}, home / "resnet101-63fe2227.pth")   # a torch-hub asset, in the one folder
    W.register_sha256("resnet101", hashlib.sha256((home / "resnet101-63fe2227.pth").read_bytes()).hexdigest())
    assert W.resolve("resnet101").origin == "scgan-bench"
    pyiqa = tmp_path / "torch" / "hub" / "pyiqa"
    pyiqa.mkdir(parents=True)
    torch.save({"b": torch.zeros(1)}, pyiqa / W.ASSETS.get("alexnet").filename)
    W.register_sha256("alexnet", hashlib.sha256((pyiqa / W.ASSETS.get("alexnet").filename).read_bytes()).hexdigest())
    assert W.resolve("alexnet").origin == "pyiqa"
    for name in W.ASSETS:     # every missing file is asked for in the same folder
        a = W.ASSETS.get(name)
        assert a.download_target() == home / a.filename


def test_urls_are_direct_files_or_say_they_are_not():
    """A URL the manager would download from names a file; a web page (a model zoo, a README, a Drive
    folder) is stated as no direct download, so it is never fetched as if it were the weights."""
    import posixpath
    import urllib.parse

    from scgan_bench.registries import load_plugins

    load_plugins()
    for name, a in W.ASSETS.items():
        if a.url.startswith("http"):
            ext = posixpath.splitext(urllib.parse.urlparse(a.url).path)[1]
            assert ext and ext not in (".html", ".md"), (name, a.url)
        elif "http" in a.url:   # a page to get the file from by hand, said as such
            low = a.url.lower()
            assert "no direct download" in low or "google drive" in low or "baidunetdisk" in low, (name, a.url)


def test_a_pinned_file_that_is_not_the_official_release_is_said_so(capsys):
    """Pinning a fine-tuned variant works, and is stated: `weights list`, `list metrics` and unofficial()."""
    path = save_official("alexnet", {"x": torch.zeros(2)}, W.ASSETS.get("alexnet").download_target().parent)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert set(W.unofficial({"alexnet": digest})) == {"alexnet"}
    assert W.unofficial({"alexnet": W.ASSETS.get("alexnet").sha256}) == {}       # the official file itself
    assert W.unofficial({"resnet101": "63fe2227" + "0" * 56}) == {}              # prefix-checked and matching
    assert set(W.unofficial({"resnet101": "0" * 64})) == {"resnet101"}
    st = W.status("alexnet")
    assert st.state == "verified" and not st.official and digest[:12] in st.detail
    assert main(["weights", "list", "alexnet"]) == 0
    assert "NOT the official file" in capsys.readouterr().out
