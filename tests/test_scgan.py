"""SCGAN: released architecture (parameter counts), variants wire what they claim, recipes, training on
real faces, exact resume, 2-process gloo data parallelism, and the checkpoint -> SR method path."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from scgan_bench.scgan.model import RECIPES, SCGAN
from scgan_bench.scgan.networks import DegradationNet, Discriminator, RestorationNet, count_trainable
from scgan_bench.scgan.train import Trainer, TrainConfig
from scgan_bench.scgan.variants import ADV_LOSSES, TABLE4_ROWS, VARIANTS

from sb_testdata import ddp_train_worker, dp_steps, spawn_ranks, unpaired_faces

WIDTH = 0.125  # CPU tests use 1/8 of the channels; the released widths are checked by the counts


def test_parameter_counts_match_the_released_architecture():
    assert count_trainable(DegradationNet()) == 12_291_896
    assert count_trainable(RestorationNet()) == 15_476_323
    assert count_trainable(Discriminator(16)) == 15_390_849
    assert count_trainable(Discriminator(64)) == 15_456_641


def test_shapes_and_output_range():
    d, r = DegradationNet(WIDTH), RestorationNet(WIDTH)
    x, z = torch.rand(2, 3, 64, 64) * 2 - 1, torch.randn(2, 64)
    lr = d(x, z)
    assert lr.shape == (2, 3, 16, 16) and lr.abs().max() <= 1
    sr = r.eval()(lr)
    assert sr.shape == (2, 3, 64, 64) and sr.abs().max() <= 1
    assert Discriminator(16, WIDTH)(lr).shape == Discriminator(64, WIDTH)(x).shape == (2, 1)


def test_variant_registry_covers_the_papers_tables():
    by_table = {}
    for name, v in VARIANTS.items():
        by_table.setdefault(v.table, []).append(name)
        assert re.fullmatch(r"[a-z0-9-]+", name)  # safe as a method / folder name
    assert {k: len(v) for k, v in by_table.items()} == {0: 1, 1: 3, 2: 4, 3: 3, 4: 15}
    kept = {frozenset(VARIANTS.get(f"scgan-ladv-{r}-{k}").adversarial) for r, k in TABLE4_ROWS}
    from itertools import combinations

    assert kept == {frozenset(c) for n in range(4) for c in combinations(ADV_LOSSES, n)}
    assert VARIANTS.get("scgan-ladv-3-1").adversarial == {"H2"}  # the paper's first 3-removal row


def _model(name: str, recipe: str = "official") -> SCGAN:
    torch.manual_seed(0)
    return SCGAN(VARIANTS.get(name), RECIPES[recipe], WIDTH)


def test_sharing_variants_share_exactly_their_parts():
    fc = _model("scgan-fc")
    assert fc.dsl is fc.dhl
    sa = _model("scgan-sa")
    assert sa.dsl.encoder is sa.dhl.encoder and sa.dsl.decoder is sa.dhl.decoder
    assert sa.dsl.in_layer is not sa.dhl.in_layer and sa.dsl.out_layer is not sa.dhl.out_layer
    se, sd = _model("scgan-se"), _model("scgan-sd")
    assert se.dsl.encoder is se.dhl.encoder and se.dsl.decoder is not se.dhl.decoder
    assert sd.dsl.decoder is sd.dhl.decoder and sd.dsl.encoder is not sd.dhl.encoder
    sm = _model("scgan-sm")
    assert all(sm.dsl.encoder[i] is sm.dhl.encoder[i] for i in range(4, 8))
    assert all(sm.dsl.encoder[i] is not sm.dhl.encoder[i] for i in range(4))
    assert all(sm.dsl.decoder[j] is sm.dhl.decoder[j] for j in range(1, 3))
    assert all(sm.dsl.decoder[j] is not sm.dhl.decoder[j] for j in range(4, 6))
    full = _model("scgan")
    assert not {id(p) for p in full.dhl.parameters()} & {id(p) for p in full.dsl.parameters()}
    # shared parameters are optimised once
    assert len(sa.generator_parameters()) < len(full.generator_parameters())


def _batch(n=4):
    g = torch.Generator().manual_seed(1)
    return (torch.rand(n, 3, 64, 64, generator=g) * 2 - 1, torch.rand(n, 3, 16, 16, generator=g) * 2 - 1,
            torch.randn(n, 64, generator=g))


EXPECTED_TERMS = {
    "scgan": {"dhl_pix", "dhl_adv", "rls_cyc", "rls_adv1", "rls_pix", "rls_adv2", "dsl_cyc", "dsl_adv"},
    "scgan-wo-dsl": {"dhl_pix", "dhl_adv", "rls_cyc", "rls_adv1"},
    "scgan-wo-dhl": {"rls_pix", "rls_adv2", "dsl_cyc", "dsl_adv"},
    "scgan-wo-al": {"dhl_pix", "rls_cyc", "rls_pix", "dsl_cyc"},
    "scgan-wo-pl": {"dhl_adv", "rls_cyc", "rls_adv1", "rls_adv2", "dsl_cyc", "dsl_adv"},
    "scgan-wo-cl": {"dhl_pix", "dhl_adv", "rls_adv1", "rls_pix", "rls_adv2", "dsl_adv"},
    "scgan-ladv-2-4": {"dhl_pix", "dhl_adv", "rls_cyc", "rls_pix", "rls_adv2", "dsl_cyc"},
}


@pytest.mark.parametrize("name", list(EXPECTED_TERMS))
def test_each_variant_computes_exactly_its_losses(name):
    m = _model(name)
    hr, lr, z = _batch()
    fakes = m.generate(hr, lr, z)
    terms = m.generator_loss(hr, lr, fakes)
    assert set(terms) == EXPECTED_TERMS[name]
    assert set(m.disc) == {k for k in ADV_LOSSES if m.variant.uses(k)}
    assert set(m.discriminator_loss(hr, lr, fakes)) == {f"D_{k}" for k in m.disc}


def test_removed_losses_contribute_no_gradient():
    """w/o-PL: D_HL's gradient is exactly that of its adversarial term; l_adv-3-4 (only D_L1 kept):
    R_LS's gradient is exactly that of its l1 terms. The full model's pixel term really moves D_HL."""
    hr, lr, z = _batch()
    for name, module, only in (("scgan-wo-pl", "dhl", ["dhl_adv"]), ("scgan-ladv-3-4", "rls", ["rls_cyc", "rls_pix"])):
        m = _model(name)
        fakes = m.generate(hr, lr, z)
        terms = m.generator_loss(hr, lr, fakes)
        params = list(getattr(m, module).parameters())
        total = torch.autograd.grad(sum(terms.values()), params, allow_unused=True, retain_graph=True)
        alone = torch.autograd.grad(sum(terms[k] for k in only), params, allow_unused=True)
        assert sum(a is not None for a in alone) > 0
        for a, b in zip(total, alone):
            assert (a is None and b is None) or torch.allclose(a, b), name
    full = _model("scgan")
    fakes = full.generate(hr, lr, z)
    t = full.generator_loss(hr, lr, fakes)
    g_pix = torch.autograd.grad(t["dhl_pix"], full.dhl.in_layer.weight, retain_graph=True)[0]
    assert g_pix.abs().sum() > 0


@pytest.fixture(scope="module")
def faces():
    return unpaired_faces(16)  # unpaired: LR faces are other people's


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(variant="scgan", width=WIDTH, batch_size=8, epochs=100, seed=3, out=str(tmp_path),
                progress=False, learning_rate=5e-4)
    base.update(kw)
    return TrainConfig(**base)


def _fall(rows, keys, n=6) -> float:
    first = np.mean([sum(r[k] for k in keys) for r in rows[:n]])
    return float(np.mean([sum(r[k] for k in keys) for r in rows[-n:]]) / first)


@pytest.mark.slow
def test_reduced_width_model_fits_16_real_faces(tmp_path, faces):
    """48 CPU steps on 16 real faces (width 1/8, lr 1e-3; lr_period 100, so the per-epoch cosine wave
    stays near its top over these 24 epochs). Without adversarial
    losses the l1 terms fall clearly: to 0.67-0.71 of their start over seeds 3-5 with 1 and 2 threads
    (threshold 0.8). With them, GAN numerics differ across CPUs and 48 steps show no reliable trend
    (0.90-1.16 over the same runs), so the full model is only required to stay finite."""
    plain = Trainer(_cfg(tmp_path / "noadv", variant="scgan-wo-al", learning_rate=1e-3, lr_period=100,
                         max_steps=48), *faces)
    assert _fall(plain.fit(tmp_path / "noadv"), ("dhl_pix", "rls_cyc", "rls_pix", "dsl_cyc")) < 0.8
    full = Trainer(_cfg(tmp_path / "full", learning_rate=1e-3, lr_period=100, max_steps=16), *faces)
    rows = full.fit(tmp_path / "full")
    assert len(rows) == 16 and all(np.isfinite(v) for r in rows for k, v in r.items() if k not in ("epoch", "step"))
    assert all(torch.isfinite(p).all() for p in full.model.parameters())
    assert (tmp_path / "full" / "samples" / "epoch_001.png").exists() and (tmp_path / "full" / "log.csv").exists()


def test_resume_equals_an_uninterrupted_run(tmp_path, faces):
    a = Trainer(_cfg(tmp_path / "a", max_steps=5), *faces)
    a.fit(tmp_path / "a")
    b = Trainer(_cfg(tmp_path / "b", max_steps=3), *faces)
    b.fit(tmp_path / "b")  # stops inside epoch 2 (2 steps per epoch) and checkpoints
    c = Trainer(_cfg(tmp_path / "b", max_steps=5), *faces)
    c.fit(tmp_path / "b", resume=True)
    sa, sc = a.model.state_dict(), c.model.state_dict()
    assert sa.keys() == sc.keys()
    for k in sa:
        assert torch.equal(sa[k], sc[k]), k
    assert a.g_opt.state_dict()["state"][0]["step"] == c.g_opt.state_dict()["state"][0]["step"]
    assert c.g_sched.last_epoch == a.g_sched.last_epoch == 2


@pytest.mark.slow
def test_two_process_gloo_equals_one_process(tmp_path, faces):
    """Each rank takes half of the global batch: the averaged first-step gradients and the BatchNorm
    statistics over both ranks equal one process over the whole batch (float32 tolerance)."""
    torch.set_num_threads(1)
    single = dp_steps(Trainer(TrainConfig(variant="scgan", width=WIDTH, batch_size=8, epochs=10, seed=3,
                                          out=str(tmp_path / "s"), progress=False), *faces))
    ddp = spawn_ranks(ddp_train_worker, 29500, tmp_path / "d", *faces)
    # near-zero gradient entries differ by up to 9e-7 with AVX2 on one thread (issue 26, tests/tolerance_audit.py),
    # so the absolute part is 1e-5 (ratio 0.09); the gradient of half the batch (no averaging) fails this on
    # 32 % of the entries (largest gradient 0.23)
    for k, g in single["grads"].items():
        torch.testing.assert_close(ddp["grads"][k], g, rtol=1e-3, atol=1e-5)
    for k, v in single["stats"].items():
        torch.testing.assert_close(ddp["stats"][k], v, rtol=1e-4, atol=1e-6)
    # After 3 Adam steps (each moves a weight by about lr = 1e-4, whatever its gradient's size) the weights
    # still agree, but float noise may flip the direction of a weight whose gradient is near zero, so the
    # largest difference is no test (2e-4 under ATEN_CPU_CAPABILITY=default, one flip; a bug that stops
    # averaging after the first step gives 4.3e-4). Share of weights off by more than lr / 2, measured
    # (issue 26, `python tests/ddp_margin.py scgan`): 0.011 % natively, 0.002 % under the default ISA; 35 % with it.
    w1 = torch.cat([w.flatten() for w in single["weights"].values()])
    w2 = torch.cat([ddp["weights"][k].flatten() for k in single["weights"]])
    assert ((w1 - w2).abs() > 5e-5).float().mean() < 0.01


def test_checkpoint_round_trips_into_the_sr_method_and_a_run(tmp_path, faces, monkeypatch):
    from scgan_bench.run.pipeline import RunConfig, run_benchmark
    from scgan_bench.scgan.method import SCGANMethod

    tr = Trainer(_cfg(tmp_path / "train", variant="scgan-fc", max_steps=2), *faces)
    tr.fit(tmp_path / "train")  # scgan-fc shares D_HL and D_SL: the checkpoint de-duplicates them
    again = Trainer(_cfg(tmp_path / "train", variant="scgan-fc", max_steps=2), *faces)
    again.load(tmp_path / "train")
    assert again.model.dsl is again.model.dhl
    monkeypatch.setenv("SCGAN_BENCH_CKPT_SCGAN_FC", str(tmp_path / "train"))
    m = SCGANMethod("scgan-fc")
    lr = faces[1][:3].float() / 255
    tr.model.rls.eval()
    with torch.no_grad():
        want = (tr.model.rls(lr * 2 - 1) + 1) / 2
        got = m.upscale(lr)
    torch.testing.assert_close(got, want)
    assert len(m.fingerprint()["checkpoint_sha256"]) == 64
    res = run_benchmark(RunConfig(datasets=["demo"], methods=["scgan-fc", "bicubic"], metrics=["psnr"],
                                  out=tmp_path / "run", limit=4, progress=False))
    cell = {(c.method, c.metric): c for c in res.cells}
    assert cell[("scgan-fc", "psnr")].status == "ok" and len(cell[("scgan-fc", "psnr")].values) == 4
    # a tampered checkpoint is refused (its sidecar sha256 no longer matches)
    data = bytearray((tmp_path / "train" / "rls.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "train" / "rls.safetensors").write_bytes(bytes(data))
    from scgan_bench.assets.weights import WeightsError, _DIGESTS

    _DIGESTS.clear()
    with pytest.raises(WeightsError, match="sha256"):
        SCGANMethod("scgan-fc")


def test_train_cli_from_dataset_sources_then_score(tmp_path, capsys, monkeypatch):
    from scgan_bench.cli import main

    out = tmp_path / "run"
    assert main(["train", "--variant", "scgan-wo-cl", "--hr", "dataset:demo", "--lr", "dataset:demo-real",
                 "--out", str(out), "--epochs", "1", "--batch-size", "16", "--width", str(WIDTH),
                 "--device", "cpu", "--max-steps", "2", "--quiet"]) == 0
    assert "SCGAN_BENCH_CKPT_SCGAN_WO_CL" in capsys.readouterr().out
    cfg = __import__("json").loads((out / "config.json").read_text())
    assert cfg["variant_spec"]["cycle"] is False and cfg["recipe_spec"]["name"] == "official"
    monkeypatch.setenv("SCGAN_BENCH_CKPT_SCGAN_WO_CL", str(out))
    assert main(["run", "--datasets", "demo", "--methods", "scgan-wo-cl", "--metrics", "psnr", "--limit", "3",
                 "--out", str(tmp_path / "scores"), "--quiet", "--device", "cpu"]) == 0
    assert "| scgan-wo-cl |" in capsys.readouterr().out
    assert main(["train", "--variant", "scgan-w/o-dsl", "--hr", "x", "--lr", "y", "--quiet"]) == 2
    assert "Did you mean" in capsys.readouterr().err
