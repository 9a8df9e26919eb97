"""The step's execution modes (``--speed``) and its fused discriminator calls (``--d-calls``), seen from
outside: a fused call is one spectral-norm power iteration for real and fake (and two calls where a
discriminator has batch statistics); spectral norm runs outside autocast; ``compiled`` computes the
eager step (first-step losses and gradients, every trainable model); the CUDA-graph runner's plumbing
(warm-up, static inputs, outputs not aliased, a new graph when LRGAN's stage changes) trains exactly as
eager with a CPU stand-in for the capture; where a mode cannot run it says why; both settings are part
of the run's identity, and checkpoints from before them resume only as what they were."""
from __future__ import annotations

import copy
import json
from contextlib import nullcontext

import pytest
import torch
from torch import nn
from sb_testdata import grads_at_step, small_train_cfg, unpaired_faces

import scgan_bench.training.speed as speed
from scgan_bench.errors import UsageError
from scgan_bench.scgan.networks import Discriminator
from scgan_bench.training.engine import Engine
from scgan_bench.training.models import judge


@pytest.fixture(scope="module")
def faces():
    return unpaired_faces(16)


_cfg = small_train_cfg


def _sn_vectors(m: nn.Module) -> list[torch.Tensor]:
    return [b.clone() for n, b in m.named_buffers() if n.endswith(("._u", "._v"))]


# ------------------------------------------------------------------------------- fused discriminators
def test_a_fused_call_is_one_power_iteration_for_real_and_fake():
    """``judge(fused=True)``: outputs and gradients as the real faces judged in training mode (one power
    iteration of every spectral norm) and the fakes through the same normalised weights (eval mode: no
    iteration); its u, v as after that one iteration. ``fused=False``: two training-mode calls, two
    iterations (other u, v). Tolerance: one batched call vs two: 1e-5 relative (measured 2e-7)."""
    torch.manual_seed(0)
    d = Discriminator(16, 1 / 16)
    real, fake = torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16, requires_grad=True)
    fused, ref, two = copy.deepcopy(d), copy.deepcopy(d), copy.deepcopy(d)

    got_r, got_f = judge(fused, real, fake, fused=True)
    assert fake.grad is None and not got_f.grad_fn is None
    want_r = ref(real)
    ref.eval()
    want_f = ref(fake.detach())
    ref.train()
    torch.testing.assert_close(got_r, want_r, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_f, want_f, rtol=1e-5, atol=1e-6)
    for a, b in zip(_sn_vectors(fused), _sn_vectors(ref)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    g_got = torch.autograd.grad((got_r - 2 * got_f).sum(), list(fused.parameters()))
    g_want = torch.autograd.grad((want_r - 2 * want_f).sum(), list(ref.parameters()))
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max()))

    two_r, two_f = judge(two, real, fake, fused=False)
    torch.testing.assert_close(two_r, want_r, rtol=1e-5, atol=1e-6)  # the first call is the same
    moved = [float((a - b).abs().max()) for a, b in zip(_sn_vectors(two), _sn_vectors(fused))]
    assert max(moved) > 1e-4, "separate calls run a second power iteration"


def test_batch_statistics_keep_two_calls():
    """A discriminator with BatchNorm in training mode is never fused: its outputs are the two separate
    calls' (its statistics are each batch's own) and its running statistics move twice."""
    torch.manual_seed(0)
    d = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(1))
    real, fake = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8) + 3
    d(real)  # materialise the lazy layer
    ref = copy.deepcopy(d)
    got = judge(d, real, fake, fused=True)
    torch.testing.assert_close(got[0], ref(real), rtol=0, atol=0)
    torch.testing.assert_close(got[1], ref(fake), rtol=0, atol=0)
    assert int(d[1].num_batches_tracked) == 3


def test_spectral_norm_runs_outside_autocast(monkeypatch):
    """Every spectral-norm power iteration of SCGAN's and LRGAN's discriminators runs with autocast
    off, under ``--amp bf16`` too, and the normalised weight stays float32."""
    from torch.nn.utils.parametrizations import _SpectralNorm

    seen: list[bool] = []
    orig = _SpectralNorm._power_method

    def spy(self, weight_mat, n):
        seen.append(torch.is_autocast_enabled("cpu"))
        return orig(self, weight_mat, n)

    monkeypatch.setattr(_SpectralNorm, "_power_method", spy)
    d = Discriminator(64, 1 / 16, pool="avg")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = d(torch.randn(2, 3, 64, 64))
        w = d.blocks[0].conv1.weight
    assert out.dtype == torch.bfloat16 and w.dtype == torch.float32
    assert seen and not any(seen), f"{sum(seen)} of {len(seen)} power iterations ran under autocast"


# --------------------------------------------------------------------------------------- compiled
# CycleGAN-16 (image pools, instance norm) fast; SCGAN (spectral norm, BatchNorm, crossings) slow: 35 s of
# tracing on 2 cores. LRGAN's parts (the same discriminators, BatchNorm generators) pass too (measured,
# 24 s), left out to keep the suite's time.
COMPILED_MODELS = [pytest.param("cyclegan-16", id="cyclegan-16"),
                   pytest.param("scgan", id="scgan", marks=pytest.mark.slow)]


@pytest.mark.parametrize("variant", COMPILED_MODELS)
def test_the_compiled_step_computes_the_eager_step(tmp_path, faces, variant, monkeypatch):
    """``--speed compiled`` (dynamo + AOT autograd; backend aot_eager here, inductor in
    ``benchmarks/compiled_step_agreement.py`` and the device check) from the same start: the first
    step's logged terms and every gradient equal eager's; later steps compile nothing new (only tensors
    cross a compiled boundary). Tolerances: terms 1e-5 relative; gradients 1e-3 of each tensor's scale
    (floor 1e-2 of the optimiser's largest). Measured worst (default / AVX2 / AVX-512 kernels, 1 and 2
    threads, all three models): terms 8.4e-7; gradients 2.2e-4 of the scale, in SCGAN's 64 px
    discriminators' spectral-norm weights (the gradient through W / sigma is a difference of two nearly
    equal terms: it varies 1e-6 .. 2e-4 with the kernels), 6e-7 in LRGAN's, 0 in CycleGAN's, <= 5e-5 in
    any generator; a changed or missing term moves gradients by 1e-2 or more."""
    import torch._dynamo

    monkeypatch.setattr(speed, "COMPILE_OPTIONS", {"backend": "aot_eager"})
    torch._dynamo.reset()
    method = {"cyclegan-16": "cyclegan"}.get(variant, variant)
    eager = Engine(_cfg(tmp_path / "e", method, variant=variant), *faces)
    comp = Engine(_cfg(tmp_path / "c", method, variant=variant, speed="compiled"), *faces)
    assert comp.identity()["speed"] == "compiled" and eager.identity()["speed"] == "eager"
    ge, gc = grads_at_step(eager), grads_at_step(comp)
    te, tc = eager._step(eager.batch(1, 0)), comp._step(comp.batch(1, 0))
    assert te.keys() == tc.keys()
    for k in te:
        torch.testing.assert_close(tc[k], te[k], rtol=1e-5, atol=1e-7, msg=k)
    assert ge.keys() == gc.keys()
    for opt in ge:
        assert ge[opt].keys() == gc[opt].keys(), opt
        top = max(float(v.abs().max()) for v in ge[opt].values())
        for k, want in ge[opt].items():
            scale = max(float(want.abs().max()), 1e-2 * top)
            torch.testing.assert_close(gc[opt][k], want, rtol=0, atol=1e-3 * scale, msg=f"{opt}: {k}")
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert graphs >= len(comp.impl.compiled_parts()), "the named parts were compiled"
    comp._step(comp.batch(1, 1))
    comp._step(comp.batch(2, 0))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs, "a later step recompiled"


# ----------------------------------------------------------------------------------- CUDA-graph runner
class StandInCapture:
    """What ``torch.cuda.graph`` does, on the CPU: recording runs the body's Python but leaves no effect
    (the model's and optimisers' state is put back), and a replay re-runs the recorded work into the same
    output memory. Counts recordings and replays."""

    def __init__(self, tr: Engine) -> None:
        self.tr, self.recorded, self.replays = tr, 0, 0
        self.runner: speed.GraphedStep | None = None

    def __call__(self, body):
        model = copy.deepcopy(self.tr.model.state_dict())
        moments = [(st, copy.deepcopy(dict(st))) for o in self.tr.optimizers.values() for st in o.state.values()]
        lrs = [g["lr"] for o in self.tr.optimizers.values() for g in o.param_groups]
        assert all(isinstance(lr, torch.Tensor) for lr in lrs), "the recorded optimiser reads a tensor lr"
        body()
        self.tr.model.load_state_dict(model)
        for st, saved in moments:  # in place: the optimisers' groups stay the same objects
            for k, v in saved.items():
                st[k].copy_(v) if isinstance(v, torch.Tensor) else st.__setitem__(k, v)
        self.recorded += 1
        runner = self.runner

        def replay():
            self.replays += 1
            out = runner.static_out
            body()
            out.copy_(runner.static_out)  # a replay writes the recorded output memory
            runner.static_out = out

        return replay


def _graphed(tr: Engine) -> StandInCapture:
    cap = StandInCapture(tr)
    tr._run_step = cap.runner = speed.GraphedStep(lambda b: tr.impl.step(b, tr), tr.optimizers.values(),
                                                  key=getattr(tr.impl, "graph_key", None), capture=cap,
                                                  side_stream=nullcontext)
    return cap


@pytest.mark.parametrize("method,kw", [("scgan", {}),
                                       ("lrgan", {"options": {"schedule": "two-stage", "stage1_epochs": 1},
                                                  "epochs": 2})])
def test_the_graph_runner_trains_as_eager(tmp_path, faces, method, kw):
    """The runner warms up eagerly, records once, then copies each batch into its static inputs and
    replays: every logged term and every weight equals an eager run's (the stand-in replays the same
    kernels, so exactly); the returned terms are copies (a later replay does not change them); LRGAN's
    stage change (epoch 2 of a two-stage run) warms up and records a new graph."""
    cfg = dict(max_steps=8, **kw)
    ref = Engine(_cfg(tmp_path / "e", method, **cfg), *faces)
    rows_ref = ref.fit(tmp_path / "e")
    tr = Engine(_cfg(tmp_path / "g", method, **cfg), *faces)
    cap = _graphed(tr)
    kept = []
    real_step = tr._step

    def step(b):
        out = real_step(b)
        kept.append({k: v.clone() for k, v in out.items()})
        kept[-1]["_live"] = out
        return out

    tr._step = step
    rows = tr.fit(tmp_path / "g")
    assert [r["step"] for r in rows] == [r["step"] for r in rows_ref] == list(range(1, 9))
    for a, b in zip(rows, rows_ref):
        assert {k: a[k] for k in b} == b
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, tr.model.state_dict()[k]), k
    for snap in kept:
        for k, v in snap["_live"].items():
            assert torch.equal(v, snap[k]), "a replay changed terms already returned"
    spe = len(faces[0]) // 4
    expect = 1 if method == "scgan" else 2  # LRGAN: stage 1 (epoch 1), stage 2 (epoch 2)
    assert cap.recorded == expect
    assert cap.replays == 8 - expect * speed.WARMUP_STEPS and spe == 4


def test_the_graph_runner_copies_the_learning_rate_the_schedule_sets(tmp_path, faces):
    """After recording, the groups keep float learning rates (schedulers, checkpoints) and
    ``sync_lr`` writes each scheduled rate into the tensor the graph reads."""
    tr = Engine(_cfg(tmp_path, "scgan", max_steps=4), *faces)
    _graphed(tr)
    for s in range(4):
        tr._run_step(tr.batch(1, s))
    runner = tr._run_step
    assert all(isinstance(g["lr"], float) for o in tr.optimizers.values() for g in o.param_groups)
    tr._schedule_epoch()
    want = [g["lr"] for o in tr.optimizers.values() for g in o.param_groups]
    assert want[0] < 1e-3
    assert [float(t) for _, t in runner._lr] == pytest.approx(want, rel=1e-6)


def test_speed_modes_refuse_where_they_cannot_run(tmp_path, faces):
    """``graph`` needs CUDA and a step without host decisions, every mode but eager one process: each
    refusal says which and what to use instead; an unknown mode names the known ones."""
    with pytest.raises(UsageError, match="needs --device cuda"):
        Engine(_cfg(tmp_path, "scgan", speed="graph"), *faces)
    cuda = torch.device("cuda")
    with pytest.raises(UsageError, match="image pools"):
        speed.check_speed("graph", cuda, 1, False, "cyclegan")
    with pytest.raises(UsageError, match="one process"):
        speed.check_speed("compiled-graph", cuda, 2, True, "scgan")
    with pytest.raises(UsageError, match="one process"):
        speed.check_speed("compiled", torch.device("cpu"), 2, False, "cyclegan")
    speed.check_speed("compiled-graph", cuda, 1, True, "scgan")
    with pytest.raises(UsageError, match="eager, compiled, graph, compiled-graph"):
        Engine(_cfg(tmp_path, "scgan", speed="fast"), *faces)
    with pytest.raises(UsageError, match="fused, separate"):
        Engine(_cfg(tmp_path, "scgan", d_calls="once"), *faces)


# ------------------------------------------------------------------------------------------ identity
def test_speed_and_d_calls_are_part_of_the_run(tmp_path, faces):
    """A resume with another ``--speed`` or ``--d-calls`` is refused naming it; a checkpoint written
    before either joined the identity resumes as what it was (eager, separate calls) and is refused
    under the new default ``fused`` with the difference named. CycleGAN records no ``d_calls`` (no
    spectral norm: fused is the same arithmetic)."""
    Engine(_cfg(tmp_path / "s", "scgan", max_steps=1), *faces).fit(tmp_path / "s")
    with pytest.raises(UsageError, match="d_calls: checkpoint 'fused', now 'separate'"):
        Engine(_cfg(tmp_path / "s", "scgan", d_calls="separate"), *faces).load(tmp_path / "s")
    with pytest.raises(UsageError, match="speed: checkpoint 'eager', now 'compiled'"):
        Engine(_cfg(tmp_path / "s", "scgan", speed="compiled"), *faces).load(tmp_path / "s")
    latest = tmp_path / "s" / "checkpoints" / "latest.json"
    old = json.loads(latest.read_text())
    del old["identity"]["speed"], old["identity"]["d_calls"]  # as written before this version
    latest.write_text(json.dumps(old))
    with pytest.raises(UsageError, match="d_calls: checkpoint 'separate', now 'fused'"):
        Engine(_cfg(tmp_path / "s", "scgan"), *faces).load(tmp_path / "s")
    Engine(_cfg(tmp_path / "s", "scgan", d_calls="separate"), *faces).load(tmp_path / "s")
    assert "d_calls" in Engine(_cfg(tmp_path / "l", "lrgan"), *faces).identity()
    assert "d_calls" not in Engine(_cfg(tmp_path / "c", "cyclegan"), *faces).identity()


def test_the_train_command_takes_the_speed_options(tmp_path, monkeypatch):
    """``--speed``, ``--d-calls`` and the older ``--compile`` reach the engine's config."""
    import scgan_bench.cli as cli
    import scgan_bench.training.engine as engine

    got = []
    monkeypatch.setattr(engine, "run_training", lambda cfg, resume=False: got.append(cfg) or tmp_path)
    base = ["train", "--hr", str(tmp_path), "--lr", str(tmp_path), "--out", str(tmp_path / "r"), "--device", "cpu"]
    for extra, want in ((["--speed", "compiled", "--d-calls", "separate"], ("compiled", "separate")),
                        (["--compile"], ("compiled", "fused")), (["--compile", "--speed", "graph"],
                                                                  ("compiled-graph", "fused")), ([], ("eager", "fused"))):
        assert cli.main(base + extra) == 0
        assert (got[-1].speed, got[-1].d_calls) == want, extra
