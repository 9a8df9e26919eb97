"""Issue 30: evaluation protocols as data. SCGAN's 16 -> 64 protocol stays the default and unchanged; the
blind-face-restoration protocol (bfr-512, bfr-N at reduced size) gives face restorers the degraded face as
it is and x4 models its 4x downsample, stated in each fingerprint; one protocol per run folder; the paper's
tables refuse another protocol's run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scgan_bench.errors import UsageError
from scgan_bench.protocols import get_protocol
from scgan_bench.registries import METHODS, load_plugins

from baseline_weights import gfpgan_clean_state_dict, rrdb_state_dict, save
from sb_testdata import HR_FACES, need

load_plugins()


def test_protocols_say_what_a_method_is_given_and_returns():
    sr, bfr = get_protocol(None), get_protocol("bfr-512")
    assert (sr.name, sr.lr_size, sr.out_size, sr.scale, sr.degradation) == ("scgan-sr", 16, 64, 4, None)
    assert (bfr.lr_size, bfr.out_size, bfr.scale, bfr.degradation, bfr.published) == (512, 512, 1, "gfpgan", True)
    assert get_protocol("bfr-128").published is False and get_protocol("scgan-sr") is sr
    assert sr.input_for(4) == 16 and bfr.input_for(1) == 512 and bfr.input_for(4) == 128 and bfr.input_for(2) == 256
    with pytest.raises(UsageError, match="x2 method cannot return 64 px"):
        sr.input_for(2)
    for bad, why in (("bfr-100", "multiple of 16"), ("bfr-48", "at least 64"), ("bfr", "unknown protocol")):
        with pytest.raises(UsageError, match=why):
            get_protocol(bad)


def test_scgan_protocol_adds_nothing_to_fingerprints_bridges_or_keys(tmp_path):
    """Earlier runs keep their caches: under SCGAN's protocol a bridge describes itself as before and a
    method's fingerprint carries no protocol entry."""
    from scgan_bench.baselines.bridge import Bridge
    from scgan_bench.run.pipeline import _with_protocol

    assert Bridge(512).describe() == {"mode": "bicubic", "up": "pil-bicubic uint8 16->512",
                                      "down": "area (avg_pool 8x) 512->64 in float"}
    fp = {"method": "x", "weights": {"a": "0" * 64}}
    assert _with_protocol(dict(fp), get_protocol(None), 16, 4) == fp
    got = _with_protocol(dict(fp), get_protocol("bfr-512"), 128, 4)
    assert got["protocol"]["name"] == "bfr-512" and "512 px input resized to 128 px" in got["protocol"]["input"]


@pytest.fixture
def faces(tmp_path) -> Path:
    root = tmp_path / "faces"
    root.mkdir()
    for i in range(3):
        shutil.copy(need(HR_FACES) / f"{i:05d}.png", root / f"f{i}.png")
    return root


def _install(asset: str, obj) -> None:
    import os

    from scgan_bench.assets import weights as W
    from scgan_bench.io.manifest import sha256_file

    path = save(obj, Path(os.environ["SCGAN_BENCH_WEIGHTS"]) / W.ASSETS.get(asset).filename)
    W.register_sha256(asset, sha256_file(path))


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_a_bfr_run_through_the_cli_with_two_baselines_on_random_official_layout_weights(weights_dir, faces, tmp_path):
    """bfr-128 (the 512 protocol at 128 px, where GFPGAN's reduced-size official-layout file is native):
    synthetic LQ made by GFPGAN's degradation at 128 px; GFPGAN v1.3 gets it as it is (no bridge either way);
    Real-ESRGAN (x4) gets its 32 px Pillow-bicubic downsample and returns 128 px; every SR PNG is 128 px and
    equals the network called directly on that input."""
    from scgan_bench.cli import main
    from scgan_bench.run.superres import quantise, to_tensor
    from scgan_bench.io.resize import resize_uint8

    _install("gfpgan-v1.3", {"params_ema": gfpgan_clean_state_dict()})
    _install("realesrgan-x4plus", {"params_ema": rrdb_state_dict()})
    out = tmp_path / "run"
    code = main(["run", "--protocol", "bfr-128", "--datasets", "folder", "--root", f"folder={faces}",
                 "--methods", "gfpgan-v1.3,realesrgan,bicubic", "--metrics", "psnr,ssim",
                 "--method-opt", "gfpgan-v1.3:any_config=true", "--method-opt", "realesrgan:any_config=true",
                 "--out", str(out), "--quiet"])
    assert code == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["protocol"] == {"name": "bfr-128", "lr_size": 128, "out_size": 128, "degradation": "gfpgan",
                                "published": False}
    assert meta["datasets"]["folder"]["degradation"]["name"] == "gfpgan"
    gfp, esr = meta["methods"]["gfpgan-v1.3"]["fingerprint"], meta["methods"]["realesrgan"]["fingerprint"]
    assert gfp["bridge"]["up"].startswith("none") and gfp["bridge"]["down"] == "none"
    assert gfp["protocol"]["input"] == "the 128 px input as it is"
    assert "resized to 32 px" in esr["protocol"]["input"]
    assert "Protocol bfr-128" in (out / "summary.md").read_text().splitlines()[0]
    assert "reduced-size stand-in" in (out / "summary.md").read_text()
    from scgan_bench.reports.report import build_report

    page = build_report(out, figures=False, per_dataset=2, tsne=False).read_text()
    assert "protocol <b>bfr-128</b>: 128 px in, 128 px out" in page and "reduced-size stand-in" in page

    gfpgan = METHODS.get("gfpgan-v1.3").create(any_config=True, protocol=get_protocol("bfr-128"))
    esrgan = METHODS.get("realesrgan").create(any_config=True)   # x4, as under SCGAN's protocol
    seen = []
    gfpgan.net.register_forward_hook(lambda mod, args, kw=None: seen.append(args[0].detach().clone()))
    for i in range(3):
        lr = _png(out / "data" / "folder" / "lr" / f"f{i}.png")
        hr = _png(out / "data" / "folder" / "hr" / f"f{i}.png")
        assert lr.shape == hr.shape == (128, 128, 3)
        x = to_tensor([lr])
        want = quantise(gfpgan.upscale(x))[0]
        assert torch.equal(seen[-1], x * 2 - 1), "GFPGAN must get the LQ face as it is, on [-1, 1]"
        assert np.array_equal(_png(out / "sr" / "folder" / "gfpgan-v1.3" / f"f{i}.png"), want)
        small = resize_uint8(lr, (32, 32), "bicubic")
        want = quantise(esrgan.upscale(to_tensor([small])))[0]
        assert want.shape == (128, 128, 3)
        assert np.array_equal(_png(out / "sr" / "folder" / "realesrgan" / f"f{i}.png"), want)


def test_a_folder_keeps_one_protocol_and_the_paper_tables_refuse_another(faces, tmp_path):
    from scgan_bench.cli import main
    from scgan_bench.tables.render import write_table

    out = tmp_path / "run"
    args = ["run", "--datasets", "folder", "--root", f"folder={faces}", "--methods", "bicubic", "--metrics", "psnr",
            "--out", str(out), "--quiet"]
    assert main([*args, "--protocol", "bfr-64"]) == 0
    assert main(args) == 2   # SCGAN's protocol into a bfr-64 folder: refused, with the reason
    with pytest.raises(UsageError, match="Table 5 is the paper's protocol.*bfr-64"):
        write_table(5, out, tmp_path / "t")
    assert main([*args, "--protocol", "bfr-64"]) == 0   # the same protocol again: the cache, nothing redone
    assert json.loads((out / "run.json").read_text())["recomputed"] == {
        "images_prepared": 0, "images_super_resolved": 0, "metric_values": 0}


def test_a_degradation_of_the_protocol_scale_is_chosen_and_a_wrong_one_refused(faces, tmp_path):
    from scgan_bench.run.prepare import prepare_dataset

    p = prepare_dataset("folder", out=tmp_path / "a", seed=0, root=faces, progress=False,
                        protocol=get_protocol("bfr-64"))
    assert p.degradation["name"] == "gfpgan" and p.degradation["scale"] == 1
    rec = next(iter(p.records.values()))
    assert _png(p.dir / rec["lr"]).shape == _png(p.dir / rec["hr"]).shape == (64, 64, 3)
    with pytest.raises(UsageError, match="complex.*x4.*64 -> 64 px, protocol bfr-64"):
        prepare_dataset("folder", out=tmp_path / "b", seed=0, root=faces, degradation="complex", progress=False,
                        protocol=get_protocol("bfr-64"))


def test_list_protocols(capsys):
    from scgan_bench.cli import main

    assert main(["list", "protocols"]) == 0
    text = capsys.readouterr().out
    assert "scgan-sr" in text and "bfr-512" in text and "degradation gfpgan" in text


def test_a_method_whose_scale_cannot_reach_the_protocol_is_unavailable_with_the_reason(faces, tmp_path, monkeypatch):
    """An x3 plug-in under bfr-64 (64 px is no multiple of 3): the method is unavailable, said as a protocol
    mismatch, and the other methods run."""
    from scgan_bench.interfaces import MethodSpec
    from scgan_bench.run.pipeline import RunConfig, run_benchmark

    class X3:
        name, scale = "x3-test", 3

        def upscale(self, lr):
            return torch.nn.functional.interpolate(lr, scale_factor=3)

        def fingerprint(self):
            return {"method": "x3-test"}

    # registered for this test only (a later `--methods all` or demo must not meet it)
    monkeypatch.setitem(METHODS._entries, "x3-test", MethodSpec(name="x3-test", factory=lambda device="cpu": X3(),
                                                                summary="x3"))
    res = run_benchmark(RunConfig(datasets=["folder"], methods=["x3-test", "bicubic"], metrics=["psnr"],
                                  out=tmp_path / "run", roots={"folder": faces}, protocol="bfr-64", progress=False))
    assert res.unavailable["method:x3-test"] == ("not run under protocol bfr-64: an x3 method cannot return 64 px from "
                                                 "the 64 px input of protocol bfr-64")
    assert {c.method for c in res.cells if c.status == "ok"} == {"bicubic"}
