"""One SCGAN training step as data: the images it generates, the generator terms it computes (with
their weights), where each term's gradient goes, and from that, which variants train the same SR
network under a recipe.

The model (:mod:`.model`) builds its step from these tables, so the analysis and the training code
cannot disagree; the tests check both against formulas written independently.

Images (``fakes`` keys; the paper's names in brackets)::

    lr_gen    [I_sL]  = D_HL(I_rH, z)
    hr_gen    [I_sS]  = R_LS(I_sL)        crossing edge: gradient back into I_sL (to D_HL)
    hr_gen_r  [I_rS]  = R_LS(I_rL)
    lr_real_2 [^I_rL] = D_SL(I_rS, z)     crossing edge: gradient back into I_rS (to R_LS)

A *crossing* is a term's gradient passing from the branch that owns it into the branch that made
its input. Each of the four is a recipe weight (0 = detached): ``forward_cycle_to_dhl`` (R_LS's
forward cycle l1 into D_HL), ``forward_adv_to_dhl`` (D_H1's term into D_HL), ``backward_cycle_to_rls``
(D_SL's cycle l1 into R_LS) and ``backward_adv_to_rls`` (D_L2's term into R_LS).

**Equivalence.** R_LS's training trajectory is fixed by the terms whose gradient reaches it, the
inputs of its train-mode forward calls (they update its BatchNorm statistics), and, recursively,
everything those depend on: the networks producing their inputs, the discriminators judging them,
and the terms training those networks. Two variants whose closures are equal (same terms, weights,
routes, networks and sharing) train the same R_LS from the same seed: every network is initialised
from its own seed (:func:`.model.network_seed`), Adam is per parameter, and data order and noise
depend only on the seed. Tested bit for bit on CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .variants import VARIANTS, Variant

if TYPE_CHECKING:  # pragma: no cover
    from .model import Recipe

# parts of a degradation network, for partial sharing between D_HL and D_SL (Table 2)
DEGRADATION_PARTS = ("in", "enc.lo", "enc.hi", "dec.0", "dec.1", "out")
SHARED_PARTS = {"in": ("in",), "encoder": ("enc.lo", "enc.hi"), "decoder": ("dec.0", "dec.1"),
                "middle": ("enc.hi", "dec.0"), "out": ("out",), "all": DEGRADATION_PARTS}
CROSSINGS = ("forward_cycle_to_dhl", "forward_adv_to_dhl", "backward_cycle_to_rls", "backward_adv_to_rls")
NETWORK_NAMES = {"dhl": "D_HL", "rls": "R_LS", "dsl": "D_SL"}


@dataclass(frozen=True)
class ImageSpec:
    name: str
    network: str                 # "dhl" | "rls" | "dsl"
    source: str | None = None    # the generated image it takes (None: data only)


@dataclass(frozen=True)
class TermSpec:
    """A generator term: ``weight * raw`` where raw is an l1 distance or ``-mean D_k(image)``."""

    name: str
    image: str
    weight: float
    disc: str | None = None      # adversarial terms: the discriminator judging ``image``
    crossing: str | None = None  # recipe field weighting this term's gradient into ``image``'s source

    def route(self, recipe: "Recipe") -> float:
        """Multiplier of this term's gradient through the crossing edge (0 = detached)."""
        return float(getattr(recipe, self.crossing)) if self.crossing else 0.0


def active_images(v: Variant) -> dict[str, ImageSpec]:
    """The images a variant's step generates, in the order they are computed."""
    out: dict[str, ImageSpec] = {}
    if v.has_dhl:
        out["lr_gen"] = ImageSpec("lr_gen", "dhl")
    if v.forward_cycle:
        out["hr_gen"] = ImageSpec("hr_gen", "rls", "lr_gen")
    if v.backward_restoration or v.has_dsl:
        out["hr_gen_r"] = ImageSpec("hr_gen_r", "rls")
    if v.has_dsl:
        out["lr_real_2"] = ImageSpec("lr_real_2", "dsl", "hr_gen_r")
    return out


def active_terms(v: Variant, r: "Recipe") -> dict[str, TermSpec]:
    """The generator terms of Eqs. 2-12 a variant keeps, weighted by the recipe."""
    cand = [
        (v.has_dhl and v.pixel, TermSpec("dhl_pix", "lr_gen", r.l1_weight)),
        (v.uses("L1"), TermSpec("dhl_adv", "lr_gen", r.adv_weight, disc="L1")),
        (v.forward_cycle and v.cycle,
         TermSpec("rls_cyc", "hr_gen", r.theta * r.l1_weight, crossing="forward_cycle_to_dhl")),
        (v.uses("H1"), TermSpec("rls_adv1", "hr_gen", r.theta * r.adv_weight, disc="H1",
                                crossing="forward_adv_to_dhl")),
        (v.backward_restoration and v.pixel, TermSpec("rls_pix", "hr_gen_r", r.gamma * r.l1_weight)),
        (v.uses("H2"), TermSpec("rls_adv2", "hr_gen_r", r.gamma * r.adv_weight, disc="H2")),
        (v.has_dsl and v.cycle, TermSpec("dsl_cyc", "lr_real_2", r.l1_weight, crossing="backward_cycle_to_rls")),
        (v.uses("L2"), TermSpec("dsl_adv", "lr_real_2", r.adv_weight, disc="L2", crossing="backward_adv_to_rls")),
    ]
    return {t.name: t for keep, t in cand if keep}


FAKE_OF = {"L1": "lr_gen", "L2": "lr_real_2", "H1": "hr_gen", "H2": "hr_gen_r"}


def storages(v: Variant, network: str) -> tuple[str, ...]:
    """Parameter stores of a network after the variant's sharing (D_SL's shared parts are D_HL's)."""
    if network == "dhl":
        return tuple(f"dhl.{p}" for p in DEGRADATION_PARTS)
    if network == "dsl":
        shared = {p for s in v.share for p in SHARED_PARTS[s]} if v.has_dhl else set()
        return tuple(f"{'dhl' if p in shared else 'dsl'}.{p}" for p in DEGRADATION_PARTS)
    return (network,)


@dataclass(frozen=True)
class Influence:
    """What R_LS's training depends on under a recipe (see the module docstring)."""

    variant: str
    terms: tuple[tuple[str, float, tuple[tuple[str, float], ...]], ...]  # (term, weight, gradient routes)
    discriminators: tuple[str, ...]
    rls_calls: tuple[str, ...]
    stores: tuple[str, ...]
    ignored_terms: tuple[str, ...]            # active terms that never reach R_LS

    def key(self) -> tuple[Any, ...]:
        return (self.terms, self.discriminators, self.rls_calls, self.stores)


def gradient_routes(v: Variant, r: "Recipe", term: TermSpec) -> dict[str, float]:
    """Parameter store -> multiplier of ``term``'s gradient (weight included)."""
    imgs = active_images(v)
    out: dict[str, float] = {}
    img, mult = imgs[term.image], term.weight
    while True:
        for s in storages(v, img.network):
            out[s] = out.get(s, 0.0) + mult
        if img.source is None or img.source not in imgs:
            return out
        mult *= term.route(r) if img.name == term.image else 1.0
        if mult == 0.0:
            return out
        img = imgs[img.source]


def _forward_deps(v: Variant, image: str) -> set[str]:
    imgs, deps = active_images(v), set()
    cur: str | None = image
    while cur is not None:
        deps |= set(storages(v, imgs[cur].network))
        cur = imgs[cur].source
    return deps


def rls_influence(v: Variant, r: "Recipe") -> Influence:
    """The closure of what R_LS's trajectory depends on for variant ``v`` under recipe ``r``."""
    terms, imgs = active_terms(v, r), active_images(v)
    discs = [k for k in ("L1", "L2", "H1", "H2") if v.uses(k)]
    routes = {n: gradient_routes(v, r, t) for n, t in terms.items()}
    rls_calls = [n for n, im in imgs.items() if im.network == "rls"]
    relevant, used_terms, used_discs = {"rls"}, set(), set()
    changed = True
    while changed:
        changed = False
        for n, t in terms.items():
            if n not in used_terms and any(routes[n].get(s, 0.0) for s in relevant):
                used_terms.add(n)
                relevant |= _forward_deps(v, t.image) | ({f"disc.{t.disc}"} if t.disc else set())
                changed = True
        for k in discs:
            if k not in used_discs and f"disc.{k}" in relevant:
                used_discs.add(k)
                relevant |= _forward_deps(v, FAKE_OF[k])
                changed = True
        for n in rls_calls:  # train-mode forward calls update R_LS's BatchNorm statistics
            before = len(relevant)
            relevant |= _forward_deps(v, n)
            changed |= len(relevant) != before
    return Influence(
        v.name,
        tuple(sorted((n, terms[n].weight, tuple(sorted(routes[n].items()))) for n in used_terms)),
        tuple(sorted(used_discs)), tuple(rls_calls), tuple(sorted(relevant)),
        tuple(n for n in terms if n not in used_terms))


def equivalence_classes(r: "Recipe", names: list[str] | None = None) -> list[list[str]]:
    """Groups (of two or more) of variants that train the same SR network under ``r``, in registry
    order."""
    names = names or list(VARIANTS)
    groups: dict[tuple[Any, ...], list[str]] = {}
    for n in names:
        groups.setdefault(rls_influence(VARIANTS.get(n), r).key(), []).append(n)
    return [g for g in groups.values() if len(g) > 1]


def same_network_as(name: str, r: "Recipe", names: list[str] | None = None) -> list[str]:
    """Other variants (of ``names``) that train the same SR network as ``name`` under ``r``."""
    names = names or list(VARIANTS)
    for g in equivalence_classes(r, list(dict.fromkeys([*names, name]))):
        if name in g:
            return [n for n in g if n != name]
    return []


def explain(name: str, other: str, r: "Recipe") -> str:
    """Why two equivalent variants differ only in ways R_LS never sees."""
    a, b = VARIANTS.get(name), VARIANTS.get(other)
    ta, tb = set(active_terms(a, r)), set(active_terms(b, r))
    da = {k for k in ("L1", "L2", "H1", "H2") if a.uses(k)}
    db = {k for k in ("L1", "L2", "H1", "H2") if b.uses(k)}
    diff = sorted(ta ^ tb)
    parts = []
    if diff:
        parts.append(f"terms {', '.join(diff)}")
    if da ^ db:
        parts.append(f"discriminators {', '.join('D_' + k for k in sorted(da ^ db))}")
    nets = {im.network for im in active_images(a).values()} ^ {im.network for im in active_images(b).values()}
    if nets:
        parts.append("networks " + ", ".join(sorted(NETWORK_NAMES[n] for n in nets)))
    what = "; ".join(parts) if parts else "nothing but their names"
    return (f"{name} and {other} differ in {what}, none of which reaches R_LS under recipe {r.name}"
            + (f" ({r.note})" if r.note else ""))
