"""What a production training step executes, seen from outside: each network's gradient inside
``step()`` (captured when its optimiser steps) equals the gradient of the loss written here from the
papers' recipes on a copy of the networks taken before the step; the image pool's answer reaches the
discriminators; train / eval modes; each optimiser's schedule; gradients averaged, not summed, over
ranks; the logged losses are the global batch's; and a resume cannot change a schedule that
``--epochs`` fixed when the run started."""
from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from sb_testdata import ddp_fit_worker, small_train_cfg, spawn_ranks, unpaired_faces

from scgan_bench.errors import UsageError
from scgan_bench.training.engine import Engine, TrainConfig


@pytest.fixture(scope="module")
def faces():
    return unpaired_faces(16)


_cfg = small_train_cfg


def _capture(tr: Engine) -> dict[str, dict[str, torch.Tensor]]:
    """Each optimiser's gradients (by parameter name) at the moment it steps, and a copy of the whole
    model as it is then (the discriminators a generator step used)."""
    names = {id(p): n for n, p in tr.model.named_parameters()}
    seen: dict[str, dict[str, torch.Tensor]] = {}

    def hook(name):
        def pre_step(opt, args, kwargs):
            seen[name] = {names[id(p)]: p.grad.detach().clone() for g in opt.param_groups for p in g["params"]
                          if p.grad is not None}
            seen[name + "@model"] = copy.deepcopy(tr.model)
        return pre_step

    for name, opt in tr.optimizers.items():
        opt.register_step_pre_hook(hook(name))
    return seen


def _grads(loss: torch.Tensor, model: torch.nn.Module, prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    params = {n: p for n, p in model.named_parameters() if n.startswith(prefixes)}
    got = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {n: g for n, g in zip(params, got) if g is not None}


def _same_grads(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], what: str) -> None:
    """Every parameter with a gradient in the step has the same gradient in the formula (and no
    other). The two backward passes run the same kernels in another summation order. Scale: each
    tensor's largest entry, at least 1e-2 of the network's largest (a bias before instance norm has a
    gradient of float noise only, ~1e-7 of the largest). Limit 1e-4 of the scale. Measured worst
    (default / AVX2 / AVX-512 kernels, 1 and 2 threads): 1.2e-5 of the scale (such a bias), 5.6e-7 for
    any tensor above the floor; a changed term moves gradients by 1e-2 or more."""
    assert got.keys() == want.keys(), (what, sorted(set(got) ^ set(want))[:5])
    top = max(float(v.abs().max()) for v in want.values())
    for k in want:
        scale = max(float(want[k].abs().max()), 1e-2 * top)
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-4 * scale, msg=f"{what}: {k}")


def _mse(x, target: float):
    return ((x - target) ** 2).mean()


def _l1(x, y):
    return (x - y).abs().mean()


def _pool_answer(stored: list[torch.Tensor], images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """CycleGAN's image pool (upstream ``ImagePool.query``) on a full pool: per image, a draw u; if
    u > 1/2 a random stored fake is returned and the new one takes its place, else the new one."""
    out = []
    for img in images:
        if torch.rand((), generator=gen).item() > 0.5:
            k = int(torch.randint(len(stored), (), generator=gen))
            out.append(stored[k])
            stored[k] = img
        else:
            out.append(img)
    return torch.stack(out)


# ------------------------------------------------------------------------------------------- CycleGAN
def test_cyclegan_step_gradients_pool_and_logged_terms(tmp_path, faces):
    """One step of ``cyclegan`` with both pools already full (of other images), so the
    discriminators see the pool's answer: G_A and G_B's gradients equal those of the LSGAN + cycle +
    identity loss written here (the A -> B -> A cycle reaches G_A), D_A and D_B's those of the halved
    LSGAN on real vs pooled fakes (frozen generators' outputs, detached)."""
    tr = Engine(_cfg(tmp_path, "cyclegan", options={"pool_size": 3}), *faces)
    impl = tr.impl
    fill = torch.Generator().manual_seed(11)
    impl.pool_a.images = [torch.rand(3, 64, 64, generator=fill) * 2 - 1 for _ in range(3)]
    impl.pool_b.images = [torch.rand(3, 64, 64, generator=fill) * 2 - 1 for _ in range(3)]
    stored_a = [x.clone() for x in impl.pool_a.images]
    stored_b = [x.clone() for x in impl.pool_b.images]
    before = copy.deepcopy(tr.model)
    seen = _capture(tr)
    b = tr.batch(2, 1)
    logged = tr._step(b)

    n = before
    real_a = F.interpolate(b.lr, size=(64, 64), mode="bicubic", align_corners=False).clamp(-1, 1)
    real_b = b.hr
    fake_b, fake_a = n.g_a(real_a), n.g_b(real_b)
    g_terms = {"G_A": _mse(n.d_a(fake_b), 1), "G_B": _mse(n.d_b(fake_a), 1),
               "cycle_A": 10 * _l1(n.g_b(fake_b), real_a), "cycle_B": 10 * _l1(n.g_a(fake_a), real_b),
               "idt_A": 5 * _l1(n.g_a(real_b), real_b), "idt_B": 5 * _l1(n.g_b(real_a), real_a)}
    _same_grads(seen["g"], _grads(sum(g_terms.values()), n, ("g_a.", "g_b.")), "generators")

    gen = torch.Generator().manual_seed(_pool_seed(3, 2, 1))
    pooled_b = _pool_answer(stored_b, fake_b.detach(), gen)  # pool B is queried first, as upstream
    pooled_a = _pool_answer(stored_a, fake_a.detach(), gen)
    assert not torch.equal(pooled_b, fake_b.detach()) and not torch.equal(pooled_a, fake_a.detach())
    d_terms = {"D_A": 0.5 * (_mse(n.d_a(real_b), 1) + _mse(n.d_a(pooled_b), 0)),
               "D_B": 0.5 * (_mse(n.d_b(real_a), 1) + _mse(n.d_b(pooled_a), 0))}
    _same_grads(seen["d"], _grads(sum(d_terms.values()), n, ("d_a.", "d_b.")), "discriminators")
    assert all(torch.equal(x, y) for x, y in zip(impl.pool_b.images, stored_b))  # the pool now holds the swaps
    for k, v in {**g_terms, **d_terms}.items():
        torch.testing.assert_close(logged[k], v.detach(), rtol=1e-5, atol=1e-7, msg=k)


def _pool_seed(seed: int, epoch: int, step: int) -> int:
    import hashlib

    key = hashlib.sha256(f"{seed}/pool/{epoch}/{step}".encode()).digest()
    return int.from_bytes(key[:8], "big") >> 1


def test_cyclegan_16_step_gradients(tmp_path, faces):
    """``cyclegan-16``: G_A 16 -> 64, G_B 64 -> 16, no identity term, the pixel term on G_B."""
    tr = Engine(_cfg(tmp_path, "cyclegan", variant="cyclegan-16", options={"pool_size": 0, "lambda_pix": 0.3}),
                *faces)
    before = copy.deepcopy(tr.model)
    seen = _capture(tr)
    b = tr.batch(1, 0)
    tr._step(b)
    n = before
    fake_b, fake_a = n.g_a(b.lr), n.g_b(b.hr)
    g = (_mse(n.d_a(fake_b), 1) + _mse(n.d_b(fake_a), 1) + 10 * _l1(n.g_b(fake_b), b.lr)
         + 10 * _l1(n.g_a(fake_a), b.hr) + 0.3 * _l1(fake_a, F.avg_pool2d(b.hr, 4)))
    _same_grads(seen["g"], _grads(g, n, ("g_a.", "g_b.")), "generators")
    d = 0.5 * (_mse(n.d_a(b.hr), 1) + _mse(n.d_a(fake_b.detach()), 0)
               + _mse(n.d_b(b.lr), 1) + _mse(n.d_b(fake_a.detach()), 0))
    _same_grads(seen["d"], _grads(d, n, ("d_a.", "d_b.")), "discriminators")


def test_every_optimiser_follows_the_linear_decay(tmp_path, faces):
    """Both optimisers (generators and discriminators) decay: lr(e) = lr * (1 - max(0, e - c) / (d + 1))
    over epochs e = 1..c + d, never below zero."""
    tr = Engine(_cfg(tmp_path, "cyclegan", epochs=6, learning_rate=2e-4), *faces)
    assert set(tr.schedulers) == set(tr.optimizers) == {"g", "d"}
    for o in tr.optimizers.values():
        o.step()
    for e in range(1, 7):
        want = 2e-4 * (1 - max(0, e - 3) / 4)
        for name, o in tr.optimizers.items():
            assert o.param_groups[0]["lr"] == pytest.approx(want, rel=1e-12, abs=1e-18), (name, e)
        for s in tr.schedulers.values():
            s.step()


# ---------------------------------------------------------------------------------------------- LRGAN
def _hinge_d(d, real, fake, d_calls="separate"):
    """Hinge loss of ``d`` in training mode. ``separate``: two calls, each a power iteration of every
    spectral norm; ``fused``: one power iteration (the call on the real faces), then the fake faces
    through the same normalised weights (eval mode: no further iteration)."""
    d_real = d(real)
    if d_calls == "fused":
        d.eval()
        d_fake = d(fake)
        d.train()
    else:
        d_fake = d(fake)
    return torch.clamp(1 - d_real, min=0).mean() + torch.clamp(1 + d_fake, min=0).mean()


@pytest.mark.parametrize("d_calls", ["fused", "separate"])
def test_lrgan_step_gradients(tmp_path, faces, d_calls):
    """One joint step: D_16 learns real LR faces (not a downsampled HR face) against G_h2l's outputs and
    D_64 real HR faces against G_l2h's (hinge; real first; each discriminator's spectral norm iterates
    once for both (``fused``) or once per call (``separate``)); then G_h2l and G_l2h the pixel + 0.05 x
    hinge terms against the updated discriminators, G_l2h on detached G_h2l outputs; BatchNorm on batch
    statistics."""
    tr = Engine(_cfg(tmp_path, "lrgan", d_calls=d_calls), *faces)
    before = copy.deepcopy(tr.model)
    seen = _capture(tr)
    b = tr.batch(1, 0)
    logged = tr._step(b)

    n = before
    lr_gen = n.h2l(b.hr, b.z)
    hr_gen = n.l2h(lr_gen.detach())
    d = _hinge_d(n.d16, b.lr, lr_gen.detach(), d_calls) + _hinge_d(n.d64, b.hr, hr_gen.detach(), d_calls)
    _same_grads(seen["d"], _grads(d, n, ("d16.", "d64.")), "discriminators")
    dn = seen["g@model"]  # the discriminators after their update, as the generator step saw them
    dn.eval()  # spectral norm's vectors as that step left them (no further power iteration)
    g = (((lr_gen - F.avg_pool2d(b.hr, 4)) ** 2).mean() - 0.05 * dn.d16(lr_gen).mean()
         + ((hr_gen - b.hr) ** 2).mean() - 0.05 * dn.d64(hr_gen).mean())
    _same_grads(seen["g"], _grads(g, n, ("h2l.", "l2h.")), "generators")
    torch.testing.assert_close(logged["h2l_pix"], ((lr_gen - F.avg_pool2d(b.hr, 4)) ** 2).mean().detach())


def test_training_runs_in_train_mode_and_samples_leave_the_statistics(tmp_path, faces):
    """``fit`` trains with BatchNorm on batch statistics (their running averages move); the per-epoch
    sample grid runs the SR network in eval mode and changes no tensor of the model (so the exported
    statistics are the trained ones)."""
    for method in ("lrgan", "scgan"):
        tr = Engine(_cfg(tmp_path / method, method, max_steps=1), *faces)
        bn = [m for m in tr.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert bn, method
        start = [m.running_mean.clone() for m in bn]
        tr.model.eval()  # whatever mode it was left in, fit trains in train mode
        tr.fit(tmp_path / method)
        assert all(m.training for m in tr.model.modules()), method
        assert all(not torch.equal(s, m.running_mean) for s, m in zip(start, bn)), method
        state = {k: v.clone() for k, v in tr.model.state_dict().items()}
        tr._samples(tmp_path / method, 9)
        after = tr.model.state_dict()
        assert all(torch.equal(state[k], after[k]) for k in state), method
        assert all(m.training for m in tr.model.modules()), method


def test_gradients_are_averaged_over_ranks(tmp_path, faces, monkeypatch):
    """Two ranks holding the same gradient: the all-reduce sums them, the engine divides by the number
    of ranks, so the gradient is unchanged (summed gradients would double the step)."""
    import scgan_bench.training.engine as engine

    tr = Engine(_cfg(tmp_path, "lrgan"), *faces)
    params = list(tr.model.l2h.parameters())[:4]
    for i, p in enumerate(params):
        p.grad = torch.full_like(p, float(i + 1))
    monkeypatch.setattr(engine.dist, "all_reduce", lambda t, *a, **k: t.mul_(2))
    tr.world = 2
    tr.average_grads(params)
    assert all(torch.equal(p.grad, torch.full_like(p, float(i + 1))) for i, p in enumerate(params))


def test_logged_losses_are_the_global_batch_means(tmp_path, faces, monkeypatch):
    """Under data parallelism each rank's loss is its half-batch mean; the log holds the mean over
    ranks (the global batch's mean for equal slices), reduced in one collective per flush."""
    import scgan_bench.training.engine as engine

    def run(folder: Path, other: float) -> list[dict]:
        """Rank 0 of 2 (its half of each batch) when the other rank's losses are ``other`` x its own."""
        tr = Engine(_cfg(folder, "lrgan", max_steps=2), *faces)
        monkeypatch.setattr(tr, "average_grads", lambda params: None)
        monkeypatch.setattr(engine.dist, "all_reduce", lambda t, *a, **k: (calls.append(t.numel()), t.mul_(1 + other)))
        tr.world = 2
        return tr.fit(folder)

    calls: list[int] = []
    local = run(tmp_path / "one", 1.0)  # both ranks alike: the mean is this rank's value
    calls.clear()
    rows = run(tmp_path, 3.0)
    assert calls == [6, 6]  # per flush (1 step on CPU): the 6 terms in one call
    for a, b in zip(rows, local):
        for k in ("D_h2l", "D_l2h", "h2l_pix", "h2l_adv", "l2h_pix", "l2h_adv"):
            assert a[k] == pytest.approx(2 * b[k], rel=1e-6), k
    log = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert float(log[0]["h2l_pix"]) == pytest.approx(2 * local[0]["h2l_pix"], rel=1e-6)


@pytest.mark.slow
def test_two_gloo_processes_log_the_global_batch(tmp_path, faces):
    """A real 2-process gloo ``fit`` (LRGAN, batch 8, 3 steps, a checkpoint every 2 steps: the flush before a
    save happens on every rank) logs the losses one process logs for the whole batch: each rank's half-batch
    mean averaged over ranks. The runs part by float summation order from the first update on: measured
    worst relative difference 1.5e-5 (default kernels) and 5.7e-5 (AVX2) over the 3 steps; 1e-3 allowed.
    Rank 0's own half-batch means differ from the batch's by percents (the fast test above checks the
    reduction itself)."""
    torch.set_num_threads(1)
    cfg = dict(method="lrgan", width=1 / 16, batch_size=8, epochs=10, seed=3, learning_rate=1e-4, max_steps=3)
    ddp = spawn_ranks(ddp_fit_worker, 29700, tmp_path / "d", cfg, *faces)
    one = Engine(TrainConfig(out=str(tmp_path / "one"), progress=False, **cfg), *faces).fit(tmp_path / "one")
    assert len(ddp) == len(one) == 3
    for a, b in zip(ddp, one):
        for k in ("D_h2l", "D_l2h", "h2l_pix", "h2l_adv", "l2h_pix", "l2h_adv"):
            assert a[k] == pytest.approx(b[k], rel=1e-3), k
    log = list(csv.DictReader(open(tmp_path / "d" / "run" / "log.csv")))
    assert [float(r["h2l_pix"]) for r in log] == pytest.approx([r["h2l_pix"] for r in one], rel=1e-3)


# ------------------------------------------------------------------------------ resume and schedules
def test_resume_cannot_change_a_schedule_fixed_by_epochs(tmp_path, faces):
    """CycleGAN's linear decay and LRGAN's two-stage boundary are set by the ``--epochs`` a run started
    with: a resume with other ``--epochs`` is refused, naming the schedule (it would drive the learning
    rate below zero, or revisit a stage); what does not depend on it (LRGAN ``joint``; two-stage with
    ``stage1_epochs`` given) may grow ``--epochs``; a checkpoint written before the schedule joined the
    identity is accepted when its config.json records the same ``--epochs``."""
    cyc = dict(epochs=4, batch_size=8, max_steps=2)
    Engine(_cfg(tmp_path / "c", "cyclegan", **cyc), *faces).fit(tmp_path / "c")
    with pytest.raises(UsageError, match=r"(?s)schedule.constant_epochs: checkpoint 2, now 4.*"
                                         r"schedule.decay_epochs: checkpoint 2, now 4.*--epochs cannot change"):
        Engine(_cfg(tmp_path / "c", "cyclegan", **{**cyc, "epochs": 8, "max_steps": 3}), *faces).load(tmp_path / "c")
    latest = tmp_path / "c" / "checkpoints" / "latest.json"
    old = json.loads(latest.read_text())
    del old["identity"]["schedule"]  # as written before this version
    latest.write_text(json.dumps(old))
    Engine(_cfg(tmp_path / "c", "cyclegan", **{**cyc, "max_steps": 3}), *faces).load(tmp_path / "c")
    with pytest.raises(UsageError, match="schedule: checkpoint not recorded"):
        Engine(_cfg(tmp_path / "c", "cyclegan", **{**cyc, "epochs": 8, "max_steps": 3}), *faces).load(tmp_path / "c")

    two = dict(epochs=4, batch_size=8, max_steps=2, options={"schedule": "two-stage"})
    Engine(_cfg(tmp_path / "l", "lrgan", **two), *faces).fit(tmp_path / "l")
    with pytest.raises(UsageError, match="schedule.stage1_epochs: checkpoint 2, now 4"):
        Engine(_cfg(tmp_path / "l", "lrgan", **{**two, "epochs": 8}), *faces).load(tmp_path / "l")
    fixed = dict(epochs=2, batch_size=8, max_steps=2, options={"schedule": "two-stage", "stage1_epochs": 1})
    Engine(_cfg(tmp_path / "f", "lrgan", **fixed), *faces).fit(tmp_path / "f")
    longer = Engine(_cfg(tmp_path / "f", "lrgan", **{**fixed, "epochs": 4, "max_steps": 8}), *faces)
    rows = longer.fit(tmp_path / "f", resume=True)
    assert [r["epoch"] for r in rows] == [2, 2, 3, 3, 4, 4] and all("l2h_pix" in r for r in rows)
    joint = dict(epochs=1, batch_size=8, max_steps=2)
    Engine(_cfg(tmp_path / "j", "lrgan", **joint), *faces).fit(tmp_path / "j")
    assert len(Engine(_cfg(tmp_path / "j", "lrgan", **{**joint, "epochs": 2, "max_steps": 4}), *faces)
               .fit(tmp_path / "j", resume=True)) == 2


# ------------------------------------------------------------------------------------- checkpoints
def test_checkpoints_every_k_epochs_and_when_the_run_stops(tmp_path, faces, monkeypatch):
    """``save_every=2`` with 2 steps per epoch and 5 epochs: checkpoints after epochs 2 and 4 and at the
    end (steps 4, 8, 10); a run stopped by ``max_steps`` saves where it stops (step 3, mid-epoch)."""
    import scgan_bench.training.engine as engine

    saved: list[int] = []
    real = engine.write_checkpoint
    monkeypatch.setattr(engine, "write_checkpoint", lambda out, p: (saved.append(p.step), real(out, p))[1])
    Engine(_cfg(tmp_path / "a", "lrgan", epochs=5, batch_size=8, max_steps=None, save_every=2), *faces).fit(tmp_path / "a")
    assert saved == [4, 8, 10]
    saved.clear()
    Engine(_cfg(tmp_path / "b", "lrgan", epochs=5, batch_size=8, max_steps=3, save_every=2), *faces).fit(tmp_path / "b")
    assert saved == [3]
    with pytest.raises(UsageError, match="--save-every"):
        _cfg(tmp_path, "lrgan", save_every=0).resolve()


def _checkpoint_contents(run: Path) -> dict:
    """What a checkpoint holds: the step, ``state.pt``'s sha256 (torch.save is byte-stable), and both
    safetensors files' metadata and tensor bytes (their header order is not: safetensors writes its
    metadata map in hash order)."""
    from safetensors.torch import load

    from scgan_bench.training.engine import safetensors_metadata

    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    out = {"step": latest["global_step"], "state.pt": latest["sha256"]["state.pt"]}
    for name, path in (("model", run / "checkpoints" / latest["folder"] / "model.safetensors"),
                       ("sr", run / "sr.safetensors")):
        blob = path.read_bytes()
        out[name] = (safetensors_metadata(blob), {k: v.numpy().tobytes() for k, v in load(blob).items()})
    return out


def test_a_background_save_writes_what_a_foreground_save_writes(tmp_path, faces, monkeypatch):
    """The background writer saves a copy of the step: the same tensors and state as writing in the
    training thread. The first checkpoint's writer is held until training has taken the next optimiser
    step (weights updated in place), and that checkpoint is kept aside and compared too."""
    import threading

    import scgan_bench.training.engine as engine

    real = engine.write_checkpoint
    moved = threading.Event()

    def write(out, p):
        if p.step == 2:  # also keep the first checkpoint, written once training has moved on
            if out.name == "bg":
                assert moved.wait(timeout=None)
            real(out.parent / f"{out.name}-step2", p)
        return real(out, p)

    monkeypatch.setattr(engine, "write_checkpoint", write)
    kw = dict(epochs=3, batch_size=8, max_steps=None, options={"pool_size": 3})
    fg = Engine(_cfg(tmp_path / "fg", "cyclegan", **kw), *faces)
    fg.fit(tmp_path / "fg")
    bg = Engine(_cfg(tmp_path / "bg", "cyclegan", background_save=True, **kw), *faces)
    bg.optimizers["g"].register_step_post_hook(lambda opt, a, k: moved.set() if bg.global_step >= 2 else None)
    bg.fit(tmp_path / "bg")
    assert bg._pending_save is None and bg._writer is None  # the last write awaited, the writer gone
    assert moved.is_set()
    assert _checkpoint_contents(tmp_path / "bg-step2") == _checkpoint_contents(tmp_path / "fg-step2")
    assert _checkpoint_contents(tmp_path / "bg") == _checkpoint_contents(tmp_path / "fg")
    rest = Engine(_cfg(tmp_path / "bg", "cyclegan", **{**kw, "epochs": 3}), *faces)
    rest.load(tmp_path / "bg")
    assert rest.global_step == 6


KILL_DURING_SAVE = r"""
import sys, time
from pathlib import Path
import torch
sys.path.insert(0, sys.argv[3])
from sb_testdata import unpaired_faces
import scgan_bench.training.engine as engine
from scgan_bench.training.engine import Engine, TrainConfig

out, marker = Path(sys.argv[1]), Path(sys.argv[2])
torch.set_num_threads(int(sys.argv[4]))  # the test's own thread count: the same float sums as its runs
real_text = engine.atomic_write_text
def stalled(path, text, **kw):  # the second checkpoint: both files written, latest.json not yet replaced
    if Path(path).name == "latest.json" and '"global_step": 4' in text:
        marker.write_text("writing")
        time.sleep(3600)
    return real_text(path, text, **kw)
engine.atomic_write_text = stalled
cfg = TrainConfig(method="lrgan", width=1 / 16, batch_size=8, epochs=4, seed=3, out=str(out), progress=False,
                  learning_rate=1e-3, background_save=True)
Engine(cfg, *unpaired_faces(16)).fit(out)
"""


def test_killing_a_run_during_a_background_save_keeps_the_previous_checkpoint(tmp_path, faces):
    """kill -9 of a run whose writer thread has written the second checkpoint's files but not yet its
    ``latest.json``: the first checkpoint stays the one in force, verified and loadable, and a resumed run
    equals an uninterrupted one bit for bit (the stall is a marker the test waits for, not a time)."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "kill.py"
    script.write_text(KILL_DURING_SAVE)
    run, marker = tmp_path / "run", tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, str(script), str(run), str(marker), str(Path(__file__).parent),
                             str(torch.get_num_threads())])
    while not marker.exists():  # polled, no limit: a slow machine only waits longer
        assert proc.poll() is None, "the run ended before its second checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    folders = sorted(p.name for p in (run / "checkpoints").glob("step-*"))
    assert any(f.startswith("step-000000004") for f in folders)  # the half-saved one is on disk...
    kw = dict(epochs=4, batch_size=8, max_steps=None)
    rest = Engine(_cfg(run, "lrgan", **kw), *faces)
    rest.load(run)
    assert rest.global_step == 2  # ...but the pair in force is the first one
    rest = Engine(_cfg(run, "lrgan", **kw), *faces)
    rest.fit(run, resume=True)
    whole = Engine(_cfg(tmp_path / "whole", "lrgan", **kw), *faces)
    whole.fit(tmp_path / "whole")
    assert all(torch.equal(v, rest.model.state_dict()[k]) for k, v in whole.model.state_dict().items())


def test_train_command_takes_the_checkpoint_options(tmp_path, capsys):
    """``scgan-bench train --save-every 2 --background-save`` reaches the engine: 16 faces, batch 8, 3 epochs
    give checkpoints after epoch 2 and at the end (step 6), recorded in config.json."""
    from sb_testdata import HR_FACES, need

    from scgan_bench.cli import main

    faces = str(need(HR_FACES))
    out = tmp_path / "run"
    assert main(["train", "--method", "lrgan", "--hr", faces, "--lr", faces, "--limit-hr", "16", "--limit-lr", "16",
                 "--width", "0.0625", "--batch-size", "8", "--epochs", "3", "--save-every", "2", "--background-save",
                 "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["save_every"] == 2 and config["background_save"] is True
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["global_step"] == 6
    assert main(["train", "--hr", faces, "--lr", faces, "--save-every", "0", "--quiet"]) == 2
    assert "--save-every must be at least 1" in capsys.readouterr().err
