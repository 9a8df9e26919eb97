"""SCGAN's released architecture pinned literally: a golden forward digest of every network at the
released widths, the 56 released R_LS key names and where each goes, Table 4's 15 rows as the paper
ticks them, and the released-checkpoint formats (BGR, the LRGAN-fork BatchNorm layout, channel order
in safetensors metadata)."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
import torch

from scgan_bench.scgan.networks import DegradationNet, Discriminator, RestorationNet, released_rls_key
from scgan_bench.scgan.variants import VARIANTS

GOLDEN = Path(__file__).resolve().parent / "golden" / "scgan_forward.json"

# --------------------------------------------------------------------------------- golden forward
def fill_by_name(net: torch.nn.Module) -> torch.nn.Module:
    """Weights that depend only on each tensor's name (crc32 seeds), so the digest pins forward
    semantics, not initialisation; spectral-norm vectors are the exact top singular pair."""
    sd = net.state_dict()
    new = {}
    for k, v in sd.items():
        g = torch.Generator().manual_seed(zlib.crc32(k.encode()))
        if k.endswith("num_batches_tracked"):
            new[k] = v
        elif k.endswith("running_var"):
            new[k] = 1 + 0.2 * torch.rand(v.shape, generator=g)
        elif k.endswith("running_mean"):
            new[k] = 0.1 * torch.randn(v.shape, generator=g)
        elif k.endswith("._u") or k.endswith("._v"):
            new[k] = v  # set below
        elif v.ndim >= 2:
            new[k] = torch.randn(v.shape, generator=g) / v[0].numel() ** 0.5
        elif k.endswith("bias"):
            new[k] = 0.05 * torch.randn(v.shape, generator=g)
        else:  # BatchNorm weight
            new[k] = 1 + 0.1 * torch.randn(v.shape, generator=g)
    for k in [k for k in sd if k.endswith(".original")]:
        u, s, vh = torch.linalg.svd(new[k].flatten(1), full_matrices=False)
        base = k[: -len("original")] + "0."
        new[base + "_u"], new[base + "_v"] = u[:, 0].contiguous(), vh[0].contiguous()
    net.load_state_dict(new, strict=True)
    return net.eval()


def forward_outputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    hr = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    lr = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    z = torch.randn(2, 64, generator=g)
    d16, d64 = fill_by_name(Discriminator(16)), fill_by_name(Discriminator(64))
    with torch.no_grad():
        return {"R_LS": fill_by_name(RestorationNet())(lr), "D_HL": fill_by_name(DegradationNet())(hr, z),
                "D_16.blocks": d16.blocks(lr), "D_16": d16(lr), "D_64.blocks": d64.blocks(hr), "D_64": d64(hr)}


def digest(x: torch.Tensor) -> dict:
    flat = x.flatten().double()
    idx = torch.linspace(0, flat.numel() - 1, 24).round().long()
    return {"shape": list(x.shape), "mean": float(flat.mean()), "std": float(flat.std()) if flat.numel() > 1 else 0.0,
            "samples": [float(v) for v in flat[idx]]}


def write_golden() -> None:
    """Regenerate the stored digest, only for an intended architecture change:
    ``python tests/test_scgan_released.py --write-golden``."""
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({k: digest(v) for k, v in forward_outputs().items()}, indent=1) + "\n")


def test_released_architecture_forward_matches_the_golden_digest():
    """Stored digest (mean, std and 24 values per output; the discriminators' block features too) of
    every network at the released widths with name-seeded weights; tolerance rtol 1e-4 and atol 1e-4 x
    the output's std (float32 across CPUs). See :func:`write_golden`."""
    got = {k: digest(v) for k, v in forward_outputs().items()}
    want = json.loads(GOLDEN.read_text())
    assert set(got) == set(want)
    for k in want:
        assert got[k]["shape"] == want[k]["shape"], k
        vals = torch.tensor([got[k]["mean"], got[k]["std"], *got[k]["samples"]], dtype=torch.float64)
        ref = torch.tensor([want[k]["mean"], want[k]["std"], *want[k]["samples"]], dtype=torch.float64)
        torch.testing.assert_close(vals, ref, rtol=1e-4, atol=1e-4 * want[k]["std"], msg=k)
    # the digest is informative: every output varies, the generators inside tanh's range
    assert all(want[k]["std"] > 0 for k in want)
    assert 0.01 < want["R_LS"]["std"] < 0.9 and 0.01 < want["D_HL"]["std"] < 0.9


# --------------------------------------------------------------------------------- released keys
# The 56 keys of the released G_RLS (model.py: layers_in, layers_set_final[0] = 12 blocks,
# layers_set_final[1] = 3 blocks, layers_set_final_up[i] = Upsample, BatchNorm, ReLU, 1x1 ConvTranspose,
# a1 / a2 projections, main = conv3x3, ReLU, 1x1, ReLU, 1x1, Tanh) and their names here.
RELEASED_TO_OURS = {
    "layers_in.weight": "layers_in.weight",
    "layers_set_final.0.0.conv1.weight": "group1.0.conv1.weight",
    "layers_set_final.0.0.conv2.weight": "group1.0.conv2.weight",
    "layers_set_final.0.1.conv1.weight": "group1.1.conv1.weight",
    "layers_set_final.0.1.conv2.weight": "group1.1.conv2.weight",
    "layers_set_final.0.2.conv1.weight": "group1.2.conv1.weight",
    "layers_set_final.0.2.conv2.weight": "group1.2.conv2.weight",
    "layers_set_final.0.3.conv1.weight": "group1.3.conv1.weight",
    "layers_set_final.0.3.conv2.weight": "group1.3.conv2.weight",
    "layers_set_final.0.4.conv1.weight": "group1.4.conv1.weight",
    "layers_set_final.0.4.conv2.weight": "group1.4.conv2.weight",
    "layers_set_final.0.5.conv1.weight": "group1.5.conv1.weight",
    "layers_set_final.0.5.conv2.weight": "group1.5.conv2.weight",
    "layers_set_final.0.6.conv1.weight": "group1.6.conv1.weight",
    "layers_set_final.0.6.conv2.weight": "group1.6.conv2.weight",
    "layers_set_final.0.7.conv1.weight": "group1.7.conv1.weight",
    "layers_set_final.0.7.conv2.weight": "group1.7.conv2.weight",
    "layers_set_final.0.8.conv1.weight": "group1.8.conv1.weight",
    "layers_set_final.0.8.conv2.weight": "group1.8.conv2.weight",
    "layers_set_final.0.9.conv1.weight": "group1.9.conv1.weight",
    "layers_set_final.0.9.conv2.weight": "group1.9.conv2.weight",
    "layers_set_final.0.10.conv1.weight": "group1.10.conv1.weight",
    "layers_set_final.0.10.conv2.weight": "group1.10.conv2.weight",
    "layers_set_final.0.11.conv1.weight": "group1.11.conv1.weight",
    "layers_set_final.0.11.conv2.weight": "group1.11.conv2.weight",
    "layers_set_final_up.0.1.weight": "up1.1.weight",
    "layers_set_final_up.0.1.bias": "up1.1.bias",
    "layers_set_final_up.0.1.running_mean": "up1.1.running_mean",
    "layers_set_final_up.0.1.running_var": "up1.1.running_var",
    "layers_set_final_up.0.1.num_batches_tracked": "up1.1.num_batches_tracked",
    "layers_set_final_up.0.3.weight": "up1.3.weight",
    "layers_set_final_up.0.3.bias": "up1.3.bias",
    "layers_set_final.1.0.conv1.weight": "group2.0.conv1.weight",
    "layers_set_final.1.0.conv2.weight": "group2.0.conv2.weight",
    "layers_set_final.1.0.skip.weight": "group2.0.skip.weight",
    "layers_set_final.1.0.skip.bias": "group2.0.skip.bias",
    "layers_set_final.1.1.conv1.weight": "group2.1.conv1.weight",
    "layers_set_final.1.1.conv2.weight": "group2.1.conv2.weight",
    "layers_set_final.1.2.conv1.weight": "group2.2.conv1.weight",
    "layers_set_final.1.2.conv2.weight": "group2.2.conv2.weight",
    "a1.0.weight": "proj2.weight",
    "a1.0.bias": "proj2.bias",
    "layers_set_final_up.1.1.weight": "up2.1.weight",
    "layers_set_final_up.1.1.bias": "up2.1.bias",
    "layers_set_final_up.1.1.running_mean": "up2.1.running_mean",
    "layers_set_final_up.1.1.running_var": "up2.1.running_var",
    "layers_set_final_up.1.1.num_batches_tracked": "up2.1.num_batches_tracked",
    "layers_set_final_up.1.3.weight": "up2.3.weight",
    "layers_set_final_up.1.3.bias": "up2.3.bias",
    "a2.0.weight": "proj3_unused.weight",
    "a2.0.bias": "proj3_unused.bias",
    "main.0.weight": "tail.0.weight",
    "main.2.weight": "tail.2.weight",
    "main.2.bias": "tail.2.bias",
    "main.4.weight": "tail.4.weight",
    "main.4.bias": "tail.4.bias",
}


def test_all_56_released_rls_keys_map_onto_ours():
    assert len(RELEASED_TO_OURS) == 56
    assert {released_rls_key(k) for k in RELEASED_TO_OURS} == set(RestorationNet(0.125).state_dict())
    for released, ours in RELEASED_TO_OURS.items():
        assert released_rls_key(released) == ours, released


def _released_file(tmp_path: Path, net: RestorationNet, key: str = "G_RLS", extra: dict | None = None) -> Path:
    ours_to_released = {v: k for k, v in RELEASED_TO_OURS.items()}
    sd = {ours_to_released[k]: v for k, v in net.state_dict().items()}
    sd.update(extra or {})
    path = tmp_path / "model_epoch_200.pth"
    torch.save({key: sd}, path)
    return path


def test_released_checkpoint_loads_with_bgr_channels(tmp_path, monkeypatch):
    from scgan_bench.scgan.method import SCGANMethod

    torch.manual_seed(5)
    net = RestorationNet(0.125).eval()
    monkeypatch.setenv("SCGAN_BENCH_CKPT_SCGAN", str(_released_file(tmp_path, net, "G_l2h")))
    m = SCGANMethod("scgan")
    assert m.order == "bgr" and m.fingerprint()["recipe"] == "official"
    lr = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        want = ((net((lr * 2 - 1).flip(1)).flip(1)) + 1) / 2
    torch.testing.assert_close(m.upscale(lr), want)
    out = SCGANMethod("scgan", minmax=True).upscale(lr)
    assert torch.allclose(out.amin(dim=(1, 2, 3)), torch.zeros(2)) and torch.allclose(out.amax(dim=(1, 2, 3)), torch.ones(2))


def test_lrgan_fork_batchnorm_layout_is_refused_with_its_cause(tmp_path, monkeypatch):
    from scgan_bench.errors import UsageError
    from scgan_bench.scgan.method import SCGANMethod

    net = RestorationNet(0.125)
    c = net.group1[0].conv1.weight.shape[1]
    bn = {f"layers_set_final.0.{i}.bn{j}.{p}": torch.ones(c) for i in range(12) for j in (1, 2)
          for p in ("weight", "bias", "running_mean", "running_var")}
    monkeypatch.setenv("SCGAN_BENCH_CKPT_SCGAN", str(_released_file(tmp_path, net, extra=bn)))
    with pytest.raises(UsageError, match="BatchNorm.*LRGAN-fork layout"):
        SCGANMethod("scgan")


def test_safetensors_channel_order_comes_from_metadata(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from scgan_bench.errors import UsageError
    from scgan_bench.scgan.method import SCGANMethod

    torch.manual_seed(6)
    net = RestorationNet(0.125).eval()
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    lr = torch.rand(2, 3, 16, 16)
    for order in ("bgr", "rgb"):
        path = tmp_path / f"{order}.safetensors"
        save_file(sd, str(path), metadata={"channel_order": order})
        monkeypatch.setenv("SCGAN_BENCH_CKPT_SCGAN", str(path))
        m = SCGANMethod("scgan")
        x = (lr * 2 - 1).flip(1) if order == "bgr" else lr * 2 - 1
        with torch.no_grad():
            y = net(x)
        torch.testing.assert_close(m.upscale(lr), ((y.flip(1) if order == "bgr" else y) + 1) / 2)
    path = tmp_path / "bare.safetensors"
    save_file(sd, str(path))
    monkeypatch.setenv("SCGAN_BENCH_CKPT_SCGAN", str(path))
    with pytest.raises(UsageError, match="channel order"):
        SCGANMethod("scgan")


# --------------------------------------------------------------------------------------- Table 4
# The paper's Table 4, row by row: ticks for l_adv^{D_L1}, D_L2, D_H1, D_H2.
TABLE4_TICKS = {
    "4-1": "✗✗✗✗",
    "3-1": "✗✗✗✓", "3-2": "✗✗✓✗", "3-3": "✗✓✗✗", "3-4": "✓✗✗✗",
    "2-1": "✗✗✓✓", "2-2": "✗✓✗✓", "2-3": "✗✓✓✗", "2-4": "✓✗✗✓", "2-5": "✓✗✓✗", "2-6": "✓✓✗✗",
    "1-1": "✗✓✓✓", "1-2": "✓✗✓✓", "1-3": "✓✓✗✓", "1-4": "✓✓✓✗",
}


def test_table4_variants_keep_the_papers_ticked_losses():
    from scgan_bench.tables.specs import TABLES

    spec = TABLES.get("4")
    cols = {label: ex for label, ex in spec.extra_columns}
    for row, ticks in TABLE4_TICKS.items():
        kept = {k for k, t in zip(("L1", "L2", "H1", "H2"), ticks) if t == "✓"}
        name = f"scgan-ladv-{row}"
        assert set(VARIANTS.get(name).adversarial) == kept, row
        assert "".join(cols[f"l_adv^D_{k}"][name] for k in ("L1", "L2", "H1", "H2")) == ticks, row
        assert cols["Removal"][name] == row[0]
    assert [r for r, _ in spec.rows][:15] == [f"scgan-ladv-{r}" for r in TABLE4_TICKS]


def test_the_mutation_list_still_applies_to_the_code():
    """`make mutants` stays runnable: every mutation's text is found exactly once."""
    import mutants

    assert len(mutants.MUTANTS) >= 10 and len({m.name for m in mutants.MUTANTS}) == len(mutants.MUTANTS)
    for m in mutants.MUTANTS:
        mutants.check_applies(m)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write-golden"]:
        write_golden()
        print(f"wrote {GOLDEN}")
