"""SCGAN and its 25 ablation variants (Tables 1-4) as data: which branches exist, which parts of the
two degradation branches are shared, which losses are on. One registry entry per variant; the trainer
reads the spec, it is never copied.

Names are filesystem-safe ids (``scgan-wo-dsl``); ``paper_name`` is the row label of the paper's table.
Sharing between D_HL and D_SL (Table 2) refers to the released architecture's parts: ``in`` (noise_fc
+ in_layer), ``encoder`` (8 blocks), ``decoder`` (2 x [PixelShuffle, 2 blocks]), ``out``. "Middle" is
the last two encoder groups (blocks 5-8) and the first decoder group (PixelShuffle + 2 blocks): the
released decoder has two groups, so the paper's "first two decoder groups" of its 3-group decoder map
to the first of ours.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from ..registry import Registry

ADV_LOSSES = ("L1", "L2", "H1", "H2")  # D_L1 (D_HL output), D_L2 (D_SL output), D_H1 (I_sS), D_H2 (I_rS)
SHARE_PARTS = ("in", "encoder", "decoder", "middle", "out")


@dataclass(frozen=True)
class Variant:
    name: str
    paper_name: str
    table: int
    forward_cycle: bool = True     # D_HL -> R_LS (needs D_HL)
    backward_cycle: bool = True    # R_LS -> D_SL (needs D_SL)
    backward_restoration: bool = True  # R_LS on real LR with D_H2 and the pixel loss
    share: tuple[str, ...] = ()    # parts of D_SL that are D_HL's (SCGAN-fc shares all)
    adversarial: frozenset[str] = field(default_factory=lambda: frozenset(ADV_LOSSES))
    pixel: bool = True             # l_pix of D_HL (vs avgpool(HR)) and of R_LS (vs bicubic-up LR)
    cycle: bool = True             # l_cyc of R_LS (I_sS vs I_rH) and of D_SL (I^_rL vs I_rL)
    description: str = ""

    def __post_init__(self) -> None:
        bad = set(self.share) - set(SHARE_PARTS) - {"all"}
        if bad or set(self.adversarial) - set(ADV_LOSSES):
            raise ValueError(f"variant {self.name}: unknown parts/losses {bad or self.adversarial}")

    @property
    def has_dhl(self) -> bool:
        return self.forward_cycle

    @property
    def has_dsl(self) -> bool:
        return self.backward_cycle

    def uses(self, adv: str) -> bool:
        """Whether adversarial loss ``adv`` (and so its discriminator) is active."""
        needs = {"L1": self.has_dhl, "H1": self.forward_cycle, "L2": self.has_dsl,
                 "H2": self.backward_restoration}
        return adv in self.adversarial and needs[adv]


VARIANTS: Registry[Variant] = Registry("SCGAN variant")


def _add(v: Variant) -> None:
    VARIANTS.register(v.name, v)


_add(Variant("scgan", "SCGAN", 0, description="the full model"))
# Table 1: the semi-cycled architecture
_add(Variant("scgan-wo-dsl", "SCGAN-w/o-D_SL", 1, backward_cycle=False, backward_restoration=False,
             description="only the forward cycle D_HL -> R_LS"))
_add(Variant("scgan-wo-dhl", "SCGAN-w/o-D_HL", 1, forward_cycle=False,
             description="only the backward cycle R_LS -> D_SL"))
_add(Variant("scgan-fc", "SCGAN-fc", 1, share=("all",),
             description="one degradation network shared by both cycles (fully cycled)"))
# Table 2: partial sharing of D_HL and D_SL
_add(Variant("scgan-sa", "SCGAN-SA", 2, share=("encoder", "decoder"), description="all but the in/out heads"))
_add(Variant("scgan-se", "SCGAN-SE", 2, share=("encoder",), description="shared encoder"))
_add(Variant("scgan-sd", "SCGAN-SD", 2, share=("decoder",), description="shared decoder"))
_add(Variant("scgan-sm", "SCGAN-SM", 2, share=("middle",), description="shared middle blocks"))
# Table 3: loss families
_add(Variant("scgan-wo-al", "SCGAN-w/o-AL", 3, adversarial=frozenset(), description="no adversarial losses"))
_add(Variant("scgan-wo-pl", "SCGAN-w/o-PL", 3, pixel=False, description="no pixel losses"))
_add(Variant("scgan-wo-cl", "SCGAN-w/o-CL", 3, cycle=False, description="no cycle-consistency losses"))

# Table 4: the 15 proper subsets of the four adversarial losses, numbered as in the paper: removal
# count r (4..1), then rows in the paper's order (kept losses listed by the table's ticks).
TABLE4_ROWS = {
    (4, 1): (),
    (3, 1): ("H2",), (3, 2): ("H1",), (3, 3): ("L2",), (3, 4): ("L1",),
    (2, 1): ("H1", "H2"), (2, 2): ("L2", "H2"), (2, 3): ("L2", "H1"), (2, 4): ("L1", "H2"),
    (2, 5): ("L1", "H1"), (2, 6): ("L1", "L2"),
    (1, 1): ("L2", "H1", "H2"), (1, 2): ("L1", "H1", "H2"), (1, 3): ("L1", "L2", "H2"),
    (1, 4): ("L1", "L2", "H1"),
}
for (_r, _k), _kept in TABLE4_ROWS.items():
    _add(Variant(f"scgan-ladv-{_r}-{_k}", f"l_adv-{_r}-{_k}", 4, adversarial=frozenset(_kept),
                 description=f"adversarial losses kept: {', '.join(_kept) or 'none'}"))

