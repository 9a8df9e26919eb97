"""Strict float32 on CUDA by default, TF32 on request (scgan_bench.run.precision): torch's switches, the
run's wiring and the cache keys. The numbers behind the default are in benchmarks/results (H200)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scgan_bench.run import precision


def _flags() -> tuple[bool, bool]:
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


def test_cuda_runs_in_strict_float32_unless_tf32_is_asked_for_and_the_switches_come_back():
    before = _flags()
    with precision.fp32_precision("cuda"):
        assert _flags() == (False, False) and precision.tag() == {}
    assert _flags() == before
    with precision.fp32_precision("cuda:1", tf32=True):
        assert _flags() == (True, True) and precision.tag() == {"fp32": "tf32"}
        with precision.fp32_precision("cuda", tf32=False):  # nested: restored to the outer block's
            assert _flags() == (False, False) and precision.tag() == {}
        assert _flags() == (True, True) and precision.tag() == {"fp32": "tf32"}
    assert _flags() == before and precision.tag() == {}
    with precision.fp32_precision("cpu", tf32=True):  # no TF32 on the CPU: nothing changes, keys stay
        assert _flags() == before and precision.tag() == {}


def test_a_run_enters_the_precision_of_its_config(tmp_path, monkeypatch):
    """``run_benchmark`` holds the stages inside ``fp32_precision(device, cfg.tf32)``; a CUDA device is
    simulated (the stages are replaced by a probe)."""
    from scgan_bench.run import pipeline

    seen = []
    monkeypatch.setattr(pipeline, "resolve_device", lambda d: "cuda")
    monkeypatch.setattr(pipeline, "_run_locked", lambda cfg, out, device, shard: seen.append((_flags(), precision.tag())))
    for tf32 in (False, True):
        pipeline.run_benchmark(pipeline.RunConfig(datasets=["demo"], methods=["bicubic"], metrics=["psnr"],
                                                  out=tmp_path / str(tf32), tf32=tf32, progress=False))
    assert seen == [((False, False), {}), ((True, True), {"fp32": "tf32"})]


def test_results_made_under_tf32_never_share_a_cache_with_strict_ones():
    """Feature caches, SR stage keys and metric fingerprints add the tag under TF32 only, so a folder's
    strict results stay valid and TF32 results are kept apart."""
    from scgan_bench.run.features import cache_name

    class Extractor:
        key = "probe/v1"

        def extract(self, images):
            return np.zeros((len(images), 1))

    strict = cache_name(Extractor())
    with precision.fp32_precision("cuda", tf32=True):
        tf32 = cache_name(Extractor())
    with precision.fp32_precision("cuda"):
        assert cache_name(Extractor()) == strict
    assert tf32 != strict


def test_the_cli_passes_tf32_to_the_run(monkeypatch, tmp_path):
    from scgan_bench import cli
    from scgan_bench.run import pipeline

    got = []

    def probe(cfg, **kw):  # stop once the config is built
        got.append(cfg.tf32)
        raise SystemExit(0)

    monkeypatch.setattr(pipeline, "run_benchmark", probe)
    for extra in ([], ["--tf32"]):
        with pytest.raises(SystemExit):  # the probe stops the command once it has its config
            cli.main(["run", "--datasets", "demo", "--methods", "bicubic", "--metrics", "psnr", "--out", str(tmp_path),
                      "--device", "cpu", *extra])
    assert got == [False, True]
