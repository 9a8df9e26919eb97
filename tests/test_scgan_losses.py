"""SCGAN's step against formulas written here, independently of the code: the images each network
makes, every generator and discriminator term (inputs, targets, weights, hinge signs) for both recipes,
where each term's gradient goes, the crossing weights, and the paper recipe's initialisation."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from scgan_bench.scgan.model import RECIPES, SCGAN, Recipe
from scgan_bench.scgan.networks import DegradationNet, RestorationNet, kaiming_zero_residual_
from scgan_bench.scgan.variants import VARIANTS

from sb_testdata import HR_FACES, need

WIDTH = 0.125
# the paper's constants (Sec. 3.6) and the released train.py's placement of alpha / beta
WEIGHTS = {"official": {"l1": 1.0, "adv": 0.05}, "paper": {"l1": 0.05, "adv": 1.0}}
THETA, GAMMA = 1.0, 0.05


def avgpool4(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 4, 4, w // 4, 4).mean(dim=(3, 5))


def bicubic_matrix(n_in: int, n_out: int, a: float = -0.75) -> torch.Tensor:
    """Keys' cubic convolution (a = -0.75, PyTorch's), align_corners=True, edge samples clamped."""
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        src = i * (n_in - 1) / (n_out - 1)
        x0 = math.floor(src)
        for k in range(-1, 3):
            d = abs(src - (x0 + k))
            w = ((a + 2) * d ** 3 - (a + 3) * d ** 2 + 1 if d <= 1
                 else a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a if d < 2 else 0.0)
            m[i, min(max(x0 + k, 0), n_in - 1)] += w
    return m.float()


def bicubic_up(x: torch.Tensor, size: int) -> torch.Tensor:
    m = bicubic_matrix(x.shape[-1], size)
    return m @ x @ m.T


def hinge_d(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    return torch.clamp(1 - d_real, min=0).mean() + torch.clamp(1 + d_fake, min=0).mean()


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().mean()


def batch(n: int = 4):
    g = torch.Generator().manual_seed(11)
    return (torch.rand(n, 3, 64, 64, generator=g) * 2 - 1, torch.rand(n, 3, 16, 16, generator=g) * 2 - 1,
            torch.randn(n, 64, generator=g))


def model(variant: str = "scgan", recipe: Recipe | str = "official") -> SCGAN:
    r = RECIPES[recipe] if isinstance(recipe, str) else recipe
    m = SCGAN(VARIANTS.get(variant), r, WIDTH, seed=4)
    m.disc.eval()  # spectral norm without a power-iteration step, so repeated calls agree
    return m


def images(m: SCGAN, hr, lr, z) -> dict[str, torch.Tensor]:
    """Eqs. 1, 4, 5, 11 with every gradient path open."""
    i_sl = m.dhl(hr, z)
    i_rs = m.rls(lr)
    return {"I_sL": i_sl, "I_sS": m.rls(i_sl), "I_rS": i_rs, "I^_rL": m.dsl(i_rs, z)}


def test_bicubic_reference_is_pytorchs_align_corners_bicubic():
    x = torch.rand(2, 3, 16, 16)
    want = nn.functional.interpolate(x, size=64, mode="bicubic", align_corners=True)
    # 1.3e-6 at most under the default ISA, 8e-7 with AVX2 (measured, issue 26); align_corners=False: > 1e-2
    torch.testing.assert_close(bicubic_up(x, 64), want, rtol=0, atol=1e-5)
    other = nn.functional.interpolate(x, size=64, mode="bicubic", align_corners=False)
    assert (bicubic_up(x, 64) - other).abs().max() > 1e-2  # the reference tells the two apart


@pytest.mark.parametrize("recipe", ["official", "paper"])
def test_every_term_matches_its_formula(recipe):
    m = model("scgan", recipe)
    hr, lr, z = batch()
    fakes = m.generate(hr, lr, z)
    im = images(m, hr, lr, z)
    for ours, paper in (("lr_gen", "I_sL"), ("hr_gen", "I_sS"), ("hr_gen_r", "I_rS"), ("lr_real_2", "I^_rL")):
        torch.testing.assert_close(fakes[ours], im[paper], rtol=0, atol=1e-6)
    w, d = WEIGHTS[recipe], m.disc
    want = {
        "dhl_pix": w["l1"] * l1(im["I_sL"], avgpool4(hr)),                     # Eq. 2, pixel
        "dhl_adv": w["adv"] * -d["L1"](im["I_sL"]).mean(),                     # Eq. 2, D_L1
        "rls_cyc": THETA * w["l1"] * l1(im["I_sS"], hr),                        # Eq. 7, cycle
        "rls_adv1": THETA * w["adv"] * -d["H1"](im["I_sS"]).mean(),            # Eq. 7, D_H1
        "rls_pix": GAMMA * w["l1"] * l1(im["I_rS"], bicubic_up(lr, 64)),        # Eq. 8, pixel
        "rls_adv2": GAMMA * w["adv"] * -d["H2"](im["I_rS"]).mean(),            # Eq. 8, D_H2
        "dsl_cyc": w["l1"] * l1(im["I^_rL"], lr),                               # Eq. 12, cycle
        "dsl_adv": w["adv"] * -d["L2"](im["I^_rL"]).mean(),                    # Eq. 12, D_L2
    }
    got = m.generator_loss(hr, lr, fakes)
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-7, msg=k)
    want_d = {"D_L1": hinge_d(d["L1"](lr), d["L1"](im["I_sL"])), "D_L2": hinge_d(d["L2"](lr), d["L2"](im["I^_rL"])),
              "D_H1": hinge_d(d["H1"](hr), d["H1"](im["I_sS"])), "D_H2": hinge_d(d["H2"](hr), d["H2"](im["I_rS"]))}
    got_d = m.discriminator_loss(hr, lr, fakes)
    assert set(got_d) == set(want_d)
    for k in want_d:
        torch.testing.assert_close(got_d[k], want_d[k], rtol=1e-5, atol=1e-7, msg=k)


def test_discriminator_scores_are_not_saturated_so_hinge_signs_matter():
    """The hinge terms are only a test of the signs if the scores sit inside the hinge margins."""
    m = model("scgan")
    hr, lr, z = batch()
    fakes = m.generate(hr, lr, z)
    for k, real in (("L1", lr), ("H2", hr)):
        s = torch.cat([m.disc[k](real), m.disc[k](fakes["lr_gen" if k == "L1" else "hr_gen_r"])])
        assert s.abs().max() < 1 and s.std() > 0


# where each term's gradient goes, written out per recipe (scgan, every term active)
ROUTES = {
    "official": {"dhl_pix": {"dhl"}, "dhl_adv": {"dhl"}, "rls_cyc": {"rls"}, "rls_adv1": {"rls"},
                 "rls_pix": {"rls"}, "rls_adv2": {"rls"}, "dsl_cyc": {"dsl"}, "dsl_adv": {"dsl"}},
    "paper": {"dhl_pix": {"dhl"}, "dhl_adv": {"dhl"}, "rls_cyc": {"rls"}, "rls_adv1": {"rls"},
              "rls_pix": {"rls"}, "rls_adv2": {"rls"}, "dsl_cyc": {"dsl", "rls"}, "dsl_adv": {"dsl"}},
}


@pytest.mark.parametrize("recipe", ["official", "paper"])
def test_each_terms_gradient_reaches_exactly_its_networks(recipe):
    hr, lr, z = batch()
    for term, nets in ROUTES[recipe].items():
        m = model("scgan", recipe)
        m.disc.requires_grad_(False)
        fakes = m.generate(hr, lr, z)
        t = m.generator_loss(hr, lr, fakes)
        m.generator_backward({term: t[term]}, fakes)
        reached = {n for n in ("dhl", "rls", "dsl")
                   if any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(m, n).parameters())}
        assert reached == nets, term


def _expected_grads(m: SCGAN, cross: dict[str, float], w: dict[str, float], hr, lr, z) -> dict[str, torch.Tensor]:
    """Each term's gradient into its own network, plus crossing weight x its gradient through the
    open path into the network upstream; summed over terms."""
    own = {"dhl": ["dhl_pix", "dhl_adv"], "rls": ["rls_cyc", "rls_adv1", "rls_pix", "rls_adv2"],
           "dsl": ["dsl_cyc", "dsl_adv"]}
    d = m.disc
    total: dict[str, torch.Tensor] = {}

    def add(net_name: str, value: torch.Tensor, scale: float) -> None:
        params = list(getattr(m, net_name).named_parameters())
        grads = torch.autograd.grad(value, [p for _, p in params], allow_unused=True, retain_graph=True)
        for (n, _), g in zip(params, grads):
            if g is not None:
                total[f"{net_name}.{n}"] = total.get(f"{net_name}.{n}", 0) + scale * g

    im = images(m, hr, lr, z)
    sl_det = m.dhl(hr, z).detach()
    rs_det = m.rls(lr).detach()
    raw_open = {"rls_cyc": l1(im["I_sS"], hr), "rls_adv1": -d["H1"](im["I_sS"]).mean(),
                "dsl_cyc": l1(im["I^_rL"], lr), "dsl_adv": -d["L2"](im["I^_rL"]).mean()}
    ss_own = m.rls(sl_det)
    rl_own = m.dsl(rs_det, z)
    raw_own = {"dhl_pix": l1(im["I_sL"], avgpool4(hr)), "dhl_adv": -d["L1"](im["I_sL"]).mean(),
               "rls_cyc": l1(ss_own, hr), "rls_adv1": -d["H1"](ss_own).mean(),
               "rls_pix": l1(im["I_rS"], bicubic_up(lr, 64)), "rls_adv2": -d["H2"](im["I_rS"]).mean(),
               "dsl_cyc": l1(rl_own, lr), "dsl_adv": -d["L2"](rl_own).mean()}
    weight = {"dhl_pix": w["l1"], "dhl_adv": w["adv"], "rls_cyc": THETA * w["l1"], "rls_adv1": THETA * w["adv"],
              "rls_pix": GAMMA * w["l1"], "rls_adv2": GAMMA * w["adv"], "dsl_cyc": w["l1"], "dsl_adv": w["adv"]}
    for net_name, terms in own.items():
        for t in terms:
            add(net_name, raw_own[t], weight[t])
    upstream = {"rls_cyc": ("dhl", "forward_cycle_to_dhl"), "rls_adv1": ("dhl", "forward_adv_to_dhl"),
                "dsl_cyc": ("rls", "backward_cycle_to_rls"), "dsl_adv": ("rls", "backward_adv_to_rls")}
    for t, (net_name, c) in upstream.items():
        if cross[c]:
            add(net_name, raw_open[t], weight[t] * cross[c])
    return total


@pytest.mark.parametrize("recipe,cross", [
    ("official", dict(forward_cycle_to_dhl=1.0, forward_adv_to_dhl=0.3, backward_cycle_to_rls=0.5,
                      backward_adv_to_rls=0.2)),   # every crossing, weights differing per term
    ("paper", dict(forward_cycle_to_dhl=0.25, forward_adv_to_dhl=0.25, backward_cycle_to_rls=0.0,
                   backward_adv_to_rls=0.0)),     # one weight per crossing edge
    ("paper", dict(forward_cycle_to_dhl=0.0, forward_adv_to_dhl=0.0, backward_cycle_to_rls=0.05,
                   backward_adv_to_rls=0.0)),     # the paper recipe's default
])
def test_crossing_weights_scale_exactly_the_crossing_gradient(recipe, cross):
    r = RECIPES[recipe].with_crossings(cross)
    hr, lr, z = batch()
    m = model("scgan", r)
    m.disc.requires_grad_(False)
    fakes = m.generate(hr, lr, z)
    m.generator_backward(m.generator_loss(hr, lr, fakes), fakes)
    got = {f"{name}.{n}": p.grad for name in ("dhl", "rls", "dsl")
           for n, p in getattr(m, name).named_parameters() if p.grad is not None}
    m2 = model("scgan", r)  # the same seed: the same weights
    m2.disc.requires_grad_(False)
    want = _expected_grads(m2, cross, WEIGHTS[recipe], hr, lr, z)
    assert set(got) == set(want)
    for k, g in got.items():
        # float32 sums in another order, worst on near-zero entries (a bias whose true gradient is 0): 1.4e-8
        # off under ATEN_CPU_CAPABILITY=default where 1e-8 + 2e-4 relative was allowed (ratio 0.75;
        # tests/tolerance_audit.py, issue 26), so 1e-7 + 1e-3 relative. A crossing ignored or mis-scaled
        # changes gradients by >= 50 % of their size
        torch.testing.assert_close(g, want[k], rtol=1e-3, atol=1e-7, msg=k)


def test_paper_recipe_defaults_state_their_crossings():
    p, o = RECIPES["paper"], RECIPES["official"]
    assert (p.backward_cycle_to_rls, p.backward_adv_to_rls, p.forward_cycle_to_dhl, p.forward_adv_to_dhl) == \
        (0.05, 0.0, 0.0, 0.0)
    assert (o.backward_cycle_to_rls, o.backward_adv_to_rls, o.forward_cycle_to_dhl, o.forward_adv_to_dhl) == \
        (0.0, 0.0, 0.0, 0.0)
    assert p.with_crossings({"backward_cycle_to_rls": 0}).name == "paper[backward_cycle_to_rls=0]"
    with pytest.raises(ValueError, match="unknown crossing"):
        p.with_crossings({"cycle_to_rls": 1})
    with pytest.raises(ValueError, match=">= 0"):
        p.with_crossings({"backward_adv_to_rls": -1})


# ----------------------------------------------------------------------------------- initialisation
def _faces(n: int = 16):
    from scgan_bench.scgan.train import load_faces, to_unit

    need(HR_FACES)
    hr, _ = load_faces(HR_FACES, 64, limit=n)
    lr, _ = load_faces(HR_FACES, 16, limit=n)
    return to_unit(hr), to_unit(lr).flip(0)


def _plain_kaiming(net: nn.Module) -> nn.Module:
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return net


def test_paper_init_keeps_the_released_generators_out_of_tanh_saturation():
    """Released widths, real faces: < 1 % of outputs past |0.99| for D_HL and R_LS (plain Kaiming
    saturates most of D_HL's: the check can fail)."""
    hr, lr = _faces(8)
    z = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    for seed in (0, 1):
        torch.manual_seed(seed)
        d, r = kaiming_zero_residual_(DegradationNet()), kaiming_zero_residual_(RestorationNet()).train()
        with torch.no_grad():
            sl, sr = d(hr, z), r(lr)
        assert (sl.abs() > 0.99).float().mean() < 0.01 and sl.std() > 0.05
        assert (sr.abs() > 0.99).float().mean() < 0.01 and sr.std() > 0.05
    torch.manual_seed(0)
    with torch.no_grad():
        assert (_plain_kaiming(DegradationNet())(hr, z).abs() > 0.99).float().mean() > 0.5


def test_paper_init_refreshes_spectral_norm_estimates():
    m = SCGAN(VARIANTS.get("scgan"), RECIPES["paper"], WIDTH, seed=0)
    n = 0
    for mod in m.disc.modules():
        plist = getattr(getattr(mod, "parametrizations", None), "weight", None)
        if plist is None:
            continue
        w = plist.original.flatten(1)
        est = torch.dot(plist[0]._u, w.detach() @ plist[0]._v)
        true = torch.linalg.matrix_norm(w.detach(), 2)
        assert abs(float(est / true) - 1) < 0.01, (est, true)
        n += 1
    # per discriminator: 6 blocks x 2 convs, 2 linears, and the 1x1 skips (blocks that change width or
    # pool: 5 at 64 px, 4 at 16 px)
    assert n == 2 * (12 + 2 + 5) + 2 * (12 + 2 + 4)


def test_paper_init_trains_dhl_on_its_pixel_loss():
    """30 Adam steps at lr 1e-3 on D_HL's l1 to the average-pooled HR (width 1/4): it falls below 60 %
    of its start (measured 0.44 for this seed, 0.37-0.56 over seeds 0-2 with 1 and 2 threads; plain
    Kaiming gives 0.77-0.96)."""
    hr, _ = _faces(8)
    target = avgpool4(hr)
    torch.manual_seed(0)
    d = kaiming_zero_residual_(DegradationNet(0.25))
    opt = torch.optim.Adam(d.parameters(), lr=1e-3)
    z = torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(30):
        loss = l1(d(hr, z), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.6 * losses[0], losses
