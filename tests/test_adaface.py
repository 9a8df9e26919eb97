"""AdaFace identity kept from the LR input (id-lq-adaface): the IR backbone in the official key layout and at
its published size, the Lightning checkpoint loaded strictly and safely, BGR input, and the metric on a
real-world set equal to the cosine computed here. Random weights: plumbing and formulas, not identity."""
from __future__ import annotations

import argparse
import hashlib

import numpy as np
import pytest
import torch

from scgan_bench.assets import weights as W
from scgan_bench.errors import UsageError
from scgan_bench.metrics import adaface as A
from scgan_bench.metrics.arcface import align_112
from scgan_bench.networks.adaface import IRBackbone

from sb_testdata import rgb_face

WIDTH = 1 / 16


def test_ir_backbone_has_the_official_keys_and_published_size():
    with torch.device("meta"):
        assert sum(p.numel() for p in IRBackbone(50).parameters()) == 43_585_600  # AdaFace IR-50: 43.6 M
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    want = {"input_layer.0.weight", "input_layer.2.weight", *(f"input_layer.1.{k}" for k in bn),
            "output_layer.3.weight", "output_layer.3.bias", *(f"output_layer.0.{k}" for k in bn),
            "output_layer.4.running_mean", "output_layer.4.running_var", "output_layer.4.num_batches_tracked"}
    for u in range(8):  # IR-18: 2 units per stage; a conv shortcut where the width changes (stages 2-4)
        want |= {f"body.{u}.res_layer.1.weight", f"body.{u}.res_layer.3.weight", f"body.{u}.res_layer.4.weight"}
        want |= {f"body.{u}.res_layer.{i}.{k}" for i in (0, 2, 5) for k in bn}
        if u in (2, 4, 6):
            want |= {f"body.{u}.shortcut_layer.0.weight", *(f"body.{u}.shortcut_layer.1.{k}" for k in bn)}
    assert set(IRBackbone(18, width=WIDTH).state_dict()) == want


def _ckpt(weights_dir, net: IRBackbone, **extra) -> None:
    sd = {**{f"model.{k}": v for k, v in net.state_dict().items()}, "head.kernel": torch.randn(512, 10)}
    path = weights_dir / W.ASSETS.get(A.ADAFACE_ASSET).filename
    torch.save({"state_dict": sd, "epoch": 25, **extra}, path)  # a Lightning checkpoint
    W.register_sha256(A.ADAFACE_ASSET, hashlib.sha256(path.read_bytes()).hexdigest())


def test_lightning_checkpoint_loads_strictly_safely_and_feeds_bgr(weights_dir):
    torch.manual_seed(0)
    ref = IRBackbone(50, width=WIDTH).eval()
    _ckpt(weights_dir, ref, hyper_parameters=argparse.Namespace(arch="ir_50", head="adaface", m=0.4))
    ex = A.AdaFaceFeatures(net=A.load_adaface(width=WIDTH))
    faces = [rgb_face(k) for k in range(3)]
    bgr = [np.ascontiguousarray(f[..., ::-1]) for f in faces]
    with torch.no_grad():
        want = torch.nn.functional.normalize(ref(align_112(bgr)), dim=1).double().numpy()
    np.testing.assert_allclose(ex.extract(faces), want, atol=1e-6)  # AdaFace sees BGR
    assert not np.allclose(ex.extract(bgr), want, atol=1e-3)

    from fractions import Fraction

    _ckpt(weights_dir, ref, hyper_parameters=Fraction(1, 3))  # anything but containers, tensors, a Namespace: refused
    with pytest.raises(UsageError, match=r"adaface_ir50_ms1mv2.ckpt pickles objects other than tensors "
                                         r"\(fractions.Fraction\); scgan-bench never runs pickled code"):
        A.load_adaface(width=WIDTH)
    _ckpt(weights_dir, IRBackbone(18, width=WIDTH))
    with pytest.raises(UsageError, match="official key layout: .*missing"):
        A.load_adaface(width=WIDTH)


def test_id_lq_on_a_real_world_set_equals_the_cosine_to_each_lr_input(weights_dir, tmp_path, monkeypatch):
    from scgan_bench.io.image_io import read_image
    from scgan_bench.run.pipeline import RunConfig, run_benchmark

    torch.manual_seed(1)
    _ckpt(weights_dir, IRBackbone(50, width=WIDTH))
    real = A.load_adaface
    monkeypatch.setattr(A, "load_adaface", lambda path=None, width=1.0: real(path, width=WIDTH))
    res = run_benchmark(RunConfig(datasets=["demo-real"], methods=["bicubic", "nearest"], metrics=["id-lq-adaface"],
                                  out=tmp_path / "run", limit=5, progress=False, device="cpu"))
    ex = A.AdaFaceFeatures(net=A.load_adaface())
    for cell in res.cells:
        assert cell.status == "ok", cell
        ids = sorted(p.stem for p in (tmp_path / "run" / "sr" / "demo-real" / cell.method).glob("*.png"))
        sr = ex.extract([read_image(tmp_path / "run" / "sr" / "demo-real" / cell.method / f"{i}.png") for i in ids])
        lr = ex.extract([read_image(tmp_path / "run" / "data" / "demo-real" / "lr" / f"{i}.png") for i in ids])
        cos = (sr * lr).sum(axis=1)
        assert cell.set_value == pytest.approx(float(np.mean(np.clip(cos, -1, 1))), abs=1e-9)
        assert sorted(cell.values) == pytest.approx(sorted(np.clip(cos, -1, 1)), abs=1e-9)
    assert (tmp_path / "run" / "features" / "demo-real" / "lr").is_dir()  # the LR inputs' own cache


def test_identity_gate_applies_the_sets_threshold_and_says_when_a_set_has_none(weights_dir, tmp_path, monkeypatch):
    """NTIRE's gate: the share of SR images whose cosine with their LR input reaches the set's threshold
    (failed count beside it); a set without a threshold is a stated failure naming the variable; a new
    threshold recomputes the value. NTIRE's own sets map: widerface -> 0.3, webface -> 0.3."""
    import json

    from scgan_bench.run.pipeline import RunConfig, run_benchmark

    assert A.ntire_threshold("widerface") == {"threshold": 0.3} and A.ntire_threshold("webface") == {"threshold": 0.3}
    torch.manual_seed(1)
    _ckpt(weights_dir, IRBackbone(50, width=WIDTH))
    real = A.load_adaface
    monkeypatch.setattr(A, "load_adaface", lambda path=None, width=1.0: real(path, width=WIDTH))
    cfg = RunConfig(datasets=["demo-real"], methods=["bicubic"], metrics=["id-lq-adaface", "id-gate-adaface"],
                    out=tmp_path / "run", limit=6, progress=False, device="cpu")
    res = run_benchmark(cfg)
    [gate] = [c for c in res.cells if c.metric == "id-gate-adaface"]
    assert gate.status != "ok" and any("SCGAN_BENCH_ID_GATE_DEMO_REAL" in f.reason for f in res.failures)
    [lq] = [c for c in res.cells if c.metric == "id-lq-adaface"]
    cos = sorted(lq.values)
    stored = tmp_path / "run" / "metrics" / "demo-real" / "bicubic" / "id-gate-adaface.json"
    for t in (cos[2], cos[4]):  # thresholds on values: ">=" passes the image at the threshold
        monkeypatch.setenv("SCGAN_BENCH_ID_GATE_DEMO_REAL", repr(t))
        res = run_benchmark(cfg)
        [gate] = [c for c in res.cells if c.metric == "id-gate-adaface"]
        passed = sum(c >= t for c in cos)
        assert gate.status == "ok" and gate.set_value == pytest.approx(passed / len(cos), abs=1e-12)
        values = json.loads(stored.read_text())["values"]
        assert values["failed"] == len(cos) - passed and values["threshold"] == t
    monkeypatch.setenv("SCGAN_BENCH_ID_GATE_DEMO_REAL", "1.5")
    res = run_benchmark(cfg)
    assert any("[-1, 1]" in f.reason for f in res.failures)
